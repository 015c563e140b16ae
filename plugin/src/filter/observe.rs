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
//! Counters (Envoy shows them without its `wasmcustom.` prefix):
//! `authz.policy.<namespace>.<name>.{allow,deny,audit,dry_run}` for the first
//! [`MAX_POLICY_METRICS`] policies, `authz.policy.other.{…}` for the rest, and
//! `authz.default.{allow,deny}` for decisions no policy made. Only the deciding policy's
//! counter moves (each matching AUDIT policy's, the dry run's deciding policy's).

use crate::engine::{Decision, Engine, PolicyId, Reason, Traffic, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::fmt;

/// Bound on per-policy counter sets; the rest share `authz.policy.other.*`.
pub(crate) const MAX_POLICY_METRICS: usize = 1000;

const ALLOW: usize = 0;
const DENY: usize = 1;
const AUDIT: usize = 2;
const DRY_RUN: usize = 3;
const KINDS: [&str; 4] = ["allow", "deny", "audit", "dry_run"];

/// Metric ids, defined at configure.
pub(crate) struct Metrics {
    per_policy: Vec<[Option<u32>; 4]>,
    other: [Option<u32>; 4],
    default_allow: Option<u32>,
    default_deny: Option<u32>,
}

fn define(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("authz: cannot define metric {name}: {status:?}");
            None
        }
    }
}

fn define_set(prefix: &str) -> [Option<u32>; 4] {
    KINDS.map(|kind| define(&format!("{prefix}.{kind}")))
}

fn increment(id: Option<u32>) {
    if let Some(id) = id {
        // Errors (an unknown id) are not worth failing a request for.
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    pub(crate) fn define(engine: &Engine) -> Metrics {
        let policies = engine.policies();
        let per_policy = policies
            .iter()
            .take(MAX_POLICY_METRICS)
            .map(|p| define_set(&format!("authz.policy.{}.{}", p.namespace, p.name)))
            .collect();
        let other = if policies.len() > MAX_POLICY_METRICS {
            define_set("authz.policy.other")
        } else {
            [None; 4]
        };
        Metrics {
            per_policy,
            other,
            default_allow: define("authz.default.allow"),
            default_deny: define("authz.default.deny"),
        }
    }

    fn policy(&self, id: PolicyId, kind: usize) -> Option<u32> {
        let set = usize::try_from(id.0)
            .ok()
            .and_then(|i| self.per_policy.get(i))
            .unwrap_or(&self.other);
        set.get(kind).copied().flatten()
    }

    fn record(&self, decision: &Decision) {
        match (decision.reason.rule(), decision.verdict) {
            (Some(r), Verdict::Allow) => increment(self.policy(r.policy, ALLOW)),
            (Some(r), Verdict::Deny) => increment(self.policy(r.policy, DENY)),
            (None, Verdict::Allow) => increment(self.default_allow),
            (None, Verdict::Deny) => increment(self.default_deny),
        }
        for id in &decision.audit {
            increment(self.policy(*id, AUDIT));
        }
        if let Some(r) = decision.dry_run.and_then(|d| d.reason.rule()) {
            increment(self.policy(r.policy, DRY_RUN));
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
