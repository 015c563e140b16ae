//! The soak: Envoy with the module under bounded load on loopback for a set time, its
//! listener reconfigured every few seconds (as a control plane pushes LDS) through a rotation
//! of policy sets that includes a configuration the module must refuse. Every response is
//! checked against the policy sets that can have been in force while it was in flight;
//! Envoy's resident memory, its allocator's figures and the module's decision counters are
//! sampled throughout.
//!
//! It fails when a response is wrong (a decision no in-force policy set gives, the refused
//! set's decision, or anything but the module's own `200`/`403` — a 503, a reset or a timeout
//! is a gap), when the module's counters do not account for every decision, when a
//! refused configuration was accepted or a good one refused, or when memory grows (the median
//! of the last quarter of samples above the median of the second quarter by more than
//! 10 % or 8 MiB). Throughput is reported, never asserted (a shared machine's timing is
//! noise).
//!
//! `authz-harness soak --duration 60 --out bench/results --tag TAG` writes `TAG.dat` (one
//! sample per line), `TAG.gp` (gnuplot: memory against time) and `TAG.md` (the summary), and
//! runs gnuplot for `TAG.png` when it is installed (`bench/soak.sh` wraps it).

use anyhow::{anyhow, bail, Context, Result};
use authz_envoy::bootstrap::{EnvoySpec, ListenerKind, Plugin, Upstream};
use authz_envoy::upstream::Upstream as App;
use authz_envoy::{find_envoy, find_wasm, Envoy, ListenerInfo, TestEnv};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a soak run does.
#[derive(Clone, Debug)]
pub struct Options {
    pub duration: Duration,
    pub reconfigure_every: Duration,
    pub sample_every: Duration,
    /// Requests per second over all workers (an upper bound: each worker paces itself).
    pub rate: u32,
    pub workers: usize,
    pub out: PathBuf,
    pub tag: String,
    pub envoy_bin: Option<PathBuf>,
    pub wasm: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            duration: Duration::from_secs(60),
            reconfigure_every: Duration::from_secs(3),
            sample_every: Duration::from_secs(2),
            rate: 40,
            workers: 2,
            out: PathBuf::from("bench/results"),
            tag: "soak".into(),
            envoy_bin: None,
            wasm: None,
        }
    }
}

const HOST: &str = "productpage.default.svc.cluster.local";
const LISTEN: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 20);
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 30);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 5, 5);
const DENY_BODY: &str = "RBAC: access denied";

/// The policy sets of the rotation. `Bad` is `B` plus `DELETE` with an invalid CIDR: the
/// module must refuse it, so `B` (or whatever was in force) stays, and a `DELETE` that is
/// allowed would show it was not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    A,
    B,
    Bad,
}

impl Set {
    fn name(self) -> &'static str {
        match self {
            Set::A => "A",
            Set::B => "B",
            Set::Bad => "bad",
        }
    }
}

/// The order of pushes after the initial `A`: every good set is followed by a refused one.
const ROTATION: [Set; 4] = [Set::B, Set::Bad, Set::A, Set::Bad];

fn policy(name: &str, action: &str, rules: Value) -> Value {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"action": action,
                    "targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}],
                    "rules": rules}})
}

fn plugin_config(set: Set) -> String {
    let curl = "cluster.local/ns/default/sa/curl";
    let reviews = "cluster.local/ns/default/sa/reviews";
    let mut policies = vec![policy(
        "deny-admin",
        "DENY",
        json!([{"to": [{"operation": {"paths": ["/admin", "/admin/*"]}}]}]),
    )];
    match set {
        Set::A => policies.push(policy(
            "allow",
            "ALLOW",
            json!([{"from": [{"source": {"principals": [curl]}}],
                    "to": [{"operation": {"methods": ["GET"]}}]}]),
        )),
        Set::B | Set::Bad => {
            let mut rules = vec![
                json!({"from": [{"source": {"principals": [curl]}}],
                       "to": [{"operation": {"methods": ["GET", "POST"]}}]}),
                json!({"from": [{"source": {"principals": [reviews]}}],
                       "to": [{"operation": {"methods": ["GET"]}}]}),
            ];
            if set == Set::Bad {
                rules.push(json!({"from": [{"source": {"principals": [curl], "ipBlocks": ["10.0.0.0/33"]}}],
                                  "to": [{"operation": {"methods": ["DELETE"]}}]}));
                rules.push(json!({"from": [{"source": {"principals": [curl]}}],
                                  "to": [{"operation": {"methods": ["DELETE"]}}]}));
            }
            policies.push(policy("allow", "ALLOW", Value::Array(rules)));
        }
    }
    json!({"mode": "waypoint", "waypoint": {"name": "waypoint", "namespace": "default"},
           "services": [{"name": "productpage", "namespace": "default", "hosts": [HOST],
                         "addresses": [LISTEN.to_string()]}],
           "policies": policies})
    .to_string()
}

/// One kind of request and what each set decides for it (`true` = allow).
struct Probe {
    principal: &'static str,
    method: &'static str,
    path: &'static str,
    a: bool,
    b: bool,
    bad: bool,
}

impl Probe {
    fn allows(&self, set: Set) -> bool {
        match set {
            Set::A => self.a,
            Set::B => self.b,
            Set::Bad => self.bad,
        }
    }
}

const PROBES: &[Probe] = &[
    Probe {
        principal: "cluster.local/ns/default/sa/curl",
        method: "GET",
        path: "/productpage",
        a: true,
        b: true,
        bad: true,
    },
    Probe {
        principal: "cluster.local/ns/default/sa/curl",
        method: "POST",
        path: "/productpage",
        a: false,
        b: true,
        bad: true,
    },
    Probe {
        principal: "cluster.local/ns/default/sa/reviews",
        method: "GET",
        path: "/reviews",
        a: false,
        b: true,
        bad: true,
    },
    Probe {
        principal: "cluster.local/ns/default/sa/curl",
        method: "GET",
        path: "/admin/users",
        a: false,
        b: false,
        bad: false,
    },
    Probe {
        principal: "cluster.local/ns/default/sa/curl",
        method: "DELETE",
        path: "/productpage",
        a: false,
        b: false,
        bad: true,
    },
    Probe {
        principal: "cluster.local/ns/other/sa/ratings",
        method: "GET",
        path: "/productpage",
        a: false,
        b: false,
        bad: false,
    },
];

/// A reconfiguration: pushed at `pushed`, seen by Envoy (accepted and warmed, or rejected)
/// at `settled`. Between the two, requests may meet the set before or after.
#[derive(Clone, Debug)]
struct Push {
    set: Set,
    before: Set,
    after: Set,
    pushed: Instant,
    settled: Instant,
    accepted: bool,
}

#[derive(Clone, Debug)]
enum Outcome {
    Allowed,
    Denied,
    /// Anything else: a status other than the module's 200/403, a body that is not the
    /// module's, a reset or a timeout.
    Broken(String),
}

#[derive(Clone, Debug)]
struct Response {
    probe: usize,
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

/// A failure example: the request `probe` sent `sent` into the run, and what went wrong.
fn example(probe: &Probe, sent: Duration, what: &str) -> String {
    format!(
        "{} {} as {} at {:.1}s: {what}",
        probe.method,
        probe.path,
        probe.principal,
        sent.as_secs_f64()
    )
}

#[derive(Clone, Debug)]
struct Sample {
    t: f64,
    rss_kib: u64,
    allocated: u64,
    heap: u64,
    requests: u64,
    broken: u64,
    accepted: u64,
    rejected: u64,
    module_decisions: u64,
    wasm_vms: u64,
}

/// What a run found.
pub struct Report {
    pub summary: String,
    pub failures: Vec<String>,
}

/// The module's enforced decisions so far: every `authz.*.allow` and `authz.*.deny` counter
/// (observe.rs moves exactly one of them per decision). Envoy lists them under
/// `wasmcustom.`.
fn module_decisions(envoy: &Envoy) -> Result<u64> {
    Ok(envoy
        .stats("authz.")?
        .into_iter()
        .filter(|(k, _)| {
            let k = k.strip_prefix("wasmcustom.").unwrap_or(k);
            k.starts_with("authz.") && (k.ends_with(".allow") || k.ends_with(".deny"))
        })
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The listener Envoy gets over LDS for `set`.
fn listener(env: &TestEnv, wasm: &Path, app: &App, port: u16, set: Set) -> Result<Value> {
    let mut spec = EnvoySpec::default();
    spec.listeners.push(env.listener(
        "waypoint",
        IpAddr::V4(LISTEN),
        port,
        ListenerKind::Http {
            plugin: Some(Plugin::new(wasm, plugin_config(set))),
        },
        Upstream::plain(app.addr()),
    )?);
    let mut bootstrap = spec.render()?;
    let mut l = bootstrap["static_resources"]["listeners"][0].take();
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    Ok(l)
}

/// Replaces the LDS file atomically (Envoy watches for the file being moved into place).
fn push_lds(lds: &Path, version: u32, listener: &Value) -> Result<()> {
    let tmp = lds.with_extension("tmp");
    let body = json!({"version_info": version.to_string(), "resources": [listener]});
    std::fs::write(&tmp, serde_json::to_vec_pretty(&body)?)?;
    std::fs::rename(&tmp, lds)?;
    Ok(())
}

/// Starts Envoy with its listener from a watched LDS file holding set `A`.
fn start(env: &TestEnv, wasm: &Path, app: &App, dir: &Path) -> Result<(Envoy, u16, PathBuf)> {
    let port = TcpListener::bind((LISTEN, 0))?.local_addr()?.port();
    std::fs::create_dir_all(dir)?;
    let lds = dir.join("lds.json");
    push_lds(&lds, 1, &listener(env, wasm, app, port, Set::A)?)?;
    let mut bootstrap = EnvoySpec::default().render()?;
    bootstrap["static_resources"]["listeners"] = json!([]);
    bootstrap["dynamic_resources"] = json!({
        "lds_config": {"path_config_source": {"path": lds.display().to_string()}, "resource_api_version": "V3"}
    });
    bootstrap["node"] = json!({"id": "waypoint", "cluster": "waypoint"});
    let mut with_cluster = EnvoySpec::default();
    with_cluster.listeners.push(env.listener(
        "waypoint",
        IpAddr::V4(LISTEN),
        port,
        ListenerKind::Http { plugin: None },
        Upstream::plain(app.addr()),
    )?);
    bootstrap["static_resources"]["clusters"] =
        with_cluster.render()?["static_resources"]["clusters"].clone();
    let file = dir.join("bootstrap.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bootstrap)?)?;
    let info = ListenerInfo {
        name: "waypoint".into(),
        addr: (IpAddr::V4(LISTEN), port).into(),
        tls: true,
    };
    let envoy = Envoy::start_config(&env.bin, &file, vec![info], dir, env.pki.clone())?;
    Ok((envoy, port, lds))
}

fn send(envoy: &Envoy, port: u16, probe: &Probe) -> Outcome {
    match envoy.request_http(
        Some(probe.principal),
        IpAddr::V4(CLIENT),
        port,
        probe.method,
        probe.path,
        HOST,
        &[],
    ) {
        Ok(r) if r.status == 200 && r.header("x-upstream") == Some("productpage") => {
            Outcome::Allowed
        }
        Ok(r) if r.status == 403 && r.body_text() == DENY_BODY => Outcome::Denied,
        Ok(r) => Outcome::Broken(format!("status {} body {:?}", r.status, r.body_text())),
        Err(e) => Outcome::Broken(e.to_string()),
    }
}

/// Waits until Envoy has taken in LDS version `version`: accepted (and no listener is
/// warming any more) or rejected. Returns whether it was accepted.
fn settle(envoy: &Envoy, success_before: u64, rejected_before: u64) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let success = envoy.stat("listener_manager.lds.update_success");
        let rejected = envoy.stat("listener_manager.lds.update_rejected");
        if rejected > rejected_before {
            return Ok(false);
        }
        if success > success_before && envoy.stat("listener_manager.total_listeners_warming") == 0 {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!("Envoy took in no LDS update within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the soak and writes its files.
pub fn run(opts: &Options) -> Result<Report> {
    let bin = match &opts.envoy_bin {
        Some(b) => b.clone(),
        None => find_envoy()
            .ok_or_else(|| anyhow!("no envoy: run scripts/install-envoy.sh or pass --envoy-bin"))?,
    };
    let wasm = opts.wasm.clone().unwrap_or_else(find_wasm);
    if !wasm.is_file() {
        bail!(
            "module {} not built (./build.sh --module-only)",
            wasm.display()
        );
    }
    let env = TestEnv::with_bin(bin)?;
    let app = App::http(
        "productpage",
        IpAddr::V4(UPSTREAM),
        "<title>productpage</title>",
    )?;
    let (envoy, port, lds) = start(&env, &wasm, &app, &env.dir().join("soak"))?;
    let pid = envoy.pid().ok_or_else(|| anyhow!("envoy is not running"))?;

    // Envoy's first listener is ready when a request gets the module's answer.
    let ready = Instant::now();
    while !matches!(send(&envoy, port, &PROBES[0]), Outcome::Allowed) {
        if ready.elapsed() > Duration::from_secs(30) {
            bail!("the first listener never answered\n{}", envoy.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The module hands its counts over on a one-second timer: the readiness probes' counts
    // must have arrived before the baseline is taken, or they would be counted as the soak's.
    let mut decisions_before = module_decisions(&envoy)?;
    let waiting = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(1200));
        let now = module_decisions(&envoy)?;
        if now == decisions_before || waiting.elapsed() > Duration::from_secs(6) {
            decisions_before = now;
            break;
        }
        decisions_before = now;
    }

    let t0 = Instant::now();
    let stop = AtomicBool::new(false);
    let responses: Mutex<Vec<Response>> = Mutex::new(Vec::new());
    let pushes: Mutex<Vec<Push>> = Mutex::new(Vec::new());
    let mut samples: Vec<Sample> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let per_worker = Duration::from_secs_f64(opts.workers as f64 / f64::from(opts.rate));

    std::thread::scope(|scope| -> Result<()> {
        // The load: each worker sends the probes in turn, paced to its share of the rate.
        for w in 0..opts.workers {
            let (envoy, stop, responses) = (&envoy, &stop, &responses);
            scope.spawn(move || {
                let mut i = w;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let probe = i % PROBES.len();
                    let start = Instant::now();
                    let outcome = send(envoy, port, &PROBES[probe]);
                    let end = Instant::now();
                    if let Ok(mut r) = responses.lock() {
                        r.push(Response {
                            probe,
                            start,
                            end,
                            outcome,
                        });
                    }
                    i += 1;
                    next += per_worker;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            });
        }

        // The control plane: push the next set of the rotation every few seconds.
        let controller = {
            let (envoy, stop, pushes, env, wasm, app, lds) =
                (&envoy, &stop, &pushes, &env, &wasm, &app, &lds);
            scope.spawn(move || -> Result<()> {
                let mut in_force = Set::A;
                let mut version = 1;
                let mut k = 0;
                let mut next = Instant::now() + opts.reconfigure_every;
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    next += opts.reconfigure_every;
                    let set = ROTATION[k % ROTATION.len()];
                    k += 1;
                    version += 1;
                    let l = listener(env, wasm, app, port, set)?;
                    let success = envoy.stat("listener_manager.lds.update_success");
                    let rejected = envoy.stat("listener_manager.lds.update_rejected");
                    let pushed = Instant::now();
                    push_lds(lds, version, &l)?;
                    let accepted = settle(envoy, success, rejected)?;
                    // A new listener takes new connections once warmed; a request that
                    // connected just before may still meet the old one.
                    let settled = Instant::now() + Duration::from_millis(100);
                    let before = in_force;
                    if accepted {
                        in_force = set;
                    }
                    if let Ok(mut p) = pushes.lock() {
                        p.push(Push {
                            set,
                            before,
                            after: in_force,
                            pushed,
                            settled,
                            accepted,
                        });
                    }
                }
                Ok(())
            })
        };

        // The sampler, on this thread.
        let mut next = Instant::now();
        while t0.elapsed() < opts.duration {
            let (requests, broken) = responses
                .lock()
                .map(|r| {
                    (
                        r.len() as u64,
                        r.iter()
                            .filter(|x| matches!(x.outcome, Outcome::Broken(_)))
                            .count() as u64,
                    )
                })
                .unwrap_or_default();
            samples.push(Sample {
                t: t0.elapsed().as_secs_f64(),
                rss_kib: rss_kib(pid),
                allocated: envoy.stat("server.memory_allocated"),
                heap: envoy.stat("server.memory_heap_size"),
                requests,
                broken,
                accepted: envoy.stat("listener_manager.lds.update_success"),
                rejected: envoy.stat("listener_manager.lds.update_rejected"),
                module_decisions: module_decisions(&envoy)
                    .unwrap_or(0)
                    .saturating_sub(decisions_before),
                wasm_vms: envoy.stat("wasm.wasm_vm_count"),
            });
            next += opts.sample_every;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
        stop.store(true, Ordering::Relaxed);
        match controller.join() {
            Ok(r) => r?,
            Err(_) => bail!("the controller thread panicked"),
        }
        Ok(())
    })?;
    let elapsed = t0.elapsed();

    let responses = responses.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let pushes = pushes.into_inner().map_err(|_| anyhow!("poisoned"))?;

    // Every response against the sets that can have been in force while it was in flight.
    let mut wrong = 0u64;
    let mut broken = 0u64;
    let mut decided = 0u64;
    let mut examples: Vec<String> = Vec::new();
    for r in &responses {
        let probe = &PROBES[r.probe];
        let allowed = match &r.outcome {
            Outcome::Allowed => true,
            Outcome::Denied => false,
            Outcome::Broken(why) => {
                broken += 1;
                if examples.len() < 10 {
                    examples.push(example(
                        probe,
                        r.start - t0,
                        &format!("no decision (a gap): {why}"),
                    ));
                }
                continue;
            }
        };
        decided += 1;
        let possible = in_force_during(&pushes, r.start, r.end);
        if !possible.iter().any(|s| probe.allows(*s) == allowed) {
            wrong += 1;
            if examples.len() < 10 {
                let in_force: Vec<&str> = possible.iter().map(|s| s.name()).collect();
                examples.push(example(
                    probe,
                    r.start - t0,
                    &format!(
                        "{} but the set(s) in force ({}) say otherwise",
                        if allowed { "allowed" } else { "denied" },
                        in_force.join(", ")
                    ),
                ));
            }
        }
    }
    // The module hands its counts to Envoy on a one-second timer (observe.rs): give the last
    // ones a few ticks to arrive before comparing.
    let waiting = Instant::now();
    let mut module_total = module_decisions(&envoy)?.saturating_sub(decisions_before);
    while module_total < decided && waiting.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        module_total = module_decisions(&envoy)?.saturating_sub(decisions_before);
    }
    if wrong > 0 {
        failures.push(format!(
            "{wrong} response(s) with a decision no set in force gives"
        ));
    }
    if broken > 0 {
        failures.push(format!(
            "{broken} request(s) got no decision from the module (a gap)"
        ));
    }
    if module_total != decided {
        failures.push(format!(
            "the module counted {module_total} decisions, the clients received {decided}"
        ));
    }
    let refused_bad = pushes
        .iter()
        .filter(|p| p.set == Set::Bad && !p.accepted)
        .count();
    let accepted_bad = pushes
        .iter()
        .filter(|p| p.set == Set::Bad && p.accepted)
        .count();
    let refused_good = pushes
        .iter()
        .filter(|p| p.set != Set::Bad && !p.accepted)
        .count();
    if accepted_bad > 0 {
        failures.push(format!(
            "{accepted_bad} refused-by-design configuration(s) were accepted"
        ));
    }
    if refused_good > 0 {
        failures.push(format!("{refused_good} good configuration(s) were refused"));
    }
    if pushes.is_empty() {
        failures.push("no reconfiguration happened (the run is shorter than one period)".into());
    }
    if responses.is_empty() {
        failures.push("no request was sent".into());
    }
    let memory = memory_verdict(&samples);
    if let Some(f) = &memory.failure {
        failures.push(f.clone());
    }
    failures.extend(examples.iter().map(|e| format!("  {e}")));
    let log = envoy.log();
    drop(envoy);

    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let dat = opts.out.join(format!("{}.dat", opts.tag));
    let mut text = String::from(
        "# t_s rss_mib allocated_mib heap_mib requests no_decision lds_accepted lds_rejected module_decisions wasm_vms\n",
    );
    for s in &samples {
        let _ = writeln!(
            text,
            "{:.1} {:.2} {:.2} {:.2} {} {} {} {} {} {}",
            s.t,
            s.rss_kib as f64 / 1024.0,
            s.allocated as f64 / 1048576.0,
            s.heap as f64 / 1048576.0,
            s.requests,
            s.broken,
            s.accepted,
            s.rejected,
            s.module_decisions,
            s.wasm_vms
        );
    }
    std::fs::write(&dat, text)?;
    let gp = opts.out.join(format!("{}.gp", opts.tag));
    std::fs::write(&gp, gnuplot_script(&opts.tag, elapsed))?;
    let png = opts.out.join(format!("{}.png", opts.tag));
    let plotted = std::process::Command::new("gnuplot")
        .current_dir(&opts.out)
        .arg(format!("{}.gp", opts.tag))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);

    let mut summary = String::new();
    let _ = writeln!(summary, "# Soak {}\n", opts.tag);
    let _ = writeln!(
        summary,
        "Envoy {} with the module (waypoint, HTTP filter, FAIL_CLOSED, `--concurrency 1`) on \
         loopback; {} worker(s) pacing {} new mTLS requests/s in all; the listener pushed over \
         LDS every {:.1} s through the rotation A → B → refused → A → refused; samples every \
         {:.1} s.\n",
        envoy_version(&env.bin),
        opts.workers,
        opts.rate,
        opts.reconfigure_every.as_secs_f64(),
        opts.sample_every.as_secs_f64()
    );
    let _ = writeln!(summary, "| | |\n|---|---|");
    let _ = writeln!(summary, "| duration | {:.0} s |", elapsed.as_secs_f64());
    let _ = writeln!(
        summary,
        "| requests | {} ({} allowed or denied by the module, {} without a decision) |",
        responses.len(),
        decided,
        broken
    );
    let _ = writeln!(summary, "| wrong decisions | {wrong} |");
    let _ = writeln!(summary, "| module decision counters | {module_total} |");
    let _ = writeln!(
        summary,
        "| reconfigurations | {} pushed: {} accepted ({} good, {} invalid), {} refused ({} invalid, {} good) |",
        pushes.len(),
        pushes.iter().filter(|p| p.accepted).count(),
        pushes.iter().filter(|p| p.accepted).count() - accepted_bad,
        accepted_bad,
        pushes.iter().filter(|p| !p.accepted).count(),
        refused_bad,
        refused_good
    );
    let _ = writeln!(
        summary,
        "| Wasm VMs (`wasm.wasm_vm_count`) | {} at the first sample, {} at the last, {} at most |",
        samples.first().map_or(0, |s| s.wasm_vms),
        samples.last().map_or(0, |s| s.wasm_vms),
        samples.iter().map(|s| s.wasm_vms).max().unwrap_or(0)
    );
    let _ = writeln!(summary, "| Envoy resident memory | {} |", memory.describe);
    let _ = writeln!(
        summary,
        "| result | {} |",
        if failures.is_empty() {
            "pass".to_string()
        } else {
            format!("FAIL: {}", failures.first().cloned().unwrap_or_default())
        }
    );
    if plotted {
        let _ = writeln!(summary, "\n![memory against time]({}.png)", opts.tag);
    } else {
        let _ = writeln!(
            summary,
            "\n(gnuplot not installed: no plot; `gnuplot {}.gp` makes it)",
            opts.tag
        );
    }
    if !failures.is_empty() {
        let _ = writeln!(summary, "\nFailures:\n");
        for f in &failures {
            let _ = writeln!(summary, "- {f}");
        }
        if broken > 0 || wrong > 0 {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            let _ = writeln!(summary, "\nEnvoy's log, last lines:\n\n```");
            for l in tail.iter().rev() {
                let _ = writeln!(summary, "{l}");
            }
            let _ = writeln!(summary, "```");
        }
    }
    std::fs::write(opts.out.join(format!("{}.md", opts.tag)), &summary)?;
    let _ = png;
    Ok(Report { summary, failures })
}

/// The sets that may decide a request in flight from `start` to `end`.
fn in_force_during(pushes: &[Push], start: Instant, end: Instant) -> Vec<Set> {
    // Before the first push: A. Within a push's window: its before and after sets. Between
    // windows: the last settled set.
    let mut out = Vec::new();
    let add = |out: &mut Vec<Set>, s: Set| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    // The set in force at `start`: the last push settled before it.
    let settled_before = pushes.iter().rev().find(|p| p.settled <= start);
    add(&mut out, settled_before.map_or(Set::A, |p| p.after));
    for p in pushes {
        if p.pushed <= end && p.settled >= start {
            add(&mut out, p.before);
            add(&mut out, p.after);
        }
    }
    out
}

struct Memory {
    describe: String,
    failure: Option<String>,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Flat memory: the median resident size over the last quarter of the run is within 10 % or
/// 8 MiB (whichever is larger) of the median over its second quarter (the first quarter is
/// warm-up: V8 compiles the module and the first reconfigurations allocate).
fn memory_verdict(samples: &[Sample]) -> Memory {
    let n = samples.len();
    if n < 8 {
        return Memory {
            describe: format!("{n} samples: too few to judge"),
            failure: Some(format!("only {n} memory samples (a run needs 8 or more)")),
        };
    }
    let rss: Vec<u64> = samples.iter().map(|s| s.rss_kib).collect();
    let q2 = median(rss.get(n / 4..n / 2).unwrap_or_default().to_vec());
    let q4 = median(rss.get(n - n / 4..).unwrap_or_default().to_vec());
    let max = rss.iter().copied().max().unwrap_or(0);
    let first = rss.first().copied().unwrap_or(0);
    // Least-squares slope over the second half, in MiB per hour.
    let half: Vec<&Sample> = samples.iter().skip(n / 2).collect();
    let m = half.len() as f64;
    let (sx, sy) = half
        .iter()
        .fold((0.0, 0.0), |(a, b), s| (a + s.t, b + s.rss_kib as f64));
    let (mx, my) = (sx / m, sy / m);
    let (num, den) = half.iter().fold((0.0, 0.0), |(a, b), s| {
        (
            a + (s.t - mx) * (s.rss_kib as f64 - my),
            b + (s.t - mx) * (s.t - mx),
        )
    });
    let slope = if den > 0.0 {
        num / den * 3600.0 / 1024.0
    } else {
        0.0
    };
    let allowance = (q2 / 10).max(8 * 1024);
    let mib = |k: u64| k as f64 / 1024.0;
    let describe = format!(
        "{:.1} MiB at the first sample, {:.1} MiB median of the second quarter, {:.1} MiB median of the last quarter, {:.1} MiB at most; second-half trend {:+.1} MiB/h",
        mib(first),
        mib(q2),
        mib(q4),
        mib(max),
        slope
    );
    let failure = (q4 > q2 + allowance).then(|| {
        format!(
            "Envoy's memory grew: {:.1} MiB (second quarter) to {:.1} MiB (last quarter), more than the {:.1} MiB allowed",
            mib(q2),
            mib(q4),
            mib(allowance)
        )
    });
    Memory { describe, failure }
}

fn gnuplot_script(tag: &str, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let span = if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.0} min", secs / 60.0)
    };
    format!(
        "set terminal pngcairo size 1200,800 font ',10' noenhanced\n\
         set output '{tag}.png'\n\
         set grid\n\
         set key top left\n\
         set multiplot layout 2,1\n\
         set title 'Envoy with the module, reconfigured every few seconds under load: memory ({span})'\n\
         set xlabel 'time (s)'\n\
         set ylabel 'MiB'\n\
         set yrange [0:*]\n\
         plot '{tag}.dat' using 1:2 with lines lw 2 lc rgb '#2471a3' title 'resident (VmRSS)', \\\n\
              '{tag}.dat' using 1:3 with lines lw 1 lc rgb '#c0392b' title 'allocated (server.memory_allocated)', \\\n\
              '{tag}.dat' using 1:4 with lines lw 1 dt 2 lc rgb '#7f8c8d' title 'heap (server.memory_heap_size)'\n\
         set title 'requests answered, module decisions counted, configurations accepted and refused'\n\
         set ylabel 'requests'\n\
         set y2label 'LDS updates, Wasm VMs'\n\
         set y2tics\n\
         plot '{tag}.dat' using 1:5 with lines lw 2 lc rgb '#2471a3' title 'requests sent', \\\n\
              '{tag}.dat' using 1:9 with lines lw 1 dt 2 lc rgb '#27ae60' title 'module decisions', \\\n\
              '{tag}.dat' using 1:6 with lines lw 2 lc rgb '#c0392b' title 'no decision (gaps)', \\\n\
              '{tag}.dat' using 1:7 axes x1y2 with steps lc rgb '#8e44ad' title 'LDS accepted', \\\n\
              '{tag}.dat' using 1:8 axes x1y2 with steps lc rgb '#e67e22' title 'LDS refused', \\\n\
              '{tag}.dat' using 1:10 axes x1y2 with steps lc rgb '#34495e' title 'Wasm VMs'\n\
         unset multiplot\n"
    )
}

fn envoy_version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .find(|w| {
                    w.contains('/') && w.chars().next().is_some_and(|c| c.is_ascii_hexdigit())
                })
                .and_then(|w| w.split('/').nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "(version unknown)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss_mib: u64) -> Sample {
        Sample {
            t,
            rss_kib: rss_mib * 1024,
            allocated: 0,
            heap: 0,
            requests: 0,
            broken: 0,
            accepted: 0,
            rejected: 0,
            module_decisions: 0,
            wasm_vms: 0,
        }
    }

    #[test]
    fn flat_memory_passes_and_growth_fails() {
        let flat: Vec<Sample> = (0..40u32)
            .map(|i| sample(f64::from(i), 100 + u64::from(i % 3)))
            .collect();
        assert!(memory_verdict(&flat).failure.is_none());
        // 1 MiB per sample: about 20 MiB between the quarters, above the 11.5 MiB allowed.
        let leak: Vec<Sample> = (0..40u32)
            .map(|i| sample(f64::from(i), 100 + u64::from(i)))
            .collect();
        assert!(memory_verdict(&leak).failure.is_some());
        assert!(
            memory_verdict(&flat[..5]).failure.is_some(),
            "too few samples"
        );
    }

    #[test]
    fn the_sets_in_force_follow_the_pushes() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let pushes = vec![
            // A -> B accepted, in flight from 100 ms to 300 ms.
            Push {
                set: Set::B,
                before: Set::A,
                after: Set::B,
                pushed: at(100),
                settled: at(300),
                accepted: true,
            },
            // The invalid set, refused: B stays.
            Push {
                set: Set::Bad,
                before: Set::B,
                after: Set::B,
                pushed: at(1000),
                settled: at(1100),
                accepted: false,
            },
        ];
        assert_eq!(in_force_during(&pushes, at(0), at(50)), vec![Set::A]);
        assert_eq!(
            in_force_during(&pushes, at(50), at(150)),
            vec![Set::A, Set::B]
        );
        assert_eq!(
            in_force_during(&pushes, at(200), at(250)),
            vec![Set::A, Set::B]
        );
        assert_eq!(in_force_during(&pushes, at(400), at(500)), vec![Set::B]);
        // Never the refused set, even while it was being pushed.
        assert_eq!(in_force_during(&pushes, at(1000), at(1200)), vec![Set::B]);
        // What each set decides is what the soak checks against.
        assert!(PROBES.iter().any(|p| p.allows(Set::A) != p.allows(Set::B)));
        assert!(PROBES
            .iter()
            .any(|p| p.allows(Set::Bad) != p.allows(Set::B)));
    }
}
