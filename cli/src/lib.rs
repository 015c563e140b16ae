//! The library behind `istio-authz` (and the browser playground): a cluster dump read into
//! ambient's objects, a call walked hop by hop, and the lint. Host-agnostic: no I/O but
//! reading the files the caller names, no Wasm runtime, no TLS.

pub mod cluster;
pub mod lint;
pub mod mesh;
pub mod request;
pub mod simulate;
