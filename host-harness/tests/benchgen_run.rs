//! Drives the benchmark until `authz-harness bench-gen` / `bench-run` are wired into the
//! binary: `bench/run.sh` runs this ignored test with the arguments in `AUTHZ_BENCH_ARGS`
//! (whitespace-separated; the first word is `bench-gen` or `bench-run`).
//!
//! ```sh
//! AUTHZ_BENCH_ARGS="bench-run --quick" cargo test --release -p authz-harness \
//!     --test benchgen_run -- --ignored --nocapture
//! ```

// Until `pub mod benchgen;` is declared in the library, compile the module into this test
// crate; it reaches the library's modules through these re-exports (`crate::envoy`, ...).
#[allow(unused_imports)]
pub use authz_harness::{envoy, out, outln, wasm};
#[allow(dead_code, unused_imports)]
#[path = "../src/benchgen/mod.rs"]
mod benchgen;

#[test]
#[ignore = "the benchmark: run through bench/run.sh"]
fn bench() {
    let args: Vec<String> = std::env::var("AUTHZ_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let (command, rest) = args.split_first().expect("AUTHZ_BENCH_ARGS is empty");
    let code = match command.as_str() {
        "bench-gen" => benchgen::cli(rest),
        "bench-run" => benchgen::run_cli(rest),
        other => panic!("unknown command {other}"),
    }
    .unwrap_or_else(|e| panic!("{e:#}"));
    // ExitCode has no accessor: compare with the only success value.
    assert_eq!(
        format!("{code:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS),
        "the benchmark reported failures (see above)"
    );
}
