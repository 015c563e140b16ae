//! A full Layer 4 connection and a full Layer 7 request through the module in the Wasmtime
//! host (context creation, every callback Envoy makes, the property and header reads, the
//! deny reply), beside the same decision by the native engine.
//!
//! `cargo bench -p authz-wasm-host --bench module`. Compare rows of one run: the ratio
//! module / native is the cost of the proxy-wasm boundary in this host (Wasmtime, trivial
//! host functions), not in Envoy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_plugin::engine::{Engine, OwnedAttributes, OwnedHttp, Traffic, Verdict};
use authz_wasm_host::{module_for_tests, PluginInstance, WasmModule};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use std::hint::black_box;

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn ztunnel_config() -> Value {
    json!({"mode": "ztunnel",
        "workloads": [{"name": "productpage-v1", "namespace": "default", "labels": {"app": "productpage"}}],
        "policies": [policy("productpage-ztunnel", json!({"selector": {"matchLabels": {"app": "productpage"}},
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/bookinfo-gateway-istio", "cluster.local/ns/default/sa/waypoint"]}}]}]}))]})
}

fn waypoint_config() -> Value {
    json!({"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "productpage", "namespace": "default", "addresses": ["10.96.0.10"]}],
        "policies": [policy("productpage-waypoint", json!({"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}))]})
}

fn conn(principal: &str) -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: Some(principal.into()),
        source_ip: Some("10.0.0.7".parse().unwrap()),
        destination_ip: Some("10.96.0.10".parse().unwrap()),
        destination_port: Some(9080),
        ..Default::default()
    }
}

fn req(method: &str) -> OwnedAttributes {
    let headers = vec![
        ("user-agent".to_string(), b"curl/8.5.0".to_vec()),
        ("accept".to_string(), b"*/*".to_vec()),
    ];
    OwnedAttributes {
        http: Some(OwnedHttp::new(
            method.as_bytes(),
            b"/productpage",
            b"productpage:9080",
            headers,
            None,
        )),
        ..conn("spiffe://cluster.local/ns/default/sa/curl")
    }
}

fn instance(module: &WasmModule, config: &Value) -> PluginInstance {
    module
        .configure(&serde_json::to_vec(config).unwrap())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let path = module_for_tests().expect("build the module");
    let mut module = WasmModule::load(&path).unwrap();
    // Envoy at its default level: the module's debug lines are not emitted.
    module.set_log_level(2);
    let zt_native = Engine::from_json(&serde_json::to_vec(&ztunnel_config()).unwrap()).unwrap();
    let wp_native = Engine::from_json(&serde_json::to_vec(&waypoint_config()).unwrap()).unwrap();
    let mut zt = instance(&module, &ztunnel_config());
    let mut wp = instance(&module, &waypoint_config());

    let gateway = conn("spiffe://cluster.local/ns/default/sa/bookinfo-gateway-istio");
    let curl = conn("spiffe://cluster.local/ns/default/sa/curl");
    let get = req("GET");
    let delete = req("DELETE");
    for (o, want) in [
        (zt.connection(&gateway).unwrap().verdict, Verdict::Allow),
        (zt.connection(&curl).unwrap().verdict, Verdict::Deny),
        (wp.request(&get).unwrap().verdict, Verdict::Allow),
        (wp.request(&delete).unwrap().verdict, Verdict::Deny),
    ] {
        assert_eq!(o, want);
    }

    compare(
        c,
        "L4 connection",
        (&gateway, &curl),
        |attrs| zt_native.decide(Traffic::Connection, attrs),
        |attrs| zt.connection(attrs).unwrap(),
    );
    compare(
        c,
        "L7 request",
        (&get, &delete),
        |attrs| wp_native.decide(Traffic::Request, attrs),
        |attrs| wp.request(attrs).unwrap(),
    );
}

/// One benchmark group: the native engine beside the module, on an allowed and on a denied
/// case.
fn compare<N, M>(
    c: &mut Criterion,
    group: &str,
    (allowed, denied): (&OwnedAttributes, &OwnedAttributes),
    native: impl Fn(&OwnedAttributes) -> N,
    mut module: impl FnMut(&OwnedAttributes) -> M,
) {
    let mut g = c.benchmark_group(group);
    for (case, attrs) in [("allowed", allowed), ("denied", denied)] {
        g.bench_function(format!("native, {case}"), |b| {
            b.iter(|| native(black_box(attrs)))
        });
        g.bench_function(format!("module, {case}"), |b| {
            b.iter(|| module(black_box(attrs)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
