//! What a connection or request through the module produced, and how the host fails.

use authz_plugin::engine::Verdict;
use std::fmt;

/// One captured log line: proxy-wasm level (0 trace … 5 critical) and message.
pub type LogLine = (u32, String);

pub fn level_name(level: u32) -> &'static str {
    match level {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        _ => "critical",
    }
}

fn write_logs(f: &mut fmt::Formatter<'_>, logs: &[LogLine]) -> fmt::Result {
    if logs.is_empty() {
        return write!(f, "\n  (the module logged nothing)");
    }
    write!(f, "\n  module log:")?;
    for (level, line) in logs {
        write!(f, "\n    [{}] {}", level_name(*level), line)?;
    }
    Ok(())
}

/// What the dry-run policies would have decided, as the module logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmDryRun {
    pub verdict: Verdict,
    /// `namespace/name`; `None` = decided by default.
    pub policy: Option<String>,
}

/// The result of one connection or request driven through the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmOutcome {
    /// What Envoy would have done: at Layer 7 `Deny` only for a local `403` with body
    /// `RBAC: access denied`; at Layer 4 `Deny` only for `close_stream(DOWNSTREAM)` before
    /// the first data was continued.
    pub verdict: Verdict,
    /// The deciding policy (`namespace/name`) from the module's decision log line; `None`
    /// when decided by default (or when no decision line was logged, see `reason`).
    pub policy: Option<String>,
    /// The deciding rule's index, from the decision line.
    pub rule: Option<u32>,
    /// The decision line's `reason=`; `None` if the module logged no decision line.
    pub reason: Option<String>,
    /// The verdict the decision line states (should equal `verdict`).
    pub logged_verdict: Option<Verdict>,
    /// AUDIT policies the module logged as matching.
    pub audit: Vec<String>,
    /// The dry-run result the module logged.
    pub dry_run: Option<WasmDryRun>,
    /// Layer 7: the local reply's status, body, details and headers.
    pub status: Option<u32>,
    pub body: Vec<u8>,
    pub details: Vec<u8>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    /// Layer 4: the module closed the downstream connection.
    pub closed: bool,
    /// Every line the module logged during this stream.
    pub logs: Vec<LogLine>,
    /// The stream's context id (never reused within a VM).
    pub context_id: u32,
}

/// The parsed `authz:` lines of one stream.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecisionLog {
    pub verdict: Option<Verdict>,
    pub policy: Option<String>,
    pub rule: Option<u32>,
    pub reason: Option<String>,
    pub audit: Vec<String>,
    pub dry_run: Option<WasmDryRun>,
    /// How many decision lines (not audit / dry-run) the stream logged.
    pub decisions: usize,
}

fn verdict(token: &str) -> Option<Verdict> {
    match token {
        "allow" => Some(Verdict::Allow),
        "deny" => Some(Verdict::Deny),
        _ => None,
    }
}

fn field<'a>(tokens: &[&'a str], key: &str) -> Option<&'a str> {
    tokens
        .iter()
        .find_map(|t| t.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn policy(tokens: &[&str]) -> Option<String> {
    field(tokens, "policy")
        .filter(|p| *p != "-")
        .map(str::to_string)
}

/// Parses the module's decision lines:
/// `authz: <allow|deny> policy=<ns/name|-> rule=<n|-> reason=<token> layer=<4|7>`,
/// `authz: audit policy=<ns/name> …`, `authz: dry-run <allow|deny> policy=… …`.
pub fn parse_decision_log(logs: &[LogLine]) -> DecisionLog {
    let mut out = DecisionLog::default();
    for (_, line) in logs {
        let Some(rest) = line.strip_prefix("authz: ") else {
            continue;
        };
        let tokens: Vec<&str> = rest.split_whitespace().collect();
        match tokens.first().copied() {
            Some("audit") => {
                if let Some(p) = policy(&tokens) {
                    out.audit.push(p);
                }
            }
            Some("dry-run") => {
                if let Some(v) = tokens.get(1).and_then(|t| verdict(t)) {
                    out.dry_run = Some(WasmDryRun {
                        verdict: v,
                        policy: policy(&tokens),
                    });
                }
            }
            Some(t) => {
                if let Some(v) = verdict(t) {
                    // Only lines that carry the decision fields count (not "authz: configured …").
                    if field(&tokens, "policy").is_some() {
                        out.decisions += 1;
                        out.verdict = Some(v);
                        out.policy = policy(&tokens);
                        out.rule = field(&tokens, "rule").and_then(|r| r.parse().ok());
                        out.reason = field(&tokens, "reason").map(str::to_string);
                    }
                }
            }
            None => {}
        }
    }
    out
}

/// How driving the module can fail. Each is what Envoy would refuse or treat as a failed VM;
/// none of them is a decision.
#[derive(Debug, Clone)]
pub enum HostError {
    /// The module cannot be loaded, linked or instantiated as Envoy would.
    Load(String),
    /// The module trapped (a Rust panic is an `unreachable` trap). The VM is discarded.
    Trap {
        callback: String,
        message: String,
        logs: Vec<LogLine>,
    },
    /// `proxy_on_vm_start` returned false.
    VmStartRejected { phase: String, logs: Vec<LogLine> },
    /// `proxy_on_configure` returned false: Envoy rejects the configuration.
    ConfigureRejected { phase: String, logs: Vec<LogLine> },
    /// A callback answered something Envoy would not accept, or left the stream in a state
    /// that is neither an allow nor the RBAC deny.
    BadAction {
        callback: String,
        detail: String,
        logs: Vec<LogLine>,
    },
    /// The VM failed earlier and was discarded.
    VmFailed { cause: String },
    /// The harness was asked for something it cannot drive.
    Usage(String),
}

impl HostError {
    /// The module's log lines attached to the error.
    pub fn logs(&self) -> &[LogLine] {
        match self {
            HostError::Trap { logs, .. }
            | HostError::VmStartRejected { logs, .. }
            | HostError::ConfigureRejected { logs, .. }
            | HostError::BadAction { logs, .. } => logs,
            _ => &[],
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Load(m) => write!(f, "cannot load the module: {m}"),
            HostError::Trap {
                callback,
                message,
                logs,
            } => {
                write!(
                    f,
                    "the module trapped in {callback} (Envoy marks the VM failed): {message}"
                )?;
                write_logs(f, logs)
            }
            HostError::VmStartRejected { phase, logs } => {
                write!(f, "proxy_on_vm_start returned false ({phase} VM)")?;
                write_logs(f, logs)
            }
            HostError::ConfigureRejected { phase, logs } => {
                write!(
                    f,
                    "proxy_on_configure returned false ({phase}): Envoy rejects the configuration"
                )?;
                write_logs(f, logs)
            }
            HostError::BadAction {
                callback,
                detail,
                logs,
            } => {
                write!(f, "{callback}: {detail}")?;
                write_logs(f, logs)
            }
            HostError::VmFailed { cause } => {
                write!(f, "the VM failed earlier and was discarded: {cause}")
            }
            HostError::Usage(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for HostError {}
