#!/usr/bin/env bash
# Installs what scripts/fuzz.sh needs: a nightly Rust toolchain (cargo-fuzz builds with
# `-Zsanitizer` and libFuzzer's coverage instrumentation, nightly-only flags) and cargo-fuzz
# from crates.io. Only what is missing is installed. Idempotent; works with no stdin (CI).
#
# Environment: CARGO_FUZZ_VERSION (default 0.13.2).
set -euo pipefail

CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"
log() { echo "install-fuzz: $*" >&2; }

if ! command -v rustup >/dev/null 2>&1; then
    log "rustup not found: cannot install the nightly toolchain"
    exit 1
fi
if rustup toolchain list | grep -q '^nightly'; then
    log "nightly toolchain already installed"
else
    log "rustup toolchain install nightly --profile minimal"
    rustup toolchain install nightly --profile minimal >&2
fi

installed="$(cargo fuzz --version 2>/dev/null | sed -n 's/^cargo-fuzz //p' || true)"
if [ "$installed" = "$CARGO_FUZZ_VERSION" ]; then
    log "cargo-fuzz $installed already installed"
else
    log "cargo install cargo-fuzz --version $CARGO_FUZZ_VERSION --locked"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >&2
fi
