//! The proxy-wasm module in the Wasmtime host, as a [`Decider`]: each case is driven through
//! the module exactly as Envoy would drive it, and the verdict is what Envoy would do (a 403
//! `RBAC: access denied` or a closed connection), the policy what the module logged.
//!
//! Mode waypoint cases run in both places Envoy can load the module (see [`Topology`]): Istio's
//! waypoint chain (identity and client address in filter state) and a listener terminating the
//! client's mTLS itself (identity in the peer certificate). Both must decide alike. Mode ztunnel
//! runs only where the client's mTLS is terminated by the Envoy itself (ztunnel runs no Wasm).

use crate::codec::Topology;
use crate::{PluginInstance, StreamOptions, WasmModule, WasmOutcome};
use anyhow::Result;
use authz_fixture::fixture::{Case, Fixture};
use authz_fixture::replay::{config_for_traffic, mode_of, Decider, Observed, Outcome};
use authz_plugin::engine::{Mode, Traffic};
use serde_json::{json, Value};
use std::path::Path;

/// The level the harness's host reports: debug, so that allow lines are logged too.
const DEBUG: u32 = 1;

pub struct WasmDecider {
    module: WasmModule,
    config: Value,
    /// One VM per filter kind, configured on first use: an HTTP filter for requests, a
    /// network filter for connections (Envoy would load the module twice, once per filter).
    http: Option<PluginInstance>,
    network: Option<PluginInstance>,
}

impl WasmDecider {
    pub fn load(path: &Path) -> Result<WasmDecider> {
        let mut module = WasmModule::load(path)?;
        module.set_log_level(DEBUG);
        Ok(WasmDecider {
            module,
            config: Value::Null,
            http: None,
            network: None,
        })
    }

    fn instance(&mut self, case: &Case) -> Result<&mut PluginInstance, String> {
        let config = config_for_traffic(&self.config, case);
        let http = config.get("filter").and_then(Value::as_str) == Some("http");
        let slot = if http {
            &mut self.http
        } else {
            &mut self.network
        };
        if slot.is_none() {
            let bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
            *slot = Some(self.module.configure(&bytes).map_err(|e| e.to_string())?);
        }
        slot.as_mut().ok_or_else(|| "no instance".to_string())
    }

    fn run(&mut self, case: &Case, topology: Topology) -> Result<WasmOutcome, String> {
        let request =
            case.traffic_for(mode_of(&self.config).unwrap_or(Mode::Waypoint)) == Traffic::Request;
        let instance = self.instance(case)?;
        let opts = StreamOptions {
            topology,
            ..StreamOptions::default()
        };
        let outcome = if request {
            instance.request_with(&case.attributes, &opts)
        } else {
            instance.connection_with(&case.attributes, &opts)
        };
        outcome.map_err(|e| e.to_string())
    }

    /// The topologies a case runs in: the waypoint chain for mode waypoint (unless the case
    /// has an SNI), and the direct listener unless the case has a forwarded address different
    /// from the peer's and the chain can run it (a direct
    /// listener under `use_remote_address: false` then hides the peer, see
    /// `Reason::UnknownSource`, so the case's expectation is about the chain only).
    fn topologies(&self, case: &Case) -> Vec<Topology> {
        let waypoint = mode_of(&self.config).is_none_or(|m| m == Mode::Waypoint);
        let a = &case.attributes;
        let forwarded = a.http.is_some() && a.remote_ip.is_some() && a.remote_ip != a.source_ip;
        let mut out = Vec::new();
        // The inner connection of the chain has no TLS, so no SNI (measured in Envoy 1.40):
        // a case with one only exists where the Envoy terminates the client's TLS.
        if waypoint && a.sni.is_none() {
            out.push(Topology::WaypointChain);
        }
        if !(waypoint && forwarded) || out.is_empty() {
            out.push(Topology::Direct);
        }
        out
    }

    /// What the module did with one case, for `check --wasm`.
    pub fn explain(&mut self, case: &Case) -> Result<Value, String> {
        let topology = self
            .topologies(case)
            .first()
            .copied()
            .unwrap_or(Topology::Direct);
        let o = self.run(case, topology)?;
        Ok(json!({
            "verdict": o.verdict.as_str(),
            "policy": o.policy,
            "rule": o.rule,
            "reason": o.reason,
            "status": o.status,
            "body": String::from_utf8_lossy(&o.body),
            "closed": o.closed,
            "log": o.logs.iter().map(|(l, m)| format!("[{}] {m}", crate::level_name(*l))).collect::<Vec<_>>(),
        }))
    }
}

impl Decider for WasmDecider {
    fn label(&self) -> &str {
        "wasm"
    }

    fn configure(&mut self, fixture: &Fixture) -> Result<(), String> {
        self.config = fixture.config.clone();
        self.http = None;
        self.network = None;
        // Configure now the filter the first case needs (or the mode's default filter), so
        // that a rejected configuration is reported as such, not as a failing case.
        let probe = fixture.cases.first().cloned();
        let bytes = match &probe {
            Some(case) => serde_json::to_vec(&config_for_traffic(&self.config, case)),
            None => serde_json::to_vec(&self.config),
        }
        .map_err(|e| e.to_string())?;
        let instance = self.module.configure(&bytes).map_err(|e| e.to_string())?;
        let http = match &probe {
            Some(case) => {
                config_for_traffic(&self.config, case)
                    .get("filter")
                    .and_then(Value::as_str)
                    == Some("http")
            }
            None => mode_of(&self.config) == Some(Mode::Waypoint),
        };
        if http {
            self.http = Some(instance);
        } else {
            self.network = Some(instance);
        }
        Ok(())
    }

    fn decide(&mut self, case: &Case) -> Outcome {
        let mut seen: Option<(Topology, Observed)> = None;
        for topology in self.topologies(case) {
            let o = match self.run(case, topology) {
                Ok(o) => o,
                Err(e) => return Outcome::Failed(e),
            };
            if o.reason.is_none() {
                return Outcome::Failed(format!(
                    "the module logged no decision line ({topology:?})"
                ));
            }
            let observed = Observed {
                verdict: o.verdict,
                policy: Some(o.policy.clone().unwrap_or_default()),
                audit: Some(o.audit.clone()),
                dry_run: Some(
                    o.dry_run
                        .as_ref()
                        .map(|d| (d.verdict, d.policy.clone().unwrap_or_default())),
                ),
            };
            match &seen {
                Some((first, earlier)) if *earlier != observed => {
                    return Outcome::Failed(format!(
                        "the topologies disagree: {first:?} decided {earlier:?}, {topology:?} decided {observed:?}"
                    ));
                }
                Some(_) => {}
                None => seen = Some((topology, observed)),
            }
        }
        match seen {
            Some((_, o)) => Outcome::Decided(o),
            None => Outcome::Failed("no topology to run the case in".into()),
        }
    }
}
