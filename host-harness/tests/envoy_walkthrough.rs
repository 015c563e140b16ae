//! The seeds' walkthrough (istio.io ambient "Enforce authorization policies", seed 000, and
//! the waypoint "Exceptions" of seed 002) end to end through real Envoys on loopback:
//!
//! ```text
//!   gateway   127.0.10.5 ─┐
//!   curl      127.0.10.6 ─┼─ mTLS ─► waypoint 127.0.10.20:9080 (HTTP filter, waypoint mode)
//!   reviews   127.0.10.7 ─┤              │ mTLS as cluster.local/ns/default/sa/waypoint,
//!   prometheus 127.0.10.8 ┘              ▼ from 127.0.10.21
//!        └──── mTLS (direct) ─► ztunnel 127.0.10.10:9080 / :9090 (network filter, ztunnel mode)
//!                                        ▼
//!                               productpage app 127.0.10.11 (page, metrics)
//! ```
//!
//! The waypoint is built as istiod builds it (see `authz_envoy::chain`): callers reach
//! it through a client Envoy tunnelling HTTP/2 `CONNECT` to the productpage VIP 10.96.0.10:9080
//! with their own certificates (their source addresses in PROXY protocol headers), and the
//! module runs in the internal listener, where the caller is the filter state
//! `io.istio.peer_principal`.
//!
//! The policies are the files under policies/bookinfo/. Each phase starts the Envoys afresh
//! with that phase's policies (as `kubectl apply` would replace them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Plugin, Upstream as UpstreamSpec};
use authz_envoy::chain::{Authz, Chain, TunnelSpec, Variant};
use authz_envoy::client::{self, ConnError, HttpRequest};
use authz_envoy::upstream::Upstream;
use authz_envoy::{Envoy, TestEnv};
use authz_fixture::workspace::repo_root;
use common::{envoy_and_module, ip, CURL, GATEWAY, PRODUCTPAGE_TITLE, PROMETHEUS, REVIEWS};
use serde::Deserialize;
use serde_json::{json, Value};

const WAYPOINT: &str = "cluster.local/ns/default/sa/waypoint";
/// The productpage Service VIP: the `CONNECT` authority the callers' ztunnel asks for.
const VIP_IP: &str = "10.96.0.10";
/// The callers that go through the waypoint, and their addresses.
const CALLERS: &[(&str, &str)] = &[(CURL, "127.0.10.6"), (REVIEWS, "127.0.10.7")];
const HOST: &str = "productpage:9080";

/// The AuthorizationPolicy documents of a policy file (other kinds are ignored).
fn policies(file: &str) -> Vec<Value> {
    let path = repo_root().join("policies/bookinfo").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("AuthorizationPolicy"))
        .collect()
}

fn ztunnel_config(policy_files: &[&str]) -> String {
    let policies: Vec<Value> = policy_files.iter().flat_map(|f| policies(f)).collect();
    json!({
        "mode": "ztunnel",
        "workloads": [{
            "name": "productpage-v1",
            "namespace": "default",
            "serviceAccount": "bookinfo-productpage",
            "labels": { "app": "productpage", "version": "v1" },
            "addresses": ["127.0.10.10"],
        }],
        "policies": policies,
    })
    .to_string()
}

fn waypoint_config(policy_files: &[&str]) -> String {
    let policies: Vec<Value> = policy_files.iter().flat_map(|f| policies(f)).collect();
    json!({
        "mode": "waypoint",
        "waypoint": { "name": "waypoint", "namespace": "default" },
        "services": [{
            "name": "productpage",
            "namespace": "default",
            "hosts": ["productpage.default.svc.cluster.local"],
            "addresses": [VIP_IP],
            "ports": [9080],
        }],
        "policies": policies,
    })
    .to_string()
}

struct World {
    env: TestEnv,
    wasm: std::path::PathBuf,
    page: Upstream,
    metrics: Upstream,
}

impl World {
    /// The destination ztunnel of productpage-v1: ports 9080 (the app) and 9090 (metrics).
    fn ztunnel(&self, phase: &str, policy_files: &[&str]) -> Envoy {
        let plugin = Plugin::new(&self.wasm, ztunnel_config(policy_files));
        let mut spec = EnvoySpec::default();
        for (name, port, app) in [
            ("productpage-9080", 9080, &self.page),
            ("productpage-9090", 9090, &self.metrics),
        ] {
            spec.listeners.push(
                self.env
                    .listener(
                        name,
                        ip("127.0.10.10"),
                        port,
                        ListenerKind::Tcp {
                            plugin: Some(plugin.clone()),
                        },
                        UpstreamSpec::plain(app.addr()),
                    )
                    .unwrap(),
            );
        }
        self.env.start(&format!("{phase}-ztunnel"), spec).unwrap()
    }

    /// The waypoint for the productpage Service, Istio's HBONE chain, forwarding to the
    /// destination ztunnel with its own identity from its own address.
    fn waypoint(&self, phase: &str, policy_files: &[&str]) -> Waypoint {
        let plugin = Plugin::new(&self.wasm, waypoint_config(policy_files));
        let mut v = Variant::new(
            "waypoint",
            Authz::Module(plugin.clone()),
            Authz::Module(plugin),
        );
        v.backend = Some("127.0.10.10:9080".parse().unwrap());
        v.backend_tls = Some(
            self.env
                .upstream_tls(WAYPOINT, Some("productpage.default.svc.cluster.local"))
                .unwrap(),
        );
        v.backend_source = Some(ip("127.0.10.21"));
        v.proxy_protocol = true;
        let tunnels = CALLERS
            .iter()
            .map(|(who, _)| TunnelSpec {
                name: who.to_string(),
                variant: "waypoint".into(),
                identity: Some(self.env.pki.workload(who).unwrap()),
                destination: Some(format!("{VIP_IP}:9080").parse().unwrap()),
                proxied: true,
            })
            .collect();
        let dir = self.env.dir().join(format!("{phase}-waypoint"));
        Waypoint {
            chain: Chain::start_with(&self.env.bin, &dir, self.env.pki.clone(), vec![v], tunnels)
                .unwrap(),
        }
    }
}

/// The waypoint chain and the callers' ztunnel.
struct Waypoint {
    chain: Chain,
}

impl Waypoint {
    /// `who` (one of [`CALLERS`], from `from`) asks productpage for /productpage through its
    /// ztunnel and the waypoint.
    fn get(
        &self,
        who: &str,
        from: &str,
        method: &str,
    ) -> Result<authz_envoy::client::HttpResult, ConnError> {
        let tunnel = self
            .chain
            .tunnel_named(who)
            .unwrap_or_else(|| panic!("no tunnel for {who}"));
        let preamble = client::proxy_protocol_v1(
            format!("{from}:43210").parse().unwrap(),
            "127.0.0.1:9080".parse().unwrap(),
        );
        client::http_request_after(
            None,
            tunnel,
            None,
            &preamble,
            &HttpRequest::new(method, "/productpage", HOST),
        )
    }
}

fn get(
    envoy: &Envoy,
    who: &str,
    from: &str,
    port: u16,
    method: &str,
) -> Result<authz_envoy::client::HttpResult, ConnError> {
    envoy.request_http(Some(who), ip(from), port, method, "/productpage", HOST, &[])
}

fn assert_page(r: &Result<authz_envoy::client::HttpResult, ConnError>, what: &str) {
    match r {
        Ok(resp) => {
            assert_eq!(resp.status, 200, "{what}: {resp:?}");
            assert!(
                resp.body_text().contains(PRODUCTPAGE_TITLE),
                "{what}: {resp:?}"
            );
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

fn assert_rbac_denied(r: &Result<authz_envoy::client::HttpResult, ConnError>, what: &str) {
    match r {
        Ok(resp) => {
            assert_eq!(resp.status, 403, "{what}: {resp:?}");
            assert_eq!(resp.body_text(), "RBAC: access denied", "{what}");
        }
        Err(e) => panic!("{what}: expected 403, got {e}"),
    }
}

/// Refused at L4: the connection is closed and there is no HTTP response at all (curl's exit
/// code 56 in the seed).
fn assert_l4_refused(r: &Result<authz_envoy::client::HttpResult, ConnError>, what: &str) {
    match r {
        Err(ConnError::Closed(_)) | Err(ConnError::Handshake(_)) => {}
        other => panic!("{what}: expected the connection to be closed, got {other:?}"),
    }
}

#[test]
fn envoy_walkthrough_seed_000_and_002() {
    let Some((env, wasm)) = envoy_and_module("envoy_walkthrough_seed_000_and_002") else {
        return;
    };
    walkthrough(env, wasm);
}

/// The release as users get it: the OCI image pushed to a registry (Debian's docker-registry
/// on loopback) and pulled back by digest under Istio's fetcher rules; the module in that
/// image runs the same walkthrough in Envoy.
#[test]
fn envoy_walkthrough_with_the_module_pulled_from_a_registry() {
    use authz_oci::check::fetch;
    use authz_oci::layout::write_release;
    use authz_oci::registry::{push_layout, LocalRegistry};

    let test = "envoy_walkthrough_with_the_module_pulled_from_a_registry";
    let Some((env, built)) = envoy_and_module(test) else {
        return;
    };
    let Some((registry_bin, skopeo)) = common::registry_tools(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let module = std::fs::read(&built).unwrap();
    let layout = tmp.path().join("oci");
    write_release(&module, &layout, &common::release_options("0.1.0")).unwrap();
    let registry = LocalRegistry::start(&registry_bin, &tmp.path().join("registry")).unwrap();
    let digest = push_layout(
        &skopeo,
        &layout,
        "0.1.0",
        &registry.host(),
        "authz-plugin",
        false,
        tmp.path(),
    )
    .unwrap();
    let pulled = fetch(&mut registry.source("authz-plugin"), &digest, None).unwrap();
    assert_eq!(
        pulled.module, module,
        "the pulled module differs from the built one"
    );
    let pulled_path = tmp.path().join("pulled.wasm");
    std::fs::write(&pulled_path, &pulled.module).unwrap();
    walkthrough(env, pulled_path);
}

/// The walkthrough's workloads have fixed loopback addresses: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn walkthrough(env: TestEnv, wasm: std::path::PathBuf) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        Path::new(&repo_root().join("policies/bookinfo/productpage-ztunnel.yaml")).is_file(),
        "policies/bookinfo/ is missing"
    );
    let page = Upstream::http(
        "productpage",
        ip("127.0.10.11"),
        &format!("<html><head>{PRODUCTPAGE_TITLE}</head><body>Bookinfo</body></html>"),
    )
    .unwrap();
    let metrics = Upstream::http(
        "productpage-metrics",
        ip("127.0.10.11"),
        "# TYPE requests_total counter\nrequests_total 1\n",
    )
    .unwrap();
    let world = World {
        env,
        wasm,
        page,
        metrics,
    };

    // --- Seed 000, "Enforce Layer 4 authorization policy": only the gateway may connect.
    {
        let zt = world.ztunnel("l4", &["productpage-ztunnel.yaml"]);
        let r = get(&zt, GATEWAY, "127.0.10.5", 9080, "GET");
        assert_page(&r, "gateway → productpage (L4 policy)");
        let before = world.page.connection_count();
        let r = get(&zt, CURL, "127.0.10.6", 9080, "GET");
        assert_l4_refused(&r, "curl → productpage directly (L4 policy)");
        assert_eq!(
            world.page.connection_count(),
            before,
            "a refused connection reached the app"
        );
    }

    // --- "Enforce Layer 7 authorization policy": the waypoint is added with the L7 policy,
    // but the ztunnel still admits only the gateway, so the waypoint's own connections are
    // refused and nothing gets through it.
    {
        let zt = world.ztunnel("l7-before", &["productpage-ztunnel.yaml"]);
        let wp = world.waypoint("l7-before", &["productpage-waypoint.yaml"]);
        let r = wp.get(CURL, "127.0.10.6", "GET");
        // The waypoint answers what Envoy answers when its upstream closes before any
        // response: 503.
        let resp = r.unwrap_or_else(|e| panic!("curl GET via waypoint: {e}"));
        assert_eq!(
            resp.status, 503,
            "curl GET via waypoint, ztunnel refuses the waypoint: {resp:?}"
        );
        assert!(!resp.body_text().contains(PRODUCTPAGE_TITLE));
        // The waypoint's own L7 decisions do not need the ztunnel.
        assert_rbac_denied(
            &wp.get(CURL, "127.0.10.6", "DELETE"),
            "curl DELETE via waypoint",
        );
        drop(wp);
        drop(zt);
    }

    // --- "Update the L4 policy to also allow connections from the waypoint".
    {
        let zt = world.ztunnel("l7", &["productpage-ztunnel-with-waypoint.yaml"]);
        let wp = world.waypoint("l7", &["productpage-waypoint.yaml"]);
        let before = world.page.connections().len();
        assert_rbac_denied(
            &wp.get(CURL, "127.0.10.6", "DELETE"),
            "curl DELETE via waypoint",
        );
        assert_rbac_denied(
            &wp.get(REVIEWS, "127.0.10.7", "GET"),
            "reviews-v1 GET via waypoint",
        );
        assert!(
            !world
                .page
                .connections()
                .iter()
                .skip(before)
                .any(|c| String::from_utf8_lossy(&c.received).contains("DELETE")),
            "a denied request reached the app"
        );
        let r = wp.get(CURL, "127.0.10.6", "GET");
        assert_page(&r, "curl GET via waypoint");
        // The app saw the request coming from the ztunnel, which saw the waypoint.
        let resp = r.unwrap();
        assert_eq!(resp.header("x-upstream"), Some("productpage"));
        // The gateway still reaches productpage directly; curl directly still does not.
        assert_page(
            &get(&zt, GATEWAY, "127.0.10.5", 9080, "GET"),
            "gateway → productpage",
        );
        assert_l4_refused(
            &get(&zt, CURL, "127.0.10.6", 9080, "GET"),
            "curl → productpage directly",
        );
    }

    // --- Seed 002, "Exceptions": the ztunnel admits only the waypoint, plus Prometheus on the
    // metrics port 9090.
    {
        let zt = world.ztunnel(
            "exceptions",
            &["productpage-ztunnel-prometheus-exception.yaml"],
        );
        let wp = world.waypoint("exceptions", &["productpage-waypoint.yaml"]);
        let r = zt.request_http(
            Some(PROMETHEUS),
            ip("127.0.10.8"),
            9090,
            "GET",
            "/metrics",
            "10.0.0.10:9090",
            &[],
        );
        match &r {
            Ok(resp) => {
                assert_eq!(resp.status, 200, "prometheus → :9090: {resp:?}");
                assert!(resp.body_text().contains("requests_total"), "{resp:?}");
            }
            Err(e) => panic!("prometheus → :9090: {e}"),
        }
        assert_l4_refused(
            &get(&zt, PROMETHEUS, "127.0.10.8", 9080, "GET"),
            "prometheus → :9080 directly",
        );
        assert_l4_refused(
            &zt.request_http(
                Some(CURL),
                ip("127.0.10.6"),
                9090,
                "GET",
                "/metrics",
                "10.0.0.10:9090",
                &[],
            ),
            "curl → :9090 directly",
        );
        assert_l4_refused(
            &get(&zt, GATEWAY, "127.0.10.5", 9080, "GET"),
            "gateway → productpage directly (waypoint only now)",
        );
        assert_page(&wp.get(CURL, "127.0.10.6", "GET"), "curl GET via waypoint");
    }
}
