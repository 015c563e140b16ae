//! Resident memory with more than one worker: Envoy is deployed with several workers, and
//! what grows per worker differs between the variants (the module runs one Wasm VM, with its
//! own copy of the compiled policies, per worker; native RBAC shares one configuration).
//! At N = 1, 1,000 and 10,000 the runner starts the module, native RBAC and native-indexed
//! once more with `--concurrency 2`, one at a time, and reads `VmRSS` once each is ready;
//! the one-worker numbers are the phase's own.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::envoy::{Filter, Layer, Proc, Server};
use super::gen::{Generated, SetKind};
use super::run::{mib, per_variant, server_ip, Results};
use authz_envoy::bootstrap::Plugin;
use authz_envoy::certs::TestPki;

/// The policy counts measured with two workers.
pub const NS: [usize; 3] = [1, 1000, 10000];
/// The variants measured with two workers.
pub const VARIANTS: [&str; 3] = ["native", "native-indexed", "module"];
pub const WORKERS: usize = 2;

/// Whether a phase gets the two-worker memory runs (Layer 7 and Layer 4; the worst-case set
/// needs over a GiB per native Envoy at 10,000 policies and says nothing new about workers).
pub fn wanted(n: usize, kind: SetKind) -> bool {
    NS.contains(&n) && matches!(kind, SetKind::L7 | SetKind::L4)
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkersRow {
    pub set: SetKind,
    pub n: usize,
    pub variant: &'static str,
    pub workers: usize,
    pub startup_s: f64,
    pub vmrss_kib_ready: u64,
}

/// Starts each variant with [`WORKERS`] workers in turn and reads its resident memory.
pub fn measure(
    envoy: &Path,
    pki: &TestPki,
    work: &Path,
    module: &Path,
    g: &Generated,
    kind: SetKind,
) -> Result<Vec<WorkersRow>> {
    let n = g.description.n;
    let net = &g.description.net;
    let set = g.set(kind);
    let dir = work.join(format!("{}-{n}-workers", kind.name()));
    std::fs::create_dir_all(&dir)?;
    let port = if kind.http() {
        net.l7_port
    } else {
        net.l4_port
    };
    let layer = if kind.http() {
        Layer::Http
    } else {
        // Nothing connects: the backend only has to be an address.
        Layer::Tcp {
            backend: SocketAddr::from(([127, 0, 0, 1], 9)),
        }
    };
    let cert = pki.server(
        "bench-server",
        &["localhost", "*.default.svc.cluster.local"],
        &[std::net::IpAddr::from([127, 0, 0, 1])],
        None,
    )?;
    let module_config = serde_json::to_string(&g.plugin_config(kind))?;
    let mut rows = Vec::new();
    for variant in VARIANTS {
        let filter = match variant {
            "native" => Filter::Native(set.envoy_rbac()),
            "native-indexed" => Filter::Native(super::indexed::envoy_rbac_indexed(set)),
            _ => Filter::Module(Plugin::new(module, module_config.clone())),
        };
        let server = Server {
            name: format!("{}-{variant}", kind.name()),
            addr: SocketAddr::new(server_ip(kind, variant), port),
            layer: layer.clone(),
            filter,
            cert: cert.cert_file.clone(),
            key: cert.key_file.clone(),
            ca: pki.ca_file().to_path_buf(),
        };
        let p = Proc::start_workers(
            envoy,
            &format!("server-{variant}-w{WORKERS}"),
            &server.bootstrap(),
            &dir,
            std::time::Duration::from_secs(60 + (set.rule_count() / 500) as u64),
            WORKERS,
        )
        .with_context(|| format!("{} N={n} {variant} with {WORKERS} workers", kind.name()))?;
        let row = WorkersRow {
            set: kind,
            n,
            variant,
            workers: WORKERS,
            startup_s: p.startup.as_secs_f64(),
            vmrss_kib_ready: p.vmrss_kib()?,
        };
        eprintln!(
            "bench: {} N={n} {variant} with {WORKERS} workers: ready in {:.2} s, VmRSS {} MiB",
            kind.name(),
            row.startup_s,
            row.vmrss_kib_ready / 1024
        );
        rows.push(row);
        p.stop();
    }
    Ok(rows)
}

/// The resident-memory table: one worker (the phase's servers) against two.
pub fn table(r: &Results) -> String {
    let mut md = String::new();
    if r.workers_memory.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "\n#### Resident memory with one and with {WORKERS} workers (`--concurrency`)\n\nVmRSS once ready. One worker: the phase's servers; {WORKERS} workers: the same configuration started once more. The module runs one Wasm VM per worker (plus the main thread's), each with its own compiled policies; native RBAC's configuration is shared.\n"
    );
    let _ = writeln!(
        md,
        "| set | N | VmRSS MiB, 1 worker: native / native-indexed / module | {WORKERS} workers: native / native-indexed / module | added by the 2nd worker: native / native-indexed / module |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let mut keys: Vec<(SetKind, usize)> = r.workers_memory.iter().map(|w| (w.set, w.n)).collect();
    keys.dedup();
    for (set, n) in keys {
        let one = |v: &str| r.startup_of(set, n, v).map(|s| mib(s.vmrss_kib_ready));
        let two = |v: &str| r.workers_of(set, n, v).map(|w| mib(w.vmrss_kib_ready));
        let f = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.1}"));
        let d = |v: &str| match (one(v), two(v)) {
            (Some(a), Some(b)) => format!("{:+.1}", b - a),
            _ => "–".into(),
        };
        let variants = ["native", "native-indexed", "module"];
        let _ = writeln!(
            md,
            "| {} | {n} | {} | {} | {} |",
            set.name(),
            per_variant(&variants, |v| f(one(v))),
            per_variant(&variants, |v| f(two(v))),
            per_variant(&variants, d),
        );
    }
    md
}
