//! The OCI image layout build.sh writes (host-harness/oci/src/layout.rs): its exact shape,
//! its determinism, and the Istio / Envoy Gateway fetcher rules (host-harness/oci/src/check.rs) on it and on
//! the deliberately wrong variants (host-harness/oci/src/variants.rs). No network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_oci::check::{self, fetch, ImageSource, LayoutSource, Variant};
use authz_oci::layout::{self, ReleaseOptions};
use authz_oci::time::Timestamp;
use authz_oci::variants::{write_test_images, Expect, TestImage};
use authz_oci::{canonical_json, sha256_hex};
use common::module_bytes;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

fn opts() -> ReleaseOptions {
    ReleaseOptions {
        source: "https://github.com/istio-authz-wasm/istio-authz-wasm".into(),
        ..common::release_options("1.2.3")
    }
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    layout::layout_entries(dir)
        .unwrap()
        .into_iter()
        .map(|(name, p)| {
            (
                name,
                p.map(|p| std::fs::read(p).unwrap()).unwrap_or_default(),
            )
        })
        .collect()
}

fn blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn the_release_layout_has_the_shape_istio_and_envoy_gateway_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let wasm = module_bytes();
    let o = opts();
    let r = layout::write_release(wasm, &dir, &o).unwrap();

    assert_eq!(
        std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index_bytes = std::fs::read(dir.join("index.json")).unwrap();
    let index = json(&index_bytes);
    assert_eq!(
        canonical_json(&index).as_bytes(),
        index_bytes.as_slice(),
        "index.json is canonical JSON"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image manifest, not several");
    assert_eq!(
        manifests[0]["mediaType"],
        authz_oci::OCI_MANIFEST,
        "an image manifest, not an index"
    );
    assert_eq!(manifests[0]["annotations"][authz_oci::REF_NAME], "1.2.3");
    assert_eq!(manifests[0]["digest"], r.manifest_digest.as_str());

    // Exactly three blobs, each named by its own sha256.
    let blobs: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(blobs.len(), 3, "{blobs:?}");
    for b in &blobs {
        assert_eq!(
            sha256_hex(&std::fs::read(b).unwrap()),
            b.file_name().unwrap().to_str().unwrap()
        );
    }

    let mbytes = blob(&dir, &r.manifest_digest);
    assert_eq!(mbytes.len() as u64, r.manifest_size);
    let m = json(&mbytes);
    assert_eq!(canonical_json(&m).as_bytes(), mbytes.as_slice());
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], authz_oci::OCI_MANIFEST);
    assert_eq!(m["config"]["mediaType"], authz_oci::OCI_CONFIG);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], authz_oci::OCI_LAYER_TAR_GZIP);
    let a = &m["annotations"];
    assert_eq!(
        a["org.opencontainers.image.created"],
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(a["org.opencontainers.image.revision"], o.revision.as_str());
    assert_eq!(a["org.opencontainers.image.source"], o.source.as_str());
    assert_eq!(a["org.opencontainers.image.version"], "1.2.3");
    assert_eq!(a["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(a["org.opencontainers.image.title"], "authz-plugin");
    assert_eq!(a["module.wasm.image/variant"], "compat");
    assert_eq!(
        a[authz_oci::MODULE_DIGEST_ANNOTATION],
        format!("sha256:{}", sha256_hex(wasm))
    );

    // The layer: gzip without a name or a timestamp, one ustar entry plugin.wasm.
    let gz = blob(&dir, layers[0]["digest"].as_str().unwrap());
    assert_eq!(
        &gz[..4],
        &[0x1f, 0x8b, 8, 0],
        "gzip, deflate, no FNAME/FEXTRA/FCOMMENT"
    );
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip MTIME 0");
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&tar_bytes)), r.diff_id);
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = archive.entries().unwrap();
    let mut e = entries.next().unwrap().unwrap();
    let h = e.header().clone();
    assert_eq!(e.path().unwrap().to_str().unwrap(), "plugin.wasm");
    assert_eq!(h.entry_type(), tar::EntryType::Regular);
    assert_eq!(h.mode().unwrap(), 0o644);
    assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
    assert_eq!(h.mtime().unwrap(), o.created.epoch());
    assert!(h.as_ustar().is_some(), "ustar format");
    assert_eq!(h.username().unwrap(), Some(""));
    let mut content = Vec::new();
    e.read_to_end(&mut content).unwrap();
    assert_eq!(content, wasm);
    assert!(entries.next().is_none(), "plugin.wasm is the only entry");

    // The config: linux/amd64 image config with the layer's diff_id and the created time.
    let c = json(&blob(&dir, &r.config_digest));
    assert_eq!(c["rootfs"]["diff_ids"][0], r.diff_id.as_str());
    assert_eq!(c["created"], "2026-01-01T00:00:00Z");
    assert_eq!(
        (c["os"].as_str(), c["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
}

#[test]
fn the_layout_is_byte_reproducible_and_independent_of_where_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm = module_bytes();
    let r1 = layout::write_release(wasm, &tmp.path().join("a"), &opts()).unwrap();
    let r2 = layout::write_release(wasm, &tmp.path().join("elsewhere/b"), &opts()).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(
        tree(&tmp.path().join("a")),
        tree(&tmp.path().join("elsewhere/b"))
    );
    // Rewriting an existing layout in place gives the same bytes, with no stale blobs.
    let r3 = layout::write_release(wasm, &tmp.path().join("a"), &opts()).unwrap();
    assert_eq!(r1, r3);
    assert_eq!(
        tree(&tmp.path().join("a")),
        tree(&tmp.path().join("elsewhere/b"))
    );

    // The tarball too.
    let t1 = tmp.path().join("1.tar");
    let t2 = tmp.path().join("2.tar");
    layout::write_layout_tar(&tmp.path().join("a"), &t1, opts().created.epoch()).unwrap();
    layout::write_layout_tar(&tmp.path().join("elsewhere/b"), &t2, opts().created.epoch()).unwrap();
    let (b1, b2) = (std::fs::read(&t1).unwrap(), std::fs::read(&t2).unwrap());
    assert_eq!(b1, b2);
    let mut names = Vec::new();
    for e in tar::Archive::new(b1.as_slice()).entries().unwrap() {
        let e = e.unwrap();
        assert_eq!(e.header().mtime().unwrap(), opts().created.epoch());
        assert_eq!(
            (e.header().uid().unwrap(), e.header().gid().unwrap()),
            (0, 0)
        );
        names.push(e.path().unwrap().to_str().unwrap().to_string());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(
        names.starts_with(&["blobs/".to_string(), "blobs/sha256/".to_string()]),
        "{names:?}"
    );
    assert!(names.contains(&"index.json".to_string()) && names.contains(&"oci-layout".to_string()));

    // What goes into the digest: the created time and the revision, not the machine.
    let mut later = opts();
    later.created = Timestamp::from_epoch(later.created.epoch() + 1);
    let r4 = layout::write_release(wasm, &tmp.path().join("c"), &later).unwrap();
    assert_ne!(r4.manifest_digest, r1.manifest_digest);
    assert_eq!(r4.module_digest, r1.module_digest);
}

#[test]
fn the_layout_writer_does_not_overwrite_what_is_not_a_layout() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let err = layout::write_release(module_bytes(), tmp.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err:#}");
    assert!(tmp.path().join("precious.txt").is_file());
    assert!(layout::write_release(b"not wasm", &tmp.path().join("x"), &opts()).is_err());
}

#[test]
fn the_oci_layout_command_checks_the_module_and_writes_what_write_release_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let wasm_path = tmp.path().join("authz_plugin.wasm");
    std::fs::write(&wasm_path, module_bytes()).unwrap();
    let out = tmp.path().join("oci");
    let tar = tmp.path().join("authz-plugin-oci.tar");
    let args: Vec<String> = [
        "oci-layout",
        "--wasm",
        wasm_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--tar",
        tar.to_str().unwrap(),
        "--source",
        "https://github.com/istio-authz-wasm/istio-authz-wasm",
        "--revision",
        "0123456789abcdef0123456789abcdef01234567",
        "--version",
        "1.2.3",
        "--created",
        "@1767225600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let harness = |args: &[String]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_authz-harness"))
            .args(args)
            .output()
            .unwrap()
    };
    let run = harness(&args);
    assert!(run.status.success(), "{run:?}");
    let expected = tmp.path().join("expected");
    layout::write_release(module_bytes(), &expected, &opts()).unwrap();
    assert_eq!(tree(&out), tree(&expected));
    assert!(tar.is_file());

    // A module that does not load is refused before anything is written.
    let bad = tmp.path().join("bad.wasm");
    std::fs::write(
        &bad,
        wat::parse_str("(module (memory (export \"memory\") 1))").unwrap(),
    )
    .unwrap();
    let mut bad_args = args.clone();
    bad_args[2] = bad.to_str().unwrap().to_string();
    bad_args[4] = tmp.path().join("never").to_str().unwrap().to_string();
    let run = harness(&bad_args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("proxy_abi_version"), "{err}");
    assert!(!tmp.path().join("never").exists());
}

#[test]
fn the_module_loads_in_wasmtime_with_the_proxy_wasm_surface() {
    let info = authz_oci::module::inspect(module_bytes()).unwrap();
    assert!(
        info.abi
            .iter()
            .any(|a| a.starts_with("proxy_abi_version_0_2")),
        "{info}"
    );
    assert!(info
        .imports
        .iter()
        .all(|(m, _)| m == "env" || m == "wasi_snapshot_preview1"));
}

#[test]
fn the_fetcher_rules_accept_the_release_and_reject_the_wrong_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("variants");
    let wasm = module_bytes();
    let written = write_test_images(&dir, wasm, &opts(), &TestImage::ALL).unwrap();
    let mut src = LayoutSource::new(&dir).unwrap();
    let mut report = Vec::new();
    for (image, desc) in &written {
        let got = fetch(&mut src, image.tag(), None);
        match (image.expect(), &got) {
            (Expect::Accept(v), Ok(f)) => {
                assert_eq!(f.variant, v, "{image:?}");
                assert_eq!(f.module, wasm, "{image:?}: the extracted module");
                if image.is_index() {
                    assert_eq!(
                        f.index_digest.as_deref(),
                        Some(desc.digest.trim_start_matches("sha256:"))
                    );
                    assert_ne!(f.manifest_digest, desc.digest.trim_start_matches("sha256:"));
                } else {
                    assert_eq!(
                        f.manifest_digest,
                        desc.digest.trim_start_matches("sha256:"),
                        "{image:?}"
                    );
                }
            }
            (Expect::Reject(text), Err(e)) => {
                assert!(
                    e.to_string().contains(text),
                    "{image:?}: {e}\nexpected: {text}"
                );
            }
            (expect, got) => report.push(format!("{image:?}: expected {expect:?}, got {got:?}")),
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));

    // The uncompressed layer gets Istio's full message, as istio's own test pins it.
    let e = fetch(&mut src, TestImage::Uncompressed.tag(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the given image is in invalid format as an OCI image"),
        "{e}"
    );
    assert!(
        e.contains("could not parse as oci variant: number of layers must be 2 but got 1"),
        "{e}"
    );
    // The CNCF artifact fails both paths.
    let e = fetch(&mut src, TestImage::Cncf.tag(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("number of layers must be 2 but got 1"), "{e}");
}

#[test]
fn sha256_is_the_manifest_digest_for_oci_urls() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let wasm = module_bytes();
    let r = layout::write_release(wasm, &dir, &opts()).unwrap();
    let mut src = LayoutSource::new(&dir).unwrap();

    let ok = fetch(&mut src, "1.2.3", Some(r.manifest_hex())).unwrap();
    assert_eq!(ok.variant, Variant::Compat);
    assert_eq!(ok.module_sha256(), sha256_hex(wasm));
    // Pinned in the URL (`@sha256:`), no sha256 field.
    assert!(fetch(&mut src, &r.manifest_digest, None).is_ok());
    // The module's hash is the http(s):// checksum, not the oci:// one.
    let e = fetch(&mut src, "1.2.3", Some(&sha256_hex(wasm)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("which does not match"), "{e}");
    assert!(
        e.starts_with(&format!(
            "module downloaded from oci://{}:1.2.3 has checksum {}",
            src.name(),
            r.manifest_hex()
        )),
        "{e}"
    );

    // An index: the digest compared is its linux/amd64 child's, never the index's own.
    let vdir = tmp.path().join("variants");
    let written = write_test_images(&vdir, wasm, &opts(), &[TestImage::Index]).unwrap();
    let index_hex = written[0]
        .1
        .digest
        .trim_start_matches("sha256:")
        .to_string();
    let mut vsrc = LayoutSource::new(&vdir).unwrap();
    let e = fetch(&mut vsrc, "index", Some(&index_hex))
        .unwrap_err()
        .to_string();
    assert!(e.contains("which does not match"), "{e}");
    let child = fetch(&mut vsrc, "index", None).unwrap().manifest_digest;
    assert_eq!(
        child,
        r.manifest_hex(),
        "the index's amd64 child is the release image"
    );
    assert!(fetch(&mut vsrc, "index", Some(&child)).is_ok());
    assert!(check::is_valid_wasm_binary(wasm));
}
