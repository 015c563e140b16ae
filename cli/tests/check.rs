//! `istio-authz check --config` and `istio-authz test`: one proxy's configuration, requests
//! inline or from case files, the user's own fixtures; exit status and JSON output a program
//! can rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::run;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const WAYPOINT: &str = "mode: waypoint\nwaypoint: {name: waypoint, namespace: default}\nservices:\n- {name: productpage, namespace: default, hosts: [productpage.default.svc.cluster.local], addresses: [10.96.0.10], ports: [9080]}\n";
const L7: &str = "policies/bookinfo/productpage-waypoint.yaml";

/// `check` with the proxy's configuration on standard input and the policies of `policy_file`.
fn check_policy_file(policy_file: &str, extra: &[&str], stdin: &str) -> common::Run {
    let mut args = vec!["check", "--config", "-", "--policy-file", policy_file];
    args.extend_from_slice(extra);
    run(&args, stdin)
}

fn check(extra: &[&str], stdin: &str) -> common::Run {
    check_policy_file(L7, extra, stdin)
}

/// `check --case` with `cases` (YAML) written to a file of the scratch directory `scratch`.
fn check_cases(scratch: &str, cases: &str) -> common::Run {
    let scratch = common::Scratch::new(scratch);
    let file = scratch.file("cases.yaml", cases);
    check(&["--case", file.to_str().unwrap()], WAYPOINT)
}

#[test]
fn an_inline_request_is_explained_and_the_exit_status_tells_allow_from_deny() {
    let out = check(
        &[
            "--from",
            "default/curl",
            "--to",
            "10.96.0.10:9080",
            "--method",
            "DELETE",
        ],
        WAYPOINT,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("methods wanted one of [\"GET\"], got \"DELETE\""),
        "{}",
        out.stdout
    );
    let out = check(
        &[
            "--from",
            "cluster.local/ns/default/sa/curl",
            "--to",
            "10.96.0.10:9080",
            "--path",
            "/",
        ],
        WAYPOINT,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = check(
        &[
            "--from",
            "default/curl",
            "--to",
            "10.96.0.10:9080",
            "--method",
            "DELETE",
            "--expect",
            "deny",
        ],
        WAYPOINT,
    );
    assert_eq!(out.code, 0, "--expect deny holds: {}", out.stderr);
}

#[test]
fn json_output_is_one_object_with_the_load_notes() {
    let ztunnel = "mode: ztunnel\nworkloads: [{name: p, namespace: default, serviceAccount: p, labels: {app: productpage}}]\npolicies:\n- apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {name: get-only, namespace: default}\n  spec:\n    selector: {matchLabels: {app: productpage}}\n    rules: [{to: [{operation: {methods: [GET]}}]}]\n";
    let out = run(
        &[
            "check", "--config", "-", "--to", ":9080", "--format", "json",
        ],
        ztunnel,
    );
    let v = out.json();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["cases"][0]["decision"], "deny");
    let notes = v["notes"].as_array().expect("notes");
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap_or("")
            .contains("default/get-only (converted)")),
        "{v}"
    );
}

#[test]
fn a_case_list_checks_each_expectation() {
    let out = check_cases(
        "check",
        "- name: curl GET\n  source: {principal: spiffe://cluster.local/ns/default/sa/curl}\n  destination: {address: 10.96.0.10, port: 9080}\n  http: {method: GET, path: /, host: productpage}\n  expect: allow\n- name: curl DELETE\n  source: {principal: spiffe://cluster.local/ns/default/sa/curl}\n  destination: {address: 10.96.0.10, port: 9080}\n  http: {method: DELETE, path: /, host: productpage}\n  expect: deny\n",
    );
    assert_eq!(
        out.code, 0,
        "both expectations hold: {}{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("case: curl DELETE"), "{}", out.stdout);
    // A wrong expectation fails the run and says so.
    let out = check_cases(
        "check",
        "cases:\n- name: curl DELETE\n  source: {principal: spiffe://cluster.local/ns/default/sa/curl}\n  destination: {address: 10.96.0.10, port: 9080}\n  http: {method: DELETE, path: /, host: productpage}\n  expect: allow\n",
    );
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("expected: ALLOW"), "{}", out.stdout);
}

#[test]
fn a_principal_without_its_scheme_is_flagged() {
    let out = check_cases(
        "scheme",
        "source: {principal: cluster.local/ns/default/sa/curl}\ndestination: {address: 10.96.0.10, port: 9080}\nhttp: {method: GET, path: /, host: productpage}\n",
    );
    assert!(
        out.stdout.contains("has no spiffe:// scheme"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_error_in_a_policy_file_names_that_file() {
    let scratch = common::Scratch::new("bad");
    let bad = scratch.file(
        "bad.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: default}\nspec:\n  rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}]\n",
    );
    let out = check_policy_file(bad.to_str().unwrap(), &["--to", ":9080"], WAYPOINT);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains(&format!("{}: policy default/bad", bad.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn test_replays_fixtures_and_its_json_is_json_throughout() {
    let out = run(&["test", "--format", "json", "tests/fixtures/seeds"], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = &lines.last().expect("a summary")["summary"];
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["passed"].as_u64(), Some(lines.len() as u64 - 1));
}

#[test]
fn test_fails_on_a_wrong_expectation() {
    let scratch = common::Scratch::new("test");
    scratch.file(
        "wrong.yaml",
        format!("name: wrong\nconfig:\n  {}\ncases:\n- name: curl DELETE\n  source: {{principal: spiffe://cluster.local/ns/default/sa/curl}}\n  destination: {{address: 10.96.0.10, port: 9080}}\n  http: {{method: DELETE, path: /, host: productpage}}\n  expect: allow\n",
            WAYPOINT.replace('\n', "\n  ") + "policyFiles: [" + &common::root().join(L7).display().to_string() + "]"),
    );
    let out = run(&["test", scratch.path().to_str().unwrap()], "");
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("0 passed, 1 failed"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_closed_standard_output_ends_the_run_without_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_istio-authz"))
        .args(["test", "--format", "json", "tests/"])
        .current_dir(common::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone, as with `| head -1`.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101));
}

#[test]
fn policies_can_come_from_standard_input() {
    let policy = std::fs::read_to_string(common::root().join(L7)).unwrap();
    let scratch = common::Scratch::new("stdin");
    let config = scratch.file("waypoint.yaml", WAYPOINT);
    let out = run(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--policy-file",
            "-",
            "--from",
            "default/curl",
            "--to",
            "10.96.0.10:9080",
            "--method",
            "DELETE",
            "--format",
            "json",
        ],
        &policy,
    );
    assert_eq!(out.json()["cases"][0]["decision"], "deny", "{}", out.stderr);
}

#[test]
fn a_misspelled_policy_kind_is_refused_not_skipped() {
    let scratch = common::Scratch::new("kind");
    let deny = scratch.file(
        "deny.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorisationPolicy\nmetadata: {name: deny-curl, namespace: default}\nspec: {action: DENY, rules: [{}]}\n",
    );
    let out = check_policy_file(
        deny.to_str().unwrap(),
        &["--to", "10.96.0.10:9080", "--method", "GET"],
        WAYPOINT,
    );
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("\"AuthorisationPolicy\""),
        "{}",
        out.stderr
    );
}

#[test]
fn render_says_where_a_ztunnel_mode_plugin_can_run() {
    let out = run(
        &[
            "render",
            "--kind",
            "WasmPlugin",
            "--mode",
            "ztunnel",
            "--workload",
            "default/productpage-v1:app=productpage",
            "--policy-file",
            "policies/bookinfo/productpage-ztunnel.yaml",
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("kind: WasmPlugin"), "{}", out.stdout);
    assert!(
        out.stderr.contains("ztunnel runs no Wasm"),
        "{}",
        out.stderr
    );
    let out = run(
        &[
            "render",
            "--kind",
            "WasmPlugin",
            "--mode",
            "waypoint",
            "--waypoint",
            "default/waypoint",
            "--service",
            "default/productpage",
            "--service-address",
            "10.96.0.10",
            "--policy-file",
            "policies/bookinfo/productpage-waypoint.yaml",
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}
