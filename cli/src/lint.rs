//! `istio-authz lint`: mistakes that make a policy do something other than what its author
//! meant, found before it is applied. Each finding names the file, the policy, the field, and
//! what to do.

use crate::cluster::{selects, Cluster, Object};
use crate::mesh::{self, Addressed, Mesh};
use authz_plugin::engine::{NoteKind, OwnedAttributes, PluginConfig, Reason, Traffic, Verdict};
use serde_json::{json, Value};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// A stable name for the kind of mistake, e.g. `targetref-kind`.
    pub code: &'static str,
    /// `file (document N)`.
    pub origin: String,
    /// `namespace/name` of the object.
    pub object: String,
    /// The field at fault, e.g. `spec.targetRefs[0].kind`.
    pub field: String,
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    pub fn json(&self) -> Value {
        json!({
            "severity": self.severity.as_str(),
            "code": self.code,
            "file": self.origin,
            "object": self.object,
            "field": self.field,
            "message": self.message,
            "fix": self.fix,
        })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] {}: {}: {}: {}\n  fix: {}",
            self.severity.as_str(),
            self.code,
            self.origin,
            self.object,
            self.field,
            self.message,
            self.fix
        )
    }
}

/// Levenshtein distance, case-insensitive: `AuthorisationPolicy` is one edit away.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous.get(j).copied().unwrap_or(0) + usize::from(ca != cb);
            let insert = current.get(j).copied().unwrap_or(0) + 1;
            let delete = previous.get(j + 1).copied().unwrap_or(0) + 1;
            current.push(substitute.min(insert).min(delete));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

/// The kinds of `security.istio.io`.
const SECURITY_KINDS: [&str; 3] = [
    "AuthorizationPolicy",
    "PeerAuthentication",
    "RequestAuthentication",
];

struct Linter<'a> {
    cluster: &'a Cluster,
    mesh: Mesh<'a>,
    findings: Vec<Finding>,
}

impl Linter<'_> {
    fn add(
        &mut self,
        severity: Severity,
        code: &'static str,
        object: &Object,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            code,
            origin: object.origin.to_string(),
            object: object.key(),
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// A document meant as an AuthorizationPolicy that Istio would not read as one: it would
    /// be applied (or refused) as something else, and enforce nothing.
    fn kinds(&mut self) {
        for object in &self.cluster.objects {
            let security = object.group() == "security.istio.io";
            let close = distance(&object.kind, "AuthorizationPolicy") <= 3;
            if object.is_authorization_policy()
                || (security && SECURITY_KINDS.contains(&object.kind.as_str()))
            {
                continue;
            }
            if security || close {
                self.add(
                    Severity::Error,
                    "unknown-kind",
                    object,
                    "kind",
                    format!(
                        "{:?} (apiVersion {:?}) is not an AuthorizationPolicy, so nothing enforces it",
                        object.kind, object.api_version
                    ),
                    "write kind: AuthorizationPolicy and apiVersion: security.istio.io/v1",
                );
            }
        }
    }

    /// Each policy on its own through the engine's parser: what the module would refuse.
    fn parses(&mut self) -> Vec<Object> {
        let mut good = Vec::new();
        let policies: Vec<Object> = self.cluster.policies().cloned().collect();
        for policy in policies {
            let config = json!({
                "mode": "waypoint",
                "waypoint": {"name": "lint", "namespace": self.cluster.mesh.root_namespace},
                "rootNamespace": self.cluster.mesh.root_namespace,
                "trustDomain": self.cluster.mesh.trust_domain,
                "policies": [policy.value],
            });
            match PluginConfig::from_value(&config) {
                Ok(_) => good.push(policy),
                Err(e) => self.add(
                    Severity::Error,
                    "invalid",
                    &policy,
                    e.field.clone(),
                    e.message.clone(),
                    "correct the field: the proxy refuses the whole configuration while this policy is in it",
                ),
            }
        }
        good
    }

    fn target_refs(&mut self, policy: &Object) {
        let root = self.cluster.mesh.root_namespace.clone();
        let refs = policy
            .value
            .pointer("/spec/targetRefs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let single = policy.value.pointer("/spec/targetRef").cloned();
        let all: Vec<(String, Value)> = refs
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("spec.targetRefs[{i}]"), r))
            .chain(single.map(|r| ("spec.targetRef".to_string(), r)))
            .collect();
        for (field, r) in all {
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
            let group = r.get("group").and_then(Value::as_str).unwrap_or("");
            let name = r.get("name").and_then(Value::as_str).unwrap_or("");
            let known = match kind {
                "Service" => group.is_empty(),
                "ServiceEntry" => group == "networking.istio.io",
                "Gateway" | "GatewayClass" => group == "gateway.networking.k8s.io",
                _ => false,
            };
            if !known {
                let suggestion = ["Service", "ServiceEntry", "Gateway", "GatewayClass"]
                    .into_iter()
                    .min_by_key(|k| distance(kind, k))
                    .unwrap_or("Service");
                self.add(
                    Severity::Error,
                    "targetref-kind",
                    policy,
                    format!("{field}.kind"),
                    format!(
                        "kind {kind:?} with group {group:?} is not something Istio attaches an AuthorizationPolicy to, so the policy applies nowhere"
                    ),
                    format!(
                        "did you mean kind {suggestion:?}? Attachable: Service (group \"\"), ServiceEntry (networking.istio.io), Gateway and GatewayClass (gateway.networking.k8s.io)"
                    ),
                );
                continue;
            }
            match kind {
                "GatewayClass" => {
                    if policy.namespace != root {
                        self.add(
                            Severity::Error,
                            "gatewayclass-outside-root",
                            policy,
                            field.clone(),
                            format!(
                                "a policy attached to GatewayClass {name:?} applies only from the root namespace {root:?}, not from {:?}",
                                policy.namespace
                            ),
                            format!("move the policy to namespace {root}"),
                        );
                    }
                    if name != "istio-waypoint" {
                        self.add(
                            Severity::Warning,
                            "targetref-missing",
                            policy,
                            format!("{field}.name"),
                            format!("GatewayClass {name:?} is not Istio's waypoint class"),
                            "waypoints are of class istio-waypoint",
                        );
                    }
                }
                _ => {
                    let exists = self.cluster.objects.iter().any(|o| {
                        o.kind == kind && o.namespace == policy.namespace && o.name == name
                    });
                    if !exists {
                        self.add(
                            Severity::Error,
                            "targetref-missing",
                            policy,
                            format!("{field}.name"),
                            format!(
                                "{kind} {}/{name} is not in the cluster files, so the policy applies nowhere",
                                policy.namespace
                            ),
                            "name an object in the policy's own namespace (targetRefs do not cross namespaces)",
                        );
                        continue;
                    }
                    if kind == "Service" || kind == "ServiceEntry" {
                        if let Some(service) = self.cluster.find(kind, &policy.namespace, name) {
                            if self
                                .mesh
                                .waypoint_for(service, Addressed::Service)
                                .is_none()
                            {
                                self.add(
                                    Severity::Error,
                                    "no-waypoint",
                                    policy,
                                    field.clone(),
                                    format!(
                                        "{kind} {} has no waypoint, and only a waypoint enforces targetRefs policies: this policy is not enforced",
                                        service.key()
                                    ),
                                    "label the service or its namespace istio.io/use-waypoint=<waypoint>, or bind the policy with a selector for ztunnel",
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn selector(&mut self, policy: &Object) {
        let Some(labels) = policy
            .value
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
        else {
            return;
        };
        if labels.is_empty() {
            return;
        }
        let root = &self.cluster.mesh.root_namespace;
        let any = self.cluster.pods().any(|p| {
            (policy.namespace == *root || p.0.namespace == policy.namespace)
                && selects(labels, &p.0.labels)
        });
        if !any {
            self.add(
                Severity::Warning,
                "selector-no-pods",
                policy,
                "spec.selector.matchLabels",
                format!(
                    "{} selects no pod in {}",
                    Value::Object(labels.clone()),
                    if policy.namespace == *root {
                        "the mesh".to_string()
                    } else {
                        format!("namespace {}", policy.namespace)
                    }
                ),
                "check the labels against the pods' labels",
            );
        }
    }

    /// Layer 7 content in a policy that a ztunnel enforces: the engine's fail-safe conversion
    /// notes, one ztunnel configuration over every enrolled pod.
    fn layer7_at_ztunnel(&mut self) {
        let pods: Vec<_> = self
            .cluster
            .pods()
            .filter(|p| self.mesh.enrolled(*p))
            .collect();
        let mut config = match pods.first() {
            Some(p) => self.mesh.ztunnel_config(*p),
            None => return,
        };
        let workloads: Vec<Value> = pods
            .iter()
            .filter_map(|p| {
                self.mesh
                    .ztunnel_config(*p)
                    .get("workloads")
                    .and_then(|w| w.get(0))
                    .cloned()
            })
            .collect();
        if let Some(map) = config.as_object_mut() {
            map.insert("workloads".into(), Value::Array(workloads));
        }
        let Ok(engine) = mesh::engine(self.cluster, &config) else {
            return; // reported by `parses`
        };
        for note in engine.notes() {
            if note.kind != NoteKind::Converted {
                continue;
            }
            // Only policies that a ztunnel enforces: not those attached to a waypoint.
            let Some(policy) = self.cluster.policies().find(|p| {
                p.key() == note.policy
                    && p.value.pointer("/spec/targetRefs").is_none()
                    && p.value.pointer("/spec/targetRef").is_none()
            }) else {
                continue;
            };
            let action = policy
                .value
                .pointer("/spec/action")
                .and_then(Value::as_str)
                .unwrap_or("ALLOW");
            let rules = policy
                .value
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let dropped = note.message.matches("spec.rules[").count();
            let deny_all = note.message.contains("match(es) all traffic")
                || (action == "ALLOW" && note.message.contains("never match") && dropped >= rules);
            let policy = policy.clone();
            self.add(
                if deny_all { Severity::Error } else { Severity::Warning },
                "layer7-at-ztunnel",
                &policy,
                "spec.rules",
                if deny_all {
                    format!("enforced by ztunnel, which cannot see Layer 7: this policy denies all traffic to the workloads it selects. {}", note.message)
                } else {
                    format!("enforced by ztunnel, which cannot see Layer 7: {}", note.message)
                },
                "attach the policy to the workload's waypoint with targetRefs (kind Service), or keep only Layer 4 fields (principals, namespaces, ipBlocks, ports)",
            );
        }
    }

    /// A workload fronted by a waypoint receives its traffic from the waypoint: a ztunnel
    /// policy that does not admit the waypoint's identity refuses everything the waypoint
    /// allowed (the seeds' walkthrough, "We now need to update it to also allow connections
    /// from the waypoint").
    fn ztunnel_admits_waypoint(&mut self) {
        let mut checks = Vec::new();
        for service in self.cluster.services() {
            let Some(waypoint) = self.mesh.waypoint_for(service.0, Addressed::Service) else {
                continue;
            };
            for pod in self.mesh.endpoints(service) {
                if !self.mesh.enrolled(pod) {
                    continue;
                }
                for port in service.ports() {
                    if let Some(target) = self.mesh.target_port(pod, &port.target) {
                        checks.push((pod, waypoint.clone(), target));
                    }
                }
            }
        }
        for (pod, waypoint, port) in checks {
            let Ok(engine) = mesh::engine(self.cluster, &self.mesh.ztunnel_config(pod)) else {
                return;
            };
            let identity = self
                .mesh
                .spiffe(&waypoint.gateway.0.namespace, &waypoint.service_account());
            let attrs = OwnedAttributes {
                peer_principal: Some(identity.clone()),
                source_ip: waypoint.address(),
                destination_ip: pod.addresses().first().copied(),
                destination_port: Some(port),
                ..OwnedAttributes::default()
            };
            let e = engine.explain(Traffic::Connection, &attrs);
            if e.verdict == Verdict::Allow {
                continue;
            }
            let blamed: Vec<&Object> = match (e.decision.reason, &e.policy) {
                (Reason::NoAllowMatched, _) => self
                    .cluster
                    .policies()
                    .filter(|p| {
                        let root = &self.cluster.mesh.root_namespace;
                        let in_scope = p.namespace == pod.0.namespace || p.namespace == *root;
                        let selected = match p
                            .value
                            .pointer("/spec/selector/matchLabels")
                            .and_then(Value::as_object)
                        {
                            Some(labels) => selects(labels, &pod.0.labels),
                            None => true,
                        };
                        in_scope
                            && selected
                            && p.value
                                .pointer("/spec/action")
                                .and_then(Value::as_str)
                                .unwrap_or("ALLOW")
                                == "ALLOW"
                            && p.value.pointer("/spec/targetRefs").is_none()
                            && p.value.pointer("/spec/targetRef").is_none()
                    })
                    .collect(),
                (_, Some(key)) => self
                    .cluster
                    .policies()
                    .filter(|p| p.key() == *key)
                    .collect(),
                _ => Vec::new(),
            };
            let pod_key = pod.0.key();
            for policy in blamed.into_iter().cloned().collect::<Vec<_>>() {
                if self.findings.iter().any(|f| {
                    f.code == "ztunnel-refuses-waypoint"
                        && f.object == policy.key()
                        && f.message.contains(&pod_key)
                }) {
                    continue;
                }
                self.add(
                    Severity::Error,
                    "ztunnel-refuses-waypoint",
                    &policy,
                    "spec.rules",
                    format!(
                        "the ztunnel of pod {pod_key} refuses the waypoint {} ({identity}) on port {port}, and every request through the waypoint reaches the pod from it: {}",
                        waypoint.key(),
                        e.reason
                    ),
                    format!("add {:?} to the principals the policy allows", identity.trim_start_matches("spiffe://")),
                );
            }
        }
    }
}

/// Only the documents meant as AuthorizationPolicies that Istio would not read as one.
pub fn unknown_kinds(cluster: &Cluster) -> Vec<Finding> {
    let mut linter = Linter {
        cluster,
        mesh: Mesh::new(cluster),
        findings: Vec::new(),
    };
    linter.kinds();
    linter.findings
}

/// Every finding over a cluster, errors first.
pub fn lint(cluster: &Cluster) -> Vec<Finding> {
    let mut linter = Linter {
        cluster,
        mesh: Mesh::new(cluster),
        findings: Vec::new(),
    };
    linter.kinds();
    let good = linter.parses();
    for policy in &good {
        linter.target_refs(policy);
        linter.selector(policy);
    }
    if !linter.findings.iter().any(|f| f.code == "invalid") {
        linter.layer7_at_ztunnel();
        linter.ztunnel_admits_waypoint();
    }
    let mut findings = linter.findings;
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.origin.cmp(&b.origin)));
    findings
}

#[cfg(test)]
mod tests {
    use super::distance;

    #[test]
    fn a_british_spelling_is_one_edit_away() {
        assert_eq!(distance("AuthorisationPolicy", "AuthorizationPolicy"), 1);
        assert_eq!(distance("authorizationpolicy", "AuthorizationPolicy"), 0);
        assert!(distance("Deployment", "AuthorizationPolicy") > 3);
    }
}
