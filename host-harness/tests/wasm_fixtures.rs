//! The fixture corpus (tests/fixtures) through the module in the Wasmtime host, against the
//! native engine on the same configuration and attributes: every case must get the same
//! verdict, deciding policy, AUDIT matches and dry-run result; every configuration the
//! engine rejects must be rejected by `on_configure` with the engine's message in the log,
//! and every configuration it accepts must be accepted.
//!
//! (Whether the engine meets each fixture's expectations is the replay command's business;
//! this test is about the proxy-wasm layer adding nothing and losing nothing.)
//!
//! One thing a module cannot see: in an HTTP filter Envoy exposes only the downstream remote
//! address, which its connection manager may have taken from X-Forwarded-For, and no
//! attribute for the direct peer. A case whose `remoteAddress` differs from its source
//! address is therefore compared with the engine deciding on what the module can see (the
//! remote address in both places); such cases are counted.

use authz_harness::fixture::{collect, Case, Fixture};
use authz_harness::replay::config_for_traffic;
use authz_harness::wasm::{
    shared_module, workspace_root, HostError, PluginInstance, StreamOptions, WasmOutcome,
};
use authz_plugin::engine::{Engine, OwnedAttributes, PluginConfig, Traffic};
use std::collections::HashMap;

fn run(wasm: &mut PluginInstance, case: &Case, traffic: Traffic) -> Result<WasmOutcome, HostError> {
    let opts = StreamOptions {
        source_port: case.source_port.unwrap_or(43210),
        ..StreamOptions::default()
    };
    match traffic {
        Traffic::Request => wasm.request_with(&case.attributes, &opts),
        Traffic::Connection => wasm.connection_with(&case.attributes, &opts),
    }
}

/// The attributes as an HTTP filter sees them: one address, the remote one.
fn visible(attrs: &OwnedAttributes, traffic: Traffic) -> OwnedAttributes {
    let mut a = attrs.clone();
    if traffic == Traffic::Request {
        if let Some(remote) = a.remote_ip {
            a.source_ip = Some(remote);
        }
    }
    a
}

fn check_case(
    engine: &Engine,
    wasm: &mut PluginInstance,
    case: &Case,
    failures: &mut Vec<String>,
) -> bool {
    let traffic = case.traffic_for(engine.mode());
    let got = match run(wasm, case, traffic) {
        Ok(got) => got,
        Err(e) => {
            failures.push(format!("{}: the module failed: {e}", case.name));
            return false;
        }
    };
    let attrs = visible(&case.attributes, traffic);
    let projected = attrs != case.attributes;
    let want = engine.decide(traffic, &attrs);
    let key = |id| {
        engine
            .policy(id)
            .map(|p| p.key().to_string())
            .unwrap_or_default()
    };
    let native_policy = engine.deciding_policy(&want.reason).map(str::to_string);
    let native_audit: Vec<String> = want.audit.iter().map(|p| key(*p)).collect();
    let native_dry = want.dry_run.map(|d| {
        (
            d.verdict,
            engine.deciding_policy(&d.reason).map(str::to_string),
        )
    });
    let got_dry = got.dry_run.clone().map(|d| (d.verdict, d.policy));
    if got.verdict != want.verdict
        || got.policy != native_policy
        || got.audit != native_audit
        || got_dry != native_dry
    {
        failures.push(format!(
            "{}: module {} by {:?} audit {:?} dry-run {:?}; native {} by {:?} audit {:?} dry-run {:?}; module log {:?}",
            case.name,
            got.verdict,
            got.policy,
            got.audit,
            got_dry,
            want.verdict,
            native_policy,
            native_audit,
            native_dry,
            got.logs
        ));
    }
    projected
}

#[test]
fn every_fixture_through_the_module_agrees_with_the_engine() {
    let module = shared_module().unwrap_or_else(|e| panic!("{e}"));
    let root = workspace_root().join("tests").join("fixtures");
    let files = collect(&[root]).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let (mut cases, mut projected, mut rejected) = (0usize, 0usize, 0usize);
    for file in files {
        let fixture = Fixture::load(&file).unwrap_or_else(|e| panic!("{e:#}"));
        let label = file.display().to_string();
        let engine =
            PluginConfig::from_value(&fixture.config).and_then(Engine::from_config_all_points);
        let engine = match engine {
            Ok(engine) => engine,
            Err(native) => {
                // The module must refuse it too, saying what the engine says.
                let bytes = serde_json::to_vec(&fixture.config).expect("json");
                match module.configure(&bytes) {
                    Err(HostError::ConfigureRejected { logs, .. }) => {
                        rejected += 1;
                        let message = native.to_string();
                        if !logs.iter().any(|(l, m)| *l == 4 && m.contains(&message)) {
                            failures.push(format!(
                                "{label}: rejected, but {message:?} is not in {logs:?}"
                            ));
                        }
                    }
                    Err(e) => failures.push(format!("{label}: {e}")),
                    Ok(_) => failures.push(format!(
                        "{label}: the module accepted what the engine rejects: {native}"
                    )),
                }
                continue;
            }
        };
        // One instance per filter kind, as Envoy loads the module once per filter.
        let mut instances: HashMap<String, PluginInstance> = HashMap::new();
        for case in &fixture.cases {
            let config = config_for_traffic(&fixture.config, case);
            let filter = config["filter"].as_str().unwrap_or("").to_string();
            if !instances.contains_key(&filter) {
                let bytes = serde_json::to_vec(&config).expect("json");
                match module.configure(&bytes) {
                    Ok(i) => {
                        instances.insert(filter.clone(), i);
                    }
                    Err(e) => {
                        failures.push(format!("{label} ({filter} filter): {e}"));
                        continue;
                    }
                }
            }
            if let Some(wasm) = instances.get_mut(&filter) {
                cases += 1;
                if check_case(&engine, wasm, case, &mut failures) {
                    projected += 1;
                }
            }
        }
    }
    eprintln!(
        "{cases} cases through the module ({projected} decided on the one address an HTTP filter sees), \
         {rejected} configurations rejected"
    );
    assert!(cases > 100, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
