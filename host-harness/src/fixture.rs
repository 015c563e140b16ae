//! Fixture files (contract.md §2): one plugin configuration and the traffic to replay.

use anyhow::{anyhow, bail, Context, Result};
use authz_plugin::engine::{Claim, Mode, OwnedAttributes, OwnedHttp, Traffic, Verdict};
use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// A loaded fixture file.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: PathBuf,
    pub name: String,
    /// The plugin configuration with `policyFiles` appended to `policies`.
    pub config: Value,
    /// Extension: loading the configuration must fail with a message containing this.
    pub expect_error: Option<String>,
    pub cases: Vec<Case>,
}

/// What a case expects of the dry-run policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunExpect {
    pub verdict: Verdict,
    /// `Some("")` = decided by default.
    pub policy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub attributes: OwnedAttributes,
    /// `source.port`, kept for drivers that open real connections.
    pub source_port: Option<u16>,
    pub expect: Verdict,
    /// `Some("")` = decided by default; `None` = not checked.
    pub policy: Option<String>,
    pub audit: Option<Vec<String>>,
    pub dry_run: Option<DryRunExpect>,
}

impl Case {
    /// A request when the case has `http`, otherwise a connection.
    pub fn traffic(&self) -> Traffic {
        if self.attributes.http.is_some() {
            Traffic::Request
        } else {
            Traffic::Connection
        }
    }

    /// The traffic an enforcement point sees: ztunnel only ever sees connections.
    pub fn traffic_for(&self, mode: Mode) -> Traffic {
        match mode {
            Mode::Ztunnel => Traffic::Connection,
            Mode::Waypoint => self.traffic(),
        }
    }
}

/// Reads YAML or JSON into a JSON value (YAML is a superset of JSON, but `.json` files get
/// serde_json's stricter parser and better positions).
pub fn read_value(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_value(&text, is_json(path)).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// Parses the text of a fixture or configuration file (JSON when `json`, YAML otherwise).
pub fn parse_value(text: &str, json: bool) -> Result<Value> {
    if json {
        serde_json::from_str(text).context("invalid JSON")
    } else {
        check_nesting(text)?;
        serde_norway::from_str(text).context("invalid YAML")
    }
}

/// Every YAML document of a file (a policy file may hold several).
pub fn read_documents(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_documents(&text, is_json(path)).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// Every document of a YAML stream (or the items of a JSON array), empty documents skipped.
pub fn parse_documents(text: &str, json: bool) -> Result<Vec<Value>> {
    if json {
        let v: Value = serde_json::from_str(text).context("invalid JSON")?;
        return Ok(match v {
            Value::Array(items) => items,
            other => vec![other],
        });
    }
    check_nesting(text)?;
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = <Value as serde::Deserialize>::deserialize(doc)
            .with_context(|| format!("document {}: invalid YAML", i + 1))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// How deep `[` and `{` may nest in a YAML file. The YAML deserializer gives up at 128 levels
/// anyway, but only after its scanner has gone through the whole input, and that scanner
/// revisits every open flow level for each token: a file of nothing but brackets costs time
/// quadratic in its size (200 KB took half a minute) before it fails.
pub const MAX_YAML_NESTING: usize = 256;

/// Rejects, in one linear pass, YAML whose flow collections nest deeper than
/// [`MAX_YAML_NESTING`]. Brackets inside quoted scalars and comments are not counted.
pub fn check_nesting(text: &str) -> Result<()> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut i = 0usize;
    // The previous significant byte: a quote opens a quoted scalar only where a scalar can
    // start (YAML 1.2 §7.3: after an indicator or white space), not inside `don't`.
    let mut prev = b'\n';
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => line += 1,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_YAML_NESTING {
                    bail!(
                        "line {line}: collections nested more than {MAX_YAML_NESTING} levels deep"
                    );
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' if prev.is_ascii_whitespace() => {
                while bytes.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\''
                if matches!(
                    prev,
                    b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':' | b'-' | b'?'
                ) =>
            {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    if c == b'\n' {
                        line += 1;
                    }
                    if b == b'"' && c == b'\\' {
                        i += 2;
                        continue;
                    }
                    if c == b {
                        // `''` inside a single-quoted scalar is an escaped quote.
                        if b == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        prev = b;
        i += 1;
    }
    Ok(())
}

/// The AuthorizationPolicy documents of a policy file; documents of other kinds are ignored.
pub fn read_policies(path: &Path) -> Result<Vec<Value>> {
    Ok(policies_in(read_documents(path)?))
}

/// The AuthorizationPolicy documents among `docs` (a `kubectl get -o yaml` list is opened).
pub fn policies_in(docs: Vec<Value>) -> Vec<Value> {
    docs.into_iter()
        .flat_map(|d| match d {
            // A `kubectl get -o yaml` list.
            Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => m
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            other => vec![other],
        })
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("AuthorizationPolicy"))
        .collect()
}

/// Appends the policies of `files` to `config.policies`.
pub fn append_policy_files(config: &mut Value, files: &[PathBuf]) -> Result<()> {
    let map = config
        .as_object_mut()
        .ok_or_else(|| anyhow!("the plugin configuration must be a mapping"))?;
    let policies = map
        .entry("policies")
        .or_insert_with(|| Value::Array(Vec::new()));
    if policies.is_null() {
        *policies = Value::Array(Vec::new());
    }
    let list = policies
        .as_array_mut()
        .ok_or_else(|| anyhow!("policies must be a list"))?;
    for f in files {
        list.extend(read_policies(f)?);
    }
    Ok(())
}

/// Whether a file is a fixture (a mapping with a `cases` list).
pub fn is_fixture(path: &Path) -> bool {
    let ext_ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
    ext_ok
        && read_value(path)
            .ok()
            .is_some_and(|v| v.get("cases").is_some_and(Value::is_array))
}

/// Expands directories into the fixture files below them, recursively, in sorted order.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = Vec::new();
            while let Some(dir) = stack.pop() {
                for entry in
                    std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
                {
                    let path = entry?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if is_fixture(&path) {
                        found.push(path);
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(out)
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Fixture> {
        Fixture::from_value(path, read_value(path)?)
    }

    /// A fixture from its parsed text; `configFile` and `policyFiles` are read relative to
    /// `path`'s directory.
    pub fn from_value(path: &Path, value: Value) -> Result<Fixture> {
        let map = value
            .as_object()
            .ok_or_else(|| anyhow!("{}: a fixture must be a mapping", path.display()))?;
        only_keys(
            map,
            &[
                "name",
                "config",
                "configFile",
                "policyFiles",
                "cases",
                "expectError",
            ],
            "",
        )
        .with_context(|| format!("{}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = map
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| path.display().to_string());
        let mut config = match (map.get("config"), map.get("configFile")) {
            (Some(c), None) => c.clone(),
            (None, Some(Value::String(f))) => read_value(&dir.join(f))
                .with_context(|| format!("{}: configFile", path.display()))?,
            (Some(_), Some(_)) => bail!("{}: give config or configFile, not both", path.display()),
            _ => bail!("{}: config (or configFile) is required", path.display()),
        };
        let policy_files: Vec<PathBuf> = match map.get("policyFiles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(|s| dir.join(s))
                        .ok_or_else(|| anyhow!("{}: policyFiles must be strings", path.display()))
                })
                .collect::<Result<_>>()?,
            Some(_) => bail!("{}: policyFiles must be a list", path.display()),
        };
        append_policy_files(&mut config, &policy_files)
            .with_context(|| format!("{}", path.display()))?;
        let expect_error = map
            .get("expectError")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut cases = Vec::new();
        for (i, c) in map
            .get("cases")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            cases.push(Case::parse(c).with_context(|| format!("{}: cases[{i}]", path.display()))?);
        }
        Ok(Fixture {
            path: path.to_path_buf(),
            name,
            config,
            expect_error,
            cases,
        })
    }
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str], within: &str) -> Result<()> {
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            let at = if within.is_empty() {
                String::new()
            } else {
                format!(" in {within}")
            };
            bail!(
                "unknown key {k:?}{at} (expected one of: {})",
                allowed.join(", ")
            );
        }
    }
    Ok(())
}

fn verdict(v: &Value, field: &str) -> Result<Verdict> {
    match v.as_str() {
        Some("allow") | Some("ALLOW") => Ok(Verdict::Allow),
        Some("deny") | Some("DENY") => Ok(Verdict::Deny),
        _ => bail!("{field}: expected allow or deny, got {v}"),
    }
}

fn port(v: &Value, field: &str) -> Result<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| anyhow!("{field}: {v} is not a port"))
}

/// An address, as `10.0.0.5`, `fd00::5`, or with a port (`10.0.0.5:80`, `[fd00::5]:80`).
fn address(v: &Value, field: &str) -> Result<(IpAddr, Option<u16>)> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("{field}: must be a string"))?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    bail!("{field}: {s:?} is not an IP address")
}

fn header_value(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Array(items) => items.iter().flat_map(header_value).collect(),
        Value::String(s) => vec![s.as_bytes().to_vec()],
        Value::Null => vec![Vec::new()],
        other => vec![other.to_string().into_bytes()],
    }
}

impl Case {
    pub fn parse(value: &Value) -> Result<Case> {
        let map: &Map<String, Value> = value
            .as_object()
            .ok_or_else(|| anyhow!("a case must be a mapping"))?;
        // An unknown key is a typo whose expectation would silently go unchecked.
        only_keys(
            map,
            &[
                "name",
                "source",
                "destination",
                "sni",
                "http",
                "expect",
                "policy",
                "audit",
                "dryRun",
            ],
            "",
        )?;
        for (key, allowed) in [
            (
                "source",
                &["principal", "address", "port", "remoteAddress"][..],
            ),
            ("destination", &["address", "port"][..]),
            ("http", &["method", "path", "host", "headers", "jwt"][..]),
            ("dryRun", &["expect", "policy"][..]),
        ] {
            if let Some(Value::Object(m)) = map.get(key) {
                only_keys(m, allowed, key)?;
            }
        }
        let name = map
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_string();
        let mut attrs = OwnedAttributes::default();
        let mut source_port = None;
        if let Some(src) = map.get("source").filter(|v| !v.is_null()) {
            let src = src
                .as_object()
                .ok_or_else(|| anyhow!("source must be a mapping"))?;
            attrs.peer_principal = src
                .get("principal")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(a) = src.get("address") {
                let (ip, p) = address(a, "source.address")?;
                attrs.source_ip = Some(ip);
                source_port = p;
            }
            if let Some(a) = src.get("remoteAddress") {
                attrs.remote_ip = Some(address(a, "source.remoteAddress")?.0);
            }
            if let Some(p) = src.get("port") {
                source_port = Some(port(p, "source.port")?);
            }
        }
        if let Some(dst) = map.get("destination").filter(|v| !v.is_null()) {
            let dst = dst
                .as_object()
                .ok_or_else(|| anyhow!("destination must be a mapping"))?;
            if let Some(a) = dst.get("address") {
                let (ip, p) = address(a, "destination.address")?;
                attrs.destination_ip = Some(ip);
                attrs.destination_port = p;
            }
            if let Some(p) = dst.get("port") {
                attrs.destination_port = Some(port(p, "destination.port")?);
            }
        }
        attrs.sni = map.get("sni").and_then(Value::as_str).map(str::to_string);
        if let Some(http) = map.get("http").filter(|v| !v.is_null()) {
            let http = http
                .as_object()
                .ok_or_else(|| anyhow!("http must be a mapping"))?;
            let s = |k: &str, d: &str| {
                http.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or(d)
                    .as_bytes()
                    .to_vec()
            };
            let mut headers = Vec::new();
            if let Some(h) = http.get("headers").filter(|v| !v.is_null()) {
                let h = h
                    .as_object()
                    .ok_or_else(|| anyhow!("http.headers must be a mapping"))?;
                for (k, v) in h {
                    for value in header_value(v) {
                        headers.push((k.to_ascii_lowercase(), value));
                    }
                }
            }
            let jwt = http
                .get("jwt")
                .filter(|v| !v.is_null())
                .map(Claim::from_json);
            attrs.http = Some(OwnedHttp::new(
                &s("method", "GET"),
                &s("path", "/"),
                &s("host", ""),
                headers,
                jwt,
            ));
        }
        let expect = verdict(
            map.get("expect")
                .ok_or_else(|| anyhow!("expect is required"))?,
            "expect",
        )?;
        let policy = match map.get("policy") {
            None => None,
            Some(Value::Null) => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => bail!("policy: expected namespace/name, got {v}"),
        };
        let audit = match map.get("audit") {
            None => None,
            Some(Value::Null) => Some(Vec::new()),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| anyhow!("audit: expected names"))
                    })
                    .collect::<Result<_>>()?,
            ),
            Some(v) => bail!("audit: expected a list, got {v}"),
        };
        let dry_run = match map.get("dryRun") {
            None | Some(Value::Null) => None,
            Some(d) => Some(DryRunExpect {
                verdict: verdict(
                    d.get("expect")
                        .ok_or_else(|| anyhow!("dryRun.expect is required"))?,
                    "dryRun.expect",
                )?,
                policy: match d.get("policy") {
                    None => None,
                    Some(Value::Null) => Some(String::new()),
                    Some(v) => Some(
                        v.as_str()
                            .ok_or_else(|| anyhow!("dryRun.policy: expected a string"))?
                            .to_string(),
                    ),
                },
            }),
        };
        Ok(Case {
            name,
            attributes: attrs,
            source_port,
            expect,
            policy,
            audit,
            dry_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn deeply_nested_yaml_is_refused_in_linear_time() {
        // 200 KB of brackets: the YAML scanner alone took half a minute on this before
        // failing. The bound is generous (no timing is asserted on a shared machine beyond
        // "not a stall").
        let text = "[".repeat(200_000);
        let start = Instant::now();
        let err = parse_value(&text, false).unwrap_err();
        assert!(
            format!("{err:#}").contains("nested more than 256 levels"),
            "{err:#}"
        );
        assert!(parse_documents(&text, false).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn nesting_ignores_brackets_in_quotes_and_comments() {
        let deep = "[".repeat(300);
        for ok in [
            format!("a: \"{deep}\"\n"),
            format!("a: '{deep}'\n"),
            format!("a: x # {deep}\n"),
            format!("a: 'it''s {deep}'\n"),
            format!("a: \"\\\" {deep}\"\n"),
        ] {
            check_nesting(&ok).unwrap();
        }
        // A quote inside a plain scalar does not open a quoted string.
        let err = check_nesting(&format!("a: don't {}\n", "[".repeat(300))).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        // Nesting the YAML parser accepts is accepted.
        let v = parse_value(&format!("{}1{}", "[".repeat(100), "]".repeat(100)), false).unwrap();
        assert!(v.is_array());
    }
}
