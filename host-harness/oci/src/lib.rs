//! Shipping the module as an OCI artifact that Istio's `WasmPlugin` and Envoy Gateway's
//! `EnvoyExtensionPolicy` pull (istio/istio `pkg/wasm/imagefetcher.go`,
//! envoyproxy/gateway `internal/wasm/imagefetcher.go`).
//!
//! - [`layout`]: a byte-reproducible OCI image layout (`oci-layout`, `index.json`,
//!   `blobs/sha256/…`) holding one image manifest whose single `tar+gzip` layer contains
//!   `plugin.wasm` — the "compat" format both consumers accept — and a tarball of it.
//! - [`check`]: the pull rules of Istio's (and Envoy Gateway's copied) image fetcher, applied to
//!   a layout or a registry: which images they accept, which module they extract, and which
//!   checksum `sha256:` is compared with.
//! - [`registry`]: a loopback-only registry client (plain HTTP, Distribution API v2), a
//!   throwaway Debian `docker-registry`, and `skopeo` pushes.
//! - [`variants`]: deliberately wrong images (uncompressed layer, CNCF artifact, wrong file
//!   name, …) for the checker's negative tests.
//! - [`module`]: compiles the module in Wasmtime and checks its proxy-wasm ABI surface.

pub mod check;
pub mod layout;
pub mod module;
pub mod registry;
pub mod time;
pub mod variants;

use anyhow::{anyhow, bail, Result};
use authz_render::is_sha256_hex;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image configuration (the config blob of the compat image; never read by Istio/EG).
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The only layer type the compat path of Istio's and Envoy Gateway's fetcher accepts.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// An uncompressed OCI layer (what `buildah commit` writes by default): rejected by both.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The layer of the Docker path of the fetcher.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// solo.io "oci" variant: the raw module as a layer (the fetcher's third path).
pub const SOLO_WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// solo.io "oci" variant: the runtime configuration layer.
pub const SOLO_CONFIG_LAYER: &str = "application/vnd.module.wasm.config.v1+json";
/// CNCF TAG-Runtime Wasm OCI artifact: config media type (not accepted by Istio/EG).
pub const CNCF_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// CNCF TAG-Runtime Wasm OCI artifact: layer media type (not accepted by Istio/EG).
pub const CNCF_WASM_LAYER: &str = "application/wasm";

/// The file name the compat path looks for (by basename) inside the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Annotation naming the tag of a manifest in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Our annotation recording the inner module's digest (the value `sha256:` wants for an
/// `http(s)://` URL, and what Envoy Gateway hands to Envoy after extracting it).
pub const MODULE_DIGEST_ANNOTATION: &str = "io.github.istio-authz-wasm.module.digest";

/// Lower-case hex sha256 of `bytes` (64 characters, no prefix).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` of `bytes`, the OCI digest form.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// The hex part of a `sha256:<hex>` digest, checked (64 lower-case hex characters).
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| anyhow!("{digest:?} is not a sha256 digest (sha256:<64 hex>)"))?;
    if !is_sha256_hex(hex) {
        bail!("{digest:?} is not a sha256 digest (sha256:<64 hex>)");
    }
    Ok(hex)
}

/// JSON with object keys sorted, no whitespace, no trailing newline: the exact bytes whose
/// sha256 is a manifest's digest. Independent of serde_json's `preserve_order` feature.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
