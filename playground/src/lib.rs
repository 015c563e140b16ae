//! The policy playground: the engine (`authz_plugin::engine`) and istio-authz's cluster walk,
//! compiled for the browser with wasm-bindgen. The page (`playground/web/`) sends a *case* —
//! the editor's text and the request form, as JSON — and shows what comes back.
//!
//! Everything here is plumbing between the page and code the module and the command line
//! already use: the case form becomes a fixture case (docs/fixtures.md) read by the harness's own
//! fixture parser, a fixture is replayed by the harness's own `replay` loop with the native
//! engine, and a cluster is walked by `istio_authz::simulate::walk`. No decision is made here.
//!
//! The functions taking and returning `serde_json::Value` are the native API the tests call;
//! the `#[wasm_bindgen]` functions wrap them with JSON strings for the page.

use anyhow::{anyhow, bail, Context, Result};
use authz_plugin::engine::{Engine, Explanation, OwnedAttributes, PluginConfig, Verdict};
use istio_authz::cluster::Cluster;
use istio_authz::request::HttpRequest;
use istio_authz::simulate;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use wasm_bindgen::prelude::wasm_bindgen;

// The fixture format and the native replay loop: the crate the harness and istio-authz use,
// free of Wasmtime, so it builds for a browser too.
use authz_fixture::{fixture, replay};

mod examples;

/// Decides the page's case: `{"ok": true, ...}` with the decision and its explanation, or
/// `{"ok": false, "error": "..."}` naming what is wrong (the policy, field and value when a
/// policy is at fault).
#[wasm_bindgen]
pub fn evaluate(case_json: &str) -> String {
    let out = match serde_json::from_str::<Value>(case_json) {
        Ok(case) => evaluate_case(&case),
        Err(e) => failure(anyhow!("the page sent a case that is not JSON: {e}")),
    };
    out.to_string()
}

/// Replays a fixture file (YAML or JSON, docs/fixtures.md, configuration inline) as `authz-harness
/// replay` does with the native engine: one result per case.
#[wasm_bindgen]
pub fn replay(fixture_text: &str) -> String {
    replay_fixture_text(fixture_text).to_string()
}

/// The page's case as a fixture file for `authz-harness replay`, expecting what was decided.
#[wasm_bindgen]
pub fn export_fixture(case_json: &str) -> String {
    let out = match serde_json::from_str::<Value>(case_json) {
        Ok(case) => export_case(&case),
        Err(e) => failure(anyhow!("the page sent a case that is not JSON: {e}")),
    };
    out.to_string()
}

/// The built-in examples, each `{"title", "case"}`; the first is the default.
#[wasm_bindgen]
pub fn examples() -> String {
    examples::all().to_string()
}

fn failure(e: anyhow::Error) -> Value {
    json!({"ok": false, "error": format!("{e:#}")})
}

fn field<'a>(case: &'a Value, name: &str) -> &'a str {
    case.get(name).and_then(Value::as_str).unwrap_or("").trim()
}

fn text_field<'a>(case: &'a Value, name: &str) -> &'a str {
    case.get(name).and_then(Value::as_str).unwrap_or("")
}

fn is_http(case: &Value) -> bool {
    match case.get("http") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// Every case is decided on the same path: `cluster` walks the call through ambient,
/// `config` (the default) asks one proxy configured as the module is.
pub fn evaluate_case(case: &Value) -> Value {
    let result = match field(case, "kind") {
        "cluster" => evaluate_cluster(case),
        "config" | "" => evaluate_config(case),
        other => Err(anyhow!("kind: {other:?} is neither cluster nor config")),
    };
    result.unwrap_or_else(failure)
}

// --- the request form --------------------------------------------------------------------

/// `name: value` per line; a name given twice is one header with two values, as in fixtures.
fn headers(case: &Value) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text_field(case, "headers").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `:authority`-style pseudo-headers start with a colon: split after the name.
        let split = line.get(1..).and_then(|rest| rest.find(':')).map(|p| p + 1);
        let Some((name, value)) = split.and_then(|p| Some((line.get(..p)?, line.get(p + 1..)?)))
        else {
            bail!("headers, line {}: {line:?}: write NAME: VALUE", i + 1);
        };
        let name = name.trim();
        if name.is_empty() {
            bail!("headers, line {}: the header name is empty", i + 1);
        }
        out.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(out)
}

/// The verified JWT payload (YAML or JSON mapping), or `None` when the field is empty.
fn jwt(case: &Value) -> Result<Option<Value>> {
    let text = text_field(case, "jwt");
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Value =
        serde_norway::from_str(text).map_err(|e| anyhow!("JWT claims: not valid YAML: {e}"))?;
    match value {
        Value::Object(_) => Ok(Some(value)),
        Value::Null => Ok(None),
        _ => {
            bail!("JWT claims: write a mapping of claims, e.g. {{iss: issuer.example, sub: alice}}")
        }
    }
}

/// The form as a fixture case (docs/fixtures.md), `expect` left to the caller.
fn fixture_case(case: &Value) -> Result<Value> {
    let mut c = Map::new();
    c.insert(
        "name".into(),
        json!(non_empty(field(case, "name")).unwrap_or("playground")),
    );
    let mut source = Map::new();
    if let Some(p) = non_empty(field(case, "principal")) {
        source.insert("principal".into(), json!(p));
    }
    if let Some(a) = non_empty(field(case, "source")) {
        source.insert("address".into(), json!(a));
    }
    if !source.is_empty() {
        c.insert("source".into(), Value::Object(source));
    }
    let mut destination = Map::new();
    if let Some(a) = non_empty(field(case, "destination")) {
        destination.insert("address".into(), json!(a));
    }
    if let Some(p) = non_empty(field(case, "port")) {
        let port: u16 = p
            .parse()
            .map_err(|_| anyhow!("port: {p:?} is not a number from 0 to 65535"))?;
        destination.insert("port".into(), json!(port));
    }
    if !destination.is_empty() {
        c.insert("destination".into(), Value::Object(destination));
    }
    if let Some(s) = non_empty(field(case, "sni")) {
        c.insert("sni".into(), json!(s));
    }
    if is_http(case) {
        let mut http = Map::new();
        for (key, default) in [("method", "GET"), ("path", "/"), ("host", "")] {
            let v = non_empty(field(case, key)).unwrap_or(default);
            let v = if key == "method" {
                v.to_ascii_uppercase()
            } else {
                v.to_string()
            };
            http.insert(key.into(), json!(v));
        }
        let mut hs: Map<String, Value> = Map::new();
        for (name, value) in headers(case)? {
            match hs.get_mut(&name) {
                Some(Value::Array(values)) => values.push(json!(value)),
                _ => {
                    hs.insert(name, json!([value]));
                }
            }
        }
        if !hs.is_empty() {
            http.insert("headers".into(), Value::Object(hs));
        }
        if let Some(claims) = jwt(case)? {
            http.insert("jwt".into(), claims);
        }
        c.insert("http".into(), Value::Object(http));
    }
    c.insert("expect".into(), json!("allow"));
    Ok(Value::Object(c))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

// --- configuration mode: one proxy, as the module is configured ----------------------------

/// The editor's text: a plugin configuration (docs/configuration.md), optionally followed by more YAML
/// documents of AuthorizationPolicy (or a `kind: List` of them) appended to its `policies`,
/// as a fixture's `policyFiles` are.
fn config_from_text(text: &str) -> Result<Value> {
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc)
            .map_err(|e| anyhow!("document {}: not valid YAML: {e}", i + 1))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    let mut docs = docs.into_iter();
    let Some(mut config) = docs.next() else {
        bail!("the editor is empty: write a plugin configuration (mode: waypoint or ztunnel, ...)");
    };
    if config.get("cases").is_some() {
        bail!("this is a fixture file (it has cases): use Replay a fixture");
    }
    let map = config
        .as_object_mut()
        .ok_or_else(|| anyhow!("document 1: the plugin configuration must be a mapping"))?;
    let policies = map.entry("policies").or_insert_with(|| json!([]));
    if policies.is_null() {
        *policies = json!([]);
    }
    let list = policies
        .as_array_mut()
        .ok_or_else(|| anyhow!("policies: expected a list"))?;
    for (i, doc) in docs.enumerate() {
        let items = match doc.get("items") {
            Some(Value::Array(items))
                if doc.get("kind").and_then(Value::as_str) == Some("List") =>
            {
                items.clone()
            }
            _ => vec![doc],
        };
        for item in items {
            match item.get("kind").and_then(Value::as_str) {
                Some("AuthorizationPolicy") => list.push(item),
                kind => bail!(
                    "document {}: expected an AuthorizationPolicy after the configuration, found kind {}",
                    i + 2,
                    kind.unwrap_or("(none)")
                ),
            }
        }
    }
    Ok(config)
}

/// The engine as `replay`'s native decider builds it (every point of the mode), and the
/// traffic its enforcement point sees.
fn evaluate_config(case: &Value) -> Result<Value> {
    let config = config_from_text(text_field(case, "text"))?;
    let parsed = PluginConfig::from_value(&config).map_err(|e| anyhow!("{e}"))?;
    let engine = Engine::from_config_all_points(parsed).map_err(|e| anyhow!("{e}"))?;
    let fixture_case = fixture_case(case)?;
    let parsed_case = fixture::Case::parse(&fixture_case)?;
    let traffic = parsed_case.traffic_for(engine.mode());
    let explanation = engine.explain(traffic, &parsed_case.attributes);
    let notes: Vec<String> = engine.notes().iter().map(ToString::to_string).collect();
    let mut out = explanation_json(&explanation);
    if let Some(map) = out.as_object_mut() {
        map.insert("ok".into(), json!(true));
        map.insert("kind".into(), json!("config"));
        map.insert("mode".into(), json!(engine.mode().as_str()));
        map.insert(
            "layer".into(),
            json!(if traffic == authz_plugin::engine::Traffic::Request {
                7
            } else {
                4
            }),
        );
        map.insert("notes".into(), json!(notes));
        map.insert("text".into(), json!(explanation.to_string()));
        map.insert(
            "policies".into(),
            policies_json(&config_policies(&config), &explanation),
        );
    }
    Ok(out)
}

fn config_policies(config: &Value) -> Vec<Value> {
    config
        .get("policies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// One decision, as istio-authz's hops write it (`simulate --format json`).
fn explanation_json(e: &Explanation) -> Value {
    let mut out = json!({
        "decision": e.verdict.as_str(),
        "policy": e.policy.clone().unwrap_or_default(),
        "reason": e.reason,
        "target": e.target,
        "audit": e.audit,
    });
    if let Some(map) = out.as_object_mut() {
        if let Some(rule) = e.rule {
            map.insert("rule".into(), json!(rule));
        }
        if let Some((verdict, policy)) = &e.dry_run {
            map.insert(
                "dryRun".into(),
                json!({"decision": verdict.as_str(), "policy": policy.clone().unwrap_or_default()}),
            );
        }
        if let Some(m) = &e.near_miss {
            map.insert(
                "nearestMiss".into(),
                json!({"policy": m.policy, "rule": m.rule, "field": m.field, "wanted": m.wanted,
                       "got": m.actual, "held": m.clauses_matched, "of": m.clauses}),
            );
        }
    }
    out
}

/// The policies that decided or nearly did, rule by rule (YAML), so the page can highlight
/// the deciding rule and the nearest miss in them.
fn policies_json(policies: &[Value], explanations: &Explanation) -> Value {
    policies_json_all(policies, std::slice::from_ref(explanations))
}

fn policies_json_all(policies: &[Value], explanations: &[Explanation]) -> Value {
    let mut wanted: Vec<String> = Vec::new();
    for e in explanations {
        for key in e
            .policy
            .iter()
            .chain(e.near_miss.iter().map(|m| &m.policy))
            .chain(e.audit.iter())
        {
            if !wanted.contains(key) {
                wanted.push(key.clone());
            }
        }
    }
    let mut out = Vec::new();
    for key in wanted {
        let Some(policy) = policies.iter().find(|p| policy_key(p) == key) else {
            continue;
        };
        let spec = policy.get("spec");
        let action = spec
            .and_then(|s| s.get("action"))
            .and_then(Value::as_str)
            .unwrap_or("ALLOW");
        let rules: Vec<String> = spec
            .and_then(|s| s.get("rules"))
            .and_then(Value::as_array)
            .map(|rules| rules.iter().map(yaml).collect())
            .unwrap_or_default();
        let mut head = spec.cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = head.as_object_mut() {
            m.remove("rules");
        }
        out.push(json!({"key": key, "action": action, "head": yaml(&head), "rules": rules}));
    }
    Value::Array(out)
}

fn policy_key(policy: &Value) -> String {
    let meta = policy.get("metadata");
    let get = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ns = get("namespace");
    format!(
        "{}/{}",
        if ns.is_empty() { "default" } else { &ns },
        get("name")
    )
}

fn yaml(value: &Value) -> String {
    serde_norway::to_string(value).unwrap_or_else(|_| value.to_string())
}

// --- cluster mode: the call walked hop by hop -----------------------------------------------

fn cluster_of(case: &Value) -> Result<Cluster> {
    let mut cluster = Cluster::default();
    cluster.add_text("editor", text_field(case, "text"))?;
    Ok(cluster)
}

fn from_of(case: &Value) -> Result<simulate::From> {
    let from = field(case, "from");
    match field(case, "fromKind") {
        "sa" | "serviceaccount" => simulate::From::service_account(from),
        _ => simulate::From::pod(from),
    }
}

fn request_of(case: &Value) -> Result<HttpRequest> {
    if !is_http(case) {
        return Ok(HttpRequest::default());
    }
    Ok(HttpRequest {
        method: Some(
            non_empty(field(case, "method"))
                .unwrap_or("GET")
                .to_string(),
        ),
        path: Some(non_empty(field(case, "path")).unwrap_or("/").to_string()),
        host: non_empty(field(case, "host")).map(str::to_string),
        headers: headers(case)?,
        jwt: jwt(case)?,
    })
}

fn walk_of(case: &Value) -> Result<(Cluster, simulate::Walk)> {
    let cluster = cluster_of(case)?;
    let from = from_of(case)?;
    let to = simulate::To::parse(field(case, "to"))?;
    let walk = simulate::walk(&cluster, &from, &to, &request_of(case)?)?;
    Ok((cluster, walk))
}

fn evaluate_cluster(case: &Value) -> Result<Value> {
    let (cluster, walk) = walk_of(case)?;
    let mut out = walk.json();
    let policies: Vec<Value> = cluster.policies().map(|p| p.value.clone()).collect();
    let explanations: Vec<Explanation> = walk.hops.iter().map(|h| h.explanation.clone()).collect();
    if let Some(map) = out.as_object_mut() {
        map.insert("ok".into(), json!(true));
        map.insert("kind".into(), json!("cluster"));
        map.insert("text".into(), json!(walk.text()));
        map.insert(
            "policies".into(),
            policies_json_all(&policies, &explanations),
        );
        let findings: Vec<Value> = istio_authz::lint::lint(&cluster)
            .iter()
            .map(|f| f.json())
            .collect();
        map.insert("lint".into(), json!(findings));
        // Per hop: the numeric rule and near miss for highlighting, beside istio-authz's own
        // `spec.rules[N]` strings.
        if let Some(Value::Array(hops)) = map.get_mut("hops") {
            for (hop, e) in hops.iter_mut().zip(&explanations) {
                if let Some(h) = hop.as_object_mut() {
                    h.insert("explain".into(), explanation_json(e));
                    h.insert("text".into(), json!(e.to_string()));
                }
            }
        }
    }
    Ok(out)
}

// --- export and replay -------------------------------------------------------------------------

/// A fixture case for attributes a proxy saw (the form's JWT kept as written).
fn case_of_attributes(name: &str, attrs: &OwnedAttributes, jwt: Option<Value>) -> Value {
    let mut c = Map::new();
    c.insert("name".into(), json!(name));
    let mut source = Map::new();
    if let Some(p) = &attrs.peer_principal {
        source.insert("principal".into(), json!(p));
    }
    if let Some(a) = attrs.source_ip {
        source.insert("address".into(), json!(a.to_string()));
    }
    if !source.is_empty() {
        c.insert("source".into(), Value::Object(source));
    }
    let mut destination = Map::new();
    if let Some(a) = attrs.destination_ip {
        destination.insert("address".into(), json!(a.to_string()));
    }
    if let Some(p) = attrs.destination_port {
        destination.insert("port".into(), json!(p));
    }
    if !destination.is_empty() {
        c.insert("destination".into(), Value::Object(destination));
    }
    if let Some(s) = &attrs.sni {
        c.insert("sni".into(), json!(s));
    }
    if let Some(h) = &attrs.http {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut http = Map::new();
        http.insert("method".into(), json!(text(&h.method)));
        http.insert("path".into(), json!(text(&h.path)));
        http.insert("host".into(), json!(text(&h.host)));
        let mut hs: Map<String, Value> = Map::new();
        for (name, value) in &h.headers {
            match hs.get_mut(name) {
                Some(Value::Array(values)) => values.push(json!(text(value))),
                _ => {
                    hs.insert(name.clone(), json!([text(value)]));
                }
            }
        }
        if !hs.is_empty() {
            http.insert("headers".into(), Value::Object(hs));
        }
        if let Some(j) = jwt {
            http.insert("jwt".into(), j);
        }
        c.insert("http".into(), Value::Object(http));
    }
    Value::Object(c)
}

fn expect_what_was_decided(case: &mut Value, e: &Explanation) {
    if let Some(map) = case.as_object_mut() {
        map.insert("expect".into(), json!(e.verdict.as_str()));
        map.insert("policy".into(), json!(e.policy.clone().unwrap_or_default()));
        if !e.audit.is_empty() {
            map.insert("audit".into(), json!(e.audit));
        }
        if let Some((v, p)) = &e.dry_run {
            map.insert(
                "dryRun".into(),
                json!({"expect": v.as_str(), "policy": p.clone().unwrap_or_default()}),
            );
        }
    }
}

/// `{"ok": true, "file": "<fixture YAML>", "name": "<suggested file name>"}`. In cluster
/// mode the fixture is the hop that decided (the refusing proxy, or the last one on the path),
/// with the configuration istio-authz generated for that proxy.
pub fn export_case(case: &Value) -> Value {
    export_inner(case).unwrap_or_else(failure)
}

fn export_inner(case: &Value) -> Result<Value> {
    let title = non_empty(field(case, "name")).unwrap_or("playground case");
    let (config, fixture_case, e) = match field(case, "kind") {
        "cluster" => {
            let (_, walk) = walk_of(case)?;
            let hop = walk
                .hops
                .iter()
                .find(|h| h.explanation.verdict == Verdict::Deny)
                .or(walk.hops.last())
                .ok_or_else(|| {
                    anyhow!("no proxy on this call's path enforces a policy: nothing to export")
                })?;
            let name = format!("{title} ({} {})", hop.proxy, hop.name);
            (
                hop.config.clone(),
                case_of_attributes(&name, &hop.attributes, jwt(case)?),
                hop.explanation.clone(),
            )
        }
        _ => {
            let config = config_from_text(text_field(case, "text"))?;
            let parsed = PluginConfig::from_value(&config).map_err(|e| anyhow!("{e}"))?;
            let engine = Engine::from_config_all_points(parsed).map_err(|e| anyhow!("{e}"))?;
            let mut c = fixture_case(case)?;
            if let Some(m) = c.as_object_mut() {
                m.insert("name".into(), json!(title));
            }
            let parsed_case = fixture::Case::parse(&c)?;
            let e = engine.explain(
                parsed_case.traffic_for(engine.mode()),
                &parsed_case.attributes,
            );
            (config, c, e)
        }
    };
    let mut fixture_case = fixture_case;
    expect_what_was_decided(&mut fixture_case, &e);
    let fixture = json!({"name": title, "config": config, "cases": [fixture_case]});
    let file = format!(
        "# Exported from the istio-authz-wasm playground; replay with: authz-harness replay FILE\n{}",
        yaml(&fixture)
    );
    let slug: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    Ok(json!({"ok": true, "file": file, "name": format!("{}.yaml", slug.trim_matches('-'))}))
}

/// A fixture file's text (inline `config`; the page cannot read `configFile` or
/// `policyFiles`), loaded as `Fixture::load` loads files.
pub fn fixture_from_text(text: &str) -> Result<fixture::Fixture> {
    let value: Value = serde_norway::from_str(text).context("the fixture is not valid YAML")?;
    let map = value
        .as_object()
        .ok_or_else(|| anyhow!("a fixture must be a mapping"))?;
    for key in ["configFile", "policyFiles"] {
        if map.get(key).is_some_and(|v| !v.is_null()) {
            bail!("{key}: the page cannot read files; inline the configuration and its policies under config (Export writes fixtures that way)");
        }
    }
    for key in map.keys() {
        if !["name", "config", "cases", "expectError"].contains(&key.as_str()) {
            bail!("unknown key {key:?} (expected one of: name, config, cases, expectError)");
        }
    }
    let config = map
        .get("config")
        .cloned()
        .ok_or_else(|| anyhow!("config is required"))?;
    let mut cases = Vec::new();
    for (i, c) in map
        .get("cases")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("cases: expected a list"))?
        .iter()
        .enumerate()
    {
        cases.push(fixture::Case::parse(c).with_context(|| format!("cases[{i}]"))?);
    }
    Ok(fixture::Fixture {
        path: "playground".into(),
        name: map
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("fixture")
            .to_string(),
        config,
        expect_error: map
            .get("expectError")
            .and_then(Value::as_str)
            .map(str::to_string),
        cases,
    })
}

/// `{"ok": true, "name", "passed", "failed", "cases": [{"case", "result", "failures",
/// "decision", "policy"}]}`: `replay`'s report for the native engine.
pub fn replay_fixture_text(text: &str) -> Value {
    let fixture = match fixture_from_text(text) {
        Ok(f) => f,
        Err(e) => return failure(e),
    };
    let mut native = replay::Native::default();
    let reports = replay::replay_fixture(&fixture, &mut [&mut native]);
    let passed = reports.iter().filter(|r| r.passed()).count();
    let cases: Vec<Value> = reports
        .iter()
        .map(|r| {
            let observed = r.observed.first().map(|(_, o)| o);
            json!({
                "case": r.case,
                "result": if r.passed() { "passed" } else { "failed" },
                "failures": r.failures,
                "decision": observed.map(|o| o.verdict.as_str()),
                "policy": observed.and_then(|o| o.policy.clone()),
            })
        })
        .collect();
    json!({"ok": true, "name": fixture.name, "passed": passed,
           "failed": reports.len() - passed, "cases": cases})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_default_example_is_the_walkthrough_delete_refused_at_the_waypoint() {
        let examples = examples::all();
        let first = &examples[0]["case"];
        let out = evaluate_case(first);
        assert_eq!(out["ok"], true, "{out}");
        assert_eq!(out["decision"], "deny", "{out}");
        assert_eq!(out["hops"][0]["proxy"], "waypoint");
        assert_eq!(
            out["hops"][0]["nearestMiss"]["field"],
            "spec.rules[0].to[0].operation.methods"
        );
    }

    #[test]
    fn every_example_decides() {
        for ex in examples::all().as_array().unwrap() {
            let out = evaluate_case(&ex["case"]);
            assert_eq!(out["ok"], true, "{}: {out}", ex["title"]);
            let exported = export_case(&ex["case"]);
            assert_eq!(exported["ok"], true, "{}: {exported}", ex["title"]);
            // The export replays to what was shown.
            let report = replay_fixture_text(exported["file"].as_str().unwrap());
            assert_eq!(report["failed"], 0, "{}: {report}", ex["title"]);
            assert_eq!(report["passed"], 1, "{}: {report}", ex["title"]);
        }
    }

    #[test]
    fn a_bad_policy_is_named_with_its_field() {
        let case = json!({"kind": "config", "text": "mode: waypoint\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: default}\nspec:\n  action: ALLOW\n  rules:\n  - to:\n    - operation: {ports: [\"99999\"]}\n"});
        let out = evaluate_case(&case);
        assert_eq!(out["ok"], false, "{out}");
        let error = out["error"].as_str().unwrap();
        assert!(
            error.contains("default/p") && error.contains("ports"),
            "{error}"
        );
    }

    #[test]
    fn headers_take_name_colon_value_lines() {
        let case = json!({"headers": "X-Token: abc\nx-multi: a\nx-multi: b\n"});
        assert_eq!(
            headers(&case).unwrap(),
            vec![
                ("x-token".to_string(), "abc".to_string()),
                ("x-multi".to_string(), "a".to_string()),
                ("x-multi".to_string(), "b".to_string()),
            ]
        );
        assert!(headers(&json!({"headers": "no colon"})).is_err());
    }
}
