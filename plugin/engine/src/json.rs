//! Reading `serde_json::Value` trees with the field path kept for error messages.
//!
//! serde's derive errors say "invalid type at line 3 column 7"; users of AuthorizationPolicy
//! need "spec.rules[0].from[0].source.ipBlocks[1]". Every accessor here takes the path of the
//! value it reads, so every error names the field.

use super::error::ConfigError;
use serde_json::{Map, Value};

pub type Result<T> = std::result::Result<T, ConfigError>;

pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// An object, or an error naming `path`.
pub fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ConfigError::new(
            path,
            format!("must be an object, got {}", type_name(other)),
        )),
    }
}

/// Rejects keys outside `allowed`: a misspelt field would otherwise be silently ignored, and
/// in an authorization policy an ignored field changes what is allowed.
pub fn only_keys(map: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<()> {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(ConfigError::new(
                join(path, key),
                format!(
                    "unknown field \"{key}\" (expected one of: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// An optional string field; `null` counts as absent, as in Kubernetes.
pub fn opt_str<'a>(map: &'a Map<String, Value>, key: &str, path: &str) -> Result<Option<&'a str>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => Err(ConfigError::new(
            join(path, key),
            format!("must be a string, got {}", type_name(other)),
        )),
    }
}

pub fn opt_object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => object(v, &join(path, key)).map(Some),
    }
}

pub fn opt_list<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a [Value]>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.as_slice())),
        Some(other) => Err(ConfigError::new(
            join(path, key),
            format!("must be a list, got {}", type_name(other)),
        )),
    }
}

/// A list of strings; every element must be a non-empty string (istiod's `CheckEmptyValues`).
pub fn opt_str_list(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<Vec<String>>> {
    let Some(items) = opt_list(map, key, path)? else {
        return Ok(None);
    };
    let list_path = join(path, key);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if s.is_empty() => {
                return Err(ConfigError::new(
                    index(&list_path, i),
                    "empty value is not allowed",
                ))
            }
            Value::String(s) => out.push(s.clone()),
            other => {
                return Err(ConfigError::new(
                    index(&list_path, i),
                    format!("must be a string, got {}", type_name(other)),
                ))
            }
        }
    }
    Ok(Some(out))
}
