//! The AuthorizationPolicy API (`security.istio.io/v1` and `v1beta1`), parsed and validated
//! as istiod's admission does (`pkg/config/validation/validation.go ValidateAuthorizationPolicy`,
//! `pkg/config/security/security.go`), so that what we accept is what a cluster accepts.

use super::error::{ConfigError, ErrorKind};
use super::field::{OPERATION_FIELDS, OPERATION_KEYS, SOURCE_FIELDS, SOURCE_KEYS};
use super::json::{
    self, index, join, object, only_keys, opt_list, opt_object, opt_str, opt_str_list, Map, Result,
    Value,
};
use super::matcher::{Cidr, PathTemplate};

pub use super::field::{Attr, MAX_CLAIM_PATH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Allow,
    Deny,
    Audit,
    Custom,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

/// What the policy is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No selector and no targetRefs: every workload of the namespace (of the mesh, from the
    /// root namespace).
    Namespace,
    /// `selector.matchLabels`, sorted by key. Empty = `selector: {}`.
    Selector(Vec<(String, String)>),
    /// `targetRef` / `targetRefs`.
    TargetRefs(Vec<TargetRef>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRef {
    /// Canonical group: `""` for the core group (`core` is accepted as its alias).
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl TargetRef {
    /// The (group, kind) pairs istiod attaches.
    pub fn supported_kind(&self) -> Option<RefKind> {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "Service") => Some(RefKind::Service),
            ("networking.istio.io", "ServiceEntry") => Some(RefKind::ServiceEntry),
            ("gateway.networking.k8s.io", "Gateway") => Some(RefKind::Gateway),
            ("gateway.networking.k8s.io", "GatewayClass") => Some(RefKind::GatewayClass),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        if self.group.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{}.{} {}", self.kind, self.group, self.name)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Service,
    ServiceEntry,
    Gateway,
    GatewayClass,
}

/// One field of a `source` or `operation`, or one `when` condition: values OR-ed, notValues
/// excluded. `path` is where it was written, for explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub attr: Attr,
    /// The API name (`principals`, `notPorts`, `request.headers[x-token]`).
    pub api_name: String,
    pub path: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

/// `from[i].source`, `to[j].operation`: every field must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub path: String,
    /// `None` when `from` is absent (any source).
    pub from: Option<Vec<Entry>>,
    pub to: Option<Vec<Entry>>,
    pub when: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    pub namespace: String,
    pub name: String,
    pub scope: Scope,
    pub action: Action,
    pub provider: Option<String>,
    /// `None` when `rules` is absent; `Some([])` for `rules: []`. Both match nothing.
    pub rules: Option<Vec<Rule>>,
    pub dry_run: bool,
    /// Set when `istio.io/dry-run` did not parse as a boolean (the policy is then enforced).
    pub dry_run_annotation_error: Option<String>,
}

impl AuthorizationPolicy {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Parses one AuthorizationPolicy resource as written for Kubernetes.
    pub(crate) fn parse(value: &Value) -> std::result::Result<AuthorizationPolicy, ConfigError> {
        let map = object(value, "")?;
        let (namespace, name) = metadata_names(map)?;
        let key = format!("{namespace}/{name}");
        parse_policy(map, namespace, name).map_err(|e| e.in_policy(&key))
    }
}

/// `metadata.name` and `metadata.namespace` (default `default`, as `kubectl apply` does).
fn metadata_names(map: &Map) -> Result<(String, String)> {
    let metadata = opt_object(map, "metadata", "")?.ok_or_else(|| {
        ConfigError::new(
            ErrorKind::Missing,
            "metadata",
            "is required (with name and namespace)",
        )
    })?;
    let name = opt_str(metadata, "name", "metadata")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConfigError::new(ErrorKind::Missing, "metadata.name", "is required"))?;
    let namespace = opt_str(metadata, "namespace", "metadata")?
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    Ok((namespace.to_string(), name.to_string()))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// One policy, in the order istiod validates it: the resource's header, the dry-run
/// annotation, then the spec (action, scope, provider, rules).
fn parse_policy(map: &Map, namespace: String, name: String) -> Result<AuthorizationPolicy> {
    check_header(map)?;
    let (dry_run, dry_run_annotation_error) = parse_dry_run(map)?;
    let empty = Map::new();
    let spec = opt_object(map, "spec", "")?.unwrap_or(&empty);
    only_keys(
        spec,
        &[
            "selector",
            "targetRef",
            "targetRefs",
            "action",
            "provider",
            "rules",
        ],
        "spec",
    )?;
    let action = parse_action(spec)?;
    let scope = parse_scope(spec)?;
    let provider = parse_provider(spec, action)?;
    let rules = parse_rules(spec, &namespace, action)?;
    Ok(AuthorizationPolicy {
        namespace,
        name,
        scope,
        action,
        provider,
        rules,
        dry_run,
        dry_run_annotation_error,
    })
}

/// The resource's own keys, `apiVersion` and `kind`.
fn check_header(map: &Map) -> Result<()> {
    only_keys(
        map,
        &["apiVersion", "kind", "metadata", "spec", "status"],
        "",
    )?;
    match opt_str(map, "apiVersion", "")? {
        Some("security.istio.io/v1") | Some("security.istio.io/v1beta1") => {}
        Some(other) => {
            return Err(ConfigError::new(
                ErrorKind::InvalidValue,
                "apiVersion",
                format!("\"{other}\" is not security.istio.io/v1 or security.istio.io/v1beta1"),
            ))
        }
        None => {
            return Err(ConfigError::new(
                ErrorKind::Missing,
                "apiVersion",
                "is required",
            ))
        }
    }
    match opt_str(map, "kind", "")? {
        Some("AuthorizationPolicy") => Ok(()),
        Some(other) => Err(ConfigError::new(
            ErrorKind::InvalidValue,
            "kind",
            format!("\"{other}\" is not AuthorizationPolicy"),
        )),
        None => Err(ConfigError::new(ErrorKind::Missing, "kind", "is required")),
    }
}

/// The `istio.io/dry-run` annotation: whether the policy is dry-run, and the note when the
/// annotation is not a boolean (the policy is then enforced, as istiod does).
fn parse_dry_run(map: &Map) -> Result<(bool, Option<String>)> {
    let annotation = match opt_object(map, "metadata", "")? {
        Some(metadata) => opt_object(metadata, "annotations", "metadata")?
            .and_then(|annotations| annotations.get("istio.io/dry-run")),
        None => None,
    };
    match annotation {
        None => Ok((false, None)),
        Some(Value::String(s)) if s.is_empty() => Ok((false, None)),
        Some(Value::String(s)) => match parse_go_bool(s) {
            Some(b) => Ok((b, None)),
            None => Ok((
                false,
                Some(format!(
                    "annotation istio.io/dry-run: \"{s}\" is not a boolean; the policy is enforced"
                )),
            )),
        },
        Some(other) => Err(ConfigError::new(
            ErrorKind::WrongType,
            "metadata.annotations[istio.io/dry-run]",
            format!("must be a string, got {}", json::type_name(other)),
        )),
    }
}

/// `spec.action`, ALLOW when absent.
fn parse_action(spec: &Map) -> Result<Action> {
    match opt_str(spec, "action", "spec")? {
        None | Some("ALLOW") => Ok(Action::Allow),
        Some("DENY") => Ok(Action::Deny),
        Some("AUDIT") => Ok(Action::Audit),
        Some("CUSTOM") => Ok(Action::Custom),
        Some(other) => Err(ConfigError::new(
            ErrorKind::InvalidValue,
            "spec.action",
            format!("\"{other}\" is not one of ALLOW, DENY, AUDIT, CUSTOM"),
        )),
    }
}

/// `spec.provider.name`: required with CUSTOM, refused with any other action.
fn parse_provider(spec: &Map, action: Action) -> Result<Option<String>> {
    let provider = match opt_object(spec, "provider", "spec")? {
        None => None,
        Some(p) => {
            only_keys(p, &["name"], "spec.provider")?;
            Some(
                opt_str(p, "name", "spec.provider")?
                    .unwrap_or("")
                    .to_string(),
            )
        }
    };
    if action == Action::Custom {
        if provider.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::new(
                ErrorKind::Missing,
                "spec.provider.name",
                "is required for action CUSTOM",
            ));
        }
    } else if provider.is_some() {
        return Err(ConfigError::new(
            ErrorKind::Conflict,
            "spec.provider",
            format!(
                "is only allowed with action CUSTOM, not {}",
                action.as_str()
            ),
        ));
    }
    Ok(provider)
}

/// `spec.rules`: `None` when absent or empty, which a DENY or CUSTOM policy may not be.
fn parse_rules(spec: &Map, namespace: &str, action: Action) -> Result<Option<Vec<Rule>>> {
    // The API is protobuf: an empty repeated field is the absent field (`rules: []` is no
    // rules), so a DENY or CUSTOM with `rules: []` is refused as one without rules is
    // (istio/istio `pkg/config/validation/validation.go` `ValidateAuthorizationPolicy`).
    let Some(items) = opt_list(spec, "rules", "spec")?.filter(|l| !l.is_empty()) else {
        return match action {
            Action::Deny => Err(ConfigError::new(
                ErrorKind::Missing,
                "spec.rules",
                "a DENY policy without rules is meaningless (add an empty rule {} to deny everything)",
            )),
            Action::Custom => Err(ConfigError::new(
                ErrorKind::Missing,
                "spec.rules",
                "a CUSTOM policy needs rules",
            )),
            Action::Allow | Action::Audit => Ok(None),
        };
    };
    if items.len() > 512 {
        return Err(ConfigError::new(
            ErrorKind::TooMany,
            "spec.rules",
            format!("has {} rules; at most 512", items.len()),
        ));
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        rules.push(parse_rule(
            item,
            &index("spec.rules", i),
            namespace,
            action,
        )?);
    }
    Ok(Some(rules))
}

fn parse_scope(spec: &Map) -> Result<Scope> {
    let selector = opt_object(spec, "selector", "spec")?;
    let target_ref = opt_object(spec, "targetRef", "spec")?;
    // `targetRefs: []` is the absent field (protobuf), not an error.
    let target_refs = opt_list(spec, "targetRefs", "spec")?.filter(|l| !l.is_empty());
    let set = [
        selector.is_some(),
        target_ref.is_some(),
        target_refs.is_some(),
    ];
    if set.iter().filter(|b| **b).count() > 1 {
        return Err(ConfigError::new(
            ErrorKind::Conflict,
            "spec",
            "only one of selector, targetRef or targetRefs can be set",
        ));
    }
    if let Some(sel) = selector {
        only_keys(sel, &["matchLabels"], "spec.selector")?;
        let mut labels = Vec::new();
        if let Some(ml) = opt_object(sel, "matchLabels", "spec.selector")? {
            for (k, v) in ml {
                let path = format!("spec.selector.matchLabels[{k}]");
                if k.is_empty() {
                    return Err(ConfigError::new(
                        ErrorKind::Empty,
                        path,
                        "label key must not be empty",
                    ));
                }
                if k.contains('*') {
                    return Err(ConfigError::new(
                        ErrorKind::InvalidValue,
                        path,
                        format!("wildcard not allowed in label key \"{k}\""),
                    ));
                }
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => {
                        return Err(ConfigError::new(
                            ErrorKind::WrongType,
                            path,
                            format!("must be a string, got {}", json::type_name(other)),
                        ))
                    }
                };
                if v.contains('*') {
                    return Err(ConfigError::new(
                        ErrorKind::InvalidValue,
                        path,
                        format!("wildcard not allowed in label value \"{v}\""),
                    ));
                }
                if v.len() > 63 {
                    return Err(ConfigError::new(
                        ErrorKind::InvalidValue,
                        path,
                        format!("label value \"{v}\" is longer than 63 characters"),
                    ));
                }
                labels.push((k.clone(), v));
            }
        }
        // Sorted by key already: a JSON object's keys come in order, each once (json::Map).
        // No sort here: its instantiation cost the module 3 kB.
        return Ok(Scope::Selector(labels));
    }
    let mut refs = Vec::new();
    if let Some(r) = target_ref {
        refs.push(parse_target_ref(r, "spec.targetRef")?);
    }
    if let Some(items) = target_refs {
        if items.len() > 16 {
            return Err(ConfigError::new(
                ErrorKind::TooMany,
                "spec.targetRefs",
                format!("has {} entries; at most 16", items.len()),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let path = index("spec.targetRefs", i);
            refs.push(parse_target_ref(object(item, &path)?, &path)?);
        }
    }
    if target_ref.is_some() || target_refs.is_some() {
        if refs.is_empty() {
            return Err(ConfigError::new(
                ErrorKind::Empty,
                "spec.targetRefs",
                "must not be empty",
            ));
        }
        return Ok(Scope::TargetRefs(refs));
    }
    Ok(Scope::Namespace)
}

fn parse_target_ref(map: &Map, path: &str) -> Result<TargetRef> {
    only_keys(map, &["group", "kind", "name", "namespace"], path)?;
    let kind = opt_str(map, "kind", path)?.unwrap_or("");
    if kind.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Missing,
            join(path, "kind"),
            "is required",
        ));
    }
    let name = opt_str(map, "name", path)?.unwrap_or("");
    if name.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Missing,
            join(path, "name"),
            "is required",
        ));
    }
    if let Some(ns) = opt_str(map, "namespace", path)? {
        if !ns.is_empty() {
            return Err(ConfigError::new(
                ErrorKind::Unsupported,
                join(path, "namespace"),
                format!("\"{ns}\": cross namespace referencing is not currently supported"),
            ));
        }
    }
    let group = opt_str(map, "group", path)?.unwrap_or("");
    let group = if group == "core" { "" } else { group };
    let valid_group = group.is_empty()
        || group.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid_group {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            join(path, "group"),
            format!("\"{group}\" is not a valid API group"),
        ));
    }
    Ok(TargetRef {
        group: group.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
    })
}

fn parse_rule(value: &Value, path: &str, namespace: &str, action: Action) -> Result<Rule> {
    if value.is_null() {
        return Err(ConfigError::new(
            ErrorKind::WrongType,
            path,
            "a rule must not be null",
        ));
    }
    let map = object(value, path)?;
    only_keys(map, &["from", "to", "when"], path)?;
    let mut rule = Rule {
        path: path.to_string(),
        ..Rule::default()
    };

    if let Some(items) = opt_list(map, "from", path)? {
        let from_path = join(path, "from");
        if items.is_empty() {
            return Err(ConfigError::new(
                ErrorKind::Empty,
                from_path,
                "must not be empty when present",
            ));
        }
        if items.len() > 512 {
            return Err(ConfigError::new(
                ErrorKind::TooMany,
                from_path,
                "at most 512 entries",
            ));
        }
        let mut entries = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let entry_path = index(&from_path, i);
            let entry = object(item, &entry_path)?;
            only_keys(entry, &["source"], &entry_path)?;
            let source_path = join(&entry_path, "source");
            let source = opt_object(entry, "source", &entry_path)?
                .ok_or_else(|| ConfigError::new(ErrorKind::Missing, &source_path, "is required"))?;
            entries.push(parse_source(source, &source_path, namespace, action)?);
        }
        rule.from = Some(entries);
    }

    if let Some(items) = opt_list(map, "to", path)? {
        let to_path = join(path, "to");
        if items.is_empty() {
            return Err(ConfigError::new(
                ErrorKind::Empty,
                to_path,
                "must not be empty when present",
            ));
        }
        let mut entries = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let entry_path = index(&to_path, i);
            let entry = object(item, &entry_path)?;
            only_keys(entry, &["operation"], &entry_path)?;
            let op_path = join(&entry_path, "operation");
            let op = opt_object(entry, "operation", &entry_path)?
                .ok_or_else(|| ConfigError::new(ErrorKind::Missing, &op_path, "is required"))?;
            entries.push(parse_operation(op, &op_path, namespace, action)?);
        }
        rule.to = Some(entries);
    }

    if let Some(items) = opt_list(map, "when", path)? {
        let when_path = join(path, "when");
        for (i, item) in items.iter().enumerate() {
            let cond_path = index(&when_path, i);
            rule.when
                .push(parse_condition(item, &cond_path, namespace, action)?);
        }
    }
    Ok(rule)
}

/// The fields of a `source` or `operation` (`table`: positive name, negative name,
/// attribute), in table order: each pair that is set becomes one field, every value checked.
fn parse_fields(
    map: &Map,
    path: &str,
    table: &[(&str, &str, Attr)],
    namespace: &str,
    action: Action,
) -> Result<Vec<Field>> {
    let mut fields = Vec::new();
    for (pos, neg, attr) in table {
        // `principals: []` is the absent field (protobuf): it must not become a test that
        // matches everything.
        let values = opt_str_list(map, pos, path)?.filter(|l| !l.is_empty());
        let not_values = opt_str_list(map, neg, path)?.filter(|l| !l.is_empty());
        for (name, list) in [(*pos, &values), (*neg, &not_values)] {
            let Some(list) = list else { continue };
            let field_path = join(path, name);
            // A source's identity and JWT fields (its IP blocks are allowed).
            if action == Action::Custom && attr.refused_in_custom() {
                return Err(ConfigError::new(
                    ErrorKind::Unsupported,
                    &field_path,
                    "is not supported in a CUSTOM policy (the external authorizer runs before identity and JWT checks)",
                ));
            }
            if *attr == Attr::ServiceAccount && list.len() > 16 {
                return Err(ConfigError::new(
                    ErrorKind::TooMany,
                    &field_path,
                    "at most 16 service accounts",
                ));
            }
            for (i, v) in list.iter().enumerate() {
                attr.check_value(v, &index(&field_path, i))?;
            }
        }
        if values.is_none() && not_values.is_none() {
            continue;
        }
        let mut values = values.unwrap_or_default();
        let mut not_values = not_values.unwrap_or_default();
        if *attr == Attr::ServiceAccount {
            values = qualify_sa(values, namespace);
            not_values = qualify_sa(not_values, namespace);
        }
        fields.push(Field {
            api_name: (*pos).to_string(),
            path: path.to_string(),
            attr: attr.clone(),
            values,
            not_values,
        });
    }
    Ok(fields)
}

fn parse_source(map: &Map, path: &str, namespace: &str, action: Action) -> Result<Entry> {
    only_keys(map, &SOURCE_KEYS, path)?;
    let fields = parse_fields(map, path, SOURCE_FIELDS, namespace, action)?;
    // Set = present, not null and not an empty list (protobuf: `[]` is unset).
    let has = |k: &str| {
        map.get(k)
            .is_some_and(|v| !v.is_null() && v.as_array().is_none_or(|l| !l.is_empty()))
    };
    if (has("serviceAccounts") || has("notServiceAccounts"))
        && (has("principals") || has("notPrincipals") || has("namespaces") || has("notNamespaces"))
    {
        return Err(ConfigError::new(
            ErrorKind::Conflict,
            path,
            "cannot set serviceAccounts with namespaces or principals",
        ));
    }
    if fields.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Empty,
            path,
            "a source must set at least one field",
        ));
    }
    Ok(Entry {
        path: path.to_string(),
        fields,
    })
}

/// `sa` means `<policy namespace>/sa` (istiod `stringToServiceAccountMatch`).
fn qualify_sa(values: Vec<String>, namespace: &str) -> Vec<String> {
    values
        .into_iter()
        .map(|v| {
            if v.contains('/') {
                v
            } else {
                format!("{namespace}/{v}")
            }
        })
        .collect()
}

fn parse_operation(map: &Map, path: &str, namespace: &str, action: Action) -> Result<Entry> {
    only_keys(map, &OPERATION_KEYS, path)?;
    let fields = parse_fields(map, path, OPERATION_FIELDS, namespace, action)?;
    if fields.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Empty,
            path,
            "an operation must set at least one field",
        ));
    }
    Ok(Entry {
        path: path.to_string(),
        fields,
    })
}

fn parse_condition(value: &Value, path: &str, namespace: &str, action: Action) -> Result<Field> {
    let map = object(value, path)?;
    only_keys(map, &["key", "values", "notValues"], path)?;
    let key = opt_str(map, "key", path)?.unwrap_or("");
    if key.is_empty() {
        return Err(ConfigError::new(
            ErrorKind::Missing,
            join(path, "key"),
            "is required",
        ));
    }
    let values = opt_str_list(map, "values", path)?;
    let not_values = opt_str_list(map, "notValues", path)?;
    if values.as_ref().is_none_or(|v| v.is_empty())
        && not_values.as_ref().is_none_or(|v| v.is_empty())
    {
        return Err(ConfigError::new(
            ErrorKind::Missing,
            path,
            format!("condition \"{key}\" needs values or notValues"),
        ));
    }
    let key_path = join(path, "key");
    let attr = Attr::from_when_key(key, &key_path)?;
    if action == Action::Custom && attr.refused_in_custom() {
        return Err(ConfigError::new(
            ErrorKind::Unsupported,
            &key_path,
            format!("\"{key}\" is not supported in a CUSTOM policy"),
        ));
    }
    let values = values.unwrap_or_default();
    let not_values = not_values.unwrap_or_default();
    for (name, list) in [("values", &values), ("notValues", &not_values)] {
        for (i, v) in list.iter().enumerate() {
            attr.check_value(v, &index(&join(path, name), i))?;
        }
    }
    let (values, not_values) = if attr == Attr::ServiceAccount {
        (
            qualify_sa(values, namespace),
            qualify_sa(not_values, namespace),
        )
    } else {
        (values, not_values)
    };
    Ok(Field {
        attr,
        api_name: key.to_string(),
        path: path.to_string(),
        values,
        not_values,
    })
}

pub(crate) fn check_ip(v: &str, path: &str) -> Result<()> {
    if Cidr::parse(v).is_none() {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\" is not a valid IP address or CIDR block"),
        ));
    }
    Ok(())
}

/// Go `strconv.ParseUint(v, 10, 32)` ≤ 65535: digits only, leading zeros accepted.
pub(crate) fn check_port(v: &str, path: &str) -> Result<u16> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\" is not a port number"),
        ));
    }
    let trimmed = v.trim_start_matches('0');
    if trimmed.len() > 5 {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("port \"{v}\" is out of range 0-65535"),
        ));
    }
    let n: u32 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().map_err(|_| {
            ConfigError::new(
                ErrorKind::InvalidValue,
                path,
                format!("\"{v}\" is not a port number"),
            )
        })?
    };
    u16::try_from(n).map_err(|_| {
        ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("port \"{v}\" is out of range 0-65535"),
        )
    })
}

pub(crate) fn check_path(v: &str, path: &str) -> Result<()> {
    if v.contains('{') || v.contains('}') {
        PathTemplate::parse(v).map_err(|e| {
            ConfigError::new(
                ErrorKind::InvalidValue,
                path,
                format!("invalid path template \"{v}\": {e}"),
            )
        })?;
    }
    Ok(())
}

/// istiod `CheckServiceAccount`: no `*`, at most one `/`, at most 320 characters.
pub(crate) fn check_service_account(v: &str, path: &str) -> Result<()> {
    if v.contains('*') {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\": wildcards are not allowed in service accounts"),
        ));
    }
    if v.matches('/').count() > 1 {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\": a service account is <namespace>/<name> or <name>"),
        ));
    }
    if v.len() > 320 {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\" is longer than 320 characters"),
        ));
    }
    if v.starts_with('/') || v.ends_with('/') {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\": empty namespace or name"),
        ));
    }
    Ok(())
}

/// istiod `CheckTrustDomainValues`: no `/`, at most one `*`, only at the start or end.
pub(crate) fn check_trust_domain(v: &str, path: &str) -> Result<()> {
    if v.contains('/') {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\": a trust domain has no \"/\""),
        ));
    }
    let stars = v.matches('*').count();
    if stars > 1 || (stars == 1 && v != "*" && !v.starts_with('*') && !v.ends_with('*')) {
        return Err(ConfigError::new(
            ErrorKind::InvalidValue,
            path,
            format!("\"{v}\": at most one \"*\", at the start or the end"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parses a policy written with `json!`, through the engine's reader.
    fn parse(value: serde_json::Value) -> std::result::Result<AuthorizationPolicy, ConfigError> {
        AuthorizationPolicy::parse(&json::parse(value.to_string().as_bytes()).unwrap())
    }

    fn policy(spec: serde_json::Value) -> std::result::Result<AuthorizationPolicy, ConfigError> {
        parse(json!({
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": spec
        }))
    }

    fn err(spec: serde_json::Value) -> String {
        policy(spec).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_policy_field_and_value() {
        let e = err(
            json!({"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8", "10.0.0.300/8"]}}]}]}),
        );
        assert_eq!(
            e,
            "policy ns/p: spec.rules[0].from[0].source.ipBlocks[1]: \"10.0.0.300/8\" is not a valid IP address or CIDR block"
        );
        use ErrorKind::*;
        for (spec, kind, field) in [
            (
                json!({"rules": [{"to": [{"operation": {"ports": ["65536"]}}]}]}),
                InvalidValue,
                "spec.rules[0].to[0].operation.ports[0]",
            ),
            (
                json!({"rules": [{"when": [{"key": "request.foo", "values": ["x"]}]}]}),
                InvalidValue,
                "spec.rules[0].when[0].key",
            ),
            (
                json!({"rules": [{"to": [{"operation": {"paths": ["/foo/{*}.txt"]}}]}]}),
                InvalidValue,
                "spec.rules[0].to[0].operation.paths[0]",
            ),
            (json!({"action": "REJECT"}), InvalidValue, "spec.action"),
            (json!({"action": "DENY"}), Missing, "spec.rules"),
            (
                json!({"rules": [{"from": [{"source": {"serviceAccounts": ["a"], "principals": ["b"]}}]}]}),
                Conflict,
                "spec.rules[0].from[0].source",
            ),
            (
                json!({"rules": [{"from": [{"source": {"principals": [""]}}]}]}),
                Empty,
                "spec.rules[0].from[0].source.principals[0]",
            ),
            (
                json!({"rules": [{"from": []}]}),
                Empty,
                "spec.rules[0].from",
            ),
            (
                json!({"rules": [{"from": [{"source": {}}]}]}),
                Empty,
                "spec.rules[0].from[0].source",
            ),
            (
                json!({"rules": [{"from": [{"source": {"principal": ["x"]}}]}]}),
                UnknownField,
                "spec.rules[0].from[0].source.principal",
            ),
            (
                json!({"selector": {"matchLabels": {"a": "b"}}, "targetRefs": [{"kind": "Service", "name": "x"}]}),
                Conflict,
                "spec",
            ),
            (
                json!({"targetRefs": [{"kind": "Service", "name": "x", "namespace": "other"}]}),
                Unsupported,
                "spec.targetRefs[0].namespace",
            ),
            (
                json!({"rules": [{"when": [{"key": "request.headers[]", "values": ["x"]}]}]}),
                InvalidValue,
                "spec.rules[0].when[0].key",
            ),
            (
                json!({"rules": [{"when": [{"key": "source.ip"}]}]}),
                Missing,
                "spec.rules[0].when[0]",
            ),
            (
                json!({"action": "CUSTOM", "rules": [{}]}),
                Missing,
                "spec.provider.name",
            ),
            (
                json!({"provider": {"name": "x"}, "rules": [{}]}),
                Conflict,
                "spec.provider",
            ),
            (json!({"rules": [null]}), WrongType, "spec.rules[0]"),
            (
                json!({"targetRefs": vec![json!({"kind": "Service", "name": "x"}); 17]}),
                TooMany,
                "spec.targetRefs",
            ),
            (
                json!({"rules": [{"when": [{"key": "request.auth.claims[a]", "values": ["x"]}]}], "action": "CUSTOM", "provider": {"name": "x"}}),
                Unsupported,
                "spec.rules[0].when[0].key",
            ),
        ] {
            let e = policy(spec.clone()).unwrap_err();
            assert_eq!(
                (e.kind, e.field.as_str(), e.policy.as_deref()),
                (kind, field, Some("ns/p")),
                "{spec}: {e}"
            );
        }
    }

    /// An unknown key's error lists every key the section has, positive and negative.
    #[test]
    fn an_unknown_key_lists_the_keys_of_its_section() {
        assert_eq!(
            err(json!({"rules": [{"from": [{"source": {"principal": ["x"]}}]}]})),
            "policy ns/p: spec.rules[0].from[0].source.principal: unknown field \"principal\" (expected one of: \
             principals, notPrincipals, requestPrincipals, notRequestPrincipals, namespaces, notNamespaces, \
             serviceAccounts, notServiceAccounts, ipBlocks, notIpBlocks, remoteIpBlocks, notRemoteIpBlocks, \
             trustDomains, notTrustDomains)"
        );
        assert_eq!(
            err(json!({"rules": [{"to": [{"operation": {"method": ["GET"]}}]}]})),
            "policy ns/p: spec.rules[0].to[0].operation.method: unknown field \"method\" (expected one of: \
             hosts, notHosts, ports, notPorts, methods, notMethods, paths, notPaths)"
        );
    }

    #[test]
    fn selector_labels_are_sorted_by_key() {
        // Written out of order (json! would sort them on the way).
        let text = br#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"b": "1", "c": "0", "a": "2", "b": "3"}}}}"#;
        let p = AuthorizationPolicy::parse(&json::parse(text).unwrap()).unwrap();
        assert_eq!(
            p.scope,
            Scope::Selector(vec![
                ("a".into(), "2".into()),
                ("b".into(), "3".into()),
                ("c".into(), "0".into())
            ])
        );
    }

    #[test]
    fn accepts_what_istio_accepts() {
        assert!(policy(json!({})).is_ok());
        assert!(policy(json!({"rules": [{}]})).is_ok());
        assert!(policy(json!({"action": "DENY", "rules": [{}]})).is_ok());
        assert!(policy(
            json!({"rules": [{"to": [{"operation": {"ports": ["080", "0", "65535"]}}]}]})
        )
        .is_ok());
        assert!(policy(
            json!({"targetRefs": [{"kind": "Service", "group": "", "name": "productpage"}]})
        )
        .is_ok());
        let p = policy(
            json!({"rules": [{"from": [{"source": {"serviceAccounts": ["curl", "other/sa"]}}]}]}),
        )
        .unwrap();
        let rules = p.rules.unwrap();
        let from = rules[0].from.as_ref().unwrap();
        assert_eq!(
            from[0].fields[0].values,
            vec!["ns/curl".to_string(), "other/sa".to_string()]
        );
    }

    #[test]
    fn dry_run_annotation() {
        let p = parse(json!({
            "apiVersion": "security.istio.io/v1beta1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "ns", "annotations": {"istio.io/dry-run": "True"}},
            "spec": {}
        }))
        .unwrap();
        assert!(p.dry_run);
        let p = parse(json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "ns", "annotations": {"istio.io/dry-run": "yes"}},
            "spec": {}
        }))
        .unwrap();
        assert!(!p.dry_run && p.dry_run_annotation_error.is_some());
    }
}
