//! Replaying fixtures through every implementation and comparing what they decide.

use crate::fixture::{Case, Fixture};
use authz_plugin::engine::{Engine, Mode, PluginConfig, Verdict};
use serde_json::{json, Value};

/// What an implementation decided for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub verdict: Verdict,
    /// `Some(ns/name)` of the deciding policy, `Some("")` when decided by default, `None`
    /// when this implementation cannot tell.
    pub policy: Option<String>,
    pub audit: Option<Vec<String>>,
    pub dry_run: Option<Option<(Verdict, String)>>,
}

/// One implementation of the decision: the native engine, the module in Wasmtime, Envoy.
pub trait Decider {
    fn label(&self) -> &str;
    /// Loads a fixture's configuration; `Err` carries the rejection message.
    fn configure(&mut self, fixture: &Fixture) -> Result<(), String>;
    /// Decides one case; `Err` is a failure of the implementation (a trap, a crash), never a
    /// decision. `Ok(None)` means the case cannot be reproduced here (with the reason).
    fn decide(&mut self, case: &Case) -> Result<Result<Observed, String>, String>;
}

/// The native engine.
#[derive(Default)]
pub struct Native {
    engine: Option<Engine>,
}

impl Native {
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }
}

impl Decider for Native {
    fn label(&self) -> &str {
        "native"
    }

    fn configure(&mut self, fixture: &Fixture) -> Result<(), String> {
        self.engine = None;
        let config = PluginConfig::from_value(&fixture.config).map_err(|e| e.to_string())?;
        self.engine = Some(Engine::from_config_all_points(config).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn decide(&mut self, case: &Case) -> Result<Result<Observed, String>, String> {
        let engine = self.engine.as_ref().ok_or("not configured")?;
        let traffic = case.traffic_for(engine.mode());
        let d = engine.decide(traffic, &case.attributes);
        let key = |id| {
            engine
                .policy(id)
                .map(|p| p.key().to_string())
                .unwrap_or_default()
        };
        Ok(Ok(Observed {
            verdict: d.verdict,
            policy: Some(engine.deciding_policy(&d.reason).unwrap_or("").to_string()),
            audit: Some(d.audit.iter().map(|p| key(*p)).collect()),
            dry_run: Some(d.dry_run.map(|r| {
                (
                    r.verdict,
                    engine.deciding_policy(&r.reason).unwrap_or("").to_string(),
                )
            })),
        }))
    }
}

/// The plugin configuration a proxy for this case's traffic gets: requests go to the HTTP
/// filter, connections to the network filter.
pub fn config_for_traffic(config: &Value, case: &Case) -> Value {
    let mut config = config.clone();
    let mode = config
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(map) = config.as_object_mut() {
        let filter = match (mode.as_str(), case.attributes.http.is_some()) {
            ("waypoint", true) => "http",
            _ => "network",
        };
        map.insert("filter".into(), Value::String(filter.into()));
    }
    config
}

/// The outcome of one case across implementations.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub file: String,
    pub fixture: String,
    pub case: String,
    pub failures: Vec<String>,
    pub skipped: Option<String>,
    pub observed: Vec<(String, Observed)>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.skipped.is_none()
    }

    pub fn to_json(&self) -> Value {
        let obs: serde_json::Map<String, Value> = self
            .observed
            .iter()
            .map(|(label, o)| {
                (
                    label.clone(),
                    json!({
                        "verdict": o.verdict.as_str(),
                        "policy": o.policy,
                        "audit": o.audit,
                        "dryRun": o.dry_run.as_ref().map(|d| d.as_ref().map(|(v, p)| json!({"expect": v.as_str(), "policy": p}))),
                    }),
                )
            })
            .collect();
        json!({
            "file": self.file,
            "fixture": self.fixture,
            "case": self.case,
            "result": if self.skipped.is_some() { "skipped" } else if self.passed() { "passed" } else { "failed" },
            "failures": self.failures,
            "skipped": self.skipped,
            "observed": obs,
        })
    }
}

/// Replays one fixture through every decider. The first decider is the reference the
/// others must agree with.
pub fn replay_fixture(fixture: &Fixture, deciders: &mut [&mut dyn Decider]) -> Vec<CaseReport> {
    let file = fixture.path.display().to_string();
    let report = |case: &str| CaseReport {
        file: file.clone(),
        fixture: fixture.name.clone(),
        case: case.to_string(),
        failures: Vec::new(),
        skipped: None,
        observed: Vec::new(),
    };
    let mut config_errors: Vec<(String, Result<(), String>)> = Vec::new();
    for d in deciders.iter_mut() {
        config_errors.push((d.label().to_string(), d.configure(fixture)));
    }

    if let Some(want) = &fixture.expect_error {
        let mut r = report("configuration is rejected");
        for (label, res) in &config_errors {
            match res {
                Ok(()) => r.failures.push(format!(
                    "{label}: configuration was accepted, expected an error containing {want:?}"
                )),
                Err(e) if !e.contains(want.as_str()) => r
                    .failures
                    .push(format!("{label}: error {e:?} does not contain {want:?}")),
                Err(_) => {}
            }
        }
        return vec![r];
    }

    let mut out = Vec::with_capacity(fixture.cases.len());
    for case in &fixture.cases {
        let mut r = report(&case.name);
        let mut reference: Option<(String, Observed)> = None;
        for (i, d) in deciders.iter_mut().enumerate() {
            let label = d.label().to_string();
            if let Some((_, Err(e))) = config_errors.get(i) {
                r.failures
                    .push(format!("{label}: configuration rejected: {e}"));
                continue;
            }
            let observed = match d.decide(case) {
                Err(e) => {
                    r.failures.push(format!("{label}: {e}"));
                    continue;
                }
                Ok(Err(skip)) => {
                    if r.skipped.is_none() {
                        r.skipped = Some(format!("{label}: {skip}"));
                    }
                    continue;
                }
                Ok(Ok(o)) => o,
            };
            check_expectations(case, &label, &observed, &mut r.failures);
            match &reference {
                None => reference = Some((label.clone(), observed.clone())),
                Some((ref_label, ref_obs)) => {
                    if ref_obs.verdict != observed.verdict {
                        r.failures.push(format!(
                            "{label} decided {} but {ref_label} decided {}",
                            observed.verdict, ref_obs.verdict
                        ));
                    }
                    if let (Some(a), Some(b)) = (&observed.policy, &ref_obs.policy) {
                        if a != b {
                            r.failures.push(format!(
                                "{label} reports policy {a:?} but {ref_label} reports {b:?}"
                            ));
                        }
                    }
                }
            }
            r.observed.push((label, observed));
        }
        if !r.failures.is_empty() {
            r.skipped = None;
        }
        out.push(r);
    }
    out
}

fn check_expectations(case: &Case, label: &str, o: &Observed, failures: &mut Vec<String>) {
    if o.verdict != case.expect {
        failures.push(format!(
            "{label}: expected {} but decided {} (policy {:?})",
            case.expect,
            o.verdict,
            o.policy.as_deref().unwrap_or("?")
        ));
    }
    if let (Some(want), Some(got)) = (&case.policy, &o.policy) {
        if want != got {
            failures.push(format!(
                "{label}: expected policy {want:?} but {got:?} decided"
            ));
        }
    }
    if let (Some(want), Some(got)) = (&case.audit, &o.audit) {
        if want != got {
            failures.push(format!("{label}: expected audit {want:?} but got {got:?}"));
        }
    }
    if let (Some(want), Some(got)) = (&case.dry_run, &o.dry_run) {
        match got {
            None => failures.push(format!(
                "{label}: expected a dry-run result but no dry-run policy applied"
            )),
            Some((v, p)) => {
                if *v != want.verdict {
                    failures.push(format!(
                        "{label}: expected dry-run {} but got {v}",
                        want.verdict
                    ));
                }
                if let Some(wp) = &want.policy {
                    if wp != p {
                        failures.push(format!(
                            "{label}: expected dry-run policy {wp:?} but got {p:?}"
                        ));
                    }
                }
            }
        }
    }
}

/// The mode a fixture's configuration declares (for drivers that need it before parsing).
pub fn mode_of(config: &Value) -> Option<Mode> {
    match config.get("mode").and_then(Value::as_str) {
        Some("ztunnel") => Some(Mode::Ztunnel),
        Some("waypoint") => Some(Mode::Waypoint),
        _ => None,
    }
}
