#!/usr/bin/env bash
# Where the proxy-wasm module's bytes go (README, "Module size").
#
# Builds the module as build.sh does, runs wasm-opt -Oz on it and prints its size; then builds
# it once more with symbols kept (a separate target directory, so the shipped build is not
# touched), optimises that the same way keeping only the name section, and runs twiggy on it:
# the largest functions (`twiggy top`), what keeps them in (`twiggy dominators`), and the size
# per crate. The names add bytes of their own; the code is the same.
#
#   scripts/module-size.sh          the summary
#   scripts/module-size.sh -n 60    more rows of `twiggy top`
#
# Installs twiggy with `cargo install --locked twiggy` when it is missing (it reads wasm
# binaries' call graphs and attributes each function's size; crates.io).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
rows=25
if [ "${1:-}" = "-n" ] && [ -n "${2:-}" ]; then
    rows=$2
fi

if ! command -v twiggy >/dev/null 2>&1; then
    echo "module-size: cargo install --locked twiggy" >&2
    cargo install --locked twiggy >&2
fi
if ! command -v wasm-opt >/dev/null 2>&1; then
    echo "module-size: wasm-opt not found (Debian: binaryen; scripts/install-deps.sh)" >&2
    exit 1
fi

target_dir=${CARGO_TARGET_DIR:-target}
# The features build.sh lists for wasm-opt (see there).
features=(--enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
          --enable-mutable-globals --enable-reference-types --enable-multivalue
          --enable-extended-const)
scratch="$target_dir/module-size"
mkdir -p "$scratch"

cargo build --locked -p authz-plugin --target wasm32-wasip1 --profile wasm >&2
wasm-opt -Oz --strip-debug --strip-producers --strip-target-features "${features[@]}" \
    "$target_dir/wasm32-wasip1/wasm/authz_plugin.wasm" -o "$scratch/authz_plugin.wasm"
echo "module after wasm-opt -Oz: $(stat -c %s "$scratch/authz_plugin.wasm") bytes"

# Symbols kept: rustc's `strip` off; wasm-opt -g keeps the name section, --strip-dwarf drops
# std's debug info.
CARGO_PROFILE_WASM_STRIP=none cargo build --locked -p authz-plugin --target wasm32-wasip1 \
    --profile wasm --target-dir "$scratch/target" >&2
wasm-opt -Oz -g --strip-dwarf --strip-producers --strip-target-features "${features[@]}" \
    "$scratch/target/wasm32-wasip1/wasm/authz_plugin.wasm" -o "$scratch/authz_plugin.named.wasm"
named="$scratch/authz_plugin.named.wasm"

echo
echo "== twiggy top -n $rows"
twiggy top -n "$rows" "$named"
echo
echo "== twiggy dominators (what each entry point keeps in, items of 1,500 bytes or more)"
twiggy dominators -d 7 -r 1000 "$named" | awk -F'┊' 'NR <= 2 || $1 + 0 >= 1500' 
echo
echo "== bytes per crate (function names, hash suffixes dropped)"
twiggy top -n 100000 -f csv "$named" | awk -F, '
    NR == 1 { next }
    {
        name = $0; sub(/,[^,]*,[^,]*,[^,]*,[^,]*$/, "", name); gsub(/"/, "", name)
        size = $(NF - 3)
        if (name ~ /^function names/ || name ~ /subsection$/) crate = "(name section: not shipped)"
        else if (name ~ /^data segment/) crate = "(data: strings, tables)"
        else if (match(name, /authz_engine::[a-z_]+/)) crate = substr(name, RSTART, RLENGTH)
        else if (name ~ /authz_plugin::/) crate = "authz_plugin"
        else if (name ~ /proxy_wasm::/) crate = "proxy_wasm"
        else if (name ~ /hashbrown|foldhash/) crate = "hashbrown"
        else if (name ~ /serde/) crate = "serde"
        else if (name ~ /flt2dec|fmt::float|f64|f32|dec2flt/) crate = "float formatting"
        else if (name ~ /fmt/) crate = "core::fmt"
        else if (name ~ /^(dlmalloc|dlfree|dispose_chunk|realloc|prepend_alloc|malloc|free|tmalloc|sys_alloc)/ || name ~ /alloc::alloc/) crate = "allocator"
        else if (name ~ /btree/) crate = "alloc::collections::btree"
        else if (name ~ /sort/) crate = "slice sorting"
        else if (name ~ /net::parser|net::/) crate = "core::net (IP parsing)"
        else if (name ~ /std/) crate = "std (other)"
        else crate = "other (core, alloc, generic code)"
        total[crate] += size
    }
    END { for (c in total) printf "%8d  %s\n", total[c], c }' | sort -rn
