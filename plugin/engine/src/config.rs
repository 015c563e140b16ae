//! The plugin configuration (docs/configuration.md): what `WasmPlugin.spec.pluginConfig` and Envoy's
//! `configuration` deliver.

use super::error::{ConfigError, ErrorKind};
use super::json::{
    index, join, number_as_u64, number_text, object, only_keys, opt_list, opt_object, opt_str,
    opt_str_list, Map, Result, Value,
};
use super::matcher::Cidr;
use super::policy::{check_port, AuthorizationPolicy};
use std::net::IpAddr;

/// Which enforcement point this proxy plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The destination ztunnel: Layer 4, selector and namespace policies.
    Ztunnel,
    /// A waypoint: Layer 7, policies attached by `targetRefs`.
    Waypoint,
}

impl Mode {
    /// `ztunnel` or `waypoint`, as the configuration's `mode` says it.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "ztunnel" => Some(Mode::Ztunnel),
            "waypoint" => Some(Mode::Waypoint),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ztunnel => "ztunnel",
            Mode::Waypoint => "waypoint",
        }
    }
}

/// Which Envoy filter the module is loaded as (extension key `filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Http,
    Network,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaypointIdentity {
    pub name: String,
    pub namespace: String,
    pub gateway_class: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Service,
    ServiceEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub kind: ServiceKind,
    /// Lower-cased; for kind Service the short forms are added at parse time.
    pub hosts: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub labels: Vec<(String, String)>,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSource {
    pub metadata_namespace: String,
    pub payload_key: String,
}

impl Default for JwtSource {
    fn default() -> Self {
        JwtSource {
            metadata_namespace: "envoy.filters.http.jwt_authn".into(),
            payload_key: "jwt_payload".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub mode: Mode,
    pub filter: Filter,
    pub root_namespace: String,
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
    pub waypoint: Option<WaypointIdentity>,
    pub services: Vec<Service>,
    pub workloads: Vec<Workload>,
    pub jwt: JwtSource,
    pub policies: Vec<AuthorizationPolicy>,
}

impl PluginConfig {
    /// Reads JSON in one pass: each policy is parsed as it is read, and the configuration
    /// never exists as one JSON tree (see [`super::stream`]).
    pub fn from_json(bytes: &[u8]) -> Result<PluginConfig> {
        super::stream::from_json(bytes)
    }

    /// Reads a configuration already held as a `serde_json` value (the command-line tools and
    /// the harness build one from YAML), as [`Self::from_json`] reads the same document.
    pub fn from_value(value: &serde_json::Value) -> Result<PluginConfig> {
        PluginConfig::from_tree(&super::json::from_serde(value))
    }

    /// The configuration read as one JSON tree: what the one pass falls back to for a
    /// document it does not take.
    pub(crate) fn from_tree(value: &Value) -> Result<PluginConfig> {
        let map = object(value, "")?;
        let mut policies = Vec::new();
        for policy in opt_list(map, "policies", "")?.unwrap_or_default() {
            super::stream::add_policy(&mut policies, policy);
        }
        PluginConfig::from_parsed(map, policies)
    }

    /// Validates the rest of the configuration (`map`, whose `policies` key is not read)
    /// and takes the policies as parsed, in order; the first error wins. One function for
    /// both readers, not generic over how the policies come: two instantiations of it cost
    /// the module 5 kB.
    pub(crate) fn from_parsed(
        map: &Map,
        parsed_policies: Vec<Result<AuthorizationPolicy>>,
    ) -> Result<PluginConfig> {
        only_keys(
            map,
            &[
                "mode",
                "filter",
                "rootNamespace",
                "trustDomain",
                "trustDomainAliases",
                "waypoint",
                "services",
                "workloads",
                "jwt",
                "policies",
            ],
            "",
        )?;
        let (mode, filter) = parse_mode_and_filter(map)?;
        let (root_namespace, trust_domain, trust_domain_aliases) = parse_namespace_and_trust(map)?;

        let waypoint = parse_waypoint(map)?;

        let (services, workloads) = parse_services_and_workloads(map, mode)?;

        let jwt = parse_jwt(map)?;

        let policies = parsed_policies
            .into_iter()
            .collect::<Result<Vec<AuthorizationPolicy>>>()?;

        Ok(PluginConfig {
            mode,
            filter,
            root_namespace,
            trust_domain,
            trust_domain_aliases,
            waypoint,
            services,
            workloads,
            jwt,
            policies,
        })
    }
}

/// `mode` and `filter`, which must agree.
fn parse_mode_and_filter(map: &Map) -> Result<(Mode, Filter)> {
    let mode = match opt_str(map, "mode", "")? {
        Some(s) => Mode::parse(s).ok_or_else(|| {
            ConfigError::new(
                ErrorKind::InvalidValue,
                "mode",
                format!("\"{s}\" is not ztunnel or waypoint"),
            )
        })?,
        None => {
            return Err(ConfigError::new(
                ErrorKind::Missing,
                "mode",
                "is required (ztunnel or waypoint)",
            ))
        }
    };
    let filter = match opt_str(map, "filter", "")? {
        Some("http") => Filter::Http,
        Some("network") => Filter::Network,
        None => match mode {
            Mode::Ztunnel => Filter::Network,
            Mode::Waypoint => Filter::Http,
        },
        Some(other) => {
            return Err(ConfigError::new(
                ErrorKind::InvalidValue,
                "filter",
                format!("\"{other}\" is not http or network"),
            ))
        }
    };
    if mode == Mode::Ztunnel && filter == Filter::Http {
        return Err(ConfigError::new(
            ErrorKind::Conflict,
            "filter",
            "mode ztunnel enforces Layer 4 only; load it as a network filter",
        ));
    }
    Ok((mode, filter))
}

/// `rootNamespace`, `trustDomain` and `trustDomainAliases`, with Istio's defaults.
fn parse_namespace_and_trust(map: &Map) -> Result<(String, String, Vec<String>)> {
    let root_namespace = opt_str(map, "rootNamespace", "")?
        .unwrap_or("istio-system")
        .to_string();
    // An empty root namespace names no namespace: mesh-wide policies would silently
    // apply nowhere. Leave the key out for Istio's default, istio-system.
    if root_namespace.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Empty,
            "rootNamespace",
            "\"\" is not a namespace; leave rootNamespace out for istio-system",
        ));
    }
    let trust_domain = opt_str(map, "trustDomain", "")?
        .unwrap_or("cluster.local")
        .to_string();
    // An empty trust domain would turn `cluster.local/ns/...` principals into `/ns/...`,
    // which no peer certificate carries, so every DENY on a principal would be skipped.
    // A SPIFFE trust domain is never empty and has no `/`.
    if trust_domain.is_empty() || trust_domain.contains('/') {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            "trustDomain",
            format!(
                "\"{trust_domain}\" is not a SPIFFE trust domain; leave trustDomain out for cluster.local"
            ),
        ));
    }
    let trust_domain_aliases = opt_str_list(map, "trustDomainAliases", "")?.unwrap_or_default();
    if let Some((i, bad)) = trust_domain_aliases
        .iter()
        .enumerate()
        .find(|(_, a)| a.contains('/'))
    {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            index("trustDomainAliases", i),
            format!("\"{bad}\" is not a SPIFFE trust domain"),
        ));
    }
    Ok((root_namespace, trust_domain, trust_domain_aliases))
}

fn parse_waypoint(map: &Map) -> Result<Option<WaypointIdentity>> {
    let waypoint = match opt_object(map, "waypoint", "")? {
        None => None,
        Some(w) => {
            only_keys(w, &["name", "namespace", "gatewayClass"], "waypoint")?;
            Some(WaypointIdentity {
                name: opt_str(w, "name", "waypoint")?
                    .unwrap_or("waypoint")
                    .to_string(),
                namespace: opt_str(w, "namespace", "waypoint")?
                    .unwrap_or("default")
                    .to_string(),
                gateway_class: opt_str(w, "gatewayClass", "waypoint")?
                    .unwrap_or("istio-waypoint")
                    .to_string(),
            })
        }
    };
    Ok(waypoint)
}

/// `services` and `workloads`: which destinations this proxy enforces for.
fn parse_services_and_workloads(map: &Map, mode: Mode) -> Result<(Vec<Service>, Vec<Workload>)> {
    let mut services = Vec::new();
    for (i, item) in opt_list(map, "services", "")?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        services.push(parse_service(item, &index("services", i))?);
    }
    let mut workloads = Vec::new();
    for (i, item) in opt_list(map, "workloads", "")?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        workloads.push(parse_workload(item, &index("workloads", i))?);
    }
    // The service is chosen by the destination address alone: in Istio the waypoint has
    // one filter chain per service, matched on the address the client dialled (istio/istio
    // pilot/pkg/networking/core/listener_waypoint.go, the `main_internal` filter chain
    // match on the destination IP). `:authority` is written by
    // the client and never chooses. A lone service without addresses is a plugin attached
    // to that one service's chain; with several, one without addresses can never be chosen
    // and its policies would silently not apply.
    if mode == Mode::Waypoint && services.len() > 1 {
        if let Some((i, s)) = services
            .iter()
            .enumerate()
            .find(|(_, s)| s.addresses.is_empty())
        {
            return Err(ConfigError::new(
                ErrorKind::Missing,
                join(&index("services", i), "addresses"),
                format!(
                    "service {}/{} has no addresses; with several services each needs the addresses clients dial (the service is chosen by destination address, never by :authority)",
                    s.namespace, s.name
                ),
            ));
        }
    }
    if mode == Mode::Ztunnel && workloads.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Missing,
            "workloads",
            "mode ztunnel needs at least one workload (which destinations this proxy enforces for)",
        ));
    }
    Ok((services, workloads))
}

fn parse_jwt(map: &Map) -> Result<JwtSource> {
    let jwt = match opt_object(map, "jwt", "")? {
        None => JwtSource::default(),
        Some(j) => {
            only_keys(j, &["metadataNamespace", "payloadKey"], "jwt")?;
            let d = JwtSource::default();
            JwtSource {
                metadata_namespace: opt_str(j, "metadataNamespace", "jwt")?
                    .map(str::to_string)
                    .unwrap_or(d.metadata_namespace),
                payload_key: opt_str(j, "payloadKey", "jwt")?
                    .map(str::to_string)
                    .unwrap_or(d.payload_key),
            }
        }
    };
    Ok(jwt)
}

fn parse_addresses(map: &Map, path: &str) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for (i, a) in opt_str_list(map, "addresses", path)?
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match Cidr::parse(a) {
            // Canonical, as the engine canonicalises the destination it looks up.
            Some(c) if !a.contains('/') => out.push(c.addr.to_canonical()),
            _ => {
                return Err(ConfigError::new(
                    ErrorKind::InvalidValue,
                    index(&join(path, "addresses"), i),
                    format!("\"{a}\" is not an IP address"),
                ))
            }
        }
    }
    Ok(out)
}

fn parse_service(value: &Value, path: &str) -> Result<Service> {
    let map = object(value, path)?;
    only_keys(
        map,
        &["name", "namespace", "kind", "hosts", "addresses", "ports"],
        path,
    )?;
    let name = opt_str(map, "name", path)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConfigError::new(ErrorKind::Missing, join(path, "name"), "is required"))?
        .to_string();
    let namespace = opt_str(map, "namespace", path)?
        .unwrap_or("default")
        .to_string();
    let kind = match opt_str(map, "kind", path)? {
        None | Some("Service") => ServiceKind::Service,
        Some("ServiceEntry") => ServiceKind::ServiceEntry,
        Some(other) => {
            return Err(ConfigError::new(
                ErrorKind::InvalidValue,
                join(path, "kind"),
                format!("\"{other}\" is not Service or ServiceEntry"),
            ))
        }
    };
    let mut hosts: Vec<String> = opt_str_list(map, "hosts", path)?
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if kind == ServiceKind::Service {
        // A Kubernetes Service answers to its short names inside the cluster.
        for short in [
            name.clone(),
            format!("{name}.{namespace}"),
            format!("{name}.{namespace}.svc"),
        ] {
            let short = short.to_ascii_lowercase();
            if !hosts.contains(&short) {
                hosts.push(short);
            }
        }
    }
    let addresses = parse_addresses(map, path)?;
    let mut ports = Vec::new();
    if let Some(items) = opt_list(map, "ports", path)? {
        for (i, p) in items.iter().enumerate() {
            let pp = index(&join(path, "ports"), i);
            let port = match p {
                Value::Number(n) => number_as_u64(n)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| {
                        ConfigError::new(
                            ErrorKind::InvalidValue,
                            &pp,
                            format!("{} is not a port number", number_text(n)),
                        )
                    })?,
                Value::String(s) => check_port(s, &pp)?,
                _ => {
                    return Err(ConfigError::new(
                        ErrorKind::WrongType,
                        &pp,
                        "must be a port number",
                    ))
                }
            };
            ports.push(port);
        }
    }
    Ok(Service {
        name,
        namespace,
        kind,
        hosts,
        addresses,
        ports,
    })
}

fn parse_workload(value: &Value, path: &str) -> Result<Workload> {
    let map = object(value, path)?;
    only_keys(
        map,
        &["name", "namespace", "serviceAccount", "labels", "addresses"],
        path,
    )?;
    let name = opt_str(map, "name", path)?.unwrap_or("").to_string();
    let namespace = opt_str(map, "namespace", path)?
        .unwrap_or("default")
        .to_string();
    let service_account = opt_str(map, "serviceAccount", path)?
        .unwrap_or("default")
        .to_string();
    let mut labels = Vec::new();
    if let Some(l) = opt_object(map, "labels", path)? {
        for (k, v) in l {
            match v {
                Value::String(s) => labels.push((k.clone(), s.clone())),
                _ => {
                    return Err(ConfigError::new(
                        ErrorKind::WrongType,
                        format!("{path}.labels[{k}]"),
                        "must be a string",
                    ))
                }
            }
        }
    }
    let addresses = parse_addresses(map, path)?;
    Ok(Workload {
        name,
        namespace,
        service_account,
        labels,
        addresses,
    })
}
