//! The OCI image through a real registry, on loopback only: Debian's `docker-registry`
//! (distribution 2.8) with a private no-auth configuration on 127.0.0.1:<free port>, pushed with
//! `skopeo copy --preserve-digests`, pulled back by tag and by digest with skopeo (into fresh
//! `oci:` layouts) and with our own HTTP client of the Distribution API; every blob and the
//! module must come back byte-identical, the registry's digest must be the layout's, and the
//! Istio / Envoy Gateway fetcher rules (host-harness/oci/src/check.rs) must accept the release and reject
//! the wrong shapes as served by the registry.
//!
//! Needs `docker-registry` and `skopeo` (scripts/install-deps.sh). Without them the tests print
//! why and pass, unless CI is set, where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_oci::check::{fetch, ImageSource, LayoutSource, Variant};
use authz_oci::layout::{self, ReleaseOptions};
use authz_oci::registry::{self, LocalRegistry};
use authz_oci::sha256_hex;
use authz_oci::variants::{write_test_images, Expect, TestImage};
use common::{module_bytes, registry_tools};
use std::collections::BTreeMap;
use std::path::Path;

const REPO: &str = "authz-plugin";

fn opts() -> ReleaseOptions {
    common::release_options("0.1.0")
}

fn blobs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Every blob of `original` is in `pulled`, byte for byte, and `pulled` has nothing else.
fn assert_same_blobs(original: &Path, pulled: &Path, what: &str) {
    let (a, b) = (blobs(original), blobs(pulled));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: blob sets differ"
    );
    for (k, v) in &a {
        assert!(b.get(k) == Some(v), "{what}: blob {k} differs");
        assert_eq!(sha256_hex(v), *k, "{what}: blob {k} is not its digest");
    }
}

#[test]
fn the_release_round_trips_through_a_loopback_registry_with_its_digests() {
    let Some((registry_bin, skopeo)) =
        registry_tools("the_release_round_trips_through_a_loopback_registry_with_its_digests")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let wasm = module_bytes();

    // The layout, written by the `oci-layout` command as build.sh runs it.
    let wasm_path = tmp.path().join("authz_plugin.wasm");
    std::fs::write(&wasm_path, wasm).unwrap();
    let layout_dir = tmp.path().join("oci");
    let tar = tmp.path().join("authz-plugin-oci.tar");
    let args: Vec<String> = [
        "oci-layout",
        "--wasm",
        wasm_path.to_str().unwrap(),
        "--out",
        layout_dir.to_str().unwrap(),
        "--tar",
        tar.to_str().unwrap(),
        "--revision",
        "0123456789abcdef0123456789abcdef01234567",
        "--version",
        "0.1.0",
        "--created",
        "2026-01-01T00:00:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_authz-harness"))
        .args(&args)
        .status()
        .unwrap();
    assert!(status.success(), "authz-harness {args:?}: {status}");
    let release = layout::write_release(wasm, &tmp.path().join("expected"), &opts()).unwrap();
    let manifest_bytes =
        std::fs::read(layout_dir.join("blobs/sha256").join(release.manifest_hex())).unwrap();

    let reg = LocalRegistry::start(&registry_bin, &tmp.path().join("registry")).unwrap();
    assert!(reg.addr().ip().is_loopback());
    let host = reg.host();

    // Push; the registry must keep the manifest digest.
    let pushed = registry::push_layout(
        &skopeo,
        &layout_dir,
        "0.1.0",
        &host,
        REPO,
        false,
        tmp.path(),
    )
    .unwrap();
    assert_eq!(pushed, release.manifest_digest, "skopeo's pushed digest");
    let mut src = reg.source(REPO);
    let (served, served_digest) = src.get_manifest("0.1.0").unwrap();
    assert_eq!(
        served_digest.as_deref(),
        Some(release.manifest_digest.as_str()),
        "Docker-Content-Digest"
    );
    assert_eq!(
        served.bytes, manifest_bytes,
        "the registry serves our manifest bytes unchanged"
    );
    assert_eq!(served.media_type.as_deref(), Some(authz_oci::OCI_MANIFEST));

    // Pull back with skopeo, by tag and by digest, into fresh layouts.
    for (reference, name) in [
        ("0.1.0", "pulled-by-tag"),
        (release.manifest_digest.as_str(), "pulled-by-digest"),
    ] {
        let dest = tmp.path().join(name);
        registry::pull_to_layout(&skopeo, &host, REPO, reference, &dest, "0.1.0", false).unwrap();
        assert_same_blobs(&layout_dir, &dest, name);
        let mut pulled = LayoutSource::new(&dest).unwrap();
        assert_eq!(
            pulled.descriptor("0.1.0").unwrap()["digest"],
            release.manifest_digest.as_str(),
            "{name}"
        );
        let f = fetch(&mut pulled, "0.1.0", Some(release.manifest_hex())).unwrap();
        assert_eq!(f.module, wasm, "{name}: plugin.wasm");
    }

    // Pull with our own client, the way istio-agent / Envoy Gateway do.
    for reference in ["0.1.0", release.manifest_digest.as_str()] {
        let f = fetch(&mut src, reference, Some(release.manifest_hex())).unwrap();
        assert_eq!(f.variant, Variant::Compat);
        assert_eq!(f.manifest_digest, release.manifest_hex());
        assert_eq!(f.module, wasm, "module pulled by {reference}");
    }
    // Config and layer over the blob API (the registry keeps manifests apart from blobs).
    for (hex, bytes) in blobs(&layout_dir)
        .into_iter()
        .filter(|(h, _)| h != release.manifest_hex())
    {
        assert_eq!(
            src.blob(&format!("sha256:{hex}")).unwrap(),
            bytes,
            "blob {hex} over HTTP"
        );
    }
    // sha256 set to the module's hash (the http(s):// rule) does not match an oci:// image.
    let e = fetch(&mut src, "0.1.0", Some(&sha256_hex(wasm)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "has checksum {}, which does not match",
            release.manifest_hex()
        )),
        "{e}"
    );

    // Our own pusher (no skopeo) lands on the same digest.
    let mut local = LayoutSource::new(&layout_dir).unwrap();
    let pushed = registry::push_http(reg.addr(), "rust-pushed", &mut local, "0.1.0").unwrap();
    assert_eq!(pushed, release.manifest_digest);
    assert_eq!(
        fetch(
            &mut reg.source("rust-pushed"),
            "0.1.0",
            Some(release.manifest_hex())
        )
        .unwrap()
        .module,
        wasm
    );

    // The tarball is a valid oci-archive with the same image.
    let pushed = registry::skopeo(
        &skopeo,
        &[
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}:0.1.0", tar.display()),
            &format!("docker://{host}/{REPO}:from-archive"),
        ],
    );
    pushed.unwrap();
    assert_eq!(
        src.get_manifest("from-archive").unwrap().1.as_deref(),
        Some(release.manifest_digest.as_str())
    );

    // build.sh's own output, when there is one: it round-trips with its digest too.
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/oci");
    if dist.join("index.json").is_file() {
        let mut d = LayoutSource::new(&dist).unwrap();
        let index = d.index().unwrap();
        let desc = &index["manifests"][0];
        let tag = desc["annotations"][authz_oci::REF_NAME]
            .as_str()
            .unwrap()
            .to_string();
        let digest = desc["digest"].as_str().unwrap().to_string();
        let pushed =
            registry::push_layout(&skopeo, &dist, &tag, &host, "dist", false, tmp.path()).unwrap();
        assert_eq!(pushed, digest, "dist/oci pushed with its digest");
        let mut dsrc = reg.source("dist");
        let f = fetch(&mut dsrc, &tag, Some(digest.trim_start_matches("sha256:"))).unwrap();
        let local = fetch(&mut d, &tag, None).unwrap();
        assert_eq!(f.module, local.module);
    } else {
        eprintln!("note: no dist/oci (run ./build.sh); only the test's own layout was pushed");
    }
}

#[test]
fn the_fetcher_rules_hold_for_images_served_by_a_registry() {
    let Some((registry_bin, skopeo)) =
        registry_tools("the_fetcher_rules_hold_for_images_served_by_a_registry")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let wasm = module_bytes();
    let dir = tmp.path().join("variants");
    let written = write_test_images(&dir, wasm, &opts(), &TestImage::ALL).unwrap();
    let reg = LocalRegistry::start(&registry_bin, &tmp.path().join("registry")).unwrap();
    let mut src = reg.source(REPO);
    let mut failures = Vec::new();
    for (image, desc) in &written {
        // skopeo's oci: transport only reads OCI-typed manifests from a layout: the Docker
        // one goes up with our own pusher.
        let pushed = if *image == TestImage::Docker {
            registry::push_http(
                reg.addr(),
                REPO,
                &mut LayoutSource::new(&dir).unwrap(),
                image.tag(),
            )
        } else {
            registry::push_layout(
                &skopeo,
                &dir,
                image.tag(),
                &reg.host(),
                REPO,
                image.is_index(),
                tmp.path(),
            )
        }
        .unwrap_or_else(|e| panic!("{image:?}: {e:#}\n{}", reg.log_text()));
        assert_eq!(pushed, desc.digest, "{image:?}: pushed with its digest");
        match (image.expect(), fetch(&mut src, image.tag(), None)) {
            (Expect::Accept(v), Ok(f)) if f.variant == v && f.module == wasm => {}
            (Expect::Reject(text), Err(e)) if e.to_string().contains(text) => {}
            (expect, got) => failures.push(format!("{image:?}: expected {expect:?}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The index pitfall: sha256 = the index digest never matches (the child's is compared).
    let (_, index) = written
        .iter()
        .find(|(i, _)| *i == TestImage::Index)
        .unwrap();
    let e = fetch(
        &mut src,
        "index",
        Some(index.digest.trim_start_matches("sha256:")),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("which does not match"), "{e}");
    // The checker names the registry like istio-agent's log does.
    assert!(
        e.starts_with(&format!(
            "module downloaded from oci://{}:index",
            src.name()
        )),
        "{e}"
    );
}
