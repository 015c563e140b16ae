//! Each attribute in one place: how a field was written, where it can be seen, how its
//! value is fetched from the connection or request, and how that value reads in an
//! explanation. The matching of values is the compiled [`super::compile::Matcher`]'s.

use super::attributes::{Attributes, Claim, HeaderValues};
use super::compile::Point;
use super::matcher::url_path;
use super::policy::Attr;
use std::net::IpAddr;

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
    pub(crate) fn value<'a>(&'a self, attrs: &'a dyn Attributes) -> Value<'a> {
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
pub(crate) enum Value<'a> {
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

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, an IPv4 client on a dual-stack socket) is
/// that IPv4 address, as ztunnel canonicalises every address before any policy (istio/ztunnel
/// `src/socket.rs` `to_canonical`): an IPv4 `ipBlocks` DENY is not escaped by the mapped
/// spelling, and the destination chooses the same workload or service.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

pub(crate) fn string_claim<'a>(jwt: &'a Claim, name: &str) -> Option<&'a str> {
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
fn claim_text(claim: &Claim) -> String {
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
