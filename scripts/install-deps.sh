#!/usr/bin/env bash
# Installs what the build and CI need beyond the Rust toolchain itself:
#   - rustup target wasm32-wasip1 (the proxy-wasm module's target)
#   - Debian packages: binaryen (wasm-opt), skopeo (OCI images), docker-registry (a local
#     OCI registry for the image tests), gnuplot-nox (the soak's and benchmark's plots)
# Only what is missing is installed. Works as root with no stdin (CI). Idempotent.
#
# Environment: SKIP_APT=1 skips the Debian part; EXTRA_APT="pkg ..." adds packages.
set -euo pipefail

log() { echo "install-deps: $*" >&2; }

# --- rustup -------------------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
        log "rust target wasm32-wasip1 already installed"
    else
        log "rustup target add wasm32-wasip1"
        rustup target add wasm32-wasip1 >&2
    fi
else
    log "rustup not found: cannot add wasm32-wasip1 (install rustup first)"
    exit 1
fi

# --- Debian -------------------------------------------------------------------------------
if [ "${SKIP_APT:-0}" = "1" ]; then
    log "SKIP_APT=1: not installing Debian packages"
    exit 0
fi

packages=(binaryen skopeo docker-registry gnuplot-nox ${EXTRA_APT:-})
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
