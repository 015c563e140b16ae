//! The page's examples. The Bookinfo ones are the repository's own walkthrough files (the
//! cluster dump and the policies `cli/tests/walkthrough.rs` checks), compiled in so the page
//! needs no second fetch; the two single-proxy ones show a plugin configuration as the module
//! takes it.

use serde_json::{json, Value};

const BOOKINFO: &str = include_str!("../../policies/bookinfo/cluster/bookinfo.yaml");
const WAYPOINT: &str = include_str!("../../policies/bookinfo/cluster/waypoint.yaml");
const L4_WITH_WAYPOINT: &str =
    include_str!("../../policies/bookinfo/productpage-ztunnel-with-waypoint.yaml");
const L7_WAYPOINT: &str = include_str!("../../policies/bookinfo/productpage-waypoint.yaml");
const L7_WAYPOINT_POLICY: &str =
    include_str!("../../policies/bookinfo/productpage-waypoint-policy.yaml");
const DEFAULT_DENY_WAYPOINT: &str = include_str!("../../policies/mesh/default-deny-waypoint.yaml");
const HTTPBIN_L7: &str = include_str!("../../policies/httpbin/allow-sleep-to-httpbin-l7.yaml");

/// YAML files as one multi-document text, as `kubectl get -o yaml` pieces pasted together.
fn documents(files: &[&str]) -> String {
    files
        .iter()
        .map(|f| f.trim_end())
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

const CURL: &str = "default/curl-6c7d8b9f5-klmno";
const REVIEWS: &str = "default/reviews-v1-5b8d6f7c4-fghij";

const HTTPBIN_ZTUNNEL: &str = "\
# The destination ztunnel of seed 001: httpbin's policy is bound by selector, so ztunnel
# enforces it, and ztunnel cannot see HTTP methods.
mode: ztunnel
workloads:
- name: httpbin
  namespace: ambient-demo
  serviceAccount: httpbin
  labels: {app: httpbin, version: v1}
  addresses: [10.1.0.20]
";

const JWT_WAYPOINT: &str = "\
# A waypoint in front of httpbin; the request carries a token verified by Envoy's jwt_authn
# (its payload is what the JWT claims field holds).
mode: waypoint
waypoint: {name: waypoint, namespace: default}
services:
- name: httpbin
  namespace: default
  hosts: [httpbin.default.svc.cluster.local]
  addresses: [10.96.0.30]
  ports: [8000]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-admins, namespace: default}
spec:
  targetRefs:
  - {kind: Service, group: \"\", name: httpbin}
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: [\"https://issuer.example/*\"]
    to:
    - operation:
        paths: [\"/admin/*\"]
    when:
    - key: request.auth.claims[groups]
      values: [admins]
";

/// A case with every form field present (empty where unused), so a shared link restores the
/// whole form.
fn case(fields: Value) -> Value {
    let mut base = json!({
        "v": 1, "kind": "cluster", "name": "", "text": "",
        "from": "", "fromKind": "pod", "to": "",
        "principal": "", "source": "", "destination": "", "port": "", "sni": "",
        "http": false, "method": "", "path": "", "host": "", "headers": "", "jwt": "",
    });
    if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
        for (k, v) in f {
            b.insert(k, v);
        }
    }
    base
}

pub fn all() -> Value {
    let walkthrough = documents(&[BOOKINFO, WAYPOINT, L4_WITH_WAYPOINT, L7_WAYPOINT]);
    json!([
        {
            "title": "Bookinfo walkthrough: curl's DELETE to productpage, refused at the waypoint",
            "case": case(json!({
                "name": "curl DELETE productpage",
                "text": walkthrough, "from": CURL, "to": "productpage:9080",
                "http": true, "method": "DELETE", "path": "/productpage",
            })),
        },
        {
            "title": "Bookinfo walkthrough: curl's GET, allowed by the waypoint and the ztunnel",
            "case": case(json!({
                "name": "curl GET productpage",
                "text": documents(&[BOOKINFO, WAYPOINT, L4_WITH_WAYPOINT, L7_WAYPOINT]),
                "from": CURL, "to": "productpage:9080",
                "http": true, "method": "GET", "path": "/productpage",
            })),
        },
        {
            "title": "GatewayClass default deny: every waypoint refuses what no policy allows",
            "case": case(json!({
                "name": "default deny at every waypoint",
                "text": documents(&[BOOKINFO, WAYPOINT, DEFAULT_DENY_WAYPOINT, L7_WAYPOINT_POLICY]),
                "from": REVIEWS, "to": "productpage:9080",
                "http": true, "method": "GET", "path": "/productpage",
            })),
        },
        {
            "title": "An L7 rule at ztunnel fails safe: sleep's GET is refused",
            "case": case(json!({
                "kind": "config", "name": "L7 rule at ztunnel",
                "text": documents(&[HTTPBIN_ZTUNNEL, HTTPBIN_L7]),
                "principal": "spiffe://cluster.local/ns/ambient-demo/sa/sleep",
                "source": "10.1.0.21", "destination": "10.1.0.20", "port": "8000",
                "http": true, "method": "GET", "path": "/get", "host": "httpbin:8000",
            })),
        },
        {
            "title": "JWT claims: a token without the admins group is refused",
            "case": case(json!({
                "kind": "config", "name": "JWT claims",
                "text": JWT_WAYPOINT,
                "principal": "spiffe://cluster.local/ns/default/sa/curl",
                "source": "10.244.0.7", "destination": "10.96.0.30", "port": "8000",
                "http": true, "method": "GET", "path": "/admin/settings", "host": "httpbin:8000",
                "jwt": "iss: https://issuer.example\nsub: alice\ngroups: [users]\n",
            })),
        },
    ])
}
