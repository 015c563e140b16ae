//! Configuration errors: each names the policy, the field and the offending value.

use std::fmt;

/// A configuration that cannot be enforced as written. The whole configuration is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// What kind of mistake: for programs and tests, which should not match on the wording.
    pub kind: ErrorKind,
    /// `namespace/name` of the policy, when the error is inside one.
    pub policy: Option<String>,
    /// Dotted path of the field, e.g. `spec.rules[0].from[0].source.ipBlocks[1]`.
    pub field: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

/// The kinds of [`ConfigError`]. The message says the specifics; the kind is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The configuration is not JSON.
    Syntax,
    /// A field the API does not have (a misspelt field would otherwise be ignored).
    UnknownField,
    /// A value of the wrong JSON type (a number where a string belongs, a rule that is null).
    WrongType,
    /// A required field, or a part a policy needs (rules for DENY), is missing.
    Missing,
    /// An empty value, list or entry where the API forbids one.
    Empty,
    /// A value the field does not accept: not one of its values, not an IP address, CIDR
    /// block, port, path template, attribute name, trust domain or service account.
    InvalidValue,
    /// Fields that cannot be set together, or a field the policy's action or the mode rules out.
    Conflict,
    /// Valid in some Istio API version or proxy, but not supported where it is written.
    Unsupported,
    /// More than a bound allows (rules, entries, claim path keys, indexed rules).
    TooMany,
    /// The same policy twice.
    Duplicate,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownField => "unknown-field",
            ErrorKind::WrongType => "wrong-type",
            ErrorKind::Missing => "missing",
            ErrorKind::Empty => "empty",
            ErrorKind::InvalidValue => "invalid-value",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::TooMany => "too-many",
            ErrorKind::Duplicate => "duplicate",
        }
    }
}

impl ConfigError {
    // Not inlined: there are a hundred call sites, and each inlined copy of the two String
    // conversions cost the module bytes (README, "Module size").
    #[inline(never)]
    pub fn new(
        kind: ErrorKind,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            kind,
            policy: None,
            field: field.into(),
            message: message.into(),
        }
    }

    #[inline(never)]
    pub fn in_policy(mut self, policy: &str) -> ConfigError {
        if self.policy.is_none() {
            self.policy = Some(policy.to_string());
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.policy {
            Some(policy) => write!(f, "policy {policy}: {}: {}", self.field, self.message),
            None if self.field.is_empty() => write!(f, "{}", self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Something accepted at load that the user should know: a policy converted to fail safe at
/// this enforcement point, or accepted but not attached here. Reported once, at load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoadNote {
    /// `namespace/name`.
    pub policy: String,
    pub kind: NoteKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteKind {
    /// Enforced, but not exactly as written (fail-safe conversion).
    Converted,
    /// Accepted, not applied by this proxy.
    NotAttached,
    /// Enforced as written; worth knowing (e.g. CUSTOM without an authorizer).
    Info,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Converted => "converted",
            NoteKind::NotAttached => "not-attached",
            NoteKind::Info => "info",
        }
    }
}

impl fmt::Display for LoadNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {} ({}): {}",
            self.policy,
            self.kind.as_str(),
            self.message
        )
    }
}
