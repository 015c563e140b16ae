//! Evaluate: attributes → decision, following Istio's procedure step by step, and the
//! explanation of a decision for people.

use super::attributes::Attributes;
use super::compile::{CEntry, Compiled, CompiledRule, Engine, PolicySet, RuleIndex, Span, Test};
use super::config::Mode;
use super::decision::{Decision, DryRun, PolicyId, Reason, RuleRef, Verdict};
use super::field::{canonical, namespace_segments, Written};
use super::matcher::Identity;
use super::policy::Attr;
use std::fmt;

/// What is being decided: a connection (Layer 4) or an HTTP request (Layer 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Connection,
    Request,
}

/// Some value matches (or there are none) and no notValue matches.
fn test_matches(compiled: &Compiled, test: &Test, attrs: &dyn Attributes) -> bool {
    let Some(field) = compiled.field(test) else {
        // Never built so; a test that cannot be read does not hold.
        return false;
    };
    let (values, not_values) = test.values_and_not(compiled);
    field.attr.holds(values, not_values, attrs, compiled)
}

fn entry_matches(compiled: &Compiled, entry: &CEntry, attrs: &dyn Attributes) -> bool {
    compiled
        .tests(entry)
        .iter()
        .all(|t| test_matches(compiled, t, attrs))
}

fn clause_matches(compiled: &Compiled, clause: Span, attrs: &dyn Attributes) -> bool {
    compiled
        .entries(clause)
        .iter()
        .any(|e| entry_matches(compiled, e, attrs))
}

/// Whether some rule of the index tests the direct peer address (`ipBlocks`, `source.ip`).
fn tests_source_ip(index: &RuleIndex, compiled: &Compiled) -> bool {
    index.all.iter().any(|rid| {
        compiled.rules.get(*rid as usize).is_some_and(|r| {
            compiled.clauses(r).iter().any(|c| {
                compiled.entries(*c).iter().any(|e| {
                    compiled.tests(e).iter().any(|t| {
                        compiled
                            .field(t)
                            .is_some_and(|f| matches!(f.attr, Attr::SourceIp))
                    })
                })
            })
        })
    })
}

/// Rule = every clause; clause = some entry (from[] / to[] are OR-ed); entry = every test.
fn rule_matches(compiled: &Compiled, rule: &CompiledRule, attrs: &dyn Attributes) -> bool {
    compiled
        .clauses(rule)
        .iter()
        .all(|c| clause_matches(compiled, *c, attrs))
}

impl RuleIndex {
    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The first matching rule by evaluating every rule: the reference the indexes must
    /// agree with (tests only).
    #[cfg(not(target_arch = "wasm32"))]
    fn first_match_by_scan(&self, compiled: &Compiled, attrs: &dyn Attributes) -> Option<u32> {
        self.all.iter().copied().find(|rid| {
            compiled
                .rules
                .get(*rid as usize)
                .is_some_and(|r| rule_matches(compiled, r, attrs))
        })
    }

    /// The first matching rule in decision order, looking only at candidates the request's
    /// own attributes select (plus rules with no indexable requirement).
    fn first_match(&self, compiled: &Compiled, attrs: &dyn Attributes) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        let mut best: Option<u32> = None;
        let mut consider = |list: &[u32]| {
            for rid in list {
                if best.is_some_and(|b| *rid >= b) {
                    break;
                }
                if compiled
                    .rules
                    .get(*rid as usize)
                    .is_some_and(|r| rule_matches(compiled, r, attrs))
                {
                    best = Some(*rid);
                    break;
                }
            }
        };
        if !self.by_principal.is_empty() || !self.by_namespace.is_empty() {
            let principal = attrs.peer_principal();
            if let Some(id) = principal.and_then(|p| p.strip_prefix("spiffe://")) {
                consider(self.by_principal.get(&compiled.strings, id.as_bytes()));
            }
            if !self.by_namespace.is_empty() {
                // Every `/ns/<segment>/` of the principal: a superset of what any indexed
                // namespace requirement can match (see compile::required_identity).
                for ns in namespace_segments(principal.unwrap_or("")) {
                    consider(self.by_namespace.get(&compiled.strings, ns.as_bytes()));
                }
            }
        }
        if !self.by_port.is_empty() {
            if let Some(port) = attrs.destination_port() {
                consider(self.port(port));
            }
        }
        if !self.by_method.is_empty() {
            if let Some(method) = attrs.method() {
                consider(self.by_method.get(&compiled.strings, method));
            }
        }
        consider(&self.scan);
        best
    }
}

impl Engine {
    /// Which compiled form decides this traffic.
    fn compiled_for(&self, traffic: Traffic) -> Option<&Compiled> {
        match (self.config.mode, traffic) {
            (Mode::Ztunnel, _) => self.http.as_ref(),
            (Mode::Waypoint, Traffic::Request) => self.http.as_ref().or(self.tcp.as_ref()),
            (Mode::Waypoint, Traffic::Connection) => self.tcp.as_ref().or(self.http.as_ref()),
        }
    }

    /// The target (workload or service) this traffic is for, if any.
    fn target(&self, attrs: &dyn Attributes) -> Option<u32> {
        let targets = &self.targets;
        if !targets.by_address.is_empty() {
            if let Some(candidates) = attrs
                .destination_ip()
                .map(canonical)
                .and_then(|ip| targets.by_address.get(&ip))
            {
                // The address alone chooses the service: passing over a service's own
                // policies because the port is not one it lists would let that traffic
                // past them. Ports only break a tie between services sharing an address.
                let chosen = match candidates.as_slice() {
                    [only] => Some(only),
                    several => {
                        let port = attrs.destination_port();
                        several
                            .iter()
                            .find(|(_, ports)| port.is_some_and(|p| ports.contains(&p)))
                            .or(several.first())
                    }
                };
                if let Some((t, _)) = chosen {
                    return Some(*t);
                }
            }
        }
        // `:authority` never chooses the service (istio/istio
        // pilot/pkg/networking/core/listener_waypoint.go matches the waypoint's per-service
        // chains on the destination address, not on Host): a client that writes
        // another service's name must not get that service's policies. What the address does
        // not name falls back to the lone address-less service (a plugin on that service's
        // chain) or, in a waypoint, to the policies bound to the waypoint itself.
        targets.fallback
    }

    fn rule_ref(compiled: &Compiled, rid: u32) -> Option<RuleRef> {
        compiled.rules.get(rid as usize).map(|r| RuleRef {
            policy: r.policy,
            rule: r.index,
        })
    }

    /// Decides one connection or request. Follows the Istio procedure: CUSTOM, then DENY,
    /// then ALLOW; AUDIT and dry-run are recorded, never enforced. No parsing, and no heap
    /// allocation unless an AUDIT policy matches.
    pub fn decide(&self, traffic: Traffic, attrs: &dyn Attributes) -> Decision {
        let deny = |reason| Decision {
            verdict: Verdict::Deny,
            reason,
            audit: Vec::new(),
            dry_run: None,
        };
        // Identity comes only from what the proxy established; two different ones leave no
        // principal a policy could be meant for, so nothing is decided on either.
        if attrs.identity_conflict() {
            return deny(Reason::ConflictingIdentity);
        }
        // "A destination ztunnel refuses, in its TLS handshake and before any policy, a peer
        // whose SPIFFE trust domain is not its own" (docs/semantics.md#ztunnel-trust-domain).
        if self.config.mode == Mode::Ztunnel {
            if let Some(p) = attrs.peer_principal() {
                let trusted = Identity::parse(p)
                    .is_some_and(|id| self.trusted_domains.iter().any(|d| d == id.trust_domain));
                if !trusted {
                    return deny(Reason::UntrustedPeer);
                }
            }
        }
        let Some(compiled) = self.compiled_for(traffic) else {
            return deny(Reason::UnknownDestination);
        };
        let set = self
            .target(attrs)
            .and_then(|t| self.targets.set_of.get(t as usize))
            .and_then(|s| compiled.sets.get(*s as usize));
        let Some(set) = set else {
            // ztunnel only serves its own workloads: anything else is refused.
            return deny(Reason::UnknownDestination);
        };
        let (verdict, reason) = Self::procedure(compiled, set, attrs, false);
        let dry_run = if set.has_dry {
            let (verdict, reason) = Self::procedure(compiled, set, attrs, true);
            Some(DryRun { verdict, reason })
        } else {
            None
        };
        let mut audit = Vec::new();
        if !set.audit.is_empty() {
            for rid in &set.audit.all {
                if let Some(rule) = compiled.rules.get(*rid as usize) {
                    if audit.last() != Some(&rule.policy) && rule_matches(compiled, rule, attrs) {
                        audit.push(rule.policy);
                    }
                }
            }
            audit.dedup();
        }
        Decision {
            verdict,
            reason,
            audit,
            dry_run,
        }
    }

    /// Istio's decision procedure over the enforced (or, for `dry`, the dry-run) policies.
    fn procedure(
        compiled: &Compiled,
        set: &PolicySet,
        attrs: &dyn Attributes,
        dry: bool,
    ) -> (Verdict, Reason) {
        Self::procedure_with(compiled, set, attrs, dry, RuleIndex::first_match)
    }

    fn procedure_with(
        compiled: &Compiled,
        set: &PolicySet,
        attrs: &dyn Attributes,
        dry: bool,
        first_match: impl Fn(&RuleIndex, &Compiled, &dyn Attributes) -> Option<u32>,
    ) -> (Verdict, Reason) {
        let (custom, deny, allow, has_allow) = if dry {
            (None, &set.dry_deny, &set.dry_allow, set.has_dry_allow)
        } else {
            (Some(&set.custom), &set.deny, &set.allow, set.has_allow)
        };
        // "CUSTOM ... if the CUSTOM policy denies the request, deny" — with no authorizer
        // configured, a matching CUSTOM rule denies (fail safe).
        if let Some(rid) = custom.and_then(|c| first_match(c, compiled, attrs)) {
            if let Some(r) = Self::rule_ref(compiled, rid) {
                return (Verdict::Deny, Reason::Custom(r));
            }
        }
        // "If there are any DENY policies that match the request, deny the request."
        if let Some(rid) = first_match(deny, compiled, attrs) {
            if let Some(r) = Self::rule_ref(compiled, rid) {
                return (Verdict::Deny, Reason::Denied(r));
            }
        }
        // A DENY (or CUSTOM) rule on the direct peer address that could not be evaluated
        // because the proxy hid that address: Envoy's RBAC would test `direct_remote_ip`
        // (istio/istio pilot/pkg/security/authz/model/generator.go `srcIPGenerator`), which
        // the module cannot read here, so fail safe instead of skipping the rule.
        if attrs.source_ip_withheld()
            && (custom.is_some_and(|c| tests_source_ip(c, compiled))
                || tests_source_ip(deny, compiled))
        {
            return (Verdict::Deny, Reason::UnknownSource);
        }
        // "If there are no ALLOW policies for the workload, allow the request."
        if !has_allow {
            return (Verdict::Allow, Reason::NoAllowPolicies);
        }
        // "If any of the ALLOW policies match the request, allow the request."
        if let Some(rid) = first_match(allow, compiled, attrs) {
            if let Some(r) = Self::rule_ref(compiled, rid) {
                return (Verdict::Allow, Reason::Allowed(r));
            }
        }
        // "Deny the request."
        (Verdict::Deny, Reason::NoAllowMatched)
    }

    /// The enforced decision computed by evaluating every rule instead of the indexed
    /// candidates: what [`Engine::decide`] must always agree with. For tests.
    #[doc(hidden)]
    #[cfg(not(target_arch = "wasm32"))]
    pub fn decide_by_scan(&self, traffic: Traffic, attrs: &dyn Attributes) -> (Verdict, Reason) {
        let decided = self.decide(traffic, attrs);
        if matches!(
            decided.reason,
            Reason::UntrustedPeer
                | Reason::UnknownDestination
                | Reason::ConflictingIdentity
                | Reason::UnreadableJwt
        ) {
            return (decided.verdict, decided.reason);
        }
        let compiled = self.compiled_for(traffic);
        let set = compiled.and_then(|c| {
            self.target(attrs)
                .and_then(|t| self.targets.set_of.get(t as usize))
                .and_then(|s| c.sets.get(*s as usize))
        });
        match (compiled, set) {
            (Some(c), Some(set)) => {
                Self::procedure_with(c, set, attrs, false, RuleIndex::first_match_by_scan)
            }
            _ => (decided.verdict, decided.reason),
        }
    }

    /// The policy set that applies to this traffic, if any.
    fn target_set(&self, traffic: Traffic, attrs: &dyn Attributes) -> Option<&PolicySet> {
        let compiled = self.compiled_for(traffic)?;
        let t = self.target(attrs)?;
        let s = self.targets.set_of.get(t as usize)?;
        compiled.sets.get(*s as usize)
    }

    /// `namespace/name` of the policy that decided, or `None` when decided by default.
    pub fn deciding_policy(&self, reason: &Reason) -> Option<&str> {
        reason
            .rule()
            .and_then(|r| self.policy(r.policy))
            .map(|p| p.key())
    }

    /// Decides and explains: the deciding policy and rule, the target, AUDIT matches, the
    /// dry-run result, and for a deny the ALLOW rule that came closest and what failed.
    pub fn explain(&self, traffic: Traffic, attrs: &dyn Attributes) -> Explanation {
        let decision = self.decide(traffic, attrs);
        let key = |id: PolicyId| {
            self.policy(id)
                .map(|p| p.key().to_string())
                .unwrap_or_default()
        };
        let compiled = self.compiled_for(traffic);
        let target_id = self.target(attrs);
        let target = target_id
            .and_then(|t| self.targets.names.get(t as usize).cloned())
            .unwrap_or_else(|| "(none)".into());
        let rule_path = |r: RuleRef| format!("spec.rules[{}]", r.rule);
        let reason = match decision.reason {
            Reason::Custom(r) => format!(
                "CUSTOM policy {} {} matched and no external authorizer is configured",
                key(r.policy),
                rule_path(r)
            ),
            Reason::Denied(r) => format!("DENY policy {} {} matched", key(r.policy), rule_path(r)),
            Reason::NoAllowPolicies => "no ALLOW policy applies, so the default is to allow".into(),
            Reason::Allowed(r) => format!("ALLOW policy {} {} matched", key(r.policy), rule_path(r)),
            Reason::NoAllowMatched => {
                let names: Vec<String> = self
                    .target_set(traffic, attrs)
                    .map(|set| {
                        set.allow_policies
                            .iter()
                            .map(|id| {
                                let rules = self.policy(*id).map_or(0, |p| p.rules);
                                if rules == 0 {
                                    format!("{} (no rules: allows nothing)", key(*id))
                                } else {
                                    key(*id)
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!("ALLOW policies apply and none matched: {}", names.join(", "))
            }
            Reason::UntrustedPeer => format!(
                "the peer certificate's trust domain is not {} (ztunnel refuses it in the TLS handshake)",
                self.trusted_domains.join(" or ")
            ),
            Reason::UnknownDestination => "the destination is not a workload this proxy enforces for".into(),
            Reason::ConflictingIdentity => "the proxy established two different caller identities (waypoint filter state and peer certificate)".into(),
            Reason::UnknownSource => "a DENY rule tests the direct peer address, which the proxy replaced with a forwarded one".into(),
            Reason::UnreadableJwt => "a rule needed the verified JWT payload and it could not be read (fail closed)".into(),
        };
        // The nearest miss explains a request that no ALLOW rule admitted; when a DENY or
        // CUSTOM rule decided, that rule is the explanation and an ALLOW miss would mislead.
        let consulted = decision.reason == Reason::NoAllowMatched;
        let near_miss = match (consulted, compiled, target_id) {
            (true, Some(c), Some(t)) => self
                .targets
                .set_of
                .get(t as usize)
                .and_then(|s| c.sets.get(*s as usize))
                .and_then(|set| near_miss(self, c, &set.allow, attrs)),
            _ => None,
        };
        Explanation {
            verdict: decision.verdict,
            policy: self.deciding_policy(&decision.reason).map(str::to_string),
            rule: decision.reason.rule().map(|r| r.rule),
            reason,
            target,
            audit: decision.audit.iter().map(|p| key(*p)).collect(),
            dry_run: decision.dry_run.map(|d| {
                (
                    d.verdict,
                    self.deciding_policy(&d.reason).map(str::to_string),
                )
            }),
            near_miss,
            decision,
        }
    }
}

/// The ALLOW rule that came closest: the most clauses satisfied, and the first condition of
/// the first failing clause.
fn near_miss(
    engine: &Engine,
    compiled: &Compiled,
    allow: &RuleIndex,
    attrs: &dyn Attributes,
) -> Option<NearMiss> {
    let mut best: Option<(usize, usize, &CompiledRule)> = None;
    for rid in &allow.all {
        let Some(rule) = compiled.rules.get(*rid as usize) else {
            continue;
        };
        let clauses = compiled.clauses(rule);
        let passed = clauses
            .iter()
            .filter(|c| clause_matches(compiled, **c, attrs))
            .count();
        if passed == clauses.len() {
            // It matches: a DENY decided, not a missing ALLOW.
            return None;
        }
        let better = match best {
            None => true,
            Some((bp, bt, _)) => {
                passed * bt > bp * clauses.len()
                    || (passed * bt == bp * clauses.len() && passed > bp)
            }
        };
        if better {
            best = Some((passed, clauses.len(), rule));
        }
    }
    let (passed, total, rule) = best?;
    let clause = compiled
        .clauses(rule)
        .iter()
        .find(|c| !clause_matches(compiled, **c, attrs))?;
    // In the failing clause, the entry with the most tests passing, and its first failure.
    let entry = compiled.entries(*clause).iter().max_by_key(|e| {
        compiled
            .tests(e)
            .iter()
            .filter(|t| test_matches(compiled, t, attrs))
            .count()
    })?;
    let test = compiled
        .tests(entry)
        .iter()
        .find(|t| !test_matches(compiled, t, attrs))?;
    let field = compiled.field(test)?;
    let strings = &compiled.strings;
    let texts = |ids: &[u32]| -> Vec<&str> { ids.iter().map(|id| strings.get(*id)).collect() };
    let (written, written_not) = test.written_and_not(compiled);
    let mut wanted = Vec::new();
    if !written.is_empty() {
        wanted.push(format!("one of {:?}", texts(written)));
    }
    if !written_not.is_empty() {
        wanted.push(format!("none of {:?}", texts(written_not)));
    }
    let path = strings.get(entry.path);
    let api_name = strings.get(field.api_name);
    Some(NearMiss {
        policy: engine
            .policy(rule.policy)
            .map(|p| p.key().to_string())
            .unwrap_or_default(),
        rule: rule.index,
        clauses_matched: passed,
        clauses: total,
        field: if field.written == Written::Condition {
            // A `when` condition: its key is the attribute.
            format!("{path} ({api_name})")
        } else {
            format!("{path}.{api_name}")
        },
        wanted: wanted.join(" and "),
        actual: field.attr.describe(attrs),
    })
}

/// The ALLOW rule that came closest to allowing a denied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearMiss {
    pub policy: String,
    pub rule: u32,
    pub clauses_matched: usize,
    pub clauses: usize,
    /// The condition that failed, e.g. `spec.rules[0].to[0].operation.methods`.
    pub field: String,
    pub wanted: String,
    pub actual: String,
}

/// A decision with its explanation, names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    pub verdict: Verdict,
    /// `namespace/name` of the deciding policy; `None` when decided by default.
    pub policy: Option<String>,
    pub rule: Option<u32>,
    pub reason: String,
    pub target: String,
    pub audit: Vec<String>,
    pub dry_run: Option<(Verdict, Option<String>)>,
    pub near_miss: Option<NearMiss>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "decision: {}", self.verdict.as_str().to_uppercase())?;
        writeln!(f, "  because: {}", self.reason)?;
        writeln!(f, "  target:  {}", self.target)?;
        if !self.audit.is_empty() {
            writeln!(f, "  audit:   {}", self.audit.join(", "))?;
        }
        if let Some((v, p)) = &self.dry_run {
            writeln!(
                f,
                "  dry-run: would {} ({})",
                v,
                p.as_deref().unwrap_or("by default")
            )?;
        }
        if let Some(m) = &self.near_miss {
            writeln!(
                f,
                "  nearest miss: ALLOW policy {} spec.rules[{}] ({} of {} conditions held); {} wanted {}, got {}",
                m.policy, m.rule, m.clauses_matched, m.clauses, m.field, m.wanted, m.actual
            )?;
        }
        Ok(())
    }
}
