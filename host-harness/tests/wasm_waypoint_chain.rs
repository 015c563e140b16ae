//! The module's identity and address reads in the two places Envoy runs it, in the Wasmtime
//! host: Istio's waypoint chain (caller in the filter state `io.istio.peer_principal`, direct
//! peer in `envoy.filters.listener.original_dst.remote_ip`) and a listener terminating the
//! client's mTLS itself (caller in the peer certificate). Values as measured in Envoy 1.40
//! (see `authz_wasm_host::codec::Topology`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_plugin::engine::{OwnedAttributes, Verdict};
use authz_wasm_host::codec::Topology;
use authz_wasm_host::{PluginInstance, StreamOptions, WasmOutcome};
use common::{ip, policy, productpage_request, productpage_spec, waypoint_config};
use serde_json::{json, Value};

const CURL: &str = "spiffe://cluster.local/ns/default/sa/curl";
const OTHER: &str = "spiffe://cluster.local/ns/other/sa/client";

/// The productpage waypoint with one policy, `p`: `action` on the one rule `rule`.
fn configure(rule: Value, action: &str) -> PluginInstance {
    common::configure(&waypoint_config(vec![policy(
        "p",
        "default",
        productpage_spec(action, json!([rule])),
    )]))
}

/// `GET /` to productpage as `principal` from `source`, forwarded for `remote`.
fn request(principal: Option<&str>, source: &str, remote: Option<&str>) -> OwnedAttributes {
    OwnedAttributes {
        source_ip: Some(ip(source)),
        remote_ip: remote.map(ip),
        ..productpage_request(principal, "GET", "/", &[], None)
    }
}

fn run(
    wasm: &mut PluginInstance,
    attrs: &OwnedAttributes,
    topology: Topology,
    extra: &[(&[&str], &str)],
) -> WasmOutcome {
    let opts = StreamOptions {
        topology,
        extra_properties: extra
            .iter()
            .map(|(path, v)| {
                (
                    path.iter().map(|s| s.to_string()).collect(),
                    v.as_bytes().to_vec(),
                )
            })
            .collect(),
        ..StreamOptions::default()
    };
    wasm.request_with(attrs, &opts)
        .unwrap_or_else(|e| panic!("request: {e}"))
}

#[test]
fn the_caller_comes_from_the_waypoint_filter_state_inside_the_chain() {
    for (action, curl, other) in [
        ("ALLOW", Verdict::Allow, Verdict::Deny),
        ("DENY", Verdict::Deny, Verdict::Allow),
    ] {
        let mut wasm = configure(
            json!({"from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"]}}]}),
            action,
        );
        for topology in [Topology::WaypointChain, Topology::Direct] {
            let got = run(
                &mut wasm,
                &request(Some(CURL), "10.1.0.7", None),
                topology,
                &[],
            );
            assert_eq!(
                got.verdict, curl,
                "{action} curl {topology:?}: {:?}",
                got.logs
            );
            let got = run(
                &mut wasm,
                &request(Some(OTHER), "10.1.0.7", None),
                topology,
                &[],
            );
            assert_eq!(
                got.verdict, other,
                "{action} other {topology:?}: {:?}",
                got.logs
            );
        }
    }
}

#[test]
fn two_different_identities_are_denied() {
    let mut wasm = configure(json!({}), "ALLOW");
    // The certificate says curl, the waypoint's filter state another caller.
    let got = run(
        &mut wasm,
        &request(Some(CURL), "10.1.0.7", None),
        Topology::Direct,
        &[(&["filter_state", "io.istio.peer_principal"], OTHER)],
    );
    assert_eq!(got.verdict, Verdict::Deny, "{:?}", got.logs);
    assert_eq!(got.reason.as_deref(), Some("conflicting-identity"));
    assert!(
        got.logs
            .iter()
            .any(|(_, m)| m.contains("different callers")),
        "{:?}",
        got.logs
    );
    // The same caller in both places is that caller.
    let got = run(
        &mut wasm,
        &request(Some(CURL), "10.1.0.7", None),
        Topology::Direct,
        &[(&["filter_state", "io.istio.peer_principal"], CURL)],
    );
    assert_eq!(got.verdict, Verdict::Allow, "{:?}", got.logs);
}

#[test]
fn the_placeholder_of_an_absent_certificate_names_no_caller() {
    // Envoy renders `%DOWNSTREAM_PEER_URI_SAN%` as "-" for a client without a certificate:
    // no caller, so `notPrincipals: ["*"]` (deny the plaintext) must deny it.
    let mut wasm = configure(
        json!({"from": [{"source": {"notPrincipals": ["*"]}}]}),
        "DENY",
    );
    let got = run(
        &mut wasm,
        &request(None, "10.1.0.7", None),
        Topology::WaypointChain,
        &[(&["filter_state", "io.istio.peer_principal"], "-")],
    );
    assert_eq!(got.verdict, Verdict::Deny, "{:?}", got.logs);
    let got = run(
        &mut wasm,
        &request(Some(CURL), "10.1.0.7", None),
        Topology::WaypointChain,
        &[],
    );
    assert_eq!(got.verdict, Verdict::Allow, "{:?}", got.logs);
}

#[test]
fn a_forwarded_address_never_stands_for_the_direct_peer() {
    // ALLOW ipBlocks: the forged X-Forwarded-For address is listed, the peer is not.
    let mut allow = configure(
        json!({"from": [{"source": {"ipBlocks": ["10.9.9.9/32"]}}]}),
        "ALLOW",
    );
    let forged = request(Some(CURL), "10.1.0.7", Some("10.9.9.9"));
    for topology in [Topology::WaypointChain, Topology::Direct] {
        let got = run(&mut allow, &forged, topology, &[]);
        assert_eq!(got.verdict, Verdict::Deny, "{topology:?}: {:?}", got.logs);
    }
    // In the chain the restored peer still counts.
    let mut allow_peer = configure(
        json!({"from": [{"source": {"ipBlocks": ["10.1.0.0/16"]}}]}),
        "ALLOW",
    );
    let got = run(&mut allow_peer, &forged, Topology::WaypointChain, &[]);
    assert_eq!(got.verdict, Verdict::Allow, "{:?}", got.logs);
    // On a direct listener the peer is hidden behind the forwarded address: a DENY on the
    // peer's block cannot be evaluated and denies; without a forwarded address it is the peer.
    let mut deny = configure(
        json!({"from": [{"source": {"ipBlocks": ["10.1.0.0/16"]}}]}),
        "DENY",
    );
    let got = run(&mut deny, &forged, Topology::Direct, &[]);
    assert_eq!(got.verdict, Verdict::Deny, "{:?}", got.logs);
    assert_eq!(got.reason.as_deref(), Some("unknown-source-address"));
    let got = run(&mut deny, &forged, Topology::WaypointChain, &[]);
    assert_eq!(
        got.reason.as_deref(),
        Some("deny-matched"),
        "{:?}",
        got.logs
    );
    let elsewhere = request(Some(CURL), "10.2.0.7", Some("10.9.9.9"));
    let got = run(&mut deny, &elsewhere, Topology::WaypointChain, &[]);
    assert_eq!(got.verdict, Verdict::Allow, "{:?}", got.logs);
    // remoteIpBlocks is the forwarded client in both.
    let mut remote = configure(
        json!({"from": [{"source": {"remoteIpBlocks": ["10.9.9.9/32"]}}]}),
        "ALLOW",
    );
    for topology in [Topology::WaypointChain, Topology::Direct] {
        let got = run(&mut remote, &forged, topology, &[]);
        assert_eq!(got.verdict, Verdict::Allow, "{topology:?}: {:?}", got.logs);
    }
}
