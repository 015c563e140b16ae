#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! What a request costs the host: the module reads only what a candidate rule needs, each
//! thing once. The seeds' waypoint policy (a principal and a method) reads the peer's identity
//! and the method alone, never the whole header map; a rule on a header reads the map once.

mod common;

use std::collections::BTreeMap;

use authz_plugin::engine::{OwnedAttributes, Verdict};
use authz_wasm_host::PluginInstance;
use common::{configure, policy, productpage_request, productpage_spec, waypoint_config};
use serde_json::{json, Value};

/// The productpage waypoint with one ALLOW policy of the one rule `rule`.
fn config(rule: Value) -> Value {
    waypoint_config(vec![policy(
        "productpage-waypoint",
        "default",
        productpage_spec("ALLOW", json!([rule])),
    )])
}

fn request(method: &str, headers: &[(&str, &str)]) -> OwnedAttributes {
    productpage_request(
        Some("spiffe://cluster.local/ns/default/sa/curl"),
        method,
        "/productpage?u=normal",
        headers,
        None,
    )
}

/// The host calls one request made.
fn calls_of(
    p: &mut PluginInstance,
    attrs: &OwnedAttributes,
    want: Verdict,
) -> BTreeMap<String, u64> {
    let before = p.host_calls();
    let out = p.request(attrs).unwrap_or_else(|e| panic!("request: {e}"));
    assert_eq!(out.verdict, want, "logs: {:?}", out.logs);
    let mut after = p.host_calls();
    for (name, n) in before {
        if let Some(v) = after.get_mut(&name) {
            *v -= n;
        }
    }
    after.retain(|_, v| *v > 0);
    after
}

#[test]
fn the_seeds_policy_reads_the_method_not_the_header_map() {
    let mut p = configure(&config(json!({
        "from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"]}}],
        "to": [{"operation": {"methods": ["GET"]}}],
    })));
    let headers = [
        ("user-agent", "curl/8"),
        ("accept", "*/*"),
        ("x-request-id", "1"),
    ];
    for (method, want) in [("GET", Verdict::Allow), ("POST", Verdict::Deny)] {
        let calls = calls_of(&mut p, &request(method, &headers), want);
        assert_eq!(
            calls.get("proxy_get_header_map_pairs"),
            None,
            "{method}: {calls:?}"
        );
        assert_eq!(
            calls.get("proxy_get_header_map_value"),
            Some(&1),
            "{method}: {calls:?}"
        );
    }
}

#[test]
fn a_header_rule_reads_the_header_map_once() {
    let mut p = configure(&config(json!({
        "to": [{"operation": {"methods": ["GET"], "paths": ["/productpage"]}}],
        "when": [{"key": "request.headers[x-tenant]", "values": ["blue"]}],
    })));
    let calls = calls_of(
        &mut p,
        &request("GET", &[("x-tenant", "blue"), ("accept", "*/*")]),
        Verdict::Allow,
    );
    assert_eq!(
        calls.get("proxy_get_header_map_pairs"),
        Some(&1),
        "{calls:?}"
    );
    // Method and path: one read each.
    assert_eq!(
        calls.get("proxy_get_header_map_value"),
        Some(&2),
        "{calls:?}"
    );
}
