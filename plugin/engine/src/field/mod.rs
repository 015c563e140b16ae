//! Each attribute in one place: how a field was written, where it can be seen, how its
//! value is fetched from the connection or request, and how that value reads in an
//! explanation. The matching of values is the compiled [`super::compile::Matcher`]'s.

mod identity;
mod jwt;
mod network;
mod request;

use super::attributes::{Attributes, Claim, HeaderValues};
use super::compile::{Compiled, Matcher, Point};
use super::matcher::url_path;
use super::policy::Attr;
use jwt::{claim_text, string_claim};
use std::net::IpAddr;

pub(crate) use identity::namespace_segments;
pub(crate) use network::canonical;

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
