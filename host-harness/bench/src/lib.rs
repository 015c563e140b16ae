//! The benchmark's generator and runner: the module in Envoy against Envoy's native RBAC
//! filter, from one policy to ten thousand.
//!
//! * [`gen`] turns one seeded [`Description`] into N AuthorizationPolicies in two forms — the
//!   module's plugin configuration and the Envoy RBAC filter configuration istiod would produce
//!   for the same policies ([`model`]) — for three sets: Layer 7 (waypoint), Layer 4 (ztunnel)
//!   and ztunnel's worst-case shape; plus sample traffic with the decision a small reference
//!   model expects.
//! * [`run`] starts the Envoys on loopback, checks that the module and native RBAC decide every
//!   replayable sample identically, drives load through them side by side with `wrk`, and
//!   writes the results (`bench/run.sh` is the documented entry point).
//!
//! `authz-harness bench-gen --n N --seed S --out DIR` is [`cli`]; `authz-harness bench-run …`
//! is [`run_cli`].

pub mod check;
pub mod envoy;
pub mod gen;
pub mod memory;
pub mod model;
pub mod run;
pub mod shapes;
pub mod soak;

pub use gen::{Description, Generated, Sample, SetKind};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};

const USAGE: &str = "\
authz-harness bench-gen --n N [--seed S] --out DIR [--l4-port P] [--no-seeds]

Writes N generated AuthorizationPolicies in two forms into DIR, for three sets (l7: waypoint
ALLOW policies attached by targetRefs to one Service; l4: ztunnel ALLOW policies attached by
selector; l4worst: ztunnel's worst case, root-namespace DENY policies of 10 rules):
  <set>-plugin.json   the module's plugin configuration (docs/configuration.md)
  <set>-rbac.json     the typed_config of the Envoy RBAC filter istiod would generate
  samples.json        sample requests/connections with the expected decision
  description.json    the description they were generated from
With N = 1 the l7 set is the seeds' waypoint policy (policies/bookinfo/productpage-waypoint.yaml)
unless --no-seeds is given. --l4-port is the port the Layer 4 listeners use (default 19081).
";

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String> {
    it.next().ok_or_else(|| anyhow!("{flag} needs a value"))
}

/// `authz-harness bench-gen` (`args` without the subcommand name).
pub fn cli(args: &[String]) -> Result<ExitCode> {
    let mut n = None;
    let mut seed = 1u64;
    let mut out = None;
    let mut seeds = true;
    let mut l4_port = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--n" => n = Some(value(&mut it, "--n")?.parse::<usize>().context("--n")?),
            "--seed" => seed = value(&mut it, "--seed")?.parse().context("--seed")?,
            "--out" => out = Some(PathBuf::from(value(&mut it, "--out")?)),
            "--l4-port" => {
                l4_port = Some(value(&mut it, "--l4-port")?.parse().context("--l4-port")?)
            }
            "--no-seeds" => seeds = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let (Some(n), Some(out)) = (n, out) else {
        bail!("--n and --out are required\n\n{USAGE}");
    };
    if n == 0 {
        bail!("--n must be at least 1");
    }
    let mut d = Description::new(n, seed);
    d.seeds_at_one = seeds;
    if let Some(p) = l4_port {
        d.net.l4_port = p;
    }
    let g = Generated::new(&d);
    let files = g.write(&out)?;
    for kind in SetKind::ALL {
        let set = g.set(kind);
        let samples = g.samples_of(kind).count();
        println!(
            "{}: {} policies, {} Envoy RBAC policies (rules), {samples} samples",
            kind.name(),
            set.policies.len(),
            set.rule_count()
        );
    }
    println!("wrote {} files to {}", files.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

/// `authz-harness bench-run` (`args` without the subcommand name): see [`run::USAGE`].
pub fn run_cli(args: &[String]) -> Result<ExitCode> {
    run::cli(args)
}
