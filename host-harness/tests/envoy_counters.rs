//! The module's counters in a real Envoy: decisions are counted inside the VM and handed to
//! Envoy on the root context's timer, so they appear in Envoy's stats within a tick, exact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Plugin};
use authz_envoy::upstream::Upstream as App;
use common::{envoy_and_module, ip, start_with_listener, CURL};
use serde_json::json;

#[test]
fn counters_reach_envoy_within_a_tick() {
    let Some((env, wasm)) = envoy_and_module("counters_reach_envoy_within_a_tick") else {
        return;
    };
    let app = App::http("productpage", ip("127.0.12.30"), "ok").unwrap();
    let config = json!({
        "mode": "waypoint",
        "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "productpage", "namespace": "default",
                      "hosts": ["productpage.default.svc.cluster.local"], "addresses": ["127.0.12.20"]}],
        "policies": [{
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "productpage-waypoint", "namespace": "default"},
            "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
                     "rules": [{"from": [{"source": {"principals": [CURL]}}],
                                "to": [{"operation": {"methods": ["GET"]}}]}]},
        }],
    });
    let (envoy, port) = start_with_listener(
        &env,
        EnvoySpec::default(),
        "waypoint",
        ip("127.0.12.20"),
        ListenerKind::Http {
            plugin: Some(Plugin::new(&wasm, config.to_string())),
        },
        app.addr(),
    );
    let host = "productpage.default.svc.cluster.local";
    for method in ["GET", "GET", "GET", "DELETE"] {
        let r = envoy
            .request_http(Some(CURL), ip("127.0.12.5"), port, method, "/", host, &[])
            .unwrap();
        assert_eq!(r.status, if method == "GET" { 200 } else { 403 }, "{r:?}");
    }
    let allow = "wasmcustom.authz.policy.default.productpage-waypoint.allow";
    let deny = "wasmcustom.authz.default.deny";
    let start = Instant::now();
    while (envoy.stat(allow), envoy.stat(deny)) != (3, 1) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "counters after {:?}: {allow}={} {deny}={}\n{:?}",
            start.elapsed(),
            envoy.stat(allow),
            envoy.stat(deny),
            envoy.stats("authz").unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
