//! `Engine::from_json` compiles each policy as it is read; the result, or the error, is what
//! compiling the whole parsed configuration gives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_engine::{Engine, PluginConfig};

fn policy(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        r#"{{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {{"name": "{name}", "namespace": "{namespace}"}}, "spec": {spec}}}"#
    )
}

fn documents() -> Vec<String> {
    let workloads = r#""workloads": [{"name": "w", "namespace": "default", "serviceAccount": "w", "labels": {"app": "a"}}]"#;
    let allow = policy(
        "allow",
        "default",
        r#"{"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"]}}], "to": [{"operation": {"methods": ["GET"]}}]}]}"#,
    );
    let deny = policy(
        "deny",
        "istio-system",
        r#"{"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["a", "b"]}}]}, {"when": [{"key": "request.headers[x]", "values": ["y"]}]}]}"#,
    );
    let custom = policy(
        "ext",
        "default",
        r#"{"action": "CUSTOM", "provider": {"name": "p"}, "rules": [{"to": [{"operation": {"paths": ["/a"]}}]}]}"#,
    );
    let waypoint = policy(
        "wp",
        "default",
        r#"{"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}], "rules": [{"from": [{"source": {"namespaces": ["team-*", "x"]}}], "to": [{"operation": {"hosts": ["*.Example.com"], "ports": ["80"]}}]}, {}]}"#,
    );
    let bad = policy(
        "bad",
        "default",
        r#"{"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}"#,
    );
    vec![
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{allow}, {deny}, {custom}]}}"#),
        // `policies` before the keys compiling needs.
        format!(
            r#"{{"policies": [{deny}, {allow}, {custom}, {waypoint}], "trustDomain": "td", "trustDomainAliases": ["old"], "mode": "ztunnel", {workloads}}}"#
        ),
        format!(r#"{{"mode": "waypoint", "policies": [{waypoint}, {allow}, {deny}]}}"#),
        format!(r#"{{"mode": "waypoint", "filter": "network", "policies": [{waypoint}, {deny}]}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{allow}, {allow}]}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{allow}, {bad}]}}"#),
        format!(
            r#"{{"mode": "ztunnel", {workloads}, "policies": [{bad}], "policies": [{allow}]}}"#
        ),
        format!(r#"{{"policies": [{allow}], "mode": "nope", {workloads}}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": null}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{allow}] "#),
    ]
}

fn whole(bytes: &[u8]) -> Result<String, String> {
    let config = PluginConfig::from_json(bytes).map_err(|e| e.to_string())?;
    Engine::from_config(config)
        .map(|e| format!("{e:?}"))
        .map_err(|e| e.to_string())
}

#[test]
fn compiling_as_read_gives_the_engine_or_error_of_compiling_the_whole() {
    let mut accepted = 0;
    for doc in documents() {
        let streamed = Engine::from_json(doc.as_bytes())
            .map(|e| format!("{e:?}"))
            .map_err(|e| e.to_string());
        accepted += usize::from(streamed.is_ok());
        assert_eq!(streamed, whole(doc.as_bytes()), "for {doc}");
    }
    // Both sides of the comparison are exercised.
    assert_eq!(accepted, 7);
}

#[test]
fn compiling_owned_bytes_gives_the_same_engine_or_error() {
    for doc in documents() {
        let owned = Engine::from_json_bytes(doc.clone().into_bytes())
            .map(|e| format!("{e:?}"))
            .map_err(|e| e.to_string());
        assert_eq!(owned, whole(doc.as_bytes()), "for {doc}");
    }
}
