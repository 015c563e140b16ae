//! Two builds of the same sources, from different checkout folders, with different CARGO_HOMEs
//! and target directories, give byte-identical modules (before and after wasm-opt) and the
//! same image digest. Runs `build.sh --module-only` (the module only: about 15-30 s per copy on
//! two cores; the harness is not rebuilt) in two copies of the repository's files
//! (`git ls-files -co --exclude-standard`, i.e. tracked plus uncommitted, without dist/).
//!
//! The second CARGO_HOME is fresh (its registry/src is unpacked anew, so dependency paths
//! really differ) but borrows the first one's registry index and downloaded crates and builds
//! offline: no network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use authz_oci::layout::{self, ReleaseOptions};
use authz_oci::time::Timestamp;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn skip(msg: &str) {
    if in_ci() {
        panic!("CI is set: {msg}");
    }
    eprintln!("SKIPPED oci_reproducible: {msg}");
}

/// Tracked and untracked-but-not-ignored files, minus build outputs.
fn repo_files() -> Option<Vec<String>> {
    let out = Command::new("git")
        .current_dir(root())
        .args(["ls-files", "-z", "-co", "--exclude-standard"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut files: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .filter(|f| !f.starts_with("dist/") && !f.starts_with("target/") && !f.starts_with(".venv"))
        .filter(|f| root().join(f).is_file())
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

fn copy_repo(files: &[String], to: &Path) {
    for f in files {
        let dst = to.join(f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(root().join(f), &dst).unwrap_or_else(|e| panic!("copying {f}: {e}"));
    }
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"))
}

/// A new CARGO_HOME sharing `real`'s registry index and crate downloads (read-only use,
/// offline), with its own `registry/src`.
fn fresh_cargo_home(real: &Path, at: &Path) {
    std::fs::create_dir_all(at.join("registry")).unwrap();
    for d in ["index", "cache"] {
        let src = real.join("registry").join(d);
        assert!(
            src.is_dir(),
            "{} is missing: build the module once first",
            src.display()
        );
        std::os::unix::fs::symlink(&src, at.join("registry").join(d)).unwrap();
    }
    for f in ["config.toml", "config"] {
        if real.join(f).is_file() {
            std::fs::copy(real.join(f), at.join(f)).unwrap();
        }
    }
}

fn build(
    copy: &Path,
    target: &Path,
    home: Option<&Path>,
    skip_wasm_opt: bool,
) -> (Vec<u8>, Vec<u8>) {
    let mut cmd = Command::new("bash");
    cmd.arg("build.sh")
        .arg("--module-only")
        .current_dir(copy)
        .env("CARGO_TARGET_DIR", target);
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS",
        "SOURCE_DATE_EPOCH",
    ] {
        cmd.env_remove(v);
    }
    if let Some(h) = home {
        cmd.env("CARGO_HOME", h).env("CARGO_NET_OFFLINE", "true");
    }
    if skip_wasm_opt {
        cmd.env("SKIP_WASM_OPT", "1");
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "build.sh --module-only in {} failed:\n{}{}",
        copy.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("built in {} ({:.0?})", copy.display(), started.elapsed());
    let read = |f: &str| std::fs::read(copy.join("dist").join(f)).unwrap();
    (read("authz_plugin.unopt.wasm"), read("authz_plugin.wasm"))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "sizes {} and {}, first difference at byte {at}",
        a.len(),
        b.len()
    )
}

#[test]
fn two_builds_in_different_folders_and_cargo_homes_give_the_same_module_and_image() {
    let Some(files) = repo_files() else {
        return skip("not a git checkout (git ls-files failed)");
    };
    let wasm_opt = Command::new("wasm-opt")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !wasm_opt {
        skip("wasm-opt (binaryen) not installed; comparing the unoptimised modules only");
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (
        tmp.path().join("first-checkout"),
        tmp.path().join("elsewhere/second"),
    );
    copy_repo(&files, &a);
    copy_repo(&files, &b);
    let home_b = tmp.path().join("another-cargo-home");
    fresh_cargo_home(&cargo_home(), &home_b);

    let (unopt_a, opt_a) = build(&a, &tmp.path().join("target-a"), None, !wasm_opt);
    let (unopt_b, opt_b) = build(&b, &tmp.path().join("target-b"), Some(&home_b), !wasm_opt);

    // No build-machine path made it into the module.
    for m in [&unopt_a, &unopt_b] {
        for p in [
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            home_b.to_str().unwrap(),
            cargo_home().to_str().unwrap(),
        ] {
            assert!(!contains(m, p), "the module contains the path {p}");
        }
        assert!(
            contains(m, "/cargo/registry/src/"),
            "dependency paths are remapped to /cargo"
        );
    }
    assert!(
        unopt_a == unopt_b,
        "unoptimised modules differ: {}",
        first_difference(&unopt_a, &unopt_b)
    );
    assert!(
        opt_a == opt_b,
        "optimised modules differ: {}",
        first_difference(&opt_a, &opt_b)
    );
    if wasm_opt {
        assert!(opt_a.len() < unopt_a.len(), "wasm-opt made it smaller");
    }

    // Same module, same options → same image, wherever it is written.
    let opts = ReleaseOptions {
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        created: Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
        ..ReleaseOptions::default()
    };
    let ra = layout::write_release(&opt_a, &a.join("dist/oci"), &opts).unwrap();
    let rb = layout::write_release(&opt_b, &b.join("dist/oci"), &opts).unwrap();
    assert_eq!(ra.manifest_digest, rb.manifest_digest);
    let tree = |d: &Path| -> Vec<(String, Vec<u8>)> {
        layout::layout_entries(d)
            .unwrap()
            .into_iter()
            .map(|(n, p)| (n, p.map(|p| std::fs::read(p).unwrap()).unwrap_or_default()))
            .collect()
    };
    assert!(
        tree(&a.join("dist/oci")) == tree(&b.join("dist/oci")),
        "the layouts differ"
    );
    eprintln!(
        "module sha256:{}, image {}",
        authz_oci::sha256_hex(&opt_a),
        ra.manifest_digest
    );
}
