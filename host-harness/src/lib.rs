//! The authz harness: fixtures, the native engine check, the Wasmtime proxy-wasm host
//! and the Envoy driver, shared by the `authz-harness` binary and the integration tests.

pub mod benchgen;
pub mod envoy;
pub mod normalize;
pub mod oci;
pub mod soak;
pub mod stdout;
pub mod wasm;
pub mod wasm_decider;

// The fixture format and the native replay live in their own crate, free of Wasmtime and the
// TLS stack, so that the user-facing tool can replay fixtures too.
pub use authz_fixture::{fixture, replay};
