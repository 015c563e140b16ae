//! Envoy bootstrap generation for the tests: static listeners (mTLS or plaintext), each with
//! the module as an HTTP filter (waypoint) or a network filter (ztunnel) or without it, and a
//! static upstream cluster per listener. Rendered as JSON (a subset of YAML Envoy reads as
//! `.json`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use super::certs::Identity;

/// The Wasm runtime of the official Envoy build.
pub const V8_RUNTIME: &str = "envoy.wasm.runtime.v8";

/// How the authz module is loaded into a listener.
#[derive(Clone, Debug)]
pub struct Plugin {
    /// The module file (`authz_plugin.wasm`).
    pub wasm: PathBuf,
    /// The plugin configuration (docs/configuration.md) as JSON text, passed to the module as a
    /// `google.protobuf.StringValue`.
    pub config: String,
    /// Envoy `PluginConfig.name`; also used as `root_id`.
    pub name: String,
    /// `vm_config.vm_id`.
    pub vm_id: String,
    /// `failure_policy`: `FAIL_CLOSED` (default), `FAIL_OPEN`, `FAIL_RELOAD`.
    pub failure_policy: String,
    /// `vm_config.runtime`.
    pub runtime: String,
}

impl Plugin {
    pub fn new(wasm: impl Into<PathBuf>, config: impl Into<String>) -> Plugin {
        Plugin {
            wasm: wasm.into(),
            config: config.into(),
            name: "istio-authz".to_string(),
            vm_id: "istio-authz".to_string(),
            failure_policy: "FAIL_CLOSED".to_string(),
            runtime: V8_RUNTIME.to_string(),
        }
    }

    /// Envoy's `PluginConfig` of the module.
    pub fn plugin_config(&self) -> Value {
        json!({
            "name": self.name,
            "root_id": self.name,
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": self.config,
            },
            "failure_policy": self.failure_policy,
            "vm_config": {
                "vm_id": self.vm_id,
                "runtime": self.runtime,
                "code": { "local": { "filename": self.wasm.display().to_string() } },
            },
        })
    }
}

/// Server side TLS of a listener.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: Arc<Identity>,
    /// Trusted CA bundle for client certificates (PEM file).
    pub ca_file: PathBuf,
    /// `true`: the handshake fails without a client certificate (ztunnel and waypoint in Istio
    /// always see one). `false`: a client certificate is requested and verified if sent, but a
    /// client without one is let through to the filters (a "plaintext" peer with no identity).
    pub require_client_certificate: bool,
}

/// Client side TLS of an upstream cluster (e.g. waypoint → destination ztunnel).
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// The certificate Envoy presents upstream (the waypoint's own identity).
    pub cert: Arc<Identity>,
    pub ca_file: PathBuf,
    pub sni: Option<String>,
}

/// Where a listener sends what it lets through.
#[derive(Clone, Debug)]
pub enum Dest {
    Addr(SocketAddr),
    /// Another listener of the same Envoy, by name.
    Listener(String),
}

#[derive(Clone, Debug)]
pub struct Upstream {
    pub dest: Dest,
    /// Bind upstream connections to this source address (`upstream_bind_config`), so the next
    /// hop sees this proxy's own address.
    pub source_address: Option<IpAddr>,
    pub tls: Option<UpstreamTls>,
}

impl Upstream {
    pub fn plain(addr: SocketAddr) -> Upstream {
        Upstream {
            dest: Dest::Addr(addr),
            source_address: None,
            tls: None,
        }
    }
}

#[derive(Clone, Debug)]
pub enum ListenerKind {
    /// HTTP connection manager with the module (if any) as an HTTP filter before the router.
    Http { plugin: Option<Plugin> },
    /// The module (if any) as a network filter before `tcp_proxy`, which does not connect
    /// upstream before downstream data got past the module (`upstream_connect_mode:
    /// ON_DOWNSTREAM_DATA`).
    Tcp { plugin: Option<Plugin> },
    /// Both filters: the module as a network filter and again as an HTTP filter inside the
    /// HTTP connection manager.
    HttpWithNetwork { network: Plugin, http: Plugin },
}

#[derive(Clone, Debug)]
pub struct ListenerSpec {
    pub name: String,
    pub address: IpAddr,
    /// 0 = any free port (chosen when Envoy is started).
    pub port: u16,
    pub tls: Option<ServerTls>,
    pub kind: ListenerKind,
    pub upstream: Upstream,
}

/// Envoy's `jwt_authn` in front of the module in every HTTP listener: tokens signed by the
/// keys of `jwks` are verified and their payload put into dynamic metadata
/// (`envoy.filters.http.jwt_authn` / `payload_in_metadata`), as Istio's RequestAuthentication
/// does. A request without a token passes; one with a bad token gets 401.
#[derive(Clone, Debug)]
pub struct JwtAuthn {
    /// JWKS JSON (`local_jwks.inline_string`).
    pub jwks: String,
    /// The metadata key of the payload (the plugin configuration's `jwt.payloadKey`).
    pub payload_in_metadata: String,
}

/// How the HTTP connection manager treats X-Forwarded-For.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedFor {
    /// `use_remote_address: true`: the downstream remote address, which the module reads as
    /// `source.address`, is the TCP peer; a client cannot change it with X-Forwarded-For.
    #[default]
    Ignore,
    /// `use_remote_address: false` (Envoy's default and Istio's waypoint setting): the remote
    /// address is taken from X-Forwarded-For when present, so `source.address` is whatever
    /// the client wrote there.
    Trust,
}

/// A whole Envoy: its listeners. Admin is always on 127.0.0.1 with a kernel-chosen port.
#[derive(Clone, Debug, Default)]
pub struct EnvoySpec {
    pub listeners: Vec<ListenerSpec>,
    pub jwt: Option<JwtAuthn>,
    pub forwarded_for: ForwardedFor,
    /// Listeners (by name) that read a PROXY protocol header before TLS: the connection's
    /// source and destination addresses are then the header's, so a test can present any
    /// address, IPv6 included, from loopback.
    pub proxy_protocol: Vec<String>,
}

pub(crate) fn jwt_authn_filter(j: &JwtAuthn) -> Value {
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                "test": {
                    // No issuer and no audiences: any iss / aud is accepted, as the fixtures'
                    // payloads are what the test is about.
                    "local_jwks": { "inline_string": j.jwks },
                    "payload_in_metadata": j.payload_in_metadata,
                },
            },
            "rules": [{
                "match": { "prefix": "/" },
                "requires": { "requires_any": { "requirements": [
                    { "provider_name": "test" },
                    { "allow_missing": {} },
                ] } },
            }],
        },
    })
}

/// An Envoy `address`.
pub fn socket_address(ip: IpAddr, port: u16) -> Value {
    json!({ "socket_address": { "address": ip.to_string(), "port_value": port } })
}

fn tls_certificate(id: &Identity) -> Value {
    json!({
        "certificate_chain": { "filename": id.cert_file.display().to_string() },
        "private_key": { "filename": id.key_file.display().to_string() },
    })
}

fn downstream_tls(tls: &ServerTls) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": tls.require_client_certificate,
            "common_tls_context": {
                "tls_certificates": [tls_certificate(&tls.cert)],
                "validation_context": {
                    "trusted_ca": { "filename": tls.ca_file.display().to_string() },
                },
            },
        },
    })
}

fn upstream_tls(tls: &UpstreamTls) -> Value {
    let mut ctx = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "tls_certificates": [tls_certificate(&tls.cert)],
            "validation_context": {
                "trusted_ca": { "filename": tls.ca_file.display().to_string() },
            },
        },
    });
    if let Some(sni) = &tls.sni {
        ctx["sni"] = json!(sni);
    }
    json!({ "name": "envoy.transport_sockets.tls", "typed_config": ctx })
}

/// The module as an HTTP filter.
pub fn http_wasm_filter(p: &Plugin) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": p.plugin_config(),
        },
    })
}

/// The module as a network filter.
pub fn network_wasm_filter(p: &Plugin) -> Value {
    json!({
        "name": "envoy.filters.network.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
            "config": p.plugin_config(),
        },
    })
}

/// An HTTP connection manager named `name` with one virtual host for every domain whose one
/// route (prefix `/`) is `action` (`{"route": …}` or `{"direct_response": …}`), and
/// `http_filters` followed by the router. Callers add what differs (`normalize_path`,
/// `use_remote_address`, …) to its `typed_config`.
pub fn http_connection_manager(name: &str, action: Value, http_filters: Vec<Value>) -> Value {
    let mut route = json!({ "match": { "prefix": "/" } });
    if let (Some(route), Value::Object(action)) = (route.as_object_mut(), action) {
        route.extend(action);
    }
    let mut filters = http_filters;
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        },
    }));
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "AUTO",
            "route_config": {
                "name": name,
                "virtual_hosts": [{
                    "name": name,
                    "domains": ["*"],
                    "routes": [route],
                }],
            },
            "http_filters": filters,
        },
    })
}

fn hcm(
    name: &str,
    cluster: &str,
    plugin: Option<&Plugin>,
    jwt: Option<&JwtAuthn>,
    forwarded_for: ForwardedFor,
) -> Value {
    let mut http_filters = Vec::new();
    if let Some(j) = jwt {
        http_filters.push(jwt_authn_filter(j));
    }
    if let Some(p) = plugin {
        http_filters.push(http_wasm_filter(p));
    }
    let mut hcm = http_connection_manager(
        name,
        json!({ "route": { "cluster": cluster, "timeout": "10s" } }),
        http_filters,
    );
    if let Some(c) = hcm.get_mut("typed_config").and_then(Value::as_object_mut) {
        c.insert(
            "use_remote_address".into(),
            json!(forwarded_for == ForwardedFor::Ignore),
        );
        // As Istio's default mesh config (pathNormalization BASE).
        c.insert("normalize_path".into(), json!(true));
    }
    hcm
}

/// `tcp_proxy` to `cluster`, dialled only once downstream bytes got past the filters.
pub fn tcp_proxy(name: &str, cluster: &str) -> Value {
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": name,
            "cluster": cluster,
            // Do not dial the destination before the first downstream bytes got past the authz
            // filter: a denied connection never reaches the upstream at all.
            "upstream_connect_mode": "ON_DOWNSTREAM_DATA",
            "max_early_data_bytes": 65536,
        },
    })
}

fn cluster_name(listener: &str) -> String {
    format!("{listener}-upstream")
}

impl EnvoySpec {
    /// Renders the bootstrap; every listener port must be resolved (non-zero) by then.
    pub fn render(&self) -> Result<Value> {
        let mut listeners = Vec::new();
        let mut clusters = Vec::new();
        for l in &self.listeners {
            if l.port == 0 {
                bail!("listener {} has no port", l.name);
            }
            let cluster = cluster_name(&l.name);
            let filters = match &l.kind {
                ListenerKind::Http { plugin } => {
                    vec![hcm(
                        &l.name,
                        &cluster,
                        plugin.as_ref(),
                        self.jwt.as_ref(),
                        self.forwarded_for,
                    )]
                }
                ListenerKind::Tcp { plugin } => {
                    let mut f = Vec::new();
                    if let Some(p) = plugin {
                        f.push(network_wasm_filter(p));
                    }
                    f.push(tcp_proxy(&l.name, &cluster));
                    f
                }
                ListenerKind::HttpWithNetwork { network, http } => {
                    vec![
                        network_wasm_filter(network),
                        hcm(
                            &l.name,
                            &cluster,
                            Some(http),
                            self.jwt.as_ref(),
                            self.forwarded_for,
                        ),
                    ]
                }
            };
            let mut chain = json!({ "filters": filters });
            let mut listener = json!({
                "name": l.name,
                "address": socket_address(l.address, l.port),
            });
            if let Some(tls) = &l.tls {
                chain["transport_socket"] = downstream_tls(tls);
                // Without the TLS inspector Envoy leaves the connection's requested server
                // name empty: the module's `connection.requested_server_name` (SNI) would be
                // missing even though the TLS transport saw it.
                listener["listener_filters"] = json!([{
                    "name": "envoy.filters.listener.tls_inspector",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                    },
                }]);
            }
            if self.proxy_protocol.contains(&l.name) {
                let mut filters = vec![json!({
                    "name": "envoy.filters.listener.proxy_protocol",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
                    },
                })];
                if let Some(Value::Array(rest)) = listener.get("listener_filters") {
                    filters.extend(rest.iter().cloned());
                }
                listener["listener_filters"] = Value::Array(filters);
            }
            listener["filter_chains"] = json!([chain]);
            listeners.push(listener);

            let dest = match &l.upstream.dest {
                Dest::Addr(a) => *a,
                Dest::Listener(name) => {
                    let target =
                        self.listeners
                            .iter()
                            .find(|o| &o.name == name)
                            .ok_or_else(|| {
                                anyhow!("listener {} forwards to unknown listener {name}", l.name)
                            })?;
                    SocketAddr::new(target.address, target.port)
                }
            };
            let mut c = json!({
                "name": cluster,
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {
                    "cluster_name": cluster,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(dest.ip(), dest.port()) } }] }],
                },
            });
            if let Some(src) = l.upstream.source_address {
                c["upstream_bind_config"] =
                    json!({ "source_address": { "address": src.to_string(), "port_value": 0 } });
            }
            if let Some(tls) = &l.upstream.tls {
                c["transport_socket"] = upstream_tls(tls);
            }
            clusters.push(c);
        }
        Ok(json!({
            "node": { "id": "authz-test", "cluster": "authz-test" },
            "admin": { "address": socket_address("127.0.0.1".parse()?, 0) },
            "static_resources": { "listeners": listeners, "clusters": clusters },
        }))
    }
}
