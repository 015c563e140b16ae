//! Value grammars of the AuthorizationPolicy API (docs/semantics.md#value-grammars), compiled once.

use std::net::IpAddr;

/// Istio's generic string grammar (a): `*` presence, `*x` suffix, `x*` prefix, else exact.
/// A `*` in the middle is a literal character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrMatch {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    /// `*`: a non-empty value (Envoy regex `.+`).
    NonEmpty,
    /// `*` for headers, methods and hosts: the header is present, even with an empty value
    /// (Envoy `present_match`).
    Present,
}

impl StrMatch {
    /// Grammar (a). `star_is_presence` selects `present_match` semantics for `*`.
    pub fn parse(value: &str, star_is_presence: bool) -> StrMatch {
        if value == "*" {
            if star_is_presence {
                StrMatch::Present
            } else {
                StrMatch::NonEmpty
            }
        } else if let Some(rest) = value.strip_prefix('*') {
            StrMatch::Suffix(rest.as_bytes().into())
        } else if let Some(rest) = value.strip_suffix('*') {
            StrMatch::Prefix(rest.as_bytes().into())
        } else {
            StrMatch::Exact(value.as_bytes().into())
        }
    }

    /// Lower-cases the pattern for case-insensitive matching (hosts).
    pub fn to_lowercase(&self) -> StrMatch {
        let lower = |b: &[u8]| -> Box<[u8]> { b.to_ascii_lowercase().into() };
        match self {
            StrMatch::Exact(b) => StrMatch::Exact(lower(b)),
            StrMatch::Prefix(b) => StrMatch::Prefix(lower(b)),
            StrMatch::Suffix(b) => StrMatch::Suffix(lower(b)),
            other => other.clone(),
        }
    }

    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            StrMatch::Exact(e) => value == &e[..],
            StrMatch::Prefix(p) => value.starts_with(p),
            StrMatch::Suffix(s) => value.ends_with(s),
            StrMatch::NonEmpty => !value.is_empty(),
            StrMatch::Present => true,
        }
    }

    /// Case-insensitive match; the pattern must already be lower case.
    pub fn matches_ignore_case(&self, value: &[u8]) -> bool {
        match self {
            StrMatch::Exact(e) => value.eq_ignore_ascii_case(e),
            StrMatch::Prefix(p) => {
                value.len() >= p.len()
                    && value
                        .get(..p.len())
                        .is_some_and(|v| v.eq_ignore_ascii_case(p))
            }
            StrMatch::Suffix(s) => {
                value.len() >= s.len()
                    && value
                        .get(value.len() - s.len()..)
                        .is_some_and(|v| v.eq_ignore_ascii_case(s))
            }
            StrMatch::NonEmpty => !value.is_empty(),
            StrMatch::Present => true,
        }
    }

    /// The exact value, if this is an exact match (used for indexing).
    pub fn exact(&self) -> Option<&[u8]> {
        match self {
            StrMatch::Exact(e) => Some(e),
            _ => None,
        }
    }
}

/// An IP address or CIDR block (grammar (j)); host bits are allowed and masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, `::1`, `fd00::/8`, as Go's netip does (no leading zeros
    /// in IPv4 octets, no zone).
    pub fn parse(value: &str) -> Option<Cidr> {
        let (addr_part, prefix_part) = match value.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (value, None),
        };
        let addr: IpAddr = addr_part.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_part {
            None => max,
            Some(p) => {
                if p.is_empty()
                    || p.len() > 3
                    || !p.bytes().all(|b| b.is_ascii_digit())
                    || (p.len() > 1 && p.starts_with('0'))
                {
                    return None;
                }
                let n: u8 = p.parse().ok()?;
                if n > max {
                    return None;
                }
                n
            }
        };
        Some(Cidr { addr, prefix })
    }

    /// IPv4 blocks never contain IPv6 addresses and vice versa.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let shift = 32 - u32::from(self.prefix);
                let mask = if shift >= 32 { 0 } else { u32::MAX << shift };
                (u32::from(net) & mask) == (u32::from(ip) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let shift = 128 - u32::from(self.prefix);
                let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

/// A path template with `{*}` and `{**}` (Envoy `uri_template`, docs/semantics.md#paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathTemplate {
    /// Tokens before the `{**}` (or all of them when there is none).
    head: Vec<Token>,
    /// Literal text after the `{**}`, when there is one.
    tail: Option<Box<[u8]>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Token {
    Literal(Box<[u8]>),
    /// `{*}`: one or more pchar, never `/`.
    Segment,
}

/// RFC 3986 pchar as Envoy's template regex spells it: `[a-zA-Z0-9-._~%!$&'()+,;:@=]`.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
}

/// Why a path template is refused; `Display` is the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// Not starting with `/`.
    NotAbsolute,
    /// `{*}` or `{**}` after `{**}`.
    AfterDoubleGlob,
    /// A segment mixing an operator with text (`{*}.txt`), or an unknown operator (`{x}`).
    MixedSegment(String),
    /// A segment with a character outside RFC 3986 pchar.
    NotPchar(String),
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::NotAbsolute => f.write_str("a path template must start with \"/\""),
            TemplateError::AfterDoubleGlob => f.write_str("no {*} or {**} may follow {**}"),
            TemplateError::MixedSegment(segment) => write!(
                f,
                "segment \"{segment}\" mixes an operator with text; a segment is {{*}}, {{**}} or literal"
            ),
            TemplateError::NotPchar(segment) => write!(
                f,
                "segment \"{segment}\" has a character that is not a URI pchar"
            ),
        }
    }
}

impl PathTemplate {
    /// Validates as istiod's `CheckValidPathTemplate` and Envoy's template parser do.
    pub fn parse(value: &str) -> Result<PathTemplate, TemplateError> {
        if !value.starts_with('/') {
            return Err(TemplateError::NotAbsolute);
        }
        let trimmed = value.trim_matches('/');
        let mut seen_double = false;
        for segment in trimmed.split('/') {
            match segment {
                "{*}" | "{**}" => {
                    if seen_double {
                        return Err(TemplateError::AfterDoubleGlob);
                    }
                    seen_double = segment == "{**}";
                }
                _ => {
                    if segment.contains('{') || segment.contains('}') {
                        return Err(TemplateError::MixedSegment(segment.to_string()));
                    }
                    if !segment.bytes().all(is_pchar) {
                        return Err(TemplateError::NotPchar(segment.to_string()));
                    }
                }
            }
        }
        // Tokenise the whole template: literal runs (slashes included) and operators.
        let mut head = Vec::new();
        let mut tail = None;
        let mut literal = Vec::new();
        let mut rest = value.as_bytes();
        let mut after_double = false;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix(b"{**}") {
                if !literal.is_empty() {
                    head.push(Token::Literal(std::mem::take(&mut literal).into()));
                }
                after_double = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix(b"{*}") {
                if !literal.is_empty() {
                    head.push(Token::Literal(std::mem::take(&mut literal).into()));
                }
                head.push(Token::Segment);
                rest = r;
            } else if let Some((b, r)) = rest.split_first() {
                literal.push(*b);
                rest = r;
            }
        }
        if after_double {
            tail = Some(literal.into());
        } else if !literal.is_empty() {
            head.push(Token::Literal(literal.into()));
        }
        Ok(PathTemplate { head, tail })
    }

    /// Full match of `path` (query and fragment already removed).
    pub fn matches(&self, path: &[u8]) -> bool {
        let mut pos = 0usize;
        for token in &self.head {
            let rest = path.get(pos..).unwrap_or_default();
            match token {
                Token::Literal(lit) => {
                    if !rest.starts_with(lit) {
                        return false;
                    }
                    pos += lit.len();
                }
                Token::Segment => {
                    // [pchar]+ cannot cross '/', so it ends at the next non-pchar byte.
                    let n = rest.iter().take_while(|b| is_pchar(**b)).count();
                    if n == 0 {
                        return false;
                    }
                    pos += n;
                }
            }
        }
        match &self.tail {
            None => pos == path.len(),
            Some(tail) => {
                if path.len() < pos + tail.len() || !path.ends_with(tail) {
                    return false;
                }
                let middle = path.get(pos..path.len() - tail.len()).unwrap_or_default();
                middle.iter().all(|b| *b == b'/' || is_pchar(*b))
            }
        }
    }
}

/// The path without query string and fragment, as Envoy's `url_path` matcher sees it.
pub fn url_path(path: &[u8]) -> &[u8] {
    let end = path
        .iter()
        .position(|b| *b == b'?' || *b == b'#')
        .unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

/// A glob where every `*` matches any run of bytes (Envoy regex `.*` from the waypoint's
/// namespace matcher), anchored at both ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    pieces: Vec<Box<[u8]>>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pieces: pattern.split('*').map(|p| p.as_bytes().into()).collect(),
        }
    }

    /// For the waypoint's namespace pattern `*/ns/<ns>/*` with no wildcard in `<ns>`: `<ns>`.
    pub fn literal_namespace(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [first, middle, last] if first.is_empty() && last.is_empty() => {
                let inner = middle.strip_prefix(b"/ns/")?.strip_suffix(b"/")?;
                std::str::from_utf8(inner)
                    .ok()
                    .filter(|s| !s.is_empty() && !s.contains('/'))
            }
            _ => None,
        }
    }

    pub fn matches(&self, value: &[u8]) -> bool {
        let Some((first, rest)) = self.pieces.split_first() else {
            return value.is_empty();
        };
        if !value.starts_with(first) {
            return false;
        }
        let mut pos = first.len();
        let Some((last, middle)) = rest.split_last() else {
            return value.len() == first.len();
        };
        for piece in middle {
            let hay = value.get(pos..).unwrap_or_default();
            match find(hay, piece) {
                Some(at) => pos += at + piece.len(),
                None => return false,
            }
        }
        value.len() >= pos + last.len() && value.ends_with(last)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A SPIFFE identity `spiffe://<td>/ns/<ns>/sa/<sa>`, parsed as ztunnel does (exactly five
/// `/`-separated parts after the scheme, literal `ns` and `sa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub trust_domain: &'a str,
    pub namespace: &'a str,
    pub service_account: &'a str,
}

impl<'a> Identity<'a> {
    pub fn parse(uri: &'a str) -> Option<Identity<'a>> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let td = parts.next()?;
        if parts.next()? != "ns" {
            return None;
        }
        let ns = parts.next()?;
        if parts.next()? != "sa" {
            return None;
        }
        let sa = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Identity {
            trust_domain: td,
            namespace: ns,
            service_account: sa,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_grammar() {
        // [ZT src/rbac.rs string_match], docs/semantics.md#ztunnel-matching.
        let exact = StrMatch::parse("foo", false);
        assert!(exact.matches(b"foo") && !exact.matches(b"not") && !exact.matches(b""));
        let prefix = StrMatch::parse("foo*", false);
        assert!(prefix.matches(b"foobar") && !prefix.matches(b"notfoo") && !prefix.matches(b""));
        let suffix = StrMatch::parse("*foo", false);
        assert!(suffix.matches(b"barfoo") && !suffix.matches(b"foonot") && !suffix.matches(b""));
        let presence = StrMatch::parse("*", false);
        assert!(presence.matches(b"foo") && !presence.matches(b""));
        assert!(StrMatch::parse("*", true).matches(b""));
        // A middle star is literal; `*x*` is a suffix match on `x*`.
        assert!(StrMatch::parse("a*b", false).matches(b"a*b"));
        assert!(!StrMatch::parse("a*b", false).matches(b"axb"));
        assert!(StrMatch::parse("*x*", false).matches(b"ax*"));
    }

    #[test]
    fn host_ignores_case() {
        let m = StrMatch::parse("*.Example.com", true).to_lowercase();
        assert!(m.matches_ignore_case(b"WWW.EXAMPLE.COM"));
        assert!(!m.matches_ignore_case(b"example.com"));
    }

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.300").is_none());
        assert!(Cidr::parse("010.0.0.1").is_none());
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.0/").is_none());
        assert!(Cidr::parse("").is_none());
    }

    #[test]
    fn path_templates_match_istio_integration_cases() {
        // [ISTIO tests/integration/security/authz_test.go TestAuthz_PathTemplating]
        let ts: Vec<PathTemplate> = ["/allow/admin/{**}", "/foo/{*}/bar/{**}", "/store/{**}/cart"]
            .iter()
            .map(|t| PathTemplate::parse(t).unwrap())
            .collect();
        let any = |p: &str| ts.iter().any(|t| t.matches(url_path(p.as_bytes())));
        for allowed in [
            "/allow/admin/",
            "/allow/admin/temp",
            "/allow/admin/temp.txt",
            "/allow/admin/foo/temp.txt",
            "/foo/buzz/bar/bat.txt",
            "/foo/buzz/bar/bat.temp.txt",
            "/foo/buzz/bar/bat/fuzz.txt",
            "/foo/buzz/bar/bat",
            "/store//cart",
            "/store/foo/cart",
            "/store/foo/bar/cart",
        ] {
            assert!(any(allowed), "{allowed} should match");
        }
        for denied in [
            "/allow/admin",
            "/allow/user/",
            "/allow/admin?param=value",
            "/allow",
            "/foo/bar/bat.txt",
            "/foo//bar/bat.txt",
            "/store/cart",
        ] {
            assert!(!any(denied), "{denied} should not match");
        }
    }

    #[test]
    fn invalid_templates() {
        assert_eq!(
            PathTemplate::parse("/foo/{*}.txt"),
            Err(TemplateError::MixedSegment("{*}.txt".into()))
        );
        assert_eq!(
            PathTemplate::parse("/foo/{**}/{*}"),
            Err(TemplateError::AfterDoubleGlob)
        );
        assert_eq!(
            PathTemplate::parse("foo/{*}"),
            Err(TemplateError::NotAbsolute)
        );
        assert_eq!(
            PathTemplate::parse("/foo/{x}"),
            Err(TemplateError::MixedSegment("{x}".into()))
        );
        assert_eq!(
            PathTemplate::parse("/foo/b ar"),
            Err(TemplateError::NotPchar("b ar".into()))
        );
        assert!(PathTemplate::parse("/foo/{**}/bar").is_ok());
    }

    #[test]
    fn glob() {
        let g = Glob::new("*/ns/ns.*.prod/*");
        assert!(g.matches(b"spiffe://td/ns/ns.any.prod/sa/x"));
        assert!(!g.matches(b"spiffe://td/ns/other/sa/x"));
        assert!(Glob::new("abc").matches(b"abc"));
        assert!(!Glob::new("abc").matches(b"abcd"));
        assert!(Glob::new("a*").matches(b"a"));
    }

    #[test]
    fn identity() {
        let id = Identity::parse("spiffe://cluster.local/ns/default/sa/curl").unwrap();
        assert_eq!(
            (id.trust_domain, id.namespace, id.service_account),
            ("cluster.local", "default", "curl")
        );
        assert!(Identity::parse("spiffe://cluster.local/ns/default/sa/curl/x").is_none());
        assert!(Identity::parse("cluster.local/ns/default/sa/curl").is_none());
    }
}
