#!/usr/bin/env bash
# Where a server Envoy's CPU goes under load: perf's split by shared object (the Envoy binary,
# the kernel, libc, and V8's JIT code, i.e. the module's compiled Wasm).
#
#   bench/run.sh --n 1 --sets l7 --keep        # keeps the work directory (printed at the end)
#   bench/profile.sh KEPT_DIR/l7-1 module allow [SECONDS]   # KEPT_DIR: the directory --keep printed
#
# Starts the kept server-<variant>.json and load.json Envoys again, drives the <variant>-<role>
# route with wrk for SECONDS (default 8), samples the server with `perf record -e cpu-clock`
# (no hardware counters needed), and prints the report by shared object and, for the Envoy
# binary (stripped: addresses only), the top symbols. The official Envoy build has no V8
# flags, so JIT frames are one `[JIT]` object, not per Wasm function.
set -euo pipefail
DIR="${1:?work directory of one phase (from --keep)}"
VARIANT="${2:-module}"
ROLE="${3:-allow}"
SECONDS_="${4:-8}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENVOY="${ENVOY_BIN:-$ROOT/.venv-envoy/envoy}"
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }
cd "$DIR"
port=$(python3 -c "
import json,sys
c=json.load(open('load.json'))
for l in c['static_resources']['listeners']:
    if l['name']=='$VARIANT-$ROLE': print(l['address']['socket_address']['port_value'])")
[ -n "$port" ] || { echo "no route $VARIANT-$ROLE in $DIR/load.json" >&2; exit 2; }
"$ENVOY" -c "server-$VARIANT.json" --concurrency 1 --disable-hot-restart --log-level warn >profile-server.log 2>&1 &
server=$!
"$ENVOY" -c load.json --concurrency 1 --disable-hot-restart --log-level warn >profile-load.log 2>&1 &
load=$!
trap 'kill $server $load 2>/dev/null || true' EXIT
sleep 3
wrk -t1 -c4 -d2s -s "$ROLE.lua" "http://127.0.0.1:$port/" >/dev/null   # warm-up
perf record -q -e cpu-clock -F 4999 -p "$server" -o profile.data -- sleep "$SECONDS_" >/dev/null 2>&1 &
rec=$!
requests=$(wrk -t1 -c4 -d"${SECONDS_}s" -s "$ROLE.lua" "http://127.0.0.1:$port/" \
    | sed -n 's/^BENCH-JSON .*"requests":\([0-9]*\).*/\1/p')
wait $rec || true
echo "$VARIANT $ROLE: $requests requests in ${SECONDS_} s; server CPU per request by shared object (samples at 4999 Hz):"
perf report -i profile.data --no-children --sort dso -g none -n 2>/dev/null | grep -v '^#' | grep -v '^$' \
    | awk -v req="$requests" '{ share=$1; samples=$2; $1=""; $2=""; printf "  %7s %8.2f us/req %s\n", share, samples/4999/req*1e6, $0 }' | head -8
echo "--- top addresses in the Envoy binary ---"
perf report -i profile.data --no-children --dsos envoy --sort sym -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
