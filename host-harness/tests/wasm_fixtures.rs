//! The fixture corpus (tests/fixtures) through the module in the Wasmtime host, against the
//! native engine on the same configuration and attributes: every case must get the same
//! verdict, deciding policy, AUDIT matches and dry-run result; every configuration the
//! engine rejects must be rejected by `on_configure` with the engine's message in the log,
//! and every configuration it accepts must be accepted.
//!
//! (Whether the engine meets each fixture's expectations is the replay command's business;
//! this test is about the proxy-wasm layer adding nothing and losing nothing.)
//!
//! Mode waypoint cases run where Istio runs the module, inside the waypoint's HBONE chain
//! (caller and client address in filter state, see `Topology::WaypointChain`), and on a
//! listener terminating the client's mTLS itself (`Topology::Direct`). On the latter, under
//! `use_remote_address: false`, a forwarded address replaces the peer's, so a case whose
//! `remoteAddress` differs from its source address is checked in the chain only; a case with
//! an SNI only on the direct listener (the chain's inner connection has no TLS). Such cases
//! are counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_fixture::fixture::{collect, Case, Fixture};
use authz_fixture::replay::config_for_traffic;
use authz_plugin::engine::{Engine, Mode, PluginConfig, Traffic};
use authz_wasm_host::codec::Topology;
use authz_wasm_host::{shared_module, HostError, PluginInstance, StreamOptions, WasmOutcome};
use std::collections::HashMap;

fn run(
    wasm: &mut PluginInstance,
    case: &Case,
    traffic: Traffic,
    topology: Topology,
) -> Result<WasmOutcome, HostError> {
    let opts = StreamOptions {
        source_port: case.source_port.unwrap_or(43210),
        topology,
        ..StreamOptions::default()
    };
    match traffic {
        Traffic::Request => wasm.request_with(&case.attributes, &opts),
        Traffic::Connection => wasm.connection_with(&case.attributes, &opts),
    }
}

/// Where a case runs (see the module comment).
fn topologies(mode: Mode, case: &Case) -> Vec<Topology> {
    let a = &case.attributes;
    let forwarded = a.http.is_some() && a.remote_ip.is_some() && a.remote_ip != a.source_ip;
    let mut out = Vec::new();
    if mode == Mode::Waypoint && a.sni.is_none() {
        out.push(Topology::WaypointChain);
    }
    if !(mode == Mode::Waypoint && forwarded) || out.is_empty() {
        out.push(Topology::Direct);
    }
    out
}

fn check_case(
    engine: &Engine,
    wasm: &mut PluginInstance,
    case: &Case,
    failures: &mut Vec<String>,
) -> bool {
    let traffic = case.traffic_for(engine.mode());
    let places = topologies(engine.mode(), case);
    let partial = places.len() < 2 && engine.mode() == Mode::Waypoint;
    for topology in places {
        check_in(engine, wasm, case, traffic, topology, failures);
    }
    partial
}

fn check_in(
    engine: &Engine,
    wasm: &mut PluginInstance,
    case: &Case,
    traffic: Traffic,
    topology: Topology,
    failures: &mut Vec<String>,
) {
    let got = match run(wasm, case, traffic, topology) {
        Ok(got) => got,
        Err(e) => {
            failures.push(format!(
                "{} ({topology:?}): the module failed: {e}",
                case.name
            ));
            return;
        }
    };
    let want = engine.decide(traffic, &case.attributes);
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
            "{} ({topology:?}): module {} by {:?} audit {:?} dry-run {:?}; native {} by {:?} audit {:?} dry-run {:?}; module log {:?}",
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
}

#[test]
fn every_fixture_through_the_module_agrees_with_the_engine() {
    let module = shared_module().unwrap_or_else(|e| panic!("{e}"));
    let root = authz_fixture::workspace::repo_root()
        .join("tests")
        .join("fixtures");
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
        "{cases} cases through the module ({projected} waypoint cases in one topology only), \
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
