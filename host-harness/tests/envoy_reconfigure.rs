//! A running Envoy is reconfigured through LDS (a watched file, as a control plane would push
//! listeners): a broken plugin configuration is refused with the module's own error message
//! and the last good configuration keeps deciding; a later good configuration is accepted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Plugin, Upstream};
use authz_envoy::upstream::Upstream as App;
use authz_envoy::{Envoy, ListenerInfo, TestEnv};
use common::{envoy_and_module, ip, PRODUCTPAGE_TITLE};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

const CURL: &str = "spiffe://cluster.local/ns/default/sa/curl";
const HOST: &str = "productpage.default.svc.cluster.local";

/// The seeds' waypoint policy, allowing curl the given methods.
fn plugin_config(methods: &[&str], ip_block: &str) -> String {
    json!({
        "mode": "waypoint",
        "waypoint": {"name": "waypoint", "namespace": "default"},
        "services": [{"name": "productpage", "namespace": "default", "hosts": [HOST], "addresses": ["127.0.3.20"]}],
        "policies": [{
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "productpage-waypoint", "namespace": "default"},
            "spec": {
                "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
                "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/default/sa/curl"], "ipBlocks": [ip_block]}}],
                           "to": [{"operation": {"methods": methods}}]}]
            }
        }]
    })
    .to_string()
}

/// The listener Envoy would get over LDS for this plugin configuration.
fn listener(env: &TestEnv, wasm: &Path, app: &App, port: u16, config: String) -> Value {
    let mut spec = EnvoySpec::default();
    spec.listeners.push(
        env.listener(
            "waypoint",
            ip("127.0.3.20"),
            port,
            ListenerKind::Http {
                plugin: Some(Plugin::new(wasm, config)),
            },
            Upstream::plain(app.addr()),
        )
        .unwrap(),
    );
    let mut bootstrap = spec.render().unwrap();
    let mut l = bootstrap["static_resources"]["listeners"][0].take();
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    l
}

/// Replaces the LDS file atomically (Envoy watches for the file being moved into place).
fn push(lds: &Path, version: u32, listener: &Value) {
    let tmp = lds.with_extension("tmp");
    let body = json!({"version_info": version.to_string(), "resources": [listener]});
    std::fs::write(&tmp, serde_json::to_vec_pretty(&body).unwrap()).unwrap();
    std::fs::rename(&tmp, lds).unwrap();
}

fn wait_for(what: &str, envoy: &Envoy, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}\n{}",
            envoy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(envoy: &Envoy, port: u16, method: &str) -> u16 {
    match envoy.request_http(
        Some(CURL),
        ip("127.0.3.5"),
        port,
        method,
        "/productpage",
        HOST,
        &[],
    ) {
        Ok(r) => r.status,
        Err(_) => 0,
    }
}

#[test]
fn envoy_refuses_a_broken_configuration_with_the_modules_message_and_keeps_the_last_good_one() {
    let test =
        "envoy_refuses_a_broken_configuration_with_the_modules_message_and_keeps_the_last_good_one";
    let Some((env, wasm)) = envoy_and_module(test) else {
        return;
    };
    let app = App::http("productpage", ip("127.0.3.30"), PRODUCTPAGE_TITLE).unwrap();
    let port = TcpListener::bind(("127.0.3.20", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = env.dir().join("reconfigure");
    std::fs::create_dir_all(&dir).unwrap();
    let lds = dir.join("lds.json");

    // Envoy with its listeners from a watched file instead of static resources.
    let good = listener(
        &env,
        &wasm,
        &app,
        port,
        plugin_config(&["GET"], "127.0.0.0/8"),
    );
    push(&lds, 1, &good);
    let mut bootstrap = EnvoySpec::default().render().unwrap();
    bootstrap["static_resources"]["listeners"] = json!([]);
    bootstrap["dynamic_resources"] = json!({
        "lds_config": {"path_config_source": {"path": lds.display().to_string()}, "resource_api_version": "V3"}
    });
    bootstrap["node"] = json!({"id": "waypoint", "cluster": "waypoint"});
    // Clusters the listener routes to come from the rendered listener spec's bootstrap.
    let mut with_cluster = EnvoySpec::default();
    with_cluster.listeners.push(
        env.listener(
            "waypoint",
            ip("127.0.3.20"),
            port,
            ListenerKind::Http { plugin: None },
            Upstream::plain(app.addr()),
        )
        .unwrap(),
    );
    bootstrap["static_resources"]["clusters"] =
        with_cluster.render().unwrap()["static_resources"]["clusters"].clone();
    let bootstrap_file = dir.join("bootstrap.json");
    std::fs::write(
        &bootstrap_file,
        serde_json::to_vec_pretty(&bootstrap).unwrap(),
    )
    .unwrap();
    let info = ListenerInfo {
        name: "waypoint".into(),
        addr: (ip("127.0.3.20"), port).into(),
        tls: true,
    };
    let envoy =
        Envoy::start_config(&env.bin, &bootstrap_file, vec![info], &dir, env.pki.clone()).unwrap();

    // Version 1: curl may GET, not DELETE.
    wait_for("the first listener", &envoy, || {
        status(&envoy, port, "GET") == 200
    });
    assert_eq!(status(&envoy, port, "DELETE"), 403);

    // Version 2: a broken plugin configuration. Envoy must refuse the update, say why in
    // the module's own words, and keep serving version 1.
    let rejected_before = envoy.stat("listener_manager.lds.update_rejected");
    let broken = listener(
        &env,
        &wasm,
        &app,
        port,
        plugin_config(&["GET", "DELETE"], "10.0.0.0/33"),
    );
    push(&lds, 2, &broken);
    wait_for("the update to be rejected", &envoy, || {
        envoy.stat("listener_manager.lds.update_rejected") > rejected_before
    });
    let log = envoy.log();
    assert!(
        log.contains("policy default/productpage-waypoint: spec.rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/33\""),
        "Envoy's log does not carry the module's error:\n{log}"
    );
    assert_eq!(
        status(&envoy, port, "GET"),
        200,
        "the last good configuration stays in force"
    );
    assert_eq!(
        status(&envoy, port, "DELETE"),
        403,
        "the broken configuration (which allows DELETE) is not in force"
    );

    // Version 3: a good configuration that also allows DELETE is accepted.
    let fixed = listener(
        &env,
        &wasm,
        &app,
        port,
        plugin_config(&["GET", "DELETE"], "127.0.0.0/8"),
    );
    push(&lds, 3, &fixed);
    wait_for("the new configuration to take effect", &envoy, || {
        status(&envoy, port, "DELETE") == 200
    });
    assert_eq!(status(&envoy, port, "GET"), 200);
    eprintln!(
        "lds: {} updates accepted, {} rejected",
        envoy.stat("listener_manager.lds.update_success"),
        envoy.stat("listener_manager.lds.update_rejected")
    );
    for line in envoy
        .log()
        .lines()
        .filter(|l| l.contains("authz: configur") || l.contains("rejected"))
    {
        eprintln!("envoy: {line}");
    }
}
