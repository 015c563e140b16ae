//! Istio AuthorizationPolicy enforcement for proxy-wasm hosts.
//!
//! [`engine`] (the `authz-engine` crate, re-exported) is the whole semantics, host-agnostic and
//! usable natively; the proxy-wasm layer
//! (built only for `wasm32` WASI targets; the browser build, `wasm32-unknown-unknown`, has none)
//! is a thin shim that reads attributes from the host and enforces the engine's decision.

pub use authz_engine as engine;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;
