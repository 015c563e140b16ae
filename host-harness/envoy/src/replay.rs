//! `authz-harness replay --envoy`: every fixture case replayed through a real Envoy on
//! loopback with the module loaded (docs/cli.md), as a [`Decider`].
//!
//! How a case becomes traffic:
//! * Addresses: fixtures use cluster addresses (10.x); the one /8 network the cases use is
//!   moved onto 127.0.0.0/8 (10.0.0.7 → 127.0.0.7), in the cases and in the address fields of
//!   the configuration (workload and service addresses, `ipBlocks`, `notIpBlocks`,
//!   `remoteIpBlocks`, `notRemoteIpBlocks`, `when` on `source.ip`, `destination.ip`,
//!   `remote.ip`), so CIDR containment is unchanged. The client binds the case's source address
//!   (and port, if given) before connecting; Envoy listens on the case's destination address
//!   and port. An absent address becomes one that nothing in the configuration names.
//! * Identity: a client certificate from the test CA whose URI SAN is the case's principal
//!   (no principal: no client certificate; the listeners request one but do not require it).
//! * Requests (waypoint mode, cases with `http`) go through an HTTP listener with the module as
//!   an HTTP filter; everything else is a connection through a listener with the module as a
//!   network filter (`config_for_traffic`), probed with a unique line to an echo upstream.
//! * JWT: the case's payload is signed (ES256, a key made for the run) and sent as
//!   `Authorization: Bearer`; Envoy's `jwt_authn` verifies it and leaves the payload in dynamic
//!   metadata for the module, as Istio's RequestAuthentication does.
//! * Decision: 403 `RBAC: access denied` = deny and a response from the upstream = allow (L7);
//!   the connection closed with nothing reaching the upstream = deny and the line echoed back =
//!   allow (L4). Envoy cannot say which policy decided, so policies, audit and dry-run are not
//!   compared.
//!
//! * Addresses loopback cannot hold (IPv6, outside the moved /8) are announced in a PROXY
//!   protocol header to a listener with the `proxy_protocol` listener filter, which makes
//!   them the connection's source and destination.
//! * Layer 7 cases (mode waypoint) also run through Istio's waypoint chain (see
//!   [`super::chain`]): a client Envoy tunnels each request over HTTP/2 `CONNECT` with the
//!   case's certificate, the destination in the `CONNECT` authority, the source in a PROXY
//!   protocol header, a `remoteAddress` as `X-Forwarded-For`. Both topologies must agree; a
//!   case one of them cannot run is decided by the other.
//!
//! Cases that cannot be reproduced are skipped with the reason: a source and destination of
//! different address families at Layer 4 (one PROXY header carries one family), a
//! `remoteAddress` on the direct listener alone, payloads jwt_authn refuses (401), headers
//! Envoy owns (host, content-length, connection, pseudo-headers, …), requests Envoy itself
//! refuses before the filter (400), ports that cannot be bound.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::Result;
use authz_plugin::engine::matcher::Cidr;
use authz_plugin::engine::{Claim, Mode, Verdict};
use serde_json::Value;

use super::bootstrap::JwtAuthn;
use super::bootstrap::{EnvoySpec, ListenerKind, ListenerSpec, Plugin, Upstream as UpstreamSpec};
use super::chain::{Authz, Chain, TunnelSpec, Variant};
use super::client::{self, ConnError, HttpRequest, TlsClient};
use super::jwt::JwtSigner;
use super::ports::{free_loopback, free_port};
use super::upstream::Upstream;
use super::{validate, Envoy, TestEnv};
use authz_fixture::fixture::{Case, Fixture};
use authz_fixture::replay::{config_for_traffic, mode_of, Decider, Observed, Outcome};

/// Replays fixtures through Envoy. Each fixture's cases are run when it is configured (one
/// Envoy for its requests, one for its connections), and handed out by `decide`.
pub struct EnvoyDecider {
    env: TestEnv,
    wasm: PathBuf,
    results: Vec<(String, Outcome)>,
    cursor: usize,
    runs: usize,
    signer: JwtSigner,
}

impl std::fmt::Debug for EnvoyDecider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvoyDecider")
            .field("dir", &self.env.dir())
            .field("wasm", &self.wasm)
            .finish()
    }
}

impl EnvoyDecider {
    /// `bin`: the envoy binary; `wasm`: the module.
    pub fn new(bin: PathBuf, wasm: PathBuf) -> Result<EnvoyDecider> {
        Ok(EnvoyDecider {
            env: TestEnv::with_bin(bin)?,
            wasm,
            results: Vec::new(),
            cursor: 0,
            runs: 0,
            signer: JwtSigner::new()?,
        })
    }

    /// Where the Envoy bootstraps and logs go (kept with `keep_files`).
    pub fn work_dir(&self) -> &Path {
        self.env.dir()
    }

    /// Keeps the work directory after the decider is dropped.
    pub fn keep_files(&mut self) -> PathBuf {
        self.env.keep()
    }
}

// ---- addresses --------------------------------------------------------------------------

/// Moves one /8 network (`from`) onto 127.0.0.0/8.
#[derive(Clone, Copy, Debug)]
struct AddrMap {
    from: Option<u8>,
}

impl AddrMap {
    fn ip(&self, ip: IpAddr) -> Result<Ipv4Addr, String> {
        let IpAddr::V4(v4) = ip else {
            return Err(format!(
                "IPv6 address {ip} cannot be reproduced on 127.0.0.0/8"
            ));
        };
        let [a, b, c, d] = v4.octets();
        match self.from {
            Some(from) if from == a => Ok(Ipv4Addr::new(127, b, c, d)),
            Some(from) => Err(format!(
                "address {ip} is outside {from}.0.0.0/8, the network moved onto 127.0.0.0/8"
            )),
            None => Err(format!("address {ip} cannot be placed")),
        }
    }

    /// Rewrites an address or CIDR of the configuration; `Err` when the fixture cannot be
    /// moved at all. Values are read with the engine's own [`Cidr`], so that exactly what the
    /// module accepts is moved.
    fn config_value(&self, s: &str) -> Result<String, String> {
        let Some(
            net @ Cidr {
                addr: IpAddr::V4(ip),
                prefix: len,
            },
        ) = Cidr::parse(s)
        else {
            return Ok(s.to_string()); // IPv6 or invalid: left to the module as is
        };
        let a = ip.octets()[0];
        let Some(from) = self.from else {
            return Ok(s.to_string());
        };
        if len == 0 {
            return Ok(s.to_string());
        }
        if a == 127 {
            return Err(format!("the configuration names {s} in 127.0.0.0/8"));
        }
        if len < 8 && net.contains(IpAddr::V4(Ipv4Addr::new(from, 0, 0, 0))) {
            return Err(format!(
                "the configuration's {s} spans more than {from}.0.0.0/8"
            ));
        }
        if a == from {
            let [_, b, c, d] = ip.octets();
            let moved = Ipv4Addr::new(127, b, c, d);
            return Ok(if s.contains('/') {
                format!("{moved}/{len}")
            } else {
                moved.to_string()
            });
        }
        Ok(s.to_string())
    }
}

/// Applies `f` to every address-valued string of the configuration.
fn map_config_addresses(
    config: &mut Value,
    f: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<(), String> {
    fn strings(
        v: Option<&mut Value>,
        f: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<(), String> {
        if let Some(Value::Array(items)) = v {
            for item in items {
                if let Value::String(s) = item {
                    *s = f(s)?;
                }
            }
        }
        Ok(())
    }
    for list in ["workloads", "services"] {
        if let Some(Value::Array(items)) = config.get_mut(list) {
            for item in items {
                strings(item.get_mut("addresses"), f)?;
            }
        }
    }
    let Some(Value::Array(policies)) = config.get_mut("policies") else {
        return Ok(());
    };
    for policy in policies {
        let Some(Value::Array(rules)) = policy.pointer_mut("/spec/rules") else {
            continue;
        };
        for rule in rules {
            if let Some(Value::Array(from)) = rule.get_mut("from") {
                for entry in from {
                    if let Some(source) = entry.get_mut("source") {
                        for key in [
                            "ipBlocks",
                            "notIpBlocks",
                            "remoteIpBlocks",
                            "notRemoteIpBlocks",
                        ] {
                            strings(source.get_mut(key), f)?;
                        }
                    }
                }
            }
            if let Some(Value::Array(when)) = rule.get_mut("when") {
                for cond in when {
                    let key = cond.get("key").and_then(Value::as_str).unwrap_or("");
                    if matches!(key, "source.ip" | "destination.ip" | "remote.ip") {
                        strings(cond.get_mut("values"), f)?;
                        strings(cond.get_mut("notValues"), f)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The /8 network most case addresses are in.
fn dominant_octet(cases: &[Case]) -> Option<u8> {
    let mut count: BTreeMap<u8, usize> = BTreeMap::new();
    for c in cases {
        let a = &c.attributes;
        for ip in [a.source_ip, a.destination_ip, a.remote_ip]
            .into_iter()
            .flatten()
        {
            if let IpAddr::V4(v4) = ip {
                *count.entry(v4.octets()[0]).or_default() += 1;
            }
        }
    }
    count
        .into_iter()
        .max_by_key(|(octet, n)| (*n, std::cmp::Reverse(*octet)))
        .map(|(o, _)| o)
}

fn mentions_port_constraints(config: &Value) -> bool {
    let text = config
        .get("policies")
        .map(Value::to_string)
        .unwrap_or_default();
    text.contains("\"notPorts\"") || text.contains("\"destination.port\"")
}

// ---- the plan for one case ---------------------------------------------------------------

#[derive(Clone, Debug)]
struct Plan {
    index: usize,
    http: bool,
    source: SocketAddr,
    dest: SocketAddr,
    principal: Option<String>,
    sni: Option<String>,
    request: Option<HttpRequest>,
    /// The request carries a signed JWT (the listener then needs jwt_authn).
    jwt: bool,
    /// Addresses that cannot be placed on loopback (IPv6, outside the moved /8): announced
    /// (source, destination) in a PROXY protocol header to a listener that reads one.
    proxied: Option<(SocketAddr, SocketAddr)>,
}

const OWNED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
];

fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// The JSON of a claim (numbers and booleans, which the engine does not keep, become null).
fn claim_json(c: &Claim) -> Value {
    match c {
        Claim::String(s) => Value::String(s.clone()),
        Claim::List(items) => Value::Array(items.iter().map(claim_json).collect()),
        Claim::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), claim_json(v)))
                .collect(),
        ),
        Claim::Other => Value::Null,
    }
}

/// The cases' JWT payloads as written in the fixture file (numbers and booleans included),
/// by case index; `None` where the file cannot be matched to the loaded cases.
fn raw_jwts(fixture: &Fixture) -> Vec<Option<Value>> {
    let raw = authz_fixture::fixture::read_value(&fixture.path).ok();
    let cases = raw
        .as_ref()
        .and_then(|v| v.get("cases"))
        .and_then(Value::as_array);
    fixture
        .cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let c = cases?.get(i)?;
            let name = c.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
            (name == case.name)
                .then(|| c.pointer("/http/jwt").cloned())
                .flatten()
                .filter(|v| !v.is_null())
        })
        .collect()
}

fn request_of(case: &Case) -> Result<Option<HttpRequest>, String> {
    let Some(http) = &case.attributes.http else {
        return Ok(None);
    };
    let text = |what: &str, b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    };
    let method = text("the method", &http.method)?;
    let path = text("the path", &http.path)?;
    let host = text("the host", &http.host)?;
    if !token_ok(&method) {
        return Err(format!("method {method:?} cannot be sent as HTTP/1.1"));
    }
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("path {path:?} cannot be sent as HTTP/1.1"));
    }
    if host.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("host {host:?} cannot be sent as HTTP/1.1"));
    }
    let mut req = HttpRequest::new(&method, &path, &host);
    for (name, value) in &http.headers {
        let value = text(&format!("header {name}"), value)?;
        if name.starts_with(':') || OWNED_HEADERS.contains(&name.as_str()) {
            return Err(format!("header {name} is Envoy's own: not reproduced"));
        }
        if !token_ok(name) || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!(
                "header {name}: {value:?} cannot be sent as HTTP/1.1"
            ));
        }
        req = req.header(name, &value);
    }
    Ok(Some(req))
}

fn sni_ok(sni: &str) -> bool {
    sni.parse::<IpAddr>().is_err()
        && rustls::pki_types::ServerName::try_from(sni.to_string()).is_ok()
}

/// One Layer 7 case through the waypoint chain: any addresses (carried by PROXY protocol
/// headers and the `CONNECT` authority), so nothing is moved onto loopback.
#[derive(Clone, Debug)]
struct ChainPlan {
    index: usize,
    source: SocketAddr,
    dest: SocketAddr,
    principal: Option<String>,
    request: HttpRequest,
    jwt: bool,
}

/// The CIDR blocks written in any address field of `config` (zero-length blocks left out:
/// they cover every address and name none in particular).
fn config_networks(config: &Value) -> Vec<Cidr> {
    let mut nets = Vec::new();
    let mut probe = config.clone();
    let _ = map_config_addresses(&mut probe, &mut |s| {
        if let Some(net) = Cidr::parse(s) {
            nets.push(net);
        }
        Ok(s.to_string())
    });
    nets.retain(|n| n.prefix > 0);
    nets
}

/// The first of `a.b.c.1` … `a.b.c.250` that no address field of `config` covers and that
/// `usable` accepts.
fn address_outside(
    config: &Value,
    [a, b, c]: [u8; 3],
    usable: impl Fn(Ipv4Addr) -> bool,
) -> Option<Ipv4Addr> {
    let nets = config_networks(config);
    (1..=250u8)
        .map(|d| Ipv4Addr::new(a, b, c, d))
        .find(|ip| !nets.iter().any(|n| n.contains(IpAddr::V4(*ip))) && usable(*ip))
}

/// An address of 192.0.2.0/24 (TEST-NET-1) that no address field of `config` covers, for
/// an absent source or destination address.
fn unnamed_test_net(config: &Value) -> Option<Ipv4Addr> {
    address_outside(config, [192, 0, 2], |_| true)
}

/// One verdict from the two topologies: both must agree; a case one of them cannot run is
/// decided by the other; a failure in either fails the case.
fn combine(direct: Option<Outcome>, chain: Option<Outcome>) -> Outcome {
    use Outcome::{Decided, Failed, Skipped};
    match (direct, chain) {
        (Some(Failed(e)), _) => Failed(format!("direct listener: {e}")),
        (_, Some(Failed(e))) => Failed(format!("waypoint chain: {e}")),
        (Some(Decided(d)), Some(Decided(c))) => {
            if d.verdict == c.verdict {
                Decided(d)
            } else {
                Failed(format!(
                    "the waypoint chain decided {} but the direct listener {}",
                    c.verdict, d.verdict
                ))
            }
        }
        (Some(Decided(o)), _) | (_, Some(Decided(o))) => Decided(o),
        (Some(Skipped(d)), Some(Skipped(c))) => Skipped(format!("{d}; {c}")),
        (Some(Skipped(r)), None) | (None, Some(Skipped(r))) => Skipped(r),
        (None, None) => Failed("envoy: case not run".into()),
    }
}

// ---- running ------------------------------------------------------------------------------

/// Extracts the module's rejection message from an Envoy log.
fn rejection(log: &str) -> String {
    if let Some(line) = log.lines().find(|l| l.contains("configuration rejected")) {
        if let Some((_, msg)) = line.split_once("configuration rejected: ") {
            return msg.trim().to_string();
        }
        return line.trim().to_string();
    }
    log.lines()
        .rev()
        .find(|l| l.contains("critical") || l.contains("error"))
        .unwrap_or("envoy refused the configuration")
        .trim()
        .to_string()
}

fn deny() -> Observed {
    Observed {
        verdict: Verdict::Deny,
        policy: None,
        audit: None,
        dry_run: None,
    }
}

fn allow() -> Observed {
    Observed {
        verdict: Verdict::Allow,
        policy: None,
        audit: None,
        dry_run: None,
    }
}

impl EnvoyDecider {
    fn plan(
        &self,
        fixture: &Fixture,
        map: AddrMap,
        config: &Value,
        free: Option<Ipv4Addr>,
    ) -> Vec<Result<Plan, String>> {
        let no_free = || {
            "no loopback address is left that the configuration does not name \
             (needed for the absent address)"
                .to_string()
        };
        let waypoint = mode_of(config) == Some(Mode::Waypoint);
        let port_sensitive = mentions_port_constraints(config);
        let raw = raw_jwts(fixture);
        let jwt_namespace = config
            .pointer("/jwt/metadataNamespace")
            .and_then(Value::as_str)
            .unwrap_or("envoy.filters.http.jwt_authn");
        fixture
            .cases
            .iter()
            .enumerate()
            .map(|(index, case)| {
                let a = &case.attributes;
                if let Some(remote) = a.remote_ip {
                    if Some(remote) != a.source_ip {
                        return Err("a remoteAddress different from the source address \
                                    (X-Forwarded-For handling) is not reproduced"
                            .into());
                    }
                }
                // An address the /8 move cannot place goes in a PROXY protocol header as it
                // is (the configuration keeps it as it is too).
                let place = |ip: Option<IpAddr>| -> Result<(IpAddr, bool), String> {
                    match ip {
                        Some(ip) => Ok(match map.ip(ip) {
                            Ok(v4) => (IpAddr::V4(v4), false),
                            Err(_) => (ip, true),
                        }),
                        None => Ok((IpAddr::V4(free.ok_or_else(no_free)?), false)),
                    }
                };
                let (source_ip, source_far) = place(a.source_ip)?;
                let (dest_ip, dest_far) = place(a.destination_ip)?;
                let far = source_far || dest_far;
                // Envoy keeps an IPv4-mapped IPv6 address as IPv6 (measured): a mixed pair
                // cannot be announced faithfully.
                if far && source_ip.is_ipv4() != dest_ip.is_ipv4() {
                    return Err(format!(
                        "a PROXY protocol header carries one address family, not {source_ip} and {dest_ip}"
                    ));
                }
                let dest_port = match a.destination_port {
                    Some(p) => p,
                    None if port_sensitive => {
                        return Err("no destination port, and the policies constrain ports".into())
                    }
                    None => free_port(&[match dest_ip {
                        IpAddr::V4(v4) if !far => IpAddr::V4(v4),
                        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    }])
                    .map_err(|e| format!("no free port for the absent destination port: {e:#}"))?,
                };
                let http = waypoint && a.http.is_some();
                let mut request = if http { request_of(case)? } else { None };
                let mut jwt = false;
                if let Some(req) = request.as_mut() {
                    jwt =
                        self.sign_jwt(case, raw.get(index).cloned().flatten(), jwt_namespace, req)?;
                }
                if let Some(sni) = &a.sni {
                    if !sni_ok(sni) {
                        return Err(format!("SNI {sni:?} cannot be sent by the TLS client"));
                    }
                }
                let principal = self.principal_uri(case)?;
                let source_port = case.source_port.unwrap_or(0);
                let (source, dest, proxied) = if far {
                    // Sent from and to loopback; the listener is chosen when Envoy starts.
                    (
                        SocketAddr::from(([127, 0, 0, 1], 0)),
                        SocketAddr::from(([0, 0, 0, 0], 0)),
                        Some((
                            SocketAddr::new(source_ip, case.source_port.filter(|p| *p != 0).unwrap_or(43210)),
                            SocketAddr::new(dest_ip, dest_port),
                        )),
                    )
                } else {
                    (
                        SocketAddr::new(source_ip, source_port),
                        SocketAddr::new(dest_ip, dest_port),
                        None,
                    )
                };
                Ok(Plan {
                    index,
                    http,
                    source,
                    dest,
                    principal,
                    sni: a.sni.clone(),
                    request,
                    jwt,
                    proxied,
                })
            })
            .collect()
    }

    /// jwt_authn verifying the tokens [`EnvoyDecider::sign_jwt`] signs and putting their payload
    /// where the plugin configuration `config` reads it (`jwt.payloadKey`).
    fn jwt_authn(&self, config: &Value) -> JwtAuthn {
        JwtAuthn {
            jwks: self.signer.jwks().to_string(),
            payload_in_metadata: config
                .pointer("/jwt/payloadKey")
                .and_then(Value::as_str)
                .unwrap_or("jwt_payload")
                .to_string(),
        }
    }

    /// Adds the case's JWT, signed, to `req`; `true` when there is one.
    fn sign_jwt(
        &self,
        case: &Case,
        raw: Option<Value>,
        jwt_namespace: &str,
        req: &mut HttpRequest,
    ) -> Result<bool, String> {
        let Some(claim) = case.attributes.http.as_ref().and_then(|h| h.jwt.as_ref()) else {
            return Ok(false);
        };
        if jwt_namespace != "envoy.filters.http.jwt_authn" {
            return Err(format!(
                "jwt.metadataNamespace {jwt_namespace} is not where jwt_authn puts payloads"
            ));
        }
        if req
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            return Err("the case has its own authorization header and a JWT".into());
        }
        let payload = raw.unwrap_or_else(|| claim_json(claim));
        let token = self
            .signer
            .sign(&payload)
            .map_err(|e| format!("signing the JWT: {e:#}"))?;
        *req = req
            .clone()
            .header("authorization", &format!("Bearer {token}"));
        Ok(true)
    }

    /// The case's principal as a URI a test certificate can carry.
    fn principal_uri(&self, case: &Case) -> Result<Option<String>, String> {
        match &case.attributes.peer_principal {
            Some(p) if p.is_empty() => Ok(None),
            Some(p) => {
                let uri = if p.contains("://") {
                    p.clone()
                } else {
                    format!("spiffe://{p}")
                };
                if let Err(e) = self.env.pki.uri_identity(&uri, p) {
                    return Err(format!(
                        "principal {p:?}: no certificate can carry it ({e})"
                    ));
                }
                Ok(Some(uri))
            }
            None => Ok(None),
        }
    }

    /// The plan of a Layer 7 case in the waypoint chain, or why it cannot run there.
    fn chain_plan(
        &self,
        index: usize,
        case: &Case,
        raw: Option<Value>,
        config: &Value,
        unnamed: Option<Ipv4Addr>,
    ) -> Result<ChainPlan, String> {
        let a = &case.attributes;
        if a.sni.is_some() {
            return Err(
                "an SNI exists only where Envoy terminates the client's TLS; \
                        the chain's internal listener has none"
                    .into(),
            );
        }
        let jwt_namespace = config
            .pointer("/jwt/metadataNamespace")
            .and_then(Value::as_str)
            .unwrap_or("envoy.filters.http.jwt_authn");
        let mut request = request_of(case)?.ok_or("no request")?;
        let jwt = self.sign_jwt(case, raw, jwt_namespace, &mut request)?;
        // The forwarded client: X-Forwarded-For, which the internal listener's connection
        // manager follows (use_remote_address: false).
        if let Some(remote) = a.remote_ip.filter(|r| Some(*r) != a.source_ip) {
            if request
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
            {
                return Err(
                    "the case has its own x-forwarded-for header and a remoteAddress".into(),
                );
            }
            request = request.header("x-forwarded-for", &remote.to_string());
        }
        let no_unnamed =
            || "no TEST-NET-1 address is left that the configuration does not name".to_string();
        let source_ip = match a.source_ip {
            Some(ip) => ip,
            None => IpAddr::V4(unnamed.ok_or_else(no_unnamed)?),
        };
        let dest_ip = match a.destination_ip {
            Some(ip) => ip,
            None => IpAddr::V4(unnamed.ok_or_else(no_unnamed)?),
        };
        let dest_port = match a.destination_port {
            Some(p) => p,
            None if mentions_port_constraints(config) => {
                return Err("no destination port, and the policies constrain ports".into())
            }
            None => 9080,
        };
        // Port 0 is what Envoy gives a forwarded address; a peer never has it.
        let source_port = case.source_port.filter(|p| *p != 0).unwrap_or(43210);
        Ok(ChainPlan {
            index,
            source: SocketAddr::new(source_ip, source_port),
            dest: SocketAddr::new(dest_ip, dest_port),
            principal: self.principal_uri(case)?,
            request,
            jwt,
        })
    }

    /// Runs the fixture's Layer 7 cases through Istio's waypoint chain (see
    /// [`super::chain`]): a client Envoy tunnels each request over HTTP/2 `CONNECT` with the
    /// case's certificate, the case's addresses in PROXY protocol headers and the `CONNECT`
    /// authority. `Err`: the module rejected the configuration.
    fn run_chain(&mut self, fixture: &Fixture) -> Result<Vec<(usize, Outcome)>, String> {
        let config = &fixture.config;
        let raw = raw_jwts(fixture);
        let unnamed = unnamed_test_net(config);
        let mut out = Vec::new();
        let mut plans = Vec::new();
        for (index, case) in fixture.cases.iter().enumerate() {
            if case.attributes.http.is_none() {
                continue;
            }
            match self.chain_plan(
                index,
                case,
                raw.get(index).cloned().flatten(),
                config,
                unnamed,
            ) {
                Ok(p) => plans.push(p),
                Err(reason) => {
                    out.push((index, Outcome::Skipped(format!("waypoint chain: {reason}"))))
                }
            }
        }
        let Some(first) = plans.first().and_then(|p| fixture.cases.get(p.index)) else {
            return Ok(out);
        };
        let fail_all = |plans: &[ChainPlan], msg: String| -> Vec<(usize, Outcome)> {
            plans
                .iter()
                .map(|p| (p.index, Outcome::Failed(msg.clone())))
                .collect()
        };
        let upstream = match Upstream::http(
            "authz-replay-chain-app",
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "allowed by authz",
        ) {
            Ok(u) => u,
            Err(e) => {
                out.extend(fail_all(&plans, format!("envoy: upstream: {e:#}")));
                return Ok(out);
            }
        };
        let plugin = Plugin::new(&self.wasm, config_for_traffic(config, first).to_string());
        let mut variant = Variant::new(
            "replay",
            Authz::Module(plugin.clone()),
            Authz::Module(plugin),
        );
        if plans.iter().any(|p| p.jwt) {
            variant.jwt = Some(self.jwt_authn(config));
        }
        variant.backend = Some(upstream.addr());
        variant.proxy_protocol = true;
        variant.require_client_certificate = false;
        // One client listener per (caller, destination): the destination goes in its
        // CONNECT authority (any address family), the source in a PROXY protocol header.
        let mut callers: Vec<(Option<String>, SocketAddr)> = Vec::new();
        for p in &plans {
            let key = (p.principal.clone(), p.dest);
            if !callers.contains(&key) {
                callers.push(key);
            }
        }
        let mut tunnels = Vec::new();
        for (i, (p, dest)) in callers.iter().enumerate() {
            let identity = match p {
                Some(uri) => match self.env.pki.uri_identity(uri, uri) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        out.extend(fail_all(&plans, format!("no certificate for {uri}: {e:#}")));
                        return Ok(out);
                    }
                },
                None => None,
            };
            tunnels.push(TunnelSpec {
                name: format!("caller-{i}"),
                variant: "replay".into(),
                identity,
                destination: Some(*dest),
                proxied: true,
            });
        }
        self.runs += 1;
        let dir = self.env.dir().join(format!("run-{}-chain", self.runs));
        let chain = match Chain::start_with(
            &self.env.bin,
            &dir,
            self.env.pki.clone(),
            vec![variant],
            tunnels,
        ) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("envoy did not start (files in {}): {e:#}", dir.display());
                if msg.contains("configuration rejected") {
                    return Err(rejection(&msg));
                }
                self.env.keep();
                out.extend(fail_all(&plans, msg));
                return Ok(out);
            }
        };
        for p in &plans {
            let Some(i) = callers
                .iter()
                .position(|(q, d)| *q == p.principal && *d == p.dest)
            else {
                continue;
            };
            let Some(addr) = chain.tunnel_named(&format!("caller-{i}")) else {
                out.push((
                    p.index,
                    Outcome::Failed("envoy: no tunnel for the caller".into()),
                ));
                continue;
            };
            // The header's destination only has to be of the source's family: the
            // waypoint takes the destination from the CONNECT authority.
            let dummy = match p.source {
                SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], p.dest.port())),
                SocketAddr::V6(_) => {
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p.dest.port()))
                }
            };
            let preamble = client::proxy_protocol_v1(p.source, dummy);
            let result = client::http_request_after(None, addr, None, &preamble, &p.request);
            out.push((
                p.index,
                classify_response(result, &chain.waypoint, &upstream, &p.request, p.source),
            ));
        }
        Ok(out)
    }

    /// An address of 127.254.0.0/16 that no address field of `config` covers and that can
    /// be bound here.
    fn unnamed_address(config: &Value) -> Option<Ipv4Addr> {
        address_outside(config, [127, 254, 254], |ip| {
            TcpListener::bind((ip, 0)).is_ok()
        })
    }

    /// Runs one group of plans (all requests, or all connections) through one Envoy.
    fn run_group(
        &mut self,
        fixture: &Fixture,
        config: &Value,
        plans: &[Plan],
        http: bool,
    ) -> Vec<(usize, Outcome)> {
        let mut out = Vec::new();
        let Some(first) = plans.first() else {
            return out;
        };
        let Some(case) = fixture.cases.get(first.index) else {
            return out;
        };
        let plugin_config = config_for_traffic(config, case);
        let upstream = if http {
            Upstream::http(
                "authz-replay-app",
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                "allowed by authz",
            )
        } else {
            Upstream::echo("authz-replay-echo", IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
        let upstream = match upstream {
            Ok(u) => u,
            Err(e) => {
                return plans
                    .iter()
                    .map(|p| (p.index, Outcome::Failed(format!("envoy: upstream: {e:#}"))))
                    .collect();
            }
        };
        // One listener per destination; destinations that cannot be bound are skipped.
        let mut listeners: BTreeMap<SocketAddr, Option<String>> = BTreeMap::new();
        for p in plans.iter().filter(|p| p.proxied.is_none()) {
            listeners.entry(p.dest).or_insert_with(|| {
                TcpListener::bind(p.dest)
                    .err()
                    .map(|e| format!("cannot listen on {} here: {e}", p.dest))
            });
        }
        let mut spec = EnvoySpec::default();
        // jwt_authn only where tokens are sent: it would refuse any other Authorization header.
        if http && plans.iter().any(|p| p.jwt) {
            spec.jwt = Some(self.jwt_authn(config));
        }
        let plugin = Plugin::new(&self.wasm, plugin_config.to_string());
        let server_tls = match self.env.server_tls(false) {
            Ok(t) => t,
            Err(e) => {
                return plans
                    .iter()
                    .map(|p| (p.index, Outcome::Failed(format!("envoy: {e:#}"))))
                    .collect()
            }
        };
        // Every listener of the run: the module in front of the upstream, over mTLS.
        let module_listener = |name: String, addr: SocketAddr| ListenerSpec {
            name,
            address: addr.ip(),
            port: addr.port(),
            tls: Some(server_tls.clone()),
            kind: if http {
                ListenerKind::Http {
                    plugin: Some(plugin.clone()),
                }
            } else {
                ListenerKind::Tcp {
                    plugin: Some(plugin.clone()),
                }
            },
            upstream: UpstreamSpec::plain(upstream.addr()),
        };
        for (i, (addr, unbindable)) in listeners.iter().enumerate() {
            if unbindable.is_some() {
                continue;
            }
            spec.listeners
                .push(module_listener(format!("dest-{i}"), *addr));
        }
        // One listener reading PROXY protocol headers for the cases loopback cannot place.
        let proxied_at = if plans.iter().any(|p| p.proxied.is_some()) {
            free_loopback().ok()
        } else {
            None
        };
        if let Some(addr) = proxied_at {
            spec.listeners.push(module_listener("proxied".into(), addr));
            spec.proxy_protocol.push("proxied".into());
        }
        self.runs += 1;
        let dir = self.env.dir().join(format!(
            "run-{}-{}",
            self.runs,
            if http { "http" } else { "tcp" }
        ));
        let envoy = if spec.listeners.is_empty() {
            None
        } else {
            match Envoy::start(&self.env.bin, spec, &dir, self.env.pki.clone()) {
                Ok(e) => Some(e),
                Err(e) => {
                    let msg = format!("envoy did not start (files in {}): {e:#}", dir.display());
                    self.env.keep();
                    return plans
                        .iter()
                        .map(|p| (p.index, Outcome::Failed(msg.clone())))
                        .collect();
                }
            }
        };
        for p in plans {
            let mut p = p.clone();
            let mut preamble = Vec::new();
            if let Some((source, dest)) = p.proxied {
                let Some(at) = proxied_at else {
                    out.push((
                        p.index,
                        Outcome::Skipped("no free port for the PROXY protocol listener".into()),
                    ));
                    continue;
                };
                preamble = client::proxy_protocol_v1(source, dest);
                p.dest = at;
            } else if let Some(Some(reason)) = listeners.get(&p.dest) {
                out.push((p.index, Outcome::Skipped(reason.clone())));
                continue;
            }
            let p = &p;
            let Some(envoy) = envoy.as_ref() else {
                continue;
            };
            let identity = match &p.principal {
                Some(uri) => match self.env.pki.uri_identity(uri, uri) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        out.push((
                            p.index,
                            Outcome::Skipped(format!("no certificate for {uri}: {e:#}")),
                        ));
                        continue;
                    }
                },
                None => None,
            };
            let tls = TlsClient {
                ca: self.env.pki.ca_der().clone(),
                identity,
                sni: p.sni.clone(),
            };
            let result = if http {
                self.observe_http(envoy, &upstream, p, &tls, &preamble)
            } else {
                self.observe_tcp(envoy, &upstream, p, &tls, &preamble)
            };
            out.push((p.index, result));
        }
        out
    }

    fn observe_tcp(
        &self,
        envoy: &Envoy,
        upstream: &Upstream,
        p: &Plan,
        tls: &TlsClient,
        preamble: &[u8],
    ) -> Outcome {
        let r = client::tcp_probe_after(Some(p.source), p.dest, Some(tls), preamble);
        if let Some(ConnError::Connect(e)) = &r.error {
            return Outcome::Skipped(format!("cannot connect from {} here: {e}", p.source));
        }
        if r.allowed(upstream) {
            return Outcome::Decided(allow());
        }
        if r.denied(upstream) {
            return Outcome::Decided(deny());
        }
        Outcome::Failed(format!(
            "envoy: the connection was neither allowed nor denied: {r:?} (log {})",
            envoy.log_file().display()
        ))
    }

    fn observe_http(
        &self,
        envoy: &Envoy,
        upstream: &Upstream,
        p: &Plan,
        tls: &TlsClient,
        preamble: &[u8],
    ) -> Outcome {
        let Some(req) = &p.request else {
            return Outcome::Failed("envoy: no request to send".into());
        };
        classify_response(
            client::http_request_after(Some(p.source), p.dest, Some(tls), preamble, req),
            envoy,
            upstream,
            req,
            p.source,
        )
    }
}

/// What a response (or its absence) says about the decision.
fn classify_response(
    result: Result<client::HttpResult, ConnError>,
    envoy: &Envoy,
    upstream: &Upstream,
    req: &HttpRequest,
    source: SocketAddr,
) -> Outcome {
    let p_source = source;
    {
        match result {
            Ok(resp) => {
                let body = resp.body_text();
                // A HEAD response carries no body.
                let head = req.method.eq_ignore_ascii_case("HEAD");
                if resp.status == 403
                    && (body == "RBAC: access denied" || (head && body.is_empty()))
                {
                    Outcome::Decided(deny())
                } else if resp.status == 200 && resp.header("x-upstream") == Some(upstream.name()) {
                    Outcome::Decided(allow())
                } else if resp.header("x-upstream").is_none() && resp.status == 401 {
                    Outcome::Skipped(format!("jwt_authn refused the token: 401 {body:?}"))
                } else if resp.header("x-upstream").is_none()
                    && matches!(resp.status, 400 | 413 | 414 | 431)
                {
                    Outcome::Skipped(format!(
                        "envoy refused the request before the filter: {} {body:?}",
                        resp.status
                    ))
                } else {
                    Outcome::Failed(format!(
                        "envoy: unexpected response {} {body:?} (log {})",
                        resp.status,
                        envoy.log_file().display()
                    ))
                }
            }
            Err(ConnError::Connect(e)) => {
                Outcome::Skipped(format!("cannot connect from {p_source} here: {e}"))
            }
            Err(e) => Outcome::Failed(format!(
                "envoy: no HTTP response: {e} (log {})",
                envoy.log_file().display()
            )),
        }
    }
}

impl Decider for EnvoyDecider {
    fn label(&self) -> &str {
        "envoy"
    }

    fn configure(&mut self, fixture: &Fixture) -> Result<(), String> {
        self.results.clear();
        self.cursor = 0;
        let mut config = fixture.config.clone();

        if fixture.expect_error.is_some() {
            // Only whether Envoy (the module's on_configure) accepts it.
            let mut spec = EnvoySpec::default();
            let kind = match mode_of(&config) {
                Some(Mode::Waypoint) => ListenerKind::Http {
                    plugin: Some(Plugin::new(&self.wasm, config.to_string())),
                },
                _ => ListenerKind::Tcp {
                    plugin: Some(Plugin::new(&self.wasm, config.to_string())),
                },
            };
            let tls = self.env.server_tls(false).map_err(|e| format!("{e:#}"))?;
            spec.listeners.push(ListenerSpec {
                name: "validate".into(),
                address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 1,
                tls: Some(tls),
                kind,
                upstream: UpstreamSpec::plain(SocketAddr::from(([127, 0, 0, 1], 1))),
            });
            self.runs += 1;
            let path = self.env.dir().join(format!("validate-{}.json", self.runs));
            let rendered = spec.render().map_err(|e| format!("{e:#}"))?;
            std::fs::write(&path, rendered.to_string()).map_err(|e| e.to_string())?;
            return match validate(&self.env.bin, &path) {
                Ok(_) => Ok(()),
                Err(e) => Err(rejection(&format!("{e:#}"))),
            };
        }

        let map = AddrMap {
            from: dominant_octet(&fixture.cases),
        };
        let fixture_skip = map_config_addresses(&mut config, &mut |s| map.config_value(s)).err();
        let free = Self::unnamed_address(&config);
        let plans: Vec<Result<Plan, String>> = match &fixture_skip {
            Some(reason) => fixture.cases.iter().map(|_| Err(reason.clone())).collect(),
            None => self.plan(fixture, map, &config, free),
        };

        let mut results: Vec<Option<Outcome>> = vec![None; fixture.cases.len()];
        for (i, p) in plans.iter().enumerate() {
            if let (Err(reason), Some(slot)) = (p, results.get_mut(i)) {
                *slot = Some(Outcome::Skipped(reason.clone()));
            }
        }
        for http in [true, false] {
            let group: Vec<Plan> = plans
                .iter()
                .filter_map(|p| p.as_ref().ok())
                .filter(|p| p.http == http)
                .cloned()
                .collect();
            if group.is_empty() {
                continue;
            }
            let outcome = self.run_group(fixture, &config, &group, http);
            // A configuration the module rejects shows as Envoy not starting.
            if let Some((_, Outcome::Failed(msg))) = outcome.first() {
                if msg.starts_with("envoy did not start") && msg.contains("configuration rejected")
                {
                    return Err(rejection(msg));
                }
            }
            for (i, r) in outcome {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(r);
                }
            }
        }
        // Layer 7 through Istio's waypoint chain as well: both topologies must agree.
        let mut chained: Vec<Option<Outcome>> = vec![None; fixture.cases.len()];
        if mode_of(&fixture.config) == Some(Mode::Waypoint) {
            for (i, r) in self.run_chain(fixture)? {
                if let Some(slot) = chained.get_mut(i) {
                    *slot = Some(r);
                }
            }
        }
        self.results = fixture
            .cases
            .iter()
            .zip(results.into_iter().zip(chained))
            .map(|(c, (direct, chain))| (c.name.clone(), combine(direct, chain)))
            .collect();
        Ok(())
    }

    fn decide(&mut self, case: &Case) -> Outcome {
        let at_cursor = self
            .results
            .get(self.cursor)
            .is_some_and(|(n, _)| *n == case.name);
        let index = if at_cursor {
            Some(self.cursor)
        } else {
            self.results.iter().position(|(n, _)| *n == case.name)
        };
        match index.and_then(|i| self.results.get(i).map(|(_, r)| (i, r.clone()))) {
            Some((i, r)) => {
                self.cursor = i + 1;
                r
            }
            None => Outcome::Failed(format!("envoy: case {:?} was not prepared", case.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn moves_one_network_onto_loopback() {
        let map = AddrMap { from: Some(10) };
        assert_eq!(
            map.ip("10.0.0.7".parse().unwrap()).unwrap(),
            Ipv4Addr::new(127, 0, 0, 7)
        );
        assert!(map.ip("11.0.0.1".parse().unwrap()).is_err());
        assert!(map.ip("fd00::1".parse().unwrap()).is_err());
        assert_eq!(map.config_value("10.1.0.0/16").unwrap(), "127.1.0.0/16");
        assert_eq!(map.config_value("10.1.2.3").unwrap(), "127.1.2.3");
        assert_eq!(map.config_value("10.1.2.3/8").unwrap(), "127.1.2.3/8");
        assert_eq!(
            map.config_value("192.168.0.0/16").unwrap(),
            "192.168.0.0/16"
        );
        assert_eq!(map.config_value("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(map.config_value("fd00:1::/64").unwrap(), "fd00:1::/64");
        assert!(map.config_value("8.0.0.0/6").is_err());
        assert!(map.config_value("127.0.0.1").is_err());
        // What the engine refuses stays as written, for the module to refuse as the native
        // engine does, instead of being moved into a form it would accept.
        for refused in [" 10.1.2.3", "10.1.0.0/016", "10.1.0.0/+16", "10.1.0.0/"] {
            assert_eq!(map.config_value(refused).unwrap(), refused);
        }
    }

    #[test]
    fn rewrites_only_address_fields() {
        let mut config = json!({
            "workloads": [{"addresses": ["10.0.0.10"]}],
            "services": [{"addresses": ["10.96.0.10"], "hosts": ["10.0.0.1"]}],
            "policies": [{"spec": {"rules": [{
                "from": [{"source": {"ipBlocks": ["10.1.0.0/16"], "principals": ["10.0.0.1"]}}],
                "when": [
                    {"key": "destination.ip", "values": ["10.0.0.10"]},
                    {"key": "request.headers[x-ip]", "values": ["10.0.0.1"]}
                ]
            }]}}]
        });
        let map = AddrMap { from: Some(10) };
        map_config_addresses(&mut config, &mut |s| map.config_value(s)).unwrap();
        assert_eq!(config["workloads"][0]["addresses"][0], "127.0.0.10");
        assert_eq!(config["services"][0]["addresses"][0], "127.96.0.10");
        assert_eq!(config["services"][0]["hosts"][0], "10.0.0.1");
        let rule = &config["policies"][0]["spec"]["rules"][0];
        assert_eq!(rule["from"][0]["source"]["ipBlocks"][0], "127.1.0.0/16");
        assert_eq!(rule["from"][0]["source"]["principals"][0], "10.0.0.1");
        assert_eq!(rule["when"][0]["values"][0], "127.0.0.10");
        assert_eq!(rule["when"][1]["values"][0], "10.0.0.1");
    }

    #[test]
    fn finds_the_rejection_message() {
        let log = "[..][error][wasm] wasm log x: authz: configuration rejected: policy default/p: \
                   rules[0].to[0].operation.ports: \"x\" is not a port\n[..][critical] boom";
        assert!(rejection(log).starts_with("policy default/p"));
    }
}
