//! A byte-reproducible OCI image layout of the module (<https://github.com/opencontainers/image-spec/blob/main/image-layout.md>).
//!
//! What [`write_release`] writes, for one module and one set of [`ReleaseOptions`], is always
//! the same bytes:
//! - the layer: a ustar archive with the single entry `plugin.wasm` (mode 0644, uid/gid 0, no
//!   user/group names, mtime = `created`), gzip-compressed at level 9 by miniz_oxide (pinned by
//!   Cargo.lock) with a header holding no file name and mtime 0;
//! - the config (`application/vnd.oci.image.config.v1+json`, linux/amd64 as `docker build`
//!   would write; Istio and Envoy Gateway never read it) with the layer's `diff_id`;
//! - one image manifest (not an index) with the `org.opencontainers.image.*` annotations and
//!   `module.wasm.image/variant: compat`;
//! - `index.json` naming that manifest by tag, and `oci-layout`.
//!
//! All JSON is canonical ([`super::canonical_json`]): sorted keys, no whitespace.

use super::time::Timestamp;
use super::{canonical_json, digest, REF_NAME};
use anyhow::{anyhow, bail, Context, Result};
use flate2::{Compression, GzBuilder};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What goes into the image's annotations and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseOptions {
    /// The tag in `index.json` (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// `org.opencontainers.image.version`.
    pub version: String,
    /// `org.opencontainers.image.revision`: the git commit.
    pub revision: String,
    /// `org.opencontainers.image.source`: the repository URL.
    pub source: String,
    /// `org.opencontainers.image.created`, the config's `created` and the tar mtime.
    pub created: Timestamp,
    /// `org.opencontainers.image.title`.
    pub title: String,
    /// `org.opencontainers.image.description`.
    pub description: String,
    /// `org.opencontainers.image.licenses` (SPDX).
    pub licenses: String,
}

/// The project's repository (workspace `Cargo.toml`, `repository`).
pub const DEFAULT_SOURCE: &str = "https://github.com/istio-authz-wasm/istio-authz-wasm";

impl Default for ReleaseOptions {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION").to_string();
        ReleaseOptions {
            tag: version.clone(),
            version,
            revision: "unknown".into(),
            source: DEFAULT_SOURCE.into(),
            created: Timestamp::source_date_epoch().unwrap_or_default(),
            title: "authz-plugin".into(),
            description: "Istio AuthorizationPolicy enforcement (ztunnel L4, waypoint L7) as a proxy-wasm module".into(),
            licenses: "Apache-2.0".into(),
        }
    }
}

/// What [`write_release`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub tag: String,
    /// `sha256:<hex>` of the image manifest: what `WasmPlugin.spec.sha256` (hex part) and
    /// `EnvoyExtensionPolicy …image.sha256` compare with, and what `@sha256:` pins.
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub config_digest: String,
    pub layer_digest: String,
    pub layer_size: u64,
    /// sha256 of the uncompressed layer (the config's `rootfs.diff_ids[0]`).
    pub diff_id: String,
    /// sha256 of the module: what `sha256` wants for an `http(s)://` URL.
    pub module_digest: String,
    pub module_size: u64,
}

impl Release {
    /// The manifest digest without `sha256:` (the CRDs' `sha256` field format).
    pub fn manifest_hex(&self) -> &str {
        self.manifest_digest.trim_start_matches("sha256:")
    }
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
    pub artifact_type: Option<String>,
    /// `(os, architecture)`, for the children of an index.
    pub platform: Option<(String, String)>,
}

impl Descriptor {
    pub fn new(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest(bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::new(),
            artifact_type: None,
            platform: None,
        }
    }

    pub fn annotate(mut self, key: &str, value: &str) -> Descriptor {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("mediaType".into(), self.media_type.clone().into());
        m.insert("digest".into(), self.digest.clone().into());
        m.insert("size".into(), self.size.into());
        if !self.annotations.is_empty() {
            m.insert("annotations".into(), json!(self.annotations));
        }
        if let Some(a) = &self.artifact_type {
            m.insert("artifactType".into(), a.clone().into());
        }
        if let Some((os, arch)) = &self.platform {
            m.insert("platform".into(), json!({"os": os, "architecture": arch}));
        }
        Value::Object(m)
    }
}

/// Writes blobs into an OCI image layout and, on [`LayoutWriter::finish`], its `index.json`
/// and `oci-layout`.
pub struct LayoutWriter {
    dir: PathBuf,
    index: Vec<Descriptor>,
}

impl LayoutWriter {
    /// Starts a layout in `dir`: created if missing; an existing OCI layout (a directory with
    /// an `oci-layout` file) or an empty directory is emptied first; anything else is refused.
    pub fn create(dir: &Path) -> Result<LayoutWriter> {
        prepare_dir(dir)?;
        std::fs::create_dir_all(dir.join("blobs/sha256"))
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(LayoutWriter {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `bytes` as a blob and returns its descriptor.
    pub fn put_blob(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let d = Descriptor::new(media_type, bytes);
        let path = self
            .dir
            .join("blobs/sha256")
            .join(d.digest.trim_start_matches("sha256:"));
        if !path.is_file() {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(d)
    }

    /// Stores `value` as canonical JSON.
    pub fn put_json(&mut self, media_type: &str, value: &Value) -> Result<Descriptor> {
        self.put_blob(media_type, canonical_json(value).as_bytes())
    }

    /// Names a manifest (or index) in `index.json` under `tag`.
    pub fn tag(&mut self, descriptor: &Descriptor, tag: &str) -> Result<()> {
        check_tag(tag)?;
        if self
            .index
            .iter()
            .any(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
        {
            bail!("tag {tag:?} is used twice");
        }
        let mut d = descriptor.clone();
        d.annotations.insert(REF_NAME.into(), tag.into());
        self.index.push(d);
        Ok(())
    }

    /// Writes `index.json` (manifests in tagging order) and `oci-layout`.
    pub fn finish(self) -> Result<()> {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": super::OCI_INDEX,
            "manifests": self.index.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(self.dir.join("index.json"), canonical_json(&index))?;
        std::fs::write(
            self.dir.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(())
    }
}

/// A tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        });
    if !ok {
        bail!("{tag:?} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})");
    }
    Ok(())
}

fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let empty = std::fs::read_dir(dir)?.next().is_none();
    if empty {
        return Ok(());
    }
    if !dir.join("oci-layout").is_file() {
        bail!(
            "{} exists and is not an OCI image layout (no oci-layout file): refusing to overwrite it",
            dir.display()
        );
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p).with_context(|| format!("removing {}", p.display()))?;
        } else {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// One entry of a deterministic tar archive.
pub enum TarEntry<'a> {
    File {
        name: &'a str,
        data: &'a [u8],
        mode: u32,
    },
    Dir {
        name: &'a str,
    },
}

/// A ustar archive of `entries`, in the given order, with uid/gid 0, empty user/group names
/// and the same `mtime` everywhere. Same input, same bytes.
pub fn deterministic_tar(entries: &[TarEntry<'_>], mtime: u64) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, data, mode, kind): (&str, &[u8], u32, tar::EntryType) = match e {
            TarEntry::File { name, data, mode } => (name, data, *mode, tar::EntryType::Regular),
            TarEntry::Dir { name } => (name, &[], 0o755, tar::EntryType::Directory),
        };
        h.set_path(name)
            .with_context(|| format!("tar entry {name:?}"))?;
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("")?;
        h.set_groupname("")?;
        h.set_mtime(mtime);
        h.set_cksum();
        b.append(&h, data)?;
    }
    Ok(b.into_inner()?)
}

/// gzip at level 9 with no file name, mtime 0 and OS "unknown" in the header: same input,
/// same bytes (for one version of miniz_oxide).
pub fn deterministic_gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// The compat layer: `plugin.wasm` (0644) in a gzip'd ustar archive. Returns
/// `(layer.tar.gz, layer.tar)`.
pub fn compat_layer(wasm: &[u8], mtime: u64) -> Result<(Vec<u8>, Vec<u8>)> {
    let tar = deterministic_tar(
        &[TarEntry::File {
            name: super::PLUGIN_FILE,
            data: wasm,
            mode: 0o644,
        }],
        mtime,
    )?;
    Ok((deterministic_gzip(&tar)?, tar))
}

/// The annotations of our manifests.
pub fn annotations(opts: &ReleaseOptions, module_digest: &str) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        a.insert(k.to_string(), v.to_string());
    };
    put(
        "org.opencontainers.image.created",
        &opts.created.to_string(),
    );
    put("org.opencontainers.image.version", &opts.version);
    put("org.opencontainers.image.revision", &opts.revision);
    put("org.opencontainers.image.source", &opts.source);
    put("org.opencontainers.image.title", &opts.title);
    put("org.opencontainers.image.description", &opts.description);
    put("org.opencontainers.image.licenses", &opts.licenses);
    put(super::MODULE_DIGEST_ANNOTATION, module_digest);
    a
}

/// The config blob of an image whose only layer has `diff_id`.
pub fn image_config(created: Timestamp, diff_id: &str) -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "created": created.to_string(),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
}

/// Writes the compat image of `wasm` into the layout `writer` (blobs only) and returns the
/// manifest descriptor and the [`Release`] facts. The caller tags it and finishes the layout.
pub fn put_compat_image(
    writer: &mut LayoutWriter,
    wasm: &[u8],
    opts: &ReleaseOptions,
) -> Result<(Descriptor, Release)> {
    let module_digest = digest(wasm);
    let (layer_gz, layer_tar) = compat_layer(wasm, opts.created.epoch())?;
    let diff_id = digest(&layer_tar);
    let layer = writer.put_blob(super::OCI_LAYER_TAR_GZIP, &layer_gz)?;
    let config = writer.put_json(super::OCI_CONFIG, &image_config(opts.created, &diff_id))?;
    let mut ann = annotations(opts, &module_digest);
    ann.insert("module.wasm.image/variant".into(), "compat".into());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": super::OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.to_json()],
        "annotations": ann,
    });
    let m = writer.put_json(super::OCI_MANIFEST, &manifest)?;
    let release = Release {
        tag: opts.tag.clone(),
        manifest_digest: m.digest.clone(),
        manifest_size: m.size,
        config_digest: config.digest,
        layer_digest: layer.digest,
        layer_size: layer.size,
        diff_id,
        module_digest,
        module_size: wasm.len() as u64,
    };
    Ok((m, release))
}

/// Writes the release layout of `wasm` to `out` (see the module documentation).
pub fn write_release(wasm: &[u8], out: &Path, opts: &ReleaseOptions) -> Result<Release> {
    if wasm.len() < 8 || wasm.get(..4) != Some(b"\0asm".as_slice()) {
        bail!("not a WebAssembly module (no \\0asm magic)");
    }
    let mut w = LayoutWriter::create(out)?;
    let (m, release) = put_compat_image(&mut w, wasm, opts)?;
    w.tag(&m, &opts.tag)?;
    w.finish()?;
    Ok(release)
}

/// The files of a layout directory, relative, sorted bytewise; directories end with `/`.
pub fn layout_entries(dir: &Path) -> Result<Vec<(String, Option<PathBuf>)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Option<PathBuf>)>) -> Result<()> {
        for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let p = e.path();
            let rel = p
                .strip_prefix(root)?
                .to_str()
                .ok_or_else(|| anyhow!("{}: not UTF-8", p.display()))?
                .to_string();
            let t = e.file_type()?;
            if t.is_dir() {
                out.push((format!("{rel}/"), None));
                walk(root, &p, out)?;
            } else if t.is_file() {
                out.push((rel, Some(p)));
            } else {
                bail!("{}: not a regular file or directory", p.display());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

/// A deterministic tarball of the layout directory `layout` (an `oci-archive:` for skopeo):
/// entries sorted, mtime fixed, uid/gid 0, files 0644, directories 0755. Written atomically.
pub fn write_layout_tar(layout: &Path, tar_path: &Path, mtime: u64) -> Result<()> {
    if !layout.join("oci-layout").is_file() {
        bail!("{} is not an OCI image layout", layout.display());
    }
    let entries = layout_entries(layout)?;
    let mut data = Vec::new();
    for (_, p) in &entries {
        data.push(match p {
            Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            None => Vec::new(),
        });
    }
    let tar_entries: Vec<TarEntry<'_>> = entries
        .iter()
        .zip(&data)
        .map(|((name, p), d)| match p {
            Some(_) => TarEntry::File {
                name,
                data: d,
                mode: 0o644,
            },
            None => TarEntry::Dir { name },
        })
        .collect();
    let bytes = deterministic_tar(&tar_entries, mtime)?;
    if let Some(parent) = tar_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = tar_path.with_extension("tar.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, tar_path).with_context(|| format!("writing {}", tar_path.display()))?;
    Ok(())
}
