//! The HTTP part of a simulated call.

use anyhow::{bail, Result};
use authz_plugin::engine::{Claim, OwnedHttp};
use serde_json::Value;

/// A request as a person describes it; every field left out takes the value a client such as
/// curl would send. `None` of everything is a TCP connection, not a request (see
/// [`HttpRequest::is_request`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRequest {
    /// Default `GET`.
    pub method: Option<String>,
    /// The `:path`, query included; default `/`.
    pub path: Option<String>,
    /// The `:authority`; default the destination as dialled, with its port.
    pub host: Option<String>,
    /// Name and value, one entry per occurrence: a name given twice is a header with two values.
    pub headers: Vec<(String, String)>,
    /// The verified JWT payload, as Envoy's jwt_authn filter leaves it.
    pub jwt: Option<Value>,
}

impl HttpRequest {
    /// Whether anything makes this an HTTP request.
    pub fn is_request(&self) -> bool {
        self.method.is_some()
            || self.path.is_some()
            || self.host.is_some()
            || !self.headers.is_empty()
            || self.jwt.is_some()
    }

    /// The engine's request, or `None` for a TCP connection.
    pub fn to_http(&self, default_host: &str) -> Result<Option<OwnedHttp>> {
        if !self.is_request() {
            return Ok(None);
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            if name.is_empty() {
                bail!("a header name is empty (value {value:?})");
            }
            headers.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        }
        let jwt = match &self.jwt {
            Some(value) if value.is_object() => Some(Claim::from_json(value)),
            Some(_) => bail!("a JWT payload is a mapping of claims"),
            None => None,
        };
        let method = self.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let path = self.path.as_deref().unwrap_or("/");
        let host = self.host.as_deref().unwrap_or(default_host);
        Ok(Some(OwnedHttp::new(
            method.as_bytes(),
            path.as_bytes(),
            host.as_bytes(),
            headers,
            jwt,
        )))
    }
}
