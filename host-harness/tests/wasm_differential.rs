//! Differential property test: random AuthorizationPolicies (from a small vocabulary of
//! principals, namespaces, IP blocks, ports, methods, paths, hosts, headers, claims, actions,
//! scopes and dry-run) and random connections and requests; the module in the Wasmtime host
//! and the native engine must decide the same (verdict, deciding policy, AUDIT matches,
//! dry-run result), and a configuration the engine rejects must be rejected by
//! `on_configure`, with the engine's message in the module's log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_plugin::engine::{Claim, Engine, OwnedAttributes, OwnedHttp, Traffic};
use authz_wasm_host::{shared_module, HostError, WasmDryRun};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    Ztunnel,
    WaypointHttp,
    WaypointNetwork,
}

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/default/sa/curl",
    "cluster.local/ns/default/sa/gateway",
    "cluster.local/ns/other/sa/curl",
    "cluster.local/ns/default/*",
    "*/sa/curl",
    "*",
];
const NAMESPACES: &[&str] = &["default", "other", "istio-system", "oth*", "*"];
const IP_BLOCKS: &[&str] = &["10.1.0.0/16", "10.2.0.7", "fd00::/8"];
const PORTS: &[&str] = &["9080", "8080", "9999"];
const METHODS: &[&str] = &["GET", "POST", "DELETE"];
const PATHS: &[&str] = &["/api/*", "/admin", "*.js", "/productpage"];
const HOSTS: &[&str] = &[
    "productpage",
    "productpage.default.svc.cluster.local",
    "*.example.com",
];
const REQUEST_PRINCIPALS: &[&str] = &["https://issuer.example/alice", "*"];
const SERVICE_ACCOUNTS: &[&str] = &["curl", "other/curl"];

fn strings(vocab: &'static [&'static str]) -> impl Strategy<Value = Value> {
    subsequence(vocab.to_vec(), 1..=2).prop_map(|v| json!(v))
}

fn source_field() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        4 => strings(PRINCIPALS).prop_map(|v| ("principals".to_string(), v)),
        2 => strings(PRINCIPALS).prop_map(|v| ("notPrincipals".to_string(), v)),
        3 => strings(NAMESPACES).prop_map(|v| ("namespaces".to_string(), v)),
        1 => strings(NAMESPACES).prop_map(|v| ("notNamespaces".to_string(), v)),
        2 => strings(IP_BLOCKS).prop_map(|v| ("ipBlocks".to_string(), v)),
        1 => strings(IP_BLOCKS).prop_map(|v| ("notIpBlocks".to_string(), v)),
        2 => strings(REQUEST_PRINCIPALS).prop_map(|v| ("requestPrincipals".to_string(), v)),
        // Cannot be combined with principals or namespaces: now and then a rejection.
        1 => strings(SERVICE_ACCOUNTS).prop_map(|v| ("serviceAccounts".to_string(), v)),
    ]
}

fn operation_field() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        strings(PORTS).prop_map(|v| ("ports".to_string(), v)),
        strings(PORTS).prop_map(|v| ("notPorts".to_string(), v)),
        strings(METHODS).prop_map(|v| ("methods".to_string(), v)),
        strings(METHODS).prop_map(|v| ("notMethods".to_string(), v)),
        strings(PATHS).prop_map(|v| ("paths".to_string(), v)),
        strings(PATHS).prop_map(|v| ("notPaths".to_string(), v)),
        strings(HOSTS).prop_map(|v| ("hosts".to_string(), v)),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    let keyed: Vec<(&'static str, &'static [&'static str])> = vec![
        ("source.ip", &["10.1.0.0/16", "10.2.0.7"]),
        ("remote.ip", &["10.1.0.0/16"]),
        ("destination.port", &["9080", "8080"]),
        ("destination.ip", &["10.0.0.10", "10.96.0.10"]),
        ("source.namespace", &["default", "other"]),
        ("source.principal", &["cluster.local/ns/default/sa/curl"]),
        ("connection.sni", &["productpage.default.svc.cluster.local"]),
        ("request.headers[x-token]", &["a", "a,b", "b*"]),
        ("request.auth.claims[groups]", &["admins", "dev"]),
        ("request.auth.principal", &["https://issuer.example/alice"]),
    ];
    (select(keyed), any::<bool>(), any::<u8>()).prop_map(|((key, values), negate, pick)| {
        let value = values[usize::from(pick) % values.len()];
        let list = if negate { "notValues" } else { "values" };
        json!({"key": key, list: [value]})
    })
}

fn object(fields: Vec<(String, Value)>) -> Value {
    Value::Object(fields.into_iter().collect::<Map<String, Value>>())
}

fn rule() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(prop::collection::vec(
            prop::collection::vec(source_field(), 1..=2),
            1..=2,
        )),
        proptest::option::of(prop::collection::vec(
            prop::collection::vec(operation_field(), 1..=2),
            1..=2,
        )),
        proptest::option::of(prop::collection::vec(condition(), 1..=2)),
    )
        .prop_map(|(from, to, when)| {
            let mut r = Map::new();
            if let Some(from) = from {
                r.insert(
                    "from".into(),
                    json!(from
                        .into_iter()
                        .map(|s| json!({"source": object(s)}))
                        .collect::<Vec<_>>()),
                );
            }
            if let Some(to) = to {
                r.insert(
                    "to".into(),
                    json!(to
                        .into_iter()
                        .map(|o| json!({"operation": object(o)}))
                        .collect::<Vec<_>>()),
                );
            }
            if let Some(when) = when {
                r.insert("when".into(), json!(when));
            }
            Value::Object(r)
        })
}

/// Ways to break a policy, each something the engine must reject.
fn breakage() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![8 => Just(None), 1 => (0u8..7).prop_map(Some)]
}

fn break_policy(policy: &mut Value, how: u8) {
    let spec = &mut policy["spec"];
    match how {
        0 => spec["rules"] = json!([{"from": [{"source": {"principals": [""]}}]}]),
        1 => spec["rules"] = json!([{"to": [{"operation": {"ports": ["http"]}}]}]),
        2 => spec["rules"] = json!([{"from": [{"source": {"ipBlocks": ["300.1.2.3"]}}]}]),
        3 => spec["rules"] = json!([{"fromm": []}]),
        4 => spec["action"] = json!("ALLOWED"),
        5 => spec["rules"] = json!([{"when": [{"key": "request.unknown", "values": ["x"]}]}]),
        _ => spec["rules"] = json!([{"to": [{"operation": {"methods": [""]}}]}]),
    }
}

fn policy(point: Point) -> impl Strategy<Value = Value> {
    let scopes: Vec<Value> = match point {
        Point::Ztunnel => vec![
            json!({}),
            json!({"selector": {"matchLabels": {"app": "productpage"}}}),
            json!({"selector": {"matchLabels": {"app": "productpage"}}}),
            json!({"selector": {"matchLabels": {"app": "other"}}}),
        ],
        Point::WaypointHttp | Point::WaypointNetwork => vec![
            json!({"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}]}),
            json!({"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}]}),
            json!({"targetRefs": [{"kind": "Service", "group": "", "name": "reviews"}]}),
            json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]}),
            json!({"targetRefs": [{"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio-waypoint"}]}),
            json!({}),
        ],
    };
    // Weighted towards policies that apply to the traffic and have rules, so that most
    // scenarios are decided by a policy rather than by default.
    let namespace =
        prop_oneof![4 => Just("default"), 1 => Just("other"), 1 => Just("istio-system")];
    let action =
        prop_oneof![5 => Just("ALLOW"), 3 => Just("DENY"), 1 => Just("AUDIT"), 1 => Just("CUSTOM")];
    let rules =
        prop_oneof![1 => Just(None), 9 => prop::collection::vec(rule(), 1..=3).prop_map(Some)];
    (
        select(scopes),
        namespace,
        action,
        rules,
        prop::bool::weighted(0.2),
        breakage(),
    )
        .prop_map(|(scope, namespace, action, rules, dry_run, broken)| {
            let mut spec = scope.as_object().cloned().unwrap_or_default();
            spec.insert("action".into(), json!(action));
            if action == "CUSTOM" {
                spec.insert("provider".into(), json!({"name": "ext-authz"}));
            }
            if let Some(rules) = rules {
                spec.insert("rules".into(), json!(rules));
            }
            let mut metadata = json!({"name": "p", "namespace": namespace});
            if dry_run {
                metadata["annotations"] = json!({"istio.io/dry-run": "true"});
            }
            let mut p = json!({
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": metadata,
                "spec": Value::Object(spec),
            });
            if let Some(how) = broken {
                break_policy(&mut p, how);
            }
            p
        })
}

fn config(point: Point, mut policies: Vec<Value>) -> Value {
    for (i, p) in policies.iter_mut().enumerate() {
        p["metadata"]["name"] = json!(format!("p{i}"));
    }
    match point {
        Point::Ztunnel => json!({
            "mode": "ztunnel",
            "trustDomainAliases": ["alias.local"],
            "workloads": [{"name": "productpage-v1", "namespace": "default", "serviceAccount": "productpage",
                           "labels": {"app": "productpage"}, "addresses": ["10.0.0.10", "fd00::10"]}],
            "policies": policies,
        }),
        Point::WaypointHttp | Point::WaypointNetwork => json!({
            "mode": "waypoint",
            "filter": if point == Point::WaypointHttp { "http" } else { "network" },
            "trustDomainAliases": ["alias.local"],
            "waypoint": {"name": "waypoint", "namespace": "default"},
            "services": [
                {"name": "productpage", "namespace": "default", "hosts": ["productpage.default.svc.cluster.local"],
                 "addresses": ["10.96.0.10"], "ports": [9080]},
                {"name": "reviews", "namespace": "default", "addresses": ["10.96.0.11"]},
            ],
            "policies": policies,
        }),
    }
}

fn claims(groups: &[&str]) -> Claim {
    Claim::Object(vec![
        ("iss".into(), Claim::String("https://issuer.example".into())),
        ("sub".into(), Claim::String("alice".into())),
        (
            "groups".into(),
            Claim::List(groups.iter().map(|g| Claim::String((*g).into())).collect()),
        ),
        ("exp".into(), Claim::Other),
    ])
}

fn traffic(point: Point) -> impl Strategy<Value = OwnedAttributes> {
    let principals = vec![
        Some("spiffe://cluster.local/ns/default/sa/curl"),
        Some("spiffe://cluster.local/ns/default/sa/curl"),
        Some("spiffe://cluster.local/ns/default/sa/gateway"),
        Some("spiffe://cluster.local/ns/other/sa/curl"),
        Some("spiffe://alias.local/ns/default/sa/curl"),
        Some("spiffe://evil.example/ns/default/sa/curl"),
        None,
    ];
    let destinations: Vec<Option<&'static str>> = match point {
        Point::Ztunnel => vec![
            Some("10.0.0.10"),
            Some("10.0.0.10"),
            Some("10.0.0.10"),
            Some("fd00::10"),
            Some("10.0.0.99"),
        ],
        _ => vec![
            Some("10.96.0.10"),
            Some("10.96.0.10"),
            Some("10.96.0.11"),
            Some("10.96.0.99"),
            None,
        ],
    };
    let http = point == Point::WaypointHttp;
    let headers = vec![
        ("x-token", "a"),
        ("x-token", "b"),
        ("x-other", "c"),
        ("X-Token", "c"),
    ];
    (
        select(principals),
        select(vec!["10.1.0.7", "10.2.0.7", "fd00::7"]),
        select(destinations),
        select(vec![9080u16, 8080, 9999]),
        select(vec![None, Some("productpage.default.svc.cluster.local")]),
        (
            select(METHODS.to_vec()),
            select(vec![
                "/api/v1",
                "/admin",
                "/x/app.js",
                "/productpage?x=1",
                "/ADMIN",
                "/api",
            ]),
            select(vec![
                "productpage:9080",
                "productpage.default.svc.cluster.local",
                "foo.example.com",
                "reviews",
            ]),
            subsequence(headers, 0..=3),
            select(vec![0u8, 1, 2]),
        ),
    )
        .prop_map(
            move |(principal, src, dst, port, sni, (method, path, host, headers, jwt))| {
                OwnedAttributes {
                    peer_principal: principal.map(str::to_string),
                    source_ip: src.parse().ok(),
                    remote_ip: None,
                    destination_ip: dst.and_then(|d| d.parse().ok()),
                    destination_port: Some(port),
                    sni: sni.map(str::to_string),
                    http: http.then(|| {
                        OwnedHttp::new(
                            method.as_bytes(),
                            path.as_bytes(),
                            host.as_bytes(),
                            headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                                .collect(),
                            match jwt {
                                1 => Some(claims(&["admins", "dev"])),
                                2 => Some(claims(&["dev"])),
                                _ => None,
                            },
                        )
                    }),
                }
            },
        )
}

fn scenario() -> impl Strategy<Value = (Point, Value, Vec<OwnedAttributes>)> {
    select(vec![
        Point::Ztunnel,
        Point::WaypointHttp,
        Point::WaypointNetwork,
    ])
    .prop_flat_map(|point| {
        (
            Just(point),
            prop::collection::vec(policy(point), 0..=4).prop_map(move |p| config(point, p)),
            prop::collection::vec(traffic(point), 1..=8),
        )
    })
}

fn check(point: Point, config: &Value, traffic: &[OwnedAttributes]) -> Result<(), TestCaseError> {
    let module = shared_module().map_err(TestCaseError::fail)?;
    let bytes = serde_json::to_vec(config).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let native = Engine::from_json(&bytes);
    let wasm = module.configure(&bytes);
    let (engine, mut wasm) = match (native, wasm) {
        (Err(e), Err(HostError::ConfigureRejected { logs, .. })) => {
            let message = e.to_string();
            prop_assert!(
                logs.iter()
                    .any(|(level, line)| *level == 4 && line.contains(&message)),
                "the module's rejection should carry the engine's {message:?}: {logs:?}"
            );
            return Ok(());
        }
        (Err(e), Err(other)) => {
            return Err(TestCaseError::fail(format!(
                "engine: {e}; module failed otherwise: {other}"
            )))
        }
        (Err(e), Ok(_)) => {
            return Err(TestCaseError::fail(format!(
                "the module accepted a configuration the engine rejects: {e}"
            )))
        }
        (Ok(_), Err(e)) => {
            return Err(TestCaseError::fail(format!(
                "the module rejected a valid configuration: {e}"
            )))
        }
        (Ok(engine), Ok(wasm)) => (engine, wasm),
    };
    let kind = if point == Point::WaypointHttp {
        Traffic::Request
    } else {
        Traffic::Connection
    };
    for attrs in traffic {
        let want = engine.decide(kind, attrs);
        let got = match kind {
            Traffic::Request => wasm.request(attrs),
            Traffic::Connection => wasm.connection(attrs),
        }
        .map_err(|e| TestCaseError::fail(format!("{attrs:?}: {e}")))?;
        let key = |id| {
            engine
                .policy(id)
                .map(|p| p.key().to_string())
                .unwrap_or_default()
        };
        prop_assert_eq!(
            got.verdict,
            want.verdict,
            "verdict for {:?}; logs {:?}",
            attrs,
            got.logs
        );
        prop_assert_eq!(
            got.policy.clone(),
            engine.deciding_policy(&want.reason).map(str::to_string),
            "deciding policy for {:?}; logs {:?}",
            attrs,
            got.logs
        );
        prop_assert_eq!(
            got.audit.clone(),
            want.audit.iter().map(|p| key(*p)).collect::<Vec<_>>(),
            "audit for {:?}",
            attrs
        );
        prop_assert_eq!(
            got.dry_run.clone(),
            want.dry_run.map(|d| WasmDryRun {
                verdict: d.verdict,
                policy: engine.deciding_policy(&d.reason).map(str::to_string),
            }),
            "dry run for {:?}",
            attrs
        );
    }
    prop_assert_eq!(wasm.live_streams(), 0);
    Ok(())
}

proptest! {
    // 64 cases keep CI quick; AUTHZ_PROPTEST_CASES=1000 for a deeper run (about 15 s).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("AUTHZ_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_module_decides_like_the_native_engine((point, config, traffic) in scenario()) {
        check(point, &config, &traffic)?;
    }
}
