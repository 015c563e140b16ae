//! The policy-file (cluster dump) reader: YAML streams of Kubernetes documents, possibly a
//! `kind: List`, from which the AuthorizationPolicies are taken and loaded at both
//! enforcement points. Never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

use authz_fixture::fixture;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = fixture::parse_documents(text, false) else {
        return;
    };
    let policies = fixture::policies_in(docs);
    if policies.is_empty() {
        return;
    }
    let configs = [
        json!({"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
               "services": [{"name": "svc", "namespace": "default", "addresses": ["10.0.0.1"]}],
               "policies": policies}),
        json!({"mode": "ztunnel", "workloads": [{"name": "w", "namespace": "default",
               "labels": {"app": "svc"}}], "policies": policies}),
    ];
    for config in configs {
        let _ = authz_plugin::engine::PluginConfig::from_value(&config)
            .and_then(authz_plugin::engine::Engine::from_config_all_points);
    }
});
