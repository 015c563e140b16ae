//! Loading stays near-linear (issue 11, item 10). Measured in instructions the module's
//! `on_configure` executes in the Wasmtime host (fuel), which is deterministic: no timing is
//! asserted. Ten times the input must cost well under twenty-five times as much (quadratic
//! costs a hundred times; linear with hashing and allocation about ten). What is too large
//! is refused with an error that says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_bench::shapes;
use authz_plugin::engine::compile::MAX_INDEXED_RULES;
use authz_plugin::engine::Engine;
use authz_wasm_host::{module_for_tests, HostSettings, WasmModule};
use serde_json::Value;

fn module() -> WasmModule {
    let path = module_for_tests().expect("module");
    WasmModule::load_with(
        &path,
        HostSettings {
            fuel_per_callback: u64::MAX / 4,
            log_level: 3,
            ..Default::default()
        },
    )
    .expect("load")
}

fn fuel(module: &WasmModule, config: &Value) -> u64 {
    let bytes = serde_json::to_vec(config).expect("json");
    match module.configure(&bytes) {
        Ok(p) => p.configure_fuel(),
        Err(e) => panic!("configure failed: {e}"),
    }
}

fn assert_near_linear(what: &str, small: u64, large: u64, scale: f64) {
    let growth = large as f64 / small as f64;
    eprintln!("{what}: {small} -> {large} instructions, {growth:.1}x for {scale}x the input");
    assert!(
        growth < scale * 1.6,
        "{what}: {growth:.1}x the instructions for {scale}x the input (not near-linear)"
    );
}

#[test]
fn custom_policies_load_in_near_linear_instructions() {
    // Each CUSTOM policy leaves a load note; notes were de-duplicated by scanning all of them.
    let m = module();
    let small = fuel(&m, &shapes::custom(1_000));
    let large = fuel(&m, &shapes::custom(10_000));
    assert_near_linear("CUSTOM policies", small, large, 10.0);
    // 5,000 of them fit in the harness's default per-callback budget (they ran out of it).
    let bytes = serde_json::to_vec(&shapes::custom(5_000)).expect("json");
    let default_module = WasmModule::load(&module_for_tests().expect("module")).expect("load");
    assert!(default_module.configure(&bytes).is_ok());
}

#[test]
fn many_workloads_each_selected_by_its_own_policy_load_in_near_linear_instructions() {
    // Every workload was compared with every policy.
    let m = module();
    let small = fuel(&m, &shapes::workloads(500, 10));
    let large = fuel(&m, &shapes::workloads(5_000, 10));
    assert_near_linear("workloads with their own policies", small, large, 10.0);
}

#[test]
fn workloads_times_namespace_wide_policies_past_the_bound_are_refused_with_a_clear_error() {
    // 3,000 workloads with their own policy under 3,000 namespace-wide ones: 9 million rule
    // entries in 3,000 distinct rule sets. Loading took seconds and more than a gigabyte.
    let config = serde_json::to_vec(&shapes::workloads(3_000, 3_000)).expect("json");
    let err = Engine::from_json(&config).expect_err("too large");
    let msg = err.to_string();
    assert!(
        msg.starts_with("workloads: 3000 workloads with 6000 policies need"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("more than the {MAX_INDEXED_RULES}")),
        "{msg}"
    );
    // The module refuses it the same way, naming the reason in its log.
    match module().configure(&config) {
        Ok(_) => panic!("the module accepted a configuration past the bound"),
        Err(e) => assert!(e.to_string().contains("rule entries"), "{e}"),
    }
    // Just under the bound it loads.
    assert!(Engine::from_json(
        &serde_json::to_vec(&shapes::workloads(1_000, 1_000)).expect("json")
    )
    .is_ok());
}
