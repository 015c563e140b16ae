//! The proxy-wasm module in the Wasmtime host, as a [`Decider`].

use crate::fixture::{Case, Fixture};
use crate::replay::{Decider, Observed};
use anyhow::{bail, Result};
use std::path::Path;

pub struct WasmDecider;

impl WasmDecider {
    pub fn load(path: &Path) -> Result<WasmDecider> {
        bail!("{}: the Wasmtime host is not built into this harness yet; use --native-only", path.display())
    }

    pub fn explain(&mut self, _case: &Case) -> Result<serde_json::Value, String> {
        Err("the Wasmtime host is not built into this harness yet".into())
    }
}

impl Decider for WasmDecider {
    fn label(&self) -> &str {
        "wasm"
    }
    fn configure(&mut self, _fixture: &Fixture) -> Result<(), String> {
        Err("the Wasmtime host is not built into this harness yet".into())
    }
    fn decide(&mut self, _case: &Case) -> Result<Result<Observed, String>, String> {
        Err("the Wasmtime host is not built into this harness yet".into())
    }
}
