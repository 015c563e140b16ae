//! Istio AuthorizationPolicy enforcement for proxy-wasm hosts.
//!
//! [`engine`] is the whole semantics, host-agnostic and usable natively; the proxy-wasm layer
//! (built only for `wasm32`) is a thin shim that reads attributes from the host and enforces
//! the engine's decision.

pub mod engine;

#[cfg(target_arch = "wasm32")]
mod filter;
