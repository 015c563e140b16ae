//! The module's linear memory for one configuration and for a reconfiguration, found as
//! `authz_bench::memory` finds it: by bisection of the linear-memory limit Wasmtime enforces.
//! A reconfiguration compiles the new configuration while the old one still decides, so it
//! needs both at once (and the new configuration's bytes).
//!
//! `cargo run --release -p authz-harness --example reconfigure_memory -- MODULE.wasm CONFIG.json...`

use authz_bench::memory::{measuring_settings, smallest_limit};
use authz_wasm_host::WasmModule;

/// Whether `config` configures (and, with `again`, then reconfigures) under `limit`.
fn fits(module: &[u8], config: &[u8], limit: usize, again: bool) -> anyhow::Result<bool> {
    let module = WasmModule::from_bytes(module, measuring_settings(limit))?;
    let Ok(mut instance) = module.configure(config) else {
        return Ok(false);
    };
    Ok(!again || instance.reconfigure(config).is_ok())
}

/// The smallest limit that fits, searched from 4 MiB.
fn bisect(module: &[u8], config: &[u8], again: bool) -> anyhow::Result<usize> {
    smallest_limit(0, 4 << 20, |limit| fits(module, config, limit, again))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let wasm = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: MODULE.wasm CONFIG.json..."))?;
    let module = std::fs::read(&wasm)?;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    for path in args {
        let config = std::fs::read(&path)?;
        let once = bisect(&module, &config, false)?;
        let twice = bisect(&module, &config, true)?;
        println!(
            "{path}: configure {:.2} MiB, reconfigure {:.2} MiB",
            mib(once),
            mib(twice)
        );
    }
    Ok(())
}
