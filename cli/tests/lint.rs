//! `istio-authz lint`: each mistake on the Bookinfo dump, with its exact finding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::run;
use serde_json::Value;

const BOOKINFO: &str = "policies/bookinfo/cluster/bookinfo.yaml";
const WAYPOINT: &str = "policies/bookinfo/cluster/waypoint.yaml";

/// Lints the dump (with the waypoint) plus `extra` from standard input; returns the findings
/// and checks the exit status (1 with an error finding, 0 without).
fn lint(extra: &str, with_waypoint: bool) -> Vec<Value> {
    let mut args = vec!["lint", "--format", "json", "--cluster", BOOKINFO];
    if with_waypoint {
        args.push(WAYPOINT);
    }
    args.push("-");
    let out = run(&args, extra);
    let report = out.json();
    let errors = report["errors"].as_u64().unwrap_or(0);
    assert_eq!(out.code, i32::from(errors > 0), "{report}\n{}", out.stderr);
    report["findings"].as_array().cloned().unwrap_or_default()
}

/// The one finding with this code.
fn only<'a>(findings: &'a [Value], code: &str) -> &'a Value {
    let of: Vec<&Value> = findings.iter().filter(|f| f["code"] == code).collect();
    assert_eq!(of.len(), 1, "one {code} finding expected in {findings:#?}");
    of[0]
}

#[test]
fn the_walkthroughs_final_state_is_clean() {
    let text = format!(
        "{}\n---\n{}",
        std::fs::read_to_string(
            common::root().join("policies/bookinfo/productpage-ztunnel-with-waypoint.yaml")
        )
        .unwrap_or_default(),
        std::fs::read_to_string(common::root().join("policies/bookinfo/productpage-waypoint.yaml"))
            .unwrap_or_default(),
    );
    assert_eq!(lint(&text, true), Vec::<Value>::new());
}

#[test]
fn a_misspelled_kind_is_an_error() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorisationPolicy\nmetadata: {name: deny-curl, namespace: default}\nspec:\n  action: DENY\n",
        true,
    );
    let f = only(&findings, "unknown-kind");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["object"], "default/deny-curl");
    assert_eq!(f["file"], "standard input (document 1)");
    assert_eq!(f["field"], "kind");
    assert!(f["message"]
        .as_str()
        .unwrap_or("")
        .contains("\"AuthorisationPolicy\""));
}

#[test]
fn an_unknown_kind_in_security_istio_io_is_an_error() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthzPolicy\nmetadata: {name: x, namespace: default}\n",
        true,
    );
    assert_eq!(only(&findings, "unknown-kind")["object"], "default/x");
}

#[test]
fn a_target_ref_kind_typo_is_an_error_with_a_suggestion() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: typo, namespace: default}\nspec:\n  targetRefs: [{kind: Servcie, group: \"\", name: productpage}]\n",
        true,
    );
    let f = only(&findings, "targetref-kind");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["field"], "spec.targetRefs[0].kind");
    assert!(
        f["fix"]
            .as_str()
            .unwrap_or("")
            .contains("did you mean kind \"Service\""),
        "{f}"
    );
}

#[test]
fn a_target_ref_to_a_missing_service_is_an_error() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ghost, namespace: default}\nspec:\n  targetRefs: [{kind: Service, group: \"\", name: ratings}]\n",
        true,
    );
    let f = only(&findings, "targetref-missing");
    assert_eq!(f["field"], "spec.targetRefs[0].name");
    assert!(f["message"]
        .as_str()
        .unwrap_or("")
        .contains("Service default/ratings"));
}

#[test]
fn a_selector_that_selects_no_pod_is_a_warning() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: nobody, namespace: default}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  action: DENY\n  rules: [{}]\n",
        true,
    );
    let f = only(&findings, "selector-no-pods");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["field"], "spec.selector.matchLabels");
}

#[test]
fn a_layer7_allow_at_ztunnel_that_denies_everything_is_an_error() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: get-only, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
        true,
    );
    let f = only(&findings, "layer7-at-ztunnel");
    assert_eq!(f["severity"], "error");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or("")
            .contains("denies all traffic"),
        "{f}"
    );
}

#[test]
fn a_layer7_deny_at_ztunnel_that_keeps_a_layer4_condition_is_a_warning() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-delete, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules: [{from: [{source: {namespaces: [other]}}], to: [{operation: {methods: [DELETE]}}]}]\n",
        true,
    );
    assert_eq!(only(&findings, "layer7-at-ztunnel")["severity"], "warning");
}

#[test]
fn a_ztunnel_policy_that_refuses_the_waypoint_is_an_error() {
    let text =
        std::fs::read_to_string(common::root().join("policies/bookinfo/productpage-ztunnel.yaml"))
            .unwrap_or_default();
    let findings = lint(&text, true);
    let f = only(&findings, "ztunnel-refuses-waypoint");
    assert_eq!(f["object"], "default/productpage-ztunnel");
    assert!(
        f["fix"]
            .as_str()
            .unwrap_or("")
            .contains("cluster.local/ns/default/sa/waypoint"),
        "{f}"
    );
    // Without a waypoint in front, the same policy is what the walkthrough wants.
    assert!(lint(&text, false).is_empty());
}

#[test]
fn a_waypoint_policy_for_a_service_without_a_waypoint_is_an_error() {
    let text =
        std::fs::read_to_string(common::root().join("policies/bookinfo/productpage-waypoint.yaml"))
            .unwrap_or_default();
    let findings = lint(&text, false);
    let f = only(&findings, "no-waypoint");
    assert_eq!(f["field"], "spec.targetRefs[0]");
    assert!(f["message"]
        .as_str()
        .unwrap_or("")
        .contains("Service default/productpage has no waypoint"));
}

#[test]
fn a_gateway_class_policy_outside_the_root_namespace_is_an_error() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: default}\nspec:\n  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]\n",
        true,
    );
    assert_eq!(
        only(&findings, "gatewayclass-outside-root")["field"],
        "spec.targetRefs[0]"
    );
}

#[test]
fn a_policy_the_proxy_would_refuse_is_an_error_naming_the_field() {
    let findings = lint(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}]\n",
        true,
    );
    let f = only(&findings, "invalid");
    assert_eq!(f["field"], "spec.rules[0].from[0].source.ipBlocks[0]");
    assert!(f["message"].as_str().unwrap_or("").contains("10.0.0.0/33"));
}

#[test]
fn a_waypoint_policy_for_a_service_entry_without_a_waypoint_is_an_error() {
    let text = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: external-api, namespace: default}\nspec: {hosts: [api.example.com], addresses: [240.240.0.7], ports: [{number: 443, name: tls}]}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: api-deny, namespace: default}\nspec:\n  targetRefs: [{kind: ServiceEntry, group: networking.istio.io, name: external-api}]\n  action: DENY\n  rules: [{to: [{operation: {methods: [DELETE]}}]}]\n";
    let f = only(&lint(text, false), "no-waypoint").clone();
    assert!(
        f["message"]
            .as_str()
            .unwrap_or("")
            .contains("ServiceEntry default/external-api has no waypoint"),
        "{f}"
    );
    // With the namespace's waypoint, the ServiceEntry uses it.
    assert!(lint(text, true).iter().all(|f| f["code"] != "no-waypoint"));
}
