//! One test per field and its `not` twin, at each enforcement point, in the manner of
//! ztunnel's own `rbac.rs` tests (docs/semantics.md#ztunnel-matching): an ALLOW policy with one rule holding
//! only the field under test, against three connections P (plaintext), T and A.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_engine::{Claim, Engine, OwnedAttributes, OwnedHttp, Reason, Traffic, Verdict};
use serde_json::{json, Value};

/// P: plaintext 127.0.0.1:1234 → 127.0.0.2:8080, no identity.
fn conn_p() -> OwnedAttributes {
    OwnedAttributes {
        source_ip: Some("127.0.0.1".parse().unwrap()),
        destination_ip: Some("127.0.0.2".parse().unwrap()),
        destination_port: Some(8080),
        ..Default::default()
    }
}

/// T: 127.0.0.1 → 127.0.0.2:8080 as spiffe://td/ns/namespace/sa/account.
fn conn_t() -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: Some("spiffe://td/ns/namespace/sa/account".into()),
        ..conn_p()
    }
}

/// A: 127.0.0.3 → 127.0.0.4:9090 as spiffe://td-alt/ns/ns-alt/sa/sa-alt.
fn conn_a() -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: Some("spiffe://td-alt/ns/ns-alt/sa/sa-alt".into()),
        source_ip: Some("127.0.0.3".parse().unwrap()),
        destination_ip: Some("127.0.0.4".parse().unwrap()),
        destination_port: Some(9090),
        ..Default::default()
    }
}

fn engine(mode: &str, rules: Value) -> Engine {
    let mut parsed = parsed(mode, rules);
    parsed.filter = authz_engine::Filter::Network;
    Engine::from_config_all_points(parsed).unwrap()
}

fn parsed(mode: &str, rules: Value) -> authz_engine::PluginConfig {
    let config = json!({
        "mode": mode,
        "trustDomain": "td",
        "trustDomainAliases": ["td-alt"],
        "workloads": [{"name": "w", "namespace": "namespace"}],
        "waypoint": {"name": "waypoint", "namespace": "namespace"},
        "policies": [{
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "under-test", "namespace": "namespace"},
            "spec": if mode == "waypoint" {
                json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}], "rules": rules})
            } else {
                json!({"rules": rules})
            }
        }]
    });
    let config = serde_json::to_vec(&config).unwrap();
    authz_engine::PluginConfig::from_json(&config).unwrap()
}

/// Whether the single ALLOW rule matched (the connection was allowed by it).
fn allowed(e: &Engine, traffic: Traffic, a: &OwnedAttributes) -> bool {
    let d = e.decide(traffic, a);
    match d.reason {
        Reason::Allowed(_) => true,
        Reason::NoAllowMatched => false,
        other => panic!("unexpected reason {other:?}"),
    }
}

/// (source field, value, expected for P, T, A), checked as `from.source`.
fn source_table() -> Vec<(&'static str, Value, [bool; 3])> {
    vec![
        ("namespaces", json!(["namespace"]), [false, true, false]),
        ("notNamespaces", json!(["namespace"]), [true, false, true]),
        (
            "serviceAccounts",
            json!(["namespace/account"]),
            [false, true, false],
        ),
        (
            "notServiceAccounts",
            json!(["namespace/account"]),
            [true, false, true],
        ),
        (
            "principals",
            json!(["td/ns/namespace/sa/account"]),
            [false, true, false],
        ),
        (
            "notPrincipals",
            json!(["td/ns/namespace/sa/account"]),
            [true, false, true],
        ),
        ("ipBlocks", json!(["127.0.0.1/32"]), [true, true, false]),
        ("notIpBlocks", json!(["127.0.0.1/32"]), [false, false, true]),
        ("namespaces", json!(["ns-*"]), [false, false, true]),
        ("principals", json!(["*"]), [false, true, true]),
        ("notPrincipals", json!(["*"]), [true, false, false]),
        ("principals", json!(["*/sa/account"]), [false, true, false]),
        ("principals", json!(["td-alt/*"]), [false, false, true]),
    ]
}

#[test]
fn source_fields_and_not_twins_at_ztunnel_and_waypoint() {
    for mode in ["ztunnel", "waypoint"] {
        for (field, value, want) in source_table() {
            let e = engine(mode, json!([{"from": [{"source": {field: value}}]}]));
            let got = [conn_p(), conn_t(), conn_a()].map(|c| allowed(&e, Traffic::Connection, &c));
            assert_eq!(got, want, "{mode}: {field} = {value}");
        }
    }
}

#[test]
fn operation_and_when_l4_fields() {
    let table: Vec<(Value, [bool; 3])> = vec![
        (
            json!({"to": [{"operation": {"ports": ["8080"]}}]}),
            [true, true, false],
        ),
        (
            json!({"to": [{"operation": {"notPorts": ["8080"]}}]}),
            [false, false, true],
        ),
        (
            json!({"when": [{"key": "destination.ip", "values": ["127.0.0.2/32"]}]}),
            [true, true, false],
        ),
        (
            json!({"when": [{"key": "destination.ip", "notValues": ["127.0.0.2/32"]}]}),
            [false, false, true],
        ),
        (
            json!({"when": [{"key": "destination.ip", "values": ["127.0.0.1/24"]}]}),
            [true, true, true],
        ),
        (
            json!({"when": [{"key": "destination.port", "values": ["8080"]}]}),
            [true, true, false],
        ),
        (
            json!({"when": [{"key": "destination.port", "notValues": ["8080"]}]}),
            [false, false, true],
        ),
        (
            json!({"when": [{"key": "source.ip", "values": ["127.0.0.1"]}]}),
            [true, true, false],
        ),
        (
            json!({"when": [{"key": "source.ip", "notValues": ["127.0.0.1"]}]}),
            [false, false, true],
        ),
        (
            json!({"when": [{"key": "source.namespace", "values": ["namespace"]}]}),
            [false, true, false],
        ),
        (
            json!({"when": [{"key": "source.namespace", "notValues": ["namespace"]}]}),
            [true, false, true],
        ),
        (
            json!({"when": [{"key": "source.principal", "values": ["td/ns/namespace/sa/account"]}]}),
            [false, true, false],
        ),
        (
            json!({"when": [{"key": "source.principal", "notValues": ["td/ns/namespace/sa/account"]}]}),
            [true, false, true],
        ),
    ];
    for mode in ["ztunnel", "waypoint"] {
        for (rule, want) in &table {
            let e = engine(mode, json!([rule]));
            let got = [conn_p(), conn_t(), conn_a()].map(|c| allowed(&e, Traffic::Connection, &c));
            assert_eq!(&got, want, "{mode}: {rule}");
        }
    }
}

#[test]
fn rule_structure() {
    // [ZT src/rbac.rs rbac_empty_policy, rbac_nesting, rbac_multi_rule]
    for mode in ["ztunnel", "waypoint"] {
        let all = engine(mode, json!([{}]));
        assert!(
            allowed(&all, Traffic::Connection, &conn_p()),
            "{mode}: rules [{{}}] matches everything"
        );
        let none = engine(mode, json!([]));
        assert!(
            !allowed(&none, Traffic::Connection, &conn_t()),
            "{mode}: rules [] matches nothing"
        );
        let nested = engine(
            mode,
            json!([{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"namespaces": ["namespace"]}}],
                    "to": [{"operation": {"ports": ["8080"]}}]}]),
        );
        assert!(allowed(&nested, Traffic::Connection, &conn_t()));
        let mut t_other_port = conn_t();
        t_other_port.destination_port = Some(12345);
        assert!(!allowed(&nested, Traffic::Connection, &t_other_port));
        assert!(!allowed(&nested, Traffic::Connection, &conn_a()));
    }
}

fn request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    jwt: Option<Value>,
) -> OwnedAttributes {
    OwnedAttributes {
        http: Some(OwnedHttp::new(
            method.as_bytes(),
            path.as_bytes(),
            host.as_bytes(),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            jwt.as_ref().map(Claim::from_json),
        )),
        ..conn_t()
    }
}

#[test]
fn layer7_fields_and_not_twins_at_the_waypoint() {
    let get = request(
        "GET",
        "/api/v1/items?x=1",
        "Example.COM:8080",
        &[("x-token", "abc"), ("x-multi", "a"), ("x-multi", "b")],
        Some(
            json!({"iss": "issuer.example", "sub": "alice", "aud": ["bookinfo", "other"], "azp": "web", "groups": ["admins"], "nested": {"level": "gold"}, "n": 3}),
        ),
    );
    let cases: Vec<(Value, bool)> = vec![
        (json!({"to": [{"operation": {"methods": ["GET"]}}]}), true),
        (
            json!({"to": [{"operation": {"notMethods": ["GET"]}}]}),
            false,
        ),
        (json!({"to": [{"operation": {"paths": ["/api/*"]}}]}), true),
        (
            json!({"to": [{"operation": {"paths": ["/api/v1/items"]}}]}),
            true,
        ),
        (
            json!({"to": [{"operation": {"notPaths": ["/api/v1/items"]}}]}),
            false,
        ),
        (
            json!({"to": [{"operation": {"paths": ["/api/{*}/items"]}}]}),
            true,
        ),
        (
            json!({"to": [{"operation": {"paths": ["/api/{**}"]}}]}),
            true,
        ),
        (
            json!({"to": [{"operation": {"hosts": ["example.com"]}}]}),
            false,
        ),
        (
            json!({"to": [{"operation": {"hosts": ["example.com:*"]}}]}),
            true,
        ),
        (
            json!({"to": [{"operation": {"notHosts": ["EXAMPLE.com:8080"]}}]}),
            false,
        ),
        (
            json!({"from": [{"source": {"requestPrincipals": ["issuer.example/alice"]}}]}),
            true,
        ),
        (
            json!({"from": [{"source": {"notRequestPrincipals": ["issuer.example/*"]}}]}),
            false,
        ),
        (
            json!({"from": [{"source": {"requestPrincipals": ["*"]}}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.headers[x-token]", "values": ["abc"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.headers[X-Token]", "notValues": ["abc"]}]}),
            false,
        ),
        // Two occurrences `a` and `b` are two values, never the one value `a,b` (Envoy 1.40
        // RBAC `rbac_match_headers_individually`): any one occurrence may match, and one
        // matching occurrence is enough for `notValues` to exclude.
        (
            json!({"when": [{"key": "request.headers[x-multi]", "values": ["a,b"]}]}),
            false,
        ),
        (
            json!({"when": [{"key": "request.headers[x-multi]", "values": ["b"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.headers[x-multi]", "notValues": ["b"]}]}),
            false,
        ),
        (
            json!({"when": [{"key": "request.headers[x-multi]", "values": ["a"], "notValues": ["b"]}]}),
            false,
        ),
        (
            json!({"when": [{"key": "request.headers[x-absent]", "notValues": ["abc"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.headers[x-absent]", "values": ["*"]}]}),
            false,
        ),
        (
            json!({"when": [{"key": "request.auth.principal", "values": ["issuer.example/alice"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.auth.audiences", "values": ["bookinfo"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.auth.audiences", "notValues": ["other"]}]}),
            false,
        ),
        (
            json!({"when": [{"key": "request.auth.presenter", "values": ["web"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.auth.claims[groups]", "values": ["admins"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.auth.claims[nested][level]", "values": ["gold"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "request.auth.claims[n]", "values": ["3"]}]}),
            false,
        ),
        (
            json!({"when": [{"key": "request.auth.claims[missing]", "notValues": ["x"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "remote.ip", "values": ["127.0.0.0/8"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "source.serviceAccount", "values": ["namespace/account"]}]}),
            true,
        ),
        (
            json!({"when": [{"key": "source.trustDomain", "values": ["td"]}]}),
            true,
        ),
        (
            json!({"from": [{"source": {"trustDomains": ["other"]}}]}),
            false,
        ),
        (
            json!({"when": [{"key": "connection.sni", "notValues": ["*"]}]}),
            true,
        ),
    ];
    for (rule, want) in cases {
        let mut parsed = parsed("waypoint", json!([rule]));
        parsed.filter = authz_engine::Filter::Http;
        let e = Engine::from_config(parsed).unwrap();
        assert_eq!(allowed(&e, Traffic::Request, &get), want, "{rule}");
    }
}

#[test]
fn layer7_at_ztunnel_fails_safe() {
    // docs/semantics.md#layer-7-at-ztunnel: an ALLOW rule with any Layer 7 attribute never matches...
    let e = engine(
        "ztunnel",
        json!([{"from": [{"source": {"principals": ["td/ns/namespace/sa/account"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]),
    );
    assert!(!allowed(&e, Traffic::Connection, &conn_t()));
    assert!(e.notes().iter().any(|n| n.message.contains("never match")));
    // ... and a DENY rule made only of Layer 7 attributes denies everything in its scope.
    let config = json!({
        "mode": "ztunnel", "trustDomain": "td", "workloads": [{"name": "w", "namespace": "ns"}],
        "policies": [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-delete", "namespace": "ns"},
            "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}}]
    });
    let e = Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
    let d = e.decide(Traffic::Connection, &conn_t());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(e.deciding_policy(&d.reason), Some("ns/deny-delete"));
    assert!(
        e.notes()
            .iter()
            .any(|n| n.message.contains("now match(es) all traffic")),
        "{:?}",
        e.notes()
    );
}

#[test]
fn untrusted_trust_domain_is_refused_at_ztunnel_only() {
    let e = engine("ztunnel", json!([{}]));
    let mut foreign = conn_t();
    foreign.peer_principal = Some("spiffe://evil.example/ns/namespace/sa/account".into());
    assert_eq!(
        e.decide(Traffic::Connection, &foreign).reason,
        Reason::UntrustedPeer
    );
    // The alias is trusted.
    assert_eq!(
        e.decide(Traffic::Connection, &conn_a()).verdict,
        Verdict::Allow
    );
    let w = engine("waypoint", json!([{}]));
    assert_eq!(
        w.decide(Traffic::Connection, &foreign).verdict,
        Verdict::Allow
    );
}
