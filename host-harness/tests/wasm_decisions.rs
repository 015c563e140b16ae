//! Layer 4 and Layer 7 decisions of the module in the Wasmtime host, checked against the
//! native engine on the same attributes, plus the attribute encodings they depend on (IPv6
//! addresses, repeated headers, the JWT payload in dynamic metadata, server-first protocols)
//! and the module's counters and log lines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_plugin::engine::{Claim, Engine, OwnedAttributes, OwnedHttp, Traffic, Verdict};
use authz_wasm_host::{FirstData, HostError, StreamOptions, WasmOutcome};
use common::{configure, policy, productpage_request, productpage_spec, waypoint_config};
use serde_json::{json, Value};

fn ztunnel_config(policies: Vec<Value>) -> Value {
    json!({
        "mode": "ztunnel",
        "workloads": [{
            "name": "productpage-v1", "namespace": "default", "serviceAccount": "bookinfo-productpage",
            "labels": {"app": "productpage"}, "addresses": ["10.0.0.10", "fd00::10"],
        }],
        "policies": policies,
    })
}

fn native(config: &Value) -> Engine {
    Engine::from_json(&serde_json::to_vec(config).expect("json"))
        .unwrap_or_else(|e| panic!("engine: {e}"))
}

fn conn(principal: Option<&str>, src: &str, dst: &str, port: u16) -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: principal.map(str::to_string),
        source_ip: Some(src.parse().expect("ip")),
        remote_ip: None,
        destination_ip: Some(dst.parse().expect("ip")),
        destination_port: Some(port),
        sni: None,
        http: None,
    }
}

/// The module's verdict and deciding policy equal the native engine's.
fn assert_same(engine: &Engine, traffic: Traffic, attrs: &OwnedAttributes, got: &WasmOutcome) {
    let want = engine.decide(traffic, attrs);
    let want_policy = engine.deciding_policy(&want.reason).map(str::to_string);
    assert_eq!(
        got.verdict, want.verdict,
        "verdict for {attrs:?}; logs: {:?}",
        got.logs
    );
    assert_eq!(
        got.logged_verdict,
        Some(want.verdict),
        "logged verdict; logs: {:?}",
        got.logs
    );
    assert_eq!(
        got.policy, want_policy,
        "deciding policy for {attrs:?}; logs: {:?}",
        got.logs
    );
}

const GATEWAY: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-gateway-istio";
const CURL: &str = "spiffe://cluster.local/ns/default/sa/curl";

fn l4_policies() -> Vec<Value> {
    vec![
        policy(
            "productpage-ztunnel",
            "default",
            json!({"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
                   "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/bookinfo-gateway-istio"]}}]}]}),
        ),
        policy(
            "deny-admin-port",
            "default",
            json!({"action": "DENY", "rules": [{"to": [{"operation": {"ports": ["9999"]}}]}]}),
        ),
    ]
}

#[test]
fn l4_decisions_match_the_native_engine() {
    let config = ztunnel_config(l4_policies());
    let engine = native(&config);
    let mut wasm = configure(&config);
    let cases = [
        conn(Some(GATEWAY), "10.1.0.7", "10.0.0.10", 9080),
        conn(Some(CURL), "10.1.0.7", "10.0.0.10", 9080),
        conn(None, "10.1.0.7", "10.0.0.10", 9080),
        conn(Some(GATEWAY), "10.1.0.7", "10.0.0.10", 9999),
        conn(Some(GATEWAY), "fd00::7", "fd00::10", 9080),
        conn(
            Some("spiffe://evil.example/ns/default/sa/bookinfo-gateway-istio"),
            "10.1.0.7",
            "10.0.0.10",
            9080,
        ),
        conn(Some(GATEWAY), "10.1.0.7", "10.0.0.99", 9080),
    ];
    for attrs in &cases {
        let got = wasm.connection(attrs).unwrap_or_else(|e| panic!("{e}"));
        assert_same(&engine, Traffic::Connection, attrs, &got);
        assert_eq!(got.closed, got.verdict == Verdict::Deny);
        assert_eq!(got.status, None);
    }
    assert_eq!(wasm.live_streams(), 0, "every context was deleted");

    // The ALLOW policy decided the first, and denied nothing by itself: its counters say so.
    wasm.tick().expect("the timer hands the counts to the host");
    assert_eq!(
        wasm.metric("authz.policy.default.productpage-ztunnel.allow"),
        Some(2)
    );
    assert_eq!(
        wasm.metric("authz.policy.default.deny-admin-port.deny"),
        Some(1)
    );
    assert_eq!(wasm.metric("authz.default.deny"), Some(4));
}

#[test]
fn l4_deny_log_line_is_parseable() {
    let config = ztunnel_config(l4_policies());
    let mut wasm = configure(&config);
    let got = wasm
        .connection(&conn(Some(GATEWAY), "10.1.0.7", "10.0.0.10", 9999))
        .expect("connection");
    assert_eq!(got.verdict, Verdict::Deny);
    assert_eq!(got.policy.as_deref(), Some("default/deny-admin-port"));
    assert_eq!(got.rule, Some(0));
    assert_eq!(got.reason.as_deref(), Some("deny-matched"));
    assert!(
        got.logs.iter().any(|(level, line)| *level == 2
            && line
                == "authz: deny policy=default/deny-admin-port rule=0 reason=deny-matched layer=4"),
        "{:?}",
        got.logs
    );
}

#[test]
fn l4_server_first_protocol_is_decided_on_upstream_data() {
    let config = ztunnel_config(l4_policies());
    let mut wasm = configure(&config);
    let opts = StreamOptions {
        first_data: FirstData::Upstream,
        ..StreamOptions::default()
    };
    let denied = wasm
        .connection_with(&conn(Some(CURL), "10.1.0.7", "10.0.0.10", 9080), &opts)
        .expect("deny");
    assert_eq!(denied.verdict, Verdict::Deny);
    assert!(denied.closed);
    let allowed = wasm
        .connection_with(&conn(Some(GATEWAY), "10.1.0.7", "10.0.0.10", 9080), &opts)
        .expect("allow");
    assert_eq!(allowed.verdict, Verdict::Allow);
    assert_eq!(
        allowed.policy.as_deref(),
        Some("default/productpage-ztunnel")
    );
}

fn l7_policies() -> Vec<Value> {
    vec![
        policy(
            "productpage-waypoint",
            "default",
            productpage_spec(
                "ALLOW",
                json!([
                    {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"]}}],
                     "to": [{"operation": {"methods": ["GET"], "paths": ["/api/*", "/productpage"]}}]},
                    {"when": [{"key": "request.auth.claims[groups]", "values": ["admins"]}]},
                    {"when": [{"key": "request.headers[x-token]", "values": ["a,b"]}]},
                ]),
            ),
        ),
        policy(
            "deny-delete",
            "default",
            productpage_spec(
                "DENY",
                json!([{"to": [{"operation": {"methods": ["DELETE"]}}]}]),
            ),
        ),
    ]
}

fn claims(groups: &[&str]) -> Claim {
    Claim::Object(vec![
        ("iss".into(), Claim::String("https://issuer.example".into())),
        ("sub".into(), Claim::String("alice".into())),
        ("num".into(), Claim::Other),
        (
            "groups".into(),
            Claim::List(
                groups
                    .iter()
                    .map(|g| Claim::String(g.to_string()))
                    .collect(),
            ),
        ),
        (
            "nested".into(),
            Claim::Object(vec![("tier".into(), Claim::String("gold".into()))]),
        ),
    ])
}

#[test]
fn l7_decisions_match_the_native_engine() {
    let config = waypoint_config(l7_policies());
    let engine = native(&config);
    let mut wasm = configure(&config);
    let cases = [
        productpage_request(Some(CURL), "GET", "/productpage", &[], None),
        productpage_request(Some(CURL), "GET", "/api/v1/products?x=1", &[], None),
        productpage_request(Some(CURL), "POST", "/productpage", &[], None),
        productpage_request(Some(GATEWAY), "GET", "/productpage", &[], None),
        productpage_request(None, "GET", "/productpage", &[], None),
        productpage_request(Some(CURL), "DELETE", "/productpage", &[], None),
        // The JWT payload from dynamic metadata.
        productpage_request(None, "POST", "/x", &[], Some(claims(&["dev", "admins"]))),
        productpage_request(None, "POST", "/x", &[], Some(claims(&["dev"]))),
        // Repeated headers: each occurrence is matched on its own, as Envoy 1.40 RBAC does.
        productpage_request(
            None,
            "POST",
            "/x",
            &[("x-token", "a"), ("x-token", "b")],
            None,
        ),
        productpage_request(None, "POST", "/x", &[("x-token", "a")], None),
        // Identity never comes from a header.
        productpage_request(
            None,
            "GET",
            "/productpage",
            &[("x-forwarded-client-cert", CURL)],
            None,
        ),
    ];
    for attrs in &cases {
        let got = wasm.request(attrs).unwrap_or_else(|e| panic!("{e}"));
        assert_same(&engine, Traffic::Request, attrs, &got);
        match got.verdict {
            Verdict::Deny => {
                assert_eq!(got.status, Some(403));
                assert_eq!(got.body, b"RBAC: access denied");
            }
            Verdict::Allow => assert_eq!(got.status, None),
        }
    }
    assert_eq!(wasm.live_streams(), 0);
    wasm.tick().expect("the timer hands the counts to the host");
    assert_eq!(
        wasm.metric("authz.policy.default.deny-delete.deny"),
        Some(1)
    );
}

#[test]
fn l7_non_utf8_header_values_do_not_panic() {
    let config = waypoint_config(l7_policies());
    let mut wasm = configure(&config);
    let mut attrs = productpage_request(Some(CURL), "GET", "/productpage", &[], None);
    if let Some(http) = attrs.http.as_mut() {
        *http = OwnedHttp::new(
            b"GET",
            b"/productpage",
            b"productpage:9080",
            vec![("x-bin".into(), vec![0xff, 0xfe, 0x00, 0x80])],
            None,
        );
    }
    let got = wasm.request(&attrs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.verdict, Verdict::Allow);
}

#[test]
fn each_stream_gets_a_fresh_context_id() {
    let config = waypoint_config(l7_policies());
    let mut wasm = configure(&config);
    let a = wasm
        .request(&productpage_request(
            Some(CURL),
            "GET",
            "/productpage",
            &[],
            None,
        ))
        .expect("a");
    let b = wasm
        .request(&productpage_request(
            Some(CURL),
            "GET",
            "/productpage",
            &[],
            None,
        ))
        .expect("b");
    assert!(
        b.context_id > a.context_id,
        "{} then {}",
        a.context_id,
        b.context_id
    );
}

#[test]
fn audit_and_dry_run_are_logged() {
    let mut dry = policy(
        "trial-deny",
        "default",
        productpage_spec(
            "DENY",
            json!([{"to": [{"operation": {"methods": ["POST"]}}]}]),
        ),
    );
    dry["metadata"]["annotations"] = json!({"istio.io/dry-run": "true"});
    let audit = policy(
        "audit-posts",
        "default",
        productpage_spec(
            "AUDIT",
            json!([{"to": [{"operation": {"methods": ["POST"]}}]}]),
        ),
    );
    let config = waypoint_config(vec![dry, audit]);
    let engine = native(&config);
    let mut wasm = configure(&config);
    let attrs = productpage_request(Some(CURL), "POST", "/x", &[], None);
    let got = wasm.request(&attrs).expect("request");
    let want = engine.decide(Traffic::Request, &attrs);
    assert_eq!(got.verdict, want.verdict);
    assert_eq!(got.audit, vec!["default/audit-posts".to_string()]);
    let dry_run = got.dry_run.clone().expect("dry-run line");
    assert_eq!(dry_run.verdict, Verdict::Deny);
    assert_eq!(dry_run.policy.as_deref(), Some("default/trial-deny"));
    wasm.tick().expect("the timer hands the counts to the host");
    assert_eq!(
        wasm.metric("authz.policy.default.audit-posts.audit"),
        Some(1)
    );
    assert_eq!(
        wasm.metric("authz.policy.default.trial-deny.dry_run"),
        Some(1)
    );
}

#[test]
fn the_filter_kind_decides_the_context_kind() {
    // A network-filter configuration creates stream contexts: driving an HTTP request into
    // one is what Envoy would do with a misconfigured filter, and the SDK traps.
    let mut config = waypoint_config(l7_policies());
    config["filter"] = json!("network");
    let mut wasm = configure(&config);
    let tcp = wasm
        .connection(&conn(Some(CURL), "10.1.0.7", "10.96.0.10", 9080))
        .expect("tcp");
    assert_eq!(tcp.logged_verdict, Some(tcp.verdict));
    match wasm.request(&productpage_request(
        Some(CURL),
        "GET",
        "/productpage",
        &[],
        None,
    )) {
        Err(HostError::Trap { callback, .. }) => assert_eq!(callback, "proxy_on_request_headers"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn a_peer_certificate_without_uri_san_is_refused_by_both() {
    // A TLS peer whose certificate carries no URI SAN (`principal: ""`): Envoy serves no
    // `connection.uri_san_peer_certificate` but `connection.mtls` is true. At ztunnel that is
    // a peer without a SPIFFE identity, refused in the handshake, not a plaintext client; the
    // module and the native engine must both deny it.
    let config = ztunnel_config(vec![]);
    let engine = native(&config);
    let mut wasm = configure(&config);
    for principal in [Some(""), None, Some(CURL)] {
        let attrs = conn(principal, "10.1.0.7", "10.0.0.10", 9080);
        let got = wasm.connection(&attrs).unwrap_or_else(|e| panic!("{e}"));
        assert_same(&engine, Traffic::Connection, &attrs, &got);
    }
    let empty = conn(Some(""), "10.1.0.7", "10.0.0.10", 9080);
    assert_eq!(
        engine.decide(Traffic::Connection, &empty).verdict,
        Verdict::Deny
    );
}

#[test]
fn the_scheme_pseudo_header_agrees() {
    // Envoy always gives a request a `:scheme`; inside a waypoint's HBONE tunnel the request
    // arrives in plaintext, so `http`. The native engine and the module must see the same
    // value whether or not a case names it.
    let config = waypoint_config(vec![policy(
        "allow-http",
        "default",
        json!({"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
               "rules": [{"when": [{"key": "request.headers[:scheme]", "values": ["http"]}]}]}),
    )]);
    let engine = native(&config);
    let mut wasm = configure(&config);
    let plain = productpage_request(Some(CURL), "GET", "/", &[], None);
    let https = productpage_request(Some(CURL), "GET", "/", &[(":scheme", "https")], None);
    for attrs in [&plain, &https] {
        let got = wasm.request(attrs).unwrap_or_else(|e| panic!("{e}"));
        assert_same(&engine, Traffic::Request, attrs, &got);
    }
    assert_eq!(
        engine.decide(Traffic::Request, &plain).verdict,
        Verdict::Allow
    );
    assert_eq!(
        engine.decide(Traffic::Request, &https).verdict,
        Verdict::Deny
    );
}

#[test]
fn an_unreadable_jwt_payload_denies_when_a_rule_needs_it() {
    // The dynamic metadata holding the verified JWT payload cannot be decoded: treating the
    // request as carrying no token would let it past a DENY on its principal. The module
    // denies instead (fail closed), and says why.
    use authz_wasm_host::StreamOptions;
    let config = waypoint_config(vec![policy(
        "deny-mallory",
        "default",
        productpage_spec(
            "DENY",
            json!([{"from": [{"source": {"requestPrincipals": ["issuer.example/mallory"]}}]}]),
        ),
    )]);
    let mut wasm = configure(&config);
    let attrs = productpage_request(Some(CURL), "GET", "/", &[], None);
    let opts = StreamOptions {
        // A length-delimited field whose length runs past the end: not a protobuf message.
        extra_properties: vec![(vec!["metadata".to_string()], vec![0x0a, 0x7f, 0x01])],
        ..StreamOptions::default()
    };
    let got = wasm
        .request_with(&attrs, &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.verdict, Verdict::Deny, "logs: {:?}", got.logs);
    assert_eq!(
        got.reason.as_deref(),
        Some("unreadable-jwt"),
        "logs: {:?}",
        got.logs
    );
    // Without a JWT rule the payload is never read, and nothing is denied for it.
    let mut open = configure(&waypoint_config(vec![]));
    let got = open
        .request_with(&attrs, &opts)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.verdict, Verdict::Allow, "logs: {:?}", got.logs);
}
