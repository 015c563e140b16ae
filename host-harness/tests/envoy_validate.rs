//! `envoy --mode validate` on the example configurations in deploy/envoy/, with the paths they
//! name (certificates, the module) rewritten to real files made for the test. Envoy's
//! validation loads the module and runs its `on_configure` with the example's plugin
//! configuration, so with the built module this also checks that the module accepts it.
//! Skips (reason printed) only when `.venv-envoy` is absent and `CI` is unset; under `CI` a
//! missing envoy or module fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use authz_envoy::examples::localize;
use authz_envoy::{envoy_or_skip, find_wasm, in_ci, validate, write_stand_in_module, TestEnv};

/// The built module (required under CI), else a stand-in that accepts any configuration,
/// which checks Envoy's side only.
fn module(env: &TestEnv, what: &str) -> PathBuf {
    let wasm = find_wasm();
    if wasm.is_file() {
        return wasm;
    }
    if in_ci() {
        panic!(
            "{what}: CI is set but the module {} is not built",
            wasm.display()
        );
    }
    eprintln!(
        "{what}: module {} not built; validating with a stand-in module",
        wasm.display()
    );
    let p = env.dir().join("stand-in.wasm");
    write_stand_in_module(&p).unwrap();
    p
}

fn check(example: &str, identity: &str) {
    let test = format!("envoy_validate {example}");
    let Some(bin) = envoy_or_skip(&test) else {
        return;
    };
    let env = TestEnv::with_bin(bin.clone()).unwrap();
    let wasm = module(&env, &test);
    let config = localize(&env, example, identity, &wasm, &[]).unwrap();
    if let Err(e) = validate(&bin, &config) {
        panic!("{e:#}");
    }
}

#[test]
fn envoy_validate_waypoint_example() {
    check("waypoint.yaml", "cluster.local/ns/default/sa/waypoint");
}

#[test]
fn envoy_validate_ztunnel_example() {
    check(
        "ztunnel.yaml",
        "cluster.local/ns/default/sa/bookinfo-productpage",
    );
}

/// Validation really checks: a configuration with a typo fails.
#[test]
fn envoy_validate_rejects_a_broken_config() {
    let Some(bin) = envoy_or_skip("envoy_validate_rejects_a_broken_config") else {
        return;
    };
    let env = TestEnv::with_bin(bin.clone()).unwrap();
    let wasm = module(&env, "envoy_validate_rejects_a_broken_config");
    let broken = localize(
        &env,
        "ztunnel.yaml",
        "cluster.local/ns/default/sa/bookinfo-productpage",
        &wasm,
        &[(
            "upstream_connect_mode: ON_DOWNSTREAM_DATA",
            "upstream_connect_mode: ON_DOWNSTREAM_DATTA",
        )],
    )
    .unwrap();
    let err = validate(&bin, &broken).expect_err("a broken config must not validate");
    assert!(
        format!("{err:#}").contains("ON_DOWNSTREAM_DATTA"),
        "{err:#}"
    );
}

/// With the real module, a plugin configuration the module rejects fails validation (Envoy
/// runs the module's on_configure while validating).
#[test]
fn envoy_validate_rejects_a_bad_plugin_configuration() {
    let Some(bin) = envoy_or_skip("envoy_validate_rejects_a_bad_plugin_configuration") else {
        return;
    };
    let wasm = find_wasm();
    if !wasm.is_file() && !in_ci() {
        eprintln!("SKIPPED envoy_validate_rejects_a_bad_plugin_configuration: module not built");
        return;
    }
    let env = TestEnv::with_bin(bin.clone()).unwrap();
    let bad = localize(
        &env,
        "ztunnel.yaml",
        "cluster.local/ns/default/sa/bookinfo-productpage",
        &wasm,
        &[("\"mode\": \"ztunnel\"", "\"mode\": \"sidecar\"")],
    )
    .unwrap();
    let err = validate(&bin, &bad).expect_err("the module must reject mode: sidecar");
    assert!(
        format!("{err:#}").contains("Unable to create Wasm plugin"),
        "{err:#}"
    );
}
