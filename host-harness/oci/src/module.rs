//! Does the module load? Compiles it with Wasmtime (Cranelift, default features: what V8 in
//! Envoy accepts too for rustc's `wasm32-wasip1` output) and checks the proxy-wasm surface a
//! host looks for: the ABI version marker, the context callbacks, the allocator, linear memory,
//! `_initialize`, and imports only from `env` (proxy-wasm host calls) and
//! `wasi_snapshot_preview1`.

use anyhow::{anyhow, bail, Result};
use std::fmt;

/// What [`inspect`] found.
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    pub size: usize,
    pub sha256: String,
    /// The exported `proxy_abi_version_*` marker(s).
    pub abi: Vec<String>,
    pub exports: Vec<String>,
    /// `(module, name)` of every import.
    pub imports: Vec<(String, String)>,
}

impl fmt::Display for ModuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes, sha256:{}, {}, {} exports, {} imports",
            self.size,
            self.sha256,
            self.abi.join(" "),
            self.exports.len(),
            self.imports.len()
        )
    }
}

/// Exports a proxy-wasm host needs from the module.
pub const REQUIRED_EXPORTS: &[&str] = &[
    "memory",
    "_initialize",
    "proxy_on_context_create",
    "proxy_on_vm_start",
    "proxy_on_configure",
];

/// Compiles `wasm` and checks its proxy-wasm surface.
pub fn inspect(wasm: &[u8]) -> Result<ModuleInfo> {
    if !super::check::is_valid_wasm_binary(wasm) {
        bail!("not a WebAssembly module (no \\0asm header)");
    }
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, wasm)
        .map_err(|e| anyhow!("Wasmtime cannot compile the module: {e:#}"))?;
    let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
    let imports: Vec<(String, String)> = module
        .imports()
        .map(|i| (i.module().to_string(), i.name().to_string()))
        .collect();
    let abi: Vec<String> = exports
        .iter()
        .filter(|e| e.starts_with("proxy_abi_version_"))
        .cloned()
        .collect();
    if abi.is_empty() {
        bail!("no proxy_abi_version_* export: not a proxy-wasm module");
    }
    let missing: Vec<&str> = REQUIRED_EXPORTS
        .iter()
        .copied()
        .filter(|r| !exports.iter().any(|e| e == r))
        .collect();
    if !missing.is_empty() {
        bail!("missing exports: {}", missing.join(", "));
    }
    if !exports
        .iter()
        .any(|e| e == "proxy_on_memory_allocate" || e == "malloc")
    {
        bail!("no allocator export (proxy_on_memory_allocate or malloc)");
    }
    let foreign: Vec<String> = imports
        .iter()
        .filter(|(m, _)| m != "env" && m != "wasi_snapshot_preview1")
        .map(|(m, n)| format!("{m}.{n}"))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "imports a proxy-wasm host does not provide: {}",
            foreign.join(", ")
        );
    }
    Ok(ModuleInfo {
        size: wasm.len(),
        sha256: super::sha256_hex(wasm),
        abi,
        exports,
        imports,
    })
}

/// The module the OCI tests pack: `$AUTHZ_WASM`, else `build.sh`'s `dist/authz_plugin.wasm`,
/// else `cargo build -p authz-plugin --target wasm32-wasip1 --profile wasm` (in
/// `$CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn module_for_tests() -> Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AUTHZ_WASM").filter(|p| !p.is_empty()) {
        return Ok(std::path::PathBuf::from(p));
    }
    // The module as shipped (after wasm-opt), when build.sh has made it.
    let dist = authz_fixture::workspace::repo_root().join("dist/authz_plugin.wasm");
    if dist.is_file() {
        return Ok(dist);
    }
    authz_wasm_host::build_module()
}
