#!/usr/bin/env bash
# Runs every test: formatting, clippy (native and wasm32), unit and integration tests, and
# the replay of every fixture through the module and the native engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
HARNESS="${CARGO_TARGET_DIR:-target}/release/authz-harness"

./build.sh

echo "== format"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --locked --workspace --all-targets --release -- -D warnings
cargo clippy --locked -p authz-plugin --target wasm32-wasip1 --profile wasm -- -D warnings
echo "== tests"
cargo test --locked --workspace --release
echo "== replay"
"$HARNESS" replay --wasm dist/authz_plugin.wasm tests/
