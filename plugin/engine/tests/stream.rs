//! The one-pass reader (`PluginConfig::from_json`) accepts exactly what the tree-based reader
//! (`PluginConfig::from_value`) accepts, and words every rejection the same way; its JSON
//! syntax is serde_json's, and so are its syntax errors, word for word.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use authz_engine::PluginConfig;
use proptest::prelude::*;

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

/// `from_json`'s answer for bytes serde_json refuses is serde_json's error, as it always was;
/// for bytes serde_json accepts, never a syntax error.
fn same_syntax_verdict(bytes: &[u8]) -> Result<(), String> {
    let ours = PluginConfig::from_json(bytes).map_err(|e| e.to_string());
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Err(e) => {
            let expected = format!("the plugin configuration is not valid JSON: {e}");
            if ours.as_ref().err() != Some(&expected) {
                return Err(format!("expected {expected:?}, got {ours:?}"));
            }
        }
        Ok(_) => {
            if let Err(e) = &ours {
                if e.contains("not valid JSON") {
                    return Err(format!("serde_json accepts it, we said {e:?}"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn syntax_errors_are_worded_as_serde_json_words_them() {
    let nested = |depth: usize| {
        format!(
            r#"{{"mode": "ztunnel", "x": {}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let mut docs: Vec<Vec<u8>> = [
        "",
        " ",
        "{",
        "}",
        "[",
        "{\"mode\"",
        "{\"mode\":",
        "{\"mode\" \"ztunnel\"}",
        "{\"mode\": \"ztunnel\",}",
        "{\"mode\": \"ztunnel\" \"x\": 1}",
        "{,}",
        "{1: 2}",
        "{\"a\": [1, 2,]}",
        "{\"a\": [1 2]}",
        "{\"a\": [1,",
        "{\"a\": tru}",
        "{\"a\": nul}",
        "{\"a\": fals",
        "{\"a\": t}",
        "{\"a\": -}",
        "{\"a\": -a}",
        "{\"a\": 01}",
        "{\"a\": 1.}",
        "{\"a\": 1.e5}",
        "{\"a\": 1e}",
        "{\"a\": 1e+}",
        "{\"a\": 1ex}",
        "{\"a\": .5}",
        "{\"a\": +1}",
        "{\"a\": 1e400}",
        "{\"a\": -1e400}",
        "{\"a\": 1e-400}",
        "{\"a\": 1e99999999999}",
        "{\"a\": 0e99999999999}",
        "{\"a\": 1e-99999999999}",
        "{\"a\": 17976931348623157e292}",
        "{\"a\": 17976931348623159e292}",
        "{\"a\": 123456789012345678901234567890}",
        "{\"a\": 1.5E+3, \"b\": -0, \"c\": 0.0}",
        "{\"a\": \"x}",
        "{\"a\": \"\\q\"}",
        "{\"a\": \"\\u12\"}",
        "{\"a\": \"\\u12x4\"}",
        "{\"a\": \"\\udc00\"}",
        "{\"a\": \"\\ud800\"}",
        "{\"a\": \"\\ud800x\"}",
        "{\"a\": \"\\ud800\\n\"}",
        "{\"a\": \"\\ud800\\u0041\"}",
        "{\"a\": \"\\ud83d\\ude00\"}",
        "{\"a\": \"\\u00e9\\/\\b\\f\\n\\r\\t\"}",
        "{\"a\": \"tab\there\"}",
        "{\"a\": \"\\",
        "{\"a\": \"\\u",
        "{\"mode\": \"ztunnel\"} {",
        "{\"mode\": \"ztunnel\"}\n\n  x",
        "\n\n{\n  \"mode\": \"ztunnel\",\n  \"policies\": [\n    {\"a\": 1},\n  ]\n}",
        "{\"policies\": [{}, ]}",
        "{\"policies\": [{} {}]}",
        "{\"policies\": [",
        "{\"policies\": [{",
        "{\"policies\": [{\"a\": \"\\ud800\"}]}",
        "{\"policies\": 1e400}",
        "@",
        "nul",
        "[1, 2]",
    ]
    .iter()
    .map(|d| d.as_bytes().to_vec())
    .collect();
    docs.push(nested(126).into_bytes());
    docs.push(nested(127).into_bytes());
    docs.push(format!(r#"{{"policies": [{}]}}"#, "[".repeat(130)).into_bytes());
    docs.push(b"{\"a\": \"caf\xc3\xa9\"}".to_vec());
    docs.push(b"{\"a\": \"ab\xffcd\"}".to_vec());
    docs.push(b"{\"a\": \"\\u00e9\xe9\"}".to_vec());
    docs.push(b"{\"a\xff\": 1}".to_vec());
    docs.push(b"{\"a\": \xff}".to_vec());
    for doc in &docs {
        if let Err(e) = same_syntax_verdict(doc) {
            panic!("{}: {e}", String::from_utf8_lossy(doc));
        }
    }
}

/// Bytes made of JSON's pieces, put together at random.
fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    let pieces: Vec<&'static [u8]> = vec![
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"\n",
        b"\"a\"",
        b"\"policies\"",
        b"\"mode\"",
        b"\"ztunnel\"",
        b"1",
        b"-",
        b"0",
        b"12",
        b".",
        b"5",
        b"e",
        b"E",
        b"+",
        b"true",
        b"tru",
        b"null",
        b"false",
        b"\"",
        b"\\",
        b"u",
        b"d800",
        b"dc00",
        b"00e9",
        b"\t",
        b"\x01",
        b"\xff",
        b"\xc3\xa9",
        b"x",
    ];
    proptest::collection::vec(proptest::sample::select(pieces), 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn any_bytes_get_serde_jsons_syntax_verdict(bytes in json_ish()) {
        prop_assert_eq!(same_syntax_verdict(&bytes), Ok(()));
    }
}
