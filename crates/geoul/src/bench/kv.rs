//! `geoul bench kv`: kv throughput and latency of a local 3-node geoul cluster
//! (Factor(2), writes at Quorum = both copies, then at One; reads at One) against
//! a Redis primary with one replica (`SET` + `WAIT 1`, plain `SET`, `GET`), same
//! clients, key space and values, in the same run; then memory per key of a fresh
//! single instance of each. Every child is killed when the benchmark ends, fails,
//! panics or is interrupted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::Rng;

use super::kv_geoul::{wait_placed, GeoulCluster, KvSettings};
use super::kv_load::{self, Op, Outcome, Phase, Work};
use super::kv_memory;
use super::kv_redis::{self, RedisPeer, RedisServer};
use super::kv_render::render;
use super::kv_report::{compare, memory_ratio, KvReport, MemoryRun, PhaseStats, Side, SystemRun};
use super::make_run_dir;
use crate::cli::KvBenchArgs;
use crate::local_cluster::install_stop_flag;
use crate::Failure;

/// Phase length without `--duration` or `--requests-per-client`.
const DEFAULT_DURATION: Duration = Duration::from_secs(20);
/// Deadline of every request: geoul's `timeout_ms`, Redis's `WAIT 1 <ms>`.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Pause before reading memory gauges, so that work queued by the load is done.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Nodes of the throughput cluster and copies of each key.
const NODES: u16 = 3;
const COPIES: u8 = 2;

/// The throughput phases in order: operation, geoul request, Redis request.
const PHASES: [(Op, &str, &str); 3] = [
    (Op::SetReplicated, "SET ack=quorum", "SET + WAIT 1"),
    (Op::Get, "GET consistency=one", "GET"),
    (Op::SetOne, "SET ack=one", "SET"),
];

/// What every part of one kv run shares.
pub type KvCtx = super::Ctx<KvBenchArgs>;

impl super::Ctx<KvBenchArgs> {
    fn work(&self) -> Work {
        match self.args.requests_per_client {
            Some(n) => Work::PerClient(n),
            None => Work::Timed(self.args.duration.unwrap_or(DEFAULT_DURATION)),
        }
    }

    pub fn clients(&self) -> usize {
        self.args.clients as usize
    }

    /// Runs `phase` on `drivers` with progress, then prints its summary line.
    pub async fn load<D: kv_load::Driver>(
        &self,
        drivers: Vec<D>,
        phase: &Phase,
    ) -> anyhow::Result<(Vec<D>, Outcome)> {
        let (drivers, outcome) = kv_load::run(drivers, phase, self.stop_flag(), self.tty()).await?;
        self.progress(&summary(&phase.label, &outcome));
        Ok((drivers, outcome))
    }
}

pub use super::wait_until;

pub fn run(args: KvBenchArgs) -> Result<(), Failure> {
    let peer = kv_redis::resolve(&args)?;
    let stop = install_stop_flag()?;
    let dir = make_run_dir()?;
    let ctx = KvCtx::new(args, dir, stop);
    ctx.progress(&format!("bench kv: working in {}", ctx.dir.display()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("starting the async runtime: {e}")))?;
    let report = measure(&ctx, &runtime, peer).map_err(|e| ctx.failure(e))?;
    let failed = |s: &Option<Side<MemoryRun>>| matches!(s, Some(Side::Failed { .. }));
    let peer_failed = matches!(report.redis, Side::Failed { .. }) || failed(&report.memory_redis);
    let keep = ctx.args.keep_logs || peer_failed;
    if !keep {
        if let Err(e) = std::fs::remove_dir_all(&ctx.dir) {
            ctx.progress(&format!("could not remove {}: {e}", ctx.dir.display()));
        }
    }
    if ctx.args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
        let what = if keep { "kept" } else { "removed" };
        println!("logs: {} ({what})", ctx.dir.display());
    }
    if peer_failed {
        return Err(Failure::Runtime(format!(
            "the Redis side failed; logs kept in {}",
            ctx.dir.display()
        )));
    }
    Ok(())
}

/// Runs the Redis side with `f`, turning its failure into a reported outcome
/// (an interruption still ends the run).
fn peer_side<T>(
    ctx: &KvCtx,
    peer: &RedisPeer,
    f: impl FnOnce(&Path, &str) -> anyhow::Result<T>,
) -> anyhow::Result<Side<T>> {
    match peer {
        RedisPeer::Skipped(reason) => Ok(Side::Skipped {
            reason: reason.clone(),
        }),
        RedisPeer::Available { server, version } => match f(server, version) {
            Ok(t) => Ok(Side::Measured(Box::new(t))),
            Err(e) if ctx.stopped() => Err(e),
            Err(e) => {
                ctx.progress(&format!("redis: failed: {e:#}"));
                Ok(Side::Failed {
                    error: format!("{e:#}"),
                })
            }
        },
    }
}

fn measure(ctx: &KvCtx, rt: &tokio::runtime::Runtime, peer: RedisPeer) -> anyhow::Result<KvReport> {
    let value: Arc<str> = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(ctx.args.value_bytes as usize)
        .map(char::from)
        .collect::<String>()
        .into();
    let geoul = geoul_throughput(ctx, rt, &value)?;
    let redis = peer_side(ctx, &peer, |server, version| {
        redis_throughput(ctx, rt, &value, server, version)
    })?;
    let (memory_geoul, memory_redis) = if ctx.args.memory_keys > 0 {
        let g = kv_memory::geoul_memory(ctx, rt, &value)?;
        let r = peer_side(ctx, &peer, |server, _| {
            kv_memory::redis_memory(ctx, rt, &value, server)
        })?;
        (Some(Side::Measured(Box::new(g))), Some(r))
    } else {
        (None, None)
    };
    let comparisons = compare(&geoul, &redis);
    Ok(KvReport {
        command: command(&ctx.args),
        clients: ctx.args.clients,
        work: work_text(ctx.work()),
        keys: ctx.args.keys,
        value_bytes: ctx.args.value_bytes,
        memory_ratio: memory_ratio(memory_geoul.as_ref(), memory_redis.as_ref()),
        geoul,
        redis,
        comparisons,
        memory_geoul,
        memory_redis,
    })
}

/// `label: N ok, E errors, R ops/s, p50 / p99 ms`.
fn summary(label: &str, o: &Outcome) -> String {
    let ms = |p: f64| o.hist.percentile(p).map_or(0.0, |d| d.as_secs_f64() * 1e3);
    format!(
        "{label}: {} ok, {} errors, {:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms",
        o.ok,
        o.errors,
        o.ops_per_s(),
        ms(50.0),
        ms(99.0)
    )
}

/// Writes every key of the key space once (so that reads hit and writes
/// overwrite, on both systems alike), then runs the three throughput phases on
/// `drivers`, labelling requests with `pick`.
async fn phases<D: kv_load::Driver>(
    ctx: &KvCtx,
    system: &str,
    mut drivers: Vec<D>,
    pick: fn(&(Op, &'static str, &'static str)) -> &'static str,
) -> anyhow::Result<Vec<PhaseStats>> {
    let preload = Phase {
        label: format!("{system} preload"),
        op: Op::SetOne,
        work: Work::LoadAll(ctx.args.keys),
        keys: ctx.args.keys,
    };
    let (back, outcome) = ctx.load(drivers, &preload).await?;
    drivers = back;
    if outcome.errors > 0 {
        bail!(
            "{}: {} of {} writes failed: {}",
            preload.label,
            outcome.errors,
            ctx.args.keys,
            outcome.first_error.as_deref().unwrap_or("?")
        );
    }
    let mut stats = Vec::new();
    for p in &PHASES {
        let request = pick(p);
        let phase = Phase {
            label: format!("{system} {request}"),
            op: p.0,
            work: ctx.work(),
            keys: ctx.args.keys,
        };
        let (back, outcome) = ctx.load(drivers, &phase).await?;
        drivers = back;
        stats.push(PhaseStats::new(p.0, request, &outcome));
    }
    Ok(stats)
}

fn geoul_throughput(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    value: &Arc<str>,
) -> anyhow::Result<SystemRun> {
    let settings = KvSettings {
        replication_factor: COPIES,
        write_ack: "quorum",
        durability: ctx.args.durability.word(),
        fsync_period_ms: 0,
    };
    let mut cluster = GeoulCluster::start(ctx, &ctx.dir.join("geoul"), NODES, settings)?;
    ctx.progress(&format!("geoul: {NODES} nodes ready ({})", cluster.pids()));
    let stats = rt.block_on(async {
        let drivers = (cluster.connect_clients(ctx.clients(), value, REQUEST_DEADLINE)).await?;
        wait_placed(ctx, &drivers, u32::from(COPIES)).await?;
        phases(ctx, "geoul", drivers, |p| p.1).await
    })?;
    cluster.check_children()?;
    Ok(SystemRun {
        system: "geoul".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        settings: format!(
            "{NODES} local nodes, [kv] replication_factor = {COPIES}, write_ack = quorum, \
             durability = {}; clients spread round-robin over the nodes; request deadline {} s",
            settings.durability,
            REQUEST_DEADLINE.as_secs()
        ),
        phases: stats,
    })
}

fn redis_throughput(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    value: &Arc<str>,
    server: &Path,
    version: &str,
) -> anyhow::Result<SystemRun> {
    let dir = ctx.dir.join("redis");
    let mut primary = RedisServer::start(ctx, server, &dir, "primary", None)?;
    let mut replica = RedisServer::start(ctx, server, &dir, "replica", Some(primary.addr))?;
    let took = kv_redis::wait_replicating(ctx, &mut primary, &mut replica)?;
    ctx.progress(&format!(
        "redis: primary {} and replica {} linked after {:.1} s",
        primary.addr,
        replica.addr,
        took.as_secs_f64()
    ));
    let stats = rt.block_on(async {
        let drivers =
            kv_redis::connect_clients(primary.addr, ctx.clients(), value, REQUEST_DEADLINE).await?;
        phases(ctx, "redis", drivers, |p| p.2).await
    })?;
    primary.check()?;
    replica.check()?;
    Ok(SystemRun {
        system: "redis".to_string(),
        version: version.to_string(),
        settings: format!(
            "primary + 1 replica (--replicaof), --save '' --appendonly no; every client on \
             the primary; SET and WAIT 1 {} sent in one write, WAIT must count 1 replica",
            REQUEST_DEADLINE.as_millis()
        ),
        phases: stats,
    })
}

fn work_text(work: Work) -> String {
    match work {
        Work::Timed(d) => format!("{} per phase", duration_flag(d)),
        Work::PerClient(n) => format!("{n} requests per client per phase"),
        Work::LoadAll(n) => format!("{n} keys written once each"),
        Work::LoadRange(from, to) => format!("keys {from}..{to} written once each"),
    }
}

/// A duration as `--duration` takes it back (shared by the bench commands).
pub fn duration_flag(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Removes the bench's directory unless asked to keep it, then prints
/// `report` as JSON or as `text` with where the logs are (shared by the
/// bench commands).
pub fn finish_report<R: serde::Serialize>(
    ctx: &KvCtx,
    keep_logs: bool,
    json: bool,
    report: &R,
    text: impl FnOnce(&R) -> String,
) -> Result<(), Failure> {
    if !keep_logs {
        if let Err(e) = std::fs::remove_dir_all(&ctx.dir) {
            ctx.progress(&format!("could not remove {}: {e}", ctx.dir.display()));
        }
    }
    if json {
        let encoded = serde_json::to_string_pretty(report)
            .map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))?;
        println!("{encoded}");
    } else {
        print!("{}", text(report));
        let what = if keep_logs { "kept" } else { "removed" };
        println!("logs: {} ({what})", ctx.dir.display());
    }
    Ok(())
}

/// `exe bench kv` with every setting that shapes the result spelled out.
pub fn command(args: &KvBenchArgs) -> String {
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
        "{exe} bench kv --clients {} {work} --keys {} --value-bytes {} --redis {} \
         --memory-keys {} --durability {}",
        args.clients,
        args.keys,
        args.value_bytes,
        args.redis.word(),
        args.memory_keys,
        args.durability.word()
    )
}
