//! The Wasmtime proxy-wasm host (being written; this placeholder keeps the crate building).
