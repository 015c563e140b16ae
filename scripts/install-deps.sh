#!/usr/bin/env bash
# Installs what the build and CI need beyond the Rust toolchain itself:
#   - rustup targets wasm32-wasip1 (the proxy-wasm module's target) and wasm32-unknown-unknown
#     (the browser playground)
#   - wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock (cargo install;
#     it must match the crate exactly; this takes a few minutes)
#   - Debian packages: binaryen (wasm-opt), skopeo (OCI images), docker-registry (a local
#     OCI registry for the image tests), gnuplot-nox (the soak's and benchmark's plots),
#     chromium and chromium-driver (the playground's browser test)
# Only what is missing is installed. Works as root with no stdin (CI). Idempotent.
#
# Environment: SKIP_APT=1 skips the Debian part; EXTRA_APT="pkg ..." adds packages.
set -euo pipefail

log() { echo "install-deps: $*" >&2; }

# --- rustup -------------------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    for target in wasm32-wasip1 wasm32-unknown-unknown; do
        if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
            log "rust target $target already installed"
        else
            log "rustup target add $target"
            rustup target add "$target" >&2
        fi
    done
else
    log "rustup not found: cannot add wasm32-wasip1 (install rustup first)"
    exit 1
fi

# --- wasm-bindgen-cli ---------------------------------------------------------------------------
"$(dirname "${BASH_SOURCE[0]}")/install-wasm-bindgen.sh"

# --- Debian -------------------------------------------------------------------------------
if [ "${SKIP_APT:-0}" = "1" ]; then
    log "SKIP_APT=1: not installing Debian packages"
    exit 0
fi

packages=(binaryen skopeo docker-registry gnuplot-nox chromium chromium-driver ${EXTRA_APT:-})
missing=()
for p in "${packages[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        log "$p already installed"
    else
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "all Debian packages present"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        log "not root and no sudo: cannot install ${missing[*]}"
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
"${SUDO[@]}" apt-get update -q </dev/null >&2
log "apt-get install -y ${missing[*]}"
# docker-registry's postinst may try to start a service; with no init system that is harmless
# (policy-rc.d is respected by invoke-rc.d). Don't let a service start fail the install.
"${SUDO[@]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" </dev/null >&2
log "installed: ${missing[*]}"
