#!/usr/bin/env bash
# The benchmark: the authz module in Envoy against Envoy's native RBAC filter, side by side,
# from one AuthorizationPolicy to ten thousand (method and results: BENCHMARKS.md).
#
#   bench/run.sh            full run (5 N x 4 policy sets x 3 rounds of 5 s; about 55 min)
#   bench/run.sh --quick    1 round of 1 s, N = 1, 100, 10000 (a few minutes; what CI runs)
#
# Any other argument is passed to the runner (`authz-harness bench-run --help`), e.g.
#   bench/run.sh --n 1,1000 --sets l7 --rounds 5
#
# Writes bench/results/<date>[-quick].{json,md,png} (+ the gnuplot .gp/.dat files).
# Everything runs on 127.0.0.0/8; every Envoy has one worker (--concurrency 1), except the
# two-worker resident-memory runs at N = 1, 1000, 10000 (--concurrency 2).
# Server variants: none, native (what istiod generates), native-indexed (the same policies
# as a hand-indexed unified matcher), module, and empty-wasm at the smallest N.
# Needs: Envoy (scripts/install-envoy.sh), wrk and gnuplot (installed here with apt-get when
# missing and possible), the wasm32-wasip1 Rust target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "bench/run.sh: $*" >&2; }

QUICK=0
for a in "$@"; do [ "$a" = "--quick" ] && QUICK=1; done

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing $* with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 \
            || { DEBIAN_FRONTEND=noninteractive apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; }
    else
        return 1
    fi
}

command -v wrk >/dev/null || apt_install wrk || { log "wrk is required (apt-get install wrk)"; exit 2; }
command -v gnuplot >/dev/null || apt_install gnuplot-nox || log "gnuplot missing: no plot"

ENVOY_BIN="${ENVOY_BIN:-$(scripts/install-envoy.sh)}"
export ENVOY_BIN

log "building the module (wasm profile)"
cargo build -q -p authz-plugin --target wasm32-wasip1 --profile wasm
WASM="${AUTHZ_WASM:-$ROOT/target/wasm32-wasip1/wasm/authz_plugin.wasm}"

TAG="$(date -u +%Y-%m-%d)"
[ "$QUICK" = 1 ] && TAG="$TAG-quick"
OUT="$ROOT/bench/results"
# A --tag or --out given on the command line wins (the runner takes the last one).
prev=""
for a in "$@"; do
    case "$prev" in
        --tag) TAG="$a" ;;
        --out) OUT="$a" ;;
    esac
    prev="$a"
done
mkdir -p "$OUT"
ARGS=(--tag "$TAG" --out "$OUT" --envoy-bin "$ENVOY_BIN" --wasm "$WASM" "$@")

# Bounded: a quick run takes minutes, a full one under an hour on 2 cores.
LIMIT=$([ "$QUICK" = 1 ] && echo 1200 || echo 7200)

log "building the runner (release)"
cargo build -q --release -p authz-harness --bin authz-harness
status=0
timeout "$LIMIT" target/release/authz-harness bench-run "${ARGS[@]}" || status=$?

if command -v gnuplot >/dev/null && [ -f "$OUT/$TAG.gp" ]; then
    (cd "$OUT" && gnuplot "$TAG.gp") && log "plot: $OUT/$TAG.png"
fi
log "results: $OUT/$TAG.json, $OUT/$TAG.md"
exit "$status"
