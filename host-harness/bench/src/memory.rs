//! Configure time and linear memory of the module, measured in the Wasmtime harness, and the
//! native engine's configure time.
//!
//! Envoy does not report a Wasm VM's linear memory, and the harness's `PluginInstance` does not
//! expose it either; what it does expose is the linear memory *limit*
//! (`HostSettings::max_memory_bytes`, enforced by Wasmtime on every `memory.grow`). So the
//! memory a configuration needs is found by bisection: the smallest limit under which the
//! canary and the worker VM both configure successfully (a failed `memory.grow` makes the
//! module's allocator abort, which is a trap). The result is exact to one 64 KiB page below
//! 4 MiB and to 1/64 above.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use authz_plugin::engine::Engine;
use serde::Serialize;

use authz_wasm_host::{HostSettings, WasmModule};

const PAGE: usize = 64 * 1024;

/// What one configuration costs.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    /// `Engine::from_json` (parse + validate + compile), median, milliseconds.
    pub native_configure_ms: f64,
    /// One `proxy_on_configure` of the module in Wasmtime (Cranelift, with fuel metering),
    /// median, milliseconds: a reconfiguration of a configured VM, or, when that does not fit
    /// in the memory limit (the old configuration is alive while the new one is built), half
    /// of a first configuration (canary and worker VM, instantiation included).
    /// Whether a reconfiguration (both configurations alive) fit in 1 GiB of linear memory.
    pub reconfigure_fits_1gib: Option<bool>,
    pub wasmtime_configure_ms: Option<f64>,
    /// The module's declared initial linear memory.
    pub initial_memory_bytes: Option<u64>,
    /// The linear memory the module needs once configured (bisection of the limit).
    pub linear_memory_bytes: Option<u64>,
    pub config_bytes: usize,
    /// `Engine::decide` on the load's allowed and denied request, nanoseconds (native code):
    /// the engine's share of the module's per-request cost.
    pub native_decide_ns_allow: Option<f64>,
    pub native_decide_ns_deny: Option<f64>,
}

impl Footprint {
    pub fn empty(config_bytes: usize) -> Footprint {
        Footprint {
            native_configure_ms: f64::NAN,
            wasmtime_configure_ms: None,
            reconfigure_fits_1gib: None,
            initial_memory_bytes: None,
            linear_memory_bytes: None,
            config_bytes,
            native_decide_ns_allow: None,
            native_decide_ns_deny: None,
        }
    }
}

/// Mean time of one `Engine::decide`, nanoseconds, over at least 50 ms.
pub fn native_decide_ns(
    engine: &Engine,
    traffic: authz_plugin::engine::Traffic,
    attrs: &authz_plugin::engine::OwnedAttributes,
) -> f64 {
    let mut iterations = 0u64;
    let start = Instant::now();
    let mut batch = 1u64;
    while start.elapsed() < Duration::from_millis(50) {
        for _ in 0..batch {
            std::hint::black_box(engine.decide(traffic, std::hint::black_box(attrs)));
        }
        iterations += batch;
        batch = (batch * 2).min(1 << 16);
    }
    start.elapsed().as_secs_f64() * 1e9 / iterations as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median wall time of `f`, repeated until `budget` is spent (at least once, at most 15 times).
fn time<T>(budget: Duration, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.is_empty() || (start.elapsed() < budget && samples.len() < 15) {
        let t = Instant::now();
        let _ = f()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(samples))
}

/// The native engine's configure time.
pub fn native_configure_ms(config: &[u8], budget: Duration) -> Result<f64> {
    time(budget, || {
        Engine::from_json(config).map_err(|e| anyhow!("configuration rejected: {e}"))
    })
}

/// The host settings for measuring configure under a linear memory limit of `limit` bytes.
pub fn measuring_settings(limit: usize) -> HostSettings {
    HostSettings {
        // Configuring ten thousand policies is far more than one request's budget.
        fuel_per_callback: u64::MAX / 4,
        max_memory_bytes: limit,
        log_level: 3,
        ..HostSettings::default()
    }
}

fn initial_memory(bytes: &[u8]) -> Result<u64> {
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, bytes)?;
    for e in module.exports() {
        if let wasmtime::ExternType::Memory(m) = e.ty() {
            return Ok(m.minimum() * PAGE as u64);
        }
    }
    bail!("the module exports no memory")
}

/// Whether the module configures under a linear memory limit of `limit` bytes.
fn fits(bytes: &[u8], config: &[u8], limit: usize) -> Result<bool> {
    let module = WasmModule::from_bytes(bytes, measuring_settings(limit))?;
    Ok(module.configure(config).is_ok())
}

/// The smallest linear memory limit under which `fits` holds, found by bisection: from `lo`
/// (taken not to fit) and `hi`, doubled until it fits, to one page below 4 MiB and to 1/64
/// above. An error when nothing up to 4 GiB fits.
pub fn smallest_limit(
    mut lo: usize,
    mut hi: usize,
    mut fits: impl FnMut(usize) -> Result<bool>,
) -> Result<usize> {
    while !fits(hi)? {
        lo = hi;
        hi = hi.saturating_mul(2);
        if hi > 4 << 30 {
            bail!("the module does not configure within 4 GiB of linear memory");
        }
    }
    while hi - lo > PAGE.max(if hi > 4 << 20 { hi / 64 } else { 0 }) {
        let mid = (lo + (hi - lo) / 2) / PAGE * PAGE;
        if mid <= lo {
            break;
        }
        if fits(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// The module's configure time (Wasmtime) and the linear memory it needs for `config`.
pub fn module_footprint(wasm: &Path, config: &[u8], budget: Duration) -> Result<Footprint> {
    let bytes = std::fs::read(wasm).map_err(|e| anyhow!("reading {}: {e}", wasm.display()))?;
    let initial = initial_memory(&bytes)?;
    let module = WasmModule::from_bytes(&bytes, measuring_settings(1 << 30))?;
    let started = Instant::now();
    let mut instance = module
        .configure(config)
        .map_err(|e| anyhow!("the module rejected the configuration: {e}"))?;
    let first_ms = started.elapsed().as_secs_f64() * 1e3 / 2.0;
    let reconfigure = time(budget, || {
        instance
            .reconfigure(config)
            .map_err(|e| anyhow!("reconfigure: {e}"))
    });
    drop(instance);
    let (configure_ms, reconfigure_fits) = match reconfigure {
        Ok(ms) => (ms, true),
        Err(_) => (first_ms, false),
    };
    let hi = smallest_limit(
        (initial as usize).saturating_sub(PAGE),
        (initial as usize).max(PAGE),
        |limit| fits(&bytes, config, limit),
    )?;
    Ok(Footprint {
        wasmtime_configure_ms: Some(configure_ms),
        reconfigure_fits_1gib: Some(reconfigure_fits),
        initial_memory_bytes: Some(initial),
        linear_memory_bytes: Some(hi as u64),
        ..Footprint::empty(config.len())
    })
}
