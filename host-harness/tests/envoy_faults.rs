//! Faults inside Envoy. A module that traps or runs out of memory must leave Envoy denying:
//! with `failure_policy: FAIL_CLOSED` (what this project's deployments set) a failed plugin's
//! requests are answered by Envoy itself and never reach the upstream, and its connections
//! are closed, for as long as the plugin stays failed
//! (https://www.envoyproxy.io/docs/envoy/v1.40.0/api-v3/extensions/wasm/v3/wasm.proto#enum-extensions-wasm-v3-failurepolicy).
//! The contrast case shows the same fault under `FAIL_OPEN` letting denied traffic through:
//! the fault really disables the module, and the failure policy is what keeps it closed.
//!
//! The module is the test-only build (plugin feature `fault-injection`) that traps on
//! `x-authz-fault: trap`, exhausts its memory on `x-authz-fault: oom`, and does the same on
//! a connection starting `AUTHZ-FAULT trap`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Plugin, Upstream};
use authz_envoy::client;
use authz_envoy::upstream::Upstream as App;
use authz_envoy::{Envoy, TestEnv};
use authz_wasm_host::build::build_fault_module;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const CURL: &str = "cluster.local/ns/default/sa/curl";
const HOST: &str = "web.default.svc.cluster.local";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A waypoint with one service and no policy (everything allowed) or an ALLOW policy with no
/// rules (nothing allowed).
fn waypoint_config(allow_nothing: bool) -> String {
    let policies = if allow_nothing {
        json!([{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "allow-nothing", "namespace": "default"},
                "spec": {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]}}])
    } else {
        json!([])
    };
    json!({"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
           "services": [{"name": "web", "namespace": "default", "hosts": [HOST]}],
           "policies": policies})
    .to_string()
}

fn plugin(wasm: &std::path::Path, vm: &str, config: String, failure_policy: &str) -> Plugin {
    let mut p = Plugin::new(wasm, config);
    // One VM per listener: a VM that fails takes every plugin sharing it down.
    p.vm_id = vm.to_string();
    p.failure_policy = failure_policy.to_string();
    p
}

static SEQ: AtomicU64 = AtomicU64::new(1);

/// One request with a unique header, so the upstream can be searched for it. Returns the
/// status (0 when the connection failed) and whether the upstream received the request.
fn request(envoy: &Envoy, app: &App, port: u16, fault: Option<&str>) -> (u16, bool) {
    let id = format!(
        "probe-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let mut headers = vec![("x-probe", id.as_str())];
    if let Some(f) = fault {
        headers.push(("x-authz-fault", f));
    }
    let status = envoy
        .request_http(
            Some(CURL),
            ip("127.0.14.5"),
            port,
            "GET",
            "/",
            HOST,
            &headers,
        )
        .map(|r| r.status)
        .unwrap_or(0);
    (status, app.saw(id.as_bytes()))
}

#[test]
fn a_module_that_traps_or_runs_out_of_memory_in_envoy_fails_closed() {
    let test = "a_module_that_traps_or_runs_out_of_memory_in_envoy_fails_closed";
    let Some(env) = TestEnv::for_test(test) else {
        return;
    };
    let wasm = build_fault_module().unwrap();
    let web = App::http("web", ip("127.0.14.30"), "ok").unwrap();
    let echo = App::echo("echo", ip("127.0.14.31")).unwrap();
    let mut spec = EnvoySpec::default();
    for (name, addr, config, policy) in [
        ("trap", "127.0.14.10", waypoint_config(false), "FAIL_CLOSED"),
        ("oom", "127.0.14.11", waypoint_config(false), "FAIL_CLOSED"),
        ("open", "127.0.14.12", waypoint_config(true), "FAIL_OPEN"),
    ] {
        spec.listeners.push(
            env.listener(
                name,
                ip(addr),
                0,
                ListenerKind::Http {
                    plugin: Some(plugin(&wasm, name, config, policy)),
                },
                Upstream::plain(web.addr()),
            )
            .unwrap(),
        );
    }
    let ztunnel =
        json!({"mode": "ztunnel", "workloads": [{"name": "echo", "namespace": "default"}]})
            .to_string();
    spec.listeners.push(
        env.listener(
            "l4",
            ip("127.0.14.13"),
            0,
            ListenerKind::Tcp {
                plugin: Some(plugin(&wasm, "l4", ztunnel, "FAIL_CLOSED")),
            },
            Upstream::plain(echo.addr()),
        )
        .unwrap(),
    );
    let envoy = env.start("faults", spec).unwrap();

    // Layer 7, a trap and an out-of-memory abort: allowed before; after the fault, the
    // request that caused it and every later one are answered by Envoy, never forwarded.
    for (listener, fault) in [("trap", "trap"), ("oom", "oom")] {
        let port = envoy.port(listener).unwrap();
        assert_eq!(
            request(&envoy, &web, port, None),
            (200, true),
            "{listener}: before the fault"
        );
        let (status, forwarded) = request(&envoy, &web, port, Some(fault));
        assert!(
            !forwarded && status != 200,
            "{listener}: the faulting request got {status} (forwarded: {forwarded})\n{}",
            envoy.log()
        );
        for _ in 0..3 {
            // Envoy's own answer for a failed plugin under FAIL_CLOSED: 503.
            assert_eq!(
                request(&envoy, &web, port, None),
                (503, false),
                "{listener}: after the fault"
            );
        }
        eprintln!("{listener}: the faulting request got {status}, later ones 503");
    }
    let log = envoy.log();
    assert!(log.contains("fault injection: trapping"), "{log}");
    assert!(log.contains("fault injection: exhausting memory"), "{log}");

    // The contrast: FAIL_OPEN. The allow-nothing policy denies until the module traps;
    // afterwards Envoy skips the failed plugin and the same request goes through.
    let port = envoy.port("open").unwrap();
    assert_eq!(
        request(&envoy, &web, port, None),
        (403, false),
        "allow-nothing, before the fault"
    );
    request(&envoy, &web, port, Some("trap"));
    assert_eq!(
        request(&envoy, &web, port, None),
        (200, true),
        "under FAIL_OPEN a trapped module lets traffic through (so the fault is real)"
    );

    // Layer 4: a connection whose first bytes make the module trap is closed before any byte
    // reaches the upstream; so is every later one.
    let port = envoy.port("l4").unwrap();
    let probe = envoy.connect_tcp(Some(CURL), ip("127.0.14.5"), port, None);
    assert!(probe.allowed(&echo), "before the fault: {probe:?}");
    let listener = envoy
        .listeners()
        .iter()
        .find(|l| l.name == "l4")
        .unwrap()
        .clone();
    let tls = envoy.tls_client(&listener, Some(CURL), None).unwrap();
    let mut conn = client::open(
        Some(SocketAddr::new(ip("127.0.14.5"), 0)),
        listener.addr,
        tls.as_ref(),
    )
    .unwrap();
    conn.write_all(b"AUTHZ-FAULT trap\n").unwrap();
    conn.flush().unwrap();
    conn.set_read_timeout(Duration::from_secs(10));
    let mut buf = [0u8; 64];
    let read = conn.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the faulting connection was not closed: {read:?}"
    );
    assert!(
        !echo.saw(b"AUTHZ-FAULT"),
        "the faulting connection reached the upstream"
    );
    for _ in 0..3 {
        let probe = envoy.connect_tcp(Some(CURL), ip("127.0.14.5"), port, None);
        // Closed by Envoy (the failed plugin's connections are closed as they are accepted,
        // so the TLS handshake does not complete), never timed out or echoed.
        assert!(probe.denied(&echo), "after the fault: {probe:?}");
    }
}
