//! Reading the plugin configuration in one pass, without ever holding it as one JSON tree.
//!
//! A configuration of ten thousand policies is megabytes of JSON; as a JSON tree it is ten
//! times that, and Wasm linear memory never shrinks, so that peak would stay with the VM for
//! its life. Here every key but `policies` is read as a (small) value, and each policy is
//! parsed into its typed form as soon as it has been read, its JSON dropped before the next
//! one is read. What is accepted, and every error message, is what the tree-based reader
//! ([`PluginConfig::from_tree`]) gives for the same document.

use super::config::PluginConfig;
use super::error::{ConfigError, ErrorKind};
use super::json::{self, index, join, Map, Parser, Result, Value};
use super::policy::AuthorizationPolicy;

/// Parses policy `i`, naming `policies[i]` in an error that is not inside a named policy.
pub(crate) fn parse_policy_at(value: &Value, i: usize) -> Result<AuthorizationPolicy> {
    AuthorizationPolicy::parse(value).map_err(|mut e| {
        if e.policy.is_none() {
            e.field = join(&index("policies", i), &e.field);
        }
        e
    })
}

/// Adds the policy `value` to those parsed so far. After the first bad policy the
/// configuration is rejected: the rest are only read through, not parsed.
pub(crate) fn add_policy(parsed: &mut Vec<Result<AuthorizationPolicy>>, value: &Value) {
    if !parsed.last().is_some_and(Result::is_err) {
        let result = parse_policy_at(value, parsed.len());
        parsed.push(result);
    }
}

/// The top-level object: every key but `policies` as a value, `policies` parsed.
struct TopLevel {
    map: Map,
    policies: Vec<Result<AuthorizationPolicy>>,
}

/// The one pass. `None` for anything it does not take (not an object, `policies` not a list,
/// bad JSON): the tree-based reader then words the error.
fn read_top_level(bytes: &[u8]) -> Option<TopLevel> {
    let mut p = Parser::new(bytes);
    if p.whitespace() != Some(b'{') {
        return None;
    }
    p.open().ok()?;
    let mut map = Map::new();
    let mut policies = Vec::new();
    let mut first = true;
    while let Some(key) = p.next_key(first).ok()? {
        first = false;
        if key == "policies" {
            // A repeated key: the last one counts, as in a JSON tree.
            policies = read_policies(&mut p)?;
        } else {
            let value = p.value().ok()?;
            map.insert(key, value);
        }
    }
    p.close();
    p.end().ok()?;
    Some(TopLevel { map, policies })
}

/// The `policies` list, each element parsed as soon as it is read and its JSON dropped.
fn read_policies(p: &mut Parser) -> Option<Vec<Result<AuthorizationPolicy>>> {
    if p.whitespace() != Some(b'[') {
        return None;
    }
    p.open().ok()?;
    let mut parsed: Vec<Result<AuthorizationPolicy>> = Vec::new();
    let mut first = true;
    while p.next_element(first).ok()? {
        first = false;
        // Read through even after a bad policy: a syntax error further on still counts.
        let value = p.value().ok()?;
        add_policy(&mut parsed, &value);
    }
    p.close();
    Some(parsed)
}

/// Reads and validates a configuration from JSON bytes in one pass.
///
/// Anything the one pass does not take is read again as a tree, so that the error is worded
/// exactly as [`PluginConfig::from_tree`] words it; only a valid configuration needs to be
/// cheap.
pub(crate) fn from_json(bytes: &[u8]) -> Result<PluginConfig> {
    match read_top_level(bytes) {
        Some(top) => PluginConfig::from_parsed(&top.map, top.policies),
        None => {
            let value = json::parse(bytes).map_err(|e| {
                ConfigError::new(
                    ErrorKind::Syntax,
                    "",
                    format!("the plugin configuration is not valid JSON: {e}"),
                )
            })?;
            PluginConfig::from_tree(&value)
        }
    }
}
