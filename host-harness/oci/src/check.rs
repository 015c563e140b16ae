//! The pull rules of Istio's Wasm image fetcher, which Envoy Gateway copied unchanged
//! (istio/istio `pkg/wasm/imagefetcher.go` `PrepareFetch`, `pkg/wasm/cache.go`), applied to an OCI layout or a registry.
//!
//! Encoded from (keep in step with upstream):
//! - istio/istio `pkg/wasm/imagefetcher.go`: `PrepareFetch`, `extractDockerImage`,
//!   `extractOCIStandardImage`, `extractWasmPluginBinary`, `extractOCIArtifactImage`;
//! - istio/istio `pkg/wasm/cache.go`: `getOrFetch` (checksum = the image manifest's digest for
//!   `oci://`, from `sha256` or else a `@sha256:` in the URL; compared before the layers are
//!   read), `isValidWasmBinary` (≥ 8 bytes, `\0asm` magic);
//! - envoyproxy/gateway `internal/wasm/imagefetcher.go` (a copy of the above);
//! - go-containerregistry `remote.Descriptor.Image()`: an index is resolved to its
//!   `linux/amd64` child (a child without a platform counts as `linux/amd64`), and the digest
//!   compared is the child's.
//!
//! The rules, in order:
//! 1. Docker schema 2 manifest → the **last** layer must be
//!    `application/vnd.docker.image.rootfs.diff.tar.gzip`.
//! 2. Otherwise ("compat") → the **last** layer must be
//!    `application/vnd.oci.image.layer.v1.tar+gzip`; gunzip, untar, the first entry whose
//!    basename is `plugin.wasm` is the module.
//! 3. If 2 failed ("oci") → exactly two layers, one of them
//!    `application/vnd.module.wasm.content.layer.v1+wasm`, whose bytes are the module.
//! 4. The module must be at least 8 bytes and start with `\0asm`; at most 256 MiB (Istio's
//!    `ISTIO_WASM_MAX_BINARY_SIZE_BYTES` default, Envoy Gateway's fixed limit).
//!
//! Error texts follow Istio's, so a failure here reads like the istio-agent log line.

use super::{
    digest, sha256_hex, DOCKER_LAYER_TAR_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
    OCI_LAYER_TAR_GZIP, PLUGIN_FILE, REF_NAME, SOLO_WASM_LAYER,
};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest module the consumers take (256 MiB).
pub const MAX_MODULE_SIZE: usize = 256 << 20;

/// A manifest as served: its exact bytes and the media type the server declared
/// (`Content-Type`, or the layout descriptor's `mediaType`).
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
}

/// Where images come from: a registry repository or a local OCI layout.
pub trait ImageSource {
    /// How to name it in messages, e.g. `127.0.0.1:5000/authz-plugin` (no scheme).
    fn name(&self) -> String;
    /// The manifest for a tag or a `sha256:` digest.
    fn manifest(&mut self, reference: &str) -> Result<RawManifest>;
    /// A blob by digest, verified against it.
    fn blob(&mut self, digest: &str) -> Result<Vec<u8>>;
}

/// Which path of the fetcher accepted the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Docker schema 2, last layer `…docker.image.rootfs.diff.tar.gzip`.
    Docker,
    /// OCI manifest, last layer `…oci.image.layer.v1.tar+gzip` (what we ship).
    Compat,
    /// OCI manifest with two layers, one of them the raw module (solo.io "oci" variant).
    SoloOci,
}

/// An accepted image.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Hex sha256 of the image manifest actually used (the index's child, if an index).
    pub manifest_digest: String,
    /// Set when the reference named an index: its digest (hex).
    pub index_digest: Option<String>,
    pub variant: Variant,
    pub module: Vec<u8>,
}

impl Fetched {
    pub fn module_sha256(&self) -> String {
        sha256_hex(&self.module)
    }
}

/// Why the fetcher would refuse (Istio's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError(pub String);

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FetchError {}

/// The `oci://` URL Istio would name in its messages.
pub fn url(source: &dyn ImageSource, reference: &str) -> String {
    if reference.starts_with("sha256:") {
        format!("oci://{}@{reference}", source.name())
    } else {
        format!("oci://{}:{reference}", source.name())
    }
}

/// Fetches `reference` (a tag or a `sha256:` digest) from `source` the way istio-agent and
/// Envoy Gateway do. `expected_sha256` is the plugin's `sha256` field (64 hex); when it is
/// `None` and `reference` is a digest, that digest is the expected checksum, as in Istio.
pub fn fetch(
    source: &mut dyn ImageSource,
    reference: &str,
    expected_sha256: Option<&str>,
) -> Result<Fetched, FetchError> {
    let url = url(source, reference);
    let fail = |e: anyhow::Error| FetchError(format!("could not fetch Wasm OCI image: {e:#}"));

    // remote.Get + desc.Image(): an index resolves to its linux/amd64 child.
    let top = source
        .manifest(reference)
        .map_err(|e| fail(e.context("could not fetch manifest")))?;
    if reference.starts_with("sha256:") && digest(&top.bytes) != reference {
        return Err(fail(anyhow!(
            "manifest digest {} does not match the reference {reference}",
            digest(&top.bytes)
        )));
    }
    let top_json: Value = serde_json::from_slice(&top.bytes)
        .map_err(|e| fail(anyhow!("could not fetch image: manifest is not JSON: {e}")))?;
    let declared = top
        .media_type
        .clone()
        .or_else(|| {
            top_json
                .get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let (manifest_bytes, manifest, index_digest) =
        if declared == OCI_INDEX || declared == DOCKER_MANIFEST_LIST {
            let child = linux_amd64_child(&top_json).ok_or_else(|| {
                fail(anyhow!(
                    "could not fetch image: no child with platform linux/amd64 in index {url}"
                ))
            })?;
            let m = source
                .manifest(&child)
                .map_err(|e| fail(e.context("could not fetch image")))?;
            if digest(&m.bytes) != child {
                return Err(fail(anyhow!(
                    "could not fetch image: child manifest does not match its digest {child}"
                )));
            }
            let j: Value = serde_json::from_slice(&m.bytes)
                .map_err(|e| fail(anyhow!("could not fetch image: manifest is not JSON: {e}")))?;
            (m.bytes, j, Some(sha256_hex(&top.bytes)))
        } else {
            (top.bytes, top_json, None)
        };
    let actual = sha256_hex(&manifest_bytes);

    // cache.go getOrFetch: the checksum is compared before any layer is downloaded.
    let expected = match expected_sha256 {
        Some(e) if !e.is_empty() => Some(e.to_string()),
        _ => reference.strip_prefix("sha256:").map(str::to_string),
    };
    if let Some(expected) = expected {
        if expected != actual {
            return Err(FetchError(format!(
                "module downloaded from {url} has checksum {actual}, which does not match: {expected}"
            )));
        }
    }

    let module = extract(source, &manifest)
        .map_err(|e| FetchError(format!("could not fetch Wasm binary: {e}")))?;
    if !is_valid_wasm_binary(&module.1) {
        return Err(FetchError(format!(
            "fetched Wasm binary from {url} is invalid"
        )));
    }
    if module.1.len() > MAX_MODULE_SIZE {
        return Err(FetchError(format!(
            "fetched Wasm binary from {url} is {} bytes, over the {MAX_MODULE_SIZE}-byte limit",
            module.1.len()
        )));
    }
    Ok(Fetched {
        manifest_digest: actual,
        index_digest,
        variant: module.0,
        module: module.1,
    })
}

/// `isValidWasmBinary`: at least the 8-byte header, starting with `\0asm`.
pub fn is_valid_wasm_binary(b: &[u8]) -> bool {
    b.len() >= 8 && b.get(..4) == Some(b"\0asm".as_slice())
}

fn linux_amd64_child(index: &Value) -> Option<String> {
    index.get("manifests")?.as_array()?.iter().find_map(|d| {
        let (os, arch) = match d.get("platform") {
            None | Some(Value::Null) => ("linux", "amd64"),
            Some(p) => (
                p.get("os").and_then(Value::as_str).unwrap_or(""),
                p.get("architecture").and_then(Value::as_str).unwrap_or(""),
            ),
        };
        (os == "linux" && arch == "amd64")
            .then(|| d.get("digest")?.as_str().map(str::to_string))
            .flatten()
    })
}

struct Layer {
    media_type: String,
    digest: String,
}

fn layers(manifest: &Value) -> Result<Vec<Layer>, String> {
    let items = match manifest.get("layers") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("could not fetch layers: layers is not a list".into()),
    };
    items
        .iter()
        .map(|l| {
            Ok(Layer {
                media_type: l
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                digest: l
                    .get("digest")
                    .and_then(Value::as_str)
                    .ok_or("could not fetch layers: a layer has no digest")?
                    .to_string(),
            })
        })
        .collect()
}

fn extract(source: &mut dyn ImageSource, manifest: &Value) -> Result<(Variant, Vec<u8>), String> {
    let media_type = manifest
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if media_type == DOCKER_MANIFEST {
        return extract_last_tar_gzip(source, manifest, DOCKER_LAYER_TAR_GZIP)
            .map(|m| (Variant::Docker, m))
            .map_err(|e| {
                format!("could not extract Wasm file from the image as Docker container {e}")
            });
    }
    let compat = match extract_last_tar_gzip(source, manifest, OCI_LAYER_TAR_GZIP) {
        Ok(m) => return Ok((Variant::Compat, m)),
        Err(e) => e,
    };
    let oci = match extract_solo_oci(source, manifest) {
        Ok(m) => return Ok((Variant::SoloOci, m)),
        Err(e) => e,
    };
    // hashicorp/go-multierror's format, as in the istio-agent log.
    Err(format!(
        "the given image is in invalid format as an OCI image: 2 errors occurred:\n\t* could not parse as compat variant: {compat}\n\t* could not parse as oci variant: {oci}\n\n"
    ))
}

/// extractDockerImage / extractOCIStandardImage.
fn extract_last_tar_gzip(
    source: &mut dyn ImageSource,
    manifest: &Value,
    want: &str,
) -> Result<Vec<u8>, String> {
    let layers = layers(manifest)?;
    let Some(last) = layers.last() else {
        return Err("number of layers must be greater than zero".into());
    };
    if last.media_type != want {
        return Err(format!(
            "invalid media type {} (expect {want})",
            last.media_type
        ));
    }
    let blob = source
        .blob(&last.digest)
        .map_err(|e| format!("could not get layer content: {e:#}"))?;
    extract_wasm_plugin_binary(&blob).map_err(|e| format!("could not extract wasm binary: {e}"))
}

/// extractWasmPluginBinary: gunzip, then the first tar entry whose basename is `plugin.wasm`.
pub fn extract_wasm_plugin_binary(tar_gz: &[u8]) -> Result<Vec<u8>, String> {
    // Go's gzip.NewReader checks the header before anything is read.
    if tar_gz.len() < 10 || tar_gz.get(..3) != Some([0x1f, 0x8b, 8].as_slice()) {
        return Err("failed to parse layer as tar.gz: gzip: invalid header".into());
    }
    let gz = flate2::read::MultiGzDecoder::new(tar_gz);
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| format!("failed to parse layer as tar.gz: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&name).into_owned();
        if go_base(&name) == PLUGIN_FILE {
            let mut out = Vec::new();
            entry
                .read_to_end(&mut out)
                .map_err(|e| format!("failed to read {PLUGIN_FILE}: {e}"))?;
            return Ok(out);
        }
    }
    Err(format!("{PLUGIN_FILE} not found in the archive"))
}

/// Go's `filepath.Base` on Unix.
fn go_base(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "." } else { "/" };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// extractOCIArtifactImage (solo.io "oci" variant).
fn extract_solo_oci(source: &mut dyn ImageSource, manifest: &Value) -> Result<Vec<u8>, String> {
    let layers = layers(manifest)?;
    if layers.len() != 2 {
        return Err(format!(
            "number of layers must be 2 but got {}",
            layers.len()
        ));
    }
    let layer = layers
        .iter()
        .find(|l| l.media_type == SOLO_WASM_LAYER)
        .ok_or_else(|| format!("could not find the layer of type {SOLO_WASM_LAYER}"))?;
    source
        .blob(&layer.digest)
        .map_err(|e| format!("could not get layer content: {e:#}"))
}

/// An OCI image layout directory as an [`ImageSource`]: tags are looked up in `index.json`
/// (`org.opencontainers.image.ref.name`), digests in `blobs/sha256/`.
pub struct LayoutSource {
    dir: PathBuf,
}

impl LayoutSource {
    pub fn new(dir: &Path) -> Result<LayoutSource> {
        if !dir.join("oci-layout").is_file() {
            bail!(
                "{} is not an OCI image layout (no oci-layout file)",
                dir.display()
            );
        }
        Ok(LayoutSource {
            dir: dir.to_path_buf(),
        })
    }

    pub fn index(&self) -> Result<Value> {
        let p = self.dir.join("index.json");
        let text = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{}: invalid JSON", p.display()))
    }

    /// The descriptor `index.json` holds for `tag`.
    pub fn descriptor(&self, tag: &str) -> Result<Value> {
        let index = self.index()?;
        index
            .get("manifests")
            .and_then(Value::as_array)
            .and_then(|m| {
                m.iter().find(|d| {
                    d.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                        .and_then(Value::as_str)
                        == Some(tag)
                })
            })
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "{}: no manifest tagged {tag:?} in index.json",
                    self.dir.display()
                )
            })
    }

    fn read_blob(&self, digest_: &str) -> Result<Vec<u8>> {
        let hex = super::digest_hex(digest_)?;
        let p = self.dir.join("blobs/sha256").join(hex);
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        if digest(&bytes) != digest_ {
            bail!("{}: content does not match its digest", p.display());
        }
        Ok(bytes)
    }
}

impl ImageSource for LayoutSource {
    fn name(&self) -> String {
        format!("layout:{}", self.dir.display())
    }

    fn manifest(&mut self, reference: &str) -> Result<RawManifest> {
        if reference.starts_with("sha256:") {
            let bytes = self.read_blob(reference)?;
            let media_type = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
                v.get("mediaType")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            return Ok(RawManifest { bytes, media_type });
        }
        let d = self.descriptor(reference)?;
        let dg = d
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("descriptor without digest"))?;
        let bytes = self.read_blob(dg)?;
        Ok(RawManifest {
            bytes,
            media_type: d
                .get("mediaType")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    fn blob(&mut self, digest_: &str) -> Result<Vec<u8>> {
        self.read_blob(digest_)
    }
}

#[cfg(test)]
mod tests {
    use super::go_base;

    #[test]
    fn basename_like_go() {
        for (p, b) in [
            ("plugin.wasm", "plugin.wasm"),
            ("./plugin.wasm", "plugin.wasm"),
            ("/plugin.wasm", "plugin.wasm"),
            ("x/y/plugin.wasm", "plugin.wasm"),
            ("plugin.wasm/", "plugin.wasm"),
            ("", "."),
            ("/", "/"),
        ] {
            assert_eq!(go_base(p), b, "{p:?}");
        }
    }
}
