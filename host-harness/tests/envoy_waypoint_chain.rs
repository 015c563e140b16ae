//! The module where Istio runs it: inside an ambient waypoint's HBONE chain (an outer listener
//! terminating HTTP/2 `CONNECT` over mTLS, the caller carried as the filter state
//! `io.istio.peer_principal`, an internal listener running the filters), driven by a second
//! Envoy tunnelling as the client's ztunnel (see `authz_envoy::chain`). Each policy is
//! enforced once by the module and once by Envoy's RBAC filter as istiod generates it for that
//! place (`filter_state` matchers in the waypoint, istio/istio
//! `pilot/pkg/security/authz/model/principal.go`; `authenticated` on a listener terminating
//! the client's mTLS itself), in both topologies: the module must answer as RBAC does.
//!
//! A module that only reads the peer certificate sees no caller in the chain: every ALLOW on
//! principals, namespaces or service accounts then refuses everyone and every DENY on them
//! lets everyone through. This test fails for such a module.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use authz_envoy::bootstrap::Plugin;
use authz_envoy::chain::{Authz, Chain, Variant};
use authz_envoy::client::{http_request, HttpRequest, TlsClient};
use common::{envoy_and_module, CURL};
use serde_json::{json, Value};

const OTHER: &str = "cluster.local/ns/other/sa/client";
/// The Service VIP the client dials: the `CONNECT` authority.
const VIP: &str = "10.96.0.10:9080";

/// The service is chosen by the destination address: the VIP in the chain (the `CONNECT`
/// authority), the listener's own address on the direct listener (what its client dialled).
fn config(policy: Value) -> String {
    json!({
        "mode": "waypoint",
        "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "productpage", "namespace": "default",
                      "addresses": ["10.96.0.10", "127.0.0.1"]}],
        "policies": [policy],
    })
    .to_string()
}

fn policy(name: &str, action: &str, from: Value, to: Option<Value>) -> Value {
    let mut rule = json!({"from": [{"source": from}]});
    if let Some(to) = to {
        rule["to"] = to;
    }
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
            "action": action,
            "rules": [rule],
        },
    })
}

/// The identity matcher istiod generates: on the filter state in a waypoint, on the peer
/// certificate elsewhere (`principalAuthenticated(…, useAuthenticated)`).
fn principal(chain: bool, string_match: Value) -> Value {
    if chain {
        json!({"filter_state": {"key": "io.istio.peer_principal", "string_match": string_match}})
    } else {
        json!({"authenticated": {"principal_name": string_match}})
    }
}

fn rbac(chain: bool, action: &str, name: &str, string_match: Value, get_only: bool) -> Authz {
    let permission = if get_only {
        json!({"header": {"name": ":method", "string_match": {"exact": "GET"}}})
    } else {
        json!({"any": true})
    };
    Authz::Rbac(json!({
        "action": action,
        "policies": {
            format!("ns[default]-policy[{name}]-rule[0]"): {
                "permissions": [permission],
                "principals": [{"and_ids": {"ids": [principal(chain, string_match)]}}],
            },
        },
    }))
}

/// One row of the table: a policy, and the matcher istiod makes of its source.
struct Row {
    name: &'static str,
    action: &'static str,
    source: Value,
    string_match: Value,
}

fn rows() -> Vec<Row> {
    let exact = json!({"exact": "spiffe://cluster.local/ns/default/sa/curl"});
    // istio/istio pilot/pkg/security/authz/model/generator.go (namespace and service
    // account regexes).
    let namespace = json!({"safe_regex": {"regex": ".*/ns/default/.*"}});
    let service_account =
        json!({"safe_regex": {"regex": "spiffe://.+/ns/default/(.+/|)sa/curl(/.+)?"}});
    let mut out = Vec::new();
    for action in ["ALLOW", "DENY"] {
        let a = action.to_ascii_lowercase();
        out.push(Row {
            name: if a == "allow" {
                "allow-principals"
            } else {
                "deny-principals"
            },
            action,
            source: json!({"principals": [CURL]}),
            string_match: exact.clone(),
        });
        out.push(Row {
            name: if a == "allow" {
                "allow-namespaces"
            } else {
                "deny-namespaces"
            },
            action,
            source: json!({"namespaces": ["default"]}),
            string_match: namespace.clone(),
        });
        out.push(Row {
            name: if a == "allow" {
                "allow-service-accounts"
            } else {
                "deny-service-accounts"
            },
            action,
            source: json!({"serviceAccounts": ["default/curl"]}),
            string_match: service_account.clone(),
        });
    }
    out
}

fn get(addr: SocketAddr, tls: Option<&TlsClient>, method: &str, xff: Option<&str>) -> u16 {
    let mut req = HttpRequest::new(method, "/productpage", "productpage:9080");
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    match http_request(None, addr, tls, &req) {
        Ok(r) => r.status,
        Err(e) => panic!("{method} to {addr}: {e}"),
    }
}

/// The requests of the table: (caller, method).
const REQUESTS: &[(&str, &str)] = &[(CURL, "GET"), (CURL, "POST"), (OTHER, "GET")];

#[test]
fn the_module_decides_as_istiod_rbac_in_the_waypoint_chain_and_the_direct_listener() {
    let Some((env, wasm)) = envoy_and_module("envoy_waypoint_chain") else {
        return;
    };
    let mut variants = Vec::new();
    for row in rows() {
        let get_only = row.action == "ALLOW";
        let to = get_only.then(|| json!([{"operation": {"methods": ["GET"]}}]));
        let mut plugin = Plugin::new(
            &wasm,
            config(policy(row.name, row.action, row.source.clone(), to)),
        );
        plugin.vm_id = format!("authz-{}", row.name);
        plugin.name = format!("authz-{}", row.name);
        variants.push(Variant::new(
            &format!("module-{}", row.name),
            Authz::Module(plugin.clone()),
            Authz::Module(plugin),
        ));
        let (m, a) = (row.string_match.clone(), row.action);
        variants.push(Variant::new(
            &format!("rbac-{}", row.name),
            rbac(true, a, row.name, m.clone(), get_only),
            rbac(false, a, row.name, m, get_only),
        ));
    }
    let chain = Chain::start(
        &env.bin,
        env.dir(),
        env.pki.clone(),
        variants,
        &[CURL, OTHER],
        VIP.parse().unwrap(),
    )
    .unwrap();
    let tls = |p: &str| TlsClient {
        ca: env.pki.ca_der().clone(),
        identity: Some(env.pki.workload(p).unwrap()),
        sni: None,
    };

    let mut table = Vec::new();
    let mut mismatches = Vec::new();
    for row in rows() {
        let want: &[u16] = if row.action == "ALLOW" {
            &[200, 403, 403]
        } else {
            &[403, 403, 200]
        };
        for topology in ["chain", "direct"] {
            for filter in ["rbac", "module"] {
                let variant = format!("{filter}-{}", row.name);
                let got: Vec<u16> = REQUESTS
                    .iter()
                    .map(|(caller, method)| match topology {
                        "chain" => get(chain.tunnel(&variant, caller).unwrap(), None, method, None),
                        _ => get(
                            chain.direct(&variant).unwrap(),
                            Some(&tls(caller)),
                            method,
                            None,
                        ),
                    })
                    .collect();
                table.push(format!("{topology:6} {filter:6} {:24} {got:?}", row.name));
                if got != want {
                    mismatches.push(format!(
                        "{topology} {filter} {}: got {got:?}, want {want:?}",
                        row.name
                    ));
                }
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    assert!(
        mismatches.is_empty(),
        "{}\nwaypoint log:\n{}",
        mismatches.join("\n"),
        chain.waypoint.log()
    );
}

/// `ipBlocks` is the direct peer, never `X-Forwarded-For` (which the connection manager
/// follows with `use_remote_address: false`, as istiod configures the waypoint):
/// `remoteIpBlocks` is the forwarded address.
#[test]
fn x_forwarded_for_never_satisfies_ip_blocks() {
    let Some((env, wasm)) = envoy_and_module("envoy_waypoint_chain_xff") else {
        return;
    };
    let cases = [
        (
            "allow-forged",
            "ALLOW",
            json!({"ipBlocks": ["10.9.9.9/32"]}),
        ),
        (
            "allow-loopback",
            "ALLOW",
            json!({"ipBlocks": ["127.0.0.0/8"]}),
        ),
        (
            "deny-loopback",
            "DENY",
            json!({"ipBlocks": ["127.0.0.0/8"]}),
        ),
        (
            "allow-remote",
            "ALLOW",
            json!({"remoteIpBlocks": ["10.9.9.9/32"]}),
        ),
    ];
    let variants = cases
        .iter()
        .map(|(name, action, from)| {
            let mut plugin = Plugin::new(&wasm, config(policy(name, action, from.clone(), None)));
            plugin.vm_id = format!("authz-{name}");
            plugin.name = format!("authz-{name}");
            Variant::new(name, Authz::Module(plugin.clone()), Authz::Module(plugin))
        })
        .collect();
    let chain = Chain::start(
        &env.bin,
        env.dir(),
        env.pki.clone(),
        variants,
        &[CURL],
        VIP.parse().unwrap(),
    )
    .unwrap();
    let tls = TlsClient {
        ca: env.pki.ca_der().clone(),
        identity: Some(env.pki.workload(CURL).unwrap()),
        sni: None,
    };
    // (variant, X-Forwarded-For, chain status, direct status). The client connects from
    // 127.0.0.1. In the chain the direct peer is the client address the HBONE listener
    // restored; on a direct listener under use_remote_address: false a forwarded address
    // hides the peer, so an ALLOW on it does not match and a DENY on it denies.
    let want: &[(&str, Option<&str>, u16, u16)] = &[
        ("allow-forged", Some("10.9.9.9"), 403, 403),
        ("allow-forged", None, 403, 403),
        ("allow-loopback", None, 200, 200),
        ("allow-loopback", Some("10.9.9.9"), 200, 403),
        ("deny-loopback", None, 403, 403),
        ("deny-loopback", Some("10.9.9.9"), 403, 403),
        ("allow-remote", Some("10.9.9.9"), 200, 200),
        ("allow-remote", None, 403, 403),
    ];
    let mut wrong = Vec::new();
    for (variant, xff, in_chain, direct) in want {
        let c = get(chain.tunnel(variant, CURL).unwrap(), None, "GET", *xff);
        let d = get(chain.direct(variant).unwrap(), Some(&tls), "GET", *xff);
        if (c, d) != (*in_chain, *direct) {
            wrong.push(format!(
                "{variant} xff={xff:?}: chain {c} (want {in_chain}), direct {d} (want {direct})"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nwaypoint log:\n{}",
        wrong.join("\n"),
        chain.waypoint.log()
    );
}

/// The waypoint's TCP chain (a `WasmPlugin` of `type: NETWORK`): the module as a network
/// filter in the internal listener reads the caller from the same filter state.
#[test]
fn the_network_filter_reads_the_caller_in_the_waypoint_tcp_chain() {
    use authz_envoy::client::tcp_probe;
    use authz_envoy::upstream::Upstream;
    let Some((env, wasm)) = envoy_and_module("envoy_waypoint_chain_tcp") else {
        return;
    };
    let echo = Upstream::echo("echo", "127.0.0.1".parse().unwrap()).unwrap();
    let mut config: Value = serde_json::from_str(&config(policy(
        "deny-curl",
        "DENY",
        json!({"principals": [CURL]}),
        None,
    )))
    .unwrap();
    config["filter"] = json!("network");
    let mut plugin = Plugin::new(&wasm, config.to_string());
    plugin.vm_id = "authz-tcp".into();
    plugin.name = "authz-tcp".into();
    let mut v = Variant::new("tcp", Authz::Module(plugin.clone()), Authz::Module(plugin));
    v.tcp = true;
    v.backend = Some(echo.addr());
    let chain = Chain::start(
        &env.bin,
        env.dir(),
        env.pki.clone(),
        vec![v],
        &[CURL, OTHER],
        VIP.parse().unwrap(),
    )
    .unwrap();
    let curl = tcp_probe(None, chain.tunnel("tcp", CURL).unwrap(), None);
    assert!(curl.denied(&echo), "curl must be refused: {curl:?}");
    let other = tcp_probe(None, chain.tunnel("tcp", OTHER).unwrap(), None);
    assert!(other.allowed(&echo), "another caller passes: {other:?}");
}
