#!/usr/bin/env bash
# Installs wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock (the CLI and
# the crate must match exactly), unless that version is already on PATH. Used by
# scripts/install-deps.sh and by build.sh for the browser playground. Takes a few minutes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "install-wasm-bindgen: $*" >&2; }

version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$root/Cargo.lock")
if [ -z "$version" ]; then
    log "no wasm-bindgen in Cargo.lock"
    exit 1
fi
if command -v wasm-bindgen >/dev/null 2>&1 && [ "$(wasm-bindgen --version | cut -d' ' -f2)" = "$version" ]; then
    log "wasm-bindgen $version already installed"
    exit 0
fi
log "cargo install --locked wasm-bindgen-cli --version $version"
if ! cargo install --locked wasm-bindgen-cli --version "$version" >&2; then
    # --locked pins the CLI's own dependencies to its published lock file; a registry mirror
    # that lacks one of those versions can still resolve compatible ones.
    log "--locked failed; retrying with the newest compatible dependencies"
    cargo install wasm-bindgen-cli --version "$version" >&2
fi
