//! `authz-harness render`: AuthorizationPolicy files → a ready `WasmPlugin`,
//! `EnvoyExtensionPolicy` or Envoy filter, whose plugin configuration (docs/configuration.md) the
//! module's own parser has accepted. Users should not write `pluginConfig` by hand.
//!
//! Defaults:
//! - `--kind WasmPlugin --mode waypoint`: `type: HTTP`, `phase: AUTHZ` (after Istio authn,
//!   before Istio RBAC), `targetRefs: [Gateway <waypoint>]` (or `--target-kind`/`--target`),
//!   in the waypoint's namespace. `--filter network` makes it `type: NETWORK` (the waypoint's
//!   TCP chains).
//! - `--kind WasmPlugin --mode ztunnel`: `type: NETWORK`, `phase: AUTHZ`, `selector` = the
//!   workload's labels, `match: [{mode: SERVER}]`: the Layer 4 (ztunnel) policies enforced by
//!   the Envoy in front of the workload (ztunnel itself runs no Wasm).
//! - `--kind EnvoyExtensionPolicy` (waypoint mode only: Envoy Gateway builds HTTP Wasm filters
//!   only): `targetRefs: [Gateway <waypoint>]`, `code.type: Image`, `failOpen: false`.
//! - `--service NS/NAME[:HOST,...]`: a service the waypoint fronts, matched by
//!   `NAME.NS.svc.cluster.local`, its short forms and the extra HOSTs (`:authority`).
//! - `--kind envoy-filter`: the `envoy.filters.{http,network}.wasm` entry for a static Envoy
//!   configuration (`code.local.filename` = `--wasm-path`), `failure_policy: FAIL_CLOSED`.
//! - Every kind fails closed: `failStrategy: FAIL_CLOSE` / `failOpen: false` /
//!   `failure_policy: FAIL_CLOSED`. A fetch failure then installs Istio's deny-all RBAC filter.
//! - `--image` defaults to `oci://ghcr.io/istio-authz-wasm/authz-plugin:<version>`; `--sha256`
//!   is the **image manifest** digest for `oci://` and the module's for `http(s)://`.
//!
//! The output starts with a comment holding the exact command; [`recorded_args`] reads it
//! back, so a generated file can be checked and regenerated.

use anyhow::{anyhow, bail, Context, Result};
use serde_norway::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Whether `s` is 64 lower-case hex characters (the CRDs' `^[a-f0-9]{64}$`).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The default image repository (the project's GitHub organisation on ghcr.io).
pub const DEFAULT_REPOSITORY: &str = "ghcr.io/istio-authz-wasm/authz-plugin";
/// Envoy `root_id` / `PluginConfig.name` / `WasmPlugin.pluginName` / EG `rootID`.
pub const PLUGIN_NAME: &str = "istio-authz";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WasmPlugin,
    EnvoyExtensionPolicy,
    EnvoyFilter,
}

/// The enforcement point the manifest is for: the engine's own.
pub use authz_plugin::engine::Mode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// Extra `:authority` names (besides NAME.NS.svc.cluster.local and the short forms).
    pub hosts: Vec<String>,
    /// The addresses clients dial for it (ClusterIP, ServiceEntry addresses): what chooses
    /// the service in the module, as the destination address chooses a waypoint's filter
    /// chain (istio/istio pilot/pkg/networking/core/listener_waypoint.go).
    pub addresses: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub labels: Vec<(String, String)>,
}

/// Parsed `render` arguments.
#[derive(Debug, Clone)]
pub struct Options {
    /// The arguments as given (recorded in the output's header).
    pub args: Vec<String>,
    pub kind: Kind,
    pub mode: Mode,
    pub services: Vec<Service>,
    pub workloads: Vec<Workload>,
    pub waypoint: Option<(String, String)>,
    pub gateway_class: Option<String>,
    pub policy_files: Vec<PathBuf>,
    pub image: Option<String>,
    pub sha256: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub target_kind: Option<String>,
    pub targets: Vec<String>,
    pub filter: Option<String>,
    pub wasm_path: String,
    pub trust_domain: Option<String>,
    pub root_namespace: Option<String>,
}

fn ns_name(s: &str, flag: &str) -> Result<(String, String)> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => bail!("{flag} takes NAMESPACE/NAME, not {s:?}"),
    }
}

/// The `render` flags, shared by `istio-authz render` and `authz-harness render`.
/// A flag given twice takes the last value, as it always did.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(args_override_self = true)]
pub struct Flags {
    /// The manifest: an Istio WasmPlugin, an Envoy Gateway EnvoyExtensionPolicy, or an Envoy
    /// filter entry for a static configuration.
    #[arg(long, value_name = "WasmPlugin|EnvoyExtensionPolicy|envoy-filter")]
    pub kind: Option<String>,
    /// The enforcement point: ztunnel (Layer 4, a network filter) or waypoint (Layer 7).
    #[arg(long, value_name = "ztunnel|waypoint")]
    pub mode: Option<String>,
    /// A service the waypoint fronts, matched by NAME.NS.svc.cluster.local, its short forms
    /// and the extra HOSTs; repeat for several.
    #[arg(long = "service", value_name = "NS/NAME[:HOST,...]")]
    pub services: Vec<String>,
    /// The addresses of the --service before it (its ClusterIP or ServiceEntry addresses).
    #[arg(long = "service-address", value_name = "ADDR[,ADDR]")]
    pub service_addresses: Vec<String>,
    /// The destination workload (ztunnel mode) and its pod labels; repeat for several.
    #[arg(long = "workload", value_name = "NS/NAME[:label=value,...]")]
    pub workloads: Vec<String>,
    /// The waypoint (waypoint mode).
    #[arg(long, value_name = "NS/NAME")]
    pub waypoint: Option<String>,
    /// The waypoint's GatewayClass.
    #[arg(long, value_name = "NAME")]
    pub gateway_class: Option<String>,
    /// AuthorizationPolicy files; at least one.
    #[arg(long = "policy-file", value_name = "FILE")]
    pub policy_files: Vec<PathBuf>,
    /// Where the module is pulled from [default: oci://ghcr.io/istio-authz-wasm/authz-plugin:VERSION]
    #[arg(long, value_name = "oci://REF | https://URL")]
    pub image: Option<String>,
    /// The image manifest's digest for oci://, the module's for http(s):// (64 hex digits,
    /// optionally sha256:-prefixed).
    #[arg(long, value_name = "DIGEST")]
    pub sha256: Option<String>,
    /// The manifest's name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The manifest's namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The kind of the targetRefs (Gateway, GatewayClass, Service, ...).
    #[arg(long, value_name = "KIND")]
    pub target_kind: Option<String>,
    /// A targetRefs name; repeat for several.
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// http or network [default: http for waypoint, network for ztunnel]
    #[arg(long, value_name = "http|network")]
    pub filter: Option<String>,
    /// The module's file for --kind envoy-filter [default: /etc/envoy/authz_plugin.wasm]
    #[arg(long, value_name = "FILE")]
    pub wasm_path: Option<String>,
    /// The configuration's trustDomain.
    #[arg(long, value_name = "TD")]
    pub trust_domain: Option<String>,
    /// The configuration's rootNamespace.
    #[arg(long, value_name = "NS")]
    pub root_namespace: Option<String>,
    /// For each --service-address, the index of the --service it follows (None: it follows
    /// none), read from where the flags stand on the command line.
    #[arg(skip)]
    pub service_address_owner: Vec<Option<usize>>,
}

/// The `render` flags with what clap cannot say in a derive: which --service each
/// --service-address belongs to (the one before it).
#[derive(Debug, Clone, Default)]
pub struct RenderArgs(pub Flags);

impl clap::Args for RenderArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Flags::augment_args(cmd)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Flags::augment_args_for_update(cmd)
    }
}

impl clap::FromArgMatches for RenderArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        let mut flags = Flags::from_arg_matches(m)?;
        let services: Vec<usize> = m
            .indices_of("services")
            .map(Iterator::collect)
            .unwrap_or_default();
        flags.service_address_owner = m
            .indices_of("service_addresses")
            .map(|at| {
                at.map(|i| services.iter().rposition(|s| *s < i))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Ok(RenderArgs(flags))
    }
    fn update_from_arg_matches(
        &mut self,
        m: &clap::ArgMatches,
    ) -> std::result::Result<(), clap::Error> {
        *self = RenderArgs::from_arg_matches(m)?;
        Ok(())
    }
}

impl Options {
    /// Parses the `render` flags (`args`, without the command name).
    pub fn parse(args: &[String]) -> Result<Options> {
        use clap::{Args as _, FromArgMatches as _};
        let cmd = RenderArgs::augment_args(clap::Command::new("render").no_binary_name(true));
        let m = cmd
            .try_get_matches_from(args)
            .map_err(|e| anyhow!("{}", e.render()))?;
        let flags = RenderArgs::from_arg_matches(&m).map_err(|e| anyhow!("{}", e.render()))?;
        Options::from_flags(&flags, args.to_vec())
    }

    /// The options the flags say; `args` are the flags as given, recorded in the output's
    /// header.
    pub fn from_flags(flags: &RenderArgs, args: Vec<String>) -> Result<Options> {
        let f = &flags.0;
        let kind = match f.kind.as_deref() {
            None => None,
            Some("WasmPlugin") => Some(Kind::WasmPlugin),
            Some("EnvoyExtensionPolicy") => Some(Kind::EnvoyExtensionPolicy),
            Some("envoy-filter") => Some(Kind::EnvoyFilter),
            Some(other) => bail!(
                "--kind takes WasmPlugin, EnvoyExtensionPolicy or envoy-filter, not {other:?}"
            ),
        };
        let mode = match f.mode.as_deref() {
            None => None,
            Some(v) => Some(
                Mode::parse(v)
                    .ok_or_else(|| anyhow!("--mode takes ztunnel or waypoint, not {v:?}"))?,
            ),
        };
        let mut o = Options {
            args,
            kind: Kind::WasmPlugin,
            mode: Mode::Waypoint,
            services: Vec::new(),
            workloads: Vec::new(),
            waypoint: None,
            gateway_class: f.gateway_class.clone(),
            policy_files: f.policy_files.clone(),
            image: f.image.clone(),
            sha256: None,
            name: f.name.clone(),
            namespace: f.namespace.clone(),
            target_kind: f.target_kind.clone(),
            targets: f.targets.clone(),
            filter: None,
            wasm_path: f
                .wasm_path
                .clone()
                .unwrap_or_else(|| "/etc/envoy/authz_plugin.wasm".into()),
            trust_domain: f.trust_domain.clone(),
            root_namespace: f.root_namespace.clone(),
        };
        for v in &f.services {
            let (id, hosts) = match v.split_once(':') {
                Some((id, h)) => (
                    id,
                    h.split(',')
                        .filter(|h| !h.is_empty())
                        .map(str::to_string)
                        .collect(),
                ),
                None => (v.as_str(), Vec::new()),
            };
            let (namespace, name) = ns_name(id, "--service")?;
            o.services.push(Service {
                namespace,
                name,
                hosts,
                addresses: Vec::new(),
            });
        }
        for (i, v) in f.service_addresses.iter().enumerate() {
            let owner = f.service_address_owner.get(i).copied().flatten();
            let Some(svc) = owner.and_then(|s| o.services.get_mut(s)) else {
                bail!("--service-address {v} must follow the --service it belongs to");
            };
            for a in v.split(',').filter(|a| !a.is_empty()) {
                let ip = a.parse().map_err(|_| anyhow!("--service-address takes IP addresses (the service's ClusterIP or ServiceEntry addresses), not {a:?}"))?;
                svc.addresses.push(ip);
            }
        }
        for v in &f.workloads {
            let (id, labels) = match v.split_once(':') {
                Some((id, l)) => (id, Some(l)),
                None => (v.as_str(), None),
            };
            let (namespace, name) = ns_name(id, "--workload")?;
            let mut w = Workload {
                namespace,
                name,
                labels: Vec::new(),
            };
            for pair in labels.unwrap_or("").split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--workload labels are label=value, not {pair:?}"))?;
                w.labels.push((k.to_string(), v.to_string()));
            }
            o.workloads.push(w);
        }
        if let Some(w) = &f.waypoint {
            o.waypoint = Some(ns_name(w, "--waypoint")?);
        }
        if let Some(v) = &f.sha256 {
            let hex = v.strip_prefix("sha256:").unwrap_or(v).to_string();
            if !is_sha256_hex(&hex) {
                bail!("--sha256 takes 64 lower-case hex digits (optionally sha256:-prefixed), not {v:?}");
            }
            o.sha256 = Some(hex);
        }
        if let Some(fl) = &f.filter {
            if fl != "http" && fl != "network" {
                bail!("--filter takes http or network, not {fl:?}");
            }
            o.filter = Some(fl.clone());
        }
        o.kind = kind.ok_or_else(|| {
            anyhow!("render needs --kind WasmPlugin|EnvoyExtensionPolicy|envoy-filter")
        })?;
        o.mode = mode.ok_or_else(|| anyhow!("render needs --mode ztunnel|waypoint"))?;
        if o.policy_files.is_empty() {
            bail!("render needs at least one --policy-file");
        }
        match o.mode {
            Mode::Ztunnel => {
                if o.workloads.is_empty() {
                    bail!("--mode ztunnel needs --workload NS/NAME[:label=value,...] (the destination it enforces for)");
                }
                if !o.services.is_empty() || o.waypoint.is_some() || o.gateway_class.is_some() {
                    bail!("--service, --waypoint and --gateway-class are for --mode waypoint");
                }
                if o.filter.as_deref() == Some("http") {
                    bail!("--mode ztunnel enforces Layer 4 only: it is a network filter");
                }
            }
            Mode::Waypoint => {
                if !o.workloads.is_empty() {
                    bail!("--workload is for --mode ztunnel");
                }
                // The module chooses the service by the destination address alone, as a
                // waypoint's filter chains are chosen (istio/istio
                // pilot/pkg/networking/core/listener_waypoint.go). A plugin on the whole waypoint (targetRefs Gateway or
                // GatewayClass) sees every service's traffic, so each service needs its
                // addresses; so do several services anywhere. Only a plugin attached to one
                // service's own chain (a Service or HTTPRoute target, a hand-placed filter)
                // may leave them out.
                let whole_proxy = o.kind == Kind::WasmPlugin
                    && matches!(
                        o.target_kind.as_deref(),
                        None | Some("Gateway") | Some("GatewayClass")
                    );
                if o.services.len() > 1 || whole_proxy {
                    if let Some(svc) = o.services.iter().find(|s| s.addresses.is_empty()) {
                        bail!(
                            "--service {}/{} needs --service-address ADDR[,ADDR] (its ClusterIP or ServiceEntry addresses): {}; the module chooses the service by destination address, never by :authority",
                            svc.namespace,
                            svc.name,
                            if whole_proxy { "a plugin on the whole waypoint sees every service's traffic" } else { "there are several services" }
                        );
                    }
                }
            }
        }
        if o.kind == Kind::EnvoyExtensionPolicy
            && (o.mode == Mode::Ztunnel || o.filter.as_deref() == Some("network"))
        {
            bail!("Envoy Gateway builds HTTP Wasm filters only: EnvoyExtensionPolicy needs --mode waypoint (HTTP filter)");
        }
        if o.kind == Kind::EnvoyFilter && (o.image.is_some() || o.sha256.is_some()) {
            bail!("--kind envoy-filter loads the module from a file (--wasm-path); --image/--sha256 are for WasmPlugin and EnvoyExtensionPolicy");
        }
        if o.kind == Kind::WasmPlugin && o.mode == Mode::Ztunnel && o.workloads.len() != 1 {
            bail!("a ztunnel-mode WasmPlugin selects one workload's pods: give exactly one --workload");
        }
        Ok(o)
    }

    fn network_filter(&self) -> bool {
        match self.mode {
            Mode::Ztunnel => true,
            Mode::Waypoint => self.filter.as_deref() == Some("network"),
        }
    }

    /// The waypoint (`namespace`, `name`): `--waypoint`, else `<namespace>/waypoint`.
    fn waypoint(&self) -> (String, String) {
        self.waypoint.clone().unwrap_or_else(|| {
            (
                self.namespace.clone().unwrap_or_else(|| "default".into()),
                "waypoint".into(),
            )
        })
    }

    fn metadata_namespace(&self) -> String {
        if let Some(ns) = &self.namespace {
            return ns.clone();
        }
        match self.mode {
            Mode::Waypoint => self.waypoint().0,
            Mode::Ztunnel => self
                .workloads
                .first()
                .map(|w| w.namespace.clone())
                .unwrap_or_else(|| "default".into()),
        }
    }

    fn metadata_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match (self.kind, self.mode, self.network_filter()) {
            (_, Mode::Ztunnel, _) => "authz-ztunnel".into(),
            (Kind::EnvoyExtensionPolicy, _, _) => "authz".into(),
            (_, Mode::Waypoint, false) => "authz-waypoint".into(),
            (_, Mode::Waypoint, true) => "authz-waypoint-tcp".into(),
        }
    }

    /// `(url, sha256)` of the module source.
    fn image(&self) -> Result<(String, Option<String>)> {
        let url = self
            .image
            .clone()
            .unwrap_or_else(|| format!("oci://{DEFAULT_REPOSITORY}:{}", env!("CARGO_PKG_VERSION")));
        if !["oci://", "https://", "http://", "file://"]
            .iter()
            .any(|s| url.starts_with(s))
        {
            bail!("--image takes oci://REGISTRY/REPO[:TAG|@sha256:DIGEST] or an http(s):// URL, not {url:?}");
        }
        if let Some((_, d)) = url.split_once("@sha256:") {
            if let Some(s) = &self.sha256 {
                if s != d {
                    bail!("--sha256 {s} contradicts the digest in --image ({d})");
                }
            }
        }
        Ok((url, self.sha256.clone()))
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

/// The AuthorizationPolicy documents of a YAML/JSON file, as written (key order kept).
pub fn read_policies(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    authz_fixture::fixture::check_nesting(&text)
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let v = <Value as serde::Deserialize>::deserialize(doc)
            .with_context(|| format!("{}: document {}", path.display(), i + 1))?;
        let items = match v.get("kind").and_then(Value::as_str) {
            Some("List") => v
                .get("items")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default(),
            _ => vec![v],
        };
        out.extend(
            items
                .into_iter()
                .filter(|d| d.get("kind").and_then(Value::as_str) == Some("AuthorizationPolicy")),
        );
    }
    if out.is_empty() {
        bail!("{}: no AuthorizationPolicy in it", path.display());
    }
    Ok(out)
}

/// The plugin configuration (docs/configuration.md) for `opts`, with the policies of its files
/// (relative paths are taken from `base`).
pub fn plugin_config(opts: &Options, base: &Path) -> Result<Value> {
    let mut pairs: Vec<(&str, Value)> = vec![(
        "mode",
        s(match opts.mode {
            Mode::Ztunnel => "ztunnel",
            Mode::Waypoint => "waypoint",
        }),
    )];
    if let Some(f) = &opts.filter {
        pairs.push(("filter", s(f)));
    }
    if let Some(ns) = &opts.root_namespace {
        pairs.push(("rootNamespace", s(ns)));
    }
    if let Some(td) = &opts.trust_domain {
        pairs.push(("trustDomain", s(td)));
    }
    if opts.mode == Mode::Waypoint {
        let (ns, name) = opts.waypoint();
        let mut w = vec![("name", s(&name)), ("namespace", s(&ns))];
        if let Some(gc) = &opts.gateway_class {
            w.push(("gatewayClass", s(gc)));
        }
        pairs.push(("waypoint", map(w)));
        if !opts.services.is_empty() {
            let services = opts
                .services
                .iter()
                .map(|svc| {
                    let mut hosts = vec![s(&format!(
                        "{}.{}.svc.cluster.local",
                        svc.name, svc.namespace
                    ))];
                    hosts.extend(svc.hosts.iter().map(|h| s(h)));
                    let mut fields = vec![
                        ("name", s(&svc.name)),
                        ("namespace", s(&svc.namespace)),
                        ("hosts", Value::Sequence(hosts)),
                    ];
                    if !svc.addresses.is_empty() {
                        fields.push((
                            "addresses",
                            Value::Sequence(
                                svc.addresses.iter().map(|a| s(&a.to_string())).collect(),
                            ),
                        ));
                    }
                    map(fields)
                })
                .collect();
            pairs.push(("services", Value::Sequence(services)));
        }
    }
    if !opts.workloads.is_empty() {
        let workloads = opts
            .workloads
            .iter()
            .map(|w| {
                let mut p = vec![("name", s(&w.name)), ("namespace", s(&w.namespace))];
                if !w.labels.is_empty() {
                    p.push((
                        "labels",
                        map(w.labels.iter().map(|(k, v)| (k.as_str(), s(v))).collect()),
                    ));
                }
                map(p)
            })
            .collect();
        pairs.push(("workloads", Value::Sequence(workloads)));
    }
    let mut policies = Vec::new();
    for f in &opts.policy_files {
        policies.extend(read_policies(&base.join(f))?);
    }
    pairs.push(("policies", Value::Sequence(policies)));
    Ok(map(pairs))
}

/// The configuration as the module receives it: compact JSON.
pub fn config_json(config: &Value) -> Result<String> {
    serde_json::to_string(config).context("the plugin configuration cannot be written as JSON")
}

/// Runs the module's own configuration parser (`Engine::from_json`) and returns its load notes.
pub fn validate(config: &Value) -> Result<Vec<String>> {
    let json = config_json(config)?;
    let engine = authz_plugin::engine::Engine::from_json(json.as_bytes())
        .map_err(|e| anyhow!("the module would reject this configuration: {e}"))?;
    Ok(engine.notes().iter().map(ToString::to_string).collect())
}

/// Shell-quotes an argument for the header comment.
fn quote(a: &str) -> String {
    let safe = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@,+%-".contains(&b));
    if safe {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

fn unquote(a: &str) -> String {
    let mut out = String::new();
    let mut in_quote = false;
    let mut chars = a.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => in_quote = !in_quote,
            '\\' if !in_quote => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

const COMMAND_LINE: &str = "#   authz-harness render \\";

/// The arguments recorded in a rendered file's header (what produced it), if any.
pub fn recorded_args(text: &str) -> Option<Vec<String>> {
    let mut lines = text.lines().skip_while(|l| *l != COMMAND_LINE);
    lines.next()?;
    let mut args = Vec::new();
    for l in lines {
        let Some(rest) = l.strip_prefix("#     ") else {
            break;
        };
        let (rest, more) = match rest.strip_suffix(" \\") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        // One flag and its value per line; values never contain an unquoted space.
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut q = false;
        for c in rest.chars() {
            if c == '\'' {
                q = !q;
            }
            if c == ' ' && !q {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        parts.push(cur);
        args.extend(parts.iter().filter(|p| !p.is_empty()).map(|p| unquote(p)));
        if !more {
            break;
        }
    }
    Some(args)
}

fn header(opts: &Options, what: &str, notes: &[String]) -> String {
    let mut h = String::new();
    h.push_str("# Generated by `authz-harness render` from AuthorizationPolicy files; do not edit by hand.\n");
    h.push_str("# Regenerate from the repository root with:\n");
    h.push_str(COMMAND_LINE);
    h.push('\n');
    // Flags with their values, one per line.
    let mut groups: Vec<Vec<String>> = Vec::new();
    for a in &opts.args {
        if a.starts_with("--") || groups.is_empty() {
            groups.push(vec![quote(a)]);
        } else if let Some(g) = groups.last_mut() {
            g.push(quote(a));
        }
    }
    let n = groups.len();
    for (i, g) in groups.iter().enumerate() {
        h.push_str("#     ");
        h.push_str(&g.join(" "));
        h.push_str(if i + 1 < n { " \\\n" } else { "\n" });
    }
    h.push_str("#\n");
    for line in what.lines() {
        h.push_str("# ");
        h.push_str(line);
        h.push('\n');
    }
    if !notes.is_empty() {
        h.push_str("#\n# The module's load notes for this configuration:\n");
        for n in notes {
            h.push_str(&format!("#   - {n}\n"));
        }
    }
    h
}

/// Renders the manifest (header comment + YAML).
pub fn render(opts: &Options, base: &Path) -> Result<String> {
    let config = plugin_config(opts, base)?;
    let notes = validate(&config)?;
    let network = opts.network_filter();
    let (doc, what) = match opts.kind {
        Kind::WasmPlugin => wasm_plugin(opts, config, network)?,
        Kind::EnvoyExtensionPolicy => envoy_extension_policy(opts, config)?,
        Kind::EnvoyFilter => envoy_filter(opts, &config, network)?,
    };
    let yaml = serde_norway::to_string(&doc).context("writing YAML")?;
    Ok(format!("{}{yaml}", header(opts, &what, &notes)))
}

fn wasm_plugin(opts: &Options, config: Value, network: bool) -> Result<(Value, String)> {
    let (url, sha) = opts.image()?;
    let mut spec: Vec<(&str, Value)> = Vec::new();
    let what = match opts.mode {
        Mode::Waypoint => {
            let (_, wp) = opts.waypoint();
            let kind = opts.target_kind.clone().unwrap_or_else(|| "Gateway".into());
            let names = if opts.targets.is_empty() {
                vec![wp.clone()]
            } else {
                opts.targets.clone()
            };
            let group = match kind.as_str() {
                "Gateway" | "GatewayClass" => "gateway.networking.k8s.io",
                "ServiceEntry" => "networking.istio.io",
                _ => "",
            };
            let refs = names
                .iter()
                .map(|n| {
                    map(vec![
                        ("group", s(group)),
                        ("kind", s(&kind)),
                        ("name", s(n)),
                    ])
                })
                .collect();
            spec.push(("targetRefs", Value::Sequence(refs)));
            format!(
                "Waypoint mode: the module as an Istio {} filter on the waypoint ({kind} {}),\nin phase AUTHZ (after Istio's authentication filters, before Istio's RBAC filter).\nistiod places it in the {} chains of the waypoint's internal listener (main_internal,\nbehind the HBONE listener): the caller arrives as the filter state io.istio.peer_principal\nand the service is chosen by the address the client dialled (services[].addresses).\nFails closed.",
                if network { "NETWORK (TCP chains)" } else { "HTTP" },
                names.join(", "),
                if network { "TCP" } else { "HTTP" }
            )
        }
        Mode::Ztunnel => {
            let w = opts
                .workloads
                .first()
                .ok_or_else(|| anyhow!("no --workload"))?;
            if w.labels.is_empty() {
                bail!("--workload {}/{} needs labels (NS/NAME:label=value) for the WasmPlugin selector", w.namespace, w.name);
            }
            spec.push((
                "selector",
                map(vec![(
                    "matchLabels",
                    map(w.labels.iter().map(|(k, v)| (k.as_str(), s(v))).collect()),
                )]),
            ));
            spec.push((
                "match",
                Value::Sequence(vec![map(vec![("mode", s("SERVER"))])]),
            ));
            format!(
                "Ztunnel mode: the Layer 4 policies a destination ztunnel enforces for {}/{},\nas a NETWORK filter on the inbound side of the Envoy in front of it (sidecar),\nin phase AUTHZ. ztunnel itself runs no Wasm. Fails closed.",
                w.namespace, w.name
            )
        }
    };
    spec.push(("url", s(&url)));
    if let Some(sha) = sha {
        spec.push(("sha256", s(&sha)));
    }
    spec.push(("imagePullPolicy", s("IfNotPresent")));
    spec.push(("pluginName", s(PLUGIN_NAME)));
    spec.push(("type", s(if network { "NETWORK" } else { "HTTP" })));
    spec.push(("phase", s("AUTHZ")));
    spec.push(("failStrategy", s("FAIL_CLOSE")));
    spec.push(("pluginConfig", config));
    let doc = map(vec![
        ("apiVersion", s("extensions.istio.io/v1alpha1")),
        ("kind", s("WasmPlugin")),
        (
            "metadata",
            map(vec![
                ("name", s(&opts.metadata_name())),
                ("namespace", s(&opts.metadata_namespace())),
            ]),
        ),
        ("spec", map(spec)),
    ]);
    Ok((doc, what))
}

fn envoy_extension_policy(opts: &Options, config: Value) -> Result<(Value, String)> {
    let (url, sha) = opts.image()?;
    let (_, gw) = opts.waypoint();
    let kind = opts.target_kind.clone().unwrap_or_else(|| "Gateway".into());
    let names = if opts.targets.is_empty() {
        vec![gw]
    } else {
        opts.targets.clone()
    };
    let refs = names
        .iter()
        .map(|n| {
            map(vec![
                ("group", s("gateway.networking.k8s.io")),
                ("kind", s(&kind)),
                ("name", s(n)),
            ])
        })
        .collect();
    let code = if let Some(image) = url.strip_prefix("oci://") {
        let mut i = vec![("url", s(image))];
        if let Some(sha) = sha {
            i.push(("sha256", s(&sha)));
        }
        map(vec![("type", s("Image")), ("image", map(i))])
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let mut h = vec![("url", s(&url))];
        if let Some(sha) = sha {
            h.push(("sha256", s(&sha)));
        }
        map(vec![("type", s("HTTP")), ("http", map(h))])
    } else {
        bail!("Envoy Gateway fetches oci:// images or http(s):// URLs, not {url:?}");
    };
    let wasm = map(vec![
        ("name", s(PLUGIN_NAME)),
        ("rootID", s(PLUGIN_NAME)),
        ("code", code),
        ("failOpen", Value::Bool(false)),
        ("config", config),
    ]);
    let doc = map(vec![
        ("apiVersion", s("gateway.envoyproxy.io/v1alpha1")),
        ("kind", s("EnvoyExtensionPolicy")),
        (
            "metadata",
            map(vec![
                ("name", s(&opts.metadata_name())),
                ("namespace", s(&opts.metadata_namespace())),
            ]),
        ),
        (
            "spec",
            map(vec![
                ("targetRefs", Value::Sequence(refs)),
                ("wasm", Value::Sequence(vec![wasm])),
            ]),
        ),
    ]);
    let what = format!(
        "Waypoint mode on Envoy Gateway: the module as an HTTP Wasm filter on {kind} {};\nthe Envoy Gateway controller pulls the image and serves the module to Envoy.\nfailOpen: false = fail closed. Principals in the policies are the client certificates'\nSPIFFE IDs: the Gateway must verify client certificates (ClientTrafficPolicy\nclientValidation) for them to match.",
        names.join(", ")
    );
    Ok((doc, what))
}

fn envoy_filter(opts: &Options, config: &Value, network: bool) -> Result<(Value, String)> {
    let (name, ty) = if network {
        (
            "envoy.filters.network.wasm",
            "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
        )
    } else {
        (
            "envoy.filters.http.wasm",
            "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        )
    };
    let plugin = map(vec![
        ("name", s(PLUGIN_NAME)),
        ("root_id", s(PLUGIN_NAME)),
        ("failure_policy", s("FAIL_CLOSED")),
        (
            "vm_config",
            map(vec![
                ("vm_id", s(PLUGIN_NAME)),
                ("runtime", s("envoy.wasm.runtime.v8")),
                (
                    "code",
                    map(vec![("local", map(vec![("filename", s(&opts.wasm_path))]))]),
                ),
            ]),
        ),
        (
            "configuration",
            map(vec![
                (
                    "@type",
                    s("type.googleapis.com/google.protobuf.StringValue"),
                ),
                ("value", s(&config_json(config)?)),
            ]),
        ),
    ]);
    let doc = map(vec![
        ("name", s(name)),
        (
            "typed_config",
            map(vec![("@type", s(ty)), ("config", plugin)]),
        ),
    ]);
    let what = format!(
        "An entry for the {} list of a static Envoy\nconfiguration: the module from {} with its configuration as a JSON\nStringValue. failure_policy FAIL_CLOSED: a VM failure denies.",
        if network { "filter_chains[].filters (before the tcp_proxy)" } else { "http_filters (before the router)" },
        opts.wasm_path
    );
    Ok((doc, what))
}
