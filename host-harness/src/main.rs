//! `authz-harness`: replay fixtures and explain decisions (docs/cli.md).

mod normalize;
#[macro_use]
mod stdout;

use anyhow::{anyhow, bail, Context, Result};
use authz_fixture::fixture::{self, Case, Fixture};
use authz_fixture::replay::{replay_fixture, CaseReport, Decider, Native};
use authz_plugin::engine::{Engine, PluginConfig};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
authz-harness: Istio AuthorizationPolicy decisions from the native engine, the proxy-wasm
module in Wasmtime, and Envoy.

USAGE:
  authz-harness replay [--wasm FILE | --native-only] [--format json] FIXTURE...
  authz-harness replay --envoy [--envoy-bin FILE] [--wasm FILE] [--format json] FIXTURE...
  authz-harness check --config FILE [--policy-file FILE]... --case CASE.yaml [--wasm FILE] [--format json]
  authz-harness render --kind WasmPlugin|EnvoyExtensionPolicy|envoy-filter --mode ztunnel|waypoint ... --policy-file FILE...
  authz-harness oci-layout --wasm FILE --out DIR [--tar FILE] [--source URL] [--revision REV] [--version V] [--created RFC3339]
  authz-harness bench-gen --n N --seed S --out DIR
  authz-harness bench-run [--quick] ...   (bench/run.sh; see BENCHMARKS.md)
  authz-harness soak [--duration SECONDS] ...   (bench/soak.sh; `soak --help`)

replay   runs every case of every fixture (a directory stands for every fixture file under
         it) through each implementation, prints one line per failing case and a last line
         `N passed, M failed`; exits 0 only when every case passed.
check    explains one connection or request: the decision, the policy and rule that
         decided, and for a deny the ALLOW rule that came closest and what failed.

render       turns AuthorizationPolicy files into a ready WasmPlugin, EnvoyExtensionPolicy or
             Envoy filter (`render --help`).
oci-layout   packs the module as the OCI image Istio and Envoy Gateway pull.

--wasm FILE     the module (default: the one build.sh produces, dist/authz_plugin.wasm)
--native-only   replay through the native engine only
--format json   one JSON object per case
";

struct Args {
    command: String,
    wasm: Option<PathBuf>,
    native_only: bool,
    json: bool,
    envoy: bool,
    envoy_bin: Option<PathBuf>,
    config: Option<PathBuf>,
    policy_files: Vec<PathBuf>,
    case: Option<PathBuf>,
    paths: Vec<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or_else(|| anyhow!("{USAGE}"))?;
    let mut a = Args {
        command,
        wasm: None,
        native_only: false,
        json: false,
        envoy: false,
        envoy_bin: None,
        config: None,
        policy_files: Vec::new(),
        case: None,
        paths: Vec::new(),
    };
    let value = |it: &mut dyn Iterator<Item = String>, flag: &str| -> Result<PathBuf> {
        it.next()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--wasm" => a.wasm = Some(value(&mut it, "--wasm")?),
            "--native-only" => a.native_only = true,
            "--format" => match it.next().as_deref() {
                Some("json") => a.json = true,
                Some("text") => a.json = false,
                other => bail!("--format takes json or text, not {other:?}"),
            },
            "--envoy" => a.envoy = true,
            "--envoy-bin" => a.envoy_bin = Some(value(&mut it, "--envoy-bin")?),
            "--config" => a.config = Some(value(&mut it, "--config")?),
            "--policy-file" => a.policy_files.push(value(&mut it, "--policy-file")?),
            "--case" => a.case = Some(value(&mut it, "--case")?),
            "-h" | "--help" => {
                out!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with("--") => bail!("unknown option {s}\n\n{USAGE}"),
            _ => a.paths.push(PathBuf::from(arg)),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authz-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        // Packaging and manifests have their own options (host-harness/src/oci).
        Some("oci-layout" | "render") => return authz_oci::cli(&argv),
        Some("bench-gen") => return authz_bench::cli(argv.get(1..).unwrap_or_default()),
        Some("bench-run") => return authz_bench::run_cli(argv.get(1..).unwrap_or_default()),
        Some("soak") => return authz_bench::soak::cli(argv.get(1..).unwrap_or_default()),
        _ => {}
    }
    let args = parse_args()?;
    match args.command.as_str() {
        "replay" => replay(&args),
        "check" => check(&args),
        "-h" | "--help" | "help" => {
            out!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

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

fn deciders(args: &Args) -> Result<Vec<Box<dyn Decider>>> {
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

fn replay(args: &Args) -> Result<ExitCode> {
    if args.paths.is_empty() {
        bail!("replay needs at least one FIXTURE file or directory");
    }
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
                if args.json {
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
            print_report(&r, args.json);
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

/// How `check` normalises a request's path, as said in its output.
const PATH_NORMALIZATION: &str = "Istio's default path normalization, which Envoy applies before any filter: RFC 3986 dot segments removed, escaped unreserved characters decoded, backslashes read as slashes; slashes not merged, escaped slashes kept";

fn check(args: &Args) -> Result<ExitCode> {
    let config_path = args
        .config
        .as_ref()
        .ok_or_else(|| anyhow!("check needs --config FILE"))?;
    let case_path = args
        .case
        .as_ref()
        .ok_or_else(|| anyhow!("check needs --case CASE.yaml"))?;
    let mut config = fixture::read_value(config_path)?;
    fixture::append_policy_files(&mut config, &args.policy_files)?;
    let case_value = fixture::read_value(case_path)?;
    // A case file holds one case; `expect` is optional here.
    let mut case_value = case_value;
    if let Some(m) = case_value.as_object_mut() {
        m.entry("expect").or_insert_with(|| "allow".into());
    }
    let mut case = Case::parse(&case_value).with_context(|| format!("{}", case_path.display()))?;
    // Envoy normalises the path before any filter; explain the request it delivers.
    let mut path_note = None;
    if let Some(http) = case.attributes.http.as_mut() {
        let normalized = normalize::istio_default(&http.path).map_err(|why| {
            anyhow!(
                "{}: path {:?}: {why}; there is no decision to explain",
                case_path.display(),
                String::from_utf8_lossy(&http.path)
            )
        })?;
        if normalized != http.path {
            path_note = Some((
                String::from_utf8_lossy(&http.path).into_owned(),
                String::from_utf8_lossy(&normalized).into_owned(),
            ));
            http.path = normalized;
        }
    }
    // The engine as the filter this traffic reaches compiles it, so that the load notes
    // printed are the ones that filter reports.
    let filtered = authz_fixture::replay::config_for_traffic(&config, &case);
    let parsed = PluginConfig::from_value(&filtered)
        .map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    let engine =
        Engine::from_config(parsed).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
    let explanation = engine.explain(case.traffic_for(engine.mode()), &case.attributes);

    let wasm = match (&args.wasm, args.native_only) {
        (Some(p), _) => Some(p.clone()),
        _ => None,
    };
    let mut module_view = None;
    if let Some(path) = wasm {
        let mut d = authz_wasm_host::decider::WasmDecider::load(&path)?;
        let fixture = Fixture {
            path: case_path.clone(),
            name: "check".into(),
            config: config.clone(),
            expect_error: None,
            cases: vec![case.clone()],
        };
        d.configure(&fixture)
            .map_err(|e| anyhow!("the module rejected the configuration: {e}"))?;
        module_view = Some(
            d.explain(&case)
                .map_err(|e| anyhow!("the module failed: {e}"))?,
        );
    }

    if args.json {
        let mut v = serde_json::json!({
            "verdict": explanation.verdict.as_str(),
            "policy": explanation.policy,
            "rule": explanation.rule,
            "reason": explanation.reason,
            "target": explanation.target,
            "audit": explanation.audit,
            "dryRun": explanation.dry_run.as_ref().map(|(v, p)| serde_json::json!({"expect": v.as_str(), "policy": p})),
            "nearMiss": explanation.near_miss.as_ref().map(|m| serde_json::json!({
                "policy": m.policy, "rule": m.rule, "field": m.field, "wanted": m.wanted, "actual": m.actual,
                "conditionsHeld": m.clauses_matched, "conditions": m.clauses,
            })),
        });
        if let (Some(m), Some(obj)) = (&module_view, v.as_object_mut()) {
            obj.insert("module".into(), m.clone());
        }
        if let (Some((received, normalized)), Some(obj)) = (&path_note, v.as_object_mut()) {
            obj.insert(
                "path".into(),
                serde_json::json!({"received": received, "normalized": normalized,
                                   "normalization": PATH_NORMALIZATION}),
            );
        }
        outln!("{v}");
    } else {
        if let Some((received, normalized)) = &path_note {
            outln!(
                "path: {received:?} is explained as {normalized:?}, the path Envoy delivers ({PATH_NORMALIZATION})"
            );
        }
        out!("{explanation}");
        if let Some(m) = &module_view {
            let what = match (m["status"].as_u64(), m["closed"].as_bool()) {
                (Some(status), _) => {
                    format!(
                        "local reply {status} {:?}",
                        m["body"].as_str().unwrap_or("")
                    )
                }
                (None, Some(true)) => "closed the connection before any byte passed".to_string(),
                _ => "let it through".to_string(),
            };
            outln!(
                "module (in Wasmtime, driven as Envoy drives it): {} - {what}",
                m["verdict"].as_str().unwrap_or("?").to_uppercase()
            );
            for line in m["log"].as_array().into_iter().flatten() {
                outln!("  {}", line.as_str().unwrap_or(""));
            }
        }
        for n in engine.notes() {
            outln!("note: {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
