//! Where the module is, and building it.

use anyhow::{bail, Context as _};
use authz_fixture::workspace::{built_module, repo_root, target_dir};
use std::path::PathBuf;
use std::process::Command;

/// `cargo build` of the plugin for `wasm32-wasip1` with the module's `wasm` profile, run from
/// the repository root; callers add what their build needs.
fn cargo_build_plugin() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(repo_root()).args([
        "build",
        "-p",
        "authz-plugin",
        "--target",
        "wasm32-wasip1",
        "--profile",
        "wasm",
    ]);
    command
}

/// `path`, once a successful build should have written it.
fn built_file(path: PathBuf) -> anyhow::Result<PathBuf> {
    if !path.is_file() {
        bail!("the build succeeded but {} is missing", path.display());
    }
    Ok(path)
}

/// Builds the module with the release profile and returns its path. Cargo makes this a
/// no-op when it is up to date.
pub fn build_module() -> anyhow::Result<PathBuf> {
    let status = cargo_build_plugin()
        .status()
        .context("running cargo build for the wasm module")?;
    if !status.success() {
        bail!("cargo build -p authz-plugin --target wasm32-wasip1 --profile wasm failed ({status}); is the target installed (rustup target add wasm32-wasip1)?");
    }
    built_file(built_module())
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
    let dir = target_dir().join("fault-injection");
    let status = cargo_build_plugin()
        .args(["--locked", "--features", "fault-injection", "--target-dir"])
        .arg(&dir)
        .status()
        .context("running cargo build for the fault-injection module")?;
    if !status.success() {
        bail!("building the fault-injection module failed ({status})");
    }
    built_file(
        dir.join("wasm32-wasip1")
            .join("wasm")
            .join("authz_plugin.wasm"),
    )
}
