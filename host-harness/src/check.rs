//! `authz-harness check`: one connection or request explained by the native engine and, with
//! `--wasm`, answered by the module in Wasmtime.

use crate::{normalize, CheckArgs, Format};
use anyhow::{anyhow, Context, Result};
use authz_fixture::fixture::{self, Case, Fixture};
use authz_fixture::replay::Decider;
use authz_plugin::engine::{Engine, PluginConfig};
use std::process::ExitCode;

/// How `check` normalises a request's path, as said in its output.
const PATH_NORMALIZATION: &str = "Istio's default path normalization, which Envoy applies before any filter: RFC 3986 dot segments removed, escaped unreserved characters decoded, backslashes read as slashes; slashes not merged, escaped slashes kept";

/// `authz-harness check`.
pub(crate) fn run(args: &CheckArgs) -> Result<ExitCode> {
    let config_path = &args.config;
    let case_path = &args.case;
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

    let mut module_view = None;
    if let Some(path) = &args.wasm {
        let mut d = authz_wasm_host::decider::WasmDecider::load(path)?;
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

    if args.format == Format::Json {
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
