//! The seeds' Bookinfo walkthrough (istio.io ambient "Enforce authorization policies", and
//! "Authorization policy with waypoint proxies"), one `simulate` per step, on the checked-in
//! cluster dump: each step's outcome is the one the page states.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::run;
use serde_json::Value;

const BOOKINFO: &str = "policies/bookinfo/cluster/bookinfo.yaml";
const WAYPOINT: &str = "policies/bookinfo/cluster/waypoint.yaml";
const CURL: &str = "default/curl-6c7d8b9f5-klmno";
const REVIEWS: &str = "default/reviews-v1-5b8d6f7c4-fghij";
const GATEWAY: &str = "default/bookinfo-gateway-istio-7f9c6d5b8-pqrst";
const PROMETHEUS: &str = "istio-system/prometheus-5d8f7b6c9-uvwxy";
const PRODUCTPAGE_POD: &str = "default/productpage-v1-7d5c8f6b9-abcde";

fn policy(name: &str) -> String {
    format!("policies/bookinfo/{name}.yaml")
}

/// `simulate --format json`; returns the walk and checks the exit status agrees with it.
fn simulate(cluster: &[&str], from: &str, to: &str, http: &[&str]) -> Value {
    let mut args = vec!["simulate", "--format", "json", "--from", from, "--to", to];
    args.extend_from_slice(http);
    args.push("--cluster");
    args.extend_from_slice(cluster);
    let out = run(&args, "");
    let walk = out.json();
    let expected_code = if walk["decision"] == "allow" { 0 } else { 1 };
    assert_eq!(
        out.code, expected_code,
        "exit status for {walk}\n{}",
        out.stderr
    );
    walk
}

/// (proxy, decision, policy) of every hop.
fn hops(walk: &Value) -> Vec<(String, String, String)> {
    walk["hops"]
        .as_array()
        .unwrap_or_else(|| panic!("no hops in {walk}"))
        .iter()
        .map(|h| {
            (
                h["proxy"].as_str().unwrap_or("").to_string(),
                h["decision"].as_str().unwrap_or("").to_string(),
                h["policy"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn hop(proxy: &str, decision: &str, policy: &str) -> (String, String, String) {
    (proxy.into(), decision.into(), policy.into())
}

#[test]
fn layer4_policy_refuses_curl_at_the_destination_ztunnel() {
    let l4 = policy("productpage-ztunnel");
    let walk = simulate(
        &[BOOKINFO, &l4],
        CURL,
        "productpage:9080",
        &["--path", "/productpage"],
    );
    assert_eq!(walk["decision"], "deny");
    assert_eq!(hops(&walk), vec![hop("ztunnel", "deny", "")]);
    assert_eq!(
        walk["hops"][0]["source"], "spiffe://cluster.local/ns/default/sa/curl",
        "with no waypoint the ztunnel sees the client itself"
    );
    assert_eq!(
        walk["hops"][0]["nearestMiss"]["policy"],
        "default/productpage-ztunnel"
    );
}

#[test]
fn layer4_policy_admits_the_gateway() {
    let l4 = policy("productpage-ztunnel");
    let walk = simulate(&[BOOKINFO, &l4], GATEWAY, "productpage:9080", &[]);
    assert_eq!(
        hops(&walk),
        vec![hop("ztunnel", "allow", "default/productpage-ztunnel")]
    );
}

#[test]
fn with_the_waypoint_a_delete_is_refused_at_the_waypoint() {
    let (l4, l7) = (
        policy("productpage-ztunnel-with-waypoint"),
        policy("productpage-waypoint"),
    );
    let walk = simulate(
        &[BOOKINFO, WAYPOINT, &l4, &l7],
        CURL,
        "productpage:9080",
        &["--method", "DELETE", "--path", "/productpage"],
    );
    assert_eq!(hops(&walk), vec![hop("waypoint", "deny", "")]);
    assert_eq!(walk["hops"][0]["name"], "default/waypoint");
    assert_eq!(walk["hops"][0]["layer"], 7);
    assert_eq!(
        walk["hops"][0]["nearestMiss"]["field"],
        "spec.rules[0].to[0].operation.methods"
    );
}

#[test]
fn with_the_waypoint_reviews_is_refused_at_the_waypoint() {
    let (l4, l7) = (
        policy("productpage-ztunnel-with-waypoint"),
        policy("productpage-waypoint"),
    );
    let walk = simulate(
        &[BOOKINFO, WAYPOINT, &l4, &l7],
        REVIEWS,
        "productpage:9080",
        &["--path", "/productpage"],
    );
    assert_eq!(hops(&walk), vec![hop("waypoint", "deny", "")]);
    assert_eq!(
        walk["hops"][0]["source"],
        "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    );
}

#[test]
fn a_get_is_refused_at_the_ztunnel_until_its_policy_admits_the_waypoint() {
    let (l4, l7) = (
        policy("productpage-ztunnel"),
        policy("productpage-waypoint"),
    );
    let walk = simulate(
        &[BOOKINFO, WAYPOINT, &l4, &l7],
        CURL,
        "productpage:9080",
        &["--path", "/productpage"],
    );
    assert_eq!(
        hops(&walk),
        vec![
            hop("waypoint", "allow", "default/productpage-waypoint"),
            hop("ztunnel", "deny", ""),
        ]
    );
    assert_eq!(
        walk["hops"][1]["source"], "spiffe://cluster.local/ns/default/sa/waypoint",
        "behind a waypoint the ztunnel sees the waypoint's identity"
    );
}

#[test]
fn a_get_from_curl_is_allowed_once_the_ztunnel_admits_the_waypoint() {
    // productpage-ztunnel-with-waypoint replaces productpage-ztunnel (same name), as the
    // walkthrough's second `kubectl apply` does.
    let (l4, l7, update) = (
        policy("productpage-ztunnel"),
        policy("productpage-waypoint"),
        policy("productpage-ztunnel-with-waypoint"),
    );
    let walk = simulate(
        &[BOOKINFO, WAYPOINT, &l4, &l7, &update],
        CURL,
        "productpage:9080",
        &["--path", "/productpage"],
    );
    assert_eq!(walk["decision"], "allow");
    assert_eq!(
        hops(&walk),
        vec![
            hop("waypoint", "allow", "default/productpage-waypoint"),
            hop("ztunnel", "allow", "default/productpage-ztunnel"),
        ]
    );
}

#[test]
fn prometheus_scrapes_the_pod_directly_past_the_waypoint() {
    let exception = policy("productpage-ztunnel-prometheus-exception");
    let walk = simulate(
        &[BOOKINFO, WAYPOINT, &exception],
        PROMETHEUS,
        &format!("{PRODUCTPAGE_POD}:9090"),
        &[],
    );
    // Pod-addressed traffic skips a `waypoint-for: service` waypoint.
    assert_eq!(
        hops(&walk),
        vec![hop(
            "ztunnel",
            "allow",
            "default/productpage-ztunnel-policy"
        )]
    );
    // ... but only on the metrics port.
    let walk = simulate(
        &[BOOKINFO, WAYPOINT, &exception],
        PROMETHEUS,
        &format!("{PRODUCTPAGE_POD}:9080"),
        &[],
    );
    assert_eq!(hops(&walk), vec![hop("ztunnel", "deny", "")]);
}

#[test]
fn the_waypoint_only_policy_refuses_curl_calling_the_pod_directly() {
    let only = policy("productpage-ztunnel-waypoint-only");
    let walk = simulate(
        &[BOOKINFO, WAYPOINT, &only],
        CURL,
        &format!("{PRODUCTPAGE_POD}:9080"),
        &[],
    );
    assert_eq!(hops(&walk), vec![hop("ztunnel", "deny", "")]);
}

#[test]
fn expect_turns_a_decision_into_an_exit_status() {
    let l4 = policy("productpage-ztunnel");
    let args = |expect: &'static str| {
        vec![
            "simulate",
            "--from",
            CURL,
            "--to",
            "productpage",
            "--expect",
            expect,
            "--cluster",
            BOOKINFO,
        ]
    };
    let mut deny = args("deny");
    deny.push(&l4);
    assert_eq!(run(&deny, "").code, 0);
    let mut allow = args("allow");
    allow.push(&l4);
    let out = run(&allow, "");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("expected allow, decided deny"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_cluster_can_come_from_standard_input() {
    let dump = std::fs::read_to_string(common::root().join(BOOKINFO)).expect("dump");
    let l4 = policy("productpage-ztunnel");
    let out = run(
        &[
            "simulate",
            "--format",
            "json",
            "--from",
            CURL,
            "--to",
            "productpage",
            "--cluster",
            "-",
            &l4,
        ],
        &dump,
    );
    assert_eq!(out.json()["decision"], "deny", "{}", out.stderr);
}

#[test]
fn an_unknown_pod_is_an_error_naming_it() {
    let out = run(
        &[
            "simulate",
            "--from",
            "default/nobody",
            "--to",
            "productpage",
            "--cluster",
            BOOKINFO,
        ],
        "",
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("default/nobody: no such pod"),
        "{}",
        out.stderr
    );
}

#[test]
fn version_help_and_completions_work() {
    let out = run(&["--version"], "");
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("istio-authz "), "{}", out.stdout);
    let out = run(&["simulate", "--help"], "");
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("--from-sa"),
        "simulate's own help: {}",
        out.stdout
    );
    let out = run(&["completions", "bash"], "");
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("complete -F"), "{}", out.stdout);
    let out = run(&["simulate", "--to", "x"], "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("Usage: istio-authz simulate"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_service_entry_that_uses_the_waypoint_is_in_its_configuration() {
    let entry = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: external-api, namespace: default}\nspec:\n  hosts: [api.example.com]\n  addresses: [240.240.0.7]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS\n";
    let out = run(
        &[
            "config",
            "--waypoint",
            "default/waypoint",
            "--cluster",
            BOOKINFO,
            WAYPOINT,
            "-",
        ],
        entry,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config = out.json();
    let services = config["services"].as_array().expect("services");
    let entry = services
        .iter()
        .find(|s| s["name"] == "external-api")
        .unwrap_or_else(|| panic!("{config:#}"));
    assert_eq!(entry["kind"], "ServiceEntry");
    assert_eq!(entry["addresses"][0], "240.240.0.7");
    assert_eq!(entry["hosts"][0], "api.example.com");
    // The namespace's other services are there too, each with the address that chooses it.
    let productpage = services
        .iter()
        .find(|s| s["name"] == "productpage")
        .expect("productpage");
    assert_eq!(productpage["addresses"][0], "10.96.0.10");
}
