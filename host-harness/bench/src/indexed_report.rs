//! The results against `native-indexed` (the hand-indexed native configuration,
//! [`super::indexed`]): a table per set and the plot data.

use std::fmt::Write as _;

use super::gen::SetKind;
use super::run::{fmt_mib, fmt_num, per_variant, LoadRun, Results, Spread};

/// The variants this report compares.
const COMPARED: [&str; 3] = ["native", "native-indexed", "module"];

/// module / native-indexed for one measure, per round (runs of one round were side by side).
fn ratio(r: &Results, set: SetKind, n: usize, role: &str, f: &dyn Fn(&LoadRun) -> f64) -> String {
    let of = |variant: &'static str| {
        r.runs
            .iter()
            .filter(move |x| x.set == set && x.n == n && x.role == role && x.variant == variant)
    };
    let v: Vec<f64> = of("module")
        .filter_map(|m| {
            of("native-indexed")
                .find(|x| x.round == m.round)
                .map(|x| f(m) / f(x))
        })
        .collect();
    match Spread::of(v) {
        Some(s) if (s.max - s.min).abs() < 1e-9 => format!("{:.2}", s.median),
        Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "–".into(),
    }
}

/// The module against the best native configuration: throughput, CPU and start-up.
pub fn table(r: &Results) -> String {
    let mut md = String::new();
    let rows: Vec<_> = r
        .summary
        .iter()
        .filter(|s| s.rps.contains_key("native-indexed"))
        .collect();
    if rows.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "\n#### Against the hand-indexed native configuration (`native-indexed`)\n\nThe same policies as one unified matcher in Envoy's RBAC filter (exact principals in a hash map on the URI SAN, principal prefixes and namespaces in prefix maps, the rest in a list; see `host-harness/bench/src/indexed.rs`): the best native configuration anyone could write, not what istiod generates.\n"
    );
    let _ = writeln!(
        md,
        "| set | N | request | req/s native / native-indexed / module | **module/native-indexed req/s** | CPU µs/req native / native-indexed / module | module/native-indexed CPU | p50 µs native-indexed / module |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|");
    for s in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {}{} | {} | **{}** | {} | {} | {} |",
            s.set.name(),
            s.n,
            s.role,
            if s.decisions_ok { "" } else { " ⚠" },
            per_variant(&COMPARED, |v| fmt_num(s.rps.get(v), 0)),
            ratio(r, s.set, s.n, s.role, &|x| x.rps),
            per_variant(&COMPARED, |v| fmt_num(s.cpu_us_per_req.get(v), 1)),
            ratio(r, s.set, s.n, s.role, &|x| x.cpu_us_per_req),
            per_variant(&["native-indexed", "module"], |v| fmt_num(
                s.p50_us.get(v),
                0
            )),
        );
    }
    let startup: Vec<_> = r
        .startup
        .iter()
        .filter(|s| s.variant == "native-indexed")
        .collect();
    if !startup.is_empty() {
        let _ = writeln!(
            md,
            "\n| set | N | start-up s native / native-indexed / module | VmRSS MiB (ready) native / native-indexed / module |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|");
        for x in startup {
            let get = |v: &str| r.startup_of(x.set, x.n, v);
            let t = |v: &str| get(v).map_or("–".into(), |s| format!("{:.2}", s.startup_s));
            let m = |v: &str| get(v).map_or("–".into(), |s| fmt_mib(s.vmrss_kib_ready));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                x.set.name(),
                x.n,
                per_variant(&COMPARED, t),
                per_variant(&COMPARED, m),
            );
        }
    }
    md
}

/// gnuplot data for the memory panel: per set and N, VmRSS (MiB, ready) of native,
/// native-indexed and the module with one worker and with two, and the module's linear
/// memory. Columns: N, native, native-indexed, module, native w2, native-indexed w2,
/// module w2, linear.
pub fn memory_data(r: &Results, set: SetKind) -> Option<String> {
    let mut ns: Vec<usize> = r
        .startup
        .iter()
        .filter(|s| s.set == set)
        .map(|s| s.n)
        .collect();
    ns.sort_unstable();
    ns.dedup();
    if ns.is_empty() {
        return None;
    }
    let mut out = String::from(
        "# N native native-indexed module native-w2 native-indexed-w2 module-w2 linear-MiB\n",
    );
    for n in ns {
        let one = |v: &str| {
            r.startup_of(set, n, v)
                .map_or("NaN".into(), |s| fmt_mib(s.vmrss_kib_ready))
        };
        let two = |v: &str| {
            r.workers_of(set, n, v)
                .map_or("NaN".into(), |w| fmt_mib(w.vmrss_kib_ready))
        };
        let linear = r
            .footprint
            .iter()
            .find(|f| f.set == set && f.n == n)
            .and_then(|f| f.footprint.linear_memory_bytes)
            .map_or("NaN".into(), |b| format!("{:.2}", b as f64 / 1048576.0));
        let _ = writeln!(
            out,
            "{n} {} {} {} {} {} {} {linear}",
            one("native"),
            one("native-indexed"),
            one("module"),
            two("native"),
            two("native-indexed"),
            two("module"),
        );
    }
    Some(out)
}

/// The memory panels of the plot (Layer 7 and Layer 4): writes their data files into `dir`
/// and returns each panel's gnuplot commands.
pub fn memory_panels(r: &Results, dir: &std::path::Path, tag: &str) -> anyhow::Result<Vec<String>> {
    let mut panels = Vec::new();
    for set in [SetKind::L7, SetKind::L4] {
        let Some(data) = memory_data(r, set) else {
            continue;
        };
        let file = format!("{tag}-{}-memory.dat", set.name());
        std::fs::write(dir.join(&file), data)?;
        let line = |col: usize, dash: usize, color: &str, title: &str| {
            format!("'{file}' using 1:{col} with linespoints lw 2 dt {dash} lc rgb '{color}' title '{title}'")
        };
        let plots = [
            line(2, 1, "#c0392b", "native RBAC, VmRSS"),
            line(3, 1, "#1e8449", "native-indexed, VmRSS"),
            line(4, 1, "#2471a3", "module, VmRSS"),
            line(5, 2, "#c0392b", "native RBAC, VmRSS, 2 workers"),
            line(6, 2, "#1e8449", "native-indexed, VmRSS, 2 workers"),
            line(7, 2, "#2471a3", "module, VmRSS, 2 workers"),
            line(8, 3, "#7d3c98", "module, linear memory (one VM)"),
        ];
        panels.push(format!(
            "set title \"Memory, {}: Envoy's resident memory once ready (1 and 2 workers) and the module's linear memory\"\nset ylabel 'MiB'\nplot {}",
            set.name(),
            plots.join(", \\\n     ")
        ));
    }
    Ok(panels)
}
