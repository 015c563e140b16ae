//! What the engine may ask about a connection or request.
//!
//! The engine never parses traffic itself: an enforcement host (the proxy-wasm layer, the
//! harness's native check, a test) implements [`Attributes`]. Every accessor is called lazily,
//! at most when a candidate rule needs that attribute, so a host whose reads are expensive
//! (Envoy's property reads go through a CEL activation) should fetch on first call and cache.

use std::net::IpAddr;

/// The attributes of one connection (Layer 4) or one request (Layer 7).
///
/// Identity comes only from [`Attributes::peer_principal`] (the verified peer certificate) and
/// [`Attributes::jwt`] (a payload verified by the proxy): never from a header.
pub trait Attributes {
    /// The peer certificate's URI SAN as the proxy saw it, e.g.
    /// `spiffe://cluster.local/ns/default/sa/curl`; `None` without a client certificate.
    fn peer_principal(&self) -> Option<&str>;
    /// The address of the directly connected peer (`source.ip`, `ipBlocks`).
    fn source_ip(&self) -> Option<IpAddr>;
    /// `true` when the direct peer's address is unknown because the proxy replaced it with
    /// a forwarded one (`X-Forwarded-For` under `use_remote_address: false`) and nothing else
    /// carries it: then [`Attributes::source_ip`] is `None`, and a DENY rule on it denies.
    fn source_ip_withheld(&self) -> bool {
        false
    }
    /// `true` when the proxy established two different caller identities for this traffic
    /// (the waypoint's `io.istio.peer_principal` filter state and a peer certificate).
    fn identity_conflict(&self) -> bool {
        false
    }
    /// The original client address (`remote.ip`, `remoteIpBlocks`); defaults to the peer's.
    fn remote_ip(&self) -> Option<IpAddr> {
        self.source_ip()
    }
    /// The destination address the client dialled (`destination.ip`).
    fn destination_ip(&self) -> Option<IpAddr>;
    /// The destination port (`ports`, `destination.port`).
    fn destination_port(&self) -> Option<u16>;
    /// The TLS SNI (`connection.sni`).
    fn sni(&self) -> Option<&str>;

    /// `:method`; `None` for a connection without an HTTP request.
    fn method(&self) -> Option<&[u8]> {
        None
    }
    /// `:path`, query string included, exactly as received.
    fn path(&self) -> Option<&[u8]> {
        None
    }
    /// `:authority`, port included, exactly as received.
    fn host(&self) -> Option<&[u8]> {
        None
    }
    /// Every occurrence of a request header, by its lower-case name, each one a value of
    /// its own: Envoy 1.40's RBAC header matcher matches the occurrences one at a time and
    /// holds when any one matches (envoyproxy/envoy
    /// `source/extensions/filters/common/rbac/matchers.cc` `HeaderMatcher`, runtime guard
    /// `envoy.reloadable_features.rbac_match_headers_individually`, on by default since the
    /// fix for CVE-2026-26308). Joining them with `,` let a client escape a DENY by adding a
    /// second value. A single header line `a,b` stays the one value `a,b`.
    fn header<'a>(&'a self, _lowercase_name: &'a str) -> HeaderValues<'a> {
        HeaderValues::none()
    }
    /// The verified JWT payload (Envoy `jwt_authn` dynamic metadata).
    fn jwt(&self) -> Option<&Claim> {
        None
    }
}

/// The occurrences of one request header, in order, without copying: an iterator over the
/// values of the header list that carry `name`, or over one value.
#[derive(Debug, Clone, Copy)]
pub struct HeaderValues<'a> {
    source: HeaderSource<'a>,
}

#[derive(Debug, Clone, Copy)]
enum HeaderSource<'a> {
    None,
    One(&'a [u8]),
    List {
        pairs: &'a [(String, Vec<u8>)],
        name: &'a str,
    },
}

impl<'a> HeaderValues<'a> {
    /// No occurrence: the header is absent.
    pub fn none() -> HeaderValues<'a> {
        HeaderValues {
            source: HeaderSource::None,
        }
    }

    /// Exactly one occurrence (a pseudo-header).
    pub fn one(value: &'a [u8]) -> HeaderValues<'a> {
        HeaderValues {
            source: HeaderSource::One(value),
        }
    }

    /// The occurrences of `name` in a list of (lower-case name, value) pairs.
    pub fn of(pairs: &'a [(String, Vec<u8>)], name: &'a str) -> HeaderValues<'a> {
        HeaderValues {
            source: HeaderSource::List { pairs, name },
        }
    }

    /// Every occurrence, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (one, pairs, name) = match self.source {
            HeaderSource::None => (None, &[][..], ""),
            HeaderSource::One(v) => (Some(v), &[][..], ""),
            HeaderSource::List { pairs, name } => (None, pairs, name),
        };
        one.into_iter().chain(
            pairs
                .iter()
                .filter(move |(n, _)| n == name)
                .map(|(_, v)| v.as_slice()),
        )
    }

    /// Whether the header is absent.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// A JSON value inside a verified JWT payload, reduced to what claim matching needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    String(String),
    List(Vec<Claim>),
    Object(Vec<(String, Claim)>),
    /// Numbers, booleans and null: present, but never equal to a string (Envoy's string matcher).
    Other,
}

impl Claim {
    /// Follows a claim path (`request.auth.claims[a][b]` is `["a", "b"]`).
    pub fn get(&self, path: &[Box<str>]) -> Option<&Claim> {
        let mut current = self;
        for key in path {
            match current {
                Claim::Object(fields) => {
                    current = fields
                        .iter()
                        .find(|(name, _)| name.as_str() == key.as_ref())
                        .map(|(_, value)| value)?;
                }
                _ => return None,
            }
        }
        Some(current)
    }

    /// Converts a JSON payload.
    pub fn from_json(value: &serde_json::Value) -> Claim {
        match value {
            serde_json::Value::String(s) => Claim::String(s.clone()),
            serde_json::Value::Array(items) => {
                Claim::List(items.iter().map(Claim::from_json).collect())
            }
            serde_json::Value::Object(map) => Claim::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Claim::from_json(v)))
                    .collect(),
            ),
            _ => Claim::Other,
        }
    }
}

/// A plain, fully materialised set of attributes: what fixtures, tests and the harness's
/// native check use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnedAttributes {
    pub peer_principal: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub remote_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    pub destination_port: Option<u16>,
    pub sni: Option<String>,
    pub http: Option<OwnedHttp>,
}

/// The HTTP part of [`OwnedAttributes`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OwnedHttp {
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub host: Vec<u8>,
    /// Lower-case name and value, one entry per occurrence, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub jwt: Option<Claim>,
}

impl OwnedHttp {
    /// Builds a request; header names are lower-cased, every occurrence kept as its own value.
    pub fn new(
        method: &[u8],
        path: &[u8],
        host: &[u8],
        headers: Vec<(String, Vec<u8>)>,
        jwt: Option<Claim>,
    ) -> OwnedHttp {
        let headers: Vec<(String, Vec<u8>)> = headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        OwnedHttp {
            method: method.to_vec(),
            path: path.to_vec(),
            host: host.to_vec(),
            headers,
            jwt,
        }
    }
}

impl Attributes for OwnedAttributes {
    fn peer_principal(&self) -> Option<&str> {
        self.peer_principal.as_deref()
    }
    fn source_ip(&self) -> Option<IpAddr> {
        self.source_ip
    }
    fn remote_ip(&self) -> Option<IpAddr> {
        self.remote_ip.or(self.source_ip)
    }
    fn destination_ip(&self) -> Option<IpAddr> {
        self.destination_ip
    }
    fn destination_port(&self) -> Option<u16> {
        self.destination_port
    }
    fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
    fn method(&self) -> Option<&[u8]> {
        self.http.as_ref().map(|h| h.method.as_slice())
    }
    fn path(&self) -> Option<&[u8]> {
        self.http.as_ref().map(|h| h.path.as_slice())
    }
    fn host(&self) -> Option<&[u8]> {
        self.http.as_ref().map(|h| h.host.as_slice())
    }
    fn header<'a>(&'a self, lowercase_name: &'a str) -> HeaderValues<'a> {
        let Some(http) = self.http.as_ref() else {
            return HeaderValues::none();
        };
        match lowercase_name {
            ":method" => HeaderValues::one(&http.method),
            ":path" => HeaderValues::one(&http.path),
            ":authority" | "host" => HeaderValues::one(&http.host),
            // Envoy always gives a request a `:scheme`; a request that names none arrived
            // in plaintext, as every request does inside a waypoint's HBONE tunnel (the
            // connection manager sets `http` for a connection without TLS: envoyproxy/envoy
            // `source/common/http/conn_manager_utility.cc`). The Wasmtime host sends the same.
            ":scheme" if !http.headers.iter().any(|(n, _)| n == ":scheme") => {
                HeaderValues::one(b"http")
            }
            _ => HeaderValues::of(&http.headers, lowercase_name),
        }
    }
    fn jwt(&self) -> Option<&Claim> {
        self.http.as_ref().and_then(|h| h.jwt.as_ref())
    }
}
