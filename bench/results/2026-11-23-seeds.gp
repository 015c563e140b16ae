set terminal pngcairo size 1500,450 font ',10'
set output '2026-11-23-seeds.png'
set logscale xy
set grid
set key outside right
set xlabel 'number of AuthorizationPolicies (N)'
set xrange [0.7:14000]
set multiplot layout 1,1
set title "Layer 7 (waypoint, HTTP filter), mixed sources: requests on keep-alive mTLS connections"
set ylabel 'requests/s'
plot '2026-11-23-seeds-l7-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-11-23-seeds-l7-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-11-23-seeds-l7-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-11-23-seeds-l7-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-11-23-seeds-l7-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-11-23-seeds-l7-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
unset multiplot
