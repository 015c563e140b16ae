//! The verified JWT, seen at a waypoint's HTTP filter: `requestPrincipals`
//! (`request.auth.principal`) and its claims (`request.auth.audiences`,
//! `request.auth.presenter`, `request.auth.claims[...]`).

use crate::attributes::Claim;
use crate::compile::{Compiled, Matcher, Pattern};
use crate::intern::Strings;

/// `requestPrincipals` / `notRequestPrincipals` / `request.auth.principal`: `iss/sub`, the
/// issuer and the subject each matched by its own pattern.
pub(super) fn request_principal_hits(m: &Matcher, jwt: &Claim, compiled: &Compiled) -> bool {
    let strings = &compiled.strings;
    match m {
        Matcher::RequestPrincipal(pair) => {
            let Some((iss, sub)) = compiled.request_principals.get(*pair as usize) else {
                return false;
            };
            string_claim(jwt, "iss").is_some_and(|v| iss.matches(strings, v.as_bytes()))
                && string_claim(jwt, "sub").is_some_and(|v| sub.matches(strings, v.as_bytes()))
        }
        _ => false,
    }
}

/// `request.auth.claims[...]` (and `audiences`, `presenter`): grammar (a) on a string claim,
/// or on some string of a list claim.
pub(super) fn claim_hits(m: &Matcher, claim: &Claim, strings: &Strings) -> bool {
    match m {
        Matcher::Str(s) => claim_matches(*s, strings, claim),
        _ => false,
    }
}

fn claim_matches(m: Pattern, strings: &Strings, claim: &Claim) -> bool {
    match claim {
        Claim::String(s) => m.matches(strings, s.as_bytes()),
        Claim::List(items) => items
            .iter()
            .any(|i| matches!(i, Claim::String(s) if m.matches(strings, s.as_bytes()))),
        _ => false,
    }
}

pub(super) fn string_claim<'a>(jwt: &'a Claim, name: &str) -> Option<&'a str> {
    match jwt {
        Claim::Object(fields) => {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| match v {
                    Claim::String(s) => Some(s.as_str()),
                    _ => None,
                })
        }
        _ => None,
    }
}

/// A claim as it is written in the token's JSON: `"admins"`, `["viewers","admins"]`.
pub(super) fn claim_text(claim: &Claim) -> String {
    match claim {
        Claim::String(s) => format!("{s:?}"),
        Claim::List(items) => format!(
            "[{}]",
            items.iter().map(claim_text).collect::<Vec<_>>().join(",")
        ),
        Claim::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", claim_text(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Claim::Other => "a number, boolean or null".into(),
    }
}
