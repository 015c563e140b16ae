//! The engine's [`Attributes`] read from Envoy, lazily and at most once each.
//!
//! Every accessor fetches its property on the engine's first call and caches it in a
//! [`OnceCell`]; the engine only asks for what a candidate rule needs, so a connection that
//! no rule inspects costs no host call at all. The method and the path are single header
//! reads; the whole header map is copied only for a rule on a header or the host.
//! Encodings are Envoy's (see
//! <https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes>):
//! strings as raw bytes, `destination.port` as an 8-byte little-endian int64,
//! addresses as `ip:port` (`[v6]:port`), the request as the header map of the ABI, and the
//! JWT payload inside the dynamic-metadata message. Identity comes only from what the proxy
//! established (the waypoint's filter state, the peer certificate) and the verified JWT,
//! never from a header.
//!
//! Where Istio runs the module, an ambient waypoint, the HTTP filters sit in an internal
//! listener (`main_internal`) behind an outer listener that terminates HBONE (HTTP/2 `CONNECT`
//! over mTLS). The outer listener's `set_filter_state` filter carries the caller's certificate
//! URI SAN as the filter state `io.istio.peer_principal` and the client address as
//! `envoy.filters.listener.original_dst.remote_ip`, both shared with the upstream once, and the
//! internal listener's `original_dst` listener filter restores the addresses (istio/istio
//! `pilot/pkg/networking/core/listener_waypoint.go`, `pilot/pkg/xds/filters/filters.go`).
//! Measured in Envoy 1.40 with a Wasm filter in such an internal listener:
//!
//! * `connection.uri_san_peer_certificate` is absent and `connection.mtls` false (the inner
//!   connection has no TLS); `filter_state.io.istio.peer_principal` holds the caller's SPIFFE
//!   URI, which istiod's own RBAC matches there (`filter_state` matcher,
//!   `pilot/pkg/security/authz/model/principal.go`).
//! * The connection manager runs with `use_remote_address: false`, so `source.address` is
//!   the last `X-Forwarded-For` entry when the request carries one (with port 0), else the
//!   restored client address. `filter_state.envoy.filters.listener.original_dst.remote_ip`
//!   reads as 4 zero bytes as a whole, but its field `ip` is the restored client address as
//!   text, whatever `X-Forwarded-For` says: the direct peer.
//! * `destination.address` and `destination.port` are the `CONNECT` authority's (the service
//!   VIP and port), as istiod's `destination_ip`/`destination_port` matchers see them there.
//! * `connection.requested_server_name` is absent: the inner connection has no TLS, so
//!   `connection.sni` conditions match nothing in the chain, as istiod's
//!   `requested_server_name` matcher there.
//! * The JWT payload is where the internal listener's `jwt_authn` (RequestAuthentication)
//!   puts it, as on any listener.

use super::proto;
use crate::engine::config::JwtSource;
use crate::engine::{Attributes, Claim, HeaderValues};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;
use std::cell::{Cell, OnceCell};
use std::net::{IpAddr, SocketAddr};

/// One `get_property`; `None` when absent, empty or unreadable (logged).
fn property(path: &[&str]) -> Option<Vec<u8>> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(bytes)) if !bytes.is_empty() => Some(bytes),
        Ok(_) => None,
        Err(status) => {
            log::warn!(
                "authz: property {} unreadable: {:?}",
                path.join("."),
                status
            );
            None
        }
    }
}

fn string_property(path: &[&str]) -> Option<String> {
    let bytes = property(path)?;
    match String::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(_) => {
            log::warn!("authz: property {} is not UTF-8", path.join("."));
            None
        }
    }
}

/// A TLS peer that presented a certificate without a URI SAN: Envoy serves no
/// `connection.uri_san_peer_certificate`, but `connection.mtls` ("the peer certificate is
/// presented", envoyproxy/envoy docs `advanced/attributes`) is true. That peer has no SPIFFE
/// identity: the empty principal, which ztunnel refuses in its handshake and no principal
/// matches, never the absent one of a plaintext client (which a policy may allow).
fn peer_without_uri_san() -> Option<String> {
    property(&["connection", "mtls"])
        .filter(|b| b.first() == Some(&1))
        .map(|_| String::new())
}

/// `ip:port`, `[v6]:port`, or a bare address; anything else (a pipe, an internal listener
/// name) has no IP.
pub(crate) fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>().ok()
}

/// Envoy's int64 property encoding: exactly 8 bytes, little-endian.
fn int64(bytes: &[u8]) -> Option<i64> {
    let array: [u8; 8] = bytes.try_into().ok()?;
    Some(i64::from_le_bytes(array))
}

/// One request header by name (`:method`, `:path`): a single value, so a rule on the method or
/// the path alone does not copy the whole header map into the VM.
fn request_header(name: &str) -> Option<Vec<u8>> {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name) {
        Ok(value) => value,
        Err(status) => {
            log::warn!("authz: request header {name} unreadable: {status:?}");
            None
        }
    }
}

/// The request's headers as the engine sees them, built from one read of the header map, made
/// only when a rule names a header or the host.
#[derive(Default)]
struct Request {
    authority: Option<Vec<u8>>,
    /// Lower-case name and value, one entry per occurrence, in order: never joined, as
    /// Envoy 1.40's RBAC matches each occurrence on its own (see [`Attributes::header`]).
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    fn read() -> Request {
        // The byte-based read: a non-UTF-8 header value must not panic the SDK.
        let pairs = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(pairs) => pairs,
            Err(status) => {
                log::warn!("authz: request headers unreadable: {status:?}");
                Vec::new()
            }
        };
        let mut request = Request::default();
        for (name, value) in pairs {
            let name = name.to_ascii_lowercase();
            if name == ":authority" && request.authority.is_none() {
                request.authority = Some(value.clone());
            }
            request.headers.push((name, value));
        }
        request
    }
}

/// The waypoint's filter state holding the caller's certificate URI SAN (istio/istio
/// `pilot/pkg/xds/filters/filters.go`, the `set_filter_state` of the HBONE listener).
const PEER_PRINCIPAL: &[&str] = &["filter_state", "io.istio.peer_principal"];
/// The client address the HBONE listener hands to the internal listener, field `ip` (Envoy's
/// `original_dst` listener filter, `source/extensions/filters/listener/original_dst`).
const CHAIN_REMOTE_IP: &[&str] = &[
    "filter_state",
    "envoy.filters.listener.original_dst.remote_ip",
    "ip",
];

/// Who the caller is, from what the proxy established.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Caller {
    Known(Option<String>),
    /// The filter state and the peer certificate name different callers.
    Conflict,
}

/// Combines the two places a proxy puts the caller's identity. Inside the waypoint's chain
/// only the filter state has it; on a listener that terminates the client's mTLS itself only
/// the certificate does. Both present and equal: that caller. Both present and different
/// (a chain that also terminates TLS from another peer): no way to know which one a policy
/// is about, so the request is denied (`Reason::ConflictingIdentity`), logged once.
fn caller(filter_state: Option<String>, certificate: Option<String>) -> Caller {
    match (filter_state, certificate) {
        (Some(f), Some(c)) if f != c => Caller::Conflict,
        (Some(f), _) => Caller::Known(Some(f)),
        (None, c) => Caller::Known(c),
    }
}

/// The direct peer and the forwarded client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sources {
    /// `ipBlocks`, `source.ip`: the address of whoever connected (in the chain, the client
    /// address restored by `original_dst`); `None` when unknown.
    direct: Option<IpAddr>,
    /// `remoteIpBlocks`, `remote.ip`: Envoy's downstream remote address after the connection
    /// manager's original-IP detection (`X-Forwarded-For`).
    remote: Option<IpAddr>,
    /// The direct peer is unknown because `source.address` is a forwarded address.
    withheld: bool,
}

/// Splits the addresses. `chain` is the waypoint's restored client address, `source` Envoy's
/// `source.address` as `ip:port`. Envoy builds an address taken from `X-Forwarded-For` (or any
/// original-IP detection extension) with port 0 (`Http::Utility::getLastAddressFromXFF`), and
/// a TCP peer never has port 0: so outside the chain a port-0 `source.address` is a forwarded
/// address, never the direct peer (istiod matches `ipBlocks` with `direct_remote_ip`, which
/// ignores `X-Forwarded-For`: istio/istio `pilot/pkg/security/authz/model/generator.go`).
fn sources(chain: Option<IpAddr>, source: Option<&str>) -> Sources {
    let parsed = source.and_then(|s| {
        let ip = parse_address(s)?;
        let port = s.parse::<SocketAddr>().ok().map(|sa| sa.port());
        Some((ip, port))
    });
    let forwarded = matches!(parsed, Some((_, Some(0))));
    let remote = parsed.map(|(ip, _)| ip);
    match chain {
        Some(direct) => Sources {
            direct: Some(direct),
            remote: remote.or(Some(direct)),
            withheld: false,
        },
        None if forwarded => Sources {
            direct: None,
            remote,
            withheld: true,
        },
        None => Sources {
            direct: remote,
            remote,
            withheld: false,
        },
    }
}

thread_local! {
    /// Whether the identity conflict was logged at warn level already (once per VM).
    static CONFLICT_LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The attributes of the current stream context.
pub(crate) struct HostAttributes<'a> {
    jwt_source: &'a JwtSource,
    /// An HTTP filter's request; a network filter has no request attributes.
    http: bool,
    principal: OnceCell<Caller>,
    source: OnceCell<Sources>,
    destination: OnceCell<Option<IpAddr>>,
    port: OnceCell<Option<u16>>,
    sni: OnceCell<Option<String>>,
    method: OnceCell<Option<Vec<u8>>>,
    path: OnceCell<Option<Vec<u8>>>,
    request: OnceCell<Request>,
    jwt: OnceCell<Option<Claim>>,
    /// How deep the JWT payload is read (`Engine::jwt_depth`).
    jwt_depth: usize,
    /// The JWT payload was needed and could not be read.
    jwt_unreadable: Cell<bool>,
}

impl<'a> HostAttributes<'a> {
    pub(crate) fn new(jwt_source: &'a JwtSource, http: bool) -> HostAttributes<'a> {
        HostAttributes {
            jwt_source,
            http,
            principal: OnceCell::new(),
            source: OnceCell::new(),
            destination: OnceCell::new(),
            port: OnceCell::new(),
            sni: OnceCell::new(),
            method: OnceCell::new(),
            path: OnceCell::new(),
            request: OnceCell::new(),
            jwt: OnceCell::new(),
            jwt_depth: 0,
            jwt_unreadable: Cell::new(false),
        }
    }

    /// Reads the JWT payload `depth` deep (`Engine::jwt_depth`).
    pub(crate) fn with_jwt_depth(mut self, depth: usize) -> HostAttributes<'a> {
        self.jwt_depth = depth;
        self
    }

    /// Whether a rule needed the JWT payload and it could not be read: the decision must
    /// then deny (fail closed).
    pub(crate) fn jwt_unreadable(&self) -> bool {
        self.jwt_unreadable.get()
    }

    fn request(&self) -> Option<&Request> {
        if !self.http {
            return None;
        }
        Some(self.request.get_or_init(Request::read))
    }

    fn caller(&self) -> &Caller {
        self.principal.get_or_init(|| {
            // Envoy's formatter renders an absent value as "-": a filter state set from
            // `%DOWNSTREAM_PEER_URI_SAN%` for a client without a certificate holds "-", which
            // names no caller (measured in Envoy 1.40; in Istio HBONE always has one).
            let carried = string_property(PEER_PRINCIPAL).filter(|p| p != "-");
            let found = caller(
                carried,
                string_property(&["connection", "uri_san_peer_certificate"])
                    .or_else(peer_without_uri_san),
            );
            if found == Caller::Conflict {
                if CONFLICT_LOGGED.with(|l| l.replace(true)) {
                    log::debug!("authz: filter state io.istio.peer_principal and the peer certificate name different callers; denied");
                } else {
                    log::warn!("authz: filter state io.istio.peer_principal and the peer certificate name different callers; such requests are denied (logged once)");
                }
            }
            found
        })
    }

    fn sources(&self) -> Sources {
        *self.source.get_or_init(|| {
            let chain = string_property(CHAIN_REMOTE_IP).and_then(|a| parse_address(&a));
            sources(chain, string_property(&["source", "address"]).as_deref())
        })
    }

    fn read_jwt(&self) -> Option<Claim> {
        let metadata = property(&["metadata"])?;
        let source = self.jwt_source;
        match proto::jwt_payload(
            &metadata,
            &source.metadata_namespace,
            &source.payload_key,
            proto::Depth(self.jwt_depth),
        ) {
            Ok(claim) => claim,
            Err(proto::Malformed) => {
                // Treating it as no token would let a request past a DENY on its claims.
                log::warn!(
                    "authz: dynamic metadata {}.{} is not a valid protobuf Struct; the request is denied",
                    source.metadata_namespace,
                    source.payload_key
                );
                self.jwt_unreadable.set(true);
                None
            }
        }
    }
}

impl Attributes for HostAttributes<'_> {
    fn peer_principal(&self) -> Option<&str> {
        match self.caller() {
            Caller::Known(p) => p.as_deref(),
            Caller::Conflict => None,
        }
    }

    fn identity_conflict(&self) -> bool {
        *self.caller() == Caller::Conflict
    }

    fn source_ip(&self) -> Option<IpAddr> {
        self.sources().direct
    }

    fn source_ip_withheld(&self) -> bool {
        self.sources().withheld
    }

    fn remote_ip(&self) -> Option<IpAddr> {
        self.sources().remote
    }

    fn destination_ip(&self) -> Option<IpAddr> {
        *self.destination.get_or_init(|| {
            string_property(&["destination", "address"]).and_then(|a| parse_address(&a))
        })
    }

    fn destination_port(&self) -> Option<u16> {
        *self.port.get_or_init(|| {
            property(&["destination", "port"])
                .and_then(|b| int64(&b))
                .and_then(|p| u16::try_from(p).ok())
        })
    }

    fn sni(&self) -> Option<&str> {
        self.sni
            .get_or_init(|| string_property(&["connection", "requested_server_name"]))
            .as_deref()
    }

    fn method(&self) -> Option<&[u8]> {
        if !self.http {
            return None;
        }
        self.method
            .get_or_init(|| request_header(":method"))
            .as_deref()
    }

    fn path(&self) -> Option<&[u8]> {
        if !self.http {
            return None;
        }
        self.path.get_or_init(|| request_header(":path")).as_deref()
    }

    fn host(&self) -> Option<&[u8]> {
        self.request()?.authority.as_deref()
    }

    fn header<'a>(&'a self, lowercase_name: &'a str) -> HeaderValues<'a> {
        let Some(request) = self.request() else {
            return HeaderValues::none();
        };
        let name = if lowercase_name == "host" {
            ":authority"
        } else {
            lowercase_name
        };
        HeaderValues::of(&request.headers, name)
    }

    fn jwt(&self) -> Option<&Claim> {
        if !self.http {
            return None;
        }
        self.jwt.get_or_init(|| self.read_jwt()).as_ref()
    }
}
