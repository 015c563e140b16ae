//! The fixtures of tests/fixtures replayed through a real Envoy with the module (docs/cli.md
//! `replay --envoy`), next to the native engine: Envoy must decide every reproducible
//! case as the native engine does; cases that cannot be reproduced on loopback are skipped
//! with the reason. (Cases the native engine itself fails are reported, not failed here: they
//! belong to the engine and the fixtures.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use authz_envoy::replay::EnvoyDecider;
use authz_fixture::fixture::{self, Fixture};
use authz_fixture::replay::{replay_fixture, Decider, Native};
use authz_fixture::workspace::repo_root;
use common::envoy_and_module;

#[test]
fn envoy_replay_fixtures() {
    let test = "envoy_replay_fixtures";
    let Some((env, wasm)) = envoy_and_module(test) else {
        return;
    };
    let files = fixture::collect(&[repo_root().join("tests/fixtures")]).unwrap();
    assert!(!files.is_empty(), "no fixtures under tests/fixtures");
    let mut native = Native::default();
    let mut envoy = EnvoyDecider::new(env.bin.clone(), wasm).unwrap();
    let (mut passed, mut failed, mut skipped, mut not_envoy) = (0, 0, 0, 0);
    let mut lines = Vec::new();
    for file in &files {
        let fixture = match Fixture::load(file) {
            Ok(f) => f,
            Err(e) => {
                // A fixture the loader refuses is not Envoy's business.
                not_envoy += 1;
                lines.push(format!("NOTE {}: {e:#}", file.display()));
                continue;
            }
        };
        let mut deciders: [&mut dyn Decider; 2] = [&mut native, &mut envoy];
        for r in replay_fixture(&fixture, &mut deciders) {
            let what = format!("{} / {}", r.file, r.case);
            if let Some(reason) = &r.skipped {
                skipped += 1;
                lines.push(format!("SKIP {what}: {reason}"));
            } else if r.passed() {
                passed += 1;
            } else if envoy_differs(&r.failures) {
                failed += 1;
                lines.push(format!("FAIL {what}: {}", r.failures.join("; ")));
            } else {
                // The native engine fails the same way: an engine or fixture matter, and
                // Envoy agrees with the engine.
                not_envoy += 1;
                lines.push(format!("NOTE {what}: {}", r.failures.join("; ")));
            }
        }
    }
    for l in &lines {
        eprintln!("{l}");
    }
    eprintln!(
        "envoy replay: {passed} passed, {failed} failed, {skipped} skipped \
         ({not_envoy} failing the same way natively)"
    );
    if failed > 0 {
        let kept = envoy.keep_files();
        eprintln!("envoy files kept in {}", kept.display());
    }
    assert_eq!(
        failed, 0,
        "Envoy disagrees with the native engine (see above)"
    );
    assert!(passed > 0, "no case ran through envoy");
    // Only what Envoy itself refuses, or what no PROXY protocol header can carry, is
    // skipped: addresses reach Envoy through the waypoint chain (Layer 7) or PROXY headers.
    let accepted = [
        "envoy refused the request before the filter",
        "a PROXY protocol header carries one address family",
    ];
    let unexplained: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("SKIP "))
        .filter(|l| !accepted.iter().any(|a| l.contains(a)))
        .collect();
    assert!(
        unexplained.is_empty(),
        "cases skipped for another reason:\n{unexplained:#?}"
    );
}

/// Whether a failing case's failures are Envoy's own: Envoy disagrees with the native engine,
/// or Envoy failed while the native engine did not.
fn envoy_differs(failures: &[String]) -> bool {
    let native_failed = failures.iter().any(|f| f.starts_with("native:"));
    failures.iter().any(|f| {
        f.starts_with("envoy decided")
            || f.contains("but envoy reports")
            || (f.starts_with("envoy:") && !native_failed)
    })
}
