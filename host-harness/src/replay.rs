//! `authz-harness replay`: every case of every fixture through the native engine, the module
//! in Wasmtime and optionally Envoy.

use crate::{Format, ReplayArgs};
use anyhow::{anyhow, Result};
use authz_fixture::fixture::{self, Fixture};
use authz_fixture::replay::{replay_fixture, CaseReport, Decider, Native};
use std::path::PathBuf;
use std::process::ExitCode;

/// The module `build.sh` produces, looked up from the working directory and from the
/// binary's own location (target/<profile>/authz-harness).
fn default_wasm() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("dist/authz_plugin.wasm")];
    if let Ok(exe) = std::env::current_exe() {
        if let Some(root) = exe
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.parent())
        {
            candidates.push(root.join("dist/authz_plugin.wasm"));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn deciders(args: &ReplayArgs) -> Result<Vec<Box<dyn Decider>>> {
    let mut out: Vec<Box<dyn Decider>> = vec![Box::new(Native::default())];
    if args.native_only {
        return Ok(out);
    }
    let wasm = match &args.wasm {
        Some(p) => p.clone(),
        None => default_wasm().ok_or_else(|| {
            anyhow!("no module found at dist/authz_plugin.wasm: run ./build.sh, pass --wasm FILE, or use --native-only")
        })?,
    };
    out.push(Box::new(authz_wasm_host::decider::WasmDecider::load(
        &wasm,
    )?));
    if args.envoy {
        let bin = args
            .envoy_bin
            .clone()
            .or_else(authz_envoy::find_envoy)
            .ok_or_else(|| anyhow!("no Envoy found: run scripts/install-envoy.sh, set ENVOY_BIN, or pass --envoy-bin FILE"))?;
        out.push(Box::new(authz_envoy::replay::EnvoyDecider::new(bin, wasm)?));
    }
    Ok(out)
}

/// `authz-harness replay`.
pub(crate) fn run(args: &ReplayArgs) -> Result<ExitCode> {
    let json = args.format == Format::Json;
    let files = fixture::collect(&args.paths)?;
    let mut boxed = deciders(args)?;
    let mut refs: Vec<&mut dyn Decider> = boxed
        .iter_mut()
        .map(|b| b.as_mut() as &mut dyn Decider)
        .collect();
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for file in &files {
        let fixture = match Fixture::load(file) {
            Ok(f) => f,
            Err(e) => {
                failed += 1;
                if json {
                    outln!(
                        "{}",
                        serde_json::json!({"file": file.display().to_string(), "result": "failed", "failures": [format!("{e:#}")]})
                    );
                } else {
                    outln!("FAIL {}: {e:#}", file.display());
                }
                continue;
            }
        };
        for r in replay_fixture(&fixture, &mut refs) {
            print_report(&r, json);
            if r.skipped.is_some() {
                skipped += 1;
            } else if r.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    if skipped > 0 {
        outln!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        outln!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(r: &CaseReport, json: bool) {
    if json {
        outln!("{}", r.to_json());
    } else if let Some(reason) = &r.skipped {
        outln!("SKIP {}: {} / {}: {reason}", r.file, r.fixture, r.case);
    } else if !r.passed() {
        outln!(
            "FAIL {}: {} / {}: {}",
            r.file,
            r.fixture,
            r.case,
            r.failures.join("; ")
        );
    }
}
