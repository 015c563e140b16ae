//! A short soak (the long one is `bench/soak.sh`): Envoy with the module under load while
//! its listener is pushed every 1.5 s through two policy sets and one the module refuses.
//! No request may meet a gap or a decision no set in force gives, the refused set must never
//! be in force, and the module's counters must account for every response.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_bench::soak::{run, Options};
use authz_envoy::{envoy_or_skip, wasm_or_skip};
use std::time::Duration;

#[test]
fn reconfigurations_under_load_never_leave_a_gap_or_a_wrong_decision() {
    let test = "reconfigurations_under_load_never_leave_a_gap_or_a_wrong_decision";
    let Some(bin) = envoy_or_skip(test) else {
        return;
    };
    let Some(wasm) = wasm_or_skip(test) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let opts = Options {
        duration: Duration::from_secs(20),
        reconfigure_every: Duration::from_millis(1500),
        sample_every: Duration::from_secs(1),
        rate: 40,
        workers: 2,
        out: out.path().to_path_buf(),
        tag: "soak-test".into(),
        envoy_bin: Some(bin),
        wasm: Some(wasm),
    };
    let report = run(&opts).unwrap();
    eprintln!("{}", report.summary);
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(out.path().join("soak-test.dat").is_file());
    assert!(out.path().join("soak-test.md").is_file());
}
