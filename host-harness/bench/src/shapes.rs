//! Configuration shapes for the configure-time benchmark (`benches/configure.rs`) and the
//! scale tests: the ones that once made loading super-linear.
//!
//! * [`custom`]: N CUSTOM policies (each leaves a load note; de-duplicating notes was
//!   quadratic);
//! * [`allow`]: N ALLOW policies of distinct principals at a waypoint (the common shape);
//! * [`workloads`]: a ztunnel enforcing for W workloads, each selected by its own policy,
//!   under P namespace-wide policies (per-workload rule sets grow as W × P);
//! * [`nested_yaml`]: a fixture of N nested brackets (the YAML scanner is quadratic on
//!   nesting).

use serde_json::{json, Value};

fn policy(name: String, namespace: &str, spec: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

fn waypoint(policies: Vec<Value>) -> Value {
    json!({"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
           "services": [{"name": "productpage", "namespace": "default", "addresses": ["10.96.0.10"]}],
           "policies": policies})
}

/// N CUSTOM policies bound to the waypoint, each with its own path.
pub fn custom(n: usize) -> Value {
    waypoint(
        (0..n)
            .map(|i| {
                policy(
                    format!("ext-{i}"),
                    "default",
                    json!({"action": "CUSTOM", "provider": {"name": format!("authz-{}", i % 7)},
                           "targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}],
                           "rules": [{"to": [{"operation": {"paths": [format!("/ext/{i}/*")]}}]}]}),
                )
            })
            .collect(),
    )
}

/// N ALLOW policies bound to one service, each allowing one principal GET.
pub fn allow(n: usize) -> Value {
    waypoint(
        (0..n)
            .map(|i| {
                policy(
                    format!("allow-{i}"),
                    "default",
                    json!({"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
                           "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/ns-{}/sa/sa-{i}", i % 100)]}}],
                                      "to": [{"operation": {"methods": ["GET"]}}]}]}),
                )
            })
            .collect(),
    )
}

/// A ztunnel for `w` workloads (label `app: w<i>`), one selector policy per workload and
/// `p` namespace-wide DENY policies that apply to all of them.
pub fn workloads(w: usize, p: usize) -> Value {
    let workloads: Vec<Value> = (0..w)
        .map(|i| {
            json!({"name": format!("w{i}"), "namespace": "default", "serviceAccount": format!("sa-{i}"),
                   "labels": {"app": format!("w{i}")}, "addresses": [format!("10.{}.{}.{}", 1 + i / 65536, (i / 256) % 256, i % 256)]})
        })
        .collect();
    let mut policies: Vec<Value> = (0..w)
        .map(|i| {
            policy(
                format!("allow-w{i}"),
                "default",
                json!({"selector": {"matchLabels": {"app": format!("w{i}")}},
                       "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/default/sa/client-{i}")]}}]}]}),
            )
        })
        .collect();
    policies.extend((0..p).map(|i| {
        policy(
            format!("deny-{i}"),
            "default",
            json!({"action": "DENY",
                   "rules": [{"from": [{"source": {"principals": [format!("cluster.local/ns/bad/sa/bad-{i}")]}}]}]}),
        )
    }));
    json!({"mode": "ztunnel", "workloads": workloads, "policies": policies})
}

/// A YAML fixture text of `n` nested flow sequences.
pub fn nested_yaml(n: usize) -> String {
    format!("name: nested\ncases: {}\n", "[".repeat(n))
}
