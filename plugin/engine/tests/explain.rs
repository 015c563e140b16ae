//! What `explain` tells a person: the policies that refused, the rule that came closest, and
//! values as they are written.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_engine::{Claim, Engine, OwnedAttributes, OwnedHttp, Traffic, Verdict};
use serde_json::{json, Value};

fn waypoint(policies: Value) -> Engine {
    let config = json!({
        "mode": "waypoint",
        "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "app", "namespace": "default", "hosts": ["app.default.svc.cluster.local"], "addresses": ["10.96.0.1"]}],
        "policies": policies,
    });
    Engine::from_json(config.to_string().as_bytes()).unwrap()
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn request(method: &str, jwt: Option<Claim>) -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: Some("spiffe://cluster.local/ns/default/sa/curl".into()),
        destination_ip: Some("10.96.0.1".parse().unwrap()),
        destination_port: Some(80),
        http: Some(OwnedHttp::new(
            method.as_bytes(),
            b"/",
            b"app",
            Vec::new(),
            jwt,
        )),
        ..OwnedAttributes::default()
    }
}

const TARGET: &str = r#"[{"kind": "Service", "group": "", "name": "app"}]"#;

fn target() -> Value {
    serde_json::from_str(TARGET).unwrap()
}

#[test]
fn a_rule_less_allow_that_refused_is_named() {
    let e = waypoint(json!([policy(
        "default-deny",
        json!({"targetRefs": target()})
    )]));
    let x = e.explain(Traffic::Request, &request("GET", None));
    assert_eq!(x.verdict, Verdict::Deny);
    assert!(
        x.reason
            .contains("default/default-deny (no rules: allows nothing)"),
        "{}",
        x.reason
    );
}

#[test]
fn every_allow_policy_that_applied_is_named_when_none_matched() {
    let e = waypoint(json!([
        policy("default-deny", json!({"targetRefs": target()})),
        policy(
            "gets",
            json!({"targetRefs": target(), "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
        ),
    ]));
    let x = e.explain(Traffic::Request, &request("DELETE", None));
    assert!(
        x.reason
            .ends_with("default/default-deny (no rules: allows nothing), default/gets"),
        "{}",
        x.reason
    );
    assert_eq!(
        x.near_miss.as_ref().map(|m| m.policy.as_str()),
        Some("default/gets")
    );
}

#[test]
fn no_allow_nearest_miss_when_a_deny_decided() {
    let e = waypoint(json!([
        policy(
            "no-delete",
            json!({"targetRefs": target(), "action": "DENY", "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]})
        ),
        policy(
            "gets",
            json!({"targetRefs": target(), "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
        ),
    ]));
    let x = e.explain(Traffic::Request, &request("DELETE", None));
    assert_eq!(x.policy.as_deref(), Some("default/no-delete"));
    assert_eq!(x.near_miss, None, "the DENY rule is the explanation");
}

#[test]
fn a_claim_is_shown_as_written_in_the_token() {
    let e = waypoint(json!([policy(
        "admins",
        json!({"targetRefs": target(),
        "rules": [{"when": [{"key": "request.auth.claims[groups]", "values": ["admins"]}]}]})
    )]));
    let jwt = Claim::from_json(&json!({"iss": "i", "sub": "s", "groups": ["viewers", "guests"]}));
    let x = e.explain(Traffic::Request, &request("GET", Some(jwt)));
    let miss = x.near_miss.expect("a nearest miss");
    assert_eq!(miss.actual, r#"["viewers","guests"]"#);
}
