//! What we accept is what a cluster accepts: every AuthorizationPolicy in `policies/` and in
//! the fixtures validates against the upstream CRD's OpenAPI schema (../shared/crds).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_fixture::fixture::{self, read_policies};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The CRD, from the shared folder beside the repository.
fn crd() -> Value {
    let candidates = [
        root().join("../shared/crds/authorizationpolicies.security.istio.io.yaml"),
        root().join("shared/crds/authorizationpolicies.security.istio.io.yaml"),
    ];
    let path = candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("the AuthorizationPolicy CRD is not at {:?}", candidates));
    fixture::read_value(path).unwrap()
}

fn validators() -> Vec<(String, jsonschema::Validator)> {
    let crd = crd();
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_string();
            let schema = v["schema"]["openAPIV3Schema"].clone();
            (
                name,
                jsonschema::validator_for(&schema).expect("the CRD schema compiles"),
            )
        })
        .collect()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        {
            out.push(p);
        }
    }
}

fn check(
    policy: &Value,
    origin: &str,
    validators: &[(String, jsonschema::Validator)],
) -> Vec<String> {
    let version = policy["apiVersion"]
        .as_str()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let Some((_, v)) = validators.iter().find(|(n, _)| *n == version) else {
        return vec![format!(
            "{origin}: apiVersion {version:?} is not served by the CRD"
        )];
    };
    v.iter_errors(policy)
        .map(|e| format!("{origin}: {} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_policy_file_is_valid_against_the_crd() {
    let validators = validators();
    let mut files = Vec::new();
    yaml_files(&root().join("policies"), &mut files);
    let mut errors = Vec::new();
    let mut count = 0;
    for f in files {
        for p in read_policies(&f).unwrap() {
            count += 1;
            errors.extend(check(&p, &f.display().to_string(), &validators));
        }
    }
    assert!(count >= 6, "only {count} policies found");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_policy_in_a_valid_fixture_is_valid_against_the_crd() {
    let validators = validators();
    let mut files = Vec::new();
    yaml_files(&root().join("tests"), &mut files);
    let mut errors = Vec::new();
    let mut count = 0;
    for f in files.iter().filter(|f| fixture::is_fixture(f)) {
        let fx = fixture::Fixture::load(f).unwrap();
        if fx.expect_error.is_some() {
            continue;
        }
        for p in fx.config["policies"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            count += 1;
            errors.extend(check(&p, &f.display().to_string(), &validators));
        }
    }
    assert!(count >= 50, "only {count} policies found");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_schema_check_rejects_what_the_crd_rejects() {
    // The validator really validates: an integer port and an unknown action are refused.
    let validators = validators();
    let bad: Value = serde_json::json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"action": "REJECT", "rules": [{"to": [{"operation": {"ports": [8080]}}]}]}
    });
    let errors = check(&bad, "inline", &validators);
    assert!(errors.len() >= 2, "{errors:?}");
}
