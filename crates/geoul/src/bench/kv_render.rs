//! The human form of a `bench kv` report: both systems side by side, a ratio row
//! per operation, the memory table, the §14 targets and the command.

use super::kv_report::{
    op_title, Comparison, KvReport, MemoryRun, PhaseStats, Side, TARGET_BYTES_PER_KEY,
};

/// Rows under a header; the first two columns left-aligned, the others right.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = (cells.iter().zip(&widths).enumerate())
            .map(|(i, (c, w))| match i {
                0 | 1 => format!("{c:<w$}"),
                _ => format!("{c:>w$}"),
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

const HEADER: [&str; 10] = [
    "operation",
    "system",
    "requests",
    "ops/s",
    "mean ms",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "errors",
];

fn phase_row(title: &str, system: &str, p: &PhaseStats) -> Vec<String> {
    let mut errors = p.errors.to_string();
    if let Some(hit) = p.hit_ratio {
        errors.push_str(&format!(" ({:.0}% hits)", hit * 100.0));
    }
    vec![
        title.to_string(),
        system.to_string(),
        p.requests.to_string(),
        format!("{:.0}", p.ops_per_s),
        format!("{:.3}", p.mean_ms),
        format!("{:.3}", p.p50_ms),
        format!("{:.3}", p.p99_ms),
        format!("{:.3}", p.p999_ms),
        format!("{:.3}", p.max_ms),
        errors,
    ]
}

fn ratio_row(c: &Comparison) -> Vec<String> {
    let x = |v: f64| format!("{v:.2}x");
    vec![
        String::new(),
        "geoul/redis".to_string(),
        String::new(),
        x(c.ops_ratio),
        String::new(),
        x(c.p50_ratio),
        x(c.p99_ratio),
        x(c.p999_ratio),
    ]
}

fn side_line<T>(name: &str, side: &Side<T>) -> Option<String> {
    match side {
        Side::Measured(_) => None,
        Side::Skipped { reason } => Some(format!("{name}: not measured: {reason}\n")),
        Side::Failed { error } => Some(format!("{name}: FAILED: {error}\n")),
    }
}

fn throughput(report: &KvReport) -> String {
    let redis = report.redis.measured();
    let mut rows = Vec::new();
    for g in &report.geoul.phases {
        let title = op_title(g.op);
        rows.push(phase_row(title, &format!("geoul {}", g.request), g));
        if let Some(r) = redis.and_then(|r| r.phase(g.op)) {
            rows.push(phase_row("", &format!("redis {}", r.request), r));
        }
        if let Some(c) = report.comparisons.iter().find(|c| c.op == g.op) {
            rows.push(ratio_row(c));
        }
    }
    let mut out = table(&HEADER, &rows);
    let mut firsts = vec![&report.geoul];
    firsts.extend(redis);
    for run in firsts {
        for p in run.phases.iter().filter(|p| p.errors > 0) {
            let why = p.first_error.as_deref().unwrap_or("?");
            out.push_str(&format!(
                "{} {}: first error: {why}\n",
                run.system, p.request
            ));
        }
    }
    out
}

fn targets(report: &KvReport) -> String {
    let mut out = String::from("\ntargets (DESIGN.md §14; ratios of this run, geoul / redis):\n");
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    for c in &report.comparisons {
        let (Some(t), Some(met)) = (c.target_ops_ratio, c.target_met) else {
            continue;
        };
        out.push_str(&format!(
            "  {:<16} ops/s {:.2}x (target >= {t:.1}x), p99 {:.2}x (target <= 1.00x): {}\n",
            op_title(c.op),
            c.ops_ratio,
            c.p99_ratio,
            verdict(met)
        ));
    }
    if let Some(g) = report.memory_geoul.as_ref().and_then(Side::measured) {
        if let Some(f) = g.figures.first() {
            let met = f.bytes_per_key <= TARGET_BYTES_PER_KEY;
            out.push_str(&format!(
                "  {:<16} {:.1} bytes/key (target <= {TARGET_BYTES_PER_KEY:.0}): {}\n",
                "memory",
                f.bytes_per_key,
                verdict(met)
            ));
        }
    }
    if report.comparisons.is_empty() {
        out.push_str("  throughput: n/a (Redis not measured)\n");
    }
    out
}

const MEMORY_HEADER: [&str; 7] = [
    "system",
    "measure",
    "before MiB",
    "after MiB",
    "bytes/key",
    "load s",
    "load ops/s",
];

fn memory(report: &KvReport) -> String {
    let sides: Vec<(&str, &Side<MemoryRun>)> = [
        ("geoul", report.memory_geoul.as_ref()),
        ("redis", report.memory_redis.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, side)| side.map(|s| (name, s)))
    .collect();
    let Some(keys) = sides.iter().find_map(|(_, s)| s.measured()).map(|m| m.keys) else {
        let why = if sides.is_empty() {
            " (--memory-keys 0)"
        } else {
            ""
        };
        let mut out = format!("\nmemory per key: not measured{why}\n");
        for (name, side) in &sides {
            out.extend(side_line(name, side));
        }
        return out;
    };
    let mut out = format!(
        "\nmemory per key: {keys} keys x {}-byte values, each key written once into a fresh \
         single instance:\n",
        report.value_bytes
    );
    let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
    let mut rows = Vec::new();
    let mut notes = String::new();
    for (name, side) in &sides {
        let Some(m) = side.measured() else {
            notes.extend(side_line(name, side));
            continue;
        };
        for (i, f) in m.figures.iter().enumerate() {
            let load = |s: String| if i == 0 { s } else { String::new() };
            rows.push(vec![
                name.to_string(),
                f.measure.clone(),
                mib(f.before_bytes),
                mib(f.after_bytes),
                format!("{:.1}", f.bytes_per_key),
                load(format!("{:.1}", m.load.seconds)),
                load(format!("{:.0}", m.load.ops_per_s)),
            ]);
        }
        notes.push_str(&format!("{name}: {}\n", m.settings));
    }
    out.push_str(&table(&MEMORY_HEADER, &rows));
    if let Some(r) = report.memory_ratio {
        out.push_str(&format!(
            "geoul/redis bytes per key (first rows): {r:.2}x\n"
        ));
    }
    out.push_str(&notes);
    out
}

/// The human report.
pub fn render(report: &KvReport) -> String {
    let mut out = format!(
        "kv: {} clients per system, each with its own connection and one request in flight; \
         {}; keys drawn uniformly from {} (each written once beforehand); {}-byte values\n",
        report.clients, report.work, report.keys, report.value_bytes
    );
    out.push_str(&format!(
        "geoul {}: {}\n",
        report.geoul.version, report.geoul.settings
    ));
    match &report.redis {
        Side::Measured(r) => out.push_str(&format!("redis {}: {}\n", r.version, r.settings)),
        other => out.extend(side_line("redis", other)),
    }
    out.push('\n');
    out.push_str(&throughput(report));
    out.push_str(&memory(report));
    out.push_str(&targets(report));
    out.push_str(&format!("\nreproduce: {}\n", report.command));
    out
}
