//! The peer identity, read from the peer certificate's SPIFFE principal: `principals`
//! (`source.principal`), `namespaces` (`source.namespace`), `serviceAccounts`
//! (`source.serviceAccount`) and `trustDomains` (`source.trustDomain`). All four are
//! visible everywhere, except `source.serviceAccount` at ztunnel (see [`super::Attr::visible_at`]).

use crate::compile::{Compiled, Matcher};
use crate::intern::Strings;
use crate::matcher::Identity;

/// `principals` / `notPrincipals` / `source.principal`: grammar (a) on the principal without
/// `spiffe://`; at a waypoint `*` is any principal (Envoy regex `.+`).
pub(super) fn principal_hits(m: &Matcher, principal: &str, strings: &Strings) -> bool {
    match m {
        Matcher::Str(s) => principal
            .strip_prefix("spiffe://")
            .is_some_and(|id| s.matches(strings, id.as_bytes())),
        Matcher::AnyPrincipal => !principal.is_empty(),
        _ => false,
    }
}

/// `namespaces` / `notNamespaces` / `source.namespace`: at ztunnel grammar (a) on the
/// namespace of the identity as ztunnel parses it; at a waypoint istiod's regex
/// `.*/ns/<ns>/.*` on the principal.
pub(super) fn namespace_hits(m: &Matcher, principal: &str, compiled: &Compiled) -> bool {
    let strings = &compiled.strings;
    match m {
        Matcher::Str(s) => s.matches(
            strings,
            Identity::parse(principal)
                .map(|i| i.namespace)
                .unwrap_or("")
                .as_bytes(),
        ),
        // The waypoint's `.*/ns/<ns>/.*`: some `/ns/<ns>/` segment.
        Matcher::NamespaceSegment(ns) => {
            let ns = strings.get(*ns);
            namespace_segments(principal).any(|s| s == ns)
        }
        Matcher::NamespaceGlob(g) => compiled
            .globs
            .get(*g as usize)
            .is_some_and(|g| g.matches(principal.as_bytes())),
        _ => false,
    }
}

/// `serviceAccounts` / `notServiceAccounts` / `source.serviceAccount` (`ns/sa`): at ztunnel
/// the parsed identity's namespace and service account; at a waypoint istiod's regex.
pub(super) fn service_account_hits(m: &Matcher, principal: &str, strings: &Strings) -> bool {
    match m {
        Matcher::ServiceAccountRegex(ns, sa) => {
            service_account_regex_matches(principal, strings.get(*ns), strings.get(*sa))
        }
        Matcher::ServiceAccount(ns, sa) => Identity::parse(principal).is_some_and(|i| {
            i.namespace == strings.get(*ns) && i.service_account == strings.get(*sa)
        }),
        _ => false,
    }
}

/// `trustDomains` / `notTrustDomains` / `source.trustDomain`: grammar (a) on the SPIFFE
/// trust domain (`*`: any SPIFFE peer).
pub(super) fn trust_domain_hits(m: &Matcher, principal: &str, strings: &Strings) -> bool {
    match m {
        Matcher::TrustDomain(s) => {
            trust_domain(principal).is_some_and(|td| s.matches(strings, td.as_bytes()))
        }
        _ => false,
    }
}

/// The `<x>` of every `/ns/<x>/` in a principal, without allocating. Occurrences may
/// overlap: in `spiffe://ns/ns/bad/sa/x` the namespace `bad` follows the `/ns/` that begins
/// with the trust domain's closing `/`, so every `/` is tried as the start of one (a
/// non-overlapping search would find only `ns` and never consult the rules for `bad`).
pub(crate) fn namespace_segments(principal: &str) -> impl Iterator<Item = &str> {
    principal.match_indices('/').filter_map(move |(i, _)| {
        let rest = principal.get(i..)?.strip_prefix("/ns/")?;
        let (segment, _) = rest.split_once('/')?;
        (!segment.is_empty()).then_some(segment)
    })
}

/// istiod's waypoint service-account matcher, the RE2 full match of
/// `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` with `<ns>` and `<sa>` literal (istio/istio
/// `pilot/pkg/security/authz/model/generator.go` `serviceAccountRegex`; literal as since the
/// fix that quotes them): extra segments may come before `/ns/`, between the namespace and
/// `sa/`, and after the service account, but the namespace and the service account must be
/// whole segments. RE2's `.` does not match a newline.
fn service_account_regex_matches(principal: &str, ns: &str, sa: &str) -> bool {
    let Some(rest) = principal.strip_prefix("spiffe://") else {
        return false;
    };
    let dot_plus = |s: &str| !s.is_empty() && !s.contains('\n');
    // Every `/ns/<ns>/` with something before it.
    rest.match_indices('/').any(|(i, _)| {
        let (before, from) = rest.split_at(i);
        let Some(after) = from
            .strip_prefix("/ns/")
            .and_then(|r| r.strip_prefix(ns))
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        if !dot_plus(before) {
            return false;
        }
        // `(.+/|)sa/<sa>(/.+)?` on what follows: `sa/` at the start or after a `/` that
        // ends a non-empty middle.
        after.match_indices("sa/").any(|(j, _)| {
            let (middle, from_sa) = after.split_at(j);
            let middle_ok = middle.is_empty()
                || (middle.ends_with('/') && middle.len() >= 2 && !middle.contains('\n'));
            let tail = from_sa.strip_prefix("sa/").and_then(|r| r.strip_prefix(sa));
            middle_ok
                && tail.is_some_and(|t| t.is_empty() || t.strip_prefix('/').is_some_and(dot_plus))
        })
    })
}

/// The trust domain of a SPIFFE principal (`spiffe://<td>/...`).
fn trust_domain(principal: &str) -> Option<&str> {
    let rest = principal.strip_prefix("spiffe://")?;
    let (td, _) = rest.split_once('/')?;
    Some(td)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_regex_as_istiod() {
        // istio/istio pilot/pkg/security/authz/model/generator_test.go TestServiceAccount,
        // for `my-ns/my-sa`.
        let cases = [
            ("spiffe://cluster.local/ns/my-ns/sa/my-sa", true),
            ("spiffe://cluster.local/ns/my-ns/sa/my-sa/k/v", true),
            ("spiffe://cluster.local/k/v/ns/my-ns/sa/my-sa", true),
            ("spiffe://cluster.local/ns/my-ns/k/v/sa/my-sa", true),
            (
                "spiffe://cluster.local/k1/v1/ns/my-ns/k2/v2/sa/my-sa/k3/v3",
                true,
            ),
            ("spiffe://cluster.local/ns/my-ns/sa/my-sa-suffix", false),
            ("spiffe://cluster.local/ns/my-ns-suffix/sa/my-sa", false),
            ("cluster.local/ns/my-ns/sa/my-sa", false),
            ("spiffe://ns/my-ns/sa/my-sa", false),
            ("spiffe://cluster.local/ns/my-ns", false),
            ("spiffe://cluster.local/sa/my-sa", false),
            (
                "spiffe://cluster.local/k/ns/my-ns/something/bar/sa/my-sa/baz",
                true,
            ),
            // Overlapping `/ns/` (a trust domain `ns`), and the edges of `(/.+)?`.
            ("spiffe://ns/ns/my-ns/sa/my-sa", true),
            ("spiffe://cluster.local/ns/my-ns/sa/my-sa/", false),
            ("spiffe://cluster.local/ns/my-ns//sa/my-sa", false),
            ("spiffe://cluster.local/ns/my-ns/x//sa/my-sa", true),
        ];
        for (principal, want) in cases {
            assert_eq!(
                service_account_regex_matches(principal, "my-ns", "my-sa"),
                want,
                "{principal}"
            );
        }
    }
}
