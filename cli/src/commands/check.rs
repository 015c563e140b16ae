//! `istio-authz check --config`: one proxy's configuration, and one connection or request (or
//! a list of them) given inline or as case files; each decision explained.

use super::{emit, read_value};
use anyhow::{anyhow, bail, Context, Result};
use authz_fixture::fixture::{append_policy_files, Case};
use authz_fixture::replay::config_for_traffic;
use authz_plugin::engine::{Engine, Explanation, OwnedAttributes, PluginConfig, Verdict};
use istio_authz::request::HttpRequest;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A connection or request given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Inline {
    /// `spiffe://TD/ns/NS/sa/SA`, `TD/ns/NS/sa/SA`, or `NS/SA` in the configuration's trust
    /// domain; `None`: no client certificate.
    pub from: Option<String>,
    pub source_address: Option<IpAddr>,
    /// `ADDRESS[:PORT]` or `:PORT`.
    pub to: Option<String>,
    pub sni: Option<String>,
    pub http: HttpRequest,
}

/// What to check.
pub struct CheckInput {
    pub config: PathBuf,
    pub policy_files: Vec<PathBuf>,
    pub cases: Vec<PathBuf>,
    pub inline: Inline,
}

/// One checked case.
pub struct Checked {
    pub name: String,
    pub explanation: Explanation,
    pub expect: Option<Verdict>,
    pub warnings: Vec<String>,
}

fn principal(from: &str, trust_domain: &str) -> Result<String> {
    if from.starts_with("spiffe://") {
        return Ok(from.to_string());
    }
    let segments: Vec<&str> = from.split('/').collect();
    match segments.as_slice() {
        [ns, sa] if !ns.is_empty() && !sa.is_empty() => {
            Ok(format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}"))
        }
        [_, "ns", _, "sa", _] => Ok(format!("spiffe://{from}")),
        _ => bail!(
            "--from {from:?}: write spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT, TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICEACCOUNT or NAMESPACE/SERVICEACCOUNT"
        ),
    }
}

fn destination(to: &str) -> Result<(Option<IpAddr>, Option<u16>)> {
    let bad = || anyhow!("--to {to:?}: write ADDRESS[:PORT], [IPv6]:PORT or :PORT");
    if let Some(port) = to.strip_prefix(':') {
        return Ok((None, Some(port.parse().map_err(|_| bad())?)));
    }
    if let Ok(sa) = to.parse::<std::net::SocketAddr>() {
        return Ok((Some(sa.ip()), Some(sa.port())));
    }
    let bare = to.trim_start_matches('[').trim_end_matches(']');
    Ok((Some(bare.parse().map_err(|_| bad())?), None))
}

impl Inline {
    fn given(&self) -> bool {
        self.from.is_some()
            || self.source_address.is_some()
            || self.to.is_some()
            || self.sni.is_some()
            || self.http.is_request()
    }

    fn case(&self, trust_domain: &str) -> Result<Case> {
        let (destination_ip, destination_port) = match &self.to {
            Some(to) => destination(to)?,
            None => (None, None),
        };
        let host = match (destination_ip, destination_port) {
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            (Some(ip), None) => ip.to_string(),
            _ => String::new(),
        };
        Ok(Case {
            name: "the request on the command line".into(),
            attributes: OwnedAttributes {
                peer_principal: self
                    .from
                    .as_deref()
                    .map(|f| principal(f, trust_domain))
                    .transpose()?,
                source_ip: self.source_address,
                remote_ip: None,
                destination_ip,
                destination_port,
                sni: self.sni.clone(),
                http: self.http.to_http(&host)?,
            },
            source_port: None,
            expect: Verdict::Allow,
            policy: None,
            audit: None,
            dry_run: None,
        })
    }
}

/// Appends the AuthorizationPolicies of each file (`-`: standard input) to the configuration's
/// `policies`; documents of other kinds are skipped, and one whose kind looks like a misspelled
/// AuthorizationPolicy is an error rather than a silent skip.
fn append_policies(config: &mut Value, files: &[PathBuf]) -> Result<()> {
    let (stdin, paths): (Vec<&PathBuf>, Vec<&PathBuf>) =
        files.iter().partition(|f| f.as_path() == Path::new("-"));
    let paths: Vec<PathBuf> = paths.into_iter().cloned().collect();
    for file in &paths {
        refuse_misspelled_kinds(
            &std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?,
            &file.display().to_string(),
        )?;
    }
    append_policy_files(config, &paths)?;
    if !stdin.is_empty() {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading standard input")?;
        refuse_misspelled_kinds(&text, "standard input")?;
        let mut cluster = istio_authz::cluster::Cluster::default();
        cluster.add_text("-", &text)?;
        let list = config
            .as_object_mut()
            .ok_or_else(|| anyhow!("the configuration is not a mapping"))?
            .entry("policies")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.extend(cluster.policies().map(|p| p.value.clone()));
        }
    }
    Ok(())
}

/// A document that its author meant as an AuthorizationPolicy but that no proxy would read as
/// one: a DENY dropped that way lets traffic through.
fn refuse_misspelled_kinds(text: &str, origin: &str) -> Result<()> {
    let mut cluster = istio_authz::cluster::Cluster::default();
    cluster.add_text(origin, text)?;
    if let Some(f) = istio_authz::lint::unknown_kinds(&cluster)
        .into_iter()
        .next()
    {
        bail!(
            "{}: {}: {}: {} ({})",
            f.origin,
            f.object,
            f.field,
            f.message,
            f.fix
        );
    }
    Ok(())
}

/// The cases of a case file: one case, a list of cases, or a mapping with `cases:`.
fn read_cases(path: &Path) -> Result<Vec<(Case, Option<Verdict>)>> {
    let value = read_value(path)?;
    let items: Vec<Value> = match &value {
        Value::Array(items) => items.clone(),
        Value::Object(map) if map.contains_key("cases") => map
            .get("cases")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| anyhow!("{}: cases must be a list", path.display()))?,
        Value::Object(_) => vec![value.clone()],
        _ => bail!(
            "{}: a case, a list of cases, or a mapping with cases",
            path.display()
        ),
    };
    let mut out = Vec::new();
    for (i, mut item) in items.into_iter().enumerate() {
        let expect = item
            .get("expect")
            .and_then(Value::as_str)
            .map(str::to_string);
        let expect = match expect.as_deref() {
            Some("allow") => Some(Verdict::Allow),
            Some("deny") => Some(Verdict::Deny),
            Some(other) => bail!(
                "{}: case {i}: expect: {other:?} is not allow or deny",
                path.display()
            ),
            None => None,
        };
        if let Some(map) = item.as_object_mut() {
            // `expect` is optional in a case given to check.
            map.entry("expect").or_insert_with(|| "allow".into());
        }
        let case = Case::parse(&item).with_context(|| format!("{}: case {i}", path.display()))?;
        out.push((case, expect));
    }
    Ok(out)
}

/// Explains every case against the configuration; the load notes come back too.
pub fn run(input: &CheckInput) -> Result<(Vec<Checked>, Vec<String>)> {
    let mut config =
        read_value(&input.config).with_context(|| format!("{}", input.config.display()))?;
    append_policies(&mut config, &input.policy_files)?;
    let trust_domain = config
        .get("trustDomain")
        .and_then(Value::as_str)
        .unwrap_or("cluster.local")
        .to_string();
    let mut cases: Vec<(Case, Option<Verdict>)> = Vec::new();
    for file in &input.cases {
        cases.extend(read_cases(file)?);
    }
    if input.inline.given() {
        cases.push((input.inline.case(&trust_domain)?, None));
    }
    if cases.is_empty() {
        bail!("nothing to check: give --case FILE or the connection inline (--from, --to, --method, ...)");
    }
    let mut notes = Vec::new();
    let mut checked = Vec::new();
    for (case, expect) in cases {
        // Compiled as the filter this traffic reaches (HTTP or network), so that the load
        // notes are the ones that filter reports.
        let filtered = config_for_traffic(&config, &case);
        let engine = PluginConfig::from_value(&filtered)
            .and_then(Engine::from_config)
            .map_err(|e| {
                // A policy's error names the file it came from.
                let origin = e
                    .policy
                    .as_deref()
                    .and_then(|key| policy_origin(&input.policy_files, key))
                    .unwrap_or_else(|| input.config.display().to_string());
                anyhow!("{origin}: {e}")
            })?;
        for note in engine.notes() {
            let line = note.to_string();
            if !notes.contains(&line) {
                notes.push(line);
            }
        }
        let mut warnings = Vec::new();
        if let Some(p) = &case.attributes.peer_principal {
            if !p.starts_with("spiffe://") {
                warnings.push(format!(
                    "source.principal {p:?} has no spiffe:// scheme: a proxy never sees such a peer, and no principal rule matches it (write spiffe://{p})"
                ));
            }
        }
        let explanation = engine.explain(case.traffic_for(engine.mode()), &case.attributes);
        checked.push(Checked {
            name: case.name.clone(),
            explanation,
            expect,
            warnings,
        });
    }
    Ok((checked, notes))
}

/// The policy file that holds `namespace/name`, if one of them does.
fn policy_origin(files: &[PathBuf], key: &str) -> Option<String> {
    files.iter().find_map(|f| {
        let docs = authz_fixture::fixture::read_policies(f).ok()?;
        docs.iter()
            .any(|p| {
                let ns = p
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                let name = p
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                format!("{ns}/{name}") == key
            })
            .then(|| f.display().to_string())
    })
}

pub fn explanation_json(e: &Explanation) -> Value {
    json!({
        "decision": e.verdict.as_str(),
        "policy": e.policy.clone().unwrap_or_default(),
        "rule": e.rule.map(|r| format!("spec.rules[{r}]")),
        "reason": e.reason,
        "target": e.target,
        "audit": e.audit,
        "dryRun": e.dry_run.as_ref().map(|(v, p)| json!({"decision": v.as_str(), "policy": p.clone().unwrap_or_default()})),
        "nearestMiss": e.near_miss.as_ref().map(|m| json!({
            "policy": m.policy, "rule": format!("spec.rules[{}]", m.rule), "field": m.field,
            "wanted": m.wanted, "got": m.actual, "conditionsHeld": m.clauses_matched, "conditions": m.clauses,
        })),
    })
}

/// Prints the result; returns whether it is a success (every case allowed, or as expected).
pub fn report(
    checked: &[Checked],
    notes: &[String],
    json: bool,
    expect: Option<Verdict>,
) -> Result<bool> {
    let mut ok = true;
    let mut text = String::new();
    let mut cases = Vec::new();
    for c in checked {
        let wanted = expect.or(c.expect);
        let good = match wanted {
            Some(w) => c.explanation.verdict == w,
            None => c.explanation.verdict == Verdict::Allow,
        };
        ok &= good;
        if json {
            let mut v = explanation_json(&c.explanation);
            if let Some(map) = v.as_object_mut() {
                map.insert("case".into(), json!(c.name));
                if let Some(w) = wanted {
                    map.insert("expect".into(), json!(w.as_str()));
                }
                map.insert("warnings".into(), json!(c.warnings));
            }
            cases.push(v);
        } else {
            if checked.len() > 1 {
                text.push_str(&format!("case: {}\n", c.name));
            }
            text.push_str(&c.explanation.to_string());
            if let (Some(w), false) = (wanted, good) {
                text.push_str(&format!("  expected: {}\n", w.as_str().to_uppercase()));
            }
            for w in &c.warnings {
                text.push_str(&format!("  warning: {w}\n"));
            }
        }
    }
    if json {
        let decision = if checked
            .iter()
            .all(|c| c.explanation.verdict == Verdict::Allow)
        {
            "allow"
        } else {
            "deny"
        };
        emit(&format!(
            "{}\n",
            json!({"decision": decision, "cases": cases, "notes": notes})
        ))?;
    } else {
        for n in notes {
            text.push_str(&format!("note: {n}\n"));
        }
        emit(&text)?;
    }
    Ok(ok)
}
