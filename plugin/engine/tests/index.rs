//! The rule indexes only choose which rules to evaluate: decisions through them must equal
//! decisions by evaluating every rule, for any policy and any peer, in both modes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_engine::{Engine, OwnedAttributes, OwnedHttp, Traffic};
use proptest::prelude::*;
use serde_json::{json, Value};

const NS: &[&str] = &["default", "team-1", "team-2", "istio-system"];
const SA: &[&str] = &["curl", "svc-a", "batch-1", "waypoint"];

fn principal_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..NS.len(), 0..SA.len())
            .prop_map(|(n, s)| format!("cluster.local/ns/{}/sa/{}", NS[n], SA[s])),
        (0..NS.len()).prop_map(|n| format!("cluster.local/ns/{}/sa/batch-", NS[n]) + "*"),
        (0..NS.len()).prop_map(|n| format!("cluster.local/ns/{}/*", NS[n])),
        // A trust domain named `ns`: its `/ns/` overlaps the namespace segment's.
        (0..NS.len(), 0..SA.len()).prop_map(|(n, s)| format!("ns/ns/{}/sa/{}", NS[n], SA[s])),
        (0..NS.len()).prop_map(|n| format!("ns/ns/{}/*", NS[n])),
        (0..SA.len()).prop_map(|s| format!("*/sa/{}", SA[s])),
        Just("*".to_string()),
    ]
}

fn namespace_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..NS.len()).prop_map(|n| NS[n].to_string()),
        Just("team-*".to_string()),
        Just("*".to_string()),
        Just("te*-1".to_string()),
    ]
}

fn source() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(principal_value(), 1..3).prop_map(|p| json!({"principals": p})),
        prop::collection::vec(namespace_value(), 1..3).prop_map(|n| json!({"namespaces": n})),
        (0..NS.len(), 0..SA.len())
            .prop_map(|(n, s)| json!({"serviceAccounts": [format!("{}/{}", NS[n], SA[s])]})),
        (
            prop::collection::vec(principal_value(), 1..2),
            prop::collection::vec(namespace_value(), 1..2)
        )
            .prop_map(|(p, n)| json!({"principals": p, "namespaces": n})),
        prop::collection::vec(principal_value(), 1..2).prop_map(|p| json!({"notPrincipals": p})),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(source(), 0..3),
        prop::option::of(prop_oneof![Just("GET"), Just("POST")]),
        prop::option::of(prop_oneof![Just("8080"), Just("9090")]),
    )
        .prop_map(|(from, method, port)| {
            let mut r = serde_json::Map::new();
            if !from.is_empty() {
                r.insert(
                    "from".into(),
                    Value::Array(from.into_iter().map(|s| json!({"source": s})).collect()),
                );
            }
            let mut op = serde_json::Map::new();
            if let Some(m) = method {
                op.insert("methods".into(), json!([m]));
            }
            if let Some(p) = port {
                op.insert("ports".into(), json!([p]));
            }
            if !op.is_empty() {
                r.insert("to".into(), json!([{"operation": op}]));
            }
            Value::Object(r)
        })
}

fn policies() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec((prop_oneof![Just("ALLOW"), Just("DENY")], prop::collection::vec(rule(), 1..4)), 1..12).prop_map(
        |ps| {
            ps.into_iter()
                .enumerate()
                .map(|(i, (action, rules))| {
                    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                           "metadata": {"name": format!("p{i:02}"), "namespace": "default"},
                           "spec": {"action": action, "rules": rules,
                                    "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]}})
                })
                .collect()
        },
    )
}

fn peer() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        (0..NS.len(), 0..SA.len())
            .prop_map(|(n, s)| Some(format!("spiffe://cluster.local/ns/{}/sa/{}", NS[n], SA[s]))),
        (0..NS.len()).prop_map(|n| Some(format!("spiffe://cluster.local/ns/{}/sa/batch-7", NS[n]))),
        // Not a 5-part SPIFFE id, and two namespace segments.
        (0..NS.len(), 0..NS.len()).prop_map(|(a, b)| Some(format!(
            "spiffe://cluster.local/ns/{}/sa/x/ns/{}/y",
            NS[a], NS[b]
        ))),
        Just(Some("spiffe://cluster.local/ns//sa/empty".to_string())),
        // Overlapping `/ns/` segments: a trust domain `ns`, a namespace `ns` before another.
        (0..NS.len(), 0..SA.len())
            .prop_map(|(n, s)| Some(format!("spiffe://ns/ns/{}/sa/{}", NS[n], SA[s]))),
        (0..NS.len()).prop_map(|n| Some(format!("spiffe://cluster.local/ns/ns/ns/{}/sa/x", NS[n]))),
        Just(Some("not-a-spiffe-id".to_string())),
        Just(None),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn indexed_decisions_equal_a_full_scan(
        policies in policies(),
        peer in peer(),
        method in prop_oneof![Just("GET"), Just("POST")],
        port in prop_oneof![Just(8080u16), Just(9090u16)],
        ztunnel in any::<bool>(),
        trust_domain in prop_oneof![Just("cluster.local"), Just("ns")],
    ) {
        let mut policies = policies;
        if ztunnel {
            for p in &mut policies {
                p["spec"].as_object_mut().unwrap().remove("targetRefs");
            }
        }
        let config = if ztunnel {
            json!({"mode": "ztunnel", "trustDomain": trust_domain, "workloads": [{"name": "w", "namespace": "default"}], "policies": policies})
        } else {
            json!({"mode": "waypoint", "trustDomain": trust_domain, "waypoint": {"name": "waypoint", "namespace": "default"}, "policies": policies})
        };
        let engine = Engine::from_json(&serde_json::to_vec(&config).unwrap()).unwrap();
        let attrs = OwnedAttributes {
            peer_principal: peer,
            destination_port: Some(port),
            http: (!ztunnel).then(|| OwnedHttp::new(method.as_bytes(), b"/", b"h", vec![], None)),
            ..Default::default()
        };
        let traffic = if ztunnel { Traffic::Connection } else { Traffic::Request };
        let indexed = engine.decide(traffic, &attrs);
        prop_assert_eq!((indexed.verdict, indexed.reason), engine.decide_by_scan(traffic, &attrs));
    }
}
