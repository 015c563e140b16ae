//! The authz harness: fixtures, the native engine check, the Wasmtime proxy-wasm host
//! and the Envoy driver, shared by the `authz-harness` binary and the integration tests.

pub mod benchgen;
pub mod envoy;
pub mod fixture;
pub mod normalize;
pub mod oci;
pub mod replay;
pub mod stdout;
pub mod wasm;
pub mod wasm_decider;
