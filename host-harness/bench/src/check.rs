//! The native engine's decisions on the generated samples against the reference model's.

use anyhow::{anyhow, Result};
use authz_plugin::engine::{Engine, OwnedAttributes, OwnedHttp, Traffic as EngineTraffic, Verdict};

use super::gen::{Generated, Sample, SetKind};
use super::model::{Traffic, SPIFFE_PREFIX};

/// The engine's view of a sample.
pub fn attributes(t: &Traffic) -> OwnedAttributes {
    let ip = |s: &str| s.parse().ok();
    OwnedAttributes {
        peer_principal: t.principal.as_ref().map(|p| format!("{SPIFFE_PREFIX}{p}")),
        source_ip: ip(&t.source_ip),
        remote_ip: None,
        destination_ip: ip(&t.destination_ip),
        destination_port: Some(t.destination_port),
        sni: None,
        http: t.method.as_ref().map(|m| {
            OwnedHttp::new(
                m.as_bytes(),
                t.path.as_deref().unwrap_or("/").as_bytes(),
                t.host.as_deref().unwrap_or_default().as_bytes(),
                t.headers
                    .iter()
                    .map(|(n, v)| (n.clone(), v.as_bytes().to_vec()))
                    .collect(),
                None,
            )
        }),
    }
}

/// One sample on which the engine and the reference model disagree.
#[derive(Debug, Clone)]
pub struct Disagreement {
    pub sample: String,
    pub expected: String,
    pub got: String,
}

/// Configures the native engine with a set's plugin configuration.
pub fn engine(g: &Generated, kind: SetKind) -> Result<Engine> {
    let bytes = serde_json::to_vec(&g.plugin_config(kind))?;
    Engine::from_json(&bytes).map_err(|e| anyhow!("{} configuration rejected: {e}", kind.name()))
}

fn decide(engine: &Engine, s: &Sample) -> (&'static str, Option<String>) {
    let traffic = if s.traffic.method.is_some() {
        EngineTraffic::Request
    } else {
        EngineTraffic::Connection
    };
    let d = engine.decide(traffic, &attributes(&s.traffic));
    let verdict = match d.verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    };
    let policy = d
        .reason
        .rule()
        .and_then(|r| engine.policy(r.policy))
        .map(|p| p.key().to_string());
    (verdict, policy)
}

/// Every sample of a set through the native engine: the verdict must be the expected one, and
/// the deciding policy (when one decided) one of the policies the sample matches.
pub fn native_check(g: &Generated, kind: SetKind) -> Result<(usize, Vec<Disagreement>)> {
    let engine = engine(g, kind)?;
    let mut bad = Vec::new();
    let mut n = 0;
    for s in g.samples_of(kind) {
        n += 1;
        let (verdict, policy) = decide(&engine, s);
        let policy_ok = match &policy {
            Some(p) => s.matching.contains(p),
            None => s.matching.is_empty(),
        };
        if verdict != s.expect || !policy_ok {
            bad.push(Disagreement {
                sample: s.name.clone(),
                expected: format!("{} by {:?}", s.expect, s.matching),
                got: format!("{verdict} by {policy:?}"),
            });
        }
    }
    Ok((n, bad))
}
