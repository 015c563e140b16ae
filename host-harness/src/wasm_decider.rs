//! The proxy-wasm module in the Wasmtime host, as a [`Decider`]: each case is driven through
//! the module exactly as Envoy would drive it, and the verdict is what Envoy would do (a 403
//! `RBAC: access denied` or a closed connection), the policy what the module logged.

use crate::fixture::{Case, Fixture};
use crate::replay::{config_for_traffic, Decider, Observed};
use crate::wasm::{PluginInstance, WasmModule, WasmOutcome};
use anyhow::Result;
use authz_plugin::engine::Traffic;
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

    fn run(&mut self, case: &Case) -> Result<WasmOutcome, String> {
        let request = case.traffic_for(
            crate::replay::mode_of(&self.config).unwrap_or(authz_plugin::engine::Mode::Waypoint),
        ) == Traffic::Request;
        let instance = self.instance(case)?;
        let outcome = if request {
            instance.request(&case.attributes)
        } else {
            instance.connection(&case.attributes)
        };
        outcome.map_err(|e| e.to_string())
    }

    /// What the module did with one case, for `check --wasm`.
    pub fn explain(&mut self, case: &Case) -> Result<Value, String> {
        let o = self.run(case)?;
        Ok(json!({
            "verdict": o.verdict.as_str(),
            "policy": o.policy,
            "rule": o.rule,
            "reason": o.reason,
            "status": o.status,
            "body": String::from_utf8_lossy(&o.body),
            "closed": o.closed,
            "log": o.logs.iter().map(|(l, m)| format!("[{}] {m}", crate::wasm::level_name(*l))).collect::<Vec<_>>(),
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
            None => self.config.get("mode").and_then(Value::as_str) == Some("waypoint"),
        };
        if http {
            self.http = Some(instance);
        } else {
            self.network = Some(instance);
        }
        Ok(())
    }

    fn decide(&mut self, case: &Case) -> Result<Result<Observed, String>, String> {
        let a = &case.attributes;
        if a.http.is_some() && a.remote_ip.is_some() && a.remote_ip != a.source_ip {
            return Ok(Err(
                "Envoy gives a wasm HTTP filter one client address (source.address, the original client \
                 after X-Forwarded-For handling), so ipBlocks and remoteIpBlocks cannot be told apart when \
                 they differ"
                    .to_string(),
            ));
        }
        let o = self.run(case)?;
        if o.reason.is_none() {
            return Err("the module logged no decision line".to_string());
        }
        Ok(Ok(Observed {
            verdict: o.verdict,
            policy: Some(o.policy.clone().unwrap_or_default()),
            audit: Some(o.audit.clone()),
            dry_run: Some(
                o.dry_run
                    .as_ref()
                    .map(|d| (d.verdict, d.policy.clone().unwrap_or_default())),
            ),
        }))
    }
}
