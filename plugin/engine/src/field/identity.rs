//! The peer identity, read from the peer certificate's SPIFFE principal: `principals`
//! (`source.principal`), `namespaces` (`source.namespace`), `serviceAccounts`
//! (`source.serviceAccount`) and `trustDomains` (`source.trustDomain`). All four are
//! visible everywhere, except `source.serviceAccount` at ztunnel (see [`super::Attr::visible_at`]).

use crate::compile::{Builder, Compiled, Matcher, Pattern};
use crate::config::Mode;
use crate::intern::Strings;
use crate::matcher::{Glob, Identity};

/// `principals` / `notPrincipals` / `source.principal`, each value expanded over the
/// trust-domain aliases ([`expand_principal`]).
pub(super) fn compile_principal(v: &str, mode: Mode, bundle: &[String], b: &mut Builder) {
    for expanded in expand_principal(v, bundle) {
        let m = if expanded == "*" && mode == Mode::Waypoint {
            Matcher::AnyPrincipal
        } else {
            let p = b.pattern(&expanded, false);
            if let Pattern::Prefix(id) = p {
                let prefix = expanded.strip_suffix('*').unwrap_or(&expanded);
                if let Some(ns) = namespace_of_prefix(prefix) {
                    b.prefix_namespace(id, ns);
                }
            }
            Matcher::Str(p)
        };
        b.push(m);
    }
}

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

/// `namespaces` / `notNamespaces` / `source.namespace`.
pub(super) fn compile_namespace(v: &str, mode: Mode, b: &mut Builder) {
    let m = match mode {
        Mode::Ztunnel => Matcher::Str(b.pattern(v, false)),
        Mode::Waypoint => {
            let glob = Glob::new(&format!("*/ns/{v}/*"));
            match glob.literal_namespace() {
                Some(ns) => Matcher::NamespaceSegment(b.intern(ns)),
                None => Matcher::NamespaceGlob(b.glob(glob)),
            }
        }
    };
    b.push(m);
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

/// `serviceAccounts` / `notServiceAccounts` / `source.serviceAccount`, qualified `ns/sa`
/// when parsed.
pub(super) fn compile_service_account(v: &str, mode: Mode, b: &mut Builder) {
    if let Some((ns, sa)) = v.split_once('/') {
        let (ns, sa) = (b.intern(ns), b.intern(sa));
        b.push(match mode {
            // ztunnel compares the parsed identity's namespace and service
            // account (istio/ztunnel `src/rbac.rs`).
            Mode::Ztunnel => Matcher::ServiceAccount(ns, sa),
            // A waypoint runs istiod's regex, which admits extra segments
            // (istio/istio `pilot/pkg/security/authz/model/generator.go`
            // `serviceAccountRegex`, `TestServiceAccount`).
            Mode::Waypoint => Matcher::ServiceAccountRegex(ns, sa),
        });
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

/// `trustDomains` / `notTrustDomains` / `source.trustDomain`: `*`, a domain of the trust
/// bundle (or `cluster.local`: every domain of the bundle), or a pattern.
pub(super) fn compile_trust_domain(v: &str, bundle: &[String], b: &mut Builder) {
    if v == "*" {
        b.push(Matcher::TrustDomain(Pattern::NonEmpty));
    } else if bundle.iter().any(|d| d == v) || v == "cluster.local" {
        for d in bundle {
            let d = b.intern(d);
            b.push(Matcher::TrustDomain(Pattern::Exact(d)));
        }
    } else {
        let p = b.pattern(v, false);
        b.push(Matcher::TrustDomain(p));
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

/// Trust-domain aliases, as istiod's `ReplaceTrustDomainAliases` rewrites `principals`
/// (istio/istio `pilot/pkg/security/trustdomain/bundle.go`, `util.go`): a principal of five
/// `/`-separated parts whose trust domain is not `*` and matches the bundle (exactly, or as a
/// `*suffix` / `prefix*` pattern of a bundle domain) or is `cluster.local` becomes one
/// principal per bundle domain: kept as written for a domain its `*suffix` pattern covers,
/// else with the trust domain replaced by that domain (istiod's golden
/// `simple-policy-principal-with-wildcard` turns `*bar/ns/foo/sa/x` with bundle
/// `[td1, foobar]` into `td1/ns/foo/sa/x` and `*bar/ns/foo/sa/x`). Anything else is kept.
pub(crate) fn expand_principal(value: &str, bundle: &[String]) -> Vec<String> {
    let parts: Vec<&str> = value.split('/').collect();
    let (Some(td), Some(rest)) = (parts.first(), parts.get(1..)) else {
        return vec![value.to_string()];
    };
    // istiod `isTrustDomainBeingEnforced`: five parts and a trust domain other than `*`.
    if parts.len() != 5 || *td == "*" {
        return vec![value.to_string()];
    }
    let suffix_of = |domain: &str| td.strip_prefix('*').is_some_and(|s| domain.ends_with(s));
    // istiod trustdomain `stringMatch` (the pattern may be on either side; bundle domains
    // themselves carry no `*`).
    let matches = |domain: &str| {
        *td == domain
            || suffix_of(domain)
            || td.strip_suffix('*').is_some_and(|p| domain.starts_with(p))
    };
    if !(*td == "cluster.local" || bundle.iter().any(|d| matches(d))) {
        return vec![value.to_string()];
    }
    let tail = rest.join("/");
    let mut out: Vec<String> = Vec::with_capacity(bundle.len());
    for domain in bundle {
        // istiod `replaceTrustDomains`: as written where its `*suffix` covers the domain.
        let principal = if suffix_of(domain) {
            value.to_string()
        } else {
            format!("{domain}/{tail}")
        };
        if !out.contains(&principal) {
            out.push(principal);
        }
    }
    out
}

/// The namespace a principal prefix pins down: `td/ns/team/sa/batch-` → `team`.
fn namespace_of_prefix(prefix: &str) -> Option<&str> {
    let (_, rest) = prefix.split_once('/')?;
    let rest = rest.strip_prefix("ns/")?;
    let (ns, _) = rest.split_once('/')?;
    (!ns.is_empty()).then_some(ns)
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

    #[test]
    fn alias_expansion() {
        let bundle = vec!["new-td".to_string(), "old-td".to_string()];
        assert_eq!(
            expand_principal("cluster.local/ns/foo/sa/x", &bundle),
            vec![
                "new-td/ns/foo/sa/x".to_string(),
                "old-td/ns/foo/sa/x".to_string()
            ]
        );
        assert_eq!(expand_principal("old-td/ns/foo/sa/x", &bundle).len(), 2);
        assert_eq!(
            expand_principal("other/ns/foo/sa/x", &bundle),
            vec!["other/ns/foo/sa/x".to_string()]
        );
        assert_eq!(expand_principal("*", &bundle), vec!["*".to_string()]);
        // istio/istio pilot/pkg/security/authz/builder/testdata/http/
        // simple-policy-principal-with-wildcard-{in,out}.yaml, bundle td1 + foobar.
        let bundle = vec!["td1".to_string(), "foobar".to_string()];
        assert_eq!(
            expand_principal("*bar/ns/foo/sa/x", &bundle),
            vec![
                "td1/ns/foo/sa/x".to_string(),
                "*bar/ns/foo/sa/x".to_string()
            ]
        );
        assert_eq!(
            expand_principal("*/ns/foo/sa/x", &bundle),
            vec!["*/ns/foo/sa/x".to_string()]
        );
        // A `*suffix` covering no bundle domain is kept as written.
        assert_eq!(
            expand_principal("*baz/ns/foo/sa/x", &bundle),
            vec!["*baz/ns/foo/sa/x".to_string()]
        );
        // A `prefix*` trust domain is replaced by every bundle domain.
        assert_eq!(
            expand_principal("td*/ns/foo/sa/x", &bundle),
            vec![
                "td1/ns/foo/sa/x".to_string(),
                "foobar/ns/foo/sa/x".to_string()
            ]
        );
    }
}
