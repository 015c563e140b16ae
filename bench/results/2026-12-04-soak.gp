set terminal pngcairo size 1200,800 font ',10'
set output '2026-12-04-soak.png'
set grid
set key top left
set multiplot layout 2,1
set title 'Envoy with the module, reconfigured every few seconds under load: memory (60 min)'
set xlabel 'time (s)'
set ylabel 'MiB'
set yrange [0:*]
plot '2026-12-04-soak.dat' using 1:2 with lines lw 2 lc rgb '#2471a3' title 'resident (VmRSS)', \
'2026-12-04-soak.dat' using 1:3 with lines lw 1 lc rgb '#c0392b' title 'allocated (server.memory_allocated)', \
'2026-12-04-soak.dat' using 1:4 with lines lw 1 dt 2 lc rgb '#7f8c8d' title 'heap (server.memory_heap_size)'
set title 'requests answered, module decisions counted, configurations accepted and refused'
set ylabel 'requests'
set y2label 'LDS updates, Wasm VMs'
set y2tics
plot '2026-12-04-soak.dat' using 1:5 with lines lw 2 lc rgb '#2471a3' title 'requests sent', \
'2026-12-04-soak.dat' using 1:9 with lines lw 1 dt 2 lc rgb '#27ae60' title 'module decisions', \
'2026-12-04-soak.dat' using 1:6 with lines lw 2 lc rgb '#c0392b' title 'no decision (gaps)', \
'2026-12-04-soak.dat' using 1:7 axes x1y2 with steps lc rgb '#8e44ad' title 'LDS accepted', \
'2026-12-04-soak.dat' using 1:8 axes x1y2 with steps lc rgb '#e67e22' title 'LDS refused', \
'2026-12-04-soak.dat' using 1:10 axes x1y2 with steps lc rgb '#34495e' title 'Wasm VMs'
unset multiplot
