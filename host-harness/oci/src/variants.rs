//! Images built around one module in the shapes that circulate (istio/istio
//! `pkg/wasm/imagefetcher.go`; <https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/>), each
//! with what Istio's / Envoy Gateway's fetcher does with it. The checker's tests push and
//! pull these; only [`TestImage::Compat`] is what we ship.

use super::check::Variant;
use super::layout::{
    self, deterministic_gzip, deterministic_tar, Descriptor, LayoutWriter, ReleaseOptions, TarEntry,
};
use super::{
    digest, CNCF_WASM_CONFIG, CNCF_WASM_LAYER, DOCKER_CONFIG, DOCKER_LAYER_TAR_GZIP,
    DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, OCI_MANIFEST,
    SOLO_CONFIG_LAYER, SOLO_WASM_LAYER,
};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;

/// The shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestImage {
    /// What `build.sh` ships: OCI manifest, one tar+gzip layer with `plugin.wasm`.
    Compat,
    /// Same, the entry named `./plugin.wasm` (allowed since istio#35683).
    CompatDotSlash,
    /// Higress-style: a documentation layer first, the wasm layer last (istio#40647).
    CompatExtraLayerFirst,
    /// Docker schema 2 twin of the compat image (`skopeo copy --format v2s2`, `docker build`).
    Docker,
    /// solo.io "oci" variant: a runtime-config layer and the raw module layer.
    SoloOci,
    /// An OCI index whose linux/amd64 child is the compat image (resolved by the fetcher;
    /// `sha256` must then be the child's digest, not the index's).
    Index,
    /// `buildah commit` default: uncompressed `application/vnd.oci.image.layer.v1.tar`.
    Uncompressed,
    /// CNCF TAG-Runtime Wasm artifact: `application/vnd.wasm.config.v0+json` config, one
    /// `application/wasm` layer.
    Cncf,
    /// The compat layout with the module under another name (`authz_plugin.wasm`).
    WrongName,
    /// The compat layout whose `plugin.wasm` is not a WebAssembly module.
    NotWasm,
    /// An index with only a `wasip1/wasm` child: nothing for linux/amd64.
    IndexWithoutAmd64,
}

/// What the fetcher does with an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Accept(Variant),
    /// Rejected; the error contains this text.
    Reject(&'static str),
}

impl TestImage {
    pub const ALL: [TestImage; 11] = [
        TestImage::Compat,
        TestImage::CompatDotSlash,
        TestImage::CompatExtraLayerFirst,
        TestImage::Docker,
        TestImage::SoloOci,
        TestImage::Index,
        TestImage::Uncompressed,
        TestImage::Cncf,
        TestImage::WrongName,
        TestImage::NotWasm,
        TestImage::IndexWithoutAmd64,
    ];

    pub fn tag(self) -> &'static str {
        match self {
            TestImage::Compat => "compat",
            TestImage::CompatDotSlash => "compat-dot-slash",
            TestImage::CompatExtraLayerFirst => "compat-extra-layer-first",
            TestImage::Docker => "docker",
            TestImage::SoloOci => "solo-oci",
            TestImage::Index => "index",
            TestImage::Uncompressed => "uncompressed",
            TestImage::Cncf => "cncf",
            TestImage::WrongName => "wrong-name",
            TestImage::NotWasm => "not-wasm",
            TestImage::IndexWithoutAmd64 => "index-without-amd64",
        }
    }

    pub fn expect(self) -> Expect {
        match self {
            TestImage::Compat | TestImage::CompatDotSlash | TestImage::CompatExtraLayerFirst | TestImage::Index => {
                Expect::Accept(Variant::Compat)
            }
            TestImage::Docker => Expect::Accept(Variant::Docker),
            TestImage::SoloOci => Expect::Accept(Variant::SoloOci),
            TestImage::Uncompressed => Expect::Reject(
                "could not parse as compat variant: invalid media type application/vnd.oci.image.layer.v1.tar (expect application/vnd.oci.image.layer.v1.tar+gzip)",
            ),
            TestImage::Cncf => Expect::Reject(
                "could not parse as compat variant: invalid media type application/wasm (expect application/vnd.oci.image.layer.v1.tar+gzip)",
            ),
            TestImage::WrongName => Expect::Reject("could not extract wasm binary: plugin.wasm not found in the archive"),
            TestImage::NotWasm => Expect::Reject("is invalid"),
            TestImage::IndexWithoutAmd64 => Expect::Reject("no child with platform linux/amd64 in index"),
        }
    }

    /// Whether `skopeo copy` needs `--all` to keep the index (and its digest).
    pub fn is_index(self) -> bool {
        matches!(self, TestImage::Index | TestImage::IndexWithoutAmd64)
    }
}

fn oci_manifest(config: &Descriptor, layers: &[&Descriptor], extra: Value) -> Value {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": layers.iter().map(|l| l.to_json()).collect::<Vec<_>>(),
    });
    if let (Some(obj), Value::Object(extra)) = (m.as_object_mut(), extra) {
        obj.extend(extra);
    }
    m
}

/// A compat-shaped image with the given tar entries and layer media type / compression.
fn tar_image(
    w: &mut LayoutWriter,
    entries: &[TarEntry<'_>],
    opts: &ReleaseOptions,
    gzip: bool,
    module_digest: &str,
) -> Result<Descriptor> {
    let tar = deterministic_tar(entries, opts.created.epoch())?;
    let (bytes, mt) = if gzip {
        (deterministic_gzip(&tar)?, OCI_LAYER_TAR_GZIP)
    } else {
        (tar.clone(), OCI_LAYER_TAR)
    };
    let layer = w.put_blob(mt, &bytes)?;
    let config = w.put_json(
        OCI_CONFIG,
        &layout::image_config(opts.created, &digest(&tar)),
    )?;
    w.put_json(
        OCI_MANIFEST,
        &oci_manifest(
            &config,
            &[&layer],
            json!({"annotations": layout::annotations(opts, module_digest)}),
        ),
    )
}

/// Writes one image of each shape of `images` for `wasm` into a new layout at `dir`, tagged
/// with [`TestImage::tag`]. Returns the manifest (or index) descriptor of each.
pub fn write_test_images(
    dir: &Path,
    wasm: &[u8],
    opts: &ReleaseOptions,
    images: &[TestImage],
) -> Result<Vec<(TestImage, Descriptor)>> {
    let mut w = LayoutWriter::create(dir)?;
    let md = digest(wasm);
    // An image of one tar layer holding the one file `name`, gzipped or not.
    let one_file = |w: &mut LayoutWriter, name: &str, data: &[u8], gzip: bool| {
        let file = TarEntry::File {
            name,
            data,
            mode: 0o644,
        };
        tar_image(w, &[file], opts, gzip, &md)
    };
    let mut out = Vec::new();
    for &image in images {
        let d = match image {
            TestImage::Compat => layout::put_compat_image(&mut w, wasm, opts)?.0,
            TestImage::CompatDotSlash => one_file(&mut w, "./plugin.wasm", wasm, true)?,
            TestImage::WrongName => one_file(&mut w, "authz_plugin.wasm", wasm, true)?,
            TestImage::NotWasm => one_file(
                &mut w,
                "plugin.wasm",
                b"this is not a WebAssembly module\n",
                true,
            )?,
            TestImage::Uncompressed => one_file(&mut w, "plugin.wasm", wasm, false)?,
            TestImage::CompatExtraLayerFirst => {
                let readme = deterministic_tar(
                    &[TarEntry::File {
                        name: "README.md",
                        data: b"# authz-plugin\n",
                        mode: 0o644,
                    }],
                    opts.created.epoch(),
                )?;
                let (layer_gz, layer_tar) = layout::compat_layer(wasm, opts.created.epoch())?;
                let doc = w.put_blob(OCI_LAYER_TAR_GZIP, &deterministic_gzip(&readme)?)?;
                let layer = w.put_blob(OCI_LAYER_TAR_GZIP, &layer_gz)?;
                let config = w.put_json(
                    OCI_CONFIG,
                    &json!({"architecture": "amd64", "os": "linux", "config": {}, "created": opts.created.to_string(),
                            "rootfs": {"type": "layers", "diff_ids": [digest(&readme), digest(&layer_tar)]}}),
                )?;
                w.put_json(
                    OCI_MANIFEST,
                    &oci_manifest(&config, &[&doc, &layer], json!({})),
                )?
            }
            TestImage::Docker => {
                let (layer_gz, layer_tar) = layout::compat_layer(wasm, opts.created.epoch())?;
                let layer = w.put_blob(DOCKER_LAYER_TAR_GZIP, &layer_gz)?;
                let config = w.put_json(
                    DOCKER_CONFIG,
                    &layout::image_config(opts.created, &digest(&layer_tar)),
                )?;
                let m = json!({
                    "schemaVersion": 2,
                    "mediaType": DOCKER_MANIFEST,
                    "config": config.to_json(),
                    "layers": [layer.to_json()],
                });
                w.put_json(DOCKER_MANIFEST, &m)?
            }
            TestImage::SoloOci => {
                let runtime = w.put_json(SOLO_CONFIG_LAYER, &json!({"type": "envoy_proxy", "abiVersions": ["v0-097b7f2e4cc1fb490cc1943d0d633655ac3c522f"], "rootIds": ["istio-authz"]}))?;
                let module = w.put_blob(SOLO_WASM_LAYER, wasm)?;
                let config = w.put_json(OCI_CONFIG, &json!({}))?;
                w.put_json(
                    OCI_MANIFEST,
                    &oci_manifest(&config, &[&runtime, &module], json!({})),
                )?
            }
            TestImage::Cncf => cncf(&mut w, wasm, opts)?,
            TestImage::Index => {
                let mut wasm_child = cncf(&mut w, wasm, opts)?;
                wasm_child.platform = Some(("wasip1".into(), "wasm".into()));
                let mut amd64 = layout::put_compat_image(&mut w, wasm, opts)?.0;
                amd64.platform = Some(("linux".into(), "amd64".into()));
                w.put_json(
                    OCI_INDEX,
                    &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [wasm_child.to_json(), amd64.to_json()]}),
                )?
            }
            TestImage::IndexWithoutAmd64 => {
                let mut child = cncf(&mut w, wasm, opts)?;
                child.platform = Some(("wasip1".into(), "wasm".into()));
                w.put_json(OCI_INDEX, &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child.to_json()]}))?
            }
        };
        w.tag(&d, image.tag())?;
        out.push((image, d));
    }
    w.finish()?;
    Ok(out)
}

/// The CNCF Wasm OCI artifact of `wasm` (<https://tag-runtime.cncf.io/wgs/wasm/deliverables/wasm-oci-artifact/>).
fn cncf(w: &mut LayoutWriter, wasm: &[u8], opts: &ReleaseOptions) -> Result<Descriptor> {
    let layer = w
        .put_blob(CNCF_WASM_LAYER, wasm)?
        .annotate("org.opencontainers.image.title", "plugin.wasm");
    let config = w.put_json(
        CNCF_WASM_CONFIG,
        &json!({"architecture": "wasm", "os": "wasip1", "created": opts.created.to_string(), "layerDigests": [layer.digest]}),
    )?;
    w.put_json(
        OCI_MANIFEST,
        &oci_manifest(
            &config,
            &[&layer],
            json!({"artifactType": CNCF_WASM_CONFIG, "annotations": layout::annotations(opts, &digest(wasm))}),
        ),
    )
}
