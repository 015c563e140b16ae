#!/usr/bin/env bash
# The soak (issue 11, item 14): Envoy with the module under bounded load on loopback,
# reconfigured every few seconds through LDS (two policy sets and one the module must
# refuse), every response checked, Envoy's memory and the module's counters sampled.
#
#   bench/soak.sh --quick   60 s (what CI runs): bench/results/<date>-soak-quick.{dat,gp,md,png}
#   bench/soak.sh           1 hour: bench/results/<date>-soak.{dat,gp,md,png}
#
# Other arguments go to `authz-harness soak` (see `authz-harness soak --help`), e.g.
#   bench/soak.sh --duration 600 --rate 80
# Exits non-zero when a response was wrong or missing, the module's counters disagree with
# the responses, or Envoy's memory grew. Needs Envoy (scripts/install-envoy.sh) and gnuplot
# (scripts/install-deps.sh) for the plot.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "bench/soak.sh: $*" >&2; }

TAG="$(date -u +%Y-%m-%d)-soak"
DURATION=3600
ARGS=()
for a in "$@"; do
    if [ "$a" = "--quick" ]; then
        TAG="$TAG-quick"
        DURATION=60
    else
        ARGS+=("$a")
    fi
done

ENVOY_BIN="${ENVOY_BIN:-$(scripts/install-envoy.sh)}"
command -v gnuplot >/dev/null || log "gnuplot missing (scripts/install-deps.sh): no plot"

log "building the module and the harness"
cargo build -q --locked -p authz-plugin --target wasm32-wasip1 --profile wasm
cargo build -q --locked --release -p authz-harness --bin authz-harness
WASM="${AUTHZ_WASM:-${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip1/wasm/authz_plugin.wasm}"

log "soak for ${DURATION}s, writing bench/results/$TAG.*"
exec "${CARGO_TARGET_DIR:-target}/release/authz-harness" soak --duration "$DURATION" \
    --out bench/results --tag "$TAG" --envoy-bin "$ENVOY_BIN" --wasm "$WASM" "${ARGS[@]}"
