//! What the harness's integration tests share: the seeds' principals, Envoy with the module
//! (or a skip when either is missing), the module configured in the Wasmtime host with the
//! productpage waypoint, and the module's OCI image with the registry tools.

// Each test file uses its own part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::OnceLock;

use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Upstream};
use authz_envoy::{in_ci, wasm_or_skip, Envoy, TestEnv};
use authz_oci::layout::ReleaseOptions;
use authz_oci::registry::{find_docker_registry, find_skopeo};
use authz_oci::time::Timestamp;
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

// ---- the OCI image ------------------------------------------------------------------------

/// The built module, read once.
pub fn module_bytes() -> &'static [u8] {
    static MODULE: OnceLock<Vec<u8>> = OnceLock::new();
    MODULE.get_or_init(|| {
        let p = authz_oci::module::module_for_tests().expect("the module");
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

/// The release options of `version` (also its tag), with a fixed revision and creation time.
pub fn release_options(version: &str) -> ReleaseOptions {
    ReleaseOptions {
        tag: version.into(),
        version: version.into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        created: Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
        ..ReleaseOptions::default()
    }
}

/// `(docker-registry, skopeo)`, or `None` with the reason printed when `test` skips for want
/// of them (a panic under CI).
pub fn registry_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    match (find_docker_registry(), find_skopeo()) {
        (Some(r), Some(s)) => Some((r, s)),
        (r, s) => {
            let missing: Vec<&str> = [(r.is_none(), "docker-registry"), (s.is_none(), "skopeo")]
                .iter()
                .filter(|(m, _)| *m)
                .map(|(_, n)| *n)
                .collect();
            let msg = format!(
                "{test}: {} not installed (scripts/install-deps.sh installs them)",
                missing.join(" and ")
            );
            if in_ci() {
                panic!("CI is set: {msg}");
            }
            eprintln!("SKIPPED {msg}");
            None
        }
    }
}
