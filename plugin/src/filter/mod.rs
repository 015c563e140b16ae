//! The proxy-wasm layer: one module for both Envoy filters.
//!
//! Only a root context factory is registered, so the SDK asks the root's
//! [`RootContext::get_type`] which kind of stream context to create: `filter: http` (the
//! default for mode waypoint) gives HTTP contexts, `filter: network` (the default for mode
//! ztunnel) gives stream (TCP) contexts.
//!
//! * Layer 4 decides on the first `on_downstream_data` (or the first `on_upstream_data` for a
//!   server-first protocol), never in `on_new_connection`, when the peer certificate is not
//!   known yet. A deny closes the downstream connection and pauses, before any byte passes.
//! * Layer 7 decides in `on_http_request_headers`; a deny is a local `403` with body
//!   `RBAC: access denied`, as Envoy's RBAC filter answers.
//! * `on_configure` compiles the configuration; a rejected one is logged (naming policy and
//!   field) and refused, and the last good engine stays in force.
//! * No engine (never configured successfully): everything is denied (fail closed).

mod attributes;
#[cfg(feature = "fault-injection")]
mod fault;
mod observe;
mod proto;

use crate::engine::config::Filter;
use crate::engine::{Engine, NoteKind, Reason, Traffic, Verdict};
use attributes::HostAttributes;
use observe::Metrics;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};
use std::rc::Rc;

proxy_wasm::main! {{
    // No host calls here: Envoy restricts them during `_initialize`. The host's level is
    // read at configure.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(AuthzRoot::default()) });
}}

/// The response body of a Layer 7 deny, as Envoy's RBAC filter sends it.
const DENY_BODY: &[u8] = b"RBAC: access denied";

/// A compiled configuration and its metric ids, shared by the streams created under it.
struct Loaded {
    engine: Engine,
    metrics: Metrics,
}

impl Drop for Loaded {
    /// The last stream of a replaced configuration has ended: its counts still go out.
    fn drop(&mut self) {
        self.metrics.flush();
    }
}

impl Loaded {
    fn decide(&self, traffic: Traffic, http: bool) -> Verdict {
        let attrs = HostAttributes::new(&self.engine.config().jwt, http)
            .with_jwt_depth(self.engine.jwt_depth());
        let mut decision = self.engine.decide(traffic, &attrs);
        // A rule needed the JWT payload and it was unreadable: whatever the rules decided
        // without it, deny (a DENY that cannot be evaluated must not let the request through).
        if attrs.jwt_unreadable() && decision.verdict == Verdict::Allow {
            decision.verdict = Verdict::Deny;
            decision.reason = Reason::UnreadableJwt;
        }
        observe::observe(&self.engine, &self.metrics, traffic, &decision);
        decision.verdict
    }
}

/// Follows the host's log level so that debug lines cost nothing when Envoy runs at info.
fn sync_log_level() {
    match hostcalls::get_log_level() {
        Ok(level) => proxy_wasm::set_log_level(level),
        Err(_) => proxy_wasm::set_log_level(LogLevel::Info),
    }
}

#[derive(Default)]
struct AuthzRoot {
    loaded: Option<Rc<Loaded>>,
}

impl AuthzRoot {
    fn configure(&mut self, size: usize) -> Result<Loaded, String> {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(bytes)) if !bytes.is_empty() => bytes,
            Ok(_) => return Err("the plugin configuration is empty".to_string()),
            Err(status) => {
                return Err(format!(
                    "the plugin configuration is unreadable: {status:?}"
                ))
            }
        };
        // The bytes go as soon as the policies are compiled (see `Engine::from_json_bytes`).
        let engine = Engine::from_json_bytes(bytes).map_err(|e| e.to_string())?;
        let metrics = Metrics::define(&engine);
        Ok(Loaded { engine, metrics })
    }
}

impl Context for AuthzRoot {}

impl RootContext for AuthzRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        sync_log_level();
        match self.configure(plugin_configuration_size) {
            Ok(loaded) => {
                let config = loaded.engine.config();
                log::info!(
                    "authz: configured mode={} filter={} policies={}",
                    config.mode.as_str(),
                    match config.filter {
                        Filter::Http => "http",
                        Filter::Network => "network",
                    },
                    loaded.engine.policies().len()
                );
                for note in loaded.engine.notes() {
                    match note.kind {
                        NoteKind::Converted => log::warn!("authz: load: {note}"),
                        _ => log::info!("authz: load: {note}"),
                    }
                }
                // Counts of the configuration being replaced go out now; streams still
                // running under it flush the rest when they end (`Loaded::drop`).
                if let Some(previous) = &self.loaded {
                    previous.metrics.flush();
                }
                self.loaded = Some(Rc::new(loaded));
                if let Err(status) = hostcalls::set_tick_period(observe::FLUSH_PERIOD) {
                    log::warn!(
                        "authz: no timer ({status:?}): counters move only at reconfiguration"
                    );
                }
                true
            }
            Err(message) => {
                if self.loaded.is_some() {
                    log::error!(
                        "authz: configuration rejected, keeping the previous one: {message}"
                    );
                } else {
                    log::error!("authz: configuration rejected: {message}");
                }
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(loaded) = &self.loaded {
            loaded.metrics.flush();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        // Until configured, HTTP: Envoy configures before any stream arrives.
        match self.loaded.as_ref().map(|l| l.engine.config().filter) {
            Some(Filter::Network) => Some(ContextType::StreamContext),
            Some(Filter::Http) | None => Some(ContextType::HttpContext),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AuthzHttp {
            loaded: self.loaded.clone(),
        }))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(AuthzStream {
            loaded: self.loaded.clone(),
            decided: None,
        }))
    }
}

/// Layer 7: one decision per request.
struct AuthzHttp {
    loaded: Option<Rc<Loaded>>,
}

impl Context for AuthzHttp {}

impl HttpContext for AuthzHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "fault-injection")]
        fault::on_request(self.get_http_request_header(fault::HEADER).as_deref());
        let verdict = match &self.loaded {
            Some(loaded) => loaded.decide(Traffic::Request, true),
            None => {
                log::error!("authz: deny policy=- rule=- reason=not-configured layer=7");
                Verdict::Deny
            }
        };
        match verdict {
            Verdict::Allow => Action::Continue,
            Verdict::Deny => {
                self.send_http_response(403, Vec::new(), Some(DENY_BODY));
                Action::Pause
            }
        }
    }
}

/// Layer 4: one decision per connection, on its first data.
struct AuthzStream {
    loaded: Option<Rc<Loaded>>,
    decided: Option<Verdict>,
}

impl AuthzStream {
    fn enforce(&mut self) -> Action {
        let verdict = match self.decided {
            Some(verdict) => verdict,
            None => {
                let verdict = match &self.loaded {
                    Some(loaded) => loaded.decide(Traffic::Connection, false),
                    None => {
                        log::error!("authz: deny policy=- rule=- reason=not-configured layer=4");
                        Verdict::Deny
                    }
                };
                self.decided = Some(verdict);
                if verdict == Verdict::Deny {
                    self.close_downstream();
                }
                verdict
            }
        };
        match verdict {
            Verdict::Allow => Action::Continue,
            Verdict::Deny => Action::Pause,
        }
    }
}

impl Context for AuthzStream {}

impl StreamContext for AuthzStream {
    fn on_new_connection(&mut self) -> Action {
        // The TLS handshake has not completed yet: no peer certificate to decide on.
        Action::Continue
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "fault-injection")]
        fault::on_data(self.get_downstream_data(0, _data_size).as_deref());
        self.enforce()
    }

    fn on_upstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        // Server-first protocols: the upstream speaks before the client sent a byte.
        self.enforce()
    }
}
