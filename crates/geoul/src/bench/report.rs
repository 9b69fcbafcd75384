//! The result of `bench detect`: both systems side by side, as a table or JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::Detection;
use crate::cli::DetectArgs;

/// What the CPU-hog phase saw on one system (nothing is killed, so every
/// suspicion and death is false).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hog {
    pub seconds: u64,
    /// Busy threads in the benchmark process (one per core).
    pub threads: usize,
    /// Status requests (one per node per round) and how many failed.
    pub polls: u64,
    pub poll_errors: u64,
    /// Episodes of a member seen suspect (Redis: `fail?`) by anyone.
    pub false_suspicions: u64,
    /// Episodes of a member seen dead (Redis: `fail`) by anyone.
    pub false_deaths: u64,
    pub suspected: Vec<String>,
    pub declared_dead: Vec<String>,
    /// geoul only: refutations during the hog, summed over nodes.
    pub refutations: Option<u64>,
    /// geoul only: each node's Lifeguard local health score after the hog.
    pub local_health_end: Option<BTreeMap<String, u64>>,
    /// geoul only: the highest local health score seen in `/status` during the hog.
    pub max_local_health_seen: Option<u32>,
}

/// One system's measurements.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemResult {
    pub system: String,
    pub version: String,
    pub settings: String,
    pub detection: Detection,
    /// `None` with `--hog-seconds 0`.
    pub hog: Option<Hog>,
}

/// The Redis side: measured, not run, or failed after it started.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PeerOutcome {
    Measured(Box<SystemResult>),
    Skipped { reason: String },
    Failed { error: String },
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The command that reproduces this run.
    pub command: String,
    pub nodes: u16,
    pub kills: u32,
    pub hog_seconds: u64,
    pub geoul: SystemResult,
    pub redis: PeerOutcome,
    /// geoul p95 / Redis p95, when Redis was measured.
    pub p95_ratio: Option<f64>,
}

impl Report {
    pub fn new(args: &DetectArgs, geoul: SystemResult, redis: PeerOutcome) -> Self {
        let exe = std::env::args()
            .next()
            .unwrap_or_else(|| "geoul".to_string());
        let p95_ratio = match &redis {
            PeerOutcome::Measured(r) if r.detection.p95_ms > 0.0 => {
                Some(geoul.detection.p95_ms / r.detection.p95_ms)
            }
            _ => None,
        };
        Report {
            command: command(&exe, args),
            nodes: args.nodes,
            kills: args.kills,
            hog_seconds: args.hog_seconds,
            geoul,
            redis,
            p95_ratio,
        }
    }
}

/// `exe bench detect` with every setting that shapes the result spelled out.
pub fn command(exe: &str, args: &DetectArgs) -> String {
    let mut cmd = format!(
        "{exe} bench detect --nodes {} --kills {} --hog-seconds {} --redis {}",
        args.nodes,
        args.kills,
        args.hog_seconds,
        args.redis.word()
    );
    if let Some(base) = args.base_port {
        cmd.push_str(&format!(" --base-port {base}"));
    }
    cmd
}

const HEADER: [&str; 9] = [
    "system",
    "version",
    "kills",
    "min ms",
    "median ms",
    "p95 ms",
    "max ms",
    "hog suspicions",
    "hog deaths",
];

fn row(r: &SystemResult) -> Vec<String> {
    let d = &r.detection;
    let hog = |f: fn(&Hog) -> u64| r.hog.as_ref().map_or("-".to_string(), |h| f(h).to_string());
    vec![
        r.system.clone(),
        r.version.clone(),
        d.kills.to_string(),
        format!("{:.1}", d.min_ms),
        format!("{:.1}", d.median_ms),
        format!("{:.1}", d.p95_ms),
        format!("{:.1}", d.max_ms),
        hog(|h| h.false_suspicions),
        hog(|h| h.false_deaths),
    ]
}

/// Rows under a header; the first column left-aligned, the others right-aligned.
fn table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = (cells.iter().zip(&widths).enumerate())
            .map(|(i, (c, w))| match i {
                0 => format!("{c:<w$}"),
                _ => format!("{c:>w$}"),
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn names_or_dash(names: &[String]) -> String {
    if names.is_empty() {
        "-".to_string()
    } else {
        names.join(", ")
    }
}

fn hog_details(h: &Hog) -> String {
    let mut s = format!(
        "  hog: {} polls ({} failed); suspected: {}; declared dead: {}",
        h.polls,
        h.poll_errors,
        names_or_dash(&h.suspected),
        names_or_dash(&h.declared_dead)
    );
    if let Some(n) = h.refutations {
        s.push_str(&format!("; refutations: {n}"));
    }
    if let Some(health) = &h.local_health_end {
        let scores: Vec<String> = health.iter().map(|(n, v)| format!("{n} {v}")).collect();
        s.push_str(&format!("; local health at end: {}", scores.join(", ")));
    }
    if let Some(max) = h.max_local_health_seen {
        s.push_str(&format!(" (max seen {max})"));
    }
    s.push('\n');
    s
}

fn details(r: &SystemResult) -> String {
    let mut s = format!("{}: {}\n", r.system, r.settings);
    if let Some(h) = &r.hog {
        s.push_str(&hog_details(h));
    }
    s
}

/// The human report.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "crash detection, {} local nodes per system, {} × kill -9 each: ms until ALL \
         survivors report the node dead\n(geoul: `dead` in /status; Redis Cluster: `fail` \
         in CLUSTER NODES). CPU hog: {} s with every core busy, nothing killed.\n\n",
        report.nodes, report.kills, report.hog_seconds
    );
    let mut rows = vec![row(&report.geoul)];
    let mut peer_line = String::new();
    match &report.redis {
        PeerOutcome::Measured(r) => rows.push(row(r)),
        PeerOutcome::Skipped { reason } => {
            peer_line = format!("redis-cluster: not measured: {reason}\n");
        }
        PeerOutcome::Failed { error } => {
            peer_line = format!("redis-cluster: FAILED: {error}\n");
        }
    }
    out.push_str(&table(&rows));
    out.push_str(&peer_line);
    match report.p95_ratio {
        Some(ratio) => out.push_str(&format!("\np95 ratio geoul / redis: {ratio:.2}\n")),
        None => out.push_str("\np95 ratio geoul / redis: n/a (Redis not measured)\n"),
    }
    out.push_str(&details(&report.geoul));
    if let PeerOutcome::Measured(r) = &report.redis {
        out.push_str(&details(r));
    }
    out.push_str(&format!("reproduce: {}\n", report.command));
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
