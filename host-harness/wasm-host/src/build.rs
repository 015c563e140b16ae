//! Where the module is, and building it.

use anyhow::{bail, Context as _};
use authz_fixture::workspace::{built_module, repo_root, target_dir};
use std::path::PathBuf;
use std::process::Command;

/// Builds the module with the release profile and returns its path. Cargo makes this a
/// no-op when it is up to date.
pub fn build_module() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "build",
            "-p",
            "authz-plugin",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "wasm",
        ])
        .status()
        .context("running cargo build for the wasm module")?;
    if !status.success() {
        bail!("cargo build -p authz-plugin --target wasm32-wasip1 --profile wasm failed ({status}); is the target installed (rustup target add wasm32-wasip1)?");
    }
    let path = built_module();
    if !path.is_file() {
        bail!("the build succeeded but {} is missing", path.display());
    }
    Ok(path)
}

/// The module for tests: `$AUTHZ_WASM` if set, else a fresh build of the release profile.
pub fn module_for_tests() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("AUTHZ_WASM") {
        return Ok(PathBuf::from(path));
    }
    build_module()
}

/// Builds the test-only module that fails on demand (plugin feature `fault-injection`) into
/// its own target directory, so the release module's file is never replaced by it, and
/// returns its path.
pub fn build_fault_module() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let dir = target_dir().join("fault-injection");
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "build",
            "--locked",
            "-p",
            "authz-plugin",
            "--target",
            "wasm32-wasip1",
            "--profile",
            "wasm",
            "--features",
            "fault-injection",
            "--target-dir",
        ])
        .arg(&dir)
        .status()
        .context("running cargo build for the fault-injection module")?;
    if !status.success() {
        bail!("building the fault-injection module failed ({status})");
    }
    let path = dir
        .join("wasm32-wasip1")
        .join("wasm")
        .join("authz_plugin.wasm");
    if !path.is_file() {
        bail!("the build succeeded but {} is missing", path.display());
    }
    Ok(path)
}
