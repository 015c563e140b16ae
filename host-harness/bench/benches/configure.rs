//! Configure time over the shapes that once made loading super-linear
//! (`authz_bench::shapes`): N CUSTOM policies, N ALLOW policies, a ztunnel's W
//! workloads under P namespace-wide policies, and a YAML fixture of N nested brackets.
//!
//! `cargo bench -p authz-bench --bench configure` prints one table: per shape and size,
//! the native load time (parse, validate, compile, index: `Engine::from_json`), the Wasm
//! module's `on_configure` in the Wasmtime host as instructions executed (Wasmtime fuel:
//! deterministic, unlike time on a shared machine), and the growth from the previous size.
//! The target is linear growth: 5 times the input should cost about 5 times as much
//! (a little more is allocation and hashing; 25 times would be quadratic). What is too large
//! must be refused with a clear error, quickly. `CONFIGURE_BENCH_OUT=FILE` also writes the
//! table as Markdown. Nothing here is asserted: `tests/wasm_configure_scale.rs` checks the
//! deterministic (fuel) growth.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_bench::shapes;
use authz_fixture::fixture;
use authz_plugin::engine::Engine;
use authz_wasm_host::{module_for_tests, HostSettings, WasmModule};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn time<T>(f: impl Fn() -> T) -> (Duration, T) {
    // The fastest of up to 3 runs (at most ~3 s of repetitions).
    let start = Instant::now();
    let mut out = f();
    let mut best = start.elapsed();
    for _ in 0..2 {
        if best > Duration::from_secs(1) {
            break;
        }
        let s = Instant::now();
        out = f();
        best = best.min(s.elapsed());
    }
    (best, out)
}

struct Row {
    shape: String,
    size: String,
    scale: f64,
    native: Duration,
    native_result: String,
    fuel: Option<u64>,
    wasm_result: String,
}

fn main() {
    let wasm = module_for_tests().ok().and_then(|p| {
        WasmModule::load_with(
            &p,
            HostSettings {
                fuel_per_callback: u64::MAX / 4,
                log_level: 3,
                ..Default::default()
            },
        )
        .ok()
    });
    if wasm.is_none() {
        eprintln!("configure bench: the module is not built; Wasm columns left empty");
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut run = |shape: &str, size: String, scale: f64, config: Value, with_wasm: bool| {
        let bytes = serde_json::to_vec(&config).unwrap_or_default();
        let (native, result) = time(|| Engine::from_json(&bytes));
        let native_result = match result {
            Ok(e) => format!("{} policies, {} notes", e.policies().len(), e.notes().len()),
            Err(e) => format!("refused: {e}"),
        };
        let (fuel, wasm_result) = match (&wasm, with_wasm) {
            (Some(m), true) => match m.configure(&bytes) {
                Ok(p) => (Some(p.configure_fuel()), "configured".to_string()),
                Err(e) => (
                    None,
                    format!("failed: {}", e.to_string().lines().next().unwrap_or("")),
                ),
            },
            _ => (None, "-".to_string()),
        };
        eprintln!("{shape} {size}: {native:?} {native_result}; wasm {fuel:?} {wasm_result}");
        rows.push(Row {
            shape: shape.into(),
            size,
            scale,
            native,
            native_result,
            fuel,
            wasm_result,
        });
    };
    for (shape, policies) in [
        ("CUSTOM policies", shapes::custom as fn(usize) -> Value),
        ("ALLOW policies", shapes::allow),
    ] {
        for n in [2_000, 10_000, 50_000] {
            run(shape, n.to_string(), n as f64, policies(n), n <= 10_000);
        }
    }
    for (w, p) in [(200, 200), (1_000, 1_000), (3_000, 3_000)] {
        run(
            "workloads x namespace-wide policies",
            format!("{w} x {p}"),
            (w * p) as f64,
            shapes::workloads(w, p),
            w <= 1_000,
        );
    }
    for n in [1_000, 5_000, 10_000, 50_000] {
        run(
            "ztunnel workloads, 10 namespace-wide policies",
            format!("{n} x 10"),
            n as f64,
            shapes::workloads(n, 10),
            n <= 10_000,
        );
    }

    let mut table = String::from(
        "| shape | size | native load | native growth | module on_configure (instructions) | module growth | result |\n|---|---|---|---|---|---|---|\n",
    );
    let mut prev: Option<&Row> = None;
    for r in &rows {
        let same = prev.filter(|p| p.shape == r.shape);
        let growth =
            |a: f64, b: f64, scale: f64| format!("{:.1}x for {:.0}x the input", b / a, scale);
        let native_growth = same
            .map(|p| {
                growth(
                    p.native.as_secs_f64(),
                    r.native.as_secs_f64(),
                    r.scale / p.scale,
                )
            })
            .unwrap_or_default();
        let fuel_growth = match (same.and_then(|p| p.fuel), r.fuel) {
            (Some(a), Some(b)) => {
                growth(a as f64, b as f64, r.scale / same.map_or(1.0, |p| p.scale))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            table,
            "| {} | {} | {:.1} ms | {} | {} | {} | {}; module: {} |",
            r.shape,
            r.size,
            r.native.as_secs_f64() * 1000.0,
            native_growth,
            r.fuel
                .map_or("-".to_string(), |f| format!("{:.3e}", f as f64)),
            fuel_growth,
            r.native_result,
            r.wasm_result
        );
        prev = Some(r);
    }

    // The fixture reader on nested brackets: refused quickly at any size.
    let _ = writeln!(
        table,
        "\n| nested YAML brackets | read time | result |\n|---|---|---|"
    );
    for n in [1_000, 10_000, 200_000] {
        let text = shapes::nested_yaml(n);
        let (t, r) = time(|| fixture::parse_value(&text, false));
        let _ = writeln!(
            table,
            "| {n} | {:.2} ms | {} |",
            t.as_secs_f64() * 1000.0,
            r.map(|_| "read".to_string())
                .unwrap_or_else(|e| format!("refused: {e:#}"))
        );
    }
    print!("{table}");
    if let Some(out) = std::env::var_os("CONFIGURE_BENCH_OUT") {
        let _ = std::fs::write(out, &table);
    }
}
