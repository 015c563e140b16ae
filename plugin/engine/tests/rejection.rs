//! A rejected configuration says what kind of mistake it is (`ConfigError::kind`) and where
//! (`field`, `policy`); tests match those, not the wording.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_engine::{Engine, ErrorKind};

const WORKLOADS: &str =
    r#""workloads": [{"name": "w", "namespace": "default", "labels": {"app": "a"}}]"#;

fn policy(name: &str, spec: &str) -> String {
    format!(
        r#"{{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {{"name": "{name}", "namespace": "default"}}, "spec": {spec}}}"#
    )
}

fn rejected(config: &str) -> (ErrorKind, String, Option<String>) {
    let e = Engine::from_json(config.as_bytes()).expect_err(config);
    (e.kind, e.field, e.policy)
}

#[test]
fn each_rejection_has_its_kind_field_and_policy() {
    use ErrorKind::*;
    let good = policy("good", "{}");
    let cases: Vec<(String, ErrorKind, &str, Option<&str>)> = vec![
        ("{\"mode\": ".to_string(), Syntax, "", None),
        (
            format!(r#"{{"mode": "sidecar", {WORKLOADS}}}"#),
            InvalidValue,
            "mode",
            None,
        ),
        (format!(r#"{{{WORKLOADS}}}"#), Missing, "mode", None),
        (
            r#"{"mode": "ztunnel"}"#.to_string(),
            Missing,
            "workloads",
            None,
        ),
        (
            format!(r#"{{"mode": "ztunnel", "filter": "http", {WORKLOADS}}}"#),
            Conflict,
            "filter",
            None,
        ),
        (
            format!(r#"{{"mode": "ztunnel", "rootNamespace": "", {WORKLOADS}}}"#),
            Empty,
            "rootNamespace",
            None,
        ),
        (
            format!(r#"{{"mode": "ztunnel", "workload": [], {WORKLOADS}}}"#),
            UnknownField,
            "workload",
            None,
        ),
        (
            r#"{"mode": "waypoint", "services": [{"name": "s", "ports": [true]}]}"#.to_string(),
            WrongType,
            "services[0].ports[0]",
            None,
        ),
        (
            r#"{"mode": "waypoint", "services": [{"name": "s", "ports": [70000]}]}"#.to_string(),
            InvalidValue,
            "services[0].ports[0]",
            None,
        ),
        (
            format!(r#"{{"mode": "ztunnel", {WORKLOADS}, "policies": [{good}, {good}]}}"#),
            Duplicate,
            "policies",
            Some("default/good"),
        ),
        (
            format!(
                r#"{{"mode": "ztunnel", {WORKLOADS}, "policies": [{{"kind": "AuthorizationPolicy"}}]}}"#
            ),
            Missing,
            "policies[0].metadata",
            None,
        ),
        (
            format!(
                r#"{{"mode": "ztunnel", {WORKLOADS}, "policies": [{}]}}"#,
                policy(
                    "bad",
                    r#"{"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}"#
                )
            ),
            InvalidValue,
            "spec.rules[0].from[0].source.ipBlocks[0]",
            Some("default/bad"),
        ),
    ];
    for (config, kind, field, policy) in cases {
        assert_eq!(
            rejected(&config),
            (kind, field.to_string(), policy.map(str::to_string)),
            "{config}"
        );
    }
}

/// The message is what users read: it names the policy, the field and the value.
#[test]
fn the_message_names_policy_field_and_value() {
    let config = format!(
        r#"{{"mode": "ztunnel", {WORKLOADS}, "policies": [{}]}}"#,
        policy(
            "bad",
            r#"{"rules": [{"to": [{"operation": {"paths": ["/a/{**}/{*}"]}}]}]}"#
        )
    );
    let e = Engine::from_json(config.as_bytes()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidValue);
    assert_eq!(
        e.to_string(),
        "policy default/bad: spec.rules[0].to[0].operation.paths[0]: invalid path template \"/a/{**}/{*}\": no {*} or {**} may follow {**}"
    );
}
