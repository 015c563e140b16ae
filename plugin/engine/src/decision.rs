//! What the engine answers: the verdict and why.

use std::fmt;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of a policy in [`crate::Engine::policies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId(pub u32);

/// One rule of one policy: `spec.rules[rule]` of `policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    pub policy: PolicyId,
    pub rule: u32,
}

/// Why the verdict is what it is. Each variant is one step of Istio's decision procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A CUSTOM rule matched and no external authorizer is configured: denied (fail-safe).
    Custom(RuleRef),
    /// "If there are any DENY policies that match the request, deny the request."
    Denied(RuleRef),
    /// "If there are no ALLOW policies for the workload, allow the request."
    NoAllowPolicies,
    /// "If any of the ALLOW policies match the request, allow the request."
    Allowed(RuleRef),
    /// "Deny the request": ALLOW policies apply and none matched.
    NoAllowMatched,
    /// ztunnel refuses, in its TLS handshake, a peer of a foreign trust domain.
    UntrustedPeer,
    /// The destination is not a workload this ztunnel-mode proxy enforces for.
    UnknownDestination,
    /// The proxy established two different caller identities (the waypoint's filter state
    /// and a peer certificate): no policy can say which one it meant, so deny.
    ConflictingIdentity,
    /// No DENY rule matched, but one tests the direct peer address (`ipBlocks`,
    /// `source.ip`) and the proxy replaced that address with a forwarded one, so the rule
    /// cannot be evaluated: deny rather than let a possibly denied peer through.
    UnknownSource,
    /// A rule needed the verified JWT payload and the proxy's copy of it could not be read:
    /// denied, since a DENY that cannot be evaluated must not let the request through.
    UnreadableJwt,
}

impl Reason {
    /// A stable token for logs and tools (`deny-matched`, `no-allow-matched`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Custom(_) => "custom-matched",
            Reason::Denied(_) => "deny-matched",
            Reason::NoAllowPolicies => "no-allow-policies",
            Reason::Allowed(_) => "allow-matched",
            Reason::NoAllowMatched => "no-allow-matched",
            Reason::UntrustedPeer => "untrusted-peer",
            Reason::UnknownDestination => "unknown-destination",
            Reason::ConflictingIdentity => "conflicting-identity",
            Reason::UnknownSource => "unknown-source-address",
            Reason::UnreadableJwt => "unreadable-jwt",
        }
    }

    /// The policy that decided, if one did.
    pub fn rule(&self) -> Option<RuleRef> {
        match *self {
            Reason::Custom(r) | Reason::Denied(r) | Reason::Allowed(r) => Some(r),
            _ => None,
        }
    }
}

/// What the dry-run (`istio.io/dry-run: "true"`) policies would have decided, alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DryRun {
    pub verdict: Verdict,
    pub reason: Reason,
}

/// The engine's answer for one connection or request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    /// AUDIT policies whose rules matched, in policy order (never changes the verdict).
    pub audit: Vec<PolicyId>,
    /// Present when some dry-run policy applies to this traffic.
    pub dry_run: Option<DryRun>,
}
