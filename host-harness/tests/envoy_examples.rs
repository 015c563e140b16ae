//! The example configurations of deploy/envoy/ run for real, as a user would deploy them,
//! moved onto loopback: the destination ztunnel of productpage-v1 (127.0.11.10:9080 and
//! :9090, with the workload's certificate) and the waypoint (127.0.11.20:9080, with the
//! waypoint's certificate, forwarding to the ztunnel). Only addresses, the admin port and file
//! paths are rewritten; the plugin configurations and policies are the examples' own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_envoy::client::{ConnError, HttpResult};
use authz_envoy::examples::localize;
use authz_envoy::upstream::Upstream;
use authz_envoy::{Envoy, ListenerInfo};
use common::{envoy_and_module, ip, CURL, GATEWAY, PRODUCTPAGE_TITLE, PROMETHEUS, REVIEWS};

fn listener(name: &str, addr: &str) -> ListenerInfo {
    ListenerInfo {
        name: name.into(),
        addr: addr.parse().unwrap(),
        tls: true,
    }
}

fn get(
    envoy: &Envoy,
    who: &str,
    from: &str,
    port: u16,
    method: &str,
    path: &str,
) -> Result<HttpResult, ConnError> {
    envoy.request_http(
        Some(who),
        ip(from),
        port,
        method,
        path,
        "productpage:9080",
        &[],
    )
}

#[test]
fn envoy_examples_enforce_the_seeds() {
    let Some((env, wasm)) = envoy_and_module("envoy_examples_enforce_the_seeds") else {
        return;
    };
    let page = Upstream::http(
        "productpage",
        ip("127.0.11.11"),
        &format!("<html><head>{PRODUCTPAGE_TITLE}</head></html>"),
    )
    .unwrap();
    let metrics = Upstream::http("metrics", ip("127.0.11.11"), "requests_total 1\n").unwrap();

    let page_addr = format!(
        "address: {}, port_value: {}",
        page.addr().ip(),
        page.addr().port()
    );
    let metrics_addr = format!(
        "address: {}, port_value: {}",
        metrics.addr().ip(),
        metrics.addr().port()
    );
    let ztunnel_cfg = localize(
        &env,
        "ztunnel.yaml",
        "cluster.local/ns/default/sa/bookinfo-productpage",
        &wasm,
        &[
            (
                "address: 127.0.0.1, port_value: 15000",
                "address: 127.0.0.1, port_value: 0",
            ),
            (
                "address: 0.0.0.0, port_value: 9080",
                "address: 127.0.11.10, port_value: 9080",
            ),
            (
                "address: 0.0.0.0, port_value: 9090",
                "address: 127.0.11.10, port_value: 9090",
            ),
            ("address: 127.0.0.1, port_value: 19080", &page_addr),
            ("address: 127.0.0.1, port_value: 19090", &metrics_addr),
        ],
    )
    .unwrap();
    let waypoint_cfg = localize(
        &env,
        "waypoint.yaml",
        "cluster.local/ns/default/sa/waypoint",
        &wasm,
        &[
            (
                "address: 127.0.0.1, port_value: 15000",
                "address: 127.0.0.1, port_value: 0",
            ),
            (
                "address: 0.0.0.0, port_value: 9080",
                "address: 127.0.11.20, port_value: 9080",
            ),
            (
                "address: productpage-v1.default, port_value: 9080",
                "address: 127.0.11.10, port_value: 9080",
            ),
        ],
    )
    .unwrap();
    let zt = Envoy::start_config(
        &env.bin,
        &ztunnel_cfg,
        vec![
            listener("productpage_9080", "127.0.11.10:9080"),
            listener("productpage_9090", "127.0.11.10:9090"),
        ],
        &env.dir().join("ztunnel"),
        env.pki.clone(),
    )
    .unwrap();
    let wp = Envoy::start_config(
        &env.bin,
        &waypoint_cfg,
        vec![listener("productpage_9080", "127.0.11.20:9080")],
        &env.dir().join("waypoint"),
        env.pki.clone(),
    )
    .unwrap();

    // Through the waypoint (seed 000's L7 policy, on top of the GatewayClass default deny).
    let r = get(&wp, CURL, "127.0.11.6", 9080, "GET", "/productpage").unwrap();
    assert_eq!(r.status, 200, "curl GET via waypoint: {r:?}\n{}", wp.log());
    assert!(r.body_text().contains(PRODUCTPAGE_TITLE));
    for (who, from, method) in [
        (CURL, "127.0.11.6", "DELETE"),
        (REVIEWS, "127.0.11.7", "GET"),
    ] {
        let r = get(&wp, who, from, 9080, method, "/productpage").unwrap();
        assert_eq!(
            (r.status, r.body_text().as_str()),
            (403, "RBAC: access denied"),
            "{who} {method}"
        );
    }

    // Directly at the ztunnel: the gateway may, curl may not; Prometheus only on 9090.
    let r = get(&zt, GATEWAY, "127.0.11.5", 9080, "GET", "/productpage").unwrap();
    assert_eq!(r.status, 200, "gateway direct: {r:?}");
    let r = get(&zt, CURL, "127.0.11.6", 9080, "GET", "/productpage");
    assert!(matches!(r, Err(ConnError::Closed(_))), "curl direct: {r:?}");
    let r = get(&zt, PROMETHEUS, "127.0.11.8", 9090, "GET", "/metrics").unwrap();
    assert_eq!(r.status, 200, "prometheus :9090: {r:?}");
    assert!(r.body_text().contains("requests_total"));
    let r = get(&zt, PROMETHEUS, "127.0.11.8", 9080, "GET", "/productpage");
    assert!(
        matches!(r, Err(ConnError::Closed(_))),
        "prometheus :9080: {r:?}"
    );
    assert!(!page.saw(b"DELETE"), "a denied request reached the app");
}
