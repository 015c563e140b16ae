//! Istio's ambient waypoint, rebuilt in Envoy: the topology in which Istio actually runs the
//! module (a `WasmPlugin` in phase `AUTHZ` on a waypoint), beside the direct mTLS listener plain
//! Envoy users write.
//!
//! The waypoint side follows what istiod generates (istio/istio
//! `pilot/pkg/networking/core/listener_waypoint.go`, `pilot/pkg/xds/filters/filters.go`):
//!
//! * an outer listener (`hbone-*`) terminating mTLS (client certificate required) with an
//!   HTTP/2-only connection manager accepting `CONNECT`;
//! * its `set_filter_state` HTTP filter copying the `CONNECT` authority into
//!   `envoy.filters.listener.original_dst.local_ip`, `%DOWNSTREAM_REMOTE_ADDRESS%` into
//!   `envoy.filters.listener.original_dst.remote_ip` and `%DOWNSTREAM_PEER_URI_SAN%` into
//!   `io.istio.peer_principal` (upstream Envoy's `envoy.hashable_string` standing in for Istio's
//!   `istio.hashable_string`), each shared with the upstream once;
//! * the tunnelled stream routed to an internal listener (`main_internal-*`) whose
//!   `original_dst` listener filter restores the addresses and whose connection manager runs
//!   with `use_remote_address: false` and the authorization filter.
//!
//! The client side is a second Envoy playing the client's ztunnel: one plaintext listener per
//! (identity, destination) whose `tcp_proxy` tunnels over HTTP/2 `CONNECT` to the waypoint with
//! that identity's certificate (ztunnel's outbound HBONE, istio/ztunnel `src/proxy/outbound.rs`).
//! A test speaks plain HTTP/1.1 to it; the bytes reach the internal listener unchanged.
//!
//! The upstream behind both topologies is a `direct_response` 200: the filters run before the
//! router answers, so a 403 can only come from the authorization filter.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use super::bootstrap::{jwt_authn_filter, JwtAuthn, Plugin, UpstreamTls};
use super::certs::{Identity, TestPki};
use super::ports::{free_loopback, lost_port_race};
use super::{Envoy, ListenerInfo};

/// The authorization filter in a chain.
#[derive(Clone, Debug)]
pub enum Authz {
    /// The module.
    Module(Plugin),
    /// Envoy's RBAC filter with these `rules` (`envoy.config.rbac.v3.RBAC`, as JSON).
    Rbac(Value),
}

impl Authz {
    fn http_filter(&self) -> Value {
        match self {
            Authz::Module(p) => json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": p.plugin_config(),
                },
            }),
            Authz::Rbac(rules) => json!({
                "name": "envoy.filters.http.rbac",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": rules,
                },
            }),
        }
    }
}

/// One authorization setup, served in both topologies.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    /// The filter inside the waypoint's internal listener.
    pub chain: Authz,
    /// The filter on the direct mTLS listener.
    pub direct: Authz,
    /// `jwt_authn` in front of the filter (Istio's RequestAuthentication).
    pub jwt: Option<JwtAuthn>,
    /// Where allowed requests go; `None`: a `direct_response` 200.
    pub backend: Option<SocketAddr>,
    /// mTLS to the backend with the waypoint's own identity (to a destination ztunnel).
    pub backend_tls: Option<UpstreamTls>,
    /// The address the waypoint connects to the backend from.
    pub backend_source: Option<std::net::IpAddr>,
    /// The HBONE listener reads a PROXY protocol header first, so that a test can give the
    /// client any source address (the test's stand-in for ztunnel's spoofed source IP).
    pub proxy_protocol: bool,
    /// Whether the listeners refuse a client without a certificate (Istio's HBONE always has
    /// one); `false` lets a case without a principal through to the filters.
    pub require_client_certificate: bool,
    /// The internal listener is a TCP chain: the module as a network filter before
    /// `tcp_proxy` to `backend` (a `WasmPlugin` of `type: NETWORK` on the waypoint).
    pub tcp: bool,
}

impl Variant {
    pub fn new(name: &str, chain: Authz, direct: Authz) -> Variant {
        Variant {
            name: name.to_string(),
            chain,
            direct,
            jwt: None,
            backend: None,
            backend_tls: None,
            backend_source: None,
            proxy_protocol: false,
            require_client_certificate: true,
            tcp: false,
        }
    }
}

/// The ports of one variant's listeners.
#[derive(Clone, Debug)]
pub struct VariantPorts {
    pub hbone: SocketAddr,
    pub direct: SocketAddr,
}

fn socket(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

fn server_tls(server: &Identity, ca_file: &Path, alpn: &[&str], require: bool) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": require,
            "common_tls_context": {
                "tls_certificates": [{
                    "certificate_chain": { "filename": server.cert_file.display().to_string() },
                    "private_key": { "filename": server.key_file.display().to_string() },
                }],
                "validation_context": { "trusted_ca": { "filename": ca_file.display().to_string() } },
                "alpn_protocols": alpn,
            },
        },
    })
}

fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    })
}

/// The cluster of a variant's backend.
fn backend_cluster(v: &Variant) -> String {
    format!("backend-{}", v.name)
}

/// A connection manager behind `authz` (and `jwt_authn`), with `use_remote_address: false`
/// as in istiod's waypoint (and Envoy's default).
fn authz_hcm(stat_prefix: &str, authz: &Authz, v: &Variant) -> Value {
    let route = match v.backend {
        Some(_) => json!({ "match": { "prefix": "/" },
                           "route": { "cluster": backend_cluster(v), "timeout": "15s" } }),
        None => json!({ "match": { "prefix": "/" },
                        "direct_response": { "status": 200, "body": { "inline_string": "upstream" } } }),
    };
    let mut filters = Vec::new();
    if let Some(j) = &v.jwt {
        filters.push(jwt_authn_filter(j));
    }
    filters.push(authz.http_filter());
    filters.push(router());
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "use_remote_address": false,
            "route_config": { "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [route],
            }] },
            "http_filters": filters,
        },
    })
}

/// A TCP chain: the module as a network filter, then `tcp_proxy` to the backend, which is
/// not dialled before the first bytes got past the module.
fn tcp_chain(stat_prefix: &str, authz: &Authz, v: &Variant) -> Vec<Value> {
    let mut filters = Vec::new();
    if let Authz::Module(p) = authz {
        filters.push(json!({
            "name": "envoy.filters.network.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                "config": p.plugin_config(),
            },
        }));
    }
    filters.push(json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": stat_prefix,
            "cluster": backend_cluster(v),
            "upstream_connect_mode": "ON_DOWNSTREAM_DATA",
            "max_early_data_bytes": 65536,
        },
    }));
    filters
}

fn set_filter_state(key: &str, factory: Option<&str>, format: &str) -> Value {
    let mut v = json!({
        "object_key": key,
        "format_string": { "text_format_source": { "inline_string": format } },
        "shared_with_upstream": "ONCE",
    });
    if let Some(f) = factory {
        v["factory_key"] = json!(f);
    }
    v
}

/// The waypoint Envoy's bootstrap: per variant an HBONE listener, its internal listener and a
/// direct mTLS listener.
pub fn waypoint_bootstrap(
    variants: &[(Variant, VariantPorts)],
    server: &Identity,
    ca_file: &Path,
) -> Value {
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for (v, ports) in variants {
        let internal = format!("main_internal-{}", v.name);
        let listener_filters: Vec<Value> = if v.proxy_protocol {
            vec![json!({
                "name": "envoy.filters.listener.proxy_protocol",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol" },
            })]
        } else {
            Vec::new()
        };
        if let Some(b) = v.backend {
            let mut cluster = json!({
                "name": backend_cluster(v),
                "connect_timeout": "5s",
                "load_assignment": { "cluster_name": backend_cluster(v), "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                    "address": socket(b) } }] }] },
            });
            if let Some(t) = &v.backend_tls {
                let mut tls = json!({
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": { "filename": t.cert.cert_file.display().to_string() },
                            "private_key": { "filename": t.cert.key_file.display().to_string() },
                        }],
                        "validation_context": { "trusted_ca": { "filename": t.ca_file.display().to_string() } },
                    },
                });
                if let Some(sni) = &t.sni {
                    tls["sni"] = json!(sni);
                }
                cluster["transport_socket"] =
                    json!({ "name": "envoy.transport_sockets.tls", "typed_config": tls });
            }
            if let Some(src) = v.backend_source {
                cluster["upstream_bind_config"] =
                    json!({ "source_address": { "address": src.to_string(), "port_value": 0 } });
            }
            clusters.push(cluster);
        }
        listeners.push(json!({
            "name": format!("hbone-{}", v.name),
            "address": socket(ports.hbone),
            "listener_filters": listener_filters,
            "filter_chains": [{
                "transport_socket": server_tls(server, ca_file, &["h2"], v.require_client_certificate),
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": format!("hbone-{}", v.name),
                        "codec_type": "HTTP2",
                        "http2_protocol_options": { "allow_connect": true },
                        "upgrade_configs": [{ "upgrade_type": "CONNECT" }],
                        "route_config": { "virtual_hosts": [{
                            "name": "connect", "domains": ["*"],
                            "routes": [{ "match": { "connect_matcher": {} },
                                         "route": { "cluster": internal,
                                                    "upgrade_configs": [{ "upgrade_type": "CONNECT", "connect_config": {} }] } }],
                        }] },
                        "http_filters": [
                            {
                                "name": "envoy.filters.http.set_filter_state",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.set_filter_state.v3.Config",
                                    "on_request_headers": [
                                        set_filter_state("envoy.filters.listener.original_dst.local_ip", None, "%REQ(:AUTHORITY)%"),
                                        set_filter_state("envoy.filters.listener.original_dst.remote_ip", None, "%DOWNSTREAM_REMOTE_ADDRESS%"),
                                        set_filter_state("io.istio.peer_principal", Some("envoy.hashable_string"), "%DOWNSTREAM_PEER_URI_SAN%"),
                                    ],
                                },
                            },
                            router(),
                        ],
                    },
                }],
            }],
        }));
        listeners.push(json!({
            "name": internal,
            "internal_listener": {},
            "listener_filters": [{
                "name": "envoy.filters.listener.original_dst",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst" },
            }],
            "filter_chains": [{ "filters": if v.tcp {
                tcp_chain(&format!("inner-{}", v.name), &v.chain, v)
            } else {
                vec![authz_hcm(&format!("inner-{}", v.name), &v.chain, v)]
            } }],
        }));
        clusters.push(json!({
            "name": internal,
            "load_assignment": { "cluster_name": internal, "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                "address": { "envoy_internal_address": { "server_listener_name": internal } } } }] }] },
            "transport_socket": {
                "name": "envoy.transport_sockets.internal_upstream",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
                    "transport_socket": { "name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" } },
                },
            },
        }));
        listeners.push(json!({
            "name": format!("direct-{}", v.name),
            "address": socket(ports.direct),
            "filter_chains": [{
                "transport_socket": server_tls(server, ca_file, &["http/1.1"], v.require_client_certificate),
                "filters": [authz_hcm(&format!("direct-{}", v.name), &v.direct, v)],
            }],
        }));
    }
    json!({
        "admin": { "address": socket(SocketAddr::from(([127, 0, 0, 1], 0))) },
        "bootstrap_extensions": [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener" },
        }],
        "static_resources": { "listeners": listeners, "clusters": clusters },
    })
}

/// A tunnel wanted from [`Chain::start_with`]: a client listener `name` tunnelling to
/// `variant`'s HBONE listener as `identity` (no client certificate: `None`), asking for
/// `destination` in the `CONNECT` authority.
#[derive(Clone, Debug)]
pub struct TunnelSpec {
    pub name: String,
    pub variant: String,
    pub identity: Option<std::sync::Arc<Identity>>,
    pub destination: Option<SocketAddr>,
    /// The listener reads a PROXY protocol header first and hands its source and destination
    /// on to the waypoint in a PROXY protocol header of its own (the upstream
    /// `proxy_protocol` transport socket); always so without a `destination`, which is then
    /// the address that header names.
    pub proxied: bool,
}

/// One tunnel of the client-side Envoy: `spec`'s plaintext listener on `listen`, tunnelling
/// to the HBONE listener `hbone`.
#[derive(Clone, Debug)]
pub struct Tunnel {
    pub listen: SocketAddr,
    pub hbone: SocketAddr,
    pub spec: TunnelSpec,
}

/// The client ztunnel's bootstrap.
pub fn client_bootstrap(tunnels: &[Tunnel], ca_file: &Path) -> Value {
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for (i, t) in tunnels.iter().enumerate() {
        let cluster = format!("hbone-{i}");
        let proxied = t.spec.proxied || t.spec.destination.is_none();
        let hostname = match t.spec.destination {
            Some(d) => d.to_string(),
            None => "%DOWNSTREAM_LOCAL_ADDRESS%".to_string(),
        };
        let listener_filters: Vec<Value> = if proxied {
            vec![json!({
                "name": "envoy.filters.listener.proxy_protocol",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol" },
            })]
        } else {
            Vec::new()
        };
        let mut common = json!({
            "validation_context": { "trusted_ca": { "filename": ca_file.display().to_string() } },
            "alpn_protocols": ["h2"],
        });
        if let Some(id) = &t.spec.identity {
            common["tls_certificates"] = json!([{
                "certificate_chain": { "filename": id.cert_file.display().to_string() },
                "private_key": { "filename": id.key_file.display().to_string() },
            }]);
        }
        let tls = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": common,
            },
        });
        let transport = if proxied {
            json!({
                "name": "envoy.transport_sockets.upstream_proxy_protocol",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport",
                    "config": { "version": "V2" },
                    "transport_socket": tls,
                },
            })
        } else {
            tls
        };
        listeners.push(json!({
            "name": format!("outbound-{i}"),
            "address": socket(t.listen),
            "listener_filters": listener_filters,
            "filter_chains": [{ "filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": cluster,
                    "cluster": cluster,
                    "tunneling_config": { "hostname": hostname },
                },
            }] }],
        }));
        clusters.push(json!({
            "name": cluster,
            "connect_timeout": "5s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": { "http2_protocol_options": {} },
                },
            },
            "load_assignment": { "cluster_name": cluster, "endpoints": [{ "lb_endpoints": [{ "endpoint": {
                "address": socket(t.hbone) } }] }] },
            "transport_socket": transport,
        }));
    }
    json!({
        "admin": { "address": socket(SocketAddr::from(([127, 0, 0, 1], 0))) },
        "static_resources": { "listeners": listeners, "clusters": clusters },
    })
}

/// Both Envoys running.
pub struct Chain {
    pub waypoint: Envoy,
    pub client: Envoy,
    pub variants: Vec<(Variant, VariantPorts)>,
    pub tunnels: Vec<Tunnel>,
}

impl Chain {
    /// Starts the waypoint Envoy with `variants` and the client Envoy with one tunnel per
    /// (variant, identity) to `destination`. Files go under `dir`.
    pub fn start(
        bin: &Path,
        dir: &Path,
        pki: std::sync::Arc<TestPki>,
        variants: Vec<Variant>,
        principals: &[&str],
        destination: SocketAddr,
    ) -> Result<Chain> {
        let mut wanted = Vec::new();
        for v in &variants {
            for p in principals {
                wanted.push(TunnelSpec {
                    name: format!("{}-{p}", v.name),
                    variant: v.name.clone(),
                    identity: Some(pki.workload(p)?),
                    destination: Some(destination),
                    proxied: false,
                });
            }
        }
        Chain::start_with(bin, dir, pki, variants, wanted)
    }

    /// As [`Chain::start`] with the client's tunnels given one by one. Ports are chosen
    /// afresh and the chain started again (up to three times) when one was taken meanwhile.
    pub fn start_with(
        bin: &Path,
        dir: &Path,
        pki: std::sync::Arc<TestPki>,
        variants: Vec<Variant>,
        wanted: Vec<TunnelSpec>,
    ) -> Result<Chain> {
        let mut attempt = 0;
        loop {
            match Chain::start_once(bin, dir, pki.clone(), variants.clone(), wanted.clone()) {
                Err(e) if attempt < 2 && lost_port_race(&e) => attempt += 1,
                other => return other,
            }
        }
    }

    fn start_once(
        bin: &Path,
        dir: &Path,
        pki: std::sync::Arc<TestPki>,
        variants: Vec<Variant>,
        wanted: Vec<TunnelSpec>,
    ) -> Result<Chain> {
        let server = pki.server(
            "waypoint",
            &["localhost"],
            &["127.0.0.1".parse()?],
            Some("cluster.local/ns/default/sa/waypoint"),
        )?;
        let mut with_ports = Vec::new();
        let mut infos = Vec::new();
        for v in variants {
            let ports = VariantPorts {
                hbone: free_loopback()?,
                direct: free_loopback()?,
            };
            infos.push(ListenerInfo {
                name: format!("hbone-{}", v.name),
                addr: ports.hbone,
                tls: true,
            });
            infos.push(ListenerInfo {
                name: format!("direct-{}", v.name),
                addr: ports.direct,
                tls: true,
            });
            with_ports.push((v, ports));
        }
        let wdir = dir.join("waypoint");
        std::fs::create_dir_all(&wdir)?;
        let wconf = wdir.join("waypoint.json");
        std::fs::write(
            &wconf,
            serde_json::to_string_pretty(&waypoint_bootstrap(&with_ports, &server, pki.ca_file()))?,
        )?;
        let mut tunnels = Vec::new();
        let mut cinfos = Vec::new();
        for w in wanted {
            let Some((_, ports)) = with_ports.iter().find(|(v, _)| v.name == w.variant) else {
                anyhow::bail!("tunnel {}: no variant {}", w.name, w.variant);
            };
            let t = Tunnel {
                listen: free_loopback()?,
                hbone: ports.hbone,
                spec: w,
            };
            cinfos.push(ListenerInfo {
                name: t.spec.name.clone(),
                addr: t.listen,
                tls: false,
            });
            tunnels.push(t);
        }
        let waypoint = Envoy::start_config(bin, &wconf, infos, &wdir, pki.clone())?;

        let cdir = dir.join("client");
        std::fs::create_dir_all(&cdir)?;
        let cconf = cdir.join("client.json");
        std::fs::write(
            &cconf,
            serde_json::to_string_pretty(&client_bootstrap(&tunnels, pki.ca_file()))?,
        )?;
        let client = Envoy::start_config(bin, &cconf, cinfos, &cdir, pki.clone())?;
        Ok(Chain {
            waypoint,
            client,
            variants: with_ports,
            tunnels,
        })
    }

    /// The client Envoy's listener for `variant` and `principal` (as [`Chain::start`] names
    /// them).
    pub fn tunnel(&self, variant: &str, principal: &str) -> Option<SocketAddr> {
        self.tunnel_named(&format!("{variant}-{principal}"))
    }

    /// The client Envoy's listener named `name`.
    pub fn tunnel_named(&self, name: &str) -> Option<SocketAddr> {
        self.client
            .listeners()
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.addr)
    }

    /// The direct mTLS listener of `variant`.
    pub fn direct(&self, variant: &str) -> Option<SocketAddr> {
        self.variants
            .iter()
            .find(|(v, _)| v.name == variant)
            .map(|(_, p)| p.direct)
    }
}
