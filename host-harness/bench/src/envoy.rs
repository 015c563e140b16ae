//! The benchmark's Envoys: bootstraps for the server under test (one listener: no
//! authorization filter, native RBAC, or the module) and for the load Envoy (plaintext in from
//! `wrk`, mTLS out with a workload's SPIFFE certificate, and a plaintext backend that answers
//! 200), and a process handle that exposes what the benchmark reads from `/proc`.
//!
//! Envoy's own driver (`crate::envoy`) starts Envoy with `wasm:debug` logging and keeps the
//! process id private; the benchmark needs quiet logs (a log line per request would be
//! measured) and the pid, so it starts Envoy itself, with the same flags otherwise.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use authz_envoy::certs::Identity;
use authz_envoy::client::{self, HttpRequest};

/// What stands between the TLS handshake and the response on the server.
#[derive(Clone, Debug)]
pub enum Filter {
    None,
    /// Envoy's RBAC filter: its `typed_config` (HTTP or network, as generated).
    Native(Value),
    /// The module: its file and plugin configuration (JSON text).
    Module {
        wasm: PathBuf,
        config: String,
    },
}

impl Filter {
    pub fn variant(&self) -> &'static str {
        match self {
            Filter::None => "none",
            Filter::Native(_) => "native",
            Filter::Module { .. } => "module",
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
    json!({ "socket_address": { "address": a.ip().to_string(), "port_value": a.port() } })
}

fn admin() -> Value {
    json!({ "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } })
}

fn direct_response_hcm(name: &str, http_filters: Vec<Value>) -> Value {
    let mut filters = http_filters;
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    }));
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "AUTO",
            "normalize_path": true,
            "generate_request_id": false,
            "route_config": {
                "name": name,
                "virtual_hosts": [{
                    "name": name,
                    "domains": ["*"],
                    "routes": [{
                        "match": { "prefix": "/" },
                        "direct_response": { "status": 200, "body": { "inline_string": "ok\n" } },
                    }],
                }],
            },
            "http_filters": filters,
        },
    })
}

fn wasm_plugin_config(wasm: &Path, config: &str) -> Value {
    json!({
        "name": "istio-authz",
        "root_id": "istio-authz",
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": config,
        },
        "failure_policy": "FAIL_CLOSED",
        "vm_config": {
            "vm_id": "istio-authz",
            "runtime": "envoy.wasm.runtime.v8",
            "code": { "local": { "filename": wasm.display().to_string() } },
        },
    })
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
                    Filter::Module { wasm, config } => vec![json!({
                        "name": "envoy.filters.http.wasm",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                            "config": wasm_plugin_config(wasm, config),
                        },
                    })],
                };
                vec![direct_response_hcm(&self.name, http_filters)]
            }
            Layer::Tcp { backend } => {
                let mut f = match &self.filter {
                    Filter::None => vec![],
                    Filter::Native(rbac) => {
                        vec![json!({ "name": "envoy.filters.network.rbac", "typed_config": rbac })]
                    }
                    Filter::Module { wasm, config } => vec![json!({
                        "name": "envoy.filters.network.wasm",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                            "config": wasm_plugin_config(wasm, config),
                        },
                    })],
                };
                f.push(json!({
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": self.name,
                        "cluster": "backend",
                        // No upstream connection before the first bytes got past the filter
                        // (both filters decide on the first bytes).
                        "upstream_connect_mode": "ON_DOWNSTREAM_DATA",
                        "max_early_data_bytes": 65536,
                    },
                }));
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
        let hcm = json!({
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": r.name,
                "codec_type": "HTTP1",
                "generate_request_id": false,
                "route_config": {
                    "name": r.name,
                    "virtual_hosts": [{
                        "name": r.name,
                        "domains": ["*"],
                        "routes": [{
                            "match": { "prefix": "/" },
                            "route": { "cluster": r.name, "timeout": "30s" },
                        }],
                    }],
                },
                "http_filters": [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                        "suppress_envoy_headers": true,
                    },
                }],
            },
        });
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

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Proc {
    /// Writes `bootstrap` to `dir/<name>.json` and runs Envoy with one worker, quiet logs and
    /// hot restart disabled; returns once `/ready` says `LIVE`.
    pub fn start(
        bin: &Path,
        name: &str,
        bootstrap: &Value,
        dir: &Path,
        timeout: Duration,
    ) -> Result<Proc> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join(format!("{name}.json"));
        std::fs::write(&config, serde_json::to_vec(bootstrap)?)
            .with_context(|| format!("writing {}", config.display()))?;
        let admin_file = dir.join(format!("{name}.admin"));
        let _ = std::fs::remove_file(&admin_file);
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(bin);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let started = Instant::now();
        let child = command
            .arg("-c")
            .arg(&config)
            .args([
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("running {}", bin.display()))?;
        let mut p = Proc {
            pid: child.id(),
            child: Some(child),
            name: name.to_string(),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            startup: Duration::ZERO,
        };
        let deadline = started + timeout;
        loop {
            if let Some(c) = p.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    bail!(
                        "envoy {name} exited ({status}) before it was ready; {}:\n{}",
                        p.log.display(),
                        tail(&p.log, 30)
                    );
                }
            }
            if p.admin.port() == 0 {
                if let Ok(text) = std::fs::read_to_string(&admin_file) {
                    if let Ok(a) = text.trim().parse::<SocketAddr>() {
                        p.admin = a;
                    }
                }
            }
            if p.admin.port() != 0 {
                if let Ok((200, body)) = p.admin_get("/ready") {
                    if body.trim() == "LIVE" {
                        p.startup = started.elapsed();
                        return Ok(p);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy {name} not ready after {timeout:?}; {}:\n{}",
                    p.log.display(),
                    tail(&p.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        let r = client::http_request(
            None,
            self.admin,
            None,
            &HttpRequest::new("GET", path, "admin"),
        )
        .map_err(|e| anyhow!("admin {path}: {e}"))?;
        Ok((r.status, r.body_text()))
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

    /// A counter or gauge from `/stats`.
    pub fn stat(&self, name: &str) -> Option<u64> {
        let (_, body) = self.admin_get(&format!("/stats?filter=^{name}$")).ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
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
