//! Ambient mesh as a cluster dump describes it: which workloads are enrolled, which waypoint
//! fronts a service or a pod, who the waypoint is, and the plugin configuration each proxy on
//! the path would run with (the same configuration `WasmPlugin.pluginConfig` carries, so the
//! engine parses and validates it exactly as the module does).
//!
//! Labels and their meaning: https://istio.io/latest/docs/ambient/usage/add-workloads/ (the
//! `istio.io/dataplane-mode` label) and https://istio.io/latest/docs/ambient/usage/waypoint/
//! (`istio.io/use-waypoint`, `istio.io/use-waypoint-namespace`, `istio.io/waypoint-for`).

use crate::cluster::{selects, Cluster, Gateway, Object, Pod, Service, TargetPort};
use anyhow::{anyhow, Result};
use authz_plugin::engine::{ConfigError, Engine, PluginConfig};
use serde_json::{json, Value};
use std::net::IpAddr;

/// What kind of address the caller dialled: a Service (VIP) or a pod directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressed {
    Service,
    Workload,
}

/// A waypoint Gateway and the identity its proxy presents.
#[derive(Debug, Clone)]
pub struct Waypoint<'a> {
    pub gateway: Gateway<'a>,
    /// The pod running it, when the dump has one (label `gateway.networking.k8s.io/gateway-name`).
    pub pod: Option<Pod<'a>>,
}

impl Waypoint<'_> {
    pub fn key(&self) -> String {
        self.gateway.0.key()
    }

    pub fn service_account(&self) -> String {
        match self.pod {
            Some(pod) => pod.service_account().to_string(),
            // Istio's deployment controller runs an `istio-waypoint` Gateway under a service
            // account named after the Gateway (istio/istio pilot/pkg/config/kube/gateway/
            // deploymentcontroller.go; the seeds' `cluster.local/ns/default/sa/waypoint`).
            None => self.gateway.0.name.clone(),
        }
    }

    pub fn address(&self) -> Option<IpAddr> {
        self.pod.and_then(|p| p.addresses().first().copied())
    }
}

/// The mesh view of a cluster dump.
pub struct Mesh<'a> {
    pub cluster: &'a Cluster,
}

impl<'a> Mesh<'a> {
    pub fn new(cluster: &'a Cluster) -> Mesh<'a> {
        Mesh { cluster }
    }

    pub fn spiffe(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "spiffe://{}/ns/{namespace}/sa/{service_account}",
            self.cluster.mesh.trust_domain
        )
    }

    fn namespace_label(&self, namespace: &str, label: &str) -> Option<&'a str> {
        self.cluster
            .namespace(namespace)
            .and_then(|n| n.label(label))
    }

    /// Whether a pod is captured by ztunnel: its own `istio.io/dataplane-mode` label wins
    /// (`none` opts out), else its namespace's must be `ambient`.
    pub fn enrolled(&self, pod: Pod<'_>) -> bool {
        if self.is_waypoint_pod(pod) {
            return false;
        }
        match pod.0.label("istio.io/dataplane-mode") {
            Some(mode) => mode == "ambient",
            None => {
                self.namespace_label(&pod.0.namespace, "istio.io/dataplane-mode") == Some("ambient")
            }
        }
    }

    fn is_waypoint_pod(&self, pod: Pod<'_>) -> bool {
        pod.0
            .label("gateway.networking.k8s.io/gateway-name")
            .is_some_and(|gw| {
                self.cluster
                    .gateways()
                    .any(|g| g.0.namespace == pod.0.namespace && g.0.name == gw && g.is_waypoint())
            })
    }

    fn waypoint_named(&self, namespace: &str, name: &str) -> Option<Waypoint<'a>> {
        let gateway = self
            .cluster
            .gateways()
            .find(|g| g.0.namespace == namespace && g.0.name == name && g.is_waypoint())?;
        let pod = self.cluster.pods().find(|p| {
            p.0.namespace == namespace
                && p.0.label("gateway.networking.k8s.io/gateway-name") == Some(name)
        });
        Some(Waypoint { gateway, pod })
    }

    /// The waypoint an object (Service or Pod) uses: its own `istio.io/use-waypoint` label,
    /// else its namespace's; `none` on the object opts out of the namespace's waypoint.
    /// Returns the label's value too, so a caller can report a waypoint that does not exist.
    fn use_waypoint(&self, object: &Object) -> Option<(String, String)> {
        let own = object.label("istio.io/use-waypoint");
        let name = match own {
            Some(name) => name,
            None => self.namespace_label(&object.namespace, "istio.io/use-waypoint")?,
        };
        if name == "none" || name.is_empty() {
            return None;
        }
        let namespace = object
            .label("istio.io/use-waypoint-namespace")
            .unwrap_or(&object.namespace);
        Some((namespace.to_string(), name.to_string()))
    }

    /// The waypoint on the path of traffic addressed to `object`, if its `waypoint-for` takes
    /// that kind of traffic.
    pub fn waypoint_for(&self, object: &Object, addressed: Addressed) -> Option<Waypoint<'a>> {
        let (namespace, name) = self.use_waypoint(object)?;
        let waypoint = self.waypoint_named(&namespace, &name)?;
        let takes = matches!(
            (waypoint.gateway.waypoint_for(), addressed),
            ("all", _) | ("service", Addressed::Service) | ("workload", Addressed::Workload)
        );
        takes.then_some(waypoint)
    }

    /// A `use-waypoint` label naming a waypoint that is not in the dump.
    pub fn missing_waypoint(&self, object: &Object) -> Option<String> {
        let (namespace, name) = self.use_waypoint(object)?;
        self.waypoint_named(&namespace, &name)
            .is_none()
            .then(|| format!("{namespace}/{name}"))
    }

    /// The pods a service selects, in name order.
    pub fn endpoints(&self, service: Service<'_>) -> Vec<Pod<'a>> {
        let Some(selector) = service.selector() else {
            return Vec::new();
        };
        let mut pods: Vec<Pod<'a>> = self
            .cluster
            .pods()
            .filter(|p| p.0.namespace == service.0.namespace && selects(selector, &p.0.labels))
            .collect();
        pods.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        pods
    }

    /// The port a pod receives on for a service port.
    pub fn target_port(&self, pod: Pod<'_>, target: &TargetPort) -> Option<u16> {
        match target {
            TargetPort::Number(n) => Some(*n),
            TargetPort::Name(name) => pod.named_port(name),
        }
    }

    fn policies(&self) -> Vec<Value> {
        self.cluster.policies().map(|p| p.value.clone()).collect()
    }

    fn common(&self, mode: &str) -> serde_json::Map<String, Value> {
        let mesh = &self.cluster.mesh;
        let mut config = serde_json::Map::new();
        config.insert("mode".into(), json!(mode));
        config.insert("rootNamespace".into(), json!(mesh.root_namespace));
        config.insert("trustDomain".into(), json!(mesh.trust_domain));
        if !mesh.trust_domain_aliases.is_empty() {
            config.insert(
                "trustDomainAliases".into(),
                json!(mesh.trust_domain_aliases),
            );
        }
        config.insert("policies".into(), Value::Array(self.policies()));
        config
    }

    /// The plugin configuration of a waypoint: every service that uses it, with its
    /// addresses (the destination address alone chooses the service), and every policy.
    pub fn waypoint_config(&self, waypoint: &Waypoint<'_>) -> Value {
        let gateway = waypoint.gateway.0;
        let domain = &self.cluster.mesh.trust_domain;
        let services: Vec<Value> = self
            .cluster
            .services()
            .filter(|s| {
                self.waypoint_for(s.0, Addressed::Service)
                    .is_some_and(|w| w.gateway.0.key() == gateway.key())
            })
            .map(|s| {
                json!({
                    "name": s.0.name,
                    "namespace": s.0.namespace,
                    "hosts": [s.fqdn(domain)],
                    "addresses": s.addresses().iter().map(IpAddr::to_string).collect::<Vec<_>>(),
                    "ports": s.ports().iter().map(|p| p.port).collect::<Vec<_>>(),
                })
            })
            .collect();
        let entries = self
            .cluster
            .of_kind("ServiceEntry")
            .filter(|e| e.group() == "networking.istio.io")
            .filter(|e| {
                self.waypoint_for(e, Addressed::Service)
                    .is_some_and(|w| w.gateway.0.key() == gateway.key())
            })
            .map(service_entry);
        let services: Vec<Value> = services.into_iter().chain(entries).collect();
        let mut config = self.common("waypoint");
        config.insert(
            "waypoint".into(),
            json!({"name": gateway.name, "namespace": gateway.namespace}),
        );
        config.insert("services".into(), Value::Array(services));
        Value::Object(config)
    }

    /// The plugin configuration of the ztunnel in front of one pod.
    pub fn ztunnel_config(&self, pod: Pod<'_>) -> Value {
        let mut config = self.common("ztunnel");
        config.insert(
            "workloads".into(),
            json!([{
                "name": pod.0.name,
                "namespace": pod.0.namespace,
                "serviceAccount": pod.service_account(),
                "labels": pod.0.labels,
                "addresses": pod.addresses().iter().map(IpAddr::to_string).collect::<Vec<_>>(),
            }]),
        );
        Value::Object(config)
    }
}

/// A ServiceEntry as a waypoint serves it: its hosts, and the addresses clients dial (those
/// written in `spec.addresses` and those Istio allocated, `status.addresses`).
fn service_entry(entry: &Object) -> Value {
    let spec = entry.value.get("spec");
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| {
                x.as_str()
                    .or_else(|| x.get("value").and_then(Value::as_str))
            })
            .map(str::to_string)
            .collect()
    };
    let mut addresses: Vec<String> = strings(spec.and_then(|s| s.get("addresses")));
    addresses.extend(strings(entry.value.pointer("/status/addresses")));
    addresses.retain(|a| a.parse::<IpAddr>().is_ok());
    addresses.dedup();
    let ports: Vec<u64> = spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("number").and_then(Value::as_u64))
        .collect();
    json!({
        "name": entry.name,
        "namespace": entry.namespace,
        "kind": "ServiceEntry",
        "hosts": strings(spec.and_then(|s| s.get("hosts"))),
        "addresses": addresses,
        "ports": ports,
    })
}

/// Builds the engine for a generated configuration; an error names the policy, field and
/// value, and the file the policy came from.
pub fn engine(cluster: &Cluster, config: &Value) -> Result<Engine> {
    let parsed = PluginConfig::from_value(config).map_err(|e| with_origin(cluster, e))?;
    Engine::from_config(parsed).map_err(|e| with_origin(cluster, e))
}

fn with_origin(cluster: &Cluster, e: ConfigError) -> anyhow::Error {
    let origin = e.policy.as_deref().and_then(|key| {
        cluster
            .policies()
            .find(|p| p.key() == key)
            .map(|p| p.origin.to_string())
    });
    match origin {
        Some(origin) => anyhow!("{origin}: {e}"),
        None => anyhow!("{e}"),
    }
}
