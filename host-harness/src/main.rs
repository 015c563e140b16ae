//! `authz-harness`: replay fixtures and explain decisions, pack the module, run the benchmark
//! and the soak (docs/cli.md).

// First: its macros are in scope in the modules declared after it.
#[macro_use]
mod stdout;
mod check;
mod normalize;
mod replay;

use anyhow::{Context, Result};
use authz_bench::run::Options as BenchOptions;
use authz_bench::soak::Options as SoakOptions;
use authz_bench::{Description, Generated, SetKind};
use authz_oci::{layout, module, time::Timestamp};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Istio AuthorizationPolicy decisions from the native engine, the proxy-wasm module in
/// Wasmtime, and Envoy; the module's OCI image; the benchmark and the soak.
#[derive(Parser)]
#[command(name = "authz-harness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay fixtures through the native engine, the module in Wasmtime and optionally Envoy.
    ///
    /// Runs every case of every fixture through each implementation, prints one line per
    /// failing or skipped case and a last line `N passed, M failed` (`, K skipped` when cases
    /// were skipped); exits 0 only when every case passed.
    Replay(ReplayArgs),
    /// Explain one connection or request.
    ///
    /// Prints the decision, the policy and rule that decided, and for a deny the ALLOW rule
    /// that came closest and what failed; the request's path is first normalised as Envoy
    /// does before any filter.
    Check(CheckArgs),
    /// Turn AuthorizationPolicy files into a WasmPlugin, EnvoyExtensionPolicy or Envoy filter.
    ///
    /// Writes to standard output a ready manifest whose plugin configuration the module
    /// accepts; every kind fails closed.
    Render(Box<authz_render::RenderArgs>),
    /// Pack the module as the OCI image Istio and Envoy Gateway pull.
    ///
    /// Writes a byte-reproducible OCI image layout (one image manifest, one tar+gzip layer
    /// holding plugin.wasm) and prints the manifest digest (sha256 for oci:// URLs) and the
    /// module digest (sha256 for http(s):// URLs).
    OciLayout(OciLayoutArgs),
    /// Write generated policy sets for the benchmark.
    ///
    /// Writes N generated AuthorizationPolicies in three forms (the module's plugin
    /// configuration, the Envoy RBAC filter istiod would generate, and the same policies as a
    /// hand-indexed unified matcher) for each set (l7:
    /// waypoint ALLOW policies attached to one Service; l4: ztunnel ALLOW policies attached by
    /// selector; l4worst: root-namespace DENY policies of 10 rules), with sample traffic and
    /// the expected decisions.
    BenchGen(BenchGenArgs),
    /// Run the module against Envoy's native RBAC (BENCHMARKS.md).
    ///
    /// Runs Envoy with the module against Envoy with the equivalent native RBAC on loopback:
    /// the configuration istiod would generate (native) and the same policies as a
    /// hand-indexed unified matcher (native-indexed); at N = 1, 1000 and 10000 also the
    /// resident memory of all three with two workers. Writes DIR/TAG.json, DIR/TAG.md and
    /// gnuplot files. Exits 1 when the module and the native variants disagreed on a decision.
    BenchRun(BenchRunArgs),
    /// Run Envoy with the module under load while its configuration changes.
    ///
    /// Envoy with the module (waypoint, HTTP filter, FAIL_CLOSED) on loopback under a bounded
    /// load of mTLS requests, reconfigured through LDS every few seconds, alternating two
    /// policy sets with a configuration the module must refuse. Checks every response, the
    /// module's counters, and that Envoy's resident memory stays flat. Writes
    /// DIR/TAG.{dat,gp,md} (and TAG.png with gnuplot).
    Soak(SoakArgs),
}

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Text for a person.
    Text,
    /// One JSON object per case.
    Json,
}

// A flag given twice takes the last value, as scripts rely on (bench/run.sh).
#[derive(Args)]
#[command(args_override_self = true)]
struct ReplayArgs {
    /// The module [default: dist/authz_plugin.wasm, what build.sh writes, looked up in the
    /// working directory and next to the binary's target/]
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
    /// The native engine only (no module needed).
    #[arg(long)]
    native_only: bool,
    /// Also replay through a real Envoy on loopback with the module loaded.
    #[arg(long)]
    envoy: bool,
    /// The Envoy binary [default: $ENVOY_BIN, else the one scripts/install-envoy.sh installs]
    #[arg(long, value_name = "FILE")]
    envoy_bin: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Fixture files; a directory stands for every fixture file under it.
    #[arg(value_name = "FIXTURE", required = true)]
    paths: Vec<PathBuf>,
}

// A flag given twice takes the last value, as scripts rely on (bench/run.sh).
#[derive(Args)]
#[command(args_override_self = true)]
struct CheckArgs {
    /// The plugin configuration (YAML or JSON, docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Appends the AuthorizationPolicy documents of FILE to the configuration's policies.
    #[arg(long = "policy-file", value_name = "FILE")]
    policy_files: Vec<PathBuf>,
    /// One case (docs/fixtures.md#case-keys); `expect` is optional.
    #[arg(long, value_name = "CASE.yaml")]
    case: PathBuf,
    /// Also load the module in Wasmtime, drive it as Envoy does, and print its answer.
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
    /// The native engine only: what check does without --wasm. Accepted, as replay accepts
    /// it, so that one set of flags serves both commands.
    #[arg(long)]
    native_only: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

// A flag given twice takes the last value, as scripts rely on (bench/run.sh).
#[derive(Args)]
#[command(args_override_self = true)]
struct OciLayoutArgs {
    /// The module.
    #[arg(long, value_name = "FILE")]
    wasm: PathBuf,
    /// The layout's directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also write a tarball of the layout (an oci-archive).
    #[arg(long, value_name = "FILE")]
    tar: Option<PathBuf>,
    /// The tag in index.json [default: the version]
    #[arg(long)]
    tag: Option<String>,
    /// org.opencontainers.image.source [default: the project's repository]
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// org.opencontainers.image.revision: the git commit [default: unknown]
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    /// org.opencontainers.image.version [default: the crate version]
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// The image's creation time, also the tar entries' mtime (RFC 3339 or @EPOCH) [default:
    /// $SOURCE_DATE_EPOCH, else 1970-01-01T00:00:00Z]; use the commit time for releases.
    #[arg(long, value_name = "RFC3339", value_parser = Timestamp::parse)]
    created: Option<Timestamp>,
    /// Skip checking that the module loads in Wasmtime with the proxy-wasm surface.
    #[arg(long)]
    no_load_check: bool,
}

// A flag given twice takes the last value, as scripts rely on (bench/run.sh).
#[derive(Args)]
#[command(args_override_self = true)]
struct BenchGenArgs {
    /// How many policies (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    n: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The directory written: <set>-plugin.json, <set>-rbac.json, <set>-rbac-indexed.json
    /// (native-indexed), samples.json, description.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The port the Layer 4 listeners use [default: 19081]
    #[arg(long = "l4-port", value_name = "P")]
    l4_port: Option<u16>,
    /// With N = 1, generate the l7 set too instead of using the seeds' waypoint policy
    /// (policies/bookinfo/productpage-waypoint.yaml).
    #[arg(long)]
    no_seeds: bool,
}

/// Comma-separated policy counts (`1,100,10_000`).
#[derive(Clone)]
struct Counts(Vec<usize>);

fn counts(s: &str) -> Result<Counts, String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.replace('_', "")
                .parse::<usize>()
                .map_err(|_| format!("bad value {x:?}"))
        })
        .collect::<Result<_, _>>()
        .map(Counts)
}

/// Comma-separated policy sets (`l7,l4`).
#[derive(Clone)]
struct Sets(Vec<SetKind>);

fn sets(s: &str) -> Result<Sets, String> {
    s.split(',')
        .map(|x| SetKind::parse(x).ok_or_else(|| format!("unknown set {x:?}")))
        .collect::<Result<_, _>>()
        .map(Sets)
}

// A flag given twice takes the last value, as scripts rely on (bench/run.sh).
#[derive(Args)]
#[command(args_override_self = true)]
struct BenchRunArgs {
    /// N = 1,100,10000 (the worst-case set up to 1000), 1 round of 1 s, 1 s warm-up.
    #[arg(long)]
    quick: bool,
    /// Policy counts [default: 1,10,100,1000,10000]
    #[arg(long, value_name = "N,N,...", value_parser = counts)]
    n: Option<Counts>,
    /// Policy sets [default: all]
    #[arg(long, value_name = "l7,l7exact,l4,l4worst", value_parser = sets)]
    sets: Option<Sets>,
    /// Rounds [default: 3]
    #[arg(long, value_name = "R")]
    rounds: Option<usize>,
    /// Seconds per load run [default: 5]
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Warm-up seconds [default: 1]
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<u64>,
    /// wrk connections [default: 4]
    #[arg(long, value_name = "C")]
    connections: Option<usize>,
    /// The generator's seed [default: 1]
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// The results directory [default: bench/results]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The results' name [default: run]
    #[arg(long)]
    tag: Option<String>,
    /// The module [default: $AUTHZ_WASM, else the wasm profile's build, else dist/]
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
    /// The Envoy binary [default: $ENVOY_BIN, else scripts/install-envoy.sh's]
    #[arg(long, value_name = "FILE")]
    envoy_bin: Option<PathBuf>,
    /// Skip the memory footprint (linear memory and the two-worker runs).
    #[arg(long)]
    no_memory: bool,
    /// Skip the Envoy phases: configure time, memory and native decide time only.
    #[arg(long)]
    no_load: bool,
    /// The largest N for the worst-case set [default: 1000 with --quick]
    #[arg(long, value_name = "N")]
    worst_max: Option<usize>,
    /// Keep the work files.
    #[arg(long)]
    keep: bool,
}

/// A positive number of seconds.
fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if !(v > 0.0 && v.is_finite()) {
        return Err("must be positive".into());
    }
    Ok(Duration::from_secs_f64(v))
}

// A flag given twice takes the last value, as scripts rely on (bench/run.sh).
#[derive(Args)]
#[command(args_override_self = true)]
struct SoakArgs {
    /// How long [default: 60]
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    duration: Option<Duration>,
    /// Seconds between configuration pushes [default: 3]
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    reconfigure_every: Option<Duration>,
    /// Seconds between memory samples [default: 2]
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    sample_every: Option<Duration>,
    /// Requests per second over all workers [default: 40]
    #[arg(long, value_name = "REQUESTS_PER_SECOND", value_parser = clap::value_parser!(u32).range(1..))]
    rate: Option<u32>,
    /// Client threads [default: 2]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    workers: Option<u64>,
    /// The results directory [default: bench/results]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The results' name [default: soak]
    #[arg(long)]
    tag: Option<String>,
    /// The Envoy binary [default: $ENVOY_BIN, else scripts/install-envoy.sh's]
    #[arg(long, value_name = "FILE")]
    envoy_bin: Option<PathBuf>,
    /// The module [default: $AUTHZ_WASM, else the wasm profile's build, else dist/]
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authz-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Render(flags) => render(&flags),
        Command::OciLayout(args) => oci_layout(&args),
        Command::BenchGen(args) => bench_gen(&args),
        Command::BenchRun(args) => bench_run(args),
        Command::Soak(args) => soak(args),
    }
}

fn render(flags: &authz_render::RenderArgs) -> Result<ExitCode> {
    let opts = authz_render::Options::from_flags(flags, render_args())?;
    let base = std::env::current_dir().context("the working directory")?;
    let text = authz_render::render(&opts, &base)?;
    out!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The flags after `render` as given, which the manifest's header records.
fn render_args() -> Vec<String> {
    std::env::args()
        .skip_while(|a| a != "render")
        .skip(1)
        .collect()
}

fn oci_layout(a: &OciLayoutArgs) -> Result<ExitCode> {
    let mut o = layout::ReleaseOptions::default();
    if let Some(v) = &a.source {
        o.source = v.clone();
    }
    if let Some(v) = &a.revision {
        o.revision = v.clone();
    }
    if let Some(v) = &a.version {
        o.version = v.clone();
    }
    if let Some(v) = a.created {
        o.created = v;
    }
    o.tag = a.tag.clone().unwrap_or_else(|| o.version.clone());
    let wasm = std::fs::read(&a.wasm).with_context(|| format!("reading {}", a.wasm.display()))?;
    if !a.no_load_check {
        let info = module::inspect(&wasm).with_context(|| format!("{}", a.wasm.display()))?;
        outln!("module loads in Wasmtime: {info}");
    }
    let release = layout::write_release(&wasm, &a.out, &o)?;
    outln!("layout:   {} (tag {})", a.out.display(), release.tag);
    if let Some(tar) = &a.tar {
        layout::write_layout_tar(&a.out, tar, o.created.epoch())?;
        outln!(
            "tarball:  {} (oci-archive:{}:{})",
            tar.display(),
            tar.display(),
            release.tag
        );
    }
    outln!("created:  {}", o.created);
    outln!(
        "manifest: {}  <- WasmPlugin.spec.sha256 / EnvoyExtensionPolicy image.sha256 for oci:// URLs",
        release.manifest_digest
    );
    outln!(
        "module:   {}  <- sha256 for http(s):// URLs ({} bytes)",
        release.module_digest,
        wasm.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench_gen(a: &BenchGenArgs) -> Result<ExitCode> {
    let n = usize::try_from(a.n).context("--n")?;
    let mut d = Description::new(n, a.seed);
    d.seeds_at_one = !a.no_seeds;
    if let Some(p) = a.l4_port {
        d.net.l4_port = p;
    }
    let g = Generated::new(&d);
    let files = g.write(&a.out)?;
    for kind in SetKind::ALL {
        let set = g.set(kind);
        let samples = g.samples_of(kind).count();
        outln!(
            "{}: {} policies, {} Envoy RBAC policies (rules), {samples} samples",
            kind.name(),
            set.policies.len(),
            set.rule_count()
        );
    }
    outln!("wrote {} files to {}", files.len(), a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn bench_run(a: BenchRunArgs) -> Result<ExitCode> {
    let mut o = BenchOptions::new(a.quick);
    if let Some(Counts(ns)) = a.n {
        o.ns = ns;
    }
    if let Some(Sets(sets)) = a.sets {
        o.sets = sets;
    }
    o.rounds = a.rounds.unwrap_or(o.rounds);
    o.duration_s = a.duration.unwrap_or(o.duration_s);
    o.warmup_s = a.warmup.unwrap_or(o.warmup_s);
    o.connections = a.connections.unwrap_or(o.connections);
    o.seed = a.seed.unwrap_or(o.seed);
    o.out = a.out.unwrap_or(o.out);
    o.tag = a.tag.unwrap_or(o.tag);
    o.wasm = a.wasm.unwrap_or(o.wasm);
    o.envoy = a.envoy_bin.unwrap_or(o.envoy);
    o.memory = !a.no_memory;
    o.no_load = a.no_load;
    o.worst_max = a.worst_max.or(o.worst_max);
    o.keep = a.keep;
    authz_bench::run::run(o, &|text| outln!("{text}"))
}

fn soak(a: SoakArgs) -> Result<ExitCode> {
    let d = SoakOptions::default();
    let opts = SoakOptions {
        duration: a.duration.unwrap_or(d.duration),
        reconfigure_every: a.reconfigure_every.unwrap_or(d.reconfigure_every),
        sample_every: a.sample_every.unwrap_or(d.sample_every),
        rate: a.rate.unwrap_or(d.rate),
        workers: match a.workers {
            Some(w) => usize::try_from(w).context("--workers")?,
            None => d.workers,
        },
        out: a.out.unwrap_or(d.out),
        tag: a.tag.unwrap_or(d.tag),
        envoy_bin: a.envoy_bin.or(d.envoy_bin),
        wasm: a.wasm.or(d.wasm),
    };
    let report = authz_bench::soak::run(&opts)?;
    out!("{}", report.summary);
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
