//! `istio-authz`: Istio AuthorizationPolicy for the people who write it. Reads what `kubectl`
//! prints, walks a call through ambient mesh hop by hop, finds mistakes before they apply, and
//! writes the configuration each proxy runs with. One engine: the one the proxy-wasm module
//! runs.
//!
//! Exit status: 0 allowed / no error finding; 1 denied / an error finding / an `--expect`
//! that did not hold; 2 the input could not be read or the command line is wrong.

mod commands;

use anyhow::{anyhow, bail, Context, Result};
use authz_plugin::engine::Verdict;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use commands::emit;
use istio_authz::cluster::{Cluster, MeshSettings};
use istio_authz::request::HttpRequest;
use istio_authz::{lint, mesh, simulate};
use std::path::PathBuf;
use std::process::ExitCode;

/// `--method`, `--path`, `--host`, `--header`, `--jwt`: any of them makes the call an HTTP
/// request; none makes it a TCP connection.
#[derive(Debug, Clone, Default, Args)]
struct HttpArgs {
    /// The request method (default GET when any other HTTP flag is given).
    #[arg(long)]
    method: Option<String>,
    /// The `:path`, query included (default `/`).
    #[arg(long)]
    path: Option<String>,
    /// The `:authority` (default: the destination as dialled, with its port).
    #[arg(long)]
    host: Option<String>,
    /// A request header, `NAME=VALUE`; repeat for several; a name given twice is a header with
    /// two values.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// A file holding the verified JWT payload (JSON or YAML), as Envoy's jwt_authn filter
    /// leaves it after verifying the token.
    #[arg(long, value_name = "FILE")]
    jwt: Option<PathBuf>,
}

impl HttpArgs {
    fn request(&self) -> Result<HttpRequest> {
        let mut headers = Vec::new();
        for h in &self.headers {
            let (name, value) = h
                .split_once('=')
                .ok_or_else(|| anyhow!("--header {h:?}: write NAME=VALUE"))?;
            headers.push((name.to_string(), value.to_string()));
        }
        let jwt = match &self.jwt {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let value: serde_json::Value =
                    serde_norway::from_str(&text).with_context(|| {
                        format!("{}: not a JSON or YAML JWT payload", file.display())
                    })?;
                Some(value)
            }
            None => None,
        };
        Ok(HttpRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            host: self.host.clone(),
            headers,
            jwt,
        })
    }
}

#[derive(Parser)]
#[command(
    name = "istio-authz",
    version,
    about = "Istio AuthorizationPolicy, decided exactly as ambient mesh decides it",
    long_about = "Istio AuthorizationPolicy, decided exactly as ambient mesh decides it.\n\n\
        Start from what is in the cluster:\n  \
        kubectl get namespaces,pods,services,serviceentries,gateways.gateway.networking.k8s.io,authorizationpolicies -A -o yaml > cluster.yaml\n\n\
        Exit status: 0 allowed (or no error found), 1 denied (or an error found, or --expect \
        did not hold), 2 bad input or usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Walk one call the way ambient routes it and show every hop's decision.
    Simulate(SimulateArgs),
    /// Find policies that will not do what they say, before they are applied.
    Lint(LintArgs),
    /// Explain one connection or request (or a list of them) at one proxy: its plugin
    /// configuration (--config), or a cluster (--cluster, as simulate).
    Check(CheckArgs),
    /// Replay your fixture files (cases with expectations) through the engine.
    Test(TestArgs),
    /// Print the plugin configuration one waypoint or one workload's ztunnel runs with.
    Config(ConfigArgs),
    /// Write the WasmPlugin, EnvoyExtensionPolicy or Envoy filter that deploys the module with
    /// these policies (docs/cli.md#render).
    Render(Box<authz_render::RenderArgs>),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where the cluster comes from.
#[derive(Args)]
struct ClusterArgs {
    /// Files of Kubernetes objects (`kubectl get … -A -o yaml`, several YAML documents, or
    /// policy files); `-` reads standard input. A later file's object replaces an earlier one
    /// of the same kind, namespace and name, as `kubectl apply` would.
    #[arg(long = "cluster", short = 'c', value_name = "FILE", num_args = 1.., required = true)]
    files: Vec<String>,
    /// The mesh's root namespace (mesh config `rootNamespace`).
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,
    /// The mesh's trust domain (mesh config `trustDomain`).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// A trust domain alias (mesh config `trustDomainAliases`); repeat for several.
    #[arg(long = "trust-domain-alias", value_name = "DOMAIN")]
    trust_domain_aliases: Vec<String>,
}

impl ClusterArgs {
    fn read(&self) -> Result<Cluster> {
        if self.trust_domain.is_empty() {
            bail!("--trust-domain: an empty trust domain would make every principal match nothing");
        }
        if self.root_namespace.is_empty() {
            bail!("--root-namespace: the root namespace cannot be empty");
        }
        Cluster::read(
            &self.files,
            MeshSettings {
                root_namespace: self.root_namespace.clone(),
                trust_domain: self.trust_domain.clone(),
                trust_domain_aliases: self.trust_domain_aliases.clone(),
            },
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Expect {
    Allow,
    Deny,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("caller").required(true).args(["from", "from_sa"])))]
struct SimulateArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The calling pod, NAMESPACE/POD.
    #[arg(long, value_name = "NAMESPACE/POD")]
    from: Option<String>,
    /// The calling identity without a pod, NAMESPACE/SERVICEACCOUNT.
    #[arg(long = "from-sa", value_name = "NAMESPACE/SERVICEACCOUNT")]
    from_sa: Option<String>,
    /// The callee: a service, SERVICE[.NAMESPACE][:PORT] (resolved from the caller's
    /// namespace as DNS would), or a pod addressed directly, NAMESPACE/POD[:PORT].
    #[arg(long, value_name = "TARGET")]
    to: String,
    #[command(flatten)]
    http: HttpArgs,
    /// Exit 1 unless the call is decided this way (for CI).
    #[arg(long, value_enum)]
    expect: Option<Expect>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "cluster"])))]
struct CheckArgs {
    /// A plugin configuration (YAML or JSON, `-` for standard input): one proxy.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// AuthorizationPolicy files appended to the configuration's policies.
    #[arg(long = "policy-file", value_name = "FILE", requires = "config")]
    policy_files: Vec<PathBuf>,
    /// Case files: one case, a list of cases, or a mapping with `cases:` (the fixture format's
    /// case; `expect` is optional and checked when given).
    #[arg(long = "case", value_name = "FILE", requires = "config")]
    cases: Vec<PathBuf>,
    /// Cluster files instead of a configuration: the call is walked through every hop as
    /// `simulate` does.
    #[arg(long = "cluster", value_name = "FILE", num_args = 1..)]
    cluster: Vec<String>,
    /// With --config: the client's identity (spiffe://TD/ns/NS/sa/SA, TD/ns/NS/sa/SA or NS/SA;
    /// absent: no client certificate). With --cluster: the calling pod, NAMESPACE/POD.
    #[arg(long, value_name = "IDENTITY")]
    from: Option<String>,
    /// With --cluster: the calling identity without a pod, NAMESPACE/SERVICEACCOUNT.
    #[arg(
        long = "from-sa",
        value_name = "NAMESPACE/SERVICEACCOUNT",
        requires = "cluster"
    )]
    from_sa: Option<String>,
    /// With --config: the client's address.
    #[arg(long = "source-address", value_name = "IP", requires = "config")]
    source_address: Option<std::net::IpAddr>,
    /// With --config: the destination, ADDRESS[:PORT] or :PORT. With --cluster: a service
    /// SERVICE[.NAMESPACE][:PORT] or a pod NAMESPACE/POD[:PORT].
    #[arg(long, value_name = "TARGET")]
    to: Option<String>,
    /// With --config: the TLS SNI.
    #[arg(long, requires = "config")]
    sni: Option<String>,
    #[command(flatten)]
    http: HttpArgs,
    #[arg(
        long = "root-namespace",
        default_value = "istio-system",
        requires = "cluster"
    )]
    root_namespace: String,
    #[arg(
        long = "trust-domain",
        default_value = "cluster.local",
        requires = "cluster"
    )]
    trust_domain: String,
    /// Exit 1 unless every case is decided this way (for CI).
    #[arg(long, value_enum)]
    expect: Option<Expect>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct TestArgs {
    /// Fixture files, or directories holding them.
    #[arg(required = true, value_name = "FIXTURE")]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
struct LintArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("proxy").required(true).args(["waypoint", "workload"])))]
struct ConfigArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A waypoint Gateway, NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    waypoint: Option<String>,
    /// A pod, NAMESPACE/POD: the configuration of the ztunnel in front of it.
    #[arg(long, value_name = "NAMESPACE/POD")]
    workload: Option<String>,
}

fn simulate(args: &SimulateArgs) -> Result<ExitCode> {
    let cluster = args.cluster.read()?;
    walk_and_report(
        &cluster,
        args.from.as_deref(),
        args.from_sa.as_deref(),
        &args.to,
        &args.http.request()?,
        args.expect,
        args.format,
    )
}

fn walk_and_report(
    cluster: &Cluster,
    from_pod: Option<&str>,
    from_sa: Option<&str>,
    to: &str,
    http: &HttpRequest,
    expect: Option<Expect>,
    format: Format,
) -> Result<ExitCode> {
    let from = match (from_pod, from_sa) {
        (Some(pod), _) => simulate::From::pod(pod)?,
        (None, Some(sa)) => simulate::From::service_account(sa)?,
        (None, None) => bail!("give --from NAMESPACE/POD or --from-sa NAMESPACE/SERVICEACCOUNT"),
    };
    let to = simulate::To::parse(to)?;
    let walk = simulate::walk(cluster, &from, &to, http)?;
    match format {
        Format::Text => emit(&walk.text())?,
        Format::Json => emit(&format!("{}\n", walk.json()))?,
    }
    let allowed = walk.verdict() == Verdict::Allow;
    let ok = match expect {
        Some(Expect::Allow) => allowed,
        Some(Expect::Deny) => !allowed,
        None => allowed,
    };
    if let (Some(expect), false) = (expect, ok) {
        eprintln!(
            "istio-authz: expected {}, decided {}",
            if expect == Expect::Allow {
                "allow"
            } else {
                "deny"
            },
            walk.verdict()
        );
    }
    Ok(exit(ok))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn check(args: &CheckArgs) -> Result<ExitCode> {
    let http = args.http.request()?;
    let expect = args.expect.map(|e| match e {
        Expect::Allow => Verdict::Allow,
        Expect::Deny => Verdict::Deny,
    });
    let Some(config) = &args.config else {
        let cluster = ClusterArgs {
            files: args.cluster.clone(),
            root_namespace: args.root_namespace.clone(),
            trust_domain: args.trust_domain.clone(),
            trust_domain_aliases: Vec::new(),
        }
        .read()?;
        let to = args
            .to
            .as_deref()
            .ok_or_else(|| anyhow!("check --cluster needs --to"))?;
        return walk_and_report(
            &cluster,
            args.from.as_deref(),
            args.from_sa.as_deref(),
            to,
            &http,
            args.expect,
            args.format,
        );
    };
    let input = commands::check::CheckInput {
        config: config.clone(),
        policy_files: args.policy_files.clone(),
        cases: args.cases.clone(),
        inline: commands::check::Inline {
            from: args.from.clone(),
            source_address: args.source_address,
            to: args.to.clone(),
            sni: args.sni.clone(),
            http,
        },
    };
    let (checked, notes) = commands::check::run(&input)?;
    let ok = commands::check::report(&checked, &notes, args.format == Format::Json, expect)?;
    Ok(exit(ok))
}

fn lint(args: &LintArgs) -> Result<ExitCode> {
    let cluster = args.cluster.read()?;
    let findings = lint::lint(&cluster);
    let errors = findings
        .iter()
        .filter(|f| f.severity == lint::Severity::Error)
        .count();
    match args.format {
        Format::Text => {
            let mut text = String::new();
            for f in &findings {
                text.push_str(&format!("{f}\n"));
            }
            text.push_str(&format!(
                "{} error(s), {} warning(s)\n",
                errors,
                findings.len() - errors
            ));
            emit(&text)?;
        }
        Format::Json => emit(&format!(
            "{}\n",
            serde_json::json!({
                "errors": errors,
                "warnings": findings.len() - errors,
                "findings": findings.iter().map(lint::Finding::json).collect::<Vec<_>>(),
            })
        ))?,
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn split_key<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str)> {
    text.split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| anyhow!("{flag} {text:?}: write NAMESPACE/NAME"))
}

fn config(args: &ConfigArgs) -> Result<ExitCode> {
    let cluster = args.cluster.read()?;
    let mesh = mesh::Mesh::new(&cluster);
    let config = match (&args.waypoint, &args.workload) {
        (Some(w), _) => {
            let (ns, name) = split_key("--waypoint", w)?;
            let gateway = cluster
                .gateways()
                .find(|g| g.0.namespace == ns && g.0.name == name && g.is_waypoint())
                .ok_or_else(|| anyhow!("--waypoint {w}: no Gateway of class istio-waypoint {ns}/{name} in the cluster files"))?;
            let pod = cluster.pods().find(|p| {
                p.0.namespace == ns
                    && p.0.label("gateway.networking.k8s.io/gateway-name") == Some(name)
            });
            mesh.waypoint_config(&mesh::Waypoint { gateway, pod })
        }
        (None, Some(w)) => {
            let (ns, name) = split_key("--workload", w)?;
            let pod = cluster
                .pod(ns, name)
                .ok_or_else(|| anyhow!("--workload {w}: no such pod in the cluster files"))?;
            mesh.ztunnel_config(pod)
        }
        (None, None) => bail!("give --waypoint NAMESPACE/NAME or --workload NAMESPACE/POD"),
    };
    // The configuration must load as the module would load it.
    mesh::engine(&cluster, &config)?;
    emit(&format!("{}\n", serde_json::to_string_pretty(&config)?))?;
    Ok(ExitCode::SUCCESS)
}

fn render(flags: &authz_render::RenderArgs) -> Result<ExitCode> {
    // The flags as given, which the manifest's header records.
    let args: Vec<String> = std::env::args()
        .skip_while(|a| a != "render")
        .skip(1)
        .collect();
    let opts = authz_render::Options::from_flags(flags, args)?;
    let base = std::env::current_dir().context("the working directory")?;
    let text = authz_render::render(&opts, &base)?;
    // What the manifest's header says in comments, said where a person looks.
    if opts.mode == authz_render::Mode::Ztunnel {
        eprintln!(
            "istio-authz: warning: --mode ztunnel renders a NETWORK filter for an Envoy that terminates the client's mTLS itself (a sidecar or a plain Envoy). In ambient mesh the destination ztunnel runs no Wasm: these Layer 4 policies are enforced only where such an Envoy fronts the workload."
        );
    }
    let config = authz_render::plugin_config(&opts, &base)?;
    for note in authz_render::validate(&config)? {
        eprintln!("istio-authz: note: {note}");
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => simulate(&args),
        Command::Lint(args) => lint(&args),
        Command::Check(args) => check(&args),
        Command::Test(args) => Ok(exit(commands::test::run(
            &args.paths,
            args.format == Format::Json,
        )?)),
        Command::Config(args) => config(&args),
        Command::Render(flags) => render(&flags),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "istio-authz", &mut buf);
            emit(&String::from_utf8_lossy(&buf))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("istio-authz: {e:#}");
            ExitCode::from(2)
        }
    }
}
