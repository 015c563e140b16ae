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
//! * [`soak`]: Envoy with the module under a steady load while its configuration is replaced,
//!   checking every response and that Envoy's memory stays flat.

pub mod check;
pub mod envoy;
pub mod gen;
pub mod indexed;
pub mod indexed_report;
pub mod memory;
pub mod model;
pub mod run;
pub mod shapes;
pub mod soak;
pub mod workers;

pub use gen::{Description, Generated, Sample, SetKind};
