//! Decision cost of the native engine: the seeds' policies, N generated waypoint policies
//! (N = 10 … 10,000) and ztunnel's own worst case (10,000 DENY policies × 10 rules).
//!
//! `cargo bench -p authz-engine --bench decide`. Reported as times; compare rows of one run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_engine::{Engine, OwnedAttributes, OwnedHttp, Traffic, Verdict};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Value};
use std::hint::black_box;

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn conn(principal: &str, port: u16) -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: Some(principal.into()),
        source_ip: Some("10.0.0.7".parse().unwrap()),
        destination_ip: Some("10.96.0.10".parse().unwrap()),
        destination_port: Some(port),
        ..Default::default()
    }
}

fn req(principal: &str, method: &str, path: &str) -> OwnedAttributes {
    OwnedAttributes {
        http: Some(OwnedHttp::new(
            method.as_bytes(),
            path.as_bytes(),
            b"productpage:9080",
            vec![("user-agent".into(), b"curl/8".to_vec())],
            None,
        )),
        ..conn(principal, 9080)
    }
}

/// The seeds' ztunnel (updated, with the waypoint and the Prometheus exception) and waypoint
/// configurations.
fn seeds() -> (Engine, Engine) {
    let ztunnel = json!({
        "mode": "ztunnel",
        "workloads": [{"name": "productpage-v1", "namespace": "default", "labels": {"app": "productpage"}, "addresses": ["10.96.0.10"]}],
        "policies": [policy("default", "productpage-ztunnel", json!({
            "selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
            "rules": [
                {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/bookinfo-gateway-istio", "cluster.local/ns/default/sa/waypoint"]}}]},
                {"from": [{"source": {"principals": ["cluster.local/ns/istio-system/sa/prometheus"]}}], "to": [{"operation": {"ports": ["9090"]}}]}
            ]}))]
    });
    let waypoint = json!({
        "mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "productpage", "namespace": "default", "addresses": ["10.96.0.10"]}],
        "policies": [policy("default", "productpage-waypoint", json!({
            "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}], "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}))]
    });
    (
        Engine::from_json(&serde_json::to_vec(&ztunnel).unwrap()).unwrap(),
        Engine::from_json(&serde_json::to_vec(&waypoint).unwrap()).unwrap(),
    )
}

/// N waypoint ALLOW policies for one service; policy i admits client-i for GET /api/i/*.
fn generated_waypoint(n: usize) -> Engine {
    let policies: Vec<Value> = (0..n)
        .map(|i| {
            policy("default", &format!("allow-{i:05}"), json!({
                "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
                "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/default/sa/client-{i}")]}}],
                           "to": [{"operation": {"methods": ["GET"], "paths": [format!("/api/{i}/*")]}}],
                           "when": [{"key": "request.headers[user-agent]", "values": ["curl/*"]}]}]}))
        })
        .collect();
    let config = json!({"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "productpage", "namespace": "default", "addresses": ["10.96.0.10"]}], "policies": policies});
    Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap()
}

/// ztunnel's worst case: N DENY policies × 10 rules, each rule 3 namespaces, 3 principals, a
/// source CIDR, a destination CIDR and a port.
fn ztunnel_worst_case(n: usize) -> Engine {
    let policies: Vec<Value> = (0..n)
        .map(|i| {
            let rules: Vec<Value> = (0..10)
                .map(|r| {
                    json!({
                        "from": [{"source": {
                            "namespaces": [format!("ns-{i}-{r}-a"), format!("ns-{i}-{r}-b"), format!("ns-{i}-{r}-c")],
                            "principals": [format!("cluster.local/ns/ns-{i}-{r}-a/sa/p"), format!("cluster.local/ns/ns-{i}-{r}-b/sa/p"), format!("cluster.local/ns/ns-{i}-{r}-c/sa/p")],
                            "ipBlocks": [format!("10.{}.{}.0/24", i % 250, r)]}}],
                        "to": [{"operation": {"ports": [format!("{}", 1000 + r)]}}],
                        "when": [{"key": "destination.ip", "values": [format!("10.96.{}.0/24", i % 250)]}]
                    })
                })
                .collect();
            policy("default", &format!("deny-{i:05}"), json!({"action": "DENY", "rules": rules}))
        })
        .collect();
    let config = json!({"mode": "ztunnel", "workloads": [{"name": "w", "namespace": "default"}], "policies": policies});
    Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let (zt, wp) = seeds();
    let gateway = conn(
        "spiffe://cluster.local/ns/default/sa/bookinfo-gateway-istio",
        9080,
    );
    let curl = conn("spiffe://cluster.local/ns/default/sa/curl", 9080);
    assert_eq!(
        zt.decide(Traffic::Connection, &gateway).verdict,
        Verdict::Allow
    );
    assert_eq!(zt.decide(Traffic::Connection, &curl).verdict, Verdict::Deny);
    let get = req(
        "spiffe://cluster.local/ns/default/sa/curl",
        "GET",
        "/productpage",
    );
    let delete = req(
        "spiffe://cluster.local/ns/default/sa/curl",
        "DELETE",
        "/productpage",
    );
    assert_eq!(wp.decide(Traffic::Request, &get).verdict, Verdict::Allow);
    assert_eq!(wp.decide(Traffic::Request, &delete).verdict, Verdict::Deny);

    let mut g = c.benchmark_group("seeds");
    g.bench_function("ztunnel gateway allowed", |b| {
        b.iter(|| zt.decide(Traffic::Connection, black_box(&gateway)))
    });
    g.bench_function("ztunnel curl denied", |b| {
        b.iter(|| zt.decide(Traffic::Connection, black_box(&curl)))
    });
    g.bench_function("waypoint GET allowed", |b| {
        b.iter(|| wp.decide(Traffic::Request, black_box(&get)))
    });
    g.bench_function("waypoint DELETE denied", |b| {
        b.iter(|| wp.decide(Traffic::Request, black_box(&delete)))
    });
    g.finish();

    let mut g = c.benchmark_group("waypoint policies");
    for n in [1usize, 10, 100, 1_000, 10_000] {
        let e = generated_waypoint(n);
        let last = req(
            &format!("spiffe://cluster.local/ns/default/sa/client-{}", n - 1),
            "GET",
            &format!("/api/{}/x", n - 1),
        );
        let stranger = req(
            "spiffe://cluster.local/ns/default/sa/stranger",
            "GET",
            "/api/0/x",
        );
        assert_eq!(e.decide(Traffic::Request, &last).verdict, Verdict::Allow);
        assert_eq!(e.decide(Traffic::Request, &stranger).verdict, Verdict::Deny);
        g.bench_with_input(BenchmarkId::new("allowed by the last", n), &n, |b, _| {
            b.iter(|| e.decide(Traffic::Request, black_box(&last)))
        });
        g.bench_with_input(BenchmarkId::new("denied, none matches", n), &n, |b, _| {
            b.iter(|| e.decide(Traffic::Request, black_box(&stranger)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ztunnel worst case");
    for n in [10usize, 10_000] {
        let e = ztunnel_worst_case(n);
        let miss = conn("spiffe://cluster.local/ns/x/sa/nobody", 1003);
        assert_eq!(e.decide(Traffic::Connection, &miss).verdict, Verdict::Allow);
        let hit = OwnedAttributes {
            source_ip: Some(format!("10.{}.3.9", (n - 1) % 250).parse().unwrap()),
            destination_ip: Some(format!("10.96.{}.1", (n - 1) % 250).parse().unwrap()),
            ..conn(
                &format!("spiffe://cluster.local/ns/ns-{}-3-b/sa/p", n - 1),
                1003,
            )
        };
        assert_eq!(e.decide(Traffic::Connection, &hit).verdict, Verdict::Deny);
        g.bench_with_input(
            BenchmarkId::new("DENY x10 rules, none matches", n),
            &n,
            |b, _| b.iter(|| e.decide(Traffic::Connection, black_box(&miss))),
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
