//! Byte encodings shared by the host and the guest: the ABI's pairs serialization, Envoy's
//! property value encodings, and the protobuf messages Envoy hands out for dynamic metadata.

use authz_plugin::engine::{Claim, OwnedAttributes};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// A header map or any other list of pairs, in order, duplicates kept.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// cpp-host's limits on guest-provided pairs (`include/proxy-wasm/limits.h`).
pub const MAX_PAIRS: usize = 1024;
pub const MAX_PAIRS_BYTES: usize = 1 << 20;

/// The ABI's pairs serialization (spec v0.2.1 "Serialization"): u32 count, count × (u32 key
/// length, u32 value length), then every key and value followed by a NUL. An empty map is
/// encoded by the caller as "no data" (`(0, 0)`), never as the 1-byte form the Rust SDK
/// cannot read.
pub fn serialize_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut size = 4;
    for (k, v) in pairs {
        size += 8 + k.len() + v.len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(b)).ok()
}

/// The `len` bytes of a serialized map's `field` ("key" or "value") at `*at`, which must be
/// followed by a NUL; moves `*at` past both.
fn nul_terminated(
    bytes: &[u8],
    at: &mut usize,
    len: usize,
    field: &str,
) -> Result<Vec<u8>, String> {
    let start = *at;
    let content = bytes
        .get(start..start + len)
        .ok_or_else(|| format!("serialized map truncated in a {field}"))?
        .to_vec();
    if bytes.get(start + len) != Some(&0) {
        return Err(format!("serialized map: {field} not NUL-terminated"));
    }
    *at = start + len + 1;
    Ok(content)
}

/// Parses guest-provided pairs strictly (counts, lengths and NUL terminators must agree, as
/// cpp-host's `toPairs` requires). An empty buffer is an empty map.
pub fn deserialize_pairs(bytes: &[u8]) -> Result<Pairs, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() > MAX_PAIRS_BYTES {
        return Err(format!(
            "serialized map of {} bytes exceeds {MAX_PAIRS_BYTES}",
            bytes.len()
        ));
    }
    let count = read_u32(bytes, 0).ok_or("serialized map shorter than its count")?;
    if count > MAX_PAIRS {
        return Err(format!(
            "serialized map with {count} pairs exceeds {MAX_PAIRS}"
        ));
    }
    let mut sizes = Vec::with_capacity(count);
    let mut at = 4;
    for _ in 0..count {
        let k = read_u32(bytes, at).ok_or("serialized map truncated in its sizes")?;
        let v = read_u32(bytes, at + 4).ok_or("serialized map truncated in its sizes")?;
        sizes.push((k, v));
        at += 8;
    }
    let mut pairs = Vec::with_capacity(count);
    for (k, v) in sizes {
        let key = nul_terminated(bytes, &mut at, k, "key")?;
        let value = nul_terminated(bytes, &mut at, v, "value")?;
        pairs.push((key, value));
    }
    if at != bytes.len() {
        return Err(format!(
            "serialized map has {} trailing bytes",
            bytes.len() - at
        ));
    }
    Ok(pairs)
}

// ---- protobuf (encoding only; the harness builds what Envoy would serialize) ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, (number << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `google.protobuf.Value` for a claim. Numbers, booleans and null are all
/// [`Claim::Other`] to the engine; they are sent as `number_value: 0`.
pub fn proto_value(claim: &Claim) -> Vec<u8> {
    let mut out = Vec::new();
    match claim {
        Claim::String(s) => len_field(&mut out, 3, s.as_bytes()),
        Claim::Object(fields) => len_field(&mut out, 5, &proto_struct(fields)),
        Claim::List(items) => {
            let mut list = Vec::new();
            for item in items {
                len_field(&mut list, 1, &proto_value(item));
            }
            len_field(&mut out, 6, &list);
        }
        Claim::Other => {
            varint(&mut out, (2 << 3) | 1);
            out.extend_from_slice(&0f64.to_le_bytes());
        }
    }
    out
}

/// A message whose field 1 is a `map<string, T>`: each entry is a message of its key (field 1)
/// and its value encoded by `encode` (field 2).
fn proto_string_map<T>(entries: &[(String, T)], encode: impl Fn(&T) -> Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in entries {
        let mut entry = Vec::new();
        len_field(&mut entry, 1, key.as_bytes());
        len_field(&mut entry, 2, &encode(value));
        len_field(&mut out, 1, &entry);
    }
    out
}

/// `google.protobuf.Struct { map<string, Value> fields = 1; }`.
pub fn proto_struct(fields: &[(String, Claim)]) -> Vec<u8> {
    proto_string_map(fields, proto_value)
}

/// `envoy.config.core.v3.Metadata { map<string, google.protobuf.Struct> filter_metadata = 1; }`.
pub fn proto_metadata(filter_metadata: &[(String, Vec<(String, Claim)>)]) -> Vec<u8> {
    proto_string_map(filter_metadata, |fields| proto_struct(fields))
}

/// Envoy's `serializeValue` for a CEL value below `metadata.filter_metadata` (current Envoy:
/// maps and lists as pairs, a list's elements as keys with empty values; doubles 8 bytes).
pub fn cel_value(claim: &Claim) -> Vec<u8> {
    match claim {
        Claim::String(s) => s.as_bytes().to_vec(),
        Claim::Object(fields) => cel_map(fields),
        Claim::List(items) => serialize_pairs(
            &items
                .iter()
                .map(|i| (cel_value(i), Vec::new()))
                .collect::<Vec<_>>(),
        ),
        Claim::Other => 0f64.to_le_bytes().to_vec(),
    }
}

fn cel_map(fields: &[(String, Claim)]) -> Vec<u8> {
    serialize_pairs(
        &fields
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), cel_value(v)))
            .collect::<Vec<_>>(),
    )
}

// ---- properties ----

/// A property path as the SDK sends it: segments joined by NUL, no trailing NUL.
pub fn path_key(segments: &[&str]) -> Vec<u8> {
    segments.join("\0").into_bytes()
}

/// Where the JWT payload lives in dynamic metadata (the configuration's `jwt` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtLocation {
    pub namespace: String,
    pub key: String,
}

impl Default for JwtLocation {
    fn default() -> Self {
        JwtLocation {
            namespace: "envoy.filters.http.jwt_authn".into(),
            key: "jwt_payload".into(),
        }
    }
}

impl JwtLocation {
    /// Reads `jwt.metadataNamespace` / `jwt.payloadKey` from a plugin configuration, with the
    /// defaults of docs/configuration.md#jwt.
    pub fn from_config(config_json: &[u8]) -> JwtLocation {
        let mut loc = JwtLocation::default();
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(config_json) {
            if let Some(ns) = value
                .pointer("/jwt/metadataNamespace")
                .and_then(|v| v.as_str())
            {
                loc.namespace = ns.to_string();
            }
            if let Some(key) = value.pointer("/jwt/payloadKey").and_then(|v| v.as_str()) {
                loc.key = key.to_string();
            }
        }
        loc
    }
}

/// Identity of the plugin, served as `plugin_name`, `plugin_root_id`, `plugin_vm_id`.
#[derive(Debug, Clone)]
pub struct PluginIdentity {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
}

/// Properties every context (root included) can read.
pub fn plugin_properties(id: &PluginIdentity) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut p = HashMap::new();
    p.insert(path_key(&["plugin_name"]), id.name.as_bytes().to_vec());
    p.insert(
        path_key(&["plugin_root_id"]),
        id.root_id.as_bytes().to_vec(),
    );
    p.insert(path_key(&["plugin_vm_id"]), id.vm_id.as_bytes().to_vec());
    p
}

/// Lower-cased request headers with Envoy's pseudo-headers first (`:authority`, `:path`,
/// `:method`, `:scheme`), then every other occurrence in order. `host` and the pseudo-headers
/// in the fixture's list are not repeated: Envoy turns `Host` into `:authority`.
pub fn request_headers(attrs: &OwnedAttributes) -> Pairs {
    let Some(http) = &attrs.http else {
        return Vec::new();
    };
    let mut scheme: Vec<u8> = b"http".to_vec();
    let mut rest = Vec::new();
    for (name, value) in &http.headers {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            ":authority" | ":path" | ":method" | "host" => {}
            ":scheme" => scheme = value.clone(),
            _ => rest.push((name.into_bytes(), value.clone())),
        }
    }
    let mut pairs = vec![
        (b":authority".to_vec(), http.host.clone()),
        (b":path".to_vec(), http.path.clone()),
        (b":method".to_vec(), http.method.clone()),
        (b":scheme".to_vec(), scheme),
    ];
    pairs.extend(rest);
    pairs
}

/// Joins repeated names with `,`, first-occurrence order: the CEL `request.headers` property
/// as Envoy serves it (`getAllOfHeaderAsString`). The RBAC-like matching of the module never
/// uses it; it reads every occurrence from the header map.
pub fn joined(pairs: &[(Vec<u8>, Vec<u8>)]) -> Pairs {
    let mut out: Pairs = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(n, _)| n == k) {
            Some((_, existing)) => {
                existing.push(b',');
                existing.extend_from_slice(v);
            }
            None => out.push((k.clone(), v.clone())),
        }
    }
    out
}

fn address(ip: IpAddr, port: u16) -> Vec<u8> {
    SocketAddr::new(ip, port).to_string().into_bytes()
}

/// Where in Envoy the module runs, which decides where the caller's identity and address are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// A listener that terminates the client's mTLS itself (plain Envoy, Envoy Gateway): the
    /// caller is the peer certificate's URI SAN; the connection manager runs with
    /// `use_remote_address: false`, so a forwarded client address replaces `source.address`
    /// (with port 0, as Envoy builds addresses from `X-Forwarded-For`).
    #[default]
    Direct,
    /// Istio's ambient waypoint: the internal listener behind the HBONE listener. No TLS on
    /// the inner connection; the caller is the filter state `io.istio.peer_principal`, the
    /// client address the filter state `envoy.filters.listener.original_dst.remote_ip` (field
    /// `ip`), and `source.address` the forwarded address when there is one (istio/istio
    /// `pilot/pkg/networking/core/listener_waypoint.go`; values measured in Envoy 1.40).
    WaypointChain,
}

/// The attributes Envoy serves for one connection or request, encoded as Envoy encodes them
/// (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes>).
pub fn stream_properties(
    attrs: &OwnedAttributes,
    http: bool,
    source_port: u16,
    connection_id: u64,
    jwt: &JwtLocation,
    topology: Topology,
) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut p = HashMap::new();
    let mut put = |segments: &[&str], value: Vec<u8>| {
        p.insert(path_key(segments), value);
    };
    let chain = topology == Topology::WaypointChain;
    if let Some(principal) = &attrs.peer_principal {
        let path: &[&str] = if chain {
            &["filter_state", "io.istio.peer_principal"]
        } else {
            &["connection", "uri_san_peer_certificate"]
        };
        put(path, principal.as_bytes().to_vec());
    }
    // In the chain the inner connection has no TLS at all.
    put(
        &["connection", "mtls"],
        vec![u8::from(!chain && attrs.peer_principal.is_some())],
    );
    // No SNI: Envoy's value is the empty string.
    put(
        &["connection", "requested_server_name"],
        if chain {
            Vec::new()
        } else {
            attrs.sni.clone().unwrap_or_default().into_bytes()
        },
    );
    put(&["connection", "id"], connection_id.to_le_bytes().to_vec());
    if chain {
        if let Some(ip) = attrs.source_ip {
            let base = "envoy.filters.listener.original_dst.remote_ip";
            // The object as a whole reads as 4 zero bytes (an empty CEL map); its fields
            // are what carry the address.
            put(&["filter_state", base], vec![0; 4]);
            put(&["filter_state", base, "ip"], ip.to_string().into_bytes());
            put(
                &["filter_state", base, "port"],
                i64::from(source_port).to_le_bytes().to_vec(),
            );
        }
    }
    // `source.address` is Envoy's downstream remote address. In an HTTP filter the connection
    // manager (`use_remote_address: false`) replaces it with the last `X-Forwarded-For`
    // address, port 0: that is the case's `remote_ip` when it differs from the peer.
    let forwarded = attrs
        .remote_ip
        .filter(|r| http && Some(*r) != attrs.source_ip);
    let source = match forwarded {
        Some(ip) => Some((ip, 0)),
        None => attrs.source_ip.map(|ip| (ip, source_port)),
    };
    if let Some((ip, port)) = source {
        put(&["source", "address"], address(ip, port));
        put(&["source", "port"], i64::from(port).to_le_bytes().to_vec());
    }
    let port = attrs.destination_port.unwrap_or(0);
    if let Some(ip) = attrs.destination_ip {
        put(&["destination", "address"], address(ip, port));
    }
    if let Some(port) = attrs.destination_port {
        put(
            &["destination", "port"],
            i64::from(port).to_le_bytes().to_vec(),
        );
    }

    // Dynamic metadata: the whole message, and the CEL views below it.
    let payload: Option<&Claim> = if http {
        attrs.http.as_ref().and_then(|h| h.jwt.as_ref())
    } else {
        None
    };
    match payload {
        Some(claim) => {
            let fields = vec![(jwt.key.clone(), claim.clone())];
            put(
                &["metadata"],
                proto_metadata(&[(jwt.namespace.clone(), fields.clone())]),
            );
            put(
                &["metadata", "filter_metadata"],
                serialize_pairs(&[(jwt.namespace.as_bytes().to_vec(), cel_map(&fields))]),
            );
            put(
                &["metadata", "filter_metadata", &jwt.namespace],
                cel_map(&fields),
            );
            put(
                &["metadata", "filter_metadata", &jwt.namespace, &jwt.key],
                cel_value(claim),
            );
        }
        None => put(&["metadata"], Vec::new()),
    }

    if http {
        if let Some(h) = &attrs.http {
            let headers = request_headers(attrs);
            let joined = joined(&headers);
            let url_path = match h.path.iter().position(|b| *b == b'?') {
                Some(i) => h.path.get(..i).unwrap_or_default().to_vec(),
                None => h.path.clone(),
            };
            let scheme = joined
                .iter()
                .find(|(k, _)| k == b":scheme")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            put(&["request", "method"], h.method.clone());
            put(&["request", "path"], h.path.clone());
            put(&["request", "url_path"], url_path);
            put(&["request", "host"], h.host.clone());
            put(&["request", "scheme"], scheme);
            put(&["request", "protocol"], b"HTTP/1.1".to_vec());
            for (k, v) in &joined {
                if let Ok(name) = std::str::from_utf8(k) {
                    put(&["request", "headers", name], v.clone());
                }
            }
            put(&["request", "headers"], serialize_pairs(&joined));
        }
    }
    p
}
