//! What only an HTTP request carries, seen at a waypoint's HTTP filter: `hosts`
//! (`:authority`), `methods`, `paths` and `request.headers[<name>]`.

use crate::attributes::HeaderValues;
use crate::compile::{Builder, Compiled, Matcher};
use crate::intern::Strings;
use crate::matcher::{PathTemplate, StrMatch};

/// `hosts` / `notHosts`: the pattern lower-cased, `*` presence.
pub(super) fn compile_host(v: &str, b: &mut Builder) {
    let p = b.pattern_of(&StrMatch::parse(v, true).to_lowercase());
    b.push(Matcher::Host(p));
}

/// `hosts` / `notHosts`: case-insensitive grammar (a) on `:authority`.
pub(super) fn host_hits(m: &Matcher, host: &[u8], strings: &Strings) -> bool {
    match m {
        Matcher::Host(s) => s.matches_ignore_case(strings, host),
        _ => false,
    }
}

/// `methods` / `notMethods` and `request.headers[<name>]`: `*` is presence.
pub(super) fn compile_method_or_header(v: &str, b: &mut Builder) {
    let p = b.pattern(v, true);
    b.push(Matcher::Str(p));
}

/// `methods` / `notMethods`: grammar (a), `*` any method present.
pub(super) fn method_hits(m: &Matcher, method: &[u8], strings: &Strings) -> bool {
    match m {
        Matcher::Str(s) => s.matches(strings, method),
        _ => false,
    }
}

/// `paths` / `notPaths`: a path template when it has `{`, else grammar (a).
pub(super) fn compile_path(v: &str, b: &mut Builder) {
    if v.contains('{') {
        if let Ok(t) = PathTemplate::parse(v) {
            let id = b.template(t);
            b.push(Matcher::PathTemplate(id));
        }
    } else {
        let p = b.pattern(v, false);
        b.push(Matcher::Path(p));
    }
}

/// `paths` / `notPaths`: grammar (a) or a path template on the path without its query.
pub(super) fn path_hits(m: &Matcher, path: &[u8], compiled: &Compiled) -> bool {
    match m {
        Matcher::Path(s) => s.matches(&compiled.strings, path),
        Matcher::PathTemplate(t) => compiled
            .templates
            .get(*t as usize)
            .is_some_and(|t| t.matches(path)),
        _ => false,
    }
}

/// `request.headers[<name>]`: grammar (a) on some occurrence of the header.
///
/// Envoy 1.40 RBAC `HeaderMatcher` with `rbac_match_headers_individually` (on by
/// default): the matcher holds when any one occurrence matches (envoyproxy/envoy
/// `source/extensions/filters/common/rbac/matchers.cc`). istiod wraps `notValues` in a
/// `not_id` around the same matcher (istio/istio `pilot/pkg/security/authz/model/model.go`),
/// so a `notValues` entry holds only when no occurrence matches it: an ALLOW with
/// `notValues: [admin]` does not hold for `x: user` + `x: admin`.
pub(super) fn header_hits(m: &Matcher, values: &HeaderValues, strings: &Strings) -> bool {
    match m {
        Matcher::Str(s) => values.iter().any(|v| s.matches(strings, v)),
        _ => false,
    }
}
