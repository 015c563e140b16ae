//! What `kubectl get namespaces,pods,services,serviceentries,gateways,authorizationpolicies -A
//! -o yaml` prints, read into the objects that ambient routing and policy binding depend on.
//!
//! Files are read in order; an object (kind, namespace, name) seen again replaces the earlier
//! one, as `kubectl apply` of the later file would, so a base dump plus a file of changes
//! describes the next step of a rollout.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

/// Where an object was read from: the file as the user named it, and its document number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    /// 1-based document number in the file (items of a `kind: List` share their document).
    pub document: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = if self.file == "-" {
            "standard input"
        } else {
            &self.file
        };
        write!(f, "{file} (document {})", self.document)
    }
}

/// One Kubernetes object as read, with the fields every kind shares.
#[derive(Debug, Clone)]
pub struct Object {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: Value,
    pub origin: Origin,
}

impl Object {
    /// `namespace/name`, or `name` for cluster-scoped objects.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The API group of `apiVersion` (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    fn spec(&self) -> Option<&Map<String, Value>> {
        self.value.get("spec").and_then(Value::as_object)
    }

    pub fn is_authorization_policy(&self) -> bool {
        self.kind == "AuthorizationPolicy" && self.group() == "security.istio.io"
    }
}

/// Kinds that have no namespace.
fn cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace" | "GatewayClass" | "Node" | "CustomResourceDefinition"
    )
}

/// Mesh-wide settings that live in Istio's mesh config rather than in objects.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub root_namespace: String,
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
        }
    }
}

/// Every object read, the later replacing the earlier of the same kind, namespace and name.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub objects: Vec<Object>,
    pub mesh: MeshSettings,
}

/// Reads a file, or standard input for `-`.
fn read_text(file: &str) -> Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(Path::new(file)).with_context(|| format!("reading {file}"))
}

impl Cluster {
    /// Reads every file in order (`-` is standard input).
    pub fn read(files: &[String], mesh: MeshSettings) -> Result<Cluster> {
        let mut cluster = Cluster {
            objects: Vec::new(),
            mesh,
        };
        for file in files {
            let text = read_text(file)?;
            cluster.add_text(file, &text)?;
        }
        Ok(cluster)
    }

    /// Adds the objects of one file's text; `file` names it in messages.
    pub fn add_text(&mut self, file: &str, text: &str) -> Result<()> {
        use serde::Deserialize;
        for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
            let origin = Origin {
                file: file.to_string(),
                document: i + 1,
            };
            let value = Value::deserialize(document)
                .with_context(|| format!("{origin}: not valid YAML"))?;
            match value {
                Value::Null => {}
                Value::Object(_) => self.add_value(value, &origin)?,
                other => bail!(
                    "{origin}: expected a Kubernetes object, found {}",
                    kind_of(&other)
                ),
            }
        }
        Ok(())
    }

    fn add_value(&mut self, value: Value, origin: &Origin) -> Result<()> {
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind == "List" || kind.ends_with("List") && value.get("items").is_some() {
            let items = match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(other) => bail!("{origin}: items: expected a list, found {}", kind_of(other)),
            };
            for (i, item) in items.into_iter().enumerate() {
                if !item.is_object() {
                    bail!("{origin}: items[{i}]: expected a Kubernetes object");
                }
                self.add_value(item, origin)?;
            }
            return Ok(());
        }
        let object = object_of(value, origin)?;
        match self.objects.iter_mut().find(|o| {
            o.kind == object.kind && o.namespace == object.namespace && o.name == object.name
        }) {
            Some(existing) => *existing = object,
            None => self.objects.push(object),
        }
        Ok(())
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind == kind)
    }

    pub fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&Object> {
        self.objects
            .iter()
            .find(|o| o.kind == kind && o.namespace == namespace && o.name == name)
    }

    pub fn namespace(&self, name: &str) -> Option<&Object> {
        self.find("Namespace", "", name)
    }

    pub fn pods(&self) -> impl Iterator<Item = Pod<'_>> {
        self.of_kind("Pod").map(Pod)
    }

    pub fn services(&self) -> impl Iterator<Item = Service<'_>> {
        self.of_kind("Service").map(Service)
    }

    pub fn gateways(&self) -> impl Iterator<Item = Gateway<'_>> {
        self.of_kind("Gateway")
            .filter(|o| o.group() == "gateway.networking.k8s.io")
            .map(Gateway)
    }

    pub fn policies(&self) -> impl Iterator<Item = &Object> {
        self.objects.iter().filter(|o| o.is_authorization_policy())
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod<'_>> {
        self.find("Pod", namespace, name).map(Pod)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<Service<'_>> {
        self.find("Service", namespace, name).map(Service)
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn object_of(value: Value, origin: &Origin) -> Result<Object> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let kind = text(value.get("kind"));
    if kind.is_empty() {
        bail!("{origin}: the document has no kind");
    }
    let metadata = value.get("metadata");
    let name = text(metadata.and_then(|m| m.get("name")));
    if name.is_empty() {
        bail!("{origin}: {kind} has no metadata.name");
    }
    let mut namespace = text(metadata.and_then(|m| m.get("namespace")));
    if cluster_scoped(&kind) {
        namespace.clear();
    } else if namespace.is_empty() {
        // What `kubectl apply` does with the default context.
        namespace = "default".into();
    }
    let labels = metadata
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Object {
        api_version: text(value.get("apiVersion")),
        kind,
        namespace,
        name,
        labels,
        value,
        origin: origin.clone(),
    })
}

fn strings<'a>(value: Option<&'a Value>) -> impl Iterator<Item = &'a str> + 'a {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// A label selector's `matchLabels` (or a Service's plain selector map) holds for `labels`.
pub fn selects(selector: &Map<String, Value>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| {
        v.as_str()
            .is_some_and(|v| labels.get(k).is_some_and(|l| l == v))
    })
}

/// A pod: where it runs, who it is, its addresses.
#[derive(Debug, Clone, Copy)]
pub struct Pod<'a>(pub &'a Object);

impl<'a> Pod<'a> {
    pub fn service_account(&self) -> &'a str {
        self.0
            .spec()
            .and_then(|s| {
                s.get("serviceAccountName")
                    .or_else(|| s.get("serviceAccount"))
            })
            .and_then(Value::as_str)
            .unwrap_or("default")
    }

    pub fn addresses(&self) -> Vec<IpAddr> {
        let status = self.0.value.get("status");
        let mut all: Vec<IpAddr> = status
            .and_then(|s| s.get("podIPs"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("ip").and_then(Value::as_str))
            .filter_map(|s| s.parse().ok())
            .collect();
        if all.is_empty() {
            all = status
                .and_then(|s| s.get("podIP"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .into_iter()
                .collect();
        }
        all
    }

    /// Every `ports` entry of every container.
    fn container_ports(&self) -> impl Iterator<Item = &'a Value> {
        self.0
            .spec()
            .and_then(|s| s.get("containers"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("ports").and_then(Value::as_array))
            .flatten()
    }

    fn number(port: &Value) -> Option<u16> {
        port.get("containerPort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
    }

    /// The first `containerPort` declared, if any.
    pub fn first_container_port(&self) -> Option<u16> {
        self.container_ports().find_map(Pod::number)
    }

    /// A named container port.
    pub fn named_port(&self, name: &str) -> Option<u16> {
        self.container_ports()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(Pod::number)
    }
}

/// One port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    /// A number, or the name of a container port; absent means the same as `port`.
    pub target: TargetPort,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// A Kubernetes Service.
#[derive(Debug, Clone, Copy)]
pub struct Service<'a>(pub &'a Object);

impl<'a> Service<'a> {
    pub fn selector(&self) -> Option<&'a Map<String, Value>> {
        self.0
            .spec()
            .and_then(|s| s.get("selector"))
            .and_then(Value::as_object)
    }

    /// The cluster IPs (`None` for a headless service is no address).
    pub fn addresses(&self) -> Vec<IpAddr> {
        let spec = self.0.spec();
        let mut all: Vec<IpAddr> = strings(spec.and_then(|s| s.get("clusterIPs")))
            .filter_map(|s| s.parse().ok())
            .collect();
        if all.is_empty() {
            if let Some(ip) = spec
                .and_then(|s| s.get("clusterIP"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            {
                all.push(ip);
            }
        }
        all
    }

    pub fn ports(&self) -> Vec<ServicePort> {
        self.0
            .spec()
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
                let target = match p.get("targetPort") {
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .map(TargetPort::Number)
                        .unwrap_or(TargetPort::Number(port)),
                    Some(Value::String(s)) => match s.parse::<u16>() {
                        Ok(n) => TargetPort::Number(n),
                        Err(_) => TargetPort::Name(s.clone()),
                    },
                    _ => TargetPort::Number(port),
                };
                Some(ServicePort {
                    name: p
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    port,
                    target,
                })
            })
            .collect()
    }

    /// The cluster-local name, `name.namespace.svc.<domain>`.
    pub fn fqdn(&self, domain: &str) -> String {
        format!("{}.{}.svc.{domain}", self.0.name, self.0.namespace)
    }
}

/// A Gateway API Gateway; a waypoint when its class is `istio-waypoint`.
#[derive(Debug, Clone, Copy)]
pub struct Gateway<'a>(pub &'a Object);

impl<'a> Gateway<'a> {
    pub fn class(&self) -> &'a str {
        self.0
            .spec()
            .and_then(|s| s.get("gatewayClassName"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn is_waypoint(&self) -> bool {
        self.class() == "istio-waypoint"
    }

    /// `istio.io/waypoint-for`: which traffic the waypoint takes. Istio's default is `service`
    /// (https://istio.io/latest/docs/ambient/usage/waypoint/#waypoint-traffic-types).
    pub fn waypoint_for(&self) -> &'a str {
        self.0.label("istio.io/waypoint-for").unwrap_or("service")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_file_replaces_the_same_object() {
        let mut c = Cluster::default();
        c.add_text(
            "a.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {x: a}}\n",
        )
        .unwrap();
        c.add_text(
            "b.yaml",
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: default, labels: {x: b}}\n",
        )
        .unwrap();
        assert_eq!(c.objects.len(), 1);
        assert_eq!(c.objects[0].label("x"), Some("b"));
        assert_eq!(c.objects[0].origin.file, "b.yaml");
    }

    #[test]
    fn a_namespaced_object_without_namespace_lands_in_default() {
        let mut c = Cluster::default();
        c.add_text("p.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
            .unwrap();
        assert_eq!(c.objects[0].key(), "default/p");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_an_error_naming_the_file() {
        let mut c = Cluster::default();
        let e = c.add_text("x.yaml", "- 1\n- 2\n").unwrap_err();
        assert!(e.to_string().contains("x.yaml (document 1)"), "{e}");
    }
}
