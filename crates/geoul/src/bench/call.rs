//! `geoul bench call`: what a `ServiceRef` costs over a raw kv call
//! (DESIGN.md §14: "`ServiceRef::call` ≤ 10 % overhead over a raw kv call at
//! the same load"), and what session guarantees cost on top.
//!
//! A local 3-node cluster (`[kv]` Factor(2), writes at Quorum, durability
//! memory by default) is started like `bench kv`'s, the key space is written
//! once, then each operation (`SET ack=quorum`, `GET consistency=one`) runs as
//! timed phases on three drivers in turn (`call_drivers`): raw connections,
//! ServiceRefs, ServiceRefs without a session. `--rounds N` repeats the three
//! phases of each operation N times, interleaved, and merges them.
//!
//! Owns: the phases, the ratios and the report. Does not own: the drivers
//! (`call_drivers`), the load loop (`kv_load`) or the cluster (`kv_geoul`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::Rng;
use serde::Serialize;

use super::call_drivers::{connect_raw, connect_refs, RawDriver, RefDriver};
use super::kv::{duration_flag, KvCtx, REQUEST_DEADLINE};
use super::kv_geoul::{wait_placed, GeoulCluster, KvSettings};
use super::kv_hist::Histogram;
use super::kv_load::{Op, Outcome, Phase, Work};
use super::kv_render::table;
use super::kv_report::PhaseStats;
use super::make_run_dir;
use crate::cli::{CallBenchArgs, KvBenchArgs, RedisMode};
use crate::local_cluster::install_stop_flag;
use crate::Failure;

/// Phase length without `--duration` or `--requests-per-client`.
const DEFAULT_DURATION: Duration = Duration::from_secs(15);
/// Nodes of the cluster and copies of each key (as in `bench kv`).
const NODES: u16 = 3;
const COPIES: u8 = 2;
/// §14: most a `ServiceRef` may add over a raw call (time per request at
/// the same load, and p99).
pub const TARGET_OVERHEAD: f64 = 0.10;

/// The measured operations: operation and its label.
const OPS: [(Op, &str); 2] = [
    (Op::SetReplicated, "SET ack=quorum"),
    (Op::Get, "GET consistency=one"),
];

/// The three ways of calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Raw,
    Ref,
    RefNoSession,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Raw, Kind::Ref, Kind::RefNoSession];

    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Ref => "ref",
            Kind::RefNoSession => "ref-nosession",
        }
    }
}

/// One operation through one driver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallPhase {
    /// `raw`, `ref` or `ref-nosession`.
    pub driver: &'static str,
    #[serde(flatten)]
    pub stats: PhaseStats,
}

/// One driver against another for one operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overhead {
    /// `set_replicated` or `get`.
    pub op: &'static str,
    /// `serviceref` (ref / raw) or `session` (ref / ref-nosession).
    pub what: &'static str,
    /// The driver measured and the one it is compared with.
    pub driver: &'static str,
    pub baseline: &'static str,
    /// driver / baseline.
    pub ops_ratio: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    /// Extra time per request at the same concurrency: baseline ops/s over
    /// the driver's, minus one (a closed loop's ops/s is clients / mean
    /// latency).
    pub time_overhead: f64,
    /// p99 over the baseline's, minus one.
    pub p99_overhead: f64,
    /// For `serviceref`: both overheads within [`TARGET_OVERHEAD`].
    pub target_met: Option<bool>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallReport {
    /// The command that reproduces this run.
    pub command: String,
    pub settings: String,
    pub clients: u32,
    pub work: String,
    pub rounds: u32,
    pub keys: u64,
    pub value_bytes: u32,
    pub preload: PhaseStats,
    pub phases: Vec<CallPhase>,
    pub overheads: Vec<Overhead>,
    pub target_overhead: f64,
}

/// What every part of one call run shares (the kv context, so that the kv
/// cluster and load loop serve unchanged).
fn kv_args(args: &CallBenchArgs) -> KvBenchArgs {
    KvBenchArgs {
        clients: args.clients,
        requests_per_client: args.requests_per_client,
        duration: Some(args.duration.unwrap_or(DEFAULT_DURATION)),
        keys: args.keys,
        value_bytes: args.value_bytes,
        redis: RedisMode::Off,
        json: args.json,
        memory_keys: 0,
        durability: args.durability,
        keep_logs: args.keep_logs,
    }
}

pub fn run(args: CallBenchArgs) -> Result<(), Failure> {
    let stop = install_stop_flag()?;
    let dir = make_run_dir()?;
    let ctx = KvCtx::new(kv_args(&args), dir, stop);
    ctx.progress(&format!("bench call: working in {}", ctx.dir.display()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("starting the async runtime: {e}")))?;
    let report = measure(&ctx, &rt, &args).map_err(|e| ctx.failure(e))?;
    super::kv::finish_report(&ctx, args.keep_logs, args.json, &report, render)
}

fn work(args: &CallBenchArgs) -> Work {
    match args.requests_per_client {
        Some(n) => Work::PerClient(n),
        None => Work::Timed(args.duration.unwrap_or(DEFAULT_DURATION)),
    }
}

/// The drivers of every kind, moved into each phase and back.
struct Drivers {
    raw: Vec<RawDriver>,
    with_session: Vec<RefDriver>,
    no_session: Vec<RefDriver>,
}

impl Drivers {
    async fn run(&mut self, ctx: &KvCtx, kind: Kind, phase: &Phase) -> anyhow::Result<Outcome> {
        let outcome = match kind {
            Kind::Raw => {
                let (back, o) = ctx.load(std::mem::take(&mut self.raw), phase).await?;
                self.raw = back;
                o
            }
            Kind::Ref => {
                let (back, o) = ctx
                    .load(std::mem::take(&mut self.with_session), phase)
                    .await?;
                self.with_session = back;
                o
            }
            Kind::RefNoSession => {
                let (back, o) = ctx
                    .load(std::mem::take(&mut self.no_session), phase)
                    .await?;
                self.no_session = back;
                o
            }
        };
        Ok(outcome)
    }
}

/// Sums `more` into `total` (rounds run one after another, so elapsed times add).
fn merge(total: &mut Outcome, more: Outcome) {
    total.ok += more.ok;
    total.found += more.found;
    total.errors += more.errors;
    if total.first_error.is_none() {
        total.first_error = more.first_error;
    }
    total.elapsed += more.elapsed;
    total.hist.merge(&more.hist);
}

fn empty_outcome() -> Outcome {
    Outcome {
        ok: 0,
        found: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        hist: Histogram::new(),
    }
}

fn measure(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    args: &CallBenchArgs,
) -> anyhow::Result<CallReport> {
    let value: Arc<str> = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(args.value_bytes as usize)
        .map(char::from)
        .collect::<String>()
        .into();
    let settings = KvSettings {
        replication_factor: COPIES,
        write_ack: "quorum",
        durability: args.durability.word(),
        fsync_period_ms: 0,
    };
    let mut cluster = GeoulCluster::start(ctx, &ctx.dir.join("geoul"), NODES, settings)?;
    ctx.progress(&format!("geoul: {NODES} nodes ready ({})", cluster.pids()));
    let nodes: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.planned.cluster).collect();
    let clients = args.clients as usize;
    let (preload, phases) = rt.block_on(async {
        let probes = cluster.connect_clients(1, &value, REQUEST_DEADLINE).await?;
        wait_placed(ctx, &probes, u32::from(COPIES)).await?;
        drop(probes);
        let mut drivers = Drivers {
            raw: connect_raw(&nodes, &cluster.secret, clients, &value).await?,
            with_session: connect_refs(&nodes, &cluster.secret, clients, &value, true).await?,
            no_session: connect_refs(&nodes, &cluster.secret, clients, &value, false).await?,
        };
        ctx.progress(&format!(
            "{clients} clients of each kind connected (raw, ref, ref-nosession)"
        ));
        let preload = preload(ctx, &mut drivers, args.keys).await?;
        let phases = timed_phases(ctx, &mut drivers, args).await?;
        anyhow::Ok((preload, phases))
    })?;
    cluster.check_children()?;
    let overheads = overheads(&phases);
    Ok(CallReport {
        command: command(args),
        settings: format!(
            "{NODES} local nodes, [kv] replication_factor = {COPIES}, write_ack = quorum, \
             durability = {}; raw clients spread round-robin over the nodes, each ref client \
             seeded with another node first; request deadline {} s",
            settings.durability,
            REQUEST_DEADLINE.as_secs()
        ),
        clients: args.clients,
        work: work_text(work(args)),
        rounds: args.rounds,
        keys: args.keys,
        value_bytes: args.value_bytes,
        preload,
        phases,
        overheads,
        target_overhead: TARGET_OVERHEAD,
    })
}

/// Every key written once at Quorum (both copies), through the raw drivers.
async fn preload(ctx: &KvCtx, drivers: &mut Drivers, keys: u64) -> anyhow::Result<PhaseStats> {
    let phase = Phase {
        label: "preload".to_string(),
        op: Op::SetReplicated,
        work: Work::LoadAll(keys),
        keys,
    };
    let outcome = drivers.run(ctx, Kind::Raw, &phase).await?;
    if outcome.errors > 0 {
        bail!(
            "preload: {} of {keys} writes failed: {}",
            outcome.errors,
            outcome.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(PhaseStats::new(
        Op::SetReplicated,
        "SET ack=quorum",
        &outcome,
    ))
}

async fn timed_phases(
    ctx: &KvCtx,
    drivers: &mut Drivers,
    args: &CallBenchArgs,
) -> anyhow::Result<Vec<CallPhase>> {
    let mut phases = Vec::new();
    for (op, request) in OPS {
        let mut totals: Vec<Outcome> = Kind::ALL.iter().map(|_| empty_outcome()).collect();
        for round in 0..args.rounds {
            for (kind, total) in Kind::ALL.iter().zip(&mut totals) {
                let round_text = if args.rounds > 1 {
                    format!(" (round {}/{})", round + 1, args.rounds)
                } else {
                    String::new()
                };
                let phase = Phase {
                    label: format!("{} {request}{round_text}", kind.name()),
                    op,
                    work: work(args),
                    keys: args.keys,
                };
                merge(total, drivers.run(ctx, *kind, &phase).await?);
            }
        }
        for (kind, total) in Kind::ALL.iter().zip(&totals) {
            phases.push(CallPhase {
                driver: kind.name(),
                stats: PhaseStats::new(op, request, total),
            });
        }
    }
    Ok(phases)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

/// `driver` against `baseline` for one operation.
fn overhead(
    op: &'static str,
    what: &'static str,
    driver: &CallPhase,
    baseline: &CallPhase,
) -> Overhead {
    let (d, b) = (&driver.stats, &baseline.stats);
    let time_overhead = ratio(b.ops_per_s, d.ops_per_s) - 1.0;
    let p99_overhead = ratio(d.p99_ms, b.p99_ms) - 1.0;
    Overhead {
        op,
        what,
        driver: driver.driver,
        baseline: baseline.driver,
        ops_ratio: round4(ratio(d.ops_per_s, b.ops_per_s)),
        p50_ratio: round4(ratio(d.p50_ms, b.p50_ms)),
        p99_ratio: round4(ratio(d.p99_ms, b.p99_ms)),
        time_overhead: round4(time_overhead),
        p99_overhead: round4(p99_overhead),
        target_met: (what == "serviceref")
            .then_some(time_overhead <= TARGET_OVERHEAD && p99_overhead <= TARGET_OVERHEAD),
    }
}

/// ref / raw and ref / ref-nosession for every operation.
fn overheads(phases: &[CallPhase]) -> Vec<Overhead> {
    let mut out = Vec::new();
    for (op, _) in OPS {
        let name = super::kv_report::op_name(op);
        let find = |kind: Kind| {
            phases
                .iter()
                .find(|p| p.stats.op == name && p.driver == kind.name())
        };
        let (Some(raw), Some(with), Some(without)) =
            (find(Kind::Raw), find(Kind::Ref), find(Kind::RefNoSession))
        else {
            continue;
        };
        out.push(overhead(name, "serviceref", with, raw));
        out.push(overhead(name, "session", with, without));
    }
    out
}

fn work_text(work: Work) -> String {
    match work {
        Work::Timed(d) => format!("{} per phase", duration_flag(d)),
        Work::PerClient(n) => format!("{n} requests per client per phase"),
        Work::LoadAll(n) => format!("{n} keys written once each"),
        Work::LoadRange(from, to) => format!("keys {from}..{to} written once each"),
    }
}

/// `exe bench call` with every setting that shapes the result spelled out.
pub fn command(args: &CallBenchArgs) -> String {
    let exe = std::env::args()
        .next()
        .unwrap_or_else(|| "geoul".to_string());
    let work = match args.requests_per_client {
        Some(n) => format!("--requests-per-client {n}"),
        None => format!(
            "--duration {}",
            duration_flag(args.duration.unwrap_or(DEFAULT_DURATION))
        ),
    };
    format!(
        "{exe} bench call --clients {} {work} --keys {} --value-bytes {} --rounds {} \
         --durability {}",
        args.clients,
        args.keys,
        args.value_bytes,
        args.rounds,
        args.durability.word()
    )
}

const HEADER: [&str; 10] = [
    "operation",
    "driver",
    "requests",
    "ops/s",
    "mean ms",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "errors",
];

fn phase_row(title: &str, p: &CallPhase) -> Vec<String> {
    let s = &p.stats;
    let mut errors = s.errors.to_string();
    if let Some(hit) = s.hit_ratio {
        errors.push_str(&format!(" ({:.0}% hits)", hit * 100.0));
    }
    vec![
        title.to_string(),
        p.driver.to_string(),
        s.requests.to_string(),
        format!("{:.0}", s.ops_per_s),
        format!("{:.3}", s.mean_ms),
        format!("{:.3}", s.p50_ms),
        format!("{:.3}", s.p99_ms),
        format!("{:.3}", s.p999_ms),
        format!("{:.3}", s.max_ms),
        errors,
    ]
}

const RATIO_HEADER: [&str; 7] = [
    "operation",
    "ratio",
    "ops/s",
    "p50",
    "p99",
    "time/request",
    "p99 overhead",
];

fn pct(v: f64) -> String {
    format!("{:+.1} %", v * 100.0)
}

/// The human report.
pub fn render(r: &CallReport) -> String {
    let mut out = format!(
        "bench call: {} clients per driver, one request in flight each; {}{}; keys drawn \
         uniformly from {} (each written once beforehand: {:.0} ops/s); {}-byte values\n{}\n\n",
        r.clients,
        r.work,
        if r.rounds > 1 {
            format!(", {} interleaved rounds merged", r.rounds)
        } else {
            String::new()
        },
        r.keys,
        r.preload.ops_per_s,
        r.value_bytes,
        r.settings
    );
    let title_of = |op: &str| {
        OPS.iter()
            .find(|(o, _)| super::kv_report::op_name(*o) == op)
            .map_or("?", |(_, t)| *t)
    };
    let mut rows = Vec::new();
    let mut last = "";
    for p in &r.phases {
        let title = if p.stats.op == last {
            ""
        } else {
            title_of(p.stats.op)
        };
        last = p.stats.op;
        rows.push(phase_row(title, p));
    }
    out.push_str(&table(&HEADER, &rows));
    for p in r.phases.iter().filter(|p| p.stats.errors > 0) {
        let why = p.stats.first_error.as_deref().unwrap_or("?");
        out.push_str(&format!(
            "{} {}: first error: {why}\n",
            p.driver, p.stats.request
        ));
    }
    let x = |v: f64| format!("{v:.3}x");
    let rows: Vec<Vec<String>> = (r.overheads.iter())
        .map(|o| {
            vec![
                title_of(o.op).to_string(),
                format!("{} / {}", o.driver, o.baseline),
                x(o.ops_ratio),
                x(o.p50_ratio),
                x(o.p99_ratio),
                pct(o.time_overhead),
                pct(o.p99_overhead),
            ]
        })
        .collect();
    out.push_str(
        "\nratios (ref / raw = ServiceRef overhead, ref / ref-nosession = session overhead):\n",
    );
    out.push_str(&table(&RATIO_HEADER, &rows));
    out.push_str(&format!(
        "\ntarget (DESIGN.md §14): ServiceRef overhead <= {:.0} % over a raw kv call (time per \
         request and p99):\n",
        r.target_overhead * 100.0
    ));
    for o in r.overheads.iter().filter(|o| o.target_met.is_some()) {
        let met = o.target_met == Some(true);
        out.push_str(&format!(
            "  {:<20} time/request {}, p99 {}: {}\n",
            title_of(o.op),
            pct(o.time_overhead),
            pct(o.p99_overhead),
            if met { "met" } else { "MISSED" }
        ));
    }
    out.push_str(&format!("\nreproduce: {}\n", r.command));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(driver: &'static str, op: Op, ops: f64, p99: f64) -> CallPhase {
        let mut o = empty_outcome();
        o.ok = 1;
        o.elapsed = Duration::from_secs(1);
        o.hist.record(Duration::from_millis(1));
        let mut stats = PhaseStats::new(op, "x", &o);
        stats.ops_per_s = ops;
        stats.p50_ms = p99 / 2.0;
        stats.p99_ms = p99;
        CallPhase { driver, stats }
    }

    #[test]
    fn overheads_compare_ref_with_raw_and_without_session() {
        let phases = vec![
            phase("raw", Op::SetReplicated, 1000.0, 2.0),
            phase("ref", Op::SetReplicated, 950.0, 2.1),
            phase("ref-nosession", Op::SetReplicated, 1000.0, 2.0),
            phase("raw", Op::Get, 1000.0, 1.0),
            phase("ref", Op::Get, 800.0, 1.5),
            phase("ref-nosession", Op::Get, 900.0, 1.2),
        ];
        let o = overheads(&phases);
        assert_eq!(o.len(), 4);
        assert_eq!((o[0].op, o[0].what), ("set_replicated", "serviceref"));
        assert_eq!(o[0].ops_ratio, 0.95);
        assert_eq!(o[0].time_overhead, 0.0526);
        assert_eq!(o[0].p99_overhead, 0.05);
        assert_eq!(o[0].target_met, Some(true));
        assert_eq!(
            (o[1].what, o[1].baseline, o[1].target_met),
            ("session", "ref-nosession", None)
        );
        assert_eq!(o[2].time_overhead, 0.25);
        assert_eq!(o[2].target_met, Some(false));
        let text = render(&CallReport {
            command: "geoul bench call".into(),
            settings: "s".into(),
            clients: 50,
            work: "15s per phase".into(),
            rounds: 1,
            keys: 10,
            value_bytes: 100,
            preload: phases[0].stats.clone(),
            phases,
            overheads: o,
            target_overhead: TARGET_OVERHEAD,
        });
        assert!(text.contains("ref / raw"), "{text}");
        assert!(text.contains("MISSED"), "{text}");
        assert!(text.contains("reproduce: geoul bench call"), "{text}");
    }

    #[test]
    fn merged_rounds_add_up() {
        let mut total = empty_outcome();
        for ms in [1, 3] {
            let mut o = empty_outcome();
            o.ok = 10;
            o.elapsed = Duration::from_secs(1);
            o.hist.record(Duration::from_millis(ms));
            merge(&mut total, o);
        }
        assert_eq!(total.ok, 20);
        assert_eq!(total.ops_per_s(), 10.0);
        assert_eq!(total.hist.max(), Some(Duration::from_millis(3)));
    }
}
