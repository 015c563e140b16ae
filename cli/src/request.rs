//! The HTTP part of a request given on the command line.

use anyhow::{anyhow, bail, Context, Result};
use authz_plugin::engine::{Claim, OwnedHttp};
use clap::Args;
use std::path::PathBuf;

/// `--method`, `--path`, `--host`, `--header`, `--jwt`: any of them makes the call an HTTP
/// request; none makes it a TCP connection.
#[derive(Debug, Clone, Default, Args)]
pub struct HttpArgs {
    /// The request method (default GET when any other HTTP flag is given).
    #[arg(long)]
    pub method: Option<String>,
    /// The `:path`, query included (default `/`).
    #[arg(long)]
    pub path: Option<String>,
    /// The `:authority` (default: the destination as dialled, with its port).
    #[arg(long)]
    pub host: Option<String>,
    /// A request header, `NAME=VALUE`; repeat for several, the same name repeated is several
    /// values of one header.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// A file holding the verified JWT payload (JSON or YAML), as Envoy's jwt_authn filter
    /// leaves it after verifying the token.
    #[arg(long, value_name = "FILE")]
    pub jwt: Option<PathBuf>,
}

impl HttpArgs {
    fn given(&self) -> bool {
        self.method.is_some()
            || self.path.is_some()
            || self.host.is_some()
            || !self.headers.is_empty()
            || self.jwt.is_some()
    }

    /// The request, or `None` for a TCP connection. `default_host` is what a client would
    /// send as `:authority` when `--host` is not given.
    pub fn request(&self, default_host: &str) -> Result<Option<OwnedHttp>> {
        if !self.given() {
            return Ok(None);
        }
        let mut headers = Vec::new();
        for h in &self.headers {
            let (name, value) = h
                .split_once('=')
                .ok_or_else(|| anyhow!("--header {h:?}: write NAME=VALUE"))?;
            if name.is_empty() {
                bail!("--header {h:?}: the header name is empty");
            }
            headers.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        }
        let jwt = match &self.jwt {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let value: serde_json::Value =
                    serde_norway::from_str(&text).with_context(|| {
                        format!("{}: not a JSON or YAML JWT payload", file.display())
                    })?;
                if !value.is_object() {
                    bail!("{}: a JWT payload is a mapping of claims", file.display());
                }
                Some(Claim::from_json(&value))
            }
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
