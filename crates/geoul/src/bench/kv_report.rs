//! The result of `bench kv`: both systems' phases, ratios geoul/Redis and the
//! DESIGN.md §14 targets, as data (JSON); `kv_render` prints it as tables.

use serde::Serialize;

use super::kv_load::{Op, Outcome};

/// §14: geoul's replicated write throughput over Redis `SET` + `WAIT 1`.
pub const TARGET_REPLICATED_OPS: f64 = 1.5;
/// §14: geoul's `Ack::One` write throughput over plain Redis `SET`.
pub const TARGET_ONE_OPS: f64 = 1.0;
/// §14: bytes per key of geoul at 1M keys.
pub const TARGET_BYTES_PER_KEY: f64 = 200.0;

/// One phase of one system.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseStats {
    /// `set_replicated`, `set_one` or `get`.
    pub op: &'static str,
    /// What the system was asked, e.g. `SET ack=quorum` or `SET + WAIT 1`.
    pub request: String,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Reads only: the share that found their key.
    pub hit_ratio: Option<f64>,
}

pub fn op_name(op: Op) -> &'static str {
    match op {
        Op::SetReplicated => "set_replicated",
        Op::SetOne => "set_one",
        Op::Get => "get",
    }
}

pub fn op_title(op: &str) -> &'static str {
    match op {
        "set_replicated" => "write, 2 copies",
        "set_one" => "write, 1 copy",
        _ => "read",
    }
}

fn ms(d: Option<std::time::Duration>) -> f64 {
    d.map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

impl PhaseStats {
    pub fn new(op: Op, request: &str, o: &Outcome) -> Self {
        PhaseStats {
            op: op_name(op),
            request: request.to_string(),
            requests: o.ok,
            errors: o.errors,
            first_error: o.first_error.clone(),
            seconds: (o.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            ops_per_s: (o.ops_per_s() * 10.0).round() / 10.0,
            mean_ms: ms(o.hist.mean()),
            p50_ms: ms(o.hist.percentile(50.0)),
            p99_ms: ms(o.hist.percentile(99.0)),
            p999_ms: ms(o.hist.percentile(99.9)),
            max_ms: ms(o.hist.max()),
            hit_ratio: (op == Op::Get && o.ok > 0).then(|| o.found as f64 / o.ok as f64),
        }
    }
}

/// One system's throughput phases.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemRun {
    pub system: String,
    pub version: String,
    pub settings: String,
    pub phases: Vec<PhaseStats>,
}

impl SystemRun {
    pub fn phase(&self, op: &str) -> Option<&PhaseStats> {
        self.phases.iter().find(|p| p.op == op)
    }
}

/// One memory figure: a gauge read before and after the load.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryFigure {
    pub measure: String,
    pub before_bytes: u64,
    pub after_bytes: u64,
    pub bytes_per_key: f64,
}

impl MemoryFigure {
    pub fn new(measure: &str, before: u64, after: u64, keys: u64) -> Self {
        let grown = after.saturating_sub(before) as f64;
        MemoryFigure {
            measure: measure.to_string(),
            before_bytes: before,
            after_bytes: after,
            bytes_per_key: (grown / keys.max(1) as f64 * 10.0).round() / 10.0,
        }
    }
}

/// One system's memory load.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryRun {
    pub system: String,
    pub settings: String,
    pub keys: u64,
    pub load: PhaseStats,
    /// The first figure is the one compared.
    pub figures: Vec<MemoryFigure>,
}

/// A side that ran, was not run, or failed after it started.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Side<T> {
    Measured(Box<T>),
    Skipped { reason: String },
    Failed { error: String },
}

impl<T> Side<T> {
    pub fn measured(&self) -> Option<&T> {
        match self {
            Side::Measured(t) => Some(t),
            _ => None,
        }
    }
}

/// geoul against Redis for one operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub op: &'static str,
    pub ops_ratio: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    pub p999_ratio: f64,
    /// The §14 throughput target (minimum ops ratio), where there is one.
    pub target_ops_ratio: Option<f64>,
    /// Whether both §14 conditions (ops ratio, p99 ≤ Redis's) hold.
    pub target_met: Option<bool>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KvReport {
    /// The command that reproduces this run.
    pub command: String,
    pub clients: u32,
    /// `15 s per phase` or `1000 requests per client per phase`.
    pub work: String,
    pub keys: u64,
    pub value_bytes: u32,
    pub geoul: SystemRun,
    pub redis: Side<SystemRun>,
    pub comparisons: Vec<Comparison>,
    pub memory_geoul: Option<Side<MemoryRun>>,
    pub memory_redis: Option<Side<MemoryRun>>,
    /// geoul's compared figure / Redis's, per key.
    pub memory_ratio: Option<f64>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// geoul / Redis for every operation both measured.
pub fn compare(geoul: &SystemRun, redis: &Side<SystemRun>) -> Vec<Comparison> {
    let Some(redis) = redis.measured() else {
        return Vec::new();
    };
    (geoul.phases.iter())
        .filter_map(|g| redis.phase(g.op).map(|r| (g, r)))
        .map(|(g, r)| {
            let target = match g.op {
                "set_replicated" => Some(TARGET_REPLICATED_OPS),
                "set_one" => Some(TARGET_ONE_OPS),
                _ => None,
            };
            let ops_ratio = ratio(g.ops_per_s, r.ops_per_s);
            Comparison {
                op: g.op,
                ops_ratio,
                p50_ratio: ratio(g.p50_ms, r.p50_ms),
                p99_ratio: ratio(g.p99_ms, r.p99_ms),
                p999_ratio: ratio(g.p999_ms, r.p999_ms),
                target_ops_ratio: target,
                target_met: target.map(|t| ops_ratio >= t && g.p99_ms <= r.p99_ms),
            }
        })
        .collect()
}

/// The compared memory figures, geoul over Redis.
pub fn memory_ratio(
    geoul: Option<&Side<MemoryRun>>,
    redis: Option<&Side<MemoryRun>>,
) -> Option<f64> {
    let g = geoul?.measured()?.figures.first()?;
    let r = redis?.measured()?.figures.first()?;
    Some(ratio(g.bytes_per_key, r.bytes_per_key))
}

#[cfg(test)]
#[path = "kv_report_tests.rs"]
mod tests;
