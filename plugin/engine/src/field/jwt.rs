//! The verified JWT, seen at a waypoint's HTTP filter: `requestPrincipals`
//! (`request.auth.principal`) and its claims (`request.auth.audiences`,
//! `request.auth.presenter`, `request.auth.claims[...]`).

use crate::attributes::Claim;
use crate::compile::{Builder, Compiled, Matcher, Pattern};
use crate::intern::Strings;
use crate::matcher::StrMatch;

/// `requestPrincipals` / `notRequestPrincipals` / `request.auth.principal`: the issuer and
/// subject patterns ([`split_request_principal`]).
pub(super) fn compile_request_principal(v: &str, b: &mut Builder) {
    let (iss, sub) = split_request_principal(v);
    let pair = (b.pattern_of(&iss), b.pattern_of(&sub));
    let id = b.request_principal(pair);
    b.push(Matcher::RequestPrincipal(id));
}

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

/// `request.auth.claims[...]` (and `audiences`, `presenter`).
pub(super) fn compile_claim(v: &str, b: &mut Builder) {
    let p = b.pattern(v, false);
    b.push(Matcher::Str(p));
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

/// `requestPrincipals` values: `iss/sub` split at the last `/` (istiod
/// `requestPrincipalGenerator`, docs/semantics.md#jwt).
fn split_request_principal(value: &str) -> (StrMatch, StrMatch) {
    let any = || StrMatch::NonEmpty;
    if value == "*" {
        return (any(), any());
    }
    match value.rsplit_once('/') {
        None => {
            if let Some(p) = value.strip_suffix('*') {
                (StrMatch::Prefix(p.as_bytes().into()), any())
            } else if let Some(s) = value.strip_prefix('*') {
                (any(), StrMatch::Suffix(s.as_bytes().into()))
            } else {
                (
                    StrMatch::Exact(value.as_bytes().into()),
                    StrMatch::Exact(Box::default()),
                )
            }
        }
        Some((iss, sub)) => {
            let iss_match = if iss == "*" {
                any()
            } else if let Some(s) = iss.strip_prefix('*') {
                StrMatch::Suffix(s.as_bytes().into())
            } else {
                StrMatch::Exact(iss.as_bytes().into())
            };
            // With a suffix issuer the subject is exact, trailing `*` included (`*x/y*`).
            let sub_match = if iss.starts_with('*') && iss != "*" {
                StrMatch::Exact(sub.as_bytes().into())
            } else if sub == "*" {
                any()
            } else if let Some(p) = sub.strip_suffix('*') {
                StrMatch::Prefix(p.as_bytes().into())
            } else {
                StrMatch::Exact(sub.as_bytes().into())
            };
            (iss_match, sub_match)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_principal_table() {
        // docs/semantics.md#jwt [ISTIO authz/model/generator_test.go TestRequestPrincipal]
        let e = |s: &str| StrMatch::Exact(s.as_bytes().into());
        let p = |s: &str| StrMatch::Prefix(s.as_bytes().into());
        let s = |x: &str| StrMatch::Suffix(x.as_bytes().into());
        let any = StrMatch::NonEmpty;
        assert_eq!(split_request_principal("*"), (any.clone(), any.clone()));
        assert_eq!(split_request_principal("iss/sub"), (e("iss"), e("sub")));
        assert_eq!(split_request_principal("iss/*"), (e("iss"), any.clone()));
        assert_eq!(split_request_principal("iss/sub*"), (e("iss"), p("sub")));
        assert_eq!(split_request_principal("*/sub"), (any.clone(), e("sub")));
        assert_eq!(split_request_principal("*iss/sub"), (s("iss"), e("sub")));
        assert_eq!(split_request_principal("*x/y*"), (s("x"), e("y*")));
        assert_eq!(
            split_request_principal("prefix*"),
            (p("prefix"), any.clone())
        );
        assert_eq!(
            split_request_principal("*suffix"),
            (any.clone(), s("suffix"))
        );
        assert_eq!(split_request_principal("foo"), (e("foo"), e("")));
        assert_eq!(
            split_request_principal("https://example.com/*"),
            (e("https://example.com"), any)
        );
    }
}
