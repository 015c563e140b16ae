//! Reading the plugin configuration in one pass, without ever holding it as one JSON tree.
//!
//! A configuration of ten thousand policies is megabytes of JSON; as a `serde_json::Value`
//! tree it is ten times that, and Wasm linear memory never shrinks, so that peak would stay
//! with the VM for its life. Here every key but `policies` is read as a (small) value, and
//! each policy is parsed into its typed form as soon as it has been read, its JSON dropped
//! before the next one is read. What is accepted, and every error message, is what
//! [`PluginConfig::from_value`] gives for the same document.

use super::config::PluginConfig;
use super::error::ConfigError;
use super::json::{index, join, Result};
use super::policy::AuthorizationPolicy;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses policy `i`, naming `policies[i]` in an error that is not inside a named policy.
pub(crate) fn parse_policy_at(value: &Value, i: usize) -> Result<AuthorizationPolicy> {
    AuthorizationPolicy::parse(value).map_err(|mut e| {
        if e.policy.is_none() {
            e.field = join(&index("policies", i), &e.field);
        }
        e
    })
}

/// The `policies` list, each element parsed as soon as it is read and its JSON dropped.
struct PoliciesSeed;

impl<'de> Visitor<'de> for PoliciesSeed {
    type Value = Vec<Result<AuthorizationPolicy>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut parsed = Vec::new();
        while let Some(value) = seq.next_element::<Value>()? {
            // After the first bad policy the configuration is rejected: the rest is only
            // read through (a syntax error further on still counts).
            if !parsed.last().is_some_and(Result::is_err) {
                let result = parse_policy_at(&value, parsed.len());
                parsed.push(result);
            }
        }
        Ok(parsed)
    }
}

impl<'de> DeserializeSeed<'de> for PoliciesSeed {
    type Value = Vec<Result<AuthorizationPolicy>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        // Only a list streams; anything else is an error, which the tree-based reader then
        // words (see `from_json`).
        deserializer.deserialize_seq(self)
    }
}

/// The top-level object: every key but `policies` as a value, `policies` streamed.
struct TopLevel {
    map: Map<String, Value>,
    policies: Vec<Result<AuthorizationPolicy>>,
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut access: A,
    ) -> std::result::Result<TopLevel, A::Error> {
        let mut top = TopLevel {
            map: Map::new(),
            policies: Vec::new(),
        };
        while let Some(key) = access.next_key::<String>()? {
            if key == "policies" {
                // A repeated key: the last one counts, as in a JSON tree.
                top.policies = access.next_value_seed(PoliciesSeed)?;
            } else {
                let value = access.next_value::<Value>()?;
                top.map.insert(key, value);
            }
        }
        Ok(top)
    }
}

/// Reads and validates a configuration from JSON bytes in one pass.
///
/// Anything the one pass does not take (not an object, `policies` not a list, bad JSON) is
/// read again as a tree, so that the error is worded exactly as [`PluginConfig::from_value`]
/// words it; only a valid configuration needs to be cheap.
pub(crate) fn from_json(bytes: &[u8]) -> Result<PluginConfig> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let streamed = de::Deserializer::deserialize_map(&mut deserializer, TopLevelVisitor)
        .and_then(|top| deserializer.end().map(|()| top));
    match streamed {
        Ok(top) => PluginConfig::from_parsed(&top.map, top.policies.into_iter()),
        Err(_) => {
            let value: Value = serde_json::from_slice(bytes).map_err(|e| {
                ConfigError::new(
                    "",
                    format!("the plugin configuration is not valid JSON: {e}"),
                )
            })?;
            PluginConfig::from_value(&value)
        }
    }
}
