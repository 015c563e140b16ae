//! End to end through a real Envoy (installed by `scripts/install-envoy.sh`): first the test
//! infrastructure alone (no module), then the module as a waypoint HTTP filter and as a
//! ztunnel network filter. Skips (with the reason printed) when envoy or the module is absent
//! and `CI` is unset; fails under `CI`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_envoy::bootstrap::{EnvoySpec, ForwardedFor, ListenerKind, Plugin, Upstream};
use authz_envoy::client::ConnError;
use authz_envoy::upstream::Upstream as App;
use authz_envoy::{write_stand_in_module, Envoy, TestEnv};
use common::{
    envoy_and_module, ip, start_with_listener, CURL, GATEWAY, PRODUCTPAGE_TITLE, REVIEWS,
};
use serde_json::json;

/// Envoy `name` with an mTLS TCP listener `tcp` on `tcp_address` in front of `echo` and an
/// mTLS HTTP listener `http` on `http_address` in front of `web`, both with `plugin` if any.
fn start_tcp_and_http(
    env: &TestEnv,
    name: &str,
    plugin: Option<Plugin>,
    (tcp_address, echo): (&str, &App),
    (http_address, web): (&str, &App),
) -> Envoy {
    let tcp = env.listener(
        "tcp",
        ip(tcp_address),
        0,
        ListenerKind::Tcp {
            plugin: plugin.clone(),
        },
        Upstream::plain(echo.addr()),
    );
    let http = env.listener(
        "http",
        ip(http_address),
        0,
        ListenerKind::Http { plugin },
        Upstream::plain(web.addr()),
    );
    let spec = EnvoySpec {
        listeners: vec![tcp.unwrap(), http.unwrap()],
        ..EnvoySpec::default()
    };
    env.start(name, spec).unwrap()
}

/// Envoy with no module: an mTLS TCP listener in front of an echo server and an mTLS HTTP
/// listener in front of an HTTP server. Proves the driver (certificates, source addresses,
/// readiness, L4 probe, HTTP client, upstream recording) before any module is involved.
#[test]
fn envoy_infrastructure_without_module() {
    let Some(env) = TestEnv::for_test("envoy_infrastructure_without_module") else {
        return;
    };
    let echo = App::echo("echo", ip("127.0.1.30")).unwrap();
    let web = App::http("web", ip("127.0.1.31"), "<html><title>hello</title></html>").unwrap();
    let envoy = start_tcp_and_http(
        &env,
        "plain",
        None,
        ("127.0.1.10", &echo),
        ("127.0.1.20", &web),
    );
    let tcp = envoy.port("tcp").unwrap();
    let http = envoy.port("http").unwrap();

    // Before any byte: no upstream connection (tcp_proxy waits for downstream data).
    assert_eq!(echo.connection_count(), 0);

    let r = envoy.connect_tcp(
        Some(CURL),
        ip("127.0.1.5"),
        tcp,
        Some("echo.default.svc.cluster.local"),
    );
    assert!(r.allowed(&echo), "echo through envoy: {r:?}");
    assert_eq!(
        r.local_addr.unwrap().ip(),
        ip("127.0.1.5"),
        "client source address"
    );
    assert_eq!(echo.connection_count(), 1);

    // The listener requires a client certificate: without one the handshake is refused and
    // nothing reaches the upstream.
    let r = envoy.connect_tcp(None, ip("127.0.1.6"), tcp, None);
    assert!(r.denied(&echo), "no client certificate: {r:?}");
    assert!(matches!(r.error, Some(ConnError::Handshake(_))), "{r:?}");
    assert_eq!(echo.connection_count(), 1);

    let resp = envoy
        .request_http(
            Some(CURL),
            ip("127.0.1.5"),
            http,
            "GET",
            "/productpage?x=1",
            "web.default:9080",
            &[("x-test", "1")],
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.body_text().contains("<title>hello</title>"));
    assert_eq!(resp.header("x-seen-method"), Some("GET"));
    assert_eq!(resp.header("x-seen-path"), Some("/productpage?x=1"));

    // The admin endpoint answers.
    let (status, body) = envoy.admin_get("/ready").unwrap();
    assert_eq!((status, body.trim()), (200, "LIVE"));
    assert!(!envoy.stats("listener").unwrap().is_empty());
}

/// The bootstrap's module plumbing (HTTP and network Wasm filters, V8, plugin configuration,
/// FAIL_CLOSED) with a stand-in module that lets everything through: works without the real
/// module being built.
#[test]
fn envoy_stand_in_module_loads_as_http_and_network_filter() {
    let Some(env) = TestEnv::for_test("envoy_stand_in_module_loads_as_http_and_network_filter")
    else {
        return;
    };
    let wasm = env.dir().join("stand-in.wasm");
    write_stand_in_module(&wasm).unwrap();
    let echo = App::echo("echo", ip("127.0.1.130")).unwrap();
    let web = App::http("web", ip("127.0.1.131"), "ok").unwrap();
    let plugin = Plugin::new(&wasm, r#"{"mode":"waypoint"}"#);
    let envoy = start_tcp_and_http(
        &env,
        "stand-in",
        Some(plugin),
        ("127.0.1.110", &echo),
        ("127.0.1.120", &web),
    );
    let r = envoy.connect_tcp(
        Some(CURL),
        ip("127.0.1.105"),
        envoy.port("tcp").unwrap(),
        None,
    );
    assert!(r.allowed(&echo), "{r:?}");
    let resp = envoy
        .request_http(
            Some(CURL),
            ip("127.0.1.105"),
            envoy.port("http").unwrap(),
            "DELETE",
            "/x",
            "web",
            &[],
        )
        .unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    let log = envoy.log();
    assert!(!log.contains("Wasm VM failed"), "{log}");
}

fn waypoint_config() -> serde_json::Value {
    json!({
        "mode": "waypoint",
        "waypoint": { "name": "waypoint", "namespace": "default" },
        "services": [{
            "name": "productpage",
            "namespace": "default",
            "hosts": ["productpage.default.svc.cluster.local"],
            "addresses": ["127.0.2.20"],
        }],
        "policies": [{
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": { "name": "productpage-waypoint", "namespace": "default" },
            "spec": {
                "targetRefs": [{ "kind": "Service", "group": "", "name": "productpage" }],
                "action": "ALLOW",
                "rules": [{
                    "from": [{ "source": { "principals": [CURL] } }],
                    "to": [{ "operation": { "methods": ["GET"] } }],
                }],
            },
        }],
    })
}

fn ztunnel_config() -> serde_json::Value {
    json!({
        "mode": "ztunnel",
        "workloads": [{
            "name": "productpage-v1",
            "namespace": "default",
            "serviceAccount": "bookinfo-productpage",
            "labels": { "app": "productpage" },
            "addresses": ["127.0.3.10"],
        }],
        "policies": [{
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": { "name": "productpage-ztunnel", "namespace": "default" },
            "spec": {
                "selector": { "matchLabels": { "app": "productpage" } },
                "action": "ALLOW",
                "rules": [{ "from": [{ "source": { "principals": [GATEWAY] } }] }],
            },
        }],
    })
}

/// The module as a waypoint HTTP filter: curl may GET productpage, nothing else.
#[test]
fn envoy_waypoint_module_allows_get_denies_others() {
    let Some((env, wasm)) = envoy_and_module("envoy_waypoint_module_allows_get_denies_others")
    else {
        return;
    };
    let app = App::http("productpage", ip("127.0.2.30"), PRODUCTPAGE_TITLE).unwrap();
    let plugin = Plugin::new(&wasm, waypoint_config().to_string());
    let (envoy, port) = start_with_listener(
        &env,
        EnvoySpec::default(),
        "waypoint",
        ip("127.0.2.20"),
        ListenerKind::Http {
            plugin: Some(plugin),
        },
        app.addr(),
    );
    let host = "productpage.default.svc.cluster.local";
    let request = |who: &str, from: &str, method: &str| {
        envoy
            .request_http(Some(who), ip(from), port, method, "/productpage", host, &[])
            .unwrap()
    };

    let ok = request(CURL, "127.0.2.5", "GET");
    assert_eq!(ok.status, 200, "curl GET: {ok:?}\n{}", envoy.log());
    assert!(ok.body_text().contains("Simple Bookstore App"));
    assert_eq!(ok.header("x-upstream"), Some("productpage"));

    let before = app.connections().len();
    let del = request(CURL, "127.0.2.5", "DELETE");
    assert_eq!(del.status, 403, "curl DELETE: {del:?}");
    assert_eq!(del.body_text(), "RBAC: access denied");

    let other = request(REVIEWS, "127.0.2.6", "GET");
    assert_eq!(other.status, 403, "reviews GET: {other:?}");
    assert_eq!(other.body_text(), "RBAC: access denied");
    assert!(
        !app.connections()
            .iter()
            .skip(before)
            .any(|c| String::from_utf8_lossy(&c.received).contains("DELETE")),
        "a denied request reached the app"
    );
    assert!(
        !app.saw(b"DELETE /productpage"),
        "a denied request reached the app"
    );
}

/// The module as a ztunnel network filter: only the gateway may connect to productpage; an
/// unknown principal's connection is closed before any byte reaches the workload.
#[test]
fn envoy_ztunnel_module_closes_unknown_principal() {
    let Some((env, wasm)) = envoy_and_module("envoy_ztunnel_module_closes_unknown_principal")
    else {
        return;
    };
    let app = App::echo("productpage", ip("127.0.3.30")).unwrap();
    let plugin = Plugin::new(&wasm, ztunnel_config().to_string());
    let (envoy, port) = start_with_listener(
        &env,
        EnvoySpec::default(),
        "ztunnel",
        ip("127.0.3.10"),
        ListenerKind::Tcp {
            plugin: Some(plugin),
        },
        app.addr(),
    );

    let denied = envoy.connect_tcp(Some(CURL), ip("127.0.3.5"), port, None);
    assert!(
        denied.denied(&app),
        "curl must be closed before any byte reaches the app: {denied:?}\n{}",
        envoy.log()
    );
    assert_eq!(
        app.connection_count(),
        0,
        "no upstream connection for a denied peer"
    );

    let allowed = envoy.connect_tcp(Some(GATEWAY), ip("127.0.3.6"), port, None);
    assert!(
        allowed.allowed(&app),
        "gateway: {allowed:?}\n{}",
        envoy.log()
    );
}

/// A ztunnel listener that lets peers without a client certificate reach the module
/// (docs/semantics.md#ztunnel-trust-domain: no certificate is not refused for that; policies decide), and the trust-domain
/// rule (a peer certificate from another trust domain is refused before any policy).
#[test]
fn envoy_ztunnel_module_plaintext_peer_and_foreign_trust_domain() {
    let test = "envoy_ztunnel_module_plaintext_peer_and_foreign_trust_domain";
    let Some((env, wasm)) = envoy_and_module(test) else {
        return;
    };
    let app = App::echo("productpage", ip("127.0.4.30")).unwrap();
    let mut config = ztunnel_config();
    config["workloads"][0]["addresses"] = json!(["127.0.4.10"]);
    let plugin = Plugin::new(&wasm, config.to_string());
    let mut listener = env
        .listener(
            "ztunnel",
            ip("127.0.4.10"),
            0,
            ListenerKind::Tcp {
                plugin: Some(plugin),
            },
            Upstream::plain(app.addr()),
        )
        .unwrap();
    listener.tls = Some(env.server_tls(false).unwrap());
    let mut spec = EnvoySpec::default();
    spec.listeners.push(listener);
    let envoy = env.start("ztunnel", spec).unwrap();
    let port = envoy.port("ztunnel").unwrap();

    // No client certificate: the handshake succeeds, the ALLOW policy names the gateway only.
    let r = envoy.connect_tcp(None, ip("127.0.4.5"), port, None);
    assert!(r.denied(&app), "no certificate: {r:?}\n{}", envoy.log());
    assert!(matches!(r.error, Some(ConnError::Closed(_))), "{r:?}");

    // The gateway's service account, but in another trust domain (same CA).
    let r = envoy.connect_tcp(
        Some("evil.example/ns/default/sa/bookinfo-gateway-istio"),
        ip("127.0.4.6"),
        port,
        None,
    );
    assert!(
        r.denied(&app),
        "foreign trust domain: {r:?}\n{}",
        envoy.log()
    );

    let r = envoy.connect_tcp(Some(GATEWAY), ip("127.0.4.7"), port, None);
    assert!(r.allowed(&app), "gateway: {r:?}\n{}", envoy.log());
    assert_eq!(
        app.connection_count(),
        1,
        "only the allowed connection reached the app"
    );
}

/// `ipBlocks` are the direct peer's address (Istio: `direct_remote_ip`), whatever
/// X-Forwarded-For claims. The module reads `source.address`, which Envoy derives from
/// X-Forwarded-For unless the connection manager has `use_remote_address: true`; with it (the
/// driver's default, `ForwardedFor::Ignore`) a forged header changes nothing.
#[test]
fn envoy_waypoint_ipblocks_use_the_direct_peer() {
    ipblocks_with_forwarded_for(ForwardedFor::Ignore, "127.0.6");
}

/// The same with `use_remote_address: false` (Envoy's default, Istio's waypoint setting):
/// `source.address` is then the forwarded client (port 0), which the module never takes for
/// the direct peer, so a forged X-Forwarded-For does not satisfy `ipBlocks`; with the peer
/// hidden, an ALLOW on it matches no one (fail safe).
#[test]
fn envoy_waypoint_forwarded_for_never_satisfies_ip_blocks() {
    ipblocks_with_forwarded_for(ForwardedFor::Trust, "127.0.7");
}

fn ipblocks_with_forwarded_for(mode: ForwardedFor, net: &str) {
    let test = format!("envoy ipBlocks with {mode:?}");
    let Some((env, wasm)) = envoy_and_module(&test) else {
        return;
    };
    let app = App::http("productpage", ip(&format!("{net}.30")), "page").unwrap();
    let mut config = waypoint_config();
    config["services"][0]["addresses"] = json!([format!("{net}.20")]);
    config["policies"][0]["spec"]["rules"] =
        json!([{ "from": [{ "source": { "ipBlocks": [format!("{net}.5/32")] } }] }]);
    let plugin = Plugin::new(&wasm, config.to_string());
    let spec = EnvoySpec {
        forwarded_for: mode,
        ..EnvoySpec::default()
    };
    let (envoy, port) = start_with_listener(
        &env,
        spec,
        "waypoint",
        ip(&format!("{net}.20")),
        ListenerKind::Http {
            plugin: Some(plugin),
        },
        app.addr(),
    );
    let host = "productpage.default.svc.cluster.local";
    let status = |from: &str, xff: Option<&str>| {
        let headers: Vec<(&str, &str)> = xff.map(|x| ("x-forwarded-for", x)).into_iter().collect();
        envoy
            .request_http(
                Some(CURL),
                ip(&format!("{net}.{from}")),
                port,
                "GET",
                "/",
                host,
                &headers,
            )
            .unwrap()
            .status
    };
    let listed = format!("{net}.5");
    assert_eq!(status("5", None), 200, "the listed peer");
    assert_eq!(status("6", None), 403, "another peer");
    assert_eq!(
        status("6", Some(&listed)),
        403,
        "another peer forging X-Forwarded-For"
    );
    let (want, what) = match mode {
        ForwardedFor::Ignore => (200, "the listed peer, forwarding"),
        ForwardedFor::Trust => (403, "the listed peer, hidden behind a forwarded address"),
    };
    assert_eq!(status("5", Some("192.0.2.1")), want, "{what}");
}
