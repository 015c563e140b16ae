//! The authorization engine: host-agnostic, no proxy-wasm types.
//!
//! The flow is parse → compile → evaluate:
//! * [`config`] and [`policy`] parse the plugin configuration and the AuthorizationPolicy API
//!   and validate them as istiod's admission does (a bad configuration is rejected whole);
//! * [`compile`] binds the policies to the enforcement point (`ztunnel` or `waypoint`),
//!   converts what that point cannot see in the fail-safe direction, and indexes the rules;
//! * [`evaluate`] turns [`Attributes`] into a [`Decision`], with no parsing and no heap
//!   allocation on the way, and explains it on request.

pub mod attributes;
pub mod compile;
pub mod config;
pub mod decision;
pub mod error;
pub mod evaluate;
mod field;
mod hash;
mod intern;
pub mod json;
pub mod matcher;
pub mod policy;
mod policy_stream;
mod stream;

pub use attributes::{Attributes, Claim, HeaderValues, OwnedAttributes, OwnedHttp};
pub use compile::{Engine, PolicyInfo};
pub use config::{Filter, Mode, PluginConfig};
pub use decision::{Decision, DryRun, PolicyId, Reason, RuleRef, Verdict};
pub use error::{ConfigError, ErrorKind, LoadNote, NoteKind};
pub use evaluate::{Explanation, NearMiss, Traffic};
