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
    /// A request header by its lower-case name; several occurrences joined with `,` as
    /// Envoy's RBAC header matcher sees them.
    fn header(&self, _lowercase_name: &str) -> Option<&[u8]> {
        None
    }
    /// The verified JWT payload (Envoy `jwt_authn` dynamic metadata).
    fn jwt(&self) -> Option<&Claim> {
        None
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
    /// Joined view of `headers`, built by [`OwnedHttp::finish`].
    joined: Vec<(String, Vec<u8>)>,
    pub jwt: Option<Claim>,
}

impl OwnedHttp {
    /// Builds a request; header names are lower-cased and repeated headers joined with `,`.
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
        let joined = join_headers(&headers);
        OwnedHttp {
            method: method.to_vec(),
            path: path.to_vec(),
            host: host.to_vec(),
            headers,
            joined,
            jwt,
        }
    }
}

/// Joins repeated header names with `,`, keeping first-occurrence order, as Envoy's
/// `getAllOfHeaderAsString` does for RBAC.
pub fn join_headers(headers: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    let mut joined: Vec<(String, Vec<u8>)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if let Some((_, existing)) = joined.iter_mut().find(|(n, _)| n == name) {
            existing.push(b',');
            existing.extend_from_slice(value);
        } else {
            joined.push((name.clone(), value.clone()));
        }
    }
    joined
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
    fn header(&self, lowercase_name: &str) -> Option<&[u8]> {
        let http = self.http.as_ref()?;
        match lowercase_name {
            ":method" => return Some(&http.method),
            ":path" => return Some(&http.path),
            ":authority" | "host" => return Some(&http.host),
            _ => {}
        }
        http.joined
            .iter()
            .find(|(n, _)| n == lowercase_name)
            .map(|(_, v)| v.as_slice())
    }
    fn jwt(&self) -> Option<&Claim> {
        self.http.as_ref().and_then(|h| h.jwt.as_ref())
    }
}
