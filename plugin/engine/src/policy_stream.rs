//! Reading the plugin configuration so that each policy is handed on as soon as it is
//! parsed, and no more than one exists in parsed form at a time.
//!
//! Compiling a policy needs the rest of the configuration (the mode, the trust domain), and
//! JSON does not order keys: `policies` may come first. So the bytes are read twice: once
//! for every key but `policies`, whose elements are only read through and counted, then once
//! for the policies alone.

use super::config::PluginConfig;
use super::json::{Map, Parser};
use super::policy::AuthorizationPolicy;
use super::stream::parse_policy_at;

/// Reads `bytes`: `start` receives the configuration without its policies and how many
/// policies there are, then `each` every policy in order. `None` for anything but a valid
/// configuration whose `policies` (if any) is one list of valid policies: the caller then
/// reads it as a whole, which words the error.
pub(crate) fn read<S>(
    bytes: &[u8],
    start: impl FnOnce(PluginConfig, usize) -> S,
    mut each: impl FnMut(&mut S, AuthorizationPolicy),
) -> Option<S> {
    let top = read_rest(bytes)?;
    // A repeated `policies` key (the last one counts) is left to the whole reading.
    if top.policies_keys > 1 {
        return None;
    }
    let config = PluginConfig::from_parsed(&top.map, Vec::new()).ok()?;
    let mut state = start(config, top.policies);
    if top.policies_keys == 1 {
        let mut p = Parser::new(bytes);
        p.whitespace();
        p.open().ok()?;
        let mut first = true;
        while let Some(key) = p.next_key(first).ok()? {
            first = false;
            if key != "policies" {
                p.value().ok()?;
                continue;
            }
            // The first reading saw a list here.
            p.whitespace();
            p.open().ok()?;
            let mut i = 0;
            while p.next_element(i == 0).ok()? {
                let value = p.value().ok()?;
                // A bad policy refuses the configuration; the whole reading words why.
                let policy = parse_policy_at(&value, i).ok()?;
                drop(value);
                each(&mut state, policy);
                i += 1;
            }
            p.close();
        }
    }
    Some(state)
}

/// Every top-level key but `policies`, how many times `policies` was given, and how many
/// policies it lists.
struct RestOf {
    map: Map,
    policies_keys: usize,
    policies: usize,
}

/// The first reading: the whole document checked, `policies` only counted.
fn read_rest(bytes: &[u8]) -> Option<RestOf> {
    let mut p = Parser::new(bytes);
    if p.whitespace() != Some(b'{') {
        return None;
    }
    p.open().ok()?;
    let mut rest = RestOf {
        map: Map::new(),
        policies_keys: 0,
        policies: 0,
    };
    let mut first = true;
    while let Some(key) = p.next_key(first).ok()? {
        first = false;
        if key == "policies" {
            rest.policies_keys += 1;
            if p.whitespace() != Some(b'[') {
                return None;
            }
            p.open().ok()?;
            let mut count = 0;
            while p.next_element(count == 0).ok()? {
                p.value().ok()?;
                count += 1;
            }
            p.close();
            rest.policies = count;
        } else {
            let value = p.value().ok()?;
            rest.map.insert(key, value);
        }
    }
    p.close();
    p.end().ok()?;
    Some(rest)
}
