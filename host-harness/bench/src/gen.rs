//! One seeded description → three policy sets (Layer 7 waypoint ALLOW set, Layer 4 ztunnel
//! ALLOW set, ztunnel's worst-case DENY set) and the sample traffic with the decisions the
//! reference model expects.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::model::{
    Action, Binding, CidrBlock, Condition, Operation, Policy, PolicySet, Rule, Source, Traffic,
    ValuePattern,
};

/// SplitMix64: small, seedable, and the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Where the benchmark's listeners are, so that the generated policies (ports, CIDRs, the
/// service address) fit the loopback setup.
#[derive(Clone, Debug, Serialize)]
pub struct Net {
    /// The address of the module's Layer 7 listener (the service's address in the plugin
    /// configuration).
    pub l7_addr: Ipv4Addr,
    pub l7_port: u16,
    /// The address of the module's Layer 4 listener.
    pub l4_addr: Ipv4Addr,
    /// The port every Layer 4 listener (native and module) listens on.
    pub l4_port: u16,
    /// Covers every server listener (the `destination.ip` conditions).
    pub server_cidr: CidrBlock,
    /// The source address the load generator binds (matched by `ipBlocks`).
    pub client_ip: Ipv4Addr,
    pub client_cidr: CidrBlock,
    /// A loopback source address outside `client_cidr`.
    pub outside_ip: Ipv4Addr,
    /// The service's host name (`:authority`).
    pub host: String,
}

impl Default for Net {
    fn default() -> Net {
        Net {
            l7_addr: Ipv4Addr::new(127, 0, 0, 22),
            l7_port: 19080,
            l4_addr: Ipv4Addr::new(127, 0, 0, 26),
            l4_port: 19081,
            server_cidr: CidrBlock::new(Ipv4Addr::new(127, 0, 0, 16), 28),
            client_ip: Ipv4Addr::new(127, 0, 0, 66),
            client_cidr: CidrBlock::new(Ipv4Addr::new(127, 0, 0, 64), 26),
            outside_ip: Ipv4Addr::new(127, 0, 0, 130),
            host: "productpage.default.svc.cluster.local".into(),
        }
    }
}

impl Serialize for CidrBlock {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.istio())
    }
}

/// The seeded description everything is generated from.
#[derive(Clone, Debug, Serialize)]
pub struct Description {
    /// Number of policies in each set.
    pub n: usize,
    pub seed: u64,
    /// With `n == 1`, the Layer 7 set is the seeds' waypoint policy
    /// (policies/bookinfo/productpage-waypoint.yaml) instead of a generated one.
    pub seeds_at_one: bool,
    pub net: Net,
}

impl Description {
    pub fn new(n: usize, seed: u64) -> Description {
        Description {
            n,
            seed,
            seeds_at_one: true,
            net: Net::default(),
        }
    }
}

/// Which policy set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    /// Waypoint, HTTP filter, ALLOW policies attached by targetRefs to one Service; sources
    /// mix exact principals, principal prefixes and namespaces.
    L7,
    /// As `L7`, but every source names exact principals only (the shape the engine indexes).
    L7exact,
    /// ztunnel, network filter, ALLOW policies attached by selector to one workload.
    L4,
    /// ztunnel's worst case: root-namespace DENY policies of 10 rules each.
    L4worst,
}

impl SetKind {
    pub const ALL: [SetKind; 4] = [SetKind::L7, SetKind::L7exact, SetKind::L4, SetKind::L4worst];

    pub fn name(self) -> &'static str {
        match self {
            SetKind::L7 => "l7",
            SetKind::L7exact => "l7exact",
            SetKind::L4 => "l4",
            SetKind::L4worst => "l4worst",
        }
    }

    /// Layer 7 (HTTP filter, waypoint mode).
    pub fn http(self) -> bool {
        matches!(self, SetKind::L7 | SetKind::L7exact)
    }

    pub fn parse(s: &str) -> Option<SetKind> {
        SetKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One sample request or connection with the reference model's decision.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub set: SetKind,
    pub name: String,
    pub traffic: Traffic,
    /// `allow` or `deny`.
    pub expect: &'static str,
    /// The policies (`ns/name`) it matches, in Envoy's order.
    pub matching: Vec<String>,
    /// Whether it can be replayed through the loopback listeners (destination address and
    /// port are the listeners'; source address bindable).
    pub replayable: bool,
    /// `bench-allow` / `bench-deny`: the two requests the load is made of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
}

/// Everything generated from one description.
#[derive(Clone, Debug)]
pub struct Generated {
    pub description: Description,
    pub l7: PolicySet,
    pub l7exact: PolicySet,
    pub l4: PolicySet,
    pub l4worst: PolicySet,
    pub samples: Vec<Sample>,
}

pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
pub const OUTSIDER: &str = "cluster.local/ns/outsider/sa/nobody";
pub const SERVICE: &str = "productpage";
pub const NAMESPACE: &str = "default";
pub const ROOT_NAMESPACE: &str = "istio-system";
pub const WORKLOAD_LABEL: (&str, &str) = ("app", "bench-server");

/// The seeds' waypoint policy (policies/bookinfo/productpage-waypoint.yaml).
pub fn seeds_waypoint_policy() -> Policy {
    Policy {
        namespace: NAMESPACE.into(),
        name: "productpage-waypoint".into(),
        binding: Binding::Service(SERVICE.into()),
        action: Action::Allow,
        rules: vec![Rule {
            from: vec![Source {
                principals: vec![ValuePattern::Exact(
                    "cluster.local/ns/default/sa/curl".into(),
                )],
                ..Default::default()
            }],
            to: vec![Operation {
                methods: vec!["GET".into()],
                ..Default::default()
            }],
            when: vec![],
        }],
    }
}

fn team_source(rng: &mut Rng, i: usize, r: usize) -> Source {
    let team = format!("team-{i}");
    let principal =
        |k: usize| ValuePattern::Exact(format!("cluster.local/ns/{team}/sa/svc-{r}-{k}"));
    match rng.below(10) {
        0..=5 => {
            let mut principals: Vec<ValuePattern> = (0..1 + rng.below(3)).map(principal).collect();
            if rng.chance(25) {
                principals.push(ValuePattern::Prefix(format!(
                    "cluster.local/ns/{team}/sa/batch-{r}-"
                )));
            }
            Source {
                principals,
                ..Default::default()
            }
        }
        6..=8 => {
            let mut namespaces = vec![team.clone()];
            if rng.chance(50) {
                namespaces.push(format!("{team}-canary"));
            }
            Source {
                namespaces,
                ..Default::default()
            }
        }
        _ => Source {
            principals: vec![principal(0)],
            namespaces: vec![team.clone()],
            ..Default::default()
        },
    }
}

fn pick_methods(rng: &mut Rng) -> Vec<String> {
    let first = rng.below(METHODS.len());
    let mut out = vec![METHODS[first].to_string()];
    if rng.chance(40) {
        let second = (first + 1 + rng.below(METHODS.len() - 1)) % METHODS.len();
        out.push(METHODS[second].to_string());
    }
    out
}

fn exact_source(rng: &mut Rng, i: usize, r: usize) -> Source {
    Source {
        principals: (0..1 + rng.below(3))
            .map(|k| ValuePattern::Exact(format!("cluster.local/ns/team-{i}/sa/svc-{r}-{k}")))
            .collect(),
        ..Default::default()
    }
}

fn l7_policy(rng: &mut Rng, i: usize, exact: bool) -> Policy {
    let rules = (0..1 + rng.below(3))
        .map(|r| {
            let from = vec![if exact {
                exact_source(rng, i, r)
            } else {
                team_source(rng, i, r)
            }];
            let mut kinds = [0usize, 1, 2];
            let start = rng.below(3);
            kinds.rotate_left(start);
            let paths = kinds[..1 + rng.below(2)]
                .iter()
                .map(|k| match k {
                    0 => ValuePattern::Exact(format!("/api/{i}/r{r}/items")),
                    1 => ValuePattern::Prefix(format!("/api/{i}/r{r}/")),
                    _ => ValuePattern::Suffix(format!("/{i}-r{r}.json")),
                })
                .collect();
            let to = vec![Operation {
                methods: pick_methods(rng),
                paths,
                ports: vec![],
            }];
            let mut when = Vec::new();
            if rng.chance(30) {
                let v = if rng.chance(50) {
                    ValuePattern::Exact(format!("tenant-{i}"))
                } else {
                    ValuePattern::Prefix(format!("tenant-{i}-"))
                };
                when.push(Condition::Header {
                    name: "x-tenant".into(),
                    values: vec![v],
                });
            }
            Rule { from, to, when }
        })
        .collect();
    Policy {
        namespace: NAMESPACE.into(),
        name: format!("bench-{i:05}"),
        binding: Binding::Service(SERVICE.into()),
        action: Action::Allow,
        rules,
    }
}

fn l4_policy(rng: &mut Rng, i: usize, net: &Net) -> Policy {
    let rules = (0..1 + rng.below(3))
        .map(|r| {
            let mut source = team_source(rng, i, r);
            if rng.chance(50) {
                source.ip_blocks.push(net.client_cidr);
                if rng.chance(50) {
                    source
                        .ip_blocks
                        .push(CidrBlock::new(Ipv4Addr::new(10, (i % 250) as u8, 0, 0), 16));
                }
            }
            let mut to = Vec::new();
            if rng.chance(70) {
                let mut ports = vec![net.l4_port];
                if rng.chance(50) {
                    ports.push(8443);
                }
                to.push(Operation {
                    ports,
                    ..Default::default()
                });
            }
            let mut when = Vec::new();
            if rng.chance(30) {
                when.push(Condition::DestinationIp(vec![net.server_cidr]));
            }
            Rule {
                from: vec![source],
                to,
                when,
            }
        })
        .collect();
    Policy {
        namespace: NAMESPACE.into(),
        name: format!("bench-{i:05}"),
        binding: Binding::Selector(WORKLOAD_LABEL.0.into(), WORKLOAD_LABEL.1.into()),
        action: Action::Allow,
        rules,
    }
}

/// ztunnel's benchmark shape (ztunnel `benches/throughput.rs`): 10 rules, each 3
/// namespaces, 3 principals, a source CIDR, a destination CIDR and a port. The source CIDR,
/// destination CIDR and port match the benchmark's connections, so only the identity tells a
/// rule apart: the most work per rule for both engines.
fn worst_policy(i: usize, net: &Net) -> Policy {
    let rules = (0..10)
        .map(|r| {
            let ns = |x: &str| format!("w{i}-{r}-{x}");
            Rule {
                from: vec![Source {
                    namespaces: ["a", "b", "c"].iter().map(|x| ns(x)).collect(),
                    principals: ["a", "b", "c"]
                        .iter()
                        .map(|x| ValuePattern::Exact(format!("cluster.local/ns/{}/sa/p", ns(x))))
                        .collect(),
                    ip_blocks: vec![net.client_cidr],
                }],
                to: vec![Operation {
                    ports: vec![net.l4_port],
                    ..Default::default()
                }],
                when: vec![Condition::DestinationIp(vec![net.server_cidr])],
            }
        })
        .collect();
    Policy {
        namespace: ROOT_NAMESPACE.into(),
        name: format!("worst-{i:05}"),
        binding: Binding::Namespace,
        action: Action::Deny,
        rules,
    }
}

/// A principal that the source entry admits.
fn witness_principal(s: &Source) -> Option<String> {
    if let Some(p) = s.principals.first() {
        return Some(match p {
            ValuePattern::Exact(v) => v.clone(),
            ValuePattern::Prefix(v) => format!("{v}7"),
            ValuePattern::Suffix(v) => format!("cluster.local/ns/x/sa/x{v}"),
            ValuePattern::Presence => OUTSIDER.into(),
        });
    }
    s.namespaces
        .first()
        .map(|ns| format!("cluster.local/ns/{ns}/sa/client"))
}

fn witness_value(m: &ValuePattern, filler: &str) -> String {
    match m {
        ValuePattern::Exact(v) => v.clone(),
        ValuePattern::Prefix(v) => format!("{v}{filler}"),
        ValuePattern::Suffix(v) => format!("/files{v}"),
        ValuePattern::Presence => filler.into(),
    }
}

/// Traffic that the rule matches (and, by the generator's naming, no rule of another policy).
fn witness(rule: &Rule, http: bool, net: &Net) -> Traffic {
    let source = rule.from.first();
    let mut t = Traffic {
        principal: source.and_then(witness_principal),
        source_ip: net.client_ip.to_string(),
        destination_ip: if http { net.l7_addr } else { net.l4_addr }.to_string(),
        destination_port: if http { net.l7_port } else { net.l4_port },
        ..Default::default()
    };
    if http {
        let op = rule.to.first();
        t.method = Some(
            op.and_then(|o| o.methods.first().cloned())
                .unwrap_or_else(|| "GET".into()),
        );
        t.path = Some(
            op.and_then(|o| o.paths.first())
                .map(|p| witness_value(p, "page?x=1"))
                .unwrap_or_else(|| "/productpage".into()),
        );
        t.host = Some(net.host.clone());
        for c in &rule.when {
            if let Condition::Header { name, values } = c {
                if let Some(v) = values.first() {
                    t.headers.push((name.clone(), witness_value(v, "blue")));
                }
            }
        }
    }
    t
}

/// Variations of a witness that each break one constraint of the rule: (label, traffic,
/// replayable through the loopback listeners).
fn near_misses(rule: &Rule, w: &Traffic, http: bool, net: &Net) -> Vec<(String, Traffic, bool)> {
    let mut out = Vec::new();
    if let Some(s) = rule.from.first() {
        if !s.principals.is_empty() || !s.namespaces.is_empty() {
            let mut t = w.clone();
            t.principal = Some("cluster.local/ns/stranger/sa/svc-0-0".into());
            out.push(("other principal".into(), t, true));
        }
        if !s.ip_blocks.is_empty() {
            let mut t = w.clone();
            t.source_ip = net.outside_ip.to_string();
            out.push(("source outside ipBlocks".into(), t, true));
        }
    }
    if let Some(op) = rule.to.first() {
        if http && !op.methods.is_empty() {
            if let Some(m) = METHODS.iter().find(|m| !op.methods.iter().any(|x| x == *m)) {
                let mut t = w.clone();
                t.method = Some((*m).to_string());
                out.push((format!("method {m}"), t, true));
            }
        }
        if http && !op.paths.is_empty() {
            let mut t = w.clone();
            t.path = Some("/elsewhere/items".into());
            out.push(("other path".into(), t, true));
        }
        if !op.ports.is_empty() {
            let mut t = w.clone();
            t.destination_port = 8444;
            out.push(("other port".into(), t, false));
        }
    }
    for c in &rule.when {
        match c {
            Condition::Header { name, .. } => {
                let mut t = w.clone();
                t.headers.retain(|(n, _)| n != name);
                out.push((format!("without {name}"), t, true));
            }
            Condition::DestinationIp(_) => {
                let mut t = w.clone();
                t.destination_ip = "10.9.9.9".into();
                out.push(("other destination address".into(), t, false));
            }
        }
    }
    out
}

fn sample(
    set: &PolicySet,
    kind: SetKind,
    name: String,
    traffic: Traffic,
    replayable: bool,
    role: Option<&'static str>,
) -> Sample {
    Sample {
        set: kind,
        name,
        expect: if set.allows(&traffic) {
            "allow"
        } else {
            "deny"
        },
        matching: set.matching(&traffic),
        traffic,
        replayable,
        role,
    }
}

/// Which policy indexes get samples: all of a small set; otherwise 12 seeded ones and the last.
fn sampled_indexes(rng: &mut Rng, n: usize) -> Vec<usize> {
    if n <= 16 {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = (0..12).map(|_| rng.below(n - 1)).collect();
    v.push(n - 1);
    v.sort_unstable();
    v.dedup();
    v
}

impl Generated {
    pub fn new(d: &Description) -> Generated {
        let net = &d.net;
        let mut rng7 = Rng::new(d.seed ^ 0x4c37_0000_0000_0007);
        let mut rng4 = Rng::new(d.seed ^ 0x4c34_0000_0000_0004);
        let mut rng7x = Rng::new(d.seed ^ 0x4c37_0000_0000_0e7a);
        let mut rng_s = Rng::new(d.seed ^ 0x5341_4d50_4c45_0000);
        let seeds = d.n == 1 && d.seeds_at_one;
        let l7_set = |rng: &mut Rng, exact: bool| PolicySet {
            action: Action::Allow,
            policies: if seeds {
                vec![seeds_waypoint_policy()]
            } else {
                (0..d.n).map(|i| l7_policy(rng, i, exact)).collect()
            },
            http: true,
        };
        let l7 = l7_set(&mut rng7, false);
        let l7exact = l7_set(&mut rng7x, true);
        let l4 = PolicySet {
            action: Action::Allow,
            policies: (0..d.n).map(|i| l4_policy(&mut rng4, i, net)).collect(),
            http: false,
        };
        let l4worst = PolicySet {
            action: Action::Deny,
            policies: (0..d.n).map(|i| worst_policy(i, net)).collect(),
            http: false,
        };

        let mut samples = Vec::new();
        for (kind, set) in [
            (SetKind::L7, &l7),
            (SetKind::L7exact, &l7exact),
            (SetKind::L4, &l4),
        ] {
            let http = kind.http();
            let idx = sampled_indexes(&mut rng_s, set.policies.len());
            for i in idx {
                let p = &set.policies[i];
                let r = rng_s.below(p.rules.len());
                let rule = &p.rules[r];
                let w = witness(rule, http, net);
                for (label, t, replayable) in near_misses(rule, &w, http, net) {
                    samples.push(sample(
                        set,
                        kind,
                        format!("{} rule {r}: {label}", p.key()),
                        t,
                        replayable,
                        None,
                    ));
                }
                samples.push(sample(
                    set,
                    kind,
                    format!("{} rule {r}", p.key()),
                    w,
                    true,
                    None,
                ));
            }
            // The load: allowed by the last policy (in Envoy's order), and matched by none.
            if let Some(last) = set.policies.last() {
                let w = witness(&last.rules[0], http, net);
                samples.push(sample(
                    set,
                    kind,
                    format!("{} rule 0 (the load's allowed request)", last.key()),
                    w.clone(),
                    true,
                    Some("bench-allow"),
                ));
                let mut none = w;
                none.principal = Some(OUTSIDER.into());
                if http {
                    none.method = Some("GET".into());
                    none.path = Some("/denied/by-none".into());
                    none.headers.clear();
                }
                samples.push(sample(
                    set,
                    kind,
                    "matched by no policy (the load's denied request)".into(),
                    none,
                    true,
                    Some("bench-deny"),
                ));
            }
        }
        // Worst case: a connection matching none (allowed after a full scan), the last
        // policy's last rule (denied after a full scan), and a few in between.
        let mut idx = sampled_indexes(&mut rng_s, l4worst.policies.len());
        idx.truncate(6);
        if let Some(last) = l4worst.policies.len().checked_sub(1) {
            idx.push(last);
        }
        idx.dedup();
        for i in idx {
            let p = &l4worst.policies[i];
            let r = rng_s.below(p.rules.len());
            let mut t = witness(&p.rules[r], false, net);
            t.principal = Some(format!("cluster.local/ns/w{i}-{r}-b/sa/p"));
            samples.push(sample(
                &l4worst,
                SetKind::L4worst,
                format!("{} rule {r}", p.key()),
                t.clone(),
                true,
                None,
            ));
            t.source_ip = net.outside_ip.to_string();
            samples.push(sample(
                &l4worst,
                SetKind::L4worst,
                format!("{} rule {r}: source outside ipBlocks", p.key()),
                t,
                true,
                None,
            ));
        }
        if let Some(last) = l4worst.policies.last() {
            let n = l4worst.policies.len() - 1;
            let mut t = witness(&last.rules[9], false, net);
            t.principal = Some(format!("cluster.local/ns/w{n}-9-c/sa/p"));
            samples.push(sample(
                &l4worst,
                SetKind::L4worst,
                format!("{} rule 9 (the load's denied connection)", last.key()),
                t.clone(),
                true,
                Some("bench-deny"),
            ));
            t.principal = Some(OUTSIDER.into());
            samples.push(sample(
                &l4worst,
                SetKind::L4worst,
                "matched by no policy (the load's allowed connection)".into(),
                t,
                true,
                Some("bench-allow"),
            ));
        }
        Generated {
            description: d.clone(),
            l7,
            l7exact,
            l4,
            l4worst,
            samples,
        }
    }

    pub fn set(&self, kind: SetKind) -> &PolicySet {
        match kind {
            SetKind::L7 => &self.l7,
            SetKind::L7exact => &self.l7exact,
            SetKind::L4 => &self.l4,
            SetKind::L4worst => &self.l4worst,
        }
    }

    /// The module's plugin configuration for a set (docs/configuration.md).
    pub fn plugin_config(&self, kind: SetKind) -> Value {
        let net = &self.description.net;
        let set = self.set(kind);
        match kind {
            SetKind::L7 | SetKind::L7exact => json!({
                "mode": "waypoint",
                "waypoint": { "name": "waypoint", "namespace": NAMESPACE },
                "services": [{
                    "name": SERVICE,
                    "namespace": NAMESPACE,
                    "hosts": [net.host],
                    "addresses": [net.l7_addr.to_string()],
                }],
                "policies": set.resources(),
            }),
            SetKind::L4 | SetKind::L4worst => json!({
                "mode": "ztunnel",
                "workloads": [{
                    "name": "bench-server",
                    "namespace": NAMESPACE,
                    "serviceAccount": "bench-server",
                    "labels": { WORKLOAD_LABEL.0: WORKLOAD_LABEL.1 },
                }],
                "policies": set.resources(),
            }),
        }
    }

    /// The samples of one set.
    pub fn samples_of(&self, kind: SetKind) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.set == kind)
    }

    /// The load's sample with `role` (`bench-allow` / `bench-deny`) in a set.
    pub fn bench_sample(&self, kind: SetKind, role: &str) -> Option<&Sample> {
        self.samples_of(kind).find(|s| s.role == Some(role))
    }

    /// Writes `description.json`, `samples.json` and, per set, `<set>-plugin.json` (the
    /// module's configuration), `<set>-rbac.json` (the RBAC filter's `typed_config`) and
    /// `<set>-rbac-indexed.json` (the same as a hand-indexed matcher, `native-indexed`).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = Vec::new();
        let mut put = |name: &str, v: &Value| -> Result<()> {
            let p = dir.join(name);
            std::fs::write(&p, serde_json::to_vec(v)?)
                .with_context(|| format!("writing {}", p.display()))?;
            written.push(p);
            Ok(())
        };
        put(
            "description.json",
            &serde_json::to_value(&self.description)?,
        )?;
        put("samples.json", &serde_json::to_value(&self.samples)?)?;
        for kind in SetKind::ALL {
            put(
                &format!("{}-plugin.json", kind.name()),
                &self.plugin_config(kind),
            )?;
            put(
                &format!("{}-rbac.json", kind.name()),
                &self.set(kind).envoy_rbac(),
            )?;
            put(
                &format!("{}-rbac-indexed.json", kind.name()),
                &super::indexed::envoy_rbac_indexed(self.set(kind)),
            )?;
        }
        Ok(written)
    }
}
