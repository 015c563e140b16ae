//! What the harness's integration tests share: the seeds' principals, Envoy with the module
//! (or a skip when either is missing), and the module configured in the Wasmtime host with the
//! productpage waypoint.

// Each test file uses its own part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Upstream};
use authz_envoy::{wasm_or_skip, Envoy, TestEnv};
use authz_plugin::engine::{Claim, OwnedAttributes, OwnedHttp};
use authz_wasm_host::{shared_module, PluginInstance};
use serde_json::{json, Value};

/// The principals of the seeds' callers as AuthorizationPolicy names them (no `spiffe://`);
/// the Envoy driver issues their certificates.
pub const CURL: &str = "cluster.local/ns/default/sa/curl";
pub const REVIEWS: &str = "cluster.local/ns/default/sa/bookinfo-reviews";
pub const GATEWAY: &str = "cluster.local/ns/default/sa/bookinfo-gateway-istio";
pub const PROMETHEUS: &str = "cluster.local/ns/istio-system/sa/prometheus";

/// The title of the Bookinfo productpage, which the stand-in productpage app serves.
pub const PRODUCTPAGE_TITLE: &str = "<title>Simple Bookstore App</title>";

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ---- Envoy ------------------------------------------------------------------------------

/// Envoy and the module for `test`, or `None` (the reason printed) when the test skips for
/// want of either: Envoy is looked for first, as [`TestEnv::for_test`] and [`wasm_or_skip`]
/// do (under CI a missing one fails the test instead).
pub fn envoy_and_module(test: &str) -> Option<(TestEnv, PathBuf)> {
    let env = TestEnv::for_test(test)?;
    let wasm = wasm_or_skip(test)?;
    Some((env, wasm))
}

/// Starts Envoy `name` with `spec` plus one mTLS listener, also `name`, on a free port of
/// `address`: `kind` in front of `upstream`. Returns Envoy and that port.
pub fn start_with_listener(
    env: &TestEnv,
    mut spec: EnvoySpec,
    name: &str,
    address: IpAddr,
    kind: ListenerKind,
    upstream: SocketAddr,
) -> (Envoy, u16) {
    spec.listeners.push(
        env.listener(name, address, 0, kind, Upstream::plain(upstream))
            .unwrap(),
    );
    let envoy = env.start(name, spec).unwrap();
    let port = envoy.port(name).unwrap();
    (envoy, port)
}

// ---- the module in Wasmtime ---------------------------------------------------------------

/// An AuthorizationPolicy document.
pub fn policy(name: &str, namespace: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// `policy`'s spec for the productpage Service: `action` on `rules`.
pub fn productpage_spec(action: &str, rules: Value) -> Value {
    json!({
        "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
        "action": action,
        "rules": rules,
    })
}

/// The waypoint of namespace default in front of the productpage Service (10.96.0.10:9080)
/// with `policies`.
pub fn waypoint_config(policies: Vec<Value>) -> Value {
    json!({
        "mode": "waypoint",
        "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{
            "name": "productpage", "namespace": "default",
            "hosts": ["productpage.default.svc.cluster.local"],
            "addresses": ["10.96.0.10"], "ports": [9080],
        }],
        "policies": policies,
    })
}

/// The shared module configured with `config`.
pub fn configure(config: &Value) -> PluginInstance {
    let module = shared_module().unwrap_or_else(|e| panic!("module: {e}"));
    module
        .configure(&serde_json::to_vec(config).expect("json"))
        .unwrap_or_else(|e| panic!("configure: {e}"))
}

/// A request to the productpage Service (10.96.0.10:9080, `Host: productpage:9080`) from
/// 10.1.0.7 as `principal`.
pub fn productpage_request(
    principal: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    jwt: Option<Claim>,
) -> OwnedAttributes {
    OwnedAttributes {
        peer_principal: principal.map(str::to_string),
        source_ip: Some(ip("10.1.0.7")),
        remote_ip: None,
        destination_ip: Some(ip("10.96.0.10")),
        destination_port: Some(9080),
        sni: None,
        http: Some(OwnedHttp::new(
            method.as_bytes(),
            path.as_bytes(),
            b"productpage:9080",
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            jwt,
        )),
    }
}
