//! The one-pass reader (`PluginConfig::from_json`) accepts exactly what the tree-based reader
//! (`PluginConfig::from_value`) accepts, and words every rejection the same way.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_engine::PluginConfig;

const GOOD: &str = r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
  "metadata": {"name": "good", "namespace": "default"},
  "spec": {"selector": {"matchLabels": {"app": "a"}}, "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"]}}]}]}}"#;
const BAD: &str = r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
  "metadata": {"name": "bad", "namespace": "default"},
  "spec": {"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/33"]}}]}]}}"#;
const NAMELESS: &str =
    r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "spec": {}}"#;

fn documents() -> Vec<String> {
    let workloads = r#""workloads": [{"name": "w", "namespace": "default", "serviceAccount": "w", "labels": {"app": "a"}}]"#;
    let mut docs: Vec<String> = vec![
        "".into(),
        "[]".into(),
        "\"ztunnel\"".into(),
        "{}".into(),
        "{".into(),
        format!(r#"{{"mode": "ztunnel", {workloads}}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": null}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": "no"}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": {{"a": 1}}}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": 3}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{GOOD}]}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{GOOD}, {BAD}, {NAMELESS}]}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{GOOD}, {NAMELESS}, {BAD}]}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{BAD}, {GOOD}, ]}}"#),
        format!(r#"{{"mode": "ztunnel", {workloads}, "policies": [{BAD}], "policies": [{GOOD}]}}"#),
        format!(r#"{{"policies": [{BAD}], "mode": "nope", {workloads}}}"#),
        format!(r#"{{"policies": [{GOOD}], "mode": "ztunnel", {workloads}}} trailing"#),
        format!(r#"{{"policies": [{GOOD}], "mode": "ztunnel", {workloads}, "extra": 1}}"#),
        format!(r#"{{"policies": [1, {GOOD}], "mode": "ztunnel", {workloads}}}"#),
        format!(r#"  {{"mode": "waypoint", "policies": [{GOOD}]}}  "#),
    ];
    docs.push(format!(
        r#"{{"mode": "ztunnel", {workloads}, "policies": [{GOOD}, 3"#
    ));
    docs
}

fn tree(bytes: &[u8]) -> Result<PluginConfig, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the plugin configuration is not valid JSON: {e}"))?;
    PluginConfig::from_value(&value).map_err(|e| e.to_string())
}

#[test]
fn one_pass_and_tree_agree_on_every_document() {
    for doc in documents() {
        let streamed = PluginConfig::from_json(doc.as_bytes()).map_err(|e| e.to_string());
        assert_eq!(streamed, tree(doc.as_bytes()), "for {doc}");
    }
}

#[test]
fn a_valid_document_with_many_policies_is_read_in_order() {
    let policies: Vec<String> = (0..50)
        .map(|i| GOOD.replace("\"good\"", &format!("\"p{i:02}\"")))
        .collect();
    let doc = format!(
        r#"{{"policies": [{}], "mode": "ztunnel", "workloads": [{{"name": "w", "namespace": "default", "serviceAccount": "w"}}]}}"#,
        policies.join(",")
    );
    let config = PluginConfig::from_json(doc.as_bytes()).unwrap();
    assert_eq!(config.policies.len(), 50);
    assert_eq!(Ok(config), tree(doc.as_bytes()));
}
