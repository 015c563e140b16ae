//! The generator's own description of a policy set: a small subset of the AuthorizationPolicy
//! API (the fields the benchmark uses), rendered three ways from the same values:
//!
//! * as AuthorizationPolicy resources (the module's plugin configuration, docs/configuration.md);
//! * as the Envoy RBAC policies istiod would generate for them (docs/semantics.md#waypoint-translation, docs/semantics.md#waypoint-attributes:
//!   one Envoy policy per rule named `ns[NS]-policy[NAME]-rule[I]`, permissions and principals
//!   in istiod's order, principals from the peer certificate as `authenticated.principal_name`
//!   with the `spiffe://` prefix, namespaces as the regex `.*/ns/NS/.*`);
//! * as a reference evaluator ([`PolicySet::matching`]) that says, independently of the
//!   engine, which policies a request or connection matches — so the generator records the
//!   expected decision of every sample request.

use std::net::{IpAddr, Ipv4Addr};

use authz_plugin::engine::matcher;

use serde::Serialize;
use serde_json::{json, Value};

/// The SPIFFE URI prefix istiod puts in front of principals.
pub const SPIFFE_PREFIX: &str = "spiffe://";

/// An Istio string value as the generator describes it: `v`, `v*`, `*v` or `*`. The generator
/// writes it in three forms (plugin configuration, istiod's RBAC, the indexed matcher); whether
/// a value matches is the engine's [`matcher::StrMatch`], not a second implementation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValuePattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Presence,
}

impl ValuePattern {
    /// The value as written in an AuthorizationPolicy.
    pub fn istio(&self) -> String {
        match self {
            ValuePattern::Exact(v) => v.clone(),
            ValuePattern::Prefix(v) => format!("{v}*"),
            ValuePattern::Suffix(v) => format!("*{v}"),
            ValuePattern::Presence => "*".into(),
        }
    }

    /// Istio's matching (exact, prefix, suffix, or any non-empty value), by the engine's
    /// matcher: the reference model describes policies independently of the engine, but
    /// compares values as it does.
    pub fn matches(&self, value: &str) -> bool {
        let bytes = |v: &str| -> Box<[u8]> { v.as_bytes().into() };
        let m = match self {
            ValuePattern::Exact(v) => matcher::StrMatch::Exact(bytes(v)),
            ValuePattern::Prefix(v) => matcher::StrMatch::Prefix(bytes(v)),
            ValuePattern::Suffix(v) => matcher::StrMatch::Suffix(bytes(v)),
            ValuePattern::Presence => matcher::StrMatch::NonEmpty,
        };
        m.matches(value.as_bytes())
    }

    /// Envoy's `StringMatcher` as istiod builds it (`StringMatcherWithPrefix`).
    fn envoy(&self, prefix: &str) -> Value {
        match self {
            ValuePattern::Exact(v) => json!({ "exact": format!("{prefix}{v}") }),
            ValuePattern::Prefix(v) => json!({ "prefix": format!("{prefix}{v}") }),
            ValuePattern::Suffix(v) if prefix.is_empty() => json!({ "suffix": v }),
            ValuePattern::Suffix(v) => {
                json!({ "safe_regex": { "regex": format!("{}.*{}", regex_quote(prefix), regex_quote(v)) } })
            }
            ValuePattern::Presence => json!({ "safe_regex": { "regex": ".+" } }),
        }
    }
}

/// `s` as a literal in an RE2 regular expression.
pub(super) fn regex_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An IPv4 CIDR block as the generator describes it; matched by the engine's [`matcher::Cidr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrBlock {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl CidrBlock {
    pub fn new(addr: Ipv4Addr, len: u8) -> CidrBlock {
        CidrBlock { addr, len }
    }

    /// By the engine's matcher, as [`ValuePattern::matches`].
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        matcher::Cidr {
            addr: IpAddr::V4(self.addr),
            prefix: self.len.min(32),
        }
        .contains(IpAddr::V4(ip))
    }

    pub fn istio(&self) -> String {
        format!("{}/{}", self.addr, self.len)
    }

    fn envoy(&self) -> Value {
        json!({ "address_prefix": self.addr.to_string(), "prefix_len": self.len })
    }
}

/// `from[].source`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Source {
    /// Principals as Istio writes them (`cluster.local/ns/N/sa/S`, possibly with `*`).
    pub principals: Vec<ValuePattern>,
    /// Namespaces (exact).
    pub namespaces: Vec<String>,
    pub ip_blocks: Vec<CidrBlock>,
}

/// `to[].operation`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Operation {
    pub methods: Vec<String>,
    pub paths: Vec<ValuePattern>,
    pub ports: Vec<u16>,
}

/// `when[]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `request.headers[NAME]` (name lower-case).
    Header {
        name: String,
        values: Vec<ValuePattern>,
    },
    /// `destination.ip`.
    DestinationIp(Vec<CidrBlock>),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rule {
    pub from: Vec<Source>,
    pub to: Vec<Operation>,
    pub when: Vec<Condition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Allow,
    Deny,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
        }
    }
}

/// What a policy is attached to.
#[derive(Clone, Debug, PartialEq)]
pub enum Binding {
    /// `targetRefs: [{kind: Service, group: "", name}]` (waypoint).
    Service(String),
    /// `selector: {matchLabels: {KEY: VALUE}}` (ztunnel).
    Selector(String, String),
    /// No selector, no targetRefs: the whole namespace (the root namespace: the whole mesh).
    Namespace,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub binding: Binding,
    pub action: Action,
    pub rules: Vec<Rule>,
}

/// A request (Layer 7) or a connection (Layer 4), as the proxy sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Traffic {
    /// The peer certificate's principal without `spiffe://` (`cluster.local/ns/N/sa/S`).
    pub principal: Option<String>,
    pub source_ip: String,
    pub destination_ip: String,
    pub destination_port: u16,
    /// HTTP only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Lower-case names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl Traffic {
    fn src(&self) -> Option<Ipv4Addr> {
        self.source_ip.parse().ok()
    }

    fn dst(&self) -> Option<Ipv4Addr> {
        self.destination_ip.parse().ok()
    }

    fn namespace(&self) -> Option<&str> {
        let p = self.principal.as_deref()?;
        let rest = p.split_once("/ns/")?.1;
        Some(rest.split_once('/').map_or(rest, |(ns, _)| ns))
    }

    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    /// The path without its query string (Envoy's `url_path`).
    fn url_path(&self) -> Option<&str> {
        let p = self.path.as_deref()?;
        Some(p.split_once('?').map_or(p, |(p, _)| p))
    }
}

impl Source {
    fn matches(&self, t: &Traffic) -> bool {
        let principal_ok = self.principals.is_empty()
            || t.principal
                .as_deref()
                .is_some_and(|p| self.principals.iter().any(|m| m.matches(p)));
        let namespace_ok = self.namespaces.is_empty()
            || t.namespace()
                .is_some_and(|ns| self.namespaces.iter().any(|n| n == ns));
        let ip_ok = self.ip_blocks.is_empty()
            || t.src()
                .is_some_and(|ip| self.ip_blocks.iter().any(|c| c.contains(ip)));
        principal_ok && namespace_ok && ip_ok
    }
}

impl Operation {
    fn matches(&self, t: &Traffic, http: bool) -> bool {
        let method_ok = self.methods.is_empty()
            || (http
                && t.method
                    .as_deref()
                    .is_some_and(|m| self.methods.iter().any(|x| x == m)));
        let path_ok = self.paths.is_empty()
            || (http
                && t.url_path()
                    .is_some_and(|p| self.paths.iter().any(|m| m.matches(p))));
        let port_ok = self.ports.is_empty() || self.ports.contains(&t.destination_port);
        method_ok && path_ok && port_ok
    }
}

impl Condition {
    fn matches(&self, t: &Traffic) -> bool {
        match self {
            Condition::Header { name, values } => t
                .header(name)
                .is_some_and(|v| values.iter().any(|m| m.matches(&v))),
            Condition::DestinationIp(cidrs) => t
                .dst()
                .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip))),
        }
    }
}

impl Rule {
    /// The reference semantics of one rule (docs/semantics.md#rule-structure) on the fields used here.
    pub fn matches(&self, t: &Traffic, http: bool) -> bool {
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(t)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(t, http)))
            && self.when.iter().all(|c| c.matches(t))
    }
}

impl Policy {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn matches(&self, t: &Traffic, http: bool) -> bool {
        self.rules.iter().any(|r| r.matches(t, http))
    }

    /// The resource, as a user writes it (`security.istio.io/v1`).
    pub fn resource(&self) -> Value {
        let mut spec = serde_json::Map::new();
        match &self.binding {
            Binding::Service(name) => {
                spec.insert(
                    "targetRefs".into(),
                    json!([{ "kind": "Service", "group": "", "name": name }]),
                );
            }
            Binding::Selector(k, v) => {
                spec.insert("selector".into(), json!({ "matchLabels": { k: v } }));
            }
            Binding::Namespace => {}
        }
        spec.insert("action".into(), json!(self.action.name()));
        let rules: Vec<Value> = self.rules.iter().map(rule_resource).collect();
        spec.insert("rules".into(), Value::Array(rules));
        json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "spec": spec,
        })
    }

    /// The Envoy RBAC policies istiod generates for this policy: (name, policy) per rule.
    pub fn envoy_policies(&self) -> Vec<(String, Value)> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    format!("ns[{}]-policy[{}]-rule[{i}]", self.namespace, self.name),
                    envoy_rule(r),
                )
            })
            .collect()
    }
}

fn strs(values: &[ValuePattern]) -> Value {
    Value::Array(values.iter().map(|v| json!(v.istio())).collect())
}

fn rule_resource(r: &Rule) -> Value {
    let mut rule = serde_json::Map::new();
    if !r.from.is_empty() {
        let from: Vec<Value> = r
            .from
            .iter()
            .map(|s| {
                let mut src = serde_json::Map::new();
                if !s.principals.is_empty() {
                    src.insert("principals".into(), strs(&s.principals));
                }
                if !s.namespaces.is_empty() {
                    src.insert("namespaces".into(), json!(s.namespaces));
                }
                if !s.ip_blocks.is_empty() {
                    let blocks: Vec<String> = s.ip_blocks.iter().map(CidrBlock::istio).collect();
                    src.insert("ipBlocks".into(), json!(blocks));
                }
                json!({ "source": src })
            })
            .collect();
        rule.insert("from".into(), Value::Array(from));
    }
    if !r.to.is_empty() {
        let to: Vec<Value> =
            r.to.iter()
                .map(|o| {
                    let mut op = serde_json::Map::new();
                    if !o.methods.is_empty() {
                        op.insert("methods".into(), json!(o.methods));
                    }
                    if !o.paths.is_empty() {
                        op.insert("paths".into(), strs(&o.paths));
                    }
                    if !o.ports.is_empty() {
                        let ports: Vec<String> = o.ports.iter().map(u16::to_string).collect();
                        op.insert("ports".into(), json!(ports));
                    }
                    json!({ "operation": op })
                })
                .collect();
        rule.insert("to".into(), Value::Array(to));
    }
    if !r.when.is_empty() {
        let when: Vec<Value> = r
            .when
            .iter()
            .map(|c| match c {
                Condition::Header { name, values } => {
                    json!({ "key": format!("request.headers[{name}]"), "values": strs(values) })
                }
                Condition::DestinationIp(cidrs) => {
                    let v: Vec<String> = cidrs.iter().map(CidrBlock::istio).collect();
                    json!({ "key": "destination.ip", "values": v })
                }
            })
            .collect();
        rule.insert("when".into(), Value::Array(when));
    }
    Value::Object(rule)
}

fn or_ids(ids: Vec<Value>) -> Value {
    json!({ "or_ids": { "ids": ids } })
}

fn or_rules(rules: Vec<Value>) -> Value {
    json!({ "or_rules": { "rules": rules } })
}

fn authenticated(m: Value) -> Value {
    json!({ "authenticated": { "principal_name": m } })
}

fn header_matcher(name: &str, v: &ValuePattern) -> Value {
    match v {
        ValuePattern::Presence => json!({ "name": name, "present_match": true }),
        other => json!({ "name": name, "string_match": other.envoy("") }),
    }
}

/// One rule → one Envoy `Policy`, in istiod's order (`model.New`: principals = [principals,
/// namespaces, ipBlocks, then the principal-side `when`]; permissions = [methods, paths,
/// ports, then the permission-side `when`]), each field an `or_*` of its values, each entry an
/// `and_*`, `any` where nothing constrains.
fn envoy_rule(r: &Rule) -> Value {
    let mut when_principal = Vec::new();
    let mut when_permission = Vec::new();
    for c in &r.when {
        match c {
            Condition::Header { name, values } => when_principal.push(or_ids(
                values
                    .iter()
                    .map(|v| json!({ "header": header_matcher(name, v) }))
                    .collect(),
            )),
            Condition::DestinationIp(cidrs) => when_permission.push(or_rules(
                cidrs
                    .iter()
                    .map(|c| json!({ "destination_ip": c.envoy() }))
                    .collect(),
            )),
        }
    }
    let principal = |ids: Vec<Value>| {
        if ids.is_empty() {
            json!({ "and_ids": { "ids": [{ "any": true }] } })
        } else {
            json!({ "and_ids": { "ids": ids } })
        }
    };
    let permission = |rules: Vec<Value>| {
        if rules.is_empty() {
            json!({ "and_rules": { "rules": [{ "any": true }] } })
        } else {
            json!({ "and_rules": { "rules": rules } })
        }
    };
    let principals: Vec<Value> = if r.from.is_empty() {
        vec![principal(when_principal.clone())]
    } else {
        r.from
            .iter()
            .map(|s| {
                let mut ids = Vec::new();
                if !s.principals.is_empty() {
                    ids.push(or_ids(
                        s.principals
                            .iter()
                            .map(|p| authenticated(p.envoy(SPIFFE_PREFIX)))
                            .collect(),
                    ));
                }
                if !s.namespaces.is_empty() {
                    ids.push(or_ids(
                        s.namespaces
                            .iter()
                            .map(|ns| {
                                authenticated(json!({
                                    "safe_regex": { "regex": format!(".*/ns/{}/.*", regex_quote(ns)) }
                                }))
                            })
                            .collect(),
                    ));
                }
                if !s.ip_blocks.is_empty() {
                    ids.push(or_ids(
                        s.ip_blocks
                            .iter()
                            .map(|c| json!({ "direct_remote_ip": c.envoy() }))
                            .collect(),
                    ));
                }
                ids.extend(when_principal.iter().cloned());
                principal(ids)
            })
            .collect()
    };
    let permissions: Vec<Value> = if r.to.is_empty() {
        vec![permission(when_permission.clone())]
    } else {
        r.to
            .iter()
            .map(|o| {
                let mut rules = Vec::new();
                if !o.methods.is_empty() {
                    rules.push(or_rules(
                        o.methods
                            .iter()
                            .map(|m| {
                                json!({ "header": header_matcher(":method", &ValuePattern::Exact(m.clone())) })
                            })
                            .collect(),
                    ));
                }
                if !o.paths.is_empty() {
                    rules.push(or_rules(
                        o.paths
                            .iter()
                            .map(|p| json!({ "url_path": { "path": p.envoy("") } }))
                            .collect(),
                    ));
                }
                if !o.ports.is_empty() {
                    rules.push(or_rules(
                        o.ports
                            .iter()
                            .map(|p| json!({ "destination_port": p }))
                            .collect(),
                    ));
                }
                rules.extend(when_permission.iter().cloned());
                permission(rules)
            })
            .collect()
    };
    json!({ "permissions": permissions, "principals": principals })
}

/// A set of policies with one action, as one Envoy RBAC filter would enforce it.
#[derive(Clone, Debug)]
pub struct PolicySet {
    pub action: Action,
    pub policies: Vec<Policy>,
    /// HTTP (waypoint, Layer 7) or TCP (ztunnel, Layer 4).
    pub http: bool,
}

impl PolicySet {
    /// The keys (`ns/name`) of the policies `t` matches, in Envoy's evaluation order (by
    /// policy name).
    pub fn matching(&self, t: &Traffic) -> Vec<String> {
        let mut keys: Vec<(String, String)> = self
            .policies
            .iter()
            .filter(|p| p.matches(t, self.http))
            .map(|p| (format!("ns[{}]-policy[{}]", p.namespace, p.name), p.key()))
            .collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// The expected verdict: ALLOW set → allowed iff some policy matches; DENY set → denied
    /// iff some policy matches.
    pub fn allows(&self, t: &Traffic) -> bool {
        let any = self.policies.iter().any(|p| p.matches(t, self.http));
        match self.action {
            Action::Allow => any,
            Action::Deny => !any,
        }
    }

    pub fn resources(&self) -> Vec<Value> {
        self.policies.iter().map(Policy::resource).collect()
    }

    /// The `typed_config` of the Envoy RBAC filter istiod would generate: HTTP
    /// (`envoy.filters.http.rbac`) or network (`envoy.filters.network.rbac`, stat prefix `tcp.`).
    pub fn envoy_rbac(&self) -> Value {
        let mut policies = serde_json::Map::new();
        for p in &self.policies {
            for (name, policy) in p.envoy_policies() {
                policies.insert(name, policy);
            }
        }
        let rules = json!({ "action": self.action.name(), "policies": policies });
        if self.http {
            json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": rules,
            })
        } else {
            json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
                "stat_prefix": "tcp.",
                "rules": rules,
            })
        }
    }

    /// Number of Envoy policies (rules).
    pub fn rule_count(&self) -> usize {
        self.policies.iter().map(|p| p.rules.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_and_strings() {
        let c = CidrBlock::new(Ipv4Addr::new(127, 0, 0, 64), 26);
        assert!(c.contains(Ipv4Addr::new(127, 0, 0, 66)));
        assert!(!c.contains(Ipv4Addr::new(127, 0, 0, 130)));
        assert!(CidrBlock::new(Ipv4Addr::UNSPECIFIED, 0).contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(ValuePattern::Prefix("/a/".into()).matches("/a/b"));
        assert!(!ValuePattern::Suffix("/1.json".into()).matches("/x/11.json"));
        assert_eq!(ValuePattern::Prefix("/a/".into()).istio(), "/a/*");
        assert_eq!(regex_quote("a.b"), "a\\.b");
    }

    #[test]
    fn envoy_shape_follows_istiod() {
        let p = Policy {
            namespace: "foo".into(),
            name: "allow-bar".into(),
            binding: Binding::Service("svc".into()),
            action: Action::Allow,
            rules: vec![Rule {
                from: vec![Source {
                    principals: vec![ValuePattern::Exact("cluster.local/ns/foo/sa/bar".into())],
                    ..Default::default()
                }],
                to: vec![Operation {
                    methods: vec!["GET".into()],
                    paths: vec![ValuePattern::Prefix("/api/".into())],
                    ..Default::default()
                }],
                when: vec![],
            }],
        };
        let e = p.envoy_policies();
        assert_eq!(e[0].0, "ns[foo]-policy[allow-bar]-rule[0]");
        assert_eq!(
            e[0].1["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"][0]["authenticated"]
                ["principal_name"]["exact"],
            "spiffe://cluster.local/ns/foo/sa/bar"
        );
        assert_eq!(
            e[0].1["permissions"][0]["and_rules"]["rules"][1]["or_rules"]["rules"][0]["url_path"]
                ["path"]["prefix"],
            "/api/"
        );
    }
}
