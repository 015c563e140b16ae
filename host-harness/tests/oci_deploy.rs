//! The manifests in deploy/istio/ and deploy/gateway/ are what `authz-harness render` prints
//! for the commands in [`DEPLOY`] (recorded in each file's header), they validate against the
//! CRDs' own OpenAPI schemas (../shared/crds) plus the CEL rules those schemas carry, and every
//! plugin configuration in them is accepted by the module's configuration parser.
//!
//! After changing a policy, the renderer, or the pinned image: regenerate with
//!   UPDATE_DEPLOY=1 cargo test -p authz-harness --test oci_deploy

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_fixture::fixture;
use authz_plugin::engine::Engine;
use authz_render::{self as render, is_sha256_hex};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The released image the manifests pin: its **manifest** digest (what `WasmPlugin.spec.sha256`
/// and `EnvoyExtensionPolicy …image.sha256` compare for an oci:// URL), as `build.sh` prints it.
/// Repin at release time and regenerate.
const IMAGE: &str = "oci://ghcr.io/istio-authz-wasm/authz-plugin:0.1.0";
const IMAGE_SHA256: &str = "603e81fec4c2368b302127b59e72e798f185f54244f09e1fd29287e43590d15c";

/// `(file, render arguments)`; paths relative to the repository root.
const DEPLOY: &[(&str, &[&str])] = &[
    (
        "deploy/istio/wasmplugin-waypoint.yaml",
        &[
            "--kind",
            "WasmPlugin",
            "--mode",
            "waypoint",
            "--waypoint",
            "default/waypoint",
            "--service",
            "default/productpage",
            "--service-address",
            "10.96.0.10",
            "--policy-file",
            "policies/mesh/default-deny-waypoint.yaml",
            "--policy-file",
            "policies/bookinfo/productpage-waypoint.yaml",
        ],
    ),
    (
        "deploy/istio/wasmplugin-ztunnel.yaml",
        &[
            "--kind",
            "WasmPlugin",
            "--mode",
            "ztunnel",
            "--workload",
            "default/productpage-v1:app=productpage",
            "--policy-file",
            "policies/bookinfo/productpage-ztunnel-with-waypoint.yaml",
        ],
    ),
    (
        "deploy/gateway/envoyextensionpolicy.yaml",
        &[
            "--kind",
            "EnvoyExtensionPolicy",
            "--mode",
            "waypoint",
            "--waypoint",
            "default/eg",
            "--gateway-class",
            "eg",
            "--target-kind",
            "HTTPRoute",
            "--target",
            "productpage",
            "--service",
            "default/productpage:bookinfo.example.com",
            "--policy-file",
            "policies/bookinfo/productpage-waypoint.yaml",
        ],
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn args_of(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    a.extend([
        "--image".to_string(),
        IMAGE.to_string(),
        "--sha256".to_string(),
        IMAGE_SHA256.to_string(),
    ]);
    a
}

fn rendered(extra: &[&str]) -> String {
    let opts = render::Options::parse(&args_of(extra)).unwrap();
    render::render(&opts, &root()).unwrap()
}

#[test]
fn deploy_manifests_are_what_render_prints() {
    let update = std::env::var_os("UPDATE_DEPLOY").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (file, extra) in DEPLOY {
        let path = root().join(file);
        let want = rendered(extra);
        // The header records the command that made it.
        assert_eq!(
            render::recorded_args(&want).as_deref(),
            Some(args_of(extra).as_slice()),
            "{file}: header"
        );
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(have) if have == want => {}
            Ok(_) => stale.push(format!("{file} differs from what render prints")),
            Err(e) => stale.push(format!("{file}: {e}")),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nregenerate: UPDATE_DEPLOY=1 cargo test -p authz-harness --test oci_deploy",
        stale.join("\n")
    );

    // No hand-written manifest beside them.
    for dir in ["deploy/istio", "deploy/gateway"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let rel = format!("{dir}/{}", e.unwrap().file_name().to_str().unwrap());
            if rel.ends_with(".yaml") || rel.ends_with(".yml") {
                assert!(
                    DEPLOY.iter().any(|(f, _)| *f == rel),
                    "{rel} is not generated (add it to DEPLOY)"
                );
            }
        }
    }
}

#[test]
fn each_file_regenerates_from_its_own_header() {
    for (file, _) in DEPLOY {
        let Ok(text) = std::fs::read_to_string(root().join(file)) else {
            continue; // reported by deploy_manifests_are_what_render_prints
        };
        let args =
            render::recorded_args(&text).unwrap_or_else(|| panic!("{file}: no recorded command"));
        let opts = render::Options::parse(&args).unwrap();
        assert_eq!(render::render(&opts, &root()).unwrap(), text, "{file}");
    }
}

fn crd(name: &str) -> Value {
    let candidates = [
        root().join("../shared/crds").join(name),
        root().join("shared/crds").join(name),
    ];
    let path = candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("the CRD is not at {candidates:?}"));
    fixture::read_value(path).unwrap()
}

fn validate_against_crd(doc: &Value, crd: &Value) -> Vec<String> {
    let version = doc["apiVersion"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let v = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version)
        .unwrap_or_else(|| panic!("{version} not served"));
    assert_eq!(crd["spec"]["names"]["kind"], doc["kind"]);
    let validator = jsonschema::validator_for(&v["schema"]["openAPIV3Schema"]).unwrap();
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

/// The CEL rules (`x-kubernetes-validations`) of the WasmPlugin CRD, which JSON Schema does not
/// check.
fn wasm_plugin_cel(spec: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let set = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.get(**k).is_some())
        .count();
    if set > 1 {
        errors.push("only one of targetRefs or selector can be set".into());
    }
    let url = spec["url"].as_str().unwrap_or("");
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if !["", "http", "https", "oci", "file"].contains(&scheme) {
        errors.push(format!(
            "url must have schema one of [http, https, file, oci]: {url}"
        ));
    }
    for r in spec["targetRefs"].as_array().into_iter().flatten() {
        if r.get("namespace").is_some_and(|n| n != "") {
            errors.push("cross namespace referencing is not currently supported".into());
        }
    }
    errors
}

/// The CEL rules of the EnvoyExtensionPolicy CRD that apply to what we write.
fn eep_cel(spec: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let refs = spec["targetRefs"].as_array().cloned().unwrap_or_default();
    if spec.get("targetRef").is_some() == spec.get("targetRefs").is_some() {
        errors.push("either targetRef or targetRefs must be used".into());
    }
    for r in &refs {
        if r["group"] != "gateway.networking.k8s.io" {
            errors.push("targetRefs[*].group must be gateway.networking.k8s.io".into());
        }
        let kinds = [
            "Gateway",
            "ListenerSet",
            "HTTPRoute",
            "GRPCRoute",
            "UDPRoute",
            "TCPRoute",
            "TLSRoute",
        ];
        if !kinds.iter().any(|k| r["kind"] == *k) {
            errors.push(format!("targetRefs[*].kind {} not allowed", r["kind"]));
        }
    }
    for w in spec["wasm"].as_array().into_iter().flatten() {
        let code = &w["code"];
        let ty = code["type"].as_str().unwrap_or("");
        if (ty == "HTTP") != code.get("http").is_some()
            || (ty == "Image") != code.get("image").is_some()
        {
            errors.push(format!("code.type {ty} needs exactly the {ty} source"));
        }
        for src in ["http", "image"] {
            if let Some(sha) = code[src].get("sha256") {
                if !sha.as_str().is_some_and(is_sha256_hex) {
                    errors.push(format!("code.{src}.sha256 is not ^[a-f0-9]{{64}}$"));
                }
            }
        }
    }
    errors
}

fn documents(file: &str) -> Vec<Value> {
    fixture::read_documents(&root().join(file)).unwrap()
}

#[test]
fn deploy_manifests_validate_against_the_crds_and_the_module_accepts_their_config() {
    let wasm_plugin_crd = crd("wasmplugins.extensions.istio.io.yaml");
    let eep_crd = crd("envoyextensionpolicies.gateway.envoyproxy.io.yaml");
    let mut errors = Vec::new();
    let mut configs = 0;
    for (file, _) in DEPLOY {
        for doc in documents(file) {
            let spec = &doc["spec"];
            let (schema_errors, cel_errors, plugin_configs) = match doc["kind"].as_str() {
                Some("WasmPlugin") => (
                    validate_against_crd(&doc, &wasm_plugin_crd),
                    wasm_plugin_cel(spec),
                    vec![spec["pluginConfig"].clone()],
                ),
                Some("EnvoyExtensionPolicy") => (
                    validate_against_crd(&doc, &eep_crd),
                    eep_cel(spec),
                    spec["wasm"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|w| w["config"].clone())
                        .collect(),
                ),
                other => panic!("{file}: unexpected kind {other:?}"),
            };
            errors.extend(
                schema_errors
                    .into_iter()
                    .chain(cel_errors)
                    .map(|e| format!("{file}: {e}")),
            );
            for c in plugin_configs {
                configs += 1;
                let json = serde_json::to_vec(&c).unwrap();
                if let Err(e) = Engine::from_json(&json) {
                    errors.push(format!(
                        "{file}: the module rejects the plugin configuration: {e}"
                    ));
                }
                // The policies in it are the files' policies, as written.
                assert!(!c["policies"].as_array().unwrap().is_empty(), "{file}");
            }
        }
    }
    assert_eq!(configs, DEPLOY.len());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_manifests_attach_where_documented_fail_closed_and_pin_the_image() {
    let waypoint = &documents("deploy/istio/wasmplugin-waypoint.yaml")[0]["spec"];
    assert_eq!(waypoint["type"], "HTTP");
    assert_eq!(waypoint["phase"], "AUTHZ");
    assert_eq!(waypoint["failStrategy"], "FAIL_CLOSE");
    assert_eq!(
        waypoint["targetRefs"],
        serde_json::json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}])
    );
    assert_eq!(waypoint["pluginConfig"]["mode"], "waypoint");
    assert_eq!(waypoint["url"], IMAGE);
    assert_eq!(waypoint["sha256"], IMAGE_SHA256);

    let ztunnel = &documents("deploy/istio/wasmplugin-ztunnel.yaml")[0]["spec"];
    assert_eq!(ztunnel["type"], "NETWORK");
    assert_eq!(ztunnel["failStrategy"], "FAIL_CLOSE");
    assert_eq!(ztunnel["pluginConfig"]["mode"], "ztunnel");
    assert_eq!(ztunnel["selector"]["matchLabels"]["app"], "productpage");

    let eep = &documents("deploy/gateway/envoyextensionpolicy.yaml")[0]["spec"];
    let w = &eep["wasm"][0];
    assert_eq!(w["failOpen"], false);
    assert_eq!(w["code"]["type"], "Image");
    assert_eq!(
        w["code"]["image"]["url"],
        IMAGE.trim_start_matches("oci://")
    );
    assert_eq!(w["code"]["image"]["sha256"], IMAGE_SHA256);
    assert_eq!(w["config"]["mode"], "waypoint");
}

fn parse(args: &[&str]) -> anyhow::Result<render::Options> {
    render::Options::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn render_refuses_what_cannot_work() {
    let policy = [
        "--policy-file",
        "policies/bookinfo/productpage-ztunnel.yaml",
    ];
    fn with<'a>(a: &[&'a str], policy: &[&'a str]) -> Vec<&'a str> {
        a.iter().chain(policy.iter()).copied().collect()
    }
    // Envoy Gateway has no network Wasm filter.
    let e = parse(&with(
        &[
            "--kind",
            "EnvoyExtensionPolicy",
            "--mode",
            "ztunnel",
            "--workload",
            "default/p:app=p",
        ],
        &policy,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("HTTP Wasm filters only"), "{e}");
    // ztunnel mode needs the destination workload.
    assert!(parse(&with(
        &["--kind", "WasmPlugin", "--mode", "ztunnel"],
        &policy
    ))
    .is_err());
    // A malformed digest.
    assert!(parse(&with(
        &[
            "--kind",
            "WasmPlugin",
            "--mode",
            "waypoint",
            "--sha256",
            "abc"
        ],
        &policy
    ))
    .is_err());
    // A WasmPlugin on the whole waypoint sees every service's traffic: the module chooses
    // the service by destination address, so each --service needs --service-address.
    let waypoint_policy = [
        "--policy-file",
        "policies/bookinfo/productpage-waypoint.yaml",
    ];
    let e = parse(&with(
        &[
            "--kind",
            "WasmPlugin",
            "--mode",
            "waypoint",
            "--service",
            "default/productpage",
        ],
        &waypoint_policy,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("--service-address"), "{e}");
    // So do several services, whatever loads the module.
    let e = parse(&with(
        &[
            "--kind",
            "envoy-filter",
            "--mode",
            "waypoint",
            "--service",
            "default/productpage",
            "--service-address",
            "10.96.0.10",
            "--service",
            "default/reviews",
        ],
        &waypoint_policy,
    ))
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("default/reviews needs --service-address"),
        "{e}"
    );
    // A --service-address before any --service, or not an IP.
    assert!(parse(&with(
        &[
            "--kind",
            "envoy-filter",
            "--mode",
            "waypoint",
            "--service-address",
            "10.0.0.1"
        ],
        &waypoint_policy
    ))
    .is_err());
    assert!(parse(&with(
        &[
            "--kind",
            "envoy-filter",
            "--mode",
            "waypoint",
            "--service",
            "default/productpage",
            "--service-address",
            "productpage",
        ],
        &waypoint_policy
    ))
    .is_err());
    // The addresses are written into the plugin configuration.
    let o = parse(&with(
        &[
            "--kind",
            "WasmPlugin",
            "--mode",
            "waypoint",
            "--service",
            "default/productpage",
            "--service-address",
            "10.96.0.10,fd00::10",
        ],
        &waypoint_policy,
    ))
    .unwrap();
    let out = render::render(&o, &root()).unwrap();
    assert!(
        out.contains("- 10.96.0.10") && out.contains("- fd00::10"),
        "{out}"
    );
    // A policy the module rejects is reported, not rendered.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: default}\nspec:\n  action: REJECT\n",
    )
    .unwrap();
    let o = parse(&[
        "--kind",
        "WasmPlugin",
        "--mode",
        "waypoint",
        "--policy-file",
        bad.to_str().unwrap(),
    ])
    .unwrap();
    let e = render::render(&o, &root()).unwrap_err();
    assert!(
        e.to_string()
            .contains("the module would reject this configuration"),
        "{e}"
    );
}

#[test]
fn the_envoy_filter_kind_carries_a_configuration_the_module_accepts() {
    for (mode, extra, filter) in [
        (
            "waypoint",
            vec!["--service", "default/productpage"],
            "envoy.filters.http.wasm",
        ),
        (
            "ztunnel",
            vec!["--workload", "default/productpage-v1:app=productpage"],
            "envoy.filters.network.wasm",
        ),
    ] {
        let mut args = vec![
            "--kind",
            "envoy-filter",
            "--mode",
            mode,
            "--policy-file",
            "policies/bookinfo/productpage-waypoint.yaml",
        ];
        args.extend(extra);
        let text = render::render(&parse(&args).unwrap(), &root()).unwrap();
        let v: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(v["name"], filter);
        let config = &v["typed_config"]["config"];
        assert_eq!(config["failure_policy"], "FAIL_CLOSED");
        assert_eq!(
            config["vm_config"]["code"]["local"]["filename"],
            "/etc/envoy/authz_plugin.wasm"
        );
        let json = config["configuration"]["value"].as_str().unwrap();
        let engine = Engine::from_json(json.as_bytes()).unwrap();
        assert_eq!(engine.mode().as_str(), mode);
        assert_eq!(render::recorded_args(&text).unwrap(), args);
    }
}

#[test]
fn the_schema_checks_reject_what_the_crds_reject() {
    let mut wp = documents("deploy/istio/wasmplugin-waypoint.yaml").remove(0);
    wp["spec"]["failStrategy"] = "FAIL_SOMETIMES".into();
    wp["spec"]["sha256"] = "sha256:XYZ".into();
    wp["spec"]["selector"] = serde_json::json!({"matchLabels": {"app": "x"}});
    let errors = validate_against_crd(&wp, &crd("wasmplugins.extensions.istio.io.yaml"));
    assert!(errors.len() >= 2, "{errors:?}");
    assert!(
        !wasm_plugin_cel(&wp["spec"]).is_empty(),
        "selector and targetRefs together"
    );

    let mut eep = documents("deploy/gateway/envoyextensionpolicy.yaml").remove(0);
    eep["spec"]["wasm"][0]["failOpen"] = "no".into();
    eep["spec"]["wasm"][0]["code"]["type"] = "ConfigMap".into();
    let errors = validate_against_crd(
        &eep,
        &crd("envoyextensionpolicies.gateway.envoyproxy.io.yaml"),
    );
    assert!(!errors.is_empty(), "{errors:?}");
    assert!(!eep_cel(&eep["spec"]).is_empty());
}
