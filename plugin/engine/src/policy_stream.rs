//! Reading the plugin configuration so that each policy is handed on as soon as it is
//! parsed, and no more than one exists in parsed form at a time.
//!
//! Compiling a policy needs the rest of the configuration (the mode, the trust domain), and
//! JSON does not order keys: `policies` may come first. So the bytes are read twice: once
//! for every key but `policies`, whose elements are only checked to be JSON, then once for
//! the policies alone.

use super::config::PluginConfig;
use super::policy::AuthorizationPolicy;
use super::stream::parse_policy_at;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Reads `bytes`: `start` receives the configuration without its policies and how many
/// policies there are, then `each` every policy in order. `None` for anything but a valid configuration whose `policies` (if any)
/// is one list of valid policies: the caller then reads it as a whole, which words the error.
pub(crate) fn read<S>(
    bytes: &[u8],
    start: impl FnOnce(PluginConfig, usize) -> S,
    mut each: impl FnMut(&mut S, AuthorizationPolicy),
) -> Option<S> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let top = de::Deserializer::deserialize_map(&mut deserializer, Rest).ok()?;
    deserializer.end().ok()?;
    // A repeated `policies` key (the last one counts) is left to the whole reading.
    if top.policies_keys > 1 {
        return None;
    }
    let config = PluginConfig::from_parsed(&top.map, std::iter::empty()).ok()?;
    let mut state = start(config, top.policies);
    if top.policies_keys == 1 {
        let mut consumer = |i: usize, value: Value| match parse_policy_at(&value, i) {
            Ok(policy) => {
                each(&mut state, policy);
                true
            }
            Err(_) => false,
        };
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let all_valid = de::Deserializer::deserialize_map(
            &mut deserializer,
            Policies {
                each: &mut consumer,
            },
        )
        .ok()?;
        if !all_valid {
            return None;
        }
    }
    Some(state)
}

/// Every top-level key but `policies`, how many times `policies` was given, and how many
/// policies it lists.
struct RestOf {
    map: Map<String, Value>,
    policies_keys: usize,
    policies: usize,
}

struct Rest;

impl<'de> Visitor<'de> for Rest {
    type Value = RestOf;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<RestOf, A::Error> {
        let mut rest = RestOf {
            map: Map::new(),
            policies_keys: 0,
            policies: 0,
        };
        while let Some(key) = access.next_key::<String>()? {
            if key == "policies" {
                rest.policies_keys += 1;
                rest.policies = access.next_value_seed(SkipList)?;
            } else {
                let value = access.next_value::<Value>()?;
                rest.map.insert(key, value);
            }
        }
        Ok(rest)
    }
}

/// A list, its elements only read through and counted.
struct SkipList;

impl<'de> Visitor<'de> for SkipList {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(count)
    }
}

impl<'de> DeserializeSeed<'de> for SkipList {
    type Value = usize;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

/// The top-level object again, for `policies` alone: each element goes to `each` (its index
/// and JSON) as soon as it has been read, until `each` refuses one. Whether all were taken.
struct Policies<'a> {
    each: &'a mut dyn FnMut(usize, Value) -> bool,
}

impl<'de> Visitor<'de> for Policies<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<bool, A::Error> {
        let mut all_valid = true;
        while let Some(key) = access.next_key::<String>()? {
            if key == "policies" {
                all_valid = access.next_value_seed(PolicyList {
                    each: &mut *self.each,
                })?;
            } else {
                access.next_value::<IgnoredAny>()?;
            }
        }
        Ok(all_valid)
    }
}

struct PolicyList<'a> {
    each: &'a mut dyn FnMut(usize, Value) -> bool,
}

impl<'de> Visitor<'de> for PolicyList<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut i = 0;
        while let Some(value) = seq.next_element::<Value>()? {
            if !(self.each)(i, value) {
                // The configuration is refused; the whole reading words why.
                return Ok(false);
            }
            i += 1;
        }
        Ok(true)
    }
}

impl<'de> DeserializeSeed<'de> for PolicyList<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_seq(self)
    }
}
