//! The benchmark runner: for each N, each policy set and each server variant (no
//! authorization filter, native RBAC, the module) one server Envoy with one worker; a load
//! Envoy that turns `wrk`'s plaintext requests into mTLS with a workload's SPIFFE certificate;
//! a decision check of every replayable sample through the native and the module listener;
//! then rounds of `wrk` runs interleaved across the variants, so that every ratio compares runs
//! made side by side under the same conditions.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::check::native_check;
use super::envoy::{self as benv, Filter, Layer, LoadRoute, Proc, Server};
use super::gen::{Description, Generated, Net, Sample, SetKind};
use super::memory::{self, Footprint};
use authz_envoy::bootstrap::Plugin;
use authz_envoy::certs::TestPki;
use authz_envoy::client::{self, ConnError, HttpRequest, TlsClient};
use authz_envoy::ports::free_port;

/// A path as results files record it: relative to the repository when inside it, `~/…` when
/// under the home directory, so that no machine's layout is written into a results file.
fn portable(path: &Path) -> String {
    let root = authz_fixture::workspace::repo_root();
    if let Ok(rel) = path.strip_prefix(&root) {
        return rel.display().to_string();
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        if let Ok(rel) = path.strip_prefix(&home) {
            return format!("~/{}", rel.display());
        }
    }
    path.display().to_string()
}

fn portable_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&portable(path))
}

fn portable_optional_path<S: serde::Serializer>(
    path: &Option<PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_some(&portable(p)),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Options {
    pub quick: bool,
    pub ns: Vec<usize>,
    pub sets: Vec<SetKind>,
    pub rounds: usize,
    pub duration_s: u64,
    pub warmup_s: u64,
    pub connections: usize,
    pub seed: u64,
    #[serde(skip)]
    pub out: PathBuf,
    pub tag: String,
    #[serde(serialize_with = "portable_path")]
    pub wasm: PathBuf,
    #[serde(serialize_with = "portable_path")]
    pub envoy: PathBuf,
    #[serde(serialize_with = "portable_path")]
    pub wrk: PathBuf,
    pub memory: bool,
    /// Skip the Envoy phases: configure time, memory and native decide time only.
    pub no_load: bool,
    /// The module file the run used (a copy of `wasm`, taken at the start), its size and
    /// FNV-1a 64 fingerprint.
    #[serde(serialize_with = "portable_optional_path")]
    pub module_copy: Option<PathBuf>,
    pub module_fnv64: String,
    /// The largest N for the worst-case set (its native RBAC takes about a second per
    /// connection at 10,000 policies).
    pub worst_max: Option<usize>,
    #[serde(skip)]
    pub keep: bool,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Options {
    /// The defaults of a full run, or of a `quick` one.
    pub fn new(quick: bool) -> Options {
        Options {
            quick,
            ns: if quick {
                vec![1, 100, 10000]
            } else {
                vec![1, 10, 100, 1000, 10000]
            },
            sets: if quick {
                vec![SetKind::L7, SetKind::L4, SetKind::L4worst]
            } else {
                SetKind::ALL.to_vec()
            },
            rounds: if quick { 1 } else { 3 },
            duration_s: if quick { 1 } else { 5 },
            warmup_s: 1,
            connections: 4,
            seed: 1,
            out: authz_fixture::workspace::repo_root().join("bench/results"),
            tag: "run".into(),
            wasm: authz_envoy::find_wasm(),
            envoy: authz_envoy::find_envoy().unwrap_or_else(|| PathBuf::from("envoy")),
            wrk: which("wrk").unwrap_or_else(|| PathBuf::from("wrk")),
            memory: true,
            no_load: false,
            module_copy: None,
            module_fnv64: String::new(),
            worst_max: quick.then_some(1000),
            keep: false,
        }
    }

    /// Refuses a run that would measure nothing.
    pub fn check(&self) -> Result<()> {
        if self.ns.is_empty() || self.ns.contains(&0) {
            bail!("--n needs policy counts of at least 1");
        }
        if self.rounds == 0 || self.duration_s == 0 || self.connections == 0 {
            bail!("--rounds, --duration and --connections must be at least 1");
        }
        Ok(())
    }
}

/// One `wrk` run against one variant.
#[derive(Clone, Debug, Serialize)]
pub struct LoadRun {
    pub set: SetKind,
    pub n: usize,
    pub variant: &'static str,
    pub role: &'static str,
    pub round: usize,
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    /// Server Envoy CPU (user + system, all threads) per request, microseconds.
    pub cpu_us_per_req: f64,
    /// Server Envoy CPU seconds per wall second during the run.
    pub server_cpu_util: f64,
    /// Load Envoy CPU seconds per wall second.
    pub load_cpu_util: f64,
    /// `wrk`'s CPU seconds per wall second.
    pub wrk_cpu_util: f64,
    /// Everything else on the machine (other processes, this runner) in CPUs: the machine's
    /// busy time minus the server, the load Envoy and wrk.
    pub other_cpu_util: f64,
    /// Responses other than 2xx/3xx.
    pub non_2xx: u64,
    pub socket_errors: u64,
    /// Whether every response was the expected decision (all 200 for an allowed request or a
    /// server without a filter; none 2xx for a denied one) and no socket errors occurred.
    pub decisions_ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct StartupRow {
    pub set: SetKind,
    pub n: usize,
    pub variant: &'static str,
    /// Envoy rules (RBAC policies) for native; policies for the module.
    pub rules: usize,
    pub startup_s: f64,
    pub vmrss_kib_ready: u64,
    pub vmrss_kib_after_load: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    pub set: SetKind,
    pub n: usize,
    pub native_engine_samples: usize,
    pub native_engine_disagreements: Vec<String>,
    pub replayed: usize,
    pub identical: usize,
    pub as_expected: usize,
    pub mismatches: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FootprintRow {
    pub set: SetKind,
    pub n: usize,
    #[serde(flatten)]
    pub footprint: Footprint,
}

#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub(super) fn of(mut v: Vec<f64>) -> Option<Spread> {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// Per set, N and request: medians per variant and module/native ratios over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub set: SetKind,
    pub n: usize,
    pub role: &'static str,
    pub rps: BTreeMap<&'static str, f64>,
    pub p50_us: BTreeMap<&'static str, f64>,
    pub p99_us: BTreeMap<&'static str, f64>,
    pub cpu_us_per_req: BTreeMap<&'static str, f64>,
    /// module / native, per round (same round = side by side).
    pub ratio_rps: Option<Spread>,
    /// module / native req/s over the quiet rounds only: those in which other processes used
    /// less than [`QUIET_CPU`] CPUs during both runs.
    pub ratio_rps_quiet: Option<Spread>,
    pub quiet_rounds: usize,
    pub ratio_p50: Option<Spread>,
    pub ratio_p99: Option<Spread>,
    pub ratio_cpu: Option<Spread>,
    pub decisions_ok: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub envoy_version: String,
    pub wrk_version: String,
    pub module_bytes: u64,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub tag: String,
    pub options: Options,
    pub machine: Machine,
    pub elapsed_s: f64,
    pub checks: Vec<CheckRow>,
    pub startup: Vec<StartupRow>,
    pub footprint: Vec<FootprintRow>,
    pub runs: Vec<LoadRun>,
    pub summary: Vec<SummaryRow>,
    /// Resident memory with two workers ([`super::workers`]).
    pub workers_memory: Vec<super::workers::WorkersRow>,
    pub errors: Vec<String>,
}

impl Results {
    /// The one-worker start-up row of `variant` for `set` at `n` policies.
    pub fn startup_of(&self, set: SetKind, n: usize, variant: &str) -> Option<&StartupRow> {
        self.startup
            .iter()
            .find(|s| s.set == set && s.n == n && s.variant == variant)
    }

    /// The two-worker row of `variant` for `set` at `n` policies.
    pub fn workers_of(
        &self,
        set: SetKind,
        n: usize,
        variant: &str,
    ) -> Option<&super::workers::WorkersRow> {
        self.workers_memory
            .iter()
            .find(|w| w.set == set && w.n == n && w.variant == variant)
    }
}

/// The server variants. `empty-wasm` is a proxy-wasm module that does nothing (the Envoy
/// driver's stand-in): the fixed cost of any Wasm filter in Envoy, measured at the smallest N.
/// A run is quiet when everything else on the machine used less than this many CPUs.
pub const QUIET_CPU: f64 = 0.1;

/// `native-indexed` is the same policies as a hand-indexed matcher ([`super::indexed`]); it
/// comes last so that the other variants keep their addresses.
pub(super) const VARIANTS: [&str; 5] = ["none", "empty-wasm", "native", "module", "native-indexed"];
const ROLES: [&str; 2] = ["bench-allow", "bench-deny"];

fn role_name(role: &str) -> &'static str {
    if role == "bench-allow" {
        "allow"
    } else {
        "deny"
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn machine(o: &Options) -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_total_kib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let wrk_version = Command::new(&o.wrk)
        .arg("-v")
        .output()
        .ok()
        .map(|out| {
            let s = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            s.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        mem_total_kib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        envoy_version: benv::version(&o.envoy),
        wrk_version,
        module_bytes: std::fs::metadata(&o.wasm).map_or(0, |m| m.len()),
        loadavg_start: read("/proc/loadavg").trim().to_string(),
        loadavg_end: String::new(),
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Server addresses: Layer 7 variants on .20–.24, Layer 4 on .24–.28 (all inside the
/// generator's `server_cidr`, 127.0.0.16/28); the module's are the ones in the plugin
/// configuration.
pub(super) fn server_ip(kind: SetKind, variant: &str) -> IpAddr {
    let base = if kind.http() { 20 } else { 24 };
    let off = VARIANTS.iter().position(|v| *v == variant).unwrap_or(0) as u8;
    v4(127, 0, 0, base + off)
}

/// `wrk`'s summary, printed by the script's `done` hook.
#[derive(Debug, Default, serde::Deserialize)]
struct WrkOut {
    requests: u64,
    duration_us: u64,
    status_errors: u64,
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    timeouts: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    mean_us: f64,
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => {
                let _ = write!(out, "\\{}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// The `wrk` script for one request: method, path, headers, and a `done` hook printing the
/// summary as JSON.
fn wrk_script(s: &Sample, host: &str) -> String {
    let t = &s.traffic;
    let mut lua = String::new();
    let method = t.method.as_deref().unwrap_or("GET");
    let path = t.path.as_deref().unwrap_or("/");
    let _ = writeln!(lua, "wrk.method = {}", lua_string(method));
    let _ = writeln!(lua, "wrk.path = {}", lua_string(path));
    let _ = writeln!(
        lua,
        "wrk.headers[\"Host\"] = {}",
        lua_string(t.host.as_deref().unwrap_or(host))
    );
    for (k, v) in &t.headers {
        let _ = writeln!(lua, "wrk.headers[{}] = {}", lua_string(k), lua_string(v));
    }
    lua.push_str(
        r#"done = function(summary, latency, requests)
  io.write(string.format('BENCH-JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"#,
    );
    lua
}

fn run_wrk(o: &Options, port: u16, script: &Path, seconds: u64) -> Result<WrkOut> {
    let out = Command::new(&o.wrk)
        .args(["-t1", "-c"])
        .arg(o.connections.to_string())
        .arg("-d")
        .arg(format!("{seconds}s"))
        .args(["--timeout", "30s", "--latency", "-s"])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", o.wrk.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCH-JSON "))
        .ok_or_else(|| {
            anyhow!(
                "wrk printed no summary ({}):\n{text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

/// What a listener decided for one sample, replayed with the Rust mTLS client.
pub(super) fn replay(
    pki: &TestPki,
    s: &Sample,
    target: SocketAddr,
    http: bool,
) -> Result<&'static str, String> {
    let t = &s.traffic;
    let identity = match &t.principal {
        Some(p) => Some(pki.workload(p).map_err(|e| format!("{e:#}"))?),
        None => None,
    };
    let tls = TlsClient {
        ca: pki.ca_der().clone(),
        identity,
        sni: None,
    };
    let src: IpAddr = t
        .source_ip
        .parse()
        .map_err(|e| format!("source {}: {e}", t.source_ip))?;
    let mut req = HttpRequest::new(
        t.method.as_deref().unwrap_or("GET"),
        t.path.as_deref().unwrap_or("/"),
        t.host.as_deref().unwrap_or("backend"),
    );
    for (k, v) in &t.headers {
        req = req.header(k, v);
    }
    match client::http_request(Some(SocketAddr::new(src, 0)), target, Some(&tls), &req) {
        Ok(r) if r.status == 200 => Ok("allow"),
        Ok(r) if http && r.status == 403 => Ok("deny"),
        Ok(r) => Err(format!("status {} {:?}", r.status, r.body_text())),
        Err(ConnError::Closed(_)) if !http => Ok("deny"),
        Err(e) => Err(e.to_string()),
    }
}

struct Ctx<'a> {
    o: &'a Options,
    pki: Arc<TestPki>,
    work: PathBuf,
    results: Results,
}

fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

fn startup_timeout(rules: usize) -> Duration {
    Duration::from_secs(60 + (rules / 500) as u64)
}

impl Ctx<'_> {
    /// The run's copy of the module.
    fn module(&self) -> &Path {
        self.o.module_copy.as_deref().unwrap_or(&self.o.wasm)
    }

    fn phase(&mut self, g: &Generated, kind: SetKind, with_empty: bool) -> Result<()> {
        let n = g.description.n;
        let variants: Vec<&'static str> = VARIANTS
            .iter()
            .copied()
            .filter(|v| with_empty || *v != "empty-wasm")
            .collect();
        let net = &g.description.net;
        let set = g.set(kind);
        let http = kind.http();
        let (Some(allow), Some(deny)) = (
            g.bench_sample(kind, "bench-allow"),
            g.bench_sample(kind, "bench-deny"),
        ) else {
            bail!("{}: the generator made no load samples", kind.name());
        };
        let dir = self.work.join(format!("{}-{n}", kind.name()));
        std::fs::create_dir_all(&dir)?;
        let backend = SocketAddr::new(v4(127, 0, 0, 1), free_port(&[v4(127, 0, 0, 1)])?);
        let layer = if http {
            Layer::Http
        } else {
            Layer::Tcp { backend }
        };
        let port = if http { net.l7_port } else { net.l4_port };
        let server_cert = self.pki.server(
            "bench-server",
            &["localhost", "*.default.svc.cluster.local"],
            &[v4(127, 0, 0, 1)],
            None,
        )?;
        let module_config = serde_json::to_string(&g.plugin_config(kind))?;
        let rbac = set.envoy_rbac();
        let mut servers: Vec<(&'static str, Proc)> = Vec::new();
        for &variant in &variants {
            let filter = match variant {
                "none" => Filter::None,
                "native" => Filter::Native(rbac.clone()),
                "native-indexed" => Filter::Native(super::indexed::envoy_rbac_indexed(set)),
                "empty-wasm" => Filter::Module(Plugin::new(self.work.join("empty.wasm"), "{}")),
                _ => Filter::Module(Plugin::new(self.module(), module_config.clone())),
            };
            let server = Server {
                name: format!("{}-{variant}", kind.name()),
                addr: SocketAddr::new(server_ip(kind, variant), port),
                layer: layer.clone(),
                filter,
                cert: server_cert.cert_file.clone(),
                key: server_cert.key_file.clone(),
                ca: self.pki.ca_file().to_path_buf(),
            };
            let p = Proc::start(
                &self.o.envoy,
                &format!("server-{variant}"),
                &server.bootstrap(),
                &dir,
                startup_timeout(set.rule_count()),
            )
            .with_context(|| format!("{} N={n} {variant}", kind.name()))?;
            log(format!(
                "{} N={n} {variant}: ready in {:.2} s, VmRSS {} MiB",
                kind.name(),
                p.startup.as_secs_f64(),
                p.vmrss_kib().unwrap_or(0) / 1024
            ));
            servers.push((variant, p));
        }
        for (variant, p) in &servers {
            self.results.startup.push(StartupRow {
                set: kind,
                n,
                variant,
                rules: match *variant {
                    "native" | "native-indexed" => set.rule_count(),
                    "module" => set.policies.len(),
                    _ => 0,
                },
                startup_s: p.startup.as_secs_f64(),
                vmrss_kib_ready: p.vmrss_kib().unwrap_or(0),
                vmrss_kib_after_load: 0,
            });
        }

        // The load Envoy: one route per variant and request.
        let mut routes = Vec::new();
        let mut route_ports = BTreeMap::new();
        for &variant in &variants {
            for role in ROLES {
                let s = if role == "bench-allow" { allow } else { deny };
                let principal = s
                    .traffic
                    .principal
                    .as_deref()
                    .ok_or_else(|| anyhow!("load sample without a principal"))?;
                let listen = SocketAddr::new(v4(127, 0, 0, 1), free_port(&[v4(127, 0, 0, 1)])?);
                route_ports.insert((variant, role), listen.port());
                routes.push(LoadRoute {
                    name: format!("{variant}-{}", role_name(role)),
                    listen,
                    target: SocketAddr::new(server_ip(kind, variant), port),
                    identity: self.pki.workload(principal)?,
                    ca: self.pki.ca_file().to_path_buf(),
                    source_ip: s.traffic.source_ip.parse()?,
                    connection_per_request: !http,
                });
            }
        }
        let load = Proc::start(
            &self.o.envoy,
            "load",
            &benv::load_bootstrap(&routes, (!http).then_some(backend)),
            &dir,
            Duration::from_secs(60),
        )?;

        // Equal work: every replayable sample decided identically by the native, module and
        // native-indexed listeners.
        let mut row = CheckRow {
            set: kind,
            n,
            native_engine_samples: 0,
            native_engine_disagreements: Vec::new(),
            replayed: 0,
            identical: 0,
            as_expected: 0,
            mismatches: Vec::new(),
        };
        let (engine_n, engine_bad) = native_check(g, kind)?;
        row.native_engine_samples = engine_n;
        row.native_engine_disagreements = engine_bad
            .iter()
            .map(|d| format!("{}: expected {}, engine {}", d.sample, d.expected, d.got))
            .collect();
        for s in g.samples_of(kind).filter(|s| s.replayable) {
            let native = replay(
                &self.pki,
                s,
                SocketAddr::new(server_ip(kind, "native"), port),
                http,
            );
            let module = replay(
                &self.pki,
                s,
                SocketAddr::new(server_ip(kind, "module"), port),
                http,
            );
            let indexed = replay(
                &self.pki,
                s,
                SocketAddr::new(server_ip(kind, "native-indexed"), port),
                http,
            );
            row.replayed += 1;
            if native.is_ok() && native == module && native == indexed {
                row.identical += 1;
            }
            if native == Ok(s.expect) && module == Ok(s.expect) && indexed == Ok(s.expect) {
                row.as_expected += 1;
            } else {
                row.mismatches.push(format!(
                    "{}: expected {}, native {:?}, module {:?}, native-indexed {:?}",
                    s.name, s.expect, native, module, indexed
                ));
            }
        }
        log(format!(
            "{} N={n}: decision check {}/{} identical, {}/{} as expected{}",
            kind.name(),
            row.identical,
            row.replayed,
            row.as_expected,
            row.replayed,
            if row.mismatches.is_empty() {
                String::new()
            } else {
                format!("; MISMATCHES:\n  {}", row.mismatches.join("\n  "))
            }
        ));
        self.results.checks.push(row);

        // Scripts.
        let mut scripts = BTreeMap::new();
        for role in ROLES {
            let s = if role == "bench-allow" { allow } else { deny };
            let p = dir.join(format!("{}.lua", role_name(role)));
            std::fs::write(&p, wrk_script(s, &net.host))?;
            scripts.insert(role, p);
        }
        let server_pid = |variant: &str| {
            servers
                .iter()
                .find(|(v, _)| *v == variant)
                .map(|(_, p)| p.pid)
                .unwrap_or(0)
        };
        // Warm-up (V8 tiers the module up; connections get established).
        for role in ROLES {
            for &variant in &variants {
                run_wrk(
                    self.o,
                    route_ports[&(variant, role)],
                    &scripts[role],
                    self.o.warmup_s,
                )?;
            }
        }
        let tps = benv::ticks_per_second();
        for round in 0..self.o.rounds {
            for role in ROLES {
                for &variant in &variants {
                    let pid = server_pid(variant);
                    let mut duration = self.o.duration_s;
                    let (w, wall, cpu_s, load_s, wrk_s, busy_s) = loop {
                        let c0 = benv::cpu_ticks(pid)?;
                        let l0 = load.cpu_ticks()?;
                        let b0 = benv::system_busy_ticks()?;
                        let k0 = benv::children_cpu_seconds();
                        let t0 = Instant::now();
                        let w = run_wrk(
                            self.o,
                            route_ports[&(variant, role)],
                            &scripts[role],
                            duration,
                        )?;
                        let wall = t0.elapsed().as_secs_f64();
                        let cpu_s = (benv::cpu_ticks(pid)? - c0) as f64 / tps;
                        let load_s = (load.cpu_ticks()? - l0) as f64 / tps;
                        let busy_s = (benv::system_busy_ticks()? - b0) as f64 / tps;
                        let wrk_s = benv::children_cpu_seconds() - k0;
                        // Too slow to complete a handful of requests (native RBAC with the
                        // largest sets): run once more, long enough to measure something.
                        if w.requests >= 5 || duration >= 20 || self.o.quick {
                            break (w, wall, cpu_s, load_s, wrk_s, busy_s);
                        }
                        duration = 20;
                    };
                    let seconds = w.duration_us as f64 / 1e6;
                    let expect_denied =
                        role == "bench-deny" && !matches!(variant, "none" | "empty-wasm");
                    let socket_errors =
                        w.connect_errors + w.read_errors + w.write_errors + w.timeouts;
                    let decisions_ok = socket_errors == 0
                        && w.requests > 0
                        && if expect_denied {
                            w.status_errors == w.requests
                        } else {
                            w.status_errors == 0
                        };
                    let r = LoadRun {
                        set: kind,
                        n,
                        variant,
                        role: role_name(role),
                        round,
                        requests: w.requests,
                        seconds,
                        rps: w.requests as f64 / seconds.max(1e-9),
                        p50_us: w.p50_us,
                        p90_us: w.p90_us,
                        p99_us: w.p99_us,
                        mean_us: w.mean_us,
                        cpu_us_per_req: cpu_s * 1e6 / (w.requests.max(1) as f64),
                        server_cpu_util: cpu_s / wall,
                        load_cpu_util: load_s / wall,
                        wrk_cpu_util: wrk_s / wall,
                        other_cpu_util: ((busy_s - cpu_s - load_s - wrk_s) / wall).max(0.0),
                        non_2xx: w.status_errors,
                        socket_errors,
                        decisions_ok,
                    };
                    log(format!(
                        "{} N={n} {} {variant} round {round}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {:.1} µs CPU/req{}",
                        kind.name(),
                        r.role,
                        r.rps,
                        r.p50_us,
                        r.p99_us,
                        r.cpu_us_per_req,
                        if decisions_ok { "" } else { "  (UNEXPECTED RESPONSES)" }
                    ));
                    self.results.runs.push(r);
                }
            }
        }
        for (variant, p) in &servers {
            if let Some(row) = self
                .results
                .startup
                .iter_mut()
                .find(|r| r.set == kind && r.n == n && r.variant == *variant)
            {
                row.vmrss_kib_after_load = p.vmrss_kib().unwrap_or(0);
            }
        }
        load.stop();
        for (_, p) in servers {
            p.stop();
        }
        Ok(())
    }

    fn footprint(&mut self, g: &Generated, kind: SetKind) -> Result<()> {
        let n = g.description.n;
        let config = serde_json::to_vec(&g.plugin_config(kind))?;
        let budget = Duration::from_millis(if self.o.quick { 300 } else { 1500 });
        let native = memory::native_configure_ms(&config, budget)?;
        // Quick runs measure the module's memory for the seeds' set only (the target).
        let measure_module = self.o.memory && (!self.o.quick || n == 1);
        let mut fp = Footprint::empty(config.len());
        if measure_module {
            match memory::module_footprint(self.module(), &config, budget) {
                Ok(m) => fp = m,
                Err(e) => self
                    .results
                    .errors
                    .push(format!("{} N={n}: module footprint: {e:#}", kind.name())),
            }
        }
        fp.native_configure_ms = native;
        let engine = super::check::engine(g, kind)?;
        for role in ROLES {
            if let Some(s) = g.bench_sample(kind, role) {
                let traffic = if s.traffic.method.is_some() {
                    authz_plugin::engine::Traffic::Request
                } else {
                    authz_plugin::engine::Traffic::Connection
                };
                let ns = memory::native_decide_ns(
                    &engine,
                    traffic,
                    &super::check::attributes(&s.traffic),
                );
                if role == "bench-allow" {
                    fp.native_decide_ns_allow = Some(ns);
                } else {
                    fp.native_decide_ns_deny = Some(ns);
                }
            }
        }
        log(format!(
            "{} N={n}: native configure {native:.2} ms, decide {:.0}/{:.0} ns; module in Wasmtime {:?} ms, linear memory {:?} bytes",
            kind.name(),
            fp.native_decide_ns_allow.unwrap_or(f64::NAN),
            fp.native_decide_ns_deny.unwrap_or(f64::NAN),
            fp.wasmtime_configure_ms,
            fp.linear_memory_bytes
        ));
        self.results.footprint.push(FootprintRow {
            set: kind,
            n,
            footprint: fp,
        });
        Ok(())
    }
}

fn summarize(runs: &[LoadRun]) -> Vec<SummaryRow> {
    let mut keys: Vec<(SetKind, usize, &'static str)> = Vec::new();
    for r in runs {
        if !keys.contains(&(r.set, r.n, r.role)) {
            keys.push((r.set, r.n, r.role));
        }
    }
    keys.into_iter()
        .map(|(set, n, role)| {
            let of = |variant: &str| -> Vec<&LoadRun> {
                runs.iter()
                    .filter(|r| r.set == set && r.n == n && r.role == role && r.variant == variant)
                    .collect()
            };
            let med = |f: &dyn Fn(&LoadRun) -> f64| -> BTreeMap<&'static str, f64> {
                VARIANTS
                    .iter()
                    .filter_map(|v| {
                        Spread::of(of(v).into_iter().map(f).collect()).map(|s| (*v, s.median))
                    })
                    .collect()
            };
            let pairs = |quiet: bool| -> Vec<(&LoadRun, &LoadRun)> {
                let native = of("native");
                of("module")
                    .into_iter()
                    .filter_map(|m| native.iter().find(|x| x.round == m.round).map(|x| (m, *x)))
                    .filter(|(m, x)| {
                        !quiet || (m.other_cpu_util < QUIET_CPU && x.other_cpu_util < QUIET_CPU)
                    })
                    .collect()
            };
            let ratio = |f: &dyn Fn(&LoadRun) -> f64| -> Option<Spread> {
                Spread::of(pairs(false).iter().map(|(m, x)| f(m) / f(x)).collect())
            };
            let quiet = pairs(true);
            SummaryRow {
                set,
                n,
                role,
                rps: med(&|r| r.rps),
                p50_us: med(&|r| r.p50_us),
                p99_us: med(&|r| r.p99_us),
                cpu_us_per_req: med(&|r| r.cpu_us_per_req),
                ratio_rps: ratio(&|r| r.rps),
                ratio_rps_quiet: Spread::of(quiet.iter().map(|(m, x)| m.rps / x.rps).collect()),
                quiet_rounds: quiet.len(),
                ratio_p50: ratio(&|r| r.p50_us),
                ratio_p99: ratio(&|r| r.p99_us),
                ratio_cpu: ratio(&|r| r.cpu_us_per_req),
                decisions_ok: runs
                    .iter()
                    .filter(|r| r.set == set && r.n == n && r.role == role)
                    .all(|r| r.decisions_ok),
            }
        })
        .collect()
}

/// Rounds in which both the module and native RBAC ran for a summary row.
fn pairs_of(r: &Results, s: &SummaryRow) -> usize {
    r.runs
        .iter()
        .filter(|x| x.set == s.set && x.n == s.n && x.role == s.role && x.variant == "module")
        .filter(|m| {
            r.runs.iter().any(|x| {
                x.set == s.set
                    && x.n == s.n
                    && x.role == s.role
                    && x.variant == "native"
                    && x.round == m.round
            })
        })
        .count()
}

fn fmt_spread(s: &Option<Spread>) -> String {
    match s {
        Some(s) if (s.max - s.min).abs() < 1e-9 => format!("{:.2}", s.median),
        Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "–".into(),
    }
}

pub(super) fn fmt_num(v: Option<&f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// KiB as MiB.
pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// KiB as MiB to one decimal, as the memory columns show them.
pub(super) fn fmt_mib(kib: u64) -> String {
    format!("{:.1}", mib(kib))
}

/// The cells of `variants`, as a table cell compares them: `a / b / c`.
pub(super) fn per_variant(variants: &[&str], cell: impl Fn(&str) -> String) -> String {
    variants
        .iter()
        .map(|v| cell(v))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn set_title(kind: SetKind) -> &'static str {
    match kind {
        SetKind::L7 => "Layer 7 (waypoint, HTTP filter), mixed sources: requests on keep-alive mTLS connections",
        SetKind::L7exact => "Layer 7, sources of exact principals only: requests on keep-alive mTLS connections",
        SetKind::L4 => "Layer 4 (ztunnel mode, network filter): a new mTLS connection per request",
        SetKind::L4worst => "Layer 4, ztunnel's worst-case shape (DENY policies × 10 rules): a new mTLS connection per request",
    }
}

/// Markdown tables of the results.
pub fn tables(r: &Results) -> String {
    let mut md = String::new();
    for kind in SetKind::ALL {
        let rows: Vec<&SummaryRow> = r.summary.iter().filter(|s| s.set == kind).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n#### {}\n", set_title(kind));
        let _ = writeln!(
            md,
            "| N | request | req/s none | req/s native | req/s module | **module/native req/s** | p50 µs native / module | p50 ratio | p99 µs native / module | p99 ratio | CPU µs/req native / module | CPU ratio |"
        );
        let _ = writeln!(
            md,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in rows {
            let _ = writeln!(
                md,
                "| {} | {}{} | {} | {} | {} | **{}** | {} / {} | {} | {} / {} | {} | {} / {} | {} |",
                s.n,
                s.role,
                if s.decisions_ok { "" } else { " ⚠" },
                fmt_num(s.rps.get("none"), 0),
                fmt_num(s.rps.get("native"), 0),
                fmt_num(s.rps.get("module"), 0),
                match (&s.ratio_rps_quiet, s.quiet_rounds) {
                    (Some(q), k) if k < pairs_of(r, s) => format!(
                        "{}; quiet rounds ({k}): {}",
                        fmt_spread(&s.ratio_rps),
                        fmt_spread(&Some(q.clone()))
                    ),
                    _ => fmt_spread(&s.ratio_rps),
                },
                fmt_num(s.p50_us.get("native"), 0),
                fmt_num(s.p50_us.get("module"), 0),
                fmt_spread(&s.ratio_p50),
                fmt_num(s.p99_us.get("native"), 0),
                fmt_num(s.p99_us.get("module"), 0),
                fmt_spread(&s.ratio_p99),
                fmt_num(s.cpu_us_per_req.get("native"), 1),
                fmt_num(s.cpu_us_per_req.get("module"), 1),
                fmt_spread(&s.ratio_cpu),
            );
        }
    }
    let with_empty: Vec<&SummaryRow> = r
        .summary
        .iter()
        .filter(|s| s.cpu_us_per_req.contains_key("empty-wasm"))
        // At Layer 4 a denied connection never reaches the backend while `none` and
        // `empty-wasm` let it through: only the allowed connections are comparable.
        .filter(|s| s.set.http() || s.role == "allow")
        .collect();
    if !with_empty.is_empty() {
        let _ = writeln!(
            md,
            "\n#### Where the time goes: server Envoy CPU per request (µs), smallest N\n\n`empty-wasm` is a proxy-wasm module that exports no stream callbacks (the Envoy driver's stand-in): what any Wasm filter costs in this Envoy before it does anything.\n"
        );
        let _ = writeln!(
            md,
            "| set | N | request | none | empty-wasm | native | module | Wasm base (empty − none) | module's own (module − empty) | native RBAC (native − none) |"
        );
        let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for s in with_empty {
            let c = |v: &str| s.cpu_us_per_req.get(v).copied().unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1} | {:+.1} | {:+.1} |",
                s.set.name(),
                s.n,
                s.role,
                c("none"),
                c("empty-wasm"),
                c("native"),
                c("module"),
                c("empty-wasm") - c("none"),
                c("module") - c("empty-wasm"),
                c("native") - c("none"),
            );
        }
    }
    if !r.startup.is_empty() {
        let _ = writeln!(
            md,
            "\n#### Envoy start-up (spawn → `/ready` LIVE) and resident memory\n"
        );
        let _ = writeln!(
            md,
            "| set | N | Envoy RBAC rules | start-up s none / native / module | VmRSS MiB none / native / module (ready) | VmRSS MiB after load |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        let mut keys: Vec<(SetKind, usize)> = r.startup.iter().map(|s| (s.set, s.n)).collect();
        keys.dedup();
        for (set, n) in keys {
            let f = |v: &str, g: &dyn Fn(&StartupRow) -> String| {
                r.startup_of(set, n, v).map_or("–".into(), g)
            };
            let cells = |g: &dyn Fn(&StartupRow) -> String| {
                per_variant(&["none", "native", "module"], |v| f(v, g))
            };
            let _ = writeln!(
                md,
                "| {} | {n} | {} | {} | {} | {} |",
                set.name(),
                f("native", &|s| s.rules.to_string()),
                cells(&|s| format!("{:.2}", s.startup_s)),
                cells(&|s| fmt_mib(s.vmrss_kib_ready)),
                cells(&|s| fmt_mib(s.vmrss_kib_after_load)),
            );
        }
    }
    if !r.footprint.is_empty() {
        let _ = writeln!(md, "\n#### Configure time and the module's linear memory\n");
        let _ = writeln!(
            md,
            "| set | N | config JSON KiB | native `Engine::from_json` ms | module `on_configure` in Wasmtime ms | module linear memory MiB (initial → configured) | native `decide` ns, allowed / denied load request |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
        for f in &r.footprint {
            let fp = &f.footprint;
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {} | {} | {} / {} |",
                f.set.name(),
                f.n,
                fp.config_bytes as f64 / 1024.0,
                fp.native_configure_ms,
                fp.wasmtime_configure_ms.map_or("–".into(), |v| {
                    if fp.reconfigure_fits_1gib == Some(false) {
                        format!("{v:.2} (first configure: a reconfigure does not fit in 1 GiB)")
                    } else {
                        format!("{v:.2}")
                    }
                }),
                match (fp.initial_memory_bytes, fp.linear_memory_bytes) {
                    (Some(i), Some(l)) =>
                        format!("{:.2} → {:.2}", i as f64 / 1048576.0, l as f64 / 1048576.0),
                    _ => "–".into(),
                },
                fmt_num(fp.native_decide_ns_allow.as_ref(), 0),
                fmt_num(fp.native_decide_ns_deny.as_ref(), 0),
            );
        }
    }
    md.push_str(&super::indexed_report::table(r));
    md.push_str(&super::workers::table(r));
    if !r.checks.is_empty() {
        let _ = writeln!(md, "\n#### Decision checks (equal work)\n");
        let _ = writeln!(
            md,
            "| set | N | native engine vs generator | replayed through native, module and native-indexed | identical | as expected |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        for c in &r.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {}/{} agree | {} | {} | {} |",
                c.set.name(),
                c.n,
                c.native_engine_samples - c.native_engine_disagreements.len(),
                c.native_engine_samples,
                c.replayed,
                c.identical,
                c.as_expected
            );
        }
    }
    md
}

/// The targets of the issue, checked against the results.
pub fn targets(r: &Results) -> String {
    let mut md = String::new();
    let row = |set: SetKind, n: usize, role: &str| {
        r.summary
            .iter()
            .find(|s| s.set == set && s.n == n && s.role == role)
    };
    let mut line = |name: &str, want: &str, got: Option<f64>, ok: Option<bool>| {
        let _ = writeln!(
            md,
            "| {name} | {want} | {} | {} |",
            got.map_or("not measured".into(), |g| format!("{g:.2}")),
            match ok {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "–",
            }
        );
    };
    for role in ["allow", "deny"] {
        let seeds = row(SetKind::L7, 1, role)
            .and_then(|s| s.ratio_rps.as_ref())
            .map(|s| s.median);
        line(
            &format!("L7 seeds' policy (N=1), {role}: module/native req/s"),
            "≥ 0.92",
            seeds,
            seeds.map(|v| v >= 0.92),
        );
        let quiet = row(SetKind::L7, 1, role).filter(|s| s.quiet_rounds > 0);
        if let Some(q) = quiet.and_then(|s| {
            s.ratio_rps_quiet
                .as_ref()
                .map(|x| (x.median, s.quiet_rounds))
        }) {
            line(
                &format!("… the same over the quiet rounds only ({} of them)", q.1),
                "≥ 0.92",
                Some(q.0),
                Some(q.0 >= 0.92),
            );
        }
    }
    for set in [SetKind::L7, SetKind::L7exact] {
        if !r.options.sets.contains(&set) {
            continue;
        }
        for (n, want) in [(1000usize, 5.0), (10000, 100.0)] {
            if !r.options.ns.contains(&n) {
                continue;
            }
            for role in ["allow", "deny"] {
                let v = row(set, n, role)
                    .and_then(|s| s.ratio_rps.as_ref())
                    .map(|s| s.median);
                line(
                    &format!("{} N={n}, {role}: module/native req/s", set.name()),
                    &format!("≥ {want}"),
                    v,
                    v.map(|v| v >= want),
                );
            }
        }
        for role in ["allow", "deny"] {
            // At N = 1 both Layer 7 sets are the seeds' policy.
            let one = row(SetKind::L7, 1, role).and_then(|s| s.rps.get("module").copied());
            let big = row(set, 10000, role).and_then(|s| s.rps.get("module").copied());
            let v = one.zip(big).map(|(a, b)| b / a);
            line(
                &format!(
                    "{} module at N=10000 / module at N=1, {role}: req/s",
                    set.name()
                ),
                "≥ 0.8",
                v,
                v.map(|v| v >= 0.8),
            );
        }
    }
    let mem = r
        .footprint
        .iter()
        .find(|f| f.set == SetKind::L7 && f.n == 1)
        .and_then(|f| f.footprint.linear_memory_bytes)
        .map(|b| b as f64 / 1048576.0);
    line(
        "Linear memory for the seeds' set, MiB",
        "≤ 2",
        mem,
        mem.map(|m| m <= 2.0),
    );
    format!("| target | wanted | measured | |\n|---|---:|---:|---|\n{md}")
}

/// gnuplot data (one file per set and request) and script for the throughput plot.
fn plot_files(r: &Results, dir: &Path, tag: &str) -> Result<()> {
    let mut panels = Vec::new();
    for kind in SetKind::ALL {
        let mut series = Vec::new();
        for role in ["allow", "deny"] {
            let rows: Vec<&SummaryRow> = r
                .summary
                .iter()
                .filter(|s| s.set == kind && s.role == role)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let file = format!("{tag}-{}-{role}.dat", kind.name());
            let mut data = String::from("# N none native module native-indexed\n");
            for s in rows {
                let _ = writeln!(
                    data,
                    "{} {} {} {} {}",
                    s.n,
                    fmt_num(s.rps.get("none"), 1).replace('–', "NaN"),
                    fmt_num(s.rps.get("native"), 1).replace('–', "NaN"),
                    fmt_num(s.rps.get("module"), 1).replace('–', "NaN"),
                    fmt_num(s.rps.get("native-indexed"), 1).replace('–', "NaN"),
                );
            }
            std::fs::write(dir.join(&file), data)?;
            series.push((role, file));
        }
        if !series.is_empty() {
            panels.push((kind, series));
        }
    }
    let memory = super::indexed_report::memory_panels(r, dir, tag)?;
    let count = panels.len() + memory.len();
    let mut gp = String::new();
    let _ = writeln!(
        gp,
        "set terminal pngcairo size 1500,{} font ',10'\nset output '{tag}.png'",
        450 * count.max(1)
    );
    let _ = writeln!(
        gp,
        "set logscale xy\nset grid\nset key outside right\nset xlabel 'number of AuthorizationPolicies (N)'\nset xrange [0.7:14000]"
    );
    let _ = writeln!(gp, "set multiplot layout {},1", count.max(1));
    for (kind, series) in &panels {
        let _ = writeln!(
            gp,
            "set title \"{}\"\nset ylabel '{}'",
            set_title(*kind).replace('"', "'"),
            if kind.http() {
                "requests/s"
            } else {
                "new mTLS connections/s"
            }
        );
        let mut plots = Vec::new();
        for (role, file) in series {
            let dash = if *role == "allow" { 1 } else { 2 };
            plots.push(format!(
                "'{file}' using 1:3 with linespoints lw 2 dt {dash} lc rgb '#c0392b' title 'native RBAC, {role}'"
            ));
            plots.push(format!(
                "'{file}' using 1:4 with linespoints lw 2 dt {dash} lc rgb '#2471a3' title 'module, {role}'"
            ));
            plots.push(format!(
                "'{file}' using 1:5 with linespoints lw 2 dt {dash} lc rgb '#1e8449' title 'native-indexed, {role}'"
            ));
            plots.push(format!(
                "'{file}' using 1:2 with lines dt {dash} lc rgb '#999999' title 'no filter, {role}'"
            ));
        }
        let _ = writeln!(gp, "plot {}", plots.join(", \\\n     "));
    }
    for m in memory {
        let _ = writeln!(gp, "{m}");
    }
    let _ = writeln!(gp, "unset multiplot");
    std::fs::write(dir.join(format!("{tag}.gp")), gp)?;
    Ok(())
}

/// FNV-1a, 64 bits: a fingerprint of the module file.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs the benchmark (`authz-harness bench-run`): writes the results files, hands the
/// Markdown report to `print`, and fails (status 1) when a decision check failed.
pub fn run(mut o: Options, print: &dyn Fn(&str)) -> Result<ExitCode> {
    o.check()?;
    if !o.wasm.is_file() {
        bail!(
            "module {} not built (cargo build -p authz-plugin --target wasm32-wasip1 --profile wasm)",
            o.wasm.display()
        );
    }
    if !o.envoy.is_file() {
        bail!(
            "no envoy at {} (scripts/install-envoy.sh)",
            o.envoy.display()
        );
    }
    let started = Instant::now();
    let work_dir = tempfile::Builder::new().prefix("authz-bench-").tempdir()?;
    let work = work_dir.path().to_path_buf();
    let pki = Arc::new(TestPki::new(
        &work.join("certs"),
        authz_envoy::TRUST_DOMAIN,
    )?);
    authz_envoy::write_stand_in_module(&work.join("empty.wasm"))?;
    // The module may be rebuilt while the benchmark runs (a shared tree): use a copy.
    let module_bytes = std::fs::read(&o.wasm)?;
    let copy = work.join("authz_plugin.wasm");
    std::fs::write(&copy, &module_bytes)?;
    o.module_fnv64 = format!("{:016x}", fnv64(&module_bytes));
    o.module_copy = Some(copy);
    let m = machine(&o);
    log(format!(
        "{} × {} ({} cores), Envoy {}, load average {}",
        m.cpu_model, m.nproc, m.nproc, m.envoy_version, m.loadavg_start
    ));
    // Fixed ports for the whole run (policies name the Layer 4 port).
    let l7_ips: Vec<IpAddr> = VARIANTS.iter().map(|v| server_ip(SetKind::L7, v)).collect();
    let l4_ips: Vec<IpAddr> = VARIANTS.iter().map(|v| server_ip(SetKind::L4, v)).collect();
    let mut net = Net {
        l7_port: free_port(&l7_ips)?,
        l4_port: free_port(&l4_ips)?,
        ..Net::default()
    };
    net.l7_addr = match server_ip(SetKind::L7, "module") {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => net.l7_addr,
    };
    net.l4_addr = match server_ip(SetKind::L4, "module") {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => net.l4_addr,
    };
    let mut ctx = Ctx {
        o: &o,
        pki,
        work: work.clone(),
        results: Results {
            tag: o.tag.clone(),
            options: o.clone(),
            machine: m,
            elapsed_s: 0.0,
            checks: Vec::new(),
            startup: Vec::new(),
            footprint: Vec::new(),
            runs: Vec::new(),
            summary: Vec::new(),
            workers_memory: Vec::new(),
            errors: Vec::new(),
        },
    };
    for &n in &o.ns {
        let mut d = Description::new(n, o.seed);
        d.net = net.clone();
        let g = Generated::new(&d);
        for &kind in &o.sets {
            log(format!(
                "{} N={n}: {} policies, {} Envoy RBAC rules",
                kind.name(),
                g.set(kind).policies.len(),
                g.set(kind).rule_count()
            ));
            if kind == SetKind::L7exact && n == 1 && d.seeds_at_one {
                // The seeds' policy, as for l7.
                continue;
            }
            if kind == SetKind::L4worst && o.worst_max.is_some_and(|m| n > m) {
                log(format!("{} N={n}: skipped (--worst-max)", kind.name()));
                continue;
            }
            let with_empty = Some(&n) == o.ns.iter().min();
            if o.no_load {
                // Footprint only.
            } else if let Err(e) = ctx.phase(&g, kind, with_empty) {
                log(format!("{} N={n}: FAILED: {e:#}", kind.name()));
                ctx.results
                    .errors
                    .push(format!("{} N={n}: {e:#}", kind.name()));
            }
            if let Err(e) = ctx.footprint(&g, kind) {
                ctx.results
                    .errors
                    .push(format!("{} N={n}: footprint: {e:#}", kind.name()));
            }
            if !o.no_load && o.memory && super::workers::wanted(n, kind) {
                match super::workers::measure(&o.envoy, &ctx.pki, &work, ctx.module(), &g, kind) {
                    Ok(rows) => ctx.results.workers_memory.extend(rows),
                    Err(e) => ctx
                        .results
                        .errors
                        .push(format!("{} N={n}: two workers: {e:#}", kind.name())),
                }
            }
        }
    }
    ctx.results.summary = summarize(&ctx.results.runs);
    ctx.results.machine.loadavg_end = read("/proc/loadavg").trim().to_string();
    ctx.results.elapsed_s = started.elapsed().as_secs_f64();
    let r = ctx.results;
    std::fs::create_dir_all(&o.out)?;
    let json_path = o.out.join(format!("{}.json", o.tag));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&r)?)?;
    let other = Spread::of(r.runs.iter().map(|x| x.other_cpu_util).collect());
    let md = format!(
        "# Benchmark {}\n\n{} × {} cores, {} MiB; Envoy {}; {}; module {} bytes (FNV-1a {}).\nLoad average at start {}, at end {}. CPU used by other processes during the load runs (of {} CPUs): {}. {} round(s) of {} s, {} connections, warm-up {} s. Took {:.0} s.\n\n### Targets\n\n{}\n### Tables\n{}",
        r.tag,
        r.machine.cpu_model,
        r.machine.nproc,
        r.machine.mem_total_kib / 1024,
        r.machine.envoy_version,
        r.machine.wrk_version,
        r.machine.module_bytes,
        o.module_fnv64,
        r.machine.loadavg_start,
        r.machine.loadavg_end,
        r.machine.nproc,
        other.map_or("–".into(), |s| format!(
            "median {:.2}, min {:.2}, max {:.2}",
            s.median, s.min, s.max
        )),
        o.rounds,
        o.duration_s,
        o.connections,
        o.warmup_s,
        r.elapsed_s,
        targets(&r),
        tables(&r)
    );
    std::fs::write(o.out.join(format!("{}.md", o.tag)), &md)?;
    plot_files(&r, &o.out, &o.tag)?;
    print(&md);
    if !r.errors.is_empty() {
        print(&format!("\nErrors:\n  {}", r.errors.join("\n  ")));
    }
    log(format!("wrote {}", json_path.display()));
    if o.keep {
        let kept = work_dir.keep();
        log(format!("work files kept in {}", kept.display()));
    }
    let failed_checks = r
        .checks
        .iter()
        .any(|c| !c.mismatches.is_empty() || !c.native_engine_disagreements.is_empty());
    let bad_runs = r.summary.iter().any(|s| !s.decisions_ok);
    if failed_checks || !r.errors.is_empty() || bad_runs {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
