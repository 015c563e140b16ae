//! `istio-authz`: Istio AuthorizationPolicy for the people who write it. Reads what `kubectl`
//! prints, walks a call through ambient mesh hop by hop, finds mistakes before they apply, and
//! writes the configuration each proxy runs with. One engine: the one the proxy-wasm module
//! runs.
//!
//! Exit status: 0 allowed / no error finding; 1 denied / an error finding / an `--expect`
//! that did not hold; 2 the input could not be read or the command line is wrong.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use istio_authz::cluster::{Cluster, MeshSettings};
use istio_authz::request::HttpRequest;
use istio_authz::{lint, mesh, simulate};
use std::io::Write;
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
    /// Print the plugin configuration one waypoint or one workload's ztunnel runs with.
    Config(ConfigArgs),
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

/// Writes to standard output; a reader that went away (`| head`) ends the output quietly.
fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn simulate(args: &SimulateArgs) -> Result<ExitCode> {
    let cluster = args.cluster.read()?;
    let from = match (&args.from, &args.from_sa) {
        (Some(pod), _) => simulate::From::pod(pod)?,
        (None, Some(sa)) => simulate::From::service_account(sa)?,
        (None, None) => bail!("give --from NAMESPACE/POD or --from-sa NAMESPACE/SERVICEACCOUNT"),
    };
    let to = simulate::To::parse(&args.to)?;
    let walk = simulate::walk(&cluster, &from, &to, &args.http.request()?)?;
    match args.format {
        Format::Text => emit(&walk.text())?,
        Format::Json => emit(&format!("{}\n", walk.json()))?,
    }
    let allowed = walk.verdict() == authz_plugin::engine::Verdict::Allow;
    let ok = match args.expect {
        Some(Expect::Allow) => allowed,
        Some(Expect::Deny) => !allowed,
        None => allowed,
    };
    if let (Some(expect), false) = (args.expect, ok) {
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
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => simulate(&args),
        Command::Lint(args) => lint(&args),
        Command::Config(args) => config(&args),
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
