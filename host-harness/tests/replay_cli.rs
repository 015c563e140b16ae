//! The harness command line as docs/cli.md describes it, on the project's own fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn harness(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_authz-harness"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run authz-harness");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn every_fixture_passes_on_the_native_engine() {
    let (code, out) = harness(&["replay", "--native-only", "tests/"]);
    let last = out.lines().last().unwrap_or("");
    assert_eq!(code, 0, "replay failed:\n{out}");
    assert!(last.ends_with(" 0 failed"), "last line: {last}");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 200, "only {passed} cases ran");
}

#[test]
fn a_wrong_expectation_makes_replay_fail() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("wrong.yaml");
    let policy = root().join("policies/bookinfo/productpage-ztunnel.yaml");
    std::fs::write(
        &fixture,
        format!(
            "name: deliberately wrong\n\
             config:\n  mode: ztunnel\n  workloads:\n  - {{name: productpage-v1, namespace: default, labels: {{app: productpage}}}}\n\
             policyFiles: [{}]\n\
             cases:\n\
             - name: curl is refused, but this case claims it is allowed\n  source: {{principal: spiffe://cluster.local/ns/default/sa/curl}}\n  destination: {{port: 9080}}\n  expect: allow\n\
             - name: the gateway is admitted by the right policy\n  source: {{principal: spiffe://cluster.local/ns/default/sa/bookinfo-gateway-istio}}\n  destination: {{port: 9080}}\n  expect: allow\n  policy: default/some-other-policy\n",
            policy.display()
        ),
    )
    .unwrap();
    let (code, out) = harness(&["replay", "--native-only", fixture.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().last(), Some("0 passed, 2 failed"), "{out}");
    assert!(out.contains("expected allow but decided deny"), "{out}");
    assert!(out.contains("expected policy \"default/some-other-policy\" but \"default/productpage-ztunnel\" decided"), "{out}");
}

#[test]
fn replay_json_prints_one_object_per_case() {
    let (code, out) = harness(&[
        "replay",
        "--native-only",
        "--format",
        "json",
        "tests/fixtures/seeds/000-l7-productpage-waypoint.yaml",
    ]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let (last, objects) = lines.split_last().unwrap();
    assert!(last.ends_with(" 0 failed"));
    assert!(objects.len() >= 3);
    for l in objects {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["result"], "passed");
        assert!(v["observed"]["native"]["verdict"].is_string());
    }
}

#[test]
fn check_explains_a_denied_request_with_the_nearest_miss() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "mode: waypoint\nwaypoint: {name: waypoint, namespace: default}\nservices:\n- {name: productpage, namespace: default, addresses: [10.96.0.10]}\n",
    )
    .unwrap();
    let case = dir.path().join("case.yaml");
    std::fs::write(
        &case,
        "source: {principal: spiffe://cluster.local/ns/default/sa/curl}\ndestination: {address: 10.96.0.10, port: 9080}\nhttp: {method: DELETE, path: /productpage, host: productpage:9080}\n",
    )
    .unwrap();
    let policy = root().join("policies/bookinfo/productpage-waypoint.yaml");
    let (code, out) = harness(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--policy-file",
        policy.to_str().unwrap(),
        "--case",
        case.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decision: DENY"), "{out}");
    assert!(
        out.contains("ALLOW policies apply and none matched"),
        "{out}"
    );
    assert!(
        out.contains("nearest miss: ALLOW policy default/productpage-waypoint spec.rules[0]"),
        "{out}"
    );
    assert!(
        out.contains("operation.methods wanted one of [\"GET\"], got \"DELETE\""),
        "{out}"
    );
}

#[test]
fn a_bad_configuration_names_the_file_policy_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "mode: ztunnel\nworkloads: [{name: w, namespace: default}]\npolicies:\n- apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {name: bad, namespace: default}\n  spec:\n    rules:\n    - from:\n      - source: {ipBlocks: [\"10.0.0.0/33\"]}\n",
    )
    .unwrap();
    let case = dir.path().join("case.yaml");
    std::fs::write(&case, "destination: {port: 80}\n").unwrap();
    let (code, out) = harness(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--case",
        case.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("config.yaml"), "{out}");
    assert!(
        out.contains(
            "policy default/bad: spec.rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/33\""
        ),
        "{out}"
    );
}

#[test]
fn a_closed_stdout_ends_the_harness_quietly() {
    // `authz-harness replay ... | head`: the reader goes away and every later write fails
    // with EPIPE. The harness must end quietly (status 141, as a command killed by SIGPIPE),
    // never with a panic.
    for args in [
        &["replay", "--native-only", "--format", "json", "tests/"][..],
        &["replay", "--native-only", "tests/fixtures/seeds/"][..],
    ] {
        // The reading end is closed before the harness starts, so its very first write
        // fails. (Closing it after spawning races the harness: a short replay can fit its
        // whole output into the pipe's buffer first and end with status 0.)
        let (reader, writer) = std::io::pipe().expect("create a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_authz-harness"))
            .args(args)
            .current_dir(root())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run authz-harness");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

#[test]
fn check_explains_the_path_envoy_delivers() {
    // Envoy normalises `:path` before any filter (Istio's default: normalize_path), so
    // `/public/../admin` reaches the policies as `/admin`: `check` must explain that request.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let case = dir.path().join("case.yaml");
    std::fs::write(
        &config,
        "mode: waypoint\n\
         waypoint: {name: waypoint, namespace: default}\n\
         services:\n- {name: productpage, namespace: default, addresses: [10.96.0.10]}\n\
         policies:\n\
         - {apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: deny-admin, namespace: default}, \
            spec: {targetRefs: [{kind: Service, group: \"\", name: productpage}], action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}}\n",
    )
    .unwrap();
    std::fs::write(
        &case,
        "source: {principal: spiffe://cluster.local/ns/default/sa/curl}\n\
         destination: {address: 10.96.0.10, port: 9080}\n\
         http: {method: GET, path: /public/../admin, host: productpage}\n",
    )
    .unwrap();
    let args = [
        "check",
        "--native-only",
        "--config",
        config.to_str().unwrap(),
        "--case",
        case.to_str().unwrap(),
    ];
    let (code, out) = harness(&args);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("decision: DENY"), "{out}");
    assert!(out.contains("DENY policy default/deny-admin"), "{out}");
    assert!(
        out.contains("\"/public/../admin\" is explained as \"/admin\""),
        "{out}"
    );
    // A request Envoy refuses before any filter has no decision to explain.
    std::fs::write(
        &case,
        "source: {principal: spiffe://cluster.local/ns/default/sa/curl}\n\
         destination: {address: 10.96.0.10, port: 9080}\n\
         http: {method: GET, path: /a%00b, host: productpage}\n",
    )
    .unwrap();
    let (code, out) = harness(&args);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("%00"), "{out}");
}
