//! `istio-authz simulate`: one call walked the way ambient mesh routes it.
//!
//! client → (the destination's waypoint: Layer 7, sees the client's identity) → the
//! destination's ztunnel (Layer 4: sees the waypoint's identity when a waypoint is on the
//! path, the client's otherwise). The first refusal decides, and the walk stops there.
//! Routing as https://istio.io/latest/docs/ambient/usage/waypoint/ and
//! https://istio.io/latest/docs/ambient/usage/l4-policy/ describe it.

use crate::cluster::{Cluster, Pod, Service};
use crate::mesh::{self, Addressed, Mesh, Waypoint};
use crate::request::HttpRequest;
use anyhow::{anyhow, bail, Result};
use authz_plugin::engine::{Explanation, OwnedAttributes, Traffic, Verdict};
use serde_json::{json, Value};
use std::net::IpAddr;

/// Who calls.
#[derive(Debug, Clone)]
pub enum From {
    /// `NAMESPACE/POD`
    Pod(String, String),
    /// `NAMESPACE/SERVICEACCOUNT`: an identity with no pod (no address).
    ServiceAccount(String, String),
}

/// What is called.
#[derive(Debug, Clone)]
pub enum To {
    /// `SERVICE[.NAMESPACE][:PORT]`, resolved from the caller's namespace as DNS would.
    Service {
        name: String,
        namespace: Option<String>,
        port: Option<u16>,
    },
    /// `NAMESPACE/POD[:PORT]`, addressed directly.
    Pod {
        namespace: String,
        name: String,
        port: Option<u16>,
    },
}

fn split_port(text: &str) -> Result<(&str, Option<u16>)> {
    match text.rsplit_once(':') {
        Some((rest, port)) => {
            let port = port.parse::<u16>().map_err(|_| {
                anyhow!("{text:?}: the port {port:?} is not a number from 0 to 65535")
            })?;
            Ok((rest, Some(port)))
        }
        None => Ok((text, None)),
    }
}

impl To {
    pub fn parse(text: &str) -> Result<To> {
        let (target, port) = split_port(text)?;
        if let Some((namespace, name)) = target.split_once('/') {
            if namespace.is_empty() || name.is_empty() {
                bail!("--to {text:?}: write NAMESPACE/POD[:PORT] or SERVICE[.NAMESPACE][:PORT]");
            }
            return Ok(To::Pod {
                namespace: namespace.into(),
                name: name.into(),
                port,
            });
        }
        // productpage, productpage.default, productpage.default.svc,
        // productpage.default.svc.cluster.local
        let mut labels = target.trim_end_matches('.').split('.');
        let name = labels.next().unwrap_or("").to_string();
        if name.is_empty() {
            bail!("--to {text:?}: no service name");
        }
        let namespace = labels.next().map(str::to_string);
        Ok(To::Service {
            name,
            namespace,
            port,
        })
    }
}

impl From {
    pub fn pod(text: &str) -> Result<From> {
        match text.split_once('/') {
            Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() => {
                Ok(From::Pod(ns.into(), pod.into()))
            }
            _ => bail!("--from {text:?}: write NAMESPACE/POD"),
        }
    }

    pub fn service_account(text: &str) -> Result<From> {
        match text.split_once('/') {
            Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() => {
                Ok(From::ServiceAccount(ns.into(), sa.into()))
            }
            _ => bail!("--from-sa {text:?}: write NAMESPACE/SERVICEACCOUNT"),
        }
    }
}

/// One proxy on the path and what it decided.
#[derive(Debug, Clone)]
pub struct Hop {
    /// `waypoint` or `ztunnel`.
    pub proxy: &'static str,
    /// The waypoint Gateway, or the pod whose ztunnel decides.
    pub name: String,
    pub layer: u8,
    /// The identity this proxy sees; `None` for plaintext from outside the mesh.
    pub source: Option<String>,
    pub explanation: Explanation,
    pub notes: Vec<String>,
    /// The plugin configuration this proxy was given and what it saw: enough to write the hop
    /// as a fixture (docs/fixtures.md) that `replay` checks.
    pub config: Value,
    pub attributes: OwnedAttributes,
}

impl Hop {
    pub fn json(&self) -> Value {
        let e = &self.explanation;
        let mut hop = json!({
            "proxy": self.proxy,
            "name": self.name,
            "layer": self.layer,
            "source": self.source,
            "decision": e.verdict.as_str(),
            "policy": e.policy.clone().unwrap_or_default(),
            "reason": e.reason,
            "target": e.target,
        });
        if let (Some(rule), Some(map)) = (e.rule, hop.as_object_mut()) {
            map.insert("rule".into(), json!(format!("spec.rules[{rule}]")));
        }
        if let (Some(m), Some(map)) = (&e.near_miss, hop.as_object_mut()) {
            map.insert(
                "nearestMiss".into(),
                json!({"policy": m.policy, "rule": format!("spec.rules[{}]", m.rule),
                       "field": m.field, "wanted": m.wanted, "got": m.actual}),
            );
        }
        if let (false, Some(map)) = (self.notes.is_empty(), hop.as_object_mut()) {
            map.insert("notes".into(), json!(self.notes));
        }
        hop
    }
}

/// The whole walk.
#[derive(Debug, Clone)]
pub struct Walk {
    pub caller: String,
    pub callee: String,
    pub hops: Vec<Hop>,
    pub notes: Vec<String>,
}

impl Walk {
    /// The first refusal decides; with no proxy on the path nothing refuses.
    pub fn verdict(&self) -> Verdict {
        if self
            .hops
            .iter()
            .any(|h| h.explanation.verdict == Verdict::Deny)
        {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "decision": self.verdict().as_str(),
            "from": self.caller,
            "to": self.callee,
            "hops": self.hops.iter().map(Hop::json).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    pub fn text(&self) -> String {
        let mut out = format!("call: {} → {}\n", self.caller, self.callee);
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        for (i, hop) in self.hops.iter().enumerate() {
            let e = &hop.explanation;
            out.push_str(&format!(
                "hop {}: {} {} (Layer {}), sees {}\n",
                i + 1,
                hop.proxy,
                hop.name,
                hop.layer,
                hop.source.as_deref().unwrap_or("no identity (plaintext)")
            ));
            for line in e.to_string().lines() {
                out.push_str(&format!("  {line}\n"));
            }
            for note in &hop.notes {
                out.push_str(&format!("  note: {note}\n"));
            }
        }
        match self.hops.last() {
            Some(last) if self.verdict() == Verdict::Deny => out.push_str(&format!(
                "decision: DENY at the {} {}\n",
                last.proxy, last.name
            )),
            Some(_) => out.push_str("decision: ALLOW (every proxy on the path allowed)\n"),
            None => out.push_str("decision: ALLOW (no proxy on the path enforces a policy)\n"),
        }
        out
    }
}

struct Caller {
    namespace: String,
    identity: Option<String>,
    address: Option<IpAddr>,
    enrolled: bool,
    label: String,
}

fn caller(mesh: &Mesh<'_>, from: &From) -> Result<Caller> {
    match from {
        From::Pod(namespace, name) => {
            let pod = mesh.cluster.pod(namespace, name).ok_or_else(|| {
                anyhow!("--from {namespace}/{name}: no such pod in the cluster files")
            })?;
            let enrolled = mesh.enrolled(pod);
            let identity = mesh.spiffe(namespace, pod.service_account());
            Ok(Caller {
                namespace: namespace.clone(),
                label: format!("pod {namespace}/{name} ({identity})"),
                identity: enrolled.then_some(identity),
                address: pod.addresses().first().copied(),
                enrolled,
            })
        }
        From::ServiceAccount(namespace, sa) => {
            let identity = mesh.spiffe(namespace, sa);
            Ok(Caller {
                namespace: namespace.clone(),
                label: format!("service account {namespace}/{sa} ({identity})"),
                identity: Some(identity),
                address: None,
                enrolled: true,
            })
        }
    }
}

/// Where the call lands: the address and port dialled, the pod that receives it, and the port
/// the pod receives on.
struct Callee<'a> {
    label: String,
    addressed: Addressed,
    service: Option<Service<'a>>,
    dialled: Option<IpAddr>,
    port: Option<u16>,
    pod: Option<Pod<'a>>,
    pod_port: Option<u16>,
    notes: Vec<String>,
}

fn callee<'a>(mesh: &Mesh<'a>, caller_namespace: &str, to: &To) -> Result<Callee<'a>> {
    match to {
        To::Pod {
            namespace,
            name,
            port,
        } => {
            let pod = mesh.cluster.pod(namespace, name).ok_or_else(|| {
                anyhow!("--to {namespace}/{name}: no such pod in the cluster files")
            })?;
            let port = port.or_else(|| pod.first_container_port());
            let address = pod.addresses().first().copied();
            Ok(Callee {
                label: format!(
                    "pod {namespace}/{name}{}",
                    port.map(|p| format!(":{p}")).unwrap_or_default()
                ),
                addressed: Addressed::Workload,
                service: None,
                dialled: address,
                port,
                pod: Some(pod),
                pod_port: port,
                notes: Vec::new(),
            })
        }
        To::Service {
            name,
            namespace,
            port,
        } => {
            let namespace = namespace.as_deref().unwrap_or(caller_namespace);
            let service = mesh.cluster.service(namespace, name).ok_or_else(|| {
                anyhow!("--to {name}: no service {namespace}/{name} in the cluster files")
            })?;
            let ports = service.ports();
            let service_port = match port {
                Some(p) => ports
                    .iter()
                    .find(|sp| sp.port == *p)
                    .cloned()
                    .ok_or_else(|| {
                        anyhow!(
                            "--to {name}: service {namespace}/{name} has no port {p} (it has {})",
                            ports
                                .iter()
                                .map(|p| p.port.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?,
                None => ports.first().cloned().ok_or_else(|| {
                    anyhow!("--to {name}: service {namespace}/{name} has no ports; give one")
                })?,
            };
            let endpoints = mesh.endpoints(service);
            let mut notes = Vec::new();
            let pod = endpoints.first().copied();
            match endpoints.len() {
                0 => notes.push(format!(
                    "service {namespace}/{name} selects no pod: the call reaches no workload"
                )),
                1 => {}
                n => notes.push(format!(
                    "service {namespace}/{name} has {n} endpoints; this walk takes {}",
                    endpoints.first().map(|p| p.0.key()).unwrap_or_default()
                )),
            }
            let pod_port = pod.and_then(|p| mesh.target_port(p, &service_port.target));
            Ok(Callee {
                label: format!("service {namespace}/{name}:{}", service_port.port),
                addressed: Addressed::Service,
                service: Some(service),
                dialled: service.addresses().first().copied(),
                port: Some(service_port.port),
                pod,
                pod_port,
                notes,
            })
        }
    }
}

fn decide(
    mesh: &Mesh<'_>,
    config: &Value,
    traffic: Traffic,
    attrs: &OwnedAttributes,
) -> Result<Explanation> {
    let engine = mesh::engine(mesh.cluster, config)?;
    Ok(engine.explain(traffic, attrs))
}

/// Walks one call through the mesh.
pub fn walk(cluster: &Cluster, from: &From, to: &To, http: &HttpRequest) -> Result<Walk> {
    let mesh = Mesh::new(cluster);
    let caller = caller(&mesh, from)?;
    let callee = callee(&mesh, &caller.namespace, to)?;
    let mut walk = Walk {
        caller: caller.label.clone(),
        callee: callee.label.clone(),
        hops: Vec::new(),
        notes: callee.notes.clone(),
    };
    if !caller.enrolled {
        walk.notes.push(format!(
            "{} is not in the ambient mesh: it sends plaintext, no waypoint is on its path, and \
             the destination sees no identity",
            caller.label
        ));
    }

    // The waypoint: only traffic that a client's ztunnel captures is sent to it.
    let target_object = match (callee.addressed, callee.service, callee.pod) {
        (Addressed::Service, Some(s), _) => Some(s.0),
        (Addressed::Workload, _, Some(p)) => Some(p.0),
        _ => None,
    };
    let waypoint: Option<Waypoint<'_>> = target_object
        .filter(|_| caller.enrolled)
        .and_then(|o| mesh.waypoint_for(o, callee.addressed));
    if let Some(missing) = target_object.and_then(|o| mesh.missing_waypoint(o)) {
        walk.notes.push(format!(
            "{} asks for waypoint {missing}, which is not in the cluster files: no waypoint on the path",
            target_object.map(|o| o.key()).unwrap_or_default()
        ));
    }
    if let Some(wp) = &waypoint {
        let request = http.to_http(&callee.label_host(to))?;
        let traffic = if request.is_some() {
            Traffic::Request
        } else {
            Traffic::Connection
        };
        let attrs = OwnedAttributes {
            peer_principal: caller.identity.clone(),
            source_ip: caller.address,
            remote_ip: None,
            destination_ip: callee.dialled,
            destination_port: callee.port,
            sni: None,
            http: request,
        };
        let config = mesh.waypoint_config(wp);
        let explanation = decide(&mesh, &config, traffic, &attrs)?;
        let mut notes = Vec::new();
        if traffic == Traffic::Connection {
            notes.push(
                "no HTTP request given (--method, --path, ...): decided as a TCP connection".into(),
            );
        }
        let denied = explanation.verdict == Verdict::Deny;
        walk.hops.push(Hop {
            proxy: "waypoint",
            name: wp.key(),
            layer: 7,
            source: caller.identity.clone(),
            explanation,
            notes,
            config,
            attributes: attrs,
        });
        if denied {
            return Ok(walk);
        }
    }

    // The destination ztunnel.
    let Some(pod) = callee.pod else {
        return Ok(walk);
    };
    if !mesh.enrolled(pod) {
        walk.notes.push(format!(
            "pod {} is not in the ambient mesh: no ztunnel enforces policy for it",
            pod.0.key()
        ));
        return Ok(walk);
    }
    let (source, address) = match &waypoint {
        Some(wp) => (
            Some(mesh.spiffe(&wp.gateway.0.namespace, &wp.service_account())),
            wp.address(),
        ),
        None => (caller.identity.clone(), caller.address),
    };
    let attrs = OwnedAttributes {
        peer_principal: source.clone(),
        source_ip: address,
        remote_ip: None,
        destination_ip: pod.addresses().first().copied(),
        destination_port: callee.pod_port,
        sni: None,
        http: None,
    };
    let config = mesh.ztunnel_config(pod);
    let explanation = decide(&mesh, &config, Traffic::Connection, &attrs)?;
    let mut notes = Vec::new();
    if waypoint.is_some() {
        notes.push("the waypoint opens this connection: ztunnel sees the waypoint's identity, not the client's".into());
    }
    walk.hops.push(Hop {
        proxy: "ztunnel",
        name: pod.0.key(),
        layer: 4,
        source,
        explanation,
        notes,
        config,
        attributes: attrs,
    });
    Ok(walk)
}

impl Callee<'_> {
    /// The `:authority` a client would send: the name as dialled, with the port.
    fn label_host(&self, to: &To) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        match to {
            To::Service {
                name, namespace, ..
            } => match namespace {
                Some(ns) => format!("{name}.{ns}{port}"),
                None => format!("{name}{port}"),
            },
            To::Pod { .. } => format!(
                "{}{port}",
                self.dialled.map(|a| a.to_string()).unwrap_or_default()
            ),
        }
    }
}
