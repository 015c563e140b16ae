set terminal pngcairo size 1500,1800 font ',10'
set output '2026-11-23.png'
set logscale xy
set grid
set key outside right
set xlabel 'number of AuthorizationPolicies (N)'
set xrange [0.7:14000]
set multiplot layout 4,1
set title "Layer 7 (waypoint, HTTP filter), mixed sources: requests on keep-alive mTLS connections"
set ylabel 'requests/s'
plot '2026-11-23-l7-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-11-23-l7-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-11-23-l7-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-11-23-l7-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-11-23-l7-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-11-23-l7-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
set title "Layer 7, sources of exact principals only: requests on keep-alive mTLS connections"
set ylabel 'requests/s'
plot '2026-11-23-l7exact-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-11-23-l7exact-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-11-23-l7exact-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-11-23-l7exact-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-11-23-l7exact-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-11-23-l7exact-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
set title "Layer 4 (ztunnel mode, network filter): a new mTLS connection per request"
set ylabel 'new mTLS connections/s'
plot '2026-11-23-l4-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-11-23-l4-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-11-23-l4-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-11-23-l4-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-11-23-l4-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-11-23-l4-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
set title "Layer 4, ztunnel's worst-case shape (DENY policies × 10 rules): a new mTLS connection per request"
set ylabel 'new mTLS connections/s'
plot '2026-11-23-l4worst-allow.dat' using 1:3 with linespoints lw 2 dt 1 lc rgb '#c0392b' title 'native RBAC, allow', \
     '2026-11-23-l4worst-allow.dat' using 1:4 with linespoints lw 2 dt 1 lc rgb '#2471a3' title 'module, allow', \
     '2026-11-23-l4worst-allow.dat' using 1:2 with lines dt 1 lc rgb '#999999' title 'no filter, allow', \
     '2026-11-23-l4worst-deny.dat' using 1:3 with linespoints lw 2 dt 2 lc rgb '#c0392b' title 'native RBAC, deny', \
     '2026-11-23-l4worst-deny.dat' using 1:4 with linespoints lw 2 dt 2 lc rgb '#2471a3' title 'module, deny', \
     '2026-11-23-l4worst-deny.dat' using 1:2 with lines dt 2 lc rgb '#999999' title 'no filter, deny'
unset multiplot
