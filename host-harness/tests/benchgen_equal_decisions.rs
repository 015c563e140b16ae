//! The benchmark generator, without Envoy: for N = 100 (and the seeds' N = 1) the native
//! engine's decisions on every sample equal the ones the generator's reference model records,
//! and the two forms of each policy set agree in size and names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_bench::check::native_check;
use authz_bench::gen::{seeds_waypoint_policy, Description, Generated, SetKind};

#[test]
fn native_engine_agrees_with_the_generator_at_100() {
    let g = Generated::new(&Description::new(100, 7));
    for kind in SetKind::ALL {
        let (n, bad) = native_check(&g, kind).unwrap();
        assert!(n >= 10, "{}: only {n} samples", kind.name());
        assert!(
            bad.is_empty(),
            "{}: {} of {n} samples disagree:\n{:#?}",
            kind.name(),
            bad.len(),
            bad
        );
        // Both decisions occur, and the load's two requests exist.
        let expects: Vec<&str> = g.samples_of(kind).map(|s| s.expect).collect();
        assert!(expects.contains(&"allow") && expects.contains(&"deny"));
        let allow = g.bench_sample(kind, "bench-allow").unwrap();
        let deny = g.bench_sample(kind, "bench-deny").unwrap();
        assert_eq!(allow.expect, "allow", "{}", kind.name());
        assert_eq!(deny.expect, "deny", "{}", kind.name());
    }
    // The load's allowed request is matched by the last policy only (a full scan for Envoy).
    let last = g.l7.policies.last().unwrap().key();
    assert_eq!(
        g.bench_sample(SetKind::L7, "bench-allow").unwrap().matching,
        vec![last]
    );
}

#[test]
fn the_same_description_gives_the_same_sets() {
    let a = Generated::new(&Description::new(30, 3));
    let b = Generated::new(&Description::new(30, 3));
    let c = Generated::new(&Description::new(30, 4));
    for kind in SetKind::ALL {
        assert_eq!(a.plugin_config(kind), b.plugin_config(kind));
        assert_eq!(a.set(kind).envoy_rbac(), b.set(kind).envoy_rbac());
    }
    assert_ne!(a.plugin_config(SetKind::L7), c.plugin_config(SetKind::L7));
}

#[test]
fn envoy_form_has_one_policy_per_rule_named_as_istiod_does() {
    let g = Generated::new(&Description::new(20, 1));
    for kind in SetKind::ALL {
        let set = g.set(kind);
        let rbac = set.envoy_rbac();
        let policies = rbac["rules"]["policies"].as_object().unwrap();
        assert_eq!(policies.len(), set.rule_count());
        let p = &set.policies[3];
        let name = format!("ns[{}]-policy[{}]-rule[0]", p.namespace, p.name);
        assert!(policies.contains_key(&name), "{name}");
        let action = if kind == SetKind::L4worst {
            "DENY"
        } else {
            "ALLOW"
        };
        assert_eq!(rbac["rules"]["action"], action);
    }
    assert_eq!(g.l4worst.policies[0].rules.len(), 10);
}

#[test]
fn one_policy_is_the_seeds_waypoint_policy() {
    let g = Generated::new(&Description::new(1, 1));
    let (n, bad) = native_check(&g, SetKind::L7).unwrap();
    assert!(bad.is_empty(), "{bad:#?} of {n}");
    let ours = seeds_waypoint_policy().resource();
    let file =
        authz_fixture::workspace::repo_root().join("policies/bookinfo/productpage-waypoint.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let theirs: serde_json::Value = serde_norway::from_str(&text).unwrap();
    assert_eq!(ours["metadata"], theirs["metadata"]);
    let mut spec = theirs["spec"].clone();
    if spec.get("action").is_none() {
        spec["action"] = "ALLOW".into();
    }
    assert_eq!(ours["spec"], spec);
    assert_eq!(g.l7.policies[0], seeds_waypoint_policy());
}

/// `native-indexed`: the hand-indexed matcher decides every sample as the reference model does
/// (evaluated as Envoy evaluates the unified matcher), at the seeds' N = 1 and at N = 100.
#[test]
fn indexed_matcher_agrees_with_the_generator() {
    use authz_bench::indexed::{index, TRUST_DOMAIN};
    for n in [1, 100] {
        let g = Generated::new(&Description::new(n, 7));
        for kind in SetKind::ALL {
            let m = index(g.set(kind), TRUST_DOMAIN);
            let mut checked = 0;
            for s in g.samples_of(kind) {
                let decided = m.decide(&s.traffic);
                let verdict = match decided {
                    Some((_, true)) => "allow",
                    Some((_, false)) => "deny",
                    None => "no decision",
                };
                assert_eq!(verdict, s.expect, "{} N={n}: {}", kind.name(), s.name);
                // A matching rule decided: one of the policies the sample matches.
                if let Some((name, _)) = decided.filter(|_| !s.matching.is_empty()) {
                    assert!(
                        s.matching.iter().any(|k| {
                            let (ns, p) = k.split_once('/').unwrap();
                            name.starts_with(&format!("ns[{ns}]-policy[{p}]-rule["))
                        }),
                        "{} N={n}: {} decided by {name}, matches {:?}",
                        kind.name(),
                        s.name,
                        s.matching
                    );
                }
                checked += 1;
            }
            assert!(checked >= 2, "{} N={n}: {checked} samples", kind.name());
        }
    }
}

/// At N = 100 every set's principals are indexed: the exact-principal map comes first and
/// holds most rules; the exact-only Layer 7 set needs nothing else.
#[test]
fn indexed_matcher_indexes_principals() {
    use authz_bench::indexed::{envoy_rbac_indexed, index, TRUST_DOMAIN};
    let g = Generated::new(&Description::new(100, 7));
    for kind in [SetKind::L7, SetKind::L7exact, SetKind::L4] {
        let levels = index(g.set(kind), TRUST_DOMAIN).levels();
        assert_eq!(levels[0].0, "exact", "{}: {levels:?}", kind.name());
        assert!(levels[0].1 >= 100, "{}: {levels:?}", kind.name());
        let rbac = envoy_rbac_indexed(g.set(kind));
        assert!(rbac.get("rules").is_none() && rbac.get("matcher").is_some());
        let tree = &rbac["matcher"]["matcher_tree"];
        assert_eq!(
            tree["input"]["name"],
            "envoy.matching.inputs.uri_san",
            "{}",
            kind.name()
        );
    }
    // ztunnel's worst case: every rule leaves the same addresses and port, tested once before
    // one map of all 100 × 10 × 3 principals.
    let worst = index(g.set(SetKind::L4worst), TRUST_DOMAIN).levels();
    assert_eq!(worst, vec![("condition, then exact", 3000)]);
    let rbac = envoy_rbac_indexed(g.set(SetKind::L4worst));
    let first = &rbac["matcher"]["matcher_list"]["matchers"][0];
    assert_eq!(
        first["on_match"]["matcher"]["matcher_tree"]["exact_match_map"]["map"]
            .as_object()
            .map(|m| m.len()),
        Some(3000)
    );
    let exact_only = index(g.set(SetKind::L7exact), TRUST_DOMAIN).levels();
    assert_eq!(exact_only.len(), 1, "{exact_only:?}");
    // Mixed sources: principal prefixes and namespaces in prefix maps, not in a list.
    let mixed = index(g.set(SetKind::L7), TRUST_DOMAIN).levels();
    assert!(
        mixed.iter().filter(|l| l.0 == "prefix").count() == 2,
        "{mixed:?}"
    );
    assert!(mixed.iter().all(|l| l.0 != "list"), "{mixed:?}");
}
