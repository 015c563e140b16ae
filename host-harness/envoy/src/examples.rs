//! The example configurations of deploy/envoy/, made runnable in a test: the file paths they
//! name (Istio's `/etc/certs/*`, `/etc/envoy/authz_plugin.wasm`) are rewritten to files the
//! test made, and any other text the test asks for (addresses, ports) is replaced.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::TestEnv;
use authz_fixture::workspace::repo_root;

/// The example's path in the repository.
pub fn example_path(example: &str) -> PathBuf {
    repo_root().join("deploy/envoy").join(example)
}

/// Writes `example` (a file name under deploy/envoy/) into the test's directory with:
/// the certificate paths pointing at `identity`'s certificate and key (a SPIFFE principal)
/// and the test CA, the module path at `wasm`, and each `(from, to)` of `replace` applied.
/// Fails if a path under `/etc/` is left.
pub fn localize(
    env: &TestEnv,
    example: &str,
    identity: &str,
    wasm: &Path,
    replace: &[(&str, &str)],
) -> Result<PathBuf> {
    let src = example_path(example);
    let mut text =
        std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
    let id = env.pki.workload(identity)?;
    for (from, to) in [
        ("/etc/envoy/authz_plugin.wasm", wasm.display().to_string()),
        (
            "/etc/certs/cert-chain.pem",
            id.cert_file.display().to_string(),
        ),
        ("/etc/certs/key.pem", id.key_file.display().to_string()),
        (
            "/etc/certs/root-cert.pem",
            env.pki.ca_file().display().to_string(),
        ),
    ] {
        text = text.replace(from, &to);
    }
    for (from, to) in replace {
        if !text.contains(from) {
            bail!("{example}: nothing to replace for {from:?}");
        }
        text = text.replace(from, to);
    }
    if let Some(line) = text.lines().find(|l| l.contains("/etc/")) {
        bail!("{example}: a path was left unrewritten: {line}");
    }
    let out = env.dir().join(example);
    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}
