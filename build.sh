#!/usr/bin/env bash
# Builds the proxy-wasm module (dist/authz_plugin.wasm) reproducibly, optimises it with
# wasm-opt, builds the harness, replays every fixture through the optimised module, and packs
# the module as an OCI image (dist/oci/, dist/authz-plugin-oci.tar) in the format Istio's
# WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy pull.
#
#   ./build.sh                 everything
#   ./build.sh --module-only   the module only (build + wasm-opt into dist/): what the
#                              reproducibility test (host-harness/tests/oci_reproducible.rs) runs
#
# Outputs:
#   dist/authz_plugin.unopt.wasm   the module as rustc wrote it
#   dist/authz_plugin.wasm         the module after wasm-opt -Oz (what ships)
#   dist/oci/                      OCI image layout, one image manifest tagged <version>
#   dist/authz-plugin-oci.tar      the same layout as a tarball (skopeo: oci-archive:FILE:TAG)
#   dist/SHA256SUMS                sha256 of the module and the tarball
#   dist/playground/               the browser playground (index.html, app.js, style.css, the
#                                  wasm-bindgen glue and its .wasm after wasm-opt): static files,
#                                  served by any static file server
#
# Reproducible: two checkouts of one commit, in different folders and with different
# CARGO_HOMEs, give byte-identical modules and images. Source, CARGO_HOME and toolchain paths
# are remapped for the wasm target only (CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS: the harness's
# build cache is not touched); the image's created time and tar mtimes are the commit time
# (SOURCE_DATE_EPOCH if set).
#
# The playground needs the wasm32-unknown-unknown target and wasm-bindgen-cli at the version of
# the wasm-bindgen crate in Cargo.lock; both are installed when missing (cargo install: minutes).
#
# Environment: SKIP_PLAYGROUND=1 skips the playground; SKIP_WASM_OPT=1 ships the unoptimised
# module when wasm-opt (Debian: binaryen,
# scripts/install-deps.sh) is missing; OCI_REVISION overrides the revision annotation
# (default: git HEAD); CARGO_TARGET_DIR and CARGO_HOME as usual.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

module_only=0
for arg in "$@"; do
  case "$arg" in
    --module-only) module_only=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac

# --- the module, reproducibly -------------------------------------------------------------
# rustc embeds source paths in panic locations: the checkout (workspace crates are passed as
# relative paths, but remap anyway), $CARGO_HOME/registry/src/... (dependencies) and the
# toolchain (std is already /rustc/<commit>/...). With several matching prefixes rustc applies
# the last one, so the most specific (CARGO_HOME, possibly inside the checkout) comes last.
remap=()
add_remap() { # FROM TO: remap FROM, and its resolved form if that differs
  local from=$1 to=$2 f
  for f in "$from" "$(realpath -m "$from")"; do
    if [[ "$f" =~ [[:space:]] ]]; then
      echo "build.sh: cannot remap a path with whitespace ($f): RUSTFLAGS are split on spaces" >&2
      exit 1
    fi
    [[ " ${remap[*]-} " == *" --remap-path-prefix=$f=$to "* ]] || remap+=("--remap-path-prefix=$f=$to")
  done
}
add_remap "$(rustc --print sysroot)" /rust/toolchain
add_remap "$(pwd -L)" /build/authz
add_remap "$(pwd -P)" /build/authz
add_remap "${CARGO_HOME:-$HOME/.cargo}" /cargo

# Cargo ignores target.<triple>.rustflags when RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS is set;
# then add the remapping there, for this one build only.
wasm_env=()
if [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
  echo "build.sh: note: CARGO_ENCODED_RUSTFLAGS is set; the module is reproducible only with the same value" >&2
  wasm_env=("CARGO_ENCODED_RUSTFLAGS=$CARGO_ENCODED_RUSTFLAGS$(printf '\x1f%s' "${remap[@]}")")
elif [ -n "${RUSTFLAGS:-}" ]; then
  echo "build.sh: note: RUSTFLAGS is set; the module is reproducible only with the same value" >&2
  wasm_env=("RUSTFLAGS=$RUSTFLAGS ${remap[*]}")
else
  wasm_env=("CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS=${CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS:+$CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS }${remap[*]}")
fi
env "${wasm_env[@]}" cargo build --locked -p authz-plugin --target wasm32-wasip1 --profile wasm

mkdir -p dist
cp "$target_dir/wasm32-wasip1/wasm/authz_plugin.wasm" dist/authz_plugin.unopt.wasm

# --- wasm-opt -------------------------------------------------------------------------------
# rustc 1.95's wasm32-wasip1 output uses these features (its target_features section, which
# wasm-opt also reads; Debian's binaryen 108 assumes MVP without it). Listing them keeps
# wasm-opt from validating against MVP and from using anything beyond them.
wasm_features=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
               --enable-mutable-globals --enable-reference-types --enable-multivalue
               --enable-extended-const)
if command -v wasm-opt >/dev/null 2>&1; then
  echo "wasm-opt: $(wasm-opt --version)"
  wasm-opt -Oz --strip-debug --strip-producers --strip-target-features "${wasm_features[@]}" \
    dist/authz_plugin.unopt.wasm -o dist/authz_plugin.wasm
elif [ "${SKIP_WASM_OPT:-0}" = "1" ]; then
  echo "build.sh: wasm-opt not found; SKIP_WASM_OPT=1: shipping the unoptimised module" >&2
  cp dist/authz_plugin.unopt.wasm dist/authz_plugin.wasm
else
  echo "build.sh: wasm-opt not found. Install binaryen (scripts/install-deps.sh, or apt-get install binaryen)," >&2
  echo "          or set SKIP_WASM_OPT=1 to ship the unoptimised module." >&2
  exit 1
fi
module_sha=$(sha256sum dist/authz_plugin.wasm | cut -d' ' -f1)
echo "module:  dist/authz_plugin.wasm ($(stat -c %s dist/authz_plugin.wasm) bytes, unoptimised $(stat -c %s dist/authz_plugin.unopt.wasm)) sha256:$module_sha"
if [ "$module_only" = 1 ]; then
  exit 0
fi

# --- the harness, and the fixture replay through the optimised module --------------------------
cargo build --locked --release -p authz-harness -p istio-authz
harness="$target_dir/release/authz-harness"

if ! replay_out=$("$harness" replay --wasm dist/authz_plugin.wasm tests/ 2>&1); then
  printf '%s\n' "$replay_out"
  echo "build.sh: the optimised module fails the fixture replay" >&2
  exit 1
fi
echo "replay (optimised module in Wasmtime, and the native engine): $(tail -n 1 <<<"$replay_out")"

# --- the OCI image ---------------------------------------------------------------------------
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
  created="@$SOURCE_DATE_EPOCH"
elif commit_time=$(git log -1 --format=%ct 2>/dev/null) && [ -n "$commit_time" ]; then
  created="@$commit_time"
else
  created="@0"
fi
revision=${OCI_REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
if [ -z "${OCI_REVISION:-}" ] && [ -n "$(git status --porcelain 2>/dev/null | head -n 1)" ]; then
  echo "build.sh: note: the working tree has uncommitted changes; the image names $revision but is not its content" >&2
fi
source_url=$(sed -n 's/^repository *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)

if ! oci_out=$("$harness" oci-layout --wasm dist/authz_plugin.wasm --out dist/oci --tar dist/authz-plugin-oci.tar \
       --source "${source_url:-unknown}" --revision "$revision" --created "$created" 2>&1); then
  printf '%s\n' "$oci_out" >&2
  exit 1
else
  printf '%s\n' "$oci_out"
  (cd dist && sha256sum authz_plugin.wasm authz-plugin-oci.tar > SHA256SUMS)
  manifest_sha=$(sed -n 's/^manifest: sha256:\([0-9a-f]\{64\}\).*/\1/p' <<<"$oci_out")
  echo "WasmPlugin / EnvoyExtensionPolicy sha256 for oci:// URLs: $manifest_sha"
  echo "sha256 for http(s):// URLs (the module):                  $module_sha"
fi
echo "harness: $harness"

# --- the playground ----------------------------------------------------------------------------
# The engine and istio-authz's walk for the browser (playground/, wasm-bindgen), and the page.
if [ "${SKIP_PLAYGROUND:-0}" = "1" ]; then
  echo "build.sh: SKIP_PLAYGROUND=1: not building dist/playground" >&2
  exit 0
fi
scripts/install-wasm-bindgen.sh
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
cargo build --locked -p authz-playground --target wasm32-unknown-unknown --profile playground
rm -rf dist/playground
mkdir -p dist/playground
# wasm-opt runs before wasm-bindgen: Debian's binaryen 108, run on wasm-bindgen's output, breaks
# the externref table wasm-bindgen adds (the page then fails to load). wasm-bindgen keeps the
# optimised code and adds only its small glue.
playground_wasm="$target_dir/wasm32-unknown-unknown/playground/authz_playground.wasm"
if command -v wasm-opt >/dev/null 2>&1; then
  wasm-opt -Oz --strip-debug --strip-producers "${wasm_features[@]}" \
    "$playground_wasm" -o "$target_dir/wasm32-unknown-unknown/playground/authz_playground.opt.wasm"
  playground_wasm="$target_dir/wasm32-unknown-unknown/playground/authz_playground.opt.wasm"
elif [ "${SKIP_WASM_OPT:-0}" != "1" ]; then
  echo "build.sh: wasm-opt not found (see above)" >&2
  exit 1
fi
wasm-bindgen --target web --no-typescript --out-name authz_playground --out-dir dist/playground \
  "$playground_wasm"
cp playground/web/index.html playground/web/app.js playground/web/style.css dist/playground/
echo "playground: dist/playground/ (authz_playground_bg.wasm $(stat -c %s dist/playground/authz_playground_bg.wasm) bytes)"
