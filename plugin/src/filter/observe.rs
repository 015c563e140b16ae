//! Decision logs and per-policy counters.
//!
//! Log lines are stable and parseable (`key=value`, one decision per line):
//! ```text
//! authz: deny policy=default/productpage-waypoint rule=0 reason=no-allow-matched layer=7
//! authz: allow policy=- rule=- reason=no-allow-policies layer=4
//! authz: audit policy=default/audit-deletes layer=7
//! authz: dry-run deny policy=default/trial rule=1 reason=deny-matched layer=7
//! ```
//! Allow lines (and allowing dry runs) are debug, denies info, audits info: at Envoy's
//! default info level the allow path formats nothing.
//!
//! Counters (Envoy's admin `/stats` lists them under `wasmcustom.`):
//! `authz.policy.<namespace>.<name>.{allow,deny,audit,dry_run}` for the first
//! [`MAX_POLICY_METRICS`] policies, `authz.policy.other.{…}` for the rest, and
//! `authz.default.{allow,deny}` for decisions no policy made. Only the deciding policy's
//! counter moves (each matching AUDIT policy's, the dry run's deciding policy's).
//!
//! A decision adds to a count inside the VM; the counts reach the host on the root context's
//! timer ([`FLUSH_PERIOD`]), at reconfiguration and when a configuration is dropped, so a
//! request costs no metric host call.

use crate::engine::{Decision, Engine, PolicyId, Reason, Traffic, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::Cell;
use std::fmt;
use std::time::Duration;

/// Bound on per-policy counter sets; the rest share `authz.policy.other.*`.
pub(crate) const MAX_POLICY_METRICS: usize = 1000;

/// How often the counts are handed to the host.
pub(crate) const FLUSH_PERIOD: Duration = Duration::from_secs(1);

const ALLOW: usize = 0;
const DENY: usize = 1;
const AUDIT: usize = 2;
const DRY_RUN: usize = 3;
const KINDS: [&str; 4] = ["allow", "deny", "audit", "dry_run"];

/// One host counter and what has been counted since the last flush.
struct Counter {
    id: u32,
    pending: Cell<u64>,
}

/// Metric ids, defined at configure, and the counts not yet handed to the host.
pub(crate) struct Metrics {
    counters: Vec<Counter>,
    /// Index into `counters` per policy and kind.
    per_policy: Vec<[Option<usize>; 4]>,
    other: [Option<usize>; 4],
    default_allow: Option<usize>,
    default_deny: Option<usize>,
}

impl Metrics {
    pub(crate) fn define(engine: &Engine) -> Metrics {
        let mut metrics = Metrics {
            counters: Vec::new(),
            per_policy: Vec::new(),
            other: [None; 4],
            default_allow: None,
            default_deny: None,
        };
        let policies = engine.policies();
        for p in policies.iter().take(MAX_POLICY_METRICS) {
            let set = metrics.define_set(&format!("authz.policy.{}.{}", p.namespace, p.name));
            metrics.per_policy.push(set);
        }
        if policies.len() > MAX_POLICY_METRICS {
            metrics.other = metrics.define_set("authz.policy.other");
        }
        metrics.default_allow = metrics.define_one("authz.default.allow");
        metrics.default_deny = metrics.define_one("authz.default.deny");
        metrics
    }

    fn define_one(&mut self, name: &str) -> Option<usize> {
        match hostcalls::define_metric(MetricType::Counter, name) {
            Ok(id) => {
                self.counters.push(Counter {
                    id,
                    pending: Cell::new(0),
                });
                Some(self.counters.len() - 1)
            }
            Err(status) => {
                log::warn!("authz: cannot define metric {name}: {status:?}");
                None
            }
        }
    }

    fn define_set(&mut self, prefix: &str) -> [Option<usize>; 4] {
        KINDS.map(|kind| self.define_one(&format!("{prefix}.{kind}")))
    }

    fn count(&self, slot: Option<usize>) {
        if let Some(counter) = slot.and_then(|i| self.counters.get(i)) {
            counter.pending.set(counter.pending.get().saturating_add(1));
        }
    }

    fn policy(&self, id: PolicyId, kind: usize) -> Option<usize> {
        let set = usize::try_from(id.0)
            .ok()
            .and_then(|i| self.per_policy.get(i))
            .unwrap_or(&self.other);
        set.get(kind).copied().flatten()
    }

    fn record(&self, decision: &Decision) {
        match (decision.reason.rule(), decision.verdict) {
            (Some(r), Verdict::Allow) => self.count(self.policy(r.policy, ALLOW)),
            (Some(r), Verdict::Deny) => self.count(self.policy(r.policy, DENY)),
            (None, Verdict::Allow) => self.count(self.default_allow),
            (None, Verdict::Deny) => self.count(self.default_deny),
        }
        for id in &decision.audit {
            self.count(self.policy(*id, AUDIT));
        }
        if let Some(r) = decision.dry_run.and_then(|d| d.reason.rule()) {
            self.count(self.policy(r.policy, DRY_RUN));
        }
    }

    /// Hands every pending count to the host: one host call per counter that moved.
    pub(crate) fn flush(&self) {
        for counter in &self.counters {
            let n = counter.pending.replace(0);
            if n > 0 {
                // An unknown id is not worth failing anything for.
                let _ =
                    hostcalls::increment_metric(counter.id, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}

/// A stable token for each step of the decision procedure.
pub(crate) fn reason_token(reason: &Reason) -> &'static str {
    reason.as_str()
}

/// `policy=… rule=… reason=…` for one reason, written without allocating.
struct Decided<'a> {
    engine: &'a Engine,
    reason: &'a Reason,
}

impl fmt::Display for Decided<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.engine.deciding_policy(self.reason) {
            Some(key) => write!(f, "policy={key}")?,
            None => f.write_str("policy=-")?,
        }
        match self.reason.rule() {
            Some(r) => write!(f, " rule={}", r.rule)?,
            None => f.write_str(" rule=-")?,
        }
        write!(f, " reason={}", reason_token(self.reason))
    }
}

fn layer(traffic: Traffic) -> u8 {
    match traffic {
        Traffic::Connection => 4,
        Traffic::Request => 7,
    }
}

/// Logs and counts one decision.
pub(crate) fn observe(engine: &Engine, metrics: &Metrics, traffic: Traffic, decision: &Decision) {
    let layer = layer(traffic);
    let decided = Decided {
        engine,
        reason: &decision.reason,
    };
    match decision.verdict {
        Verdict::Allow => log::debug!("authz: allow {decided} layer={layer}"),
        Verdict::Deny => log::info!("authz: deny {decided} layer={layer}"),
    }
    for id in &decision.audit {
        match engine.policy(*id) {
            Some(p) => log::info!("authz: audit policy={} layer={layer}", p.key()),
            None => log::info!("authz: audit policy=- layer={layer}"),
        }
    }
    if let Some(dry) = &decision.dry_run {
        let decided = Decided {
            engine,
            reason: &dry.reason,
        };
        match dry.verdict {
            Verdict::Allow => log::debug!("authz: dry-run allow {decided} layer={layer}"),
            Verdict::Deny => log::info!("authz: dry-run deny {decided} layer={layer}"),
        }
    }
    metrics.record(decision);
}
