//! The benchmark's Envoys: bootstraps for the server under test (one listener: no
//! authorization filter, native RBAC, or the module) and for the load Envoy (plaintext in from
//! `wrk`, mTLS out with a workload's SPIFFE certificate, and a plaintext backend that answers
//! 200), and a process handle that exposes what the benchmark reads from `/proc`.
//!
//! Envoy is started as the driver starts it ([`authz_envoy::Launch`]), with quiet logs (a log
//! line per request would be measured); the benchmark keeps the process id for `/proc`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use authz_envoy::bootstrap::{self, Plugin};
use authz_envoy::certs::Identity;
use authz_envoy::Launch;

/// What stands between the TLS handshake and the response on the server.
#[derive(Clone, Debug)]
pub enum Filter {
    None,
    /// Envoy's RBAC filter: its `typed_config` (HTTP or network, as generated).
    Native(Value),
    /// The module.
    Module(Plugin),
}

impl Filter {
    pub fn variant(&self) -> &'static str {
        match self {
            Filter::None => "none",
            Filter::Native(_) => "native",
            Filter::Module(_) => "module",
        }
    }
}

/// Layer 7: HTTP connection manager answering 200 itself (`direct_response`); Layer 4:
/// `tcp_proxy` to a backend.
#[derive(Clone, Debug)]
pub enum Layer {
    Http,
    Tcp { backend: SocketAddr },
}

/// The server under test: one mTLS listener (client certificate required).
#[derive(Clone, Debug)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub layer: Layer,
    pub filter: Filter,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

fn socket_address(a: SocketAddr) -> Value {
    bootstrap::socket_address(a.ip(), a.port())
}

fn admin() -> Value {
    json!({ "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } })
}

/// An HTTP connection manager answering 200 itself, after `http_filters`.
fn direct_response_hcm(name: &str, http_filters: Vec<Value>) -> Value {
    let mut hcm = bootstrap::http_connection_manager(
        name,
        json!({ "direct_response": { "status": 200, "body": { "inline_string": "ok\n" } } }),
        http_filters,
    );
    if let Some(c) = hcm.get_mut("typed_config").and_then(Value::as_object_mut) {
        c.insert("normalize_path".into(), json!(true));
        c.insert("generate_request_id".into(), json!(false));
    }
    hcm
}

impl Server {
    pub fn bootstrap(&self) -> Value {
        let tls = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": { "filename": self.cert.display().to_string() },
                        "private_key": { "filename": self.key.display().to_string() },
                    }],
                    "validation_context": { "trusted_ca": { "filename": self.ca.display().to_string() } },
                },
            },
        });
        let mut clusters = Vec::new();
        let filters = match &self.layer {
            Layer::Http => {
                let http_filters = match &self.filter {
                    Filter::None => vec![],
                    Filter::Native(rbac) => {
                        vec![json!({ "name": "envoy.filters.http.rbac", "typed_config": rbac })]
                    }
                    Filter::Module(plugin) => vec![bootstrap::http_wasm_filter(plugin)],
                };
                vec![direct_response_hcm(&self.name, http_filters)]
            }
            Layer::Tcp { backend } => {
                let mut f = match &self.filter {
                    Filter::None => vec![],
                    Filter::Native(rbac) => {
                        vec![json!({ "name": "envoy.filters.network.rbac", "typed_config": rbac })]
                    }
                    Filter::Module(plugin) => vec![bootstrap::network_wasm_filter(plugin)],
                };
                f.push(bootstrap::tcp_proxy(&self.name, "backend"));
                clusters.push(static_cluster("backend", *backend, None));
                f
            }
        };
        json!({
            "node": { "id": "bench-server", "cluster": "bench" },
            "admin": admin(),
            "static_resources": {
                "listeners": [{
                    "name": self.name,
                    "address": socket_address(self.addr),
                    "filter_chains": [{ "transport_socket": tls, "filters": filters }],
                }],
                "clusters": clusters,
            },
        })
    }
}

fn static_cluster(name: &str, dest: SocketAddr, extra: Option<Value>) -> Value {
    let mut c = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(dest) } }] }],
        },
    });
    if let (Some(Value::Object(extra)), Some(obj)) = (extra, c.as_object_mut()) {
        obj.extend(extra);
    }
    c
}

/// One route of the load Envoy: plaintext in on `listen`, mTLS out to `target` with
/// `identity`'s certificate from `source_ip`.
#[derive(Clone, Debug)]
pub struct LoadRoute {
    pub name: String,
    pub listen: SocketAddr,
    pub target: SocketAddr,
    pub identity: std::sync::Arc<Identity>,
    pub ca: PathBuf,
    pub source_ip: IpAddr,
    /// One request per upstream connection (Layer 4: every request is a new mTLS connection
    /// to the server), else keep-alive.
    pub connection_per_request: bool,
}

/// The load Envoy: the routes, and a plaintext HTTP backend answering 200 on `backend`.
pub fn load_bootstrap(routes: &[LoadRoute], backend: Option<SocketAddr>) -> Value {
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for r in routes {
        let mut hcm = bootstrap::http_connection_manager(
            &r.name,
            json!({ "route": { "cluster": r.name, "timeout": "30s" } }),
            Vec::new(),
        );
        if let Some(c) = hcm.get_mut("typed_config") {
            c["codec_type"] = json!("HTTP1");
            c["generate_request_id"] = json!(false);
            if let Some(router) = c.pointer_mut("/http_filters/0/typed_config") {
                router["suppress_envoy_headers"] = json!(true);
            }
        }
        listeners.push(json!({
            "name": r.name,
            "address": socket_address(r.listen),
            "filter_chains": [{ "filters": [hcm] }],
        }));
        let mut http = json!({ "explicit_http_config": { "http_protocol_options": {} } });
        if r.connection_per_request {
            http["common_http_protocol_options"] = json!({ "max_requests_per_connection": 1 });
        }
        http["@type"] =
            json!("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
        let extra = json!({
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": { "filename": r.identity.cert_file.display().to_string() },
                            "private_key": { "filename": r.identity.key_file.display().to_string() },
                        }],
                        "validation_context": { "trusted_ca": { "filename": r.ca.display().to_string() } },
                    },
                    // Every new connection is a full handshake with the client certificate.
                    "max_session_keys": 0,
                },
            },
            "upstream_bind_config": { "source_address": { "address": r.source_ip.to_string(), "port_value": 0 } },
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http,
            },
            "circuit_breakers": { "thresholds": [{ "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000 }] },
        });
        clusters.push(static_cluster(&r.name, r.target, Some(extra)));
    }
    if let Some(b) = backend {
        listeners.push(json!({
            "name": "backend",
            "address": socket_address(b),
            "filter_chains": [{ "filters": [direct_response_hcm("backend", vec![])] }],
        }));
    }
    json!({
        "node": { "id": "bench-load", "cluster": "bench" },
        "admin": admin(),
        "static_resources": { "listeners": listeners, "clusters": clusters },
    })
}

/// A running Envoy, killed on drop.
pub struct Proc {
    child: Option<Child>,
    pub pid: u32,
    pub name: String,
    pub admin: SocketAddr,
    pub log: PathBuf,
    /// From spawn to `/ready` answering `LIVE`.
    pub startup: Duration,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("admin", &self.admin)
            .finish()
    }
}

impl Proc {
    /// Writes `bootstrap` to `dir/<name>.json` and runs Envoy as the driver does
    /// ([`authz_envoy::Launch`]) but with quiet logs; returns once `/ready` says `LIVE`.
    pub fn start(
        bin: &Path,
        name: &str,
        bootstrap: &Value,
        dir: &Path,
        timeout: Duration,
    ) -> Result<Proc> {
        Proc::start_workers(bin, name, bootstrap, dir, timeout, 1)
    }

    /// As [`Proc::start`], with `workers` worker threads (`--concurrency`).
    pub fn start_workers(
        bin: &Path,
        name: &str,
        bootstrap: &Value,
        dir: &Path,
        timeout: Duration,
        workers: usize,
    ) -> Result<Proc> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join(format!("{name}.json"));
        std::fs::write(&config, serde_json::to_vec(bootstrap)?)
            .with_context(|| format!("writing {}", config.display()))?;
        let admin_file = dir.join(format!("{name}.admin"));
        let log = dir.join(format!("{name}.log"));
        let launch = Launch {
            bin,
            config: &config,
            admin_file: &admin_file,
            log_file: &log,
            log_level: "warn",
            component_log_level: None,
            workers,
        };
        let started = Instant::now();
        let mut child = launch.spawn()?;
        let pid = child.id();
        let admin = match launch.wait_ready(
            &mut child,
            &format!("envoy {name}"),
            timeout,
            started + timeout,
        ) {
            Ok(a) => a,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Proc {
            pid,
            child: Some(child),
            name: name.to_string(),
            admin,
            log,
            startup: started.elapsed(),
        })
    }

    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        authz_envoy::admin_get(self.admin, path)
    }

    /// User + system CPU time of the whole process (all threads), in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        cpu_ticks(self.pid)
    }

    /// Resident memory (`VmRSS`) in KiB.
    pub fn vmrss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS for pid {}", self.pid))
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: count from the closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11, stime 15 → 12.
    let get = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no field {} in /proc/{pid}/stat", i + 3))
    };
    Ok(get(11)? + get(12)?)
}

/// Busy clock ticks of the whole machine (all CPUs): `/proc/stat` `cpu` minus idle and iowait.
pub fn system_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("no cpu line in /proc/stat"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok(total.saturating_sub(idle))
}

/// CPU seconds of this process's waited-for children (`getrusage(RUSAGE_CHILDREN)`): `wrk`.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `envoy --version`, trimmed to `VERSION/…`.
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .and_then(|s| s.split("version:").nth(1).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}
