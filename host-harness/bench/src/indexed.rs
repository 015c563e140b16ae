//! `native-indexed`: the same policy set compiled into the best hand-indexed configuration
//! Envoy's RBAC filters accept, so the module is compared not only with what istiod generates
//! (a linear list of policies) but with the best native configuration anyone could write.
//!
//! Envoy's RBAC filters (HTTP and network) also take the unified matcher API
//! (`matcher`: `xds.type.matcher.v3.Matcher`, actions `envoy.config.rbac.v3.Action`). The
//! generator builds, from the same [`PolicySet`] the other forms come from:
//!
//! 1. an `exact_match_map` on the peer certificate's URI SAN (`UriSanInput`) keyed by every
//!    exact principal (`spiffe://…`); a key's value is the action itself when nothing else
//!    constrains the rule, else a `matcher_list` of what remains of each rule naming it
//!    (methods, paths, ports, `when`, `ipBlocks`, as predicates on their inputs); a source
//!    with both principals and namespaces is resolved here at build time (the key is the
//!    whole principal);
//! 2. in its `on_no_match`, a `prefix_match_map` on the URI SAN for principal prefixes
//!    (`…/sa/batch-*`);
//! 3. then a `prefix_match_map` for namespaces, keyed `spiffe://<trust domain>/ns/<ns>/`.
//!    Istio matches a namespace on any trust domain (istiod writes the regex `.*/ns/NS/.*`);
//!    keying by the mesh's one trust domain is what someone writing the configuration by
//!    hand for this mesh would do, and is equal for every certificate of that trust domain
//!    (all the benchmark's traffic);
//! 4. then, linearly (`matcher_list`), whatever cannot be indexed (suffix or presence
//!    principals, sources without an identity, prefix keys that are prefixes of other keys);
//! 5. finally the set's default: DENY for an ALLOW set, ALLOW for a DENY set.
//!
//! Exact keys whose rules leave the same conditions (addresses, ports) for many keys get a
//! level of their own that tests those conditions once, then looks the key up ([`hoist`]).
//!
//! Every level falls through to the next when the entry it found does not match (Envoy does
//! so: a nested matcher that does not match makes the tree try its `on_no_match`), and every
//! level's actions are the set's one action, so the order of the levels does not change a
//! decision. Istio's semantics for a mix of DENY and ALLOW policies (any DENY match denies;
//! else any ALLOW match allows; else deny when ALLOW policies exist) would be two such
//! filters in a chain, the DENY one first, as istiod writes two RBAC filters; every benchmark
//! set has one action, so one filter is enough.
//!
//! The index is built as a small tree ([`Matcher`]) that [`Matcher::decide`] evaluates the way
//! Envoy does (the generator's tests compare it with the reference model on every sample,
//! without Envoy) and [`Matcher::envoy`] renders as Envoy's JSON (the benchmark replays every
//! sample through Envoy with it, as for the other variants).

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::model::{
    regex_quote, Action, CidrBlock, Condition, Operation, PolicySet, Rule, Source, Traffic,
    ValuePattern, SPIFFE_PREFIX,
};

/// The trust domain the namespace keys are written for (the benchmark's certificates').
pub const TRUST_DOMAIN: &str = "cluster.local";

/// What a predicate or a tree reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The peer certificate's URI SAN (`envoy.matching.inputs.uri_san`).
    UriSan,
    /// A request header (`:method`, `:path`, `x-tenant`).
    Header(String),
    DestinationPort,
    DestinationIp,
    /// The downstream connection's remote address (RBAC's `direct_remote_ip`).
    DirectSourceIp,
}

/// What a predicate tests its input's value against.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    Exact(String),
    Prefix(String),
    /// The path without its query string (RBAC's `url_path`), tested on `:path`.
    UrlPath(ValuePattern),
    /// Istio's namespace of a principal: `.*/ns/NS/.*` on the URI SAN.
    Namespace(String),
    /// A header value as Istio matches it.
    Value(ValuePattern),
    Cidrs(Vec<CidrBlock>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pred {
    Single(Input, Test),
    And(Vec<Pred>),
    Or(Vec<Pred>),
}

/// What a match leads to: the RBAC action (named after the rule, as istiod names policies), or
/// a nested matcher.
#[derive(Clone, Debug, PartialEq)]
pub enum OnMatch {
    Action { name: String, allow: bool },
    Matcher(Box<Matcher>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Exact(Input, BTreeMap<String, OnMatch>),
    Prefix(Input, BTreeMap<String, OnMatch>),
    List(Vec<(Pred, OnMatch)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Matcher {
    pub kind: Kind,
    pub on_no_match: Option<Box<OnMatch>>,
}

fn url_path(p: &str) -> &str {
    p.split_once('?').map_or(p, |(p, _)| p)
}

/// The value of an input for a sample, as Envoy's input would give it.
fn value(input: &Input, t: &Traffic) -> Option<String> {
    match input {
        Input::UriSan => t.principal.as_ref().map(|p| format!("{SPIFFE_PREFIX}{p}")),
        Input::Header(h) if h == ":method" => t.method.clone(),
        Input::Header(h) if h == ":path" => t.path.clone(),
        Input::Header(h) => {
            let v: Vec<&str> = t
                .headers
                .iter()
                .filter(|(n, _)| n == h)
                .map(|(_, v)| v.as_str())
                .collect();
            (!v.is_empty()).then(|| v.join(","))
        }
        Input::DestinationPort => Some(t.destination_port.to_string()),
        Input::DestinationIp => Some(t.destination_ip.clone()),
        Input::DirectSourceIp => Some(t.source_ip.clone()),
    }
}

impl Test {
    fn matches(&self, v: &str) -> bool {
        match self {
            Test::Exact(x) => v == x,
            Test::Prefix(x) => v.starts_with(x.as_str()),
            Test::UrlPath(m) => m.matches(url_path(v)),
            Test::Namespace(ns) => v.contains(&format!("/ns/{ns}/")),
            Test::Value(m) => m.matches(v),
            Test::Cidrs(c) => v
                .parse()
                .is_ok_and(|ip| c.iter().any(|c: &CidrBlock| c.contains(ip))),
        }
    }
}

impl Pred {
    pub fn matches(&self, t: &Traffic) -> bool {
        match self {
            Pred::Single(i, test) => value(i, t).is_some_and(|v| test.matches(&v)),
            Pred::And(v) => v.iter().all(|p| p.matches(t)),
            Pred::Or(v) => v.iter().any(|p| p.matches(t)),
        }
    }
}

impl OnMatch {
    fn decide(&self, t: &Traffic) -> Option<(&str, bool)> {
        match self {
            OnMatch::Action { name, allow } => Some((name, *allow)),
            OnMatch::Matcher(m) => m.decide(t),
        }
    }
}

impl Matcher {
    /// The action Envoy would take for a sample: the first match, falling through to
    /// `on_no_match` when a found entry's nested matcher does not match. The action's name
    /// and whether it allows.
    pub fn decide(&self, t: &Traffic) -> Option<(&str, bool)> {
        let found = match &self.kind {
            Kind::Exact(i, map) => value(i, t)
                .and_then(|v| map.get(&v))
                .and_then(|m| m.decide(t)),
            // Keys never nest (see `index`): at most one prefix matches.
            Kind::Prefix(i, map) => value(i, t).and_then(|v| {
                map.iter()
                    .filter(|(k, _)| v.starts_with(k.as_str()))
                    .max_by_key(|(k, _)| k.len())
                    .and_then(|(_, m)| m.decide(t))
            }),
            Kind::List(list) => list
                .iter()
                .filter(|(p, _)| p.matches(t))
                .find_map(|(_, m)| m.decide(t)),
        };
        found.or_else(|| self.on_no_match.as_ref().and_then(|m| m.decide(t)))
    }

    /// Entries (keys and list items) in this matcher and the ones it falls through to.
    pub fn levels(&self) -> Vec<(&'static str, usize)> {
        let mut out = vec![match &self.kind {
            Kind::Exact(_, m) => ("exact", m.len()),
            Kind::Prefix(_, m) => ("prefix", m.len()),
            Kind::List(l) => match l.as_slice() {
                [(_, OnMatch::Matcher(m))] => match &m.kind {
                    Kind::Exact(_, map) => ("condition, then exact", map.len()),
                    _ => ("list", 1),
                },
                _ => ("list", l.len()),
            },
        }];
        if let Some(OnMatch::Matcher(m)) = self.on_no_match.as_deref() {
            out.extend(m.levels());
        }
        out
    }

    /// Envoy's JSON (`xds.type.matcher.v3.Matcher`).
    pub fn envoy(&self) -> Value {
        let mut m = match &self.kind {
            Kind::Exact(i, map) => json!({ "matcher_tree": {
                "input": input_json(i),
                "exact_match_map": { "map": map_json(map) },
            }}),
            Kind::Prefix(i, map) => json!({ "matcher_tree": {
                "input": input_json(i),
                "prefix_match_map": { "map": map_json(map) },
            }}),
            Kind::List(list) => json!({ "matcher_list": { "matchers": list
                .iter()
                .map(|(p, m)| json!({ "predicate": pred_json(p), "on_match": on_match_json(m) }))
                .collect::<Vec<_>>() } }),
        };
        if let Some(n) = &self.on_no_match {
            m["on_no_match"] = on_match_json(n);
        }
        m
    }
}

fn map_json(map: &BTreeMap<String, OnMatch>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, m)| (k.clone(), on_match_json(m)))
            .collect(),
    )
}

fn on_match_json(m: &OnMatch) -> Value {
    match m {
        OnMatch::Action { name, allow } => json!({ "action": {
            "name": "rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.rbac.v3.Action",
                "name": name,
                "action": if *allow { "ALLOW" } else { "DENY" },
            },
        }}),
        OnMatch::Matcher(m) => json!({ "matcher": m.envoy() }),
    }
}

fn input_json(i: &Input) -> Value {
    let (name, config) = match i {
        Input::UriSan => (
            "envoy.matching.inputs.uri_san",
            json!({ "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.ssl.v3.UriSanInput" }),
        ),
        Input::Header(h) => (
            "envoy.matching.inputs.request_headers",
            json!({ "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": h }),
        ),
        Input::DestinationPort => (
            "envoy.matching.inputs.destination_port",
            json!({ "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput" }),
        ),
        Input::DestinationIp => (
            "envoy.matching.inputs.destination_ip",
            json!({ "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DestinationIPInput" }),
        ),
        Input::DirectSourceIp => (
            "envoy.matching.inputs.direct_source_ip",
            json!({ "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.DirectSourceIPInput" }),
        ),
    };
    json!({ "name": name, "typed_config": config })
}

fn regex(r: String) -> Value {
    json!({ "safe_regex": { "google_re2": {}, "regex": r } })
}

/// `xds.type.matcher.v3.StringMatcher` for a value test.
fn string_json(t: &Test) -> Value {
    match t {
        Test::Exact(v) => json!({ "exact": v }),
        Test::Prefix(v) => json!({ "prefix": v }),
        // The query string follows the path: a prefix of the path is a prefix of `:path`
        // (paths here contain no `?`); exact and suffix must allow for a query.
        Test::UrlPath(ValuePattern::Exact(v)) => regex(format!("{}(\\?.*)?", regex_quote(v))),
        Test::UrlPath(ValuePattern::Prefix(v)) if !v.contains('?') => json!({ "prefix": v }),
        Test::UrlPath(ValuePattern::Prefix(v)) => regex(format!("{}[^?]*(\\?.*)?", regex_quote(v))),
        Test::UrlPath(ValuePattern::Suffix(v)) => regex(format!("[^?]*{}(\\?.*)?", regex_quote(v))),
        Test::UrlPath(ValuePattern::Presence) => regex("[^?]+(\\?.*)?".into()),
        Test::Namespace(ns) => regex(format!(".*/ns/{}/.*", regex_quote(ns))),
        Test::Value(ValuePattern::Exact(v)) => json!({ "exact": v }),
        Test::Value(ValuePattern::Prefix(v)) => json!({ "prefix": v }),
        Test::Value(ValuePattern::Suffix(v)) => json!({ "suffix": v }),
        Test::Value(ValuePattern::Presence) => regex(".+".into()),
        Test::Cidrs(_) => json!({}),
    }
}

fn pred_json(p: &Pred) -> Value {
    match p {
        Pred::Single(i, Test::Cidrs(cidrs)) => json!({ "single_predicate": {
            "input": input_json(i),
            "custom_match": {
                "name": "envoy.matching.matchers.ip",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.matching.input_matchers.ip.v3.Ip",
                    "cidr_ranges": cidrs
                        .iter()
                        .map(|c| json!({ "address_prefix": c.addr.to_string(), "prefix_len": c.len }))
                        .collect::<Vec<_>>(),
                    "stat_prefix": "bench_ip",
                },
            },
        }}),
        Pred::Single(i, t) => json!({ "single_predicate": {
            "input": input_json(i),
            "value_match": string_json(t),
        }}),
        Pred::And(v) => {
            json!({ "and_matcher": { "predicate": v.iter().map(pred_json).collect::<Vec<_>>() } })
        }
        Pred::Or(v) => {
            json!({ "or_matcher": { "predicate": v.iter().map(pred_json).collect::<Vec<_>>() } })
        }
    }
}

/// `And` of what constrains (None: nothing does). Envoy's `and_matcher`/`or_matcher` need
/// two or more predicates, so one is used as is.
fn and(preds: Vec<Pred>) -> Option<Pred> {
    let mut flat = Vec::new();
    for p in preds {
        match p {
            Pred::And(v) => flat.extend(v),
            p => flat.push(p),
        }
    }
    match flat.len() {
        0 => None,
        1 => flat.pop(),
        _ => Some(Pred::And(flat)),
    }
}

fn or(mut preds: Vec<Pred>) -> Pred {
    if preds.len() == 1 {
        if let Some(p) = preds.pop() {
            return p;
        }
    }
    Pred::Or(preds)
}

fn operation_pred(o: &Operation) -> Option<Pred> {
    let mut v = Vec::new();
    if !o.methods.is_empty() {
        v.push(or(o
            .methods
            .iter()
            .map(|m| Pred::Single(Input::Header(":method".into()), Test::Exact(m.clone())))
            .collect()));
    }
    if !o.paths.is_empty() {
        v.push(or(o
            .paths
            .iter()
            .map(|p| Pred::Single(Input::Header(":path".into()), Test::UrlPath(p.clone())))
            .collect()));
    }
    if !o.ports.is_empty() {
        v.push(or(o
            .ports
            .iter()
            .map(|p| Pred::Single(Input::DestinationPort, Test::Exact(p.to_string())))
            .collect()));
    }
    and(v)
}

/// What of a rule does not depend on its source: `to` (any operation) and `when` (all).
fn rest_of_rule(r: &Rule) -> Option<Pred> {
    let mut v = Vec::new();
    if !r.to.is_empty() {
        let ops: Vec<Option<Pred>> = r.to.iter().map(operation_pred).collect();
        // An operation without constraints matches everything: the `to` is no constraint.
        if ops.iter().all(Option::is_some) {
            v.push(or(ops.into_iter().flatten().collect()));
        }
    }
    for c in &r.when {
        v.push(match c {
            Condition::Header { name, values } => or(values
                .iter()
                .map(|m| Pred::Single(Input::Header(name.clone()), Test::Value(m.clone())))
                .collect()),
            Condition::DestinationIp(cidrs) => {
                Pred::Single(Input::DestinationIp, Test::Cidrs(cidrs.clone()))
            }
        });
    }
    and(v)
}

fn ip_blocks(s: &Source) -> Option<Pred> {
    (!s.ip_blocks.is_empty())
        .then(|| Pred::Single(Input::DirectSourceIp, Test::Cidrs(s.ip_blocks.clone())))
}

/// Istio's namespace of a principal (`.*/ns/NS/.*`), checked when the principal is known.
fn in_namespaces(principal: &str, namespaces: &[String]) -> bool {
    namespaces
        .iter()
        .any(|ns| format!("{SPIFFE_PREFIX}{principal}").contains(&format!("/ns/{ns}/")))
}

fn namespaces_pred(s: &Source) -> Option<Pred> {
    (!s.namespaces.is_empty()).then(|| {
        or(s.namespaces
            .iter()
            .map(|ns| Pred::Single(Input::UriSan, Test::Namespace(ns.clone())))
            .collect())
    })
}

/// Rules under one key: the action when one of them needs nothing more, else a list.
fn entry(rules: Vec<(Option<Pred>, String)>, allow: bool) -> OnMatch {
    if let Some((_, name)) = rules.iter().find(|(p, _)| p.is_none()) {
        return OnMatch::Action {
            name: name.clone(),
            allow,
        };
    }
    OnMatch::Matcher(Box::new(Matcher {
        kind: Kind::List(
            rules
                .into_iter()
                .filter_map(|(p, name)| p.map(|p| (p, OnMatch::Action { name, allow })))
                .collect(),
        ),
        on_no_match: None,
    }))
}

/// Per key, the rules naming it: what each still needs (`None`: nothing) and its name.
type Keyed = BTreeMap<String, Vec<(Option<Pred>, String)>>;

/// Keys of one rule whose remaining conditions are the same for at least this many keys are
/// tested once for the group instead of once per key.
const HOIST_MIN: usize = 16;

/// Factors out conditions that many keys share: the keys of one rule with the same remaining
/// conditions `P` form a level of their own, "`P`, then a map of the keys to their actions".
/// Equal decisions (a key's rule matches iff `P` holds and the key is found), a fraction of
/// the configuration when `P` is common (ztunnel's worst case: every rule has the same
/// addresses and port, so 300,000 keys would otherwise each carry a copy of them).
fn hoist(exact: Keyed, allow: bool) -> (Keyed, Vec<Kind>) {
    let mut groups: BTreeMap<String, (Pred, Vec<(String, String)>)> = BTreeMap::new();
    for (key, rules) in &exact {
        if let [(Some(p), name)] = rules.as_slice() {
            groups
                .entry(pred_json(p).to_string())
                .or_insert_with(|| (p.clone(), Vec::new()))
                .1
                .push((key.clone(), name.clone()));
        }
    }
    let mut rest = exact;
    let mut levels = Vec::new();
    for (_, (pred, keys)) in groups {
        if keys.len() < HOIST_MIN {
            continue;
        }
        let mut map = BTreeMap::new();
        for (key, name) in keys {
            rest.remove(&key);
            map.insert(key, OnMatch::Action { name, allow });
        }
        let inner = Matcher {
            kind: Kind::Exact(Input::UriSan, map),
            on_no_match: None,
        };
        levels.push(Kind::List(vec![(pred, OnMatch::Matcher(Box::new(inner)))]));
    }
    (rest, levels)
}

/// The hand-indexed matcher for a policy set (see the module documentation).
pub fn index(set: &PolicySet, trust_domain: &str) -> Matcher {
    let allow = set.action == Action::Allow;
    let mut exact: Keyed = BTreeMap::new();
    let mut prefix: Keyed = BTreeMap::new();
    let mut namespace: Keyed = BTreeMap::new();
    let mut linear: Vec<(Pred, String)> = Vec::new();
    let mut always: Option<String> = None;
    let mut rules: Vec<(String, &Rule)> = set
        .policies
        .iter()
        .flat_map(|p| {
            p.rules.iter().enumerate().map(move |(i, r)| {
                (
                    format!("ns[{}]-policy[{}]-rule[{i}]", p.namespace, p.name),
                    r,
                )
            })
        })
        .collect();
    // Envoy's order (by name), so that the first of several matching rules is the one native
    // RBAC would name.
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, r) in rules {
        let rest = rest_of_rule(r);
        let with = |extra: Vec<Option<Pred>>| {
            and(extra.into_iter().flatten().chain(rest.clone()).collect())
        };
        let mut add_linear = |p: Option<Pred>, name: &str| match p {
            Some(p) => linear.push((p, name.to_string())),
            None => {
                always.get_or_insert_with(|| name.to_string());
            }
        };
        if r.from.is_empty() {
            add_linear(rest.clone(), &name);
            continue;
        }
        for s in &r.from {
            if s.principals.is_empty() && s.namespaces.is_empty() {
                add_linear(with(vec![ip_blocks(s)]), &name);
                continue;
            }
            if s.principals.is_empty() {
                for ns in &s.namespaces {
                    let key = format!("{SPIFFE_PREFIX}{trust_domain}/ns/{ns}/");
                    namespace
                        .entry(key)
                        .or_default()
                        .push((with(vec![ip_blocks(s)]), name.clone()));
                }
                continue;
            }
            for m in &s.principals {
                match m {
                    ValuePattern::Exact(p) => {
                        // The key is the whole principal: its namespace is known now.
                        if s.namespaces.is_empty() || in_namespaces(p, &s.namespaces) {
                            exact
                                .entry(format!("{SPIFFE_PREFIX}{p}"))
                                .or_default()
                                .push((with(vec![ip_blocks(s)]), name.clone()));
                        }
                    }
                    ValuePattern::Prefix(p) => prefix
                        .entry(format!("{SPIFFE_PREFIX}{p}"))
                        .or_default()
                        .push((with(vec![namespaces_pred(s), ip_blocks(s)]), name.clone())),
                    ValuePattern::Suffix(_) | ValuePattern::Presence => {
                        let principal = Pred::Single(
                            Input::UriSan,
                            Test::Value(match m {
                                ValuePattern::Suffix(v) => ValuePattern::Suffix(v.clone()),
                                _ => ValuePattern::Presence,
                            }),
                        );
                        add_linear(
                            with(vec![Some(principal), namespaces_pred(s), ip_blocks(s)]),
                            &name,
                        );
                    }
                }
            }
        }
    }
    // Prefix keys that are prefixes of other keys go to the list, so that at most one key of
    // a tree matches a principal (what Envoy does when the longest prefix's entry does not
    // match is then irrelevant).
    for map in [&mut prefix, &mut namespace] {
        let keys: HashSet<String> = map.keys().cloned().collect();
        let nested: Vec<String> = map
            .keys()
            .filter(|k| {
                keys.iter()
                    .any(|other| other.len() > k.len() && other.starts_with(k.as_str()))
            })
            .cloned()
            .collect();
        for k in nested {
            for (p, name) in map.remove(&k).unwrap_or_default() {
                let key = Pred::Single(Input::UriSan, Test::Prefix(k.clone()));
                let pred = and(std::iter::once(key.clone()).chain(p).collect());
                linear.push((pred.unwrap_or(key), name));
            }
        }
    }
    let default = OnMatch::Action {
        name: if allow {
            "default-deny"
        } else {
            "default-allow"
        }
        .into(),
        allow: !allow,
    };
    let mut levels: Vec<Kind> = Vec::new();
    let to_map = |m: Keyed| -> BTreeMap<String, OnMatch> {
        m.into_iter().map(|(k, v)| (k, entry(v, allow))).collect()
    };
    let (exact, hoisted) = hoist(exact, allow);
    if !exact.is_empty() {
        levels.push(Kind::Exact(Input::UriSan, to_map(exact)));
    }
    levels.extend(hoisted);
    if !prefix.is_empty() {
        levels.push(Kind::Prefix(Input::UriSan, to_map(prefix)));
    }
    if !namespace.is_empty() {
        levels.push(Kind::Prefix(Input::UriSan, to_map(namespace)));
    }
    if !linear.is_empty() {
        levels.push(Kind::List(
            linear
                .into_iter()
                .map(|(p, name)| (p, OnMatch::Action { name, allow }))
                .collect(),
        ));
    }
    // A rule that matches everything decides everything.
    let last = match always {
        Some(name) => OnMatch::Action { name, allow },
        None => default,
    };
    let mut next = last;
    for kind in levels.into_iter().rev() {
        next = OnMatch::Matcher(Box::new(Matcher {
            kind,
            on_no_match: Some(Box::new(next)),
        }));
    }
    match next {
        OnMatch::Matcher(m) => *m,
        // Nothing to index: a list that never matches in front of the decision.
        action => Matcher {
            kind: Kind::List(Vec::new()),
            on_no_match: Some(Box::new(action)),
        },
    }
}

/// The RBAC filter's `typed_config` with the indexed matcher instead of `rules` (HTTP or
/// network, as [`PolicySet::envoy_rbac`]).
pub fn envoy_rbac_indexed(set: &PolicySet) -> Value {
    let matcher = index(set, TRUST_DOMAIN).envoy();
    if set.http {
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "matcher": matcher,
        })
    } else {
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
            "stat_prefix": "tcp.",
            "matcher": matcher,
        })
    }
}
