//! Each attribute in one place: its API names, where it can be seen, how its written
//! values are checked and compiled, how its value is fetched from the connection or request,
//! how that value is matched, and how it reads in an explanation.
//!
//! Where to look, e.g. for "how is `notPrincipals` matched":
//!
//! | attribute | `source` / `operation` field | `when` key | file |
//! |---|---|---|---|
//! | [`Attr::Principal`] | `principals` | `source.principal` | `identity.rs` |
//! | [`Attr::Namespace`] | `namespaces` | `source.namespace` | `identity.rs` |
//! | [`Attr::ServiceAccount`] | `serviceAccounts` | `source.serviceAccount` | `identity.rs` |
//! | [`Attr::TrustDomain`] | `trustDomains` | `source.trustDomain` | `identity.rs` |
//! | [`Attr::SourceIp`] | `ipBlocks` | `source.ip` | `network.rs` |
//! | [`Attr::RemoteIp`] | `remoteIpBlocks` | `remote.ip` | `network.rs` |
//! | [`Attr::DestinationIp`] | | `destination.ip` | `network.rs` |
//! | [`Attr::Port`] | `ports` | `destination.port` | `network.rs` |
//! | [`Attr::Sni`] | | `connection.sni` | `network.rs` |
//! | [`Attr::Host`] | `hosts` | | `request.rs` |
//! | [`Attr::Method`] | `methods` | | `request.rs` |
//! | [`Attr::Path`] | `paths` | | `request.rs` |
//! | [`Attr::Header`] | | `request.headers[<name>]` | `request.rs` |
//! | [`Attr::RequestPrincipal`] | `requestPrincipals` | `request.auth.principal` | `jwt.rs` |
//! | [`Attr::Claim`] | | `request.auth.claims[...]`, `.audiences`, `.presenter` | `jwt.rs` |
//!
//! Each `not` field (`notPrincipals`) and each `notValues` is the same attribute with the
//! same matchers, on the other side of [`Attr::holds`]. This file names the attributes
//! ([`SOURCE_FIELDS`], [`OPERATION_FIELDS`], [`Attr::from_when_key`]), says where each is
//! visible ([`Attr::visible_at`]), fetches its value ([`Attr::value`]) and dispatches to the
//! family file, which compiles a written value into [`Matcher`]s (`compile_*`) and matches
//! one of them (`*_hits`). The parser (`policy.rs`) and the compiler (`compile.rs`) only
//! call these; the evaluator (`evaluate.rs`) walks rules, clauses and entries and asks
//! [`Attr::holds`] of each test.

mod identity;
mod jwt;
mod network;
mod request;

use super::attributes::{Attributes, Claim, HeaderValues};
use super::compile::{Builder, Compiled, Matcher, Point};
use super::config::Mode;
use super::error::{ConfigError, ErrorKind};
use super::json::Result;
use super::matcher::url_path;
use super::policy::{check_ip, check_path, check_port, check_service_account, check_trust_domain};
use jwt::{claim_text, string_claim};
use std::net::IpAddr;

pub(crate) use identity::namespace_segments;
pub(crate) use network::canonical;

/// The attribute a field or `when` key reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attr {
    /// Peer identity (`principals`, `source.principal`).
    Principal,
    /// Namespace of the peer identity (`namespaces`, `source.namespace`).
    Namespace,
    /// `serviceAccounts`, `source.serviceAccount`.
    ServiceAccount,
    /// `trustDomains`, `source.trustDomain`.
    TrustDomain,
    /// `ipBlocks`, `source.ip`.
    SourceIp,
    /// `remoteIpBlocks`, `remote.ip`.
    RemoteIp,
    /// `requestPrincipals`, `request.auth.principal`.
    RequestPrincipal,
    /// `request.auth.audiences`, `request.auth.presenter`, `request.auth.claims[...]`: the
    /// claim path (`aud`, `azp`, or the bracketed path).
    Claim(Vec<Box<str>>),
    /// `hosts` (`:authority`).
    Host,
    /// `ports`, `destination.port`.
    Port,
    /// `methods`.
    Method,
    /// `paths`.
    Path,
    /// `request.headers[<name>]`, lower-cased.
    Header(Box<str>),
    /// `destination.ip`.
    DestinationIp,
    /// `connection.sni`.
    Sni,
    /// `experimental.envoy.filters.*`: accepted by Istio, not evaluable here; converted in
    /// the fail-safe direction like Layer 7 content at ztunnel.
    Experimental(Box<str>),
}

/// Source fields: (positive name, negative name, attribute).
pub(crate) const SOURCE_FIELDS: &[(&str, &str, Attr)] = &[
    ("principals", "notPrincipals", Attr::Principal),
    (
        "requestPrincipals",
        "notRequestPrincipals",
        Attr::RequestPrincipal,
    ),
    ("namespaces", "notNamespaces", Attr::Namespace),
    (
        "serviceAccounts",
        "notServiceAccounts",
        Attr::ServiceAccount,
    ),
    ("ipBlocks", "notIpBlocks", Attr::SourceIp),
    ("remoteIpBlocks", "notRemoteIpBlocks", Attr::RemoteIp),
    ("trustDomains", "notTrustDomains", Attr::TrustDomain),
];

/// Every key of a `source`, in `SOURCE_FIELDS`' order (what an unknown key's error lists).
pub(crate) const SOURCE_KEYS: [&str; 14] = field_keys(SOURCE_FIELDS);
const _: () = assert!(SOURCE_KEYS.len() == 2 * SOURCE_FIELDS.len());

/// Operation fields: (positive name, negative name, attribute).
pub(crate) const OPERATION_FIELDS: &[(&str, &str, Attr)] = &[
    ("hosts", "notHosts", Attr::Host),
    ("ports", "notPorts", Attr::Port),
    ("methods", "notMethods", Attr::Method),
    ("paths", "notPaths", Attr::Path),
];

/// Every key of an `operation`, in `OPERATION_FIELDS`' order.
pub(crate) const OPERATION_KEYS: [&str; 8] = field_keys(OPERATION_FIELDS);
const _: () = assert!(OPERATION_KEYS.len() == 2 * OPERATION_FIELDS.len());

/// Both names of each field, positive then negative: the keys a `source` or `operation`
/// may have. Computed at compile time: built at run time it cost the module code. (Indexing
/// here runs in the compiler only, where an out-of-bounds index is a build error.)
#[allow(clippy::indexing_slicing)]
const fn field_keys<T, const N: usize>(
    fields: &[(&'static str, &'static str, T)],
) -> [&'static str; N] {
    let mut keys = [""; N];
    let mut i = 0;
    while i < fields.len() && 2 * i + 1 < N {
        keys[2 * i] = fields[i].0;
        keys[2 * i + 1] = fields[i].1;
        i += 1;
    }
    keys
}

impl Attr {
    /// The attribute a `when` key names (istiod `ValidateAttribute`,
    /// docs/semantics.md#when-conditions).
    pub(crate) fn from_when_key(key: &str, path: &str) -> Result<Attr> {
        let attr = match key {
            "source.ip" => Attr::SourceIp,
            "remote.ip" => Attr::RemoteIp,
            "source.namespace" => Attr::Namespace,
            "source.principal" => Attr::Principal,
            "source.serviceAccount" => Attr::ServiceAccount,
            "source.trustDomain" => Attr::TrustDomain,
            "request.auth.principal" => Attr::RequestPrincipal,
            "request.auth.audiences" => Attr::Claim(vec!["aud".into()]),
            "request.auth.presenter" => Attr::Claim(vec!["azp".into()]),
            "destination.ip" => Attr::DestinationIp,
            "destination.port" => Attr::Port,
            "connection.sni" => Attr::Sni,
            "destination.namespace" => {
                return Err(ConfigError::new(
                    ErrorKind::Unsupported,
                    path,
                    "\"destination.namespace\" is not supported, replaced by metadata.namespace",
                ))
            }
            "destination.name" | "destination.user" => {
                return Err(ConfigError::new(
                    ErrorKind::Unsupported,
                    path,
                    format!("\"{key}\" is only supported in v1alpha1"),
                ))
            }
            _ => {
                if let Some(rest) = key.strip_prefix("request.headers") {
                    let name = bracket_key(rest, key, path)?;
                    Attr::Header(name.to_ascii_lowercase().into())
                } else if let Some(rest) = key.strip_prefix("request.auth.claims") {
                    let inner = bracket_key(rest, key, path)?;
                    let claim_path = claim_path(inner).ok_or_else(|| {
                        ConfigError::new(
                            ErrorKind::InvalidValue,
                            path,
                            format!("\"{key}\": malformed claim path"),
                        )
                    })?;
                    // The module reads the JWT payload as deep as the longest claim path (see
                    // `Engine::jwt_depth`); a bound keeps that read's recursion small. Refused
                    // rather than evaluated on a truncated payload.
                    if claim_path.len() > MAX_CLAIM_PATH {
                        return Err(ConfigError::new(
                            ErrorKind::TooMany,
                            path,
                            format!(
                                "\"{key}\": a claim path of {} keys; at most {MAX_CLAIM_PATH}",
                                claim_path.len()
                            ),
                        ));
                    }
                    Attr::Claim(claim_path)
                } else if key.starts_with("destination.labels") {
                    return Err(ConfigError::new(
                        ErrorKind::Unsupported,
                        path,
                        "\"destination.labels\" is not supported, replaced by the workload selector",
                    ));
                } else if let Some(rest) = key.strip_prefix("experimental.envoy.filters.") {
                    if !rest.contains('[') || !key.ends_with(']') {
                        return Err(ConfigError::new(
                            ErrorKind::InvalidValue,
                            path,
                            format!(
                                "\"{key}\": expected experimental.envoy.filters.<filter>[<key>]"
                            ),
                        ));
                    }
                    Attr::Experimental(key.into())
                } else {
                    return Err(ConfigError::new(
                        ErrorKind::InvalidValue,
                        path,
                        format!("unknown attribute \"{key}\""),
                    ));
                }
            }
        };
        Ok(attr)
    }

    /// Attributes only an HTTP request carries (istiod's "is HTTP only" for TCP chains).
    pub fn http_only(&self) -> bool {
        matches!(
            self,
            Attr::RequestPrincipal
                | Attr::Claim(_)
                | Attr::Host
                | Attr::Method
                | Attr::Path
                | Attr::Header(_)
        )
    }

    /// The peer identity and the JWT, which a CUSTOM policy may not test: the external
    /// authorizer runs before identity and JWT checks.
    pub(crate) fn refused_in_custom(&self) -> bool {
        matches!(
            self,
            Attr::Principal
                | Attr::RequestPrincipal
                | Attr::Namespace
                | Attr::ServiceAccount
                | Attr::TrustDomain
                | Attr::Claim(_)
        )
    }

    /// The check every value of `attr` must pass, wherever it is written (a source, an
    /// operation, a condition).
    pub(crate) fn check_value(&self, v: &str, path: &str) -> Result<()> {
        match self {
            Attr::SourceIp | Attr::RemoteIp | Attr::DestinationIp => check_ip(v, path),
            Attr::Port => check_port(v, path).map(|_| ()),
            Attr::ServiceAccount => check_service_account(v, path),
            Attr::TrustDomain => check_trust_domain(v, path),
            Attr::Path => check_path(v, path),
            _ => Ok(()),
        }
    }

    /// How deep into the JWT payload this attribute reads (0: not at all).
    pub(crate) fn jwt_depth(&self) -> usize {
        match self {
            Attr::RequestPrincipal => 1,
            Attr::Claim(path) => path.len() + 1,
            _ => 0,
        }
    }
}

/// How a field was written: in a `source` or an `operation` (`principals`), or as a `when`
/// condition, whose key names the attribute (`source.principal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Written {
    Field,
    Condition,
}

impl Attr {
    /// Whether `point` can evaluate this attribute written as `written`.
    pub(crate) fn visible_at(&self, point: Point, written: Written) -> bool {
        match point {
            // istiod `l4WhenAttributes` and `handleRule`: only these reach ztunnel.
            Point::Ztunnel => match self {
                Attr::Principal
                | Attr::Namespace
                | Attr::SourceIp
                | Attr::Port
                | Attr::DestinationIp => true,
                // `serviceAccounts` is a ztunnel field; `source.serviceAccount` is not an
                // L4 `when` key (docs/semantics.md#when-conditions).
                Attr::ServiceAccount => written == Written::Field,
                _ => false,
            },
            Point::WaypointHttp => !matches!(self, Attr::Experimental(_)),
            Point::WaypointTcp => !self.http_only() && !matches!(self, Attr::Experimental(_)),
        }
    }

    /// The value this attribute reads, fetched once per test.
    fn value<'a>(&'a self, attrs: &'a dyn Attributes) -> Value<'a> {
        match self {
            Attr::Principal | Attr::Namespace | Attr::ServiceAccount | Attr::TrustDomain => {
                Value::Principal(attrs.peer_principal())
            }
            Attr::SourceIp => Value::Ip(attrs.source_ip().map(canonical)),
            Attr::RemoteIp => Value::Ip(attrs.remote_ip().map(canonical)),
            Attr::DestinationIp => Value::Ip(attrs.destination_ip().map(canonical)),
            Attr::Port => Value::Port(attrs.destination_port()),
            Attr::Host => Value::Bytes(attrs.host()),
            Attr::Method => Value::Bytes(attrs.method()),
            Attr::Path => Value::Bytes(attrs.path().map(url_path)),
            Attr::Header(name) => Value::Headers(attrs.header(name)),
            Attr::Sni => Value::Bytes(attrs.sni().map(str::as_bytes)),
            Attr::RequestPrincipal => Value::Jwt(attrs.jwt()),
            Attr::Claim(path) => Value::Claim(attrs.jwt().and_then(|j| j.get(path))),
            Attr::Experimental(_) => Value::Missing,
        }
    }

    /// Compiles one written value of this attribute into its matchers (none when the value
    /// cannot match anything here).
    pub(crate) fn compile(&self, v: &str, mode: Mode, bundle: &[String], b: &mut Builder) {
        match self {
            Attr::Principal => identity::compile_principal(v, mode, bundle, b),
            Attr::Namespace => identity::compile_namespace(v, mode, b),
            Attr::ServiceAccount => identity::compile_service_account(v, mode, b),
            Attr::TrustDomain => identity::compile_trust_domain(v, bundle, b),
            Attr::SourceIp | Attr::RemoteIp | Attr::DestinationIp => network::compile_ip(v, b),
            Attr::Port => network::compile_port(v, b),
            Attr::Sni => network::compile_sni(v, b),
            Attr::Host => request::compile_host(v, b),
            Attr::Method | Attr::Header(_) => request::compile_method_or_header(v, b),
            Attr::Path => request::compile_path(v, b),
            Attr::RequestPrincipal => jwt::compile_request_principal(v, b),
            Attr::Claim(_) => jwt::compile_claim(v, b),
            Attr::Experimental(_) => {}
        }
    }

    /// Whether a test of this attribute holds: some value matches (or none is written) and
    /// no notValue matches. The value is fetched once for the whole test.
    pub(crate) fn holds(
        &self,
        values: &[Matcher],
        not_values: &[Matcher],
        attrs: &dyn Attributes,
        compiled: &Compiled,
    ) -> bool {
        let value = self.value(attrs);
        let hit = |m: &Matcher| self.hits(m, &value, compiled);
        (values.is_empty() || values.iter().any(hit)) && !not_values.iter().any(hit)
    }

    /// Whether one compiled value of this attribute matches the fetched value.
    fn hits(&self, m: &Matcher, value: &Value, compiled: &Compiled) -> bool {
        let strings = &compiled.strings;
        match (self, value) {
            (Attr::Principal, Value::Principal(Some(p))) => identity::principal_hits(m, p, strings),
            (Attr::Namespace, Value::Principal(Some(p))) => {
                identity::namespace_hits(m, p, compiled)
            }
            (Attr::ServiceAccount, Value::Principal(Some(p))) => {
                identity::service_account_hits(m, p, strings)
            }
            (Attr::TrustDomain, Value::Principal(Some(p))) => {
                identity::trust_domain_hits(m, p, strings)
            }
            (Attr::SourceIp | Attr::RemoteIp | Attr::DestinationIp, Value::Ip(Some(ip))) => {
                network::ip_hits(m, *ip, compiled)
            }
            (Attr::Port, Value::Port(Some(port))) => network::port_hits(m, *port),
            (Attr::Sni, Value::Bytes(Some(sni))) => network::sni_hits(m, sni, strings),
            (Attr::Host, Value::Bytes(Some(host))) => request::host_hits(m, host, strings),
            (Attr::Method, Value::Bytes(Some(method))) => request::method_hits(m, method, strings),
            (Attr::Path, Value::Bytes(Some(path))) => request::path_hits(m, path, compiled),
            (Attr::Header(_), Value::Headers(h)) => request::header_hits(m, h, strings),
            (Attr::RequestPrincipal, Value::Jwt(Some(jwt))) => {
                jwt::request_principal_hits(m, jwt, compiled)
            }
            (Attr::Claim(_), Value::Claim(Some(c))) => jwt::claim_hits(m, c, strings),
            // An absent attribute matches no value, so only notValues can hold.
            _ => false,
        }
    }

    /// The value this attribute reads, as an explanation shows it.
    pub(crate) fn describe(&self, attrs: &dyn Attributes) -> String {
        let lossy = |b: Option<&[u8]>| match b {
            Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
            None => "absent".into(),
        };
        match self.value(attrs) {
            Value::Principal(Some(p)) => format!("peer {p:?}"),
            Value::Principal(None) => "no peer certificate".into(),
            Value::Bytes(b) => lossy(b),
            Value::Headers(h) if h.is_empty() => "absent".into(),
            Value::Headers(h) => h
                .iter()
                .map(|v| lossy(Some(v)))
                .collect::<Vec<_>>()
                .join(" + "),
            Value::Ip(Some(ip)) => ip.to_string(),
            Value::Port(Some(p)) => p.to_string(),
            Value::Claim(Some(c)) => claim_text(c),
            Value::Jwt(Some(j)) => format!(
                "iss {:?}, sub {:?}",
                string_claim(j, "iss").unwrap_or(""),
                string_claim(j, "sub").unwrap_or("")
            ),
            _ => "absent".into(),
        }
    }
}

/// An attribute value fetched once per test.
enum Value<'a> {
    Bytes(Option<&'a [u8]>),
    /// Every occurrence of a request header; none when absent.
    Headers(HeaderValues<'a>),
    Principal(Option<&'a str>),
    Ip(Option<IpAddr>),
    Port(Option<u16>),
    Claim(Option<&'a Claim>),
    Jwt(Option<&'a Claim>),
    Missing,
}

/// The longest `request.auth.claims[a][b]...` path accepted, in keys.
pub const MAX_CLAIM_PATH: usize = 64;

/// The inside of `[...]`: must start with `[`, end with `]`, and hold at least one character.
fn bracket_key<'a>(rest: &'a str, key: &str, path: &str) -> Result<&'a str> {
    match rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) if !inner.is_empty() => Ok(inner),
        _ => Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{key}\": expected a non-empty [name] after the attribute"),
        )),
    }
}

/// `a][b][c` (the inside of `[a][b][c]`) → `a`, `b`, `c`; a sequence that is not well-formed
/// is one name (istiod `extractNameInNestedBrackets`: `[[good]` → `[good`).
fn claim_path(inner: &str) -> Option<Vec<Box<str>>> {
    let parts: Vec<&str> = inner.split("][").collect();
    if parts.len() > 1
        && parts
            .iter()
            .all(|p| !p.is_empty() && !p.contains('[') && !p.contains(']'))
    {
        return Some(parts.into_iter().map(Box::from).collect());
    }
    Some(vec![inner.into()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_paths() {
        assert_eq!(
            claim_path("a][b][c"),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(claim_path("a.b"), Some(vec!["a.b".into()]));
        assert_eq!(claim_path("[good"), Some(vec!["[good".into()]));
        assert_eq!(claim_path("good]"), Some(vec!["good]".into()]));
    }
}
