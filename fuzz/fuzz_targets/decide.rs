//! Decisions: an arbitrary valid configuration (policies drawn from a vocabulary that covers
//! every source, operation and condition field, with exact, prefix, suffix and presence
//! values and the awkward SPIFFE ids) and arbitrary request attributes. Checks:
//! * the indexed decision equals the decision by evaluating every rule (`decide_by_scan`);
//! * the reference procedure's cheap invariants hold (Istio's evaluation order,
//!   https://istio.io/latest/docs/concepts/security/#authorization-policy-precedence): the
//!   verdict agrees with its reason, a deciding rule belongs to a policy of the action its
//!   reason names and is not dry-run, "no ALLOW policies" is never claimed when one applies;
//! * `explain` reports the decision `decide` made.
#![no_main]

use arbitrary::Arbitrary;
use authz_plugin::engine::policy::Action;
use authz_plugin::engine::{Claim, Engine, OwnedAttributes, OwnedHttp, Reason, Traffic, Verdict};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const NS: &[&str] = &["default", "ns", "team-1", "istio-system"];
const STRINGS: &[&str] = &[
    "cluster.local/ns/default/sa/curl",
    "cluster.local/ns/ns/sa/x",
    "ns/ns/bad/sa/x",
    "cluster.local/ns/default/*",
    "*/sa/curl",
    "*",
    "default",
    "team-*",
    "*-1",
    "GET",
    "POST",
    "/admin",
    "/admin/*",
    "*.html",
    "/{*}/x",
    "/a/{**}",
    "issuer.example/alice",
    "issuer.example/*",
    "admin",
    "user",
    "a,b",
    "10.0.0.0/8",
    "10.0.0.5",
    "::ffff:10.0.0.5",
    "fd00::/8",
    "8080",
    "9090",
    "svc.default.svc.cluster.local",
    "*.example.com",
];
const SOURCE_FIELDS: &[&str] = &[
    "principals",
    "notPrincipals",
    "namespaces",
    "notNamespaces",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "requestPrincipals",
    "notRequestPrincipals",
];
const OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];
const CONDITION_KEYS: &[&str] = &[
    "request.headers[x-role]",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[groups]",
    "request.auth.claims[nested][role]",
    "destination.ip",
    "destination.port",
    "connection.sni",
];
const PEERS: &[&str] = &[
    "spiffe://cluster.local/ns/default/sa/curl",
    "spiffe://cluster.local/ns/ns/sa/x",
    "spiffe://ns/ns/bad/sa/x",
    "spiffe://cluster.local/ns/team-1/sa/x/ns/default/y",
    "spiffe://cluster.local/ns//sa/empty",
    "spiffe://other.domain/ns/default/sa/curl",
    "not-a-spiffe-id",
    "",
];

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list.get(i as usize % list.len()).copied().unwrap_or("")
}

#[derive(Arbitrary, Debug)]
struct Field {
    name: u8,
    values: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Rule {
    from: Vec<Vec<Field>>,
    to: Vec<Vec<Field>>,
    when: Vec<Field>,
}

#[derive(Arbitrary, Debug)]
struct Policy {
    action: u8,
    dry_run: bool,
    namespace: u8,
    rules: Option<Vec<Rule>>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    ztunnel: bool,
    policies: Vec<Policy>,
    peer: Option<u8>,
    source: u8,
    method: u8,
    path: u8,
    host: u8,
    port: u16,
    headers: Vec<(u8, Vec<u8>)>,
    jwt_groups: Option<Vec<u8>>,
    jwt_nested: Option<u8>,
    raw_path: Option<Vec<u8>>,
}

fn values(v: &[u8]) -> Value {
    Value::Array(v.iter().take(3).map(|i| json!(pick(STRINGS, *i))).collect())
}

fn entries(fields: &[Field], names: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .take(3)
        .map(|f| (pick(names, f.name).to_string(), values(&f.values)))
        .collect()
}

fn policy(i: usize, p: &Policy, ztunnel: bool) -> Value {
    let action = ["ALLOW", "DENY", "AUDIT", "CUSTOM"][p.action as usize % 4];
    let mut spec = Map::new();
    spec.insert("action".into(), json!(action));
    if action == "CUSTOM" {
        spec.insert("provider".into(), json!({"name": "ext-authz"}));
    }
    if let Some(rules) = &p.rules {
        let rules: Vec<Value> = rules
            .iter()
            .take(3)
            .map(|r| {
                let mut m = Map::new();
                let from: Vec<Value> = r
                    .from
                    .iter()
                    .take(2)
                    .map(|e| json!({"source": entries(e, SOURCE_FIELDS)}))
                    .collect();
                let to: Vec<Value> = r
                    .to
                    .iter()
                    .take(2)
                    .map(|e| json!({"operation": entries(e, OPERATION_FIELDS)}))
                    .collect();
                let when: Vec<Value> = r
                    .when
                    .iter()
                    .take(2)
                    .map(|f| json!({"key": pick(CONDITION_KEYS, f.name), "values": values(&f.values)}))
                    .collect();
                for (k, v) in [("from", from), ("to", to), ("when", when)] {
                    if !v.is_empty() {
                        m.insert(k.into(), Value::Array(v));
                    }
                }
                Value::Object(m)
            })
            .collect();
        spec.insert("rules".into(), Value::Array(rules));
    }
    if !ztunnel {
        spec.insert(
            "targetRefs".into(),
            json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]),
        );
    }
    let mut annotations = Map::new();
    if p.dry_run {
        annotations.insert("istio.io/dry-run".into(), json!("true"));
    }
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": format!("p{i}"), "namespace": pick(NS, p.namespace),
                        "annotations": annotations},
           "spec": spec})
}

fuzz_target!(|input: Input| {
    let policies: Vec<Value> = input
        .policies
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, p)| policy(i, p, input.ztunnel))
        .collect();
    let config = if input.ztunnel {
        json!({"mode": "ztunnel", "workloads": [{"name": "w", "namespace": "default"}], "policies": policies})
    } else {
        json!({"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"}, "policies": policies})
    };
    let Ok(bytes) = serde_json::to_vec(&config) else {
        return;
    };
    // Most random combinations are valid; those that are not are the parser's business.
    let Ok(engine) = Engine::from_json(&bytes) else {
        return;
    };

    let mut jwt = Map::new();
    if let Some(g) = &input.jwt_groups {
        jwt.insert("iss".into(), json!("issuer.example"));
        jwt.insert("sub".into(), json!("alice"));
        jwt.insert("groups".into(), values(g));
    }
    if let Some(n) = input.jwt_nested {
        jwt.insert("nested".into(), json!({"role": pick(STRINGS, n)}));
    }
    let http = OwnedHttp::new(
        pick(STRINGS, input.method).as_bytes(),
        input
            .raw_path
            .as_deref()
            .unwrap_or(pick(STRINGS, input.path).as_bytes()),
        pick(STRINGS, input.host).as_bytes(),
        input
            .headers
            .iter()
            .take(4)
            .map(|(n, v)| {
                (
                    pick(&["x-role", "X-Role", "host", ":path"], *n).to_string(),
                    v.clone(),
                )
            })
            .collect(),
        (!jwt.is_empty()).then(|| Claim::from_json(&Value::Object(jwt))),
    );
    let attrs = OwnedAttributes {
        peer_principal: input.peer.map(|p| pick(PEERS, p).to_string()),
        source_ip: pick(STRINGS, input.source).parse().ok(),
        destination_port: Some(input.port),
        http: (!input.ztunnel).then_some(http),
        ..Default::default()
    };
    let traffic = if input.ztunnel {
        Traffic::Connection
    } else {
        Traffic::Request
    };

    let decided = engine.decide(traffic, &attrs);
    assert_eq!(
        (decided.verdict, decided.reason.clone()),
        engine.decide_by_scan(traffic, &attrs),
        "index and full scan disagree"
    );
    let allowing = matches!(decided.reason, Reason::Allowed(_) | Reason::NoAllowPolicies);
    assert_eq!(
        decided.verdict == Verdict::Allow,
        allowing,
        "{:?}",
        decided.reason
    );
    let expected_action = match &decided.reason {
        Reason::Allowed(_) => Some(Action::Allow),
        Reason::Denied(_) => Some(Action::Deny),
        Reason::Custom(_) => Some(Action::Custom),
        _ => None,
    };
    if let (Some(action), Some(rule)) = (expected_action, decided.reason.rule()) {
        let p = engine
            .policy(rule.policy)
            .expect("a deciding rule names a policy");
        assert_eq!(
            p.action,
            action,
            "{:?} decided by {}",
            decided.reason,
            p.key()
        );
        assert!(!p.dry_run, "a dry-run policy decided: {}", p.key());
    }
    let explained = engine.explain(traffic, &attrs);
    assert_eq!(explained.decision.verdict, decided.verdict);
});
