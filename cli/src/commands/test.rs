//! `istio-authz test`: the user's own fixture files (docs/fixtures.md) through the
//! engine; each case's expectations checked.

use super::{emit, Progress};
use anyhow::{bail, Result};
use authz_fixture::fixture::{self, Fixture};
use authz_fixture::replay::{replay_fixture, Decider, Native};
use serde_json::json;
use std::path::PathBuf;

/// Runs every case of every fixture; returns whether all passed.
pub fn run(paths: &[PathBuf], json: bool) -> Result<bool> {
    if paths.is_empty() {
        bail!("test needs at least one FIXTURE file or directory");
    }
    let files = fixture::collect(paths)?;
    let mut native = Native::default();
    let mut deciders: Vec<&mut dyn Decider> = vec![&mut native];
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut progress = Progress::new();
    for (i, file) in files.iter().enumerate() {
        progress.tick(i, files.len(), "fixture files");
        let fixture = match Fixture::load(file) {
            Ok(f) => f,
            Err(e) => {
                failed += 1;
                let message = format!("{e:#}");
                if json {
                    emit(&format!(
                        "{}\n",
                        json!({"file": file.display().to_string(), "result": "failed", "failures": [message]})
                    ))?;
                } else {
                    emit(&format!("FAIL {message}\n"))?;
                }
                continue;
            }
        };
        for report in replay_fixture(&fixture, &mut deciders) {
            if report.passed() {
                passed += 1;
            } else {
                failed += 1;
            }
            if json {
                emit(&format!("{}\n", report.to_json()))?;
            } else if !report.passed() {
                emit(&format!(
                    "FAIL {}: {} / {}: {}\n",
                    report.file,
                    report.fixture,
                    report.case,
                    report.failures.join("; ")
                ))?;
            }
        }
    }
    progress.finish();
    if json {
        emit(&format!(
            "{}\n",
            json!({"summary": {"passed": passed, "failed": failed}})
        ))?;
    } else {
        emit(&format!("{passed} passed, {failed} failed\n"))?;
    }
    Ok(failed == 0)
}
