//! `on_configure` as Envoy drives it: a configuration the engine rejects is rejected by the
//! module (canary first) with the policy and field in its log, a failed reconfiguration
//! keeps the last good one in force, and load notes are logged once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_plugin::engine::{Engine, ErrorKind, OwnedAttributes, Verdict};
use authz_wasm_host::{shared_module, HostError, PluginInstance};
use common::configure;
use serde_json::{json, Value};

const GATEWAY: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-gateway-istio";
const CURL: &str = "spiffe://cluster.local/ns/default/sa/curl";

fn config(principal: &str, extra_policy: Option<Value>) -> Value {
    let mut policies = vec![json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "productpage-ztunnel", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "ALLOW",
                 "rules": [{"from": [{"source": {"principals": [principal]}}]}]},
    })];
    policies.extend(extra_policy);
    json!({
        "mode": "ztunnel",
        "workloads": [{"name": "productpage-v1", "namespace": "default", "serviceAccount": "bookinfo-productpage",
                        "labels": {"app": "productpage"}, "addresses": ["10.0.0.10"]}],
        "policies": policies,
    })
}

fn bad_policy() -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8", "300.1.2.3"]}}]}]},
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

fn conn(principal: &str) -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: Some(principal.to_string()),
        source_ip: Some("10.1.0.7".parse().expect("ip")),
        destination_ip: Some("10.0.0.10".parse().expect("ip")),
        destination_port: Some(9080),
        ..OwnedAttributes::default()
    }
}

fn verdict(wasm: &mut PluginInstance, principal: &str) -> Verdict {
    wasm.connection(&conn(principal))
        .unwrap_or_else(|e| panic!("{e}"))
        .verdict
}

fn error_lines(logs: &[(u32, String)]) -> Vec<&str> {
    logs.iter()
        .filter(|(l, _)| *l == 4)
        .map(|(_, m)| m.as_str())
        .collect()
}

#[test]
fn a_configuration_the_engine_rejects_is_rejected_by_on_configure() {
    let module = shared_module().unwrap_or_else(|e| panic!("{e}"));
    let cfg = config(
        "cluster.local/ns/default/sa/bookinfo-gateway-istio",
        Some(bad_policy()),
    );
    let native = Engine::from_json(&bytes(&cfg)).expect_err("the engine rejects it");
    assert_eq!(native.policy.as_deref(), Some("default/broken"));
    assert_eq!(native.kind, ErrorKind::InvalidValue);
    assert_eq!(native.field, "spec.rules[0].from[0].source.ipBlocks[1]");

    match module.configure(&bytes(&cfg)) {
        Err(HostError::ConfigureRejected { phase, logs }) => {
            assert!(
                phase.contains("canary"),
                "rejected by the canary first: {phase}"
            );
            let errors = error_lines(&logs);
            assert_eq!(errors.len(), 1, "{logs:?}");
            let line = errors[0];
            assert!(line.contains("default/broken"), "names the policy: {line}");
            assert!(
                line.contains(&native.field),
                "names the field {}: {line}",
                native.field
            );
            assert!(
                line.contains(&native.to_string()),
                "says what the engine says: {line}"
            );
            assert!(line.contains("300.1.2.3"), "quotes the value: {line}");
        }
        Err(other) => panic!("expected ConfigureRejected, got {other}"),
        Ok(_) => panic!("the module accepted a configuration the engine rejects"),
    }
}

#[test]
fn unparseable_and_empty_configurations_are_rejected() {
    let module = shared_module().unwrap_or_else(|e| panic!("{e}"));
    // The engine's kind for each (none for the empty configuration: the module refuses it
    // before the engine sees it); the module's log carries the engine's message.
    for (cfg, kind, needle) in [
        (
            b"{not json".to_vec(),
            Some(ErrorKind::Syntax),
            "not valid JSON",
        ),
        (Vec::new(), None, "empty"),
        (
            br#"{"mode": "sidecar"}"#.to_vec(),
            Some(ErrorKind::InvalidValue),
            "mode",
        ),
    ] {
        if let Some(kind) = kind {
            let native = Engine::from_json(&cfg).expect_err("the engine rejects it");
            assert_eq!(native.kind, kind, "{native}");
        }
        match module.configure(&cfg) {
            Err(HostError::ConfigureRejected { logs, .. }) => {
                let errors = error_lines(&logs);
                assert!(
                    errors.iter().any(|l| l.contains(needle)),
                    "{needle:?} in {logs:?}"
                );
            }
            Err(other) => panic!("expected ConfigureRejected, got {other}"),
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(&cfg)),
        }
    }
}

#[test]
fn a_failed_reconfiguration_keeps_the_last_good_one() {
    let good = config("cluster.local/ns/default/sa/bookinfo-gateway-istio", None);
    let mut wasm = configure(&good);
    assert_eq!(verdict(&mut wasm, GATEWAY), Verdict::Allow);
    assert_eq!(verdict(&mut wasm, CURL), Verdict::Deny);

    // A bad update: refused, and the old decisions stand.
    let bad = config("cluster.local/ns/default/sa/curl", Some(bad_policy()));
    match wasm.reconfigure(&bytes(&bad)) {
        Err(HostError::ConfigureRejected { phase, logs }) => {
            assert_eq!(phase, "reconfigure");
            let errors = error_lines(&logs);
            assert!(
                errors.iter().any(|l| l.contains("keeping the previous one") && l.contains("default/broken")),
                "{logs:?}"
            );
        }
        Err(other) => panic!("expected ConfigureRejected, got {other}"),
        Ok(()) => panic!("the module accepted a bad reconfiguration"),
    }
    assert!(
        wasm.failed().is_none(),
        "a rejected configuration does not fail the VM"
    );
    assert_eq!(verdict(&mut wasm, GATEWAY), Verdict::Allow);
    assert_eq!(verdict(&mut wasm, CURL), Verdict::Deny);

    // A good update takes effect.
    let next = config("cluster.local/ns/default/sa/curl", None);
    wasm.reconfigure(&bytes(&next))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdict(&mut wasm, GATEWAY), Verdict::Deny);
    assert_eq!(verdict(&mut wasm, CURL), Verdict::Allow);
}

#[test]
fn load_notes_are_logged_once_at_configure() {
    // An ALLOW rule with a Layer 7 attribute at ztunnel is converted (it never matches).
    let l7 = json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "get-only", "namespace": "default"},
        "spec": {"action": "ALLOW", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]},
    });
    let cfg = config(
        "cluster.local/ns/default/sa/bookinfo-gateway-istio",
        Some(l7),
    );
    let engine = Engine::from_json(&bytes(&cfg)).expect("valid");
    assert!(
        !engine.notes().is_empty(),
        "the engine reports a conversion"
    );
    let wasm = configure(&cfg);
    let logs = wasm.configure_logs();
    for note in engine.notes() {
        let line = format!("authz: load: {note}");
        let count = logs.iter().filter(|(_, m)| *m == line).count();
        assert_eq!(count, 1, "{line:?} once in {logs:?}");
    }
    assert!(
        logs.iter().any(|(l, m)| *l == 2
            && m.starts_with("authz: configured mode=ztunnel filter=network policies=2")),
        "{logs:?}"
    );
    // Counters are defined at configure, one set per policy.
    let names: Vec<String> = wasm.metrics().into_iter().map(|(n, _, _)| n).collect();
    for kind in ["allow", "deny", "audit", "dry_run"] {
        assert!(
            names.contains(&format!("authz.policy.default.get-only.{kind}")),
            "{names:?}"
        );
    }
}

#[test]
fn counters_are_bounded_for_many_policies() {
    let extra: Vec<Value> = (0..1005)
        .map(|i| {
            json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": format!("p{i:04}"), "namespace": "default"},
                "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"ports": [format!("{}", 10000 + i)]}}]}]},
            })
        })
        .collect();
    let mut cfg = config("cluster.local/ns/default/sa/bookinfo-gateway-istio", None);
    if let Some(list) = cfg["policies"].as_array_mut() {
        list.extend(extra);
    }
    let mut wasm = configure(&cfg);
    let metrics = wasm.metrics();
    assert!(
        metrics.len() <= 4 * 1000 + 4 + 2,
        "{} metrics",
        metrics.len()
    );
    assert!(metrics
        .iter()
        .any(|(n, _, _)| n == "authz.policy.other.deny"));
    // The last policies in decision order share the "other" counters.
    let mut attrs = conn(GATEWAY);
    attrs.destination_port = Some(11004);
    assert_eq!(
        wasm.connection(&attrs).expect("conn").verdict,
        Verdict::Deny
    );
    wasm.tick().expect("tick");
    assert_eq!(wasm.metric("authz.policy.other.deny"), Some(1));
}

#[test]
fn counts_reach_the_host_on_the_timer_not_per_request() {
    let mut wasm = configure(&config(
        "cluster.local/ns/default/sa/bookinfo-gateway-istio",
        None,
    ));
    for _ in 0..3 {
        assert_eq!(verdict(&mut wasm, GATEWAY), Verdict::Allow);
    }
    assert_eq!(verdict(&mut wasm, CURL), Verdict::Deny);
    let allow = "authz.policy.default.productpage-ztunnel.allow";
    // No host call per request: nothing has moved yet.
    assert_eq!(wasm.metric(allow), Some(0));
    assert_eq!(wasm.metric("authz.default.deny"), Some(0));
    wasm.tick().expect("tick");
    assert_eq!(wasm.metric(allow), Some(3));
    assert_eq!(wasm.metric("authz.default.deny"), Some(1));
    // A second tick hands over only what was counted since the first.
    assert_eq!(verdict(&mut wasm, GATEWAY), Verdict::Allow);
    wasm.tick().expect("tick");
    assert_eq!(wasm.metric(allow), Some(4));
}

#[test]
fn a_reconfiguration_hands_over_the_counts_of_the_configuration_it_replaces() {
    let mut wasm = configure(&config(
        "cluster.local/ns/default/sa/bookinfo-gateway-istio",
        None,
    ));
    assert_eq!(verdict(&mut wasm, GATEWAY), Verdict::Allow);
    assert_eq!(verdict(&mut wasm, GATEWAY), Verdict::Allow);
    wasm.reconfigure(&bytes(&config("cluster.local/ns/default/sa/curl", None)))
        .unwrap_or_else(|e| panic!("{e}"));
    let total: i64 = wasm
        .metrics()
        .into_iter()
        .filter(|(n, _, _)| n == "authz.policy.default.productpage-ztunnel.allow")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(total, 2, "{:?}", wasm.metrics());
}
