set terminal pngcairo size 1500,2700 font ',10'
set output '2026-12-04.png'
set logscale xy
set grid
set key outside right
set xlabel 'number of AuthorizationPolicies (N)'
set xrange [0.7:14000]
set multiplot layout 6,1
set title "Layer 7 (waypoint, HTTP filter), mixed sources: requests on keep-alive mTLS connections"
set ylabel 'requests/s'
plot '2026-12-04-l7-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-12-04-l7-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-12-04-l7-allow.dat' using 1:5 with linespoints lw 2 dt 1 lc rgb '#1e8449' title 'native-indexed, allow', \
     '2026-12-04-l7-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-12-04-l7-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-12-04-l7-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-12-04-l7-deny.dat' using 1:5 with linespoints lw 2 dt 2 lc rgb '#1e8449' title 'native-indexed, deny', \
     '2026-12-04-l7-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
set title "Layer 7, sources of exact principals only: requests on keep-alive mTLS connections"
set ylabel 'requests/s'
plot '2026-12-04-l7exact-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-12-04-l7exact-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-12-04-l7exact-allow.dat' using 1:5 with linespoints lw 2 dt 1 lc rgb '#1e8449' title 'native-indexed, allow', \
     '2026-12-04-l7exact-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-12-04-l7exact-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-12-04-l7exact-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-12-04-l7exact-deny.dat' using 1:5 with linespoints lw 2 dt 2 lc rgb '#1e8449' title 'native-indexed, deny', \
     '2026-12-04-l7exact-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
set title "Layer 4 (ztunnel mode, network filter): a new mTLS connection per request"
set ylabel 'new mTLS connections/s'
plot '2026-12-04-l4-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-12-04-l4-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-12-04-l4-allow.dat' using 1:5 with linespoints lw 2 dt 1 lc rgb '#1e8449' title 'native-indexed, allow', \
     '2026-12-04-l4-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-12-04-l4-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-12-04-l4-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-12-04-l4-deny.dat' using 1:5 with linespoints lw 2 dt 2 lc rgb '#1e8449' title 'native-indexed, deny', \
     '2026-12-04-l4-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
set title "Layer 4, ztunnel's worst-case shape (DENY policies × 10 rules): a new mTLS connection per request"
set ylabel 'new mTLS connections/s'
plot '2026-12-04-l4worst-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-12-04-l4worst-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-12-04-l4worst-allow.dat' using 1:5 with linespoints lw 2 dt 1 lc rgb '#1e8449' title 'native-indexed, allow', \
     '2026-12-04-l4worst-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-12-04-l4worst-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-12-04-l4worst-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-12-04-l4worst-deny.dat' using 1:5 with linespoints lw 2 dt 2 lc rgb '#1e8449' title 'native-indexed, deny', \
     '2026-12-04-l4worst-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
set title "Memory, l7: Envoy's resident memory once ready (1 and 2 workers) and the module's linear memory"
set ylabel 'MiB'
plot '2026-12-04-l7-memory.dat' using 1:2 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, VmRSS', \
     '2026-12-04-l7-memory.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#1e8449' title 'native-indexed, VmRSS', \
     '2026-12-04-l7-memory.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, VmRSS', \
     '2026-12-04-l7-memory.dat' using 1:5 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, VmRSS, 2 workers', \
     '2026-12-04-l7-memory.dat' using 1:6 with linespoints lw 2 dt 2 lc rgb '#1e8449' title 'native-indexed, VmRSS, 2 workers', \
     '2026-12-04-l7-memory.dat' using 1:7 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, VmRSS, 2 workers', \
     '2026-12-04-l7-memory.dat' using 1:8 with linespoints lw 2 dt 3 lc rgb '#7d3c98' title 'module, linear memory (one VM)'
set title "Memory, l4: Envoy's resident memory once ready (1 and 2 workers) and the module's linear memory"
set ylabel 'MiB'
plot '2026-12-04-l4-memory.dat' using 1:2 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, VmRSS', \
     '2026-12-04-l4-memory.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#1e8449' title 'native-indexed, VmRSS', \
     '2026-12-04-l4-memory.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, VmRSS', \
     '2026-12-04-l4-memory.dat' using 1:5 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, VmRSS, 2 workers', \
     '2026-12-04-l4-memory.dat' using 1:6 with linespoints lw 2 dt 2 lc rgb '#1e8449' title 'native-indexed, VmRSS, 2 workers', \
     '2026-12-04-l4-memory.dat' using 1:7 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, VmRSS, 2 workers', \
     '2026-12-04-l4-memory.dat' using 1:8 with linespoints lw 2 dt 3 lc rgb '#7d3c98' title 'module, linear memory (one VM)'
unset multiplot
