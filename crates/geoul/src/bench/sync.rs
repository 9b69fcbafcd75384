//! `geoul bench sync`: full sync of `--keys` entries to a new node against a
//! Redis full resync of the same data to a new replica, in the same run; then
//! geoul's catch-up of a node restarted with its data after 10 % more keys
//! were written without it (DESIGN.md §14: "full sync … no slower than Redis
//! full resync", "restart with Disk and 10 % changed transfers ≤ 15 %").
//!
//! geoul: node-1 alone takes the load (`[kv] replication_factor = 2`, so the
//! joining node-2 must hold every key, like a Redis replica; `Disk` with group
//! commit so that node-2 can restart with its data). Redis: a primary without
//! persistence takes the same load, then a new replica is started and the time
//! until its link is up with every key is measured; bytes are the primary's
//! `total_net_repl_output_bytes`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use serde::Serialize;

use super::admin::{agent, status};
use super::kv::{wait_until, KvCtx, REQUEST_DEADLINE};
use super::kv_geoul::{GeoulCluster, KvSettings};
use super::kv_load::{Op, Phase, Work};
use super::kv_redis::{self, RedisPeer, RedisServer, ADMIN_TIMEOUT};
use super::kv_resp::AsyncConn;
use super::make_run_dir;
use crate::cli::{KvBenchArgs, SyncBenchArgs};
use crate::local_cluster::install_stop_flag;
use crate::Failure;

/// Bound on one sync (a million entries take seconds; a stuck sync fails).
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// One system's full sync.
#[derive(Clone, Debug, Serialize)]
pub struct SyncRun {
    pub system: String,
    pub settings: String,
    pub entries: u64,
    pub seconds: f64,
    pub entries_per_s: f64,
    pub bytes: u64,
    pub mb_per_s: f64,
}

impl SyncRun {
    fn new(system: &str, settings: String, entries: u64, took: Duration, bytes: u64) -> Self {
        let seconds = took.as_secs_f64().max(1e-6);
        Self {
            system: system.to_string(),
            settings,
            entries,
            seconds,
            entries_per_s: entries as f64 / seconds,
            bytes,
            mb_per_s: bytes as f64 / 1e6 / seconds,
        }
    }
}

/// geoul's catch-up after a restart with its data.
#[derive(Clone, Debug, Serialize)]
pub struct CatchUp {
    pub written_while_down: u64,
    pub seconds: f64,
    pub bytes: u64,
    /// Bytes of the catch-up over bytes of the full sync.
    pub fraction_of_full: f64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct SyncReport {
    pub command: String,
    pub keys: u64,
    pub value_bytes: u32,
    pub geoul: SyncRun,
    pub redis: Option<SyncRun>,
    pub redis_skipped: Option<String>,
    /// geoul entries/s over Redis entries/s.
    pub ratio: Option<f64>,
    /// With `--durability disk` only.
    pub catch_up: Option<CatchUp>,
}

fn kv_args(args: &SyncBenchArgs) -> KvBenchArgs {
    KvBenchArgs {
        clients: args.clients,
        requests_per_client: None,
        duration: None,
        keys: args.keys,
        value_bytes: args.value_bytes,
        redis: args.redis,
        json: args.json,
        memory_keys: 0,
        durability: args.durability,
        keep_logs: args.keep_logs,
    }
}

pub fn run(args: SyncBenchArgs) -> Result<(), Failure> {
    let command = command(&args);
    let kv = kv_args(&args);
    let peer = kv_redis::resolve(&kv)?;
    let stop = install_stop_flag()?;
    let dir = make_run_dir()?;
    let ctx = KvCtx::new(kv, dir, stop);
    ctx.progress(&format!("bench sync: working in {}", ctx.dir.display()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("starting the async runtime: {e}")))?;
    let value: Arc<str> = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(args.value_bytes as usize)
        .map(char::from)
        .collect::<String>()
        .into();
    let (geoul, catch_up) =
        geoul_side(&ctx, &rt, &value, args.durability.word()).map_err(|e| ctx.failure(e))?;
    let (redis, redis_skipped) = match &peer {
        RedisPeer::Skipped(why) => (None, Some(why.clone())),
        RedisPeer::Available { server, .. } => (
            Some(redis_side(&ctx, &rt, &value, server).map_err(|e| ctx.failure(e))?),
            None,
        ),
    };
    let ratio = redis
        .as_ref()
        .map(|r| geoul.entries_per_s / r.entries_per_s);
    let report = SyncReport {
        command,
        keys: args.keys,
        value_bytes: args.value_bytes,
        geoul,
        redis,
        redis_skipped,
        ratio,
        catch_up,
    };
    if !args.keep_logs {
        let _ = std::fs::remove_dir_all(&ctx.dir);
    }
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn command(args: &SyncBenchArgs) -> String {
    format!(
        "geoul bench sync --keys {} --value-bytes {} --clients {}",
        args.keys, args.value_bytes, args.clients
    )
}

fn load_phase(label: &str, from: u64, to: u64) -> Phase {
    Phase {
        label: label.to_string(),
        op: Op::SetOne,
        work: Work::LoadRange(from, to),
        keys: to,
    }
}

/// A counter of a node's `/metrics` for table `kv`.
fn node_metric(admin: std::net::SocketAddr, name: &str) -> anyhow::Result<u64> {
    let url = format!("http://{admin}/metrics");
    let text = agent(ADMIN_TIMEOUT)
        .get(&url)
        .call()
        .with_context(|| format!("reading {url}"))?
        .into_string()
        .context("metrics text")?;
    let prefix = format!("{name}{{table=\"kv\"}} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

fn wait_synced(
    ctx: &KvCtx,
    cluster: &mut GeoulCluster,
    admin: std::net::SocketAddr,
    what: &str,
) -> anyhow::Result<Duration> {
    let http = agent(ADMIN_TIMEOUT);
    wait_until(ctx, what, SYNC_TIMEOUT, || {
        cluster.check_children()?;
        Ok(status(&http, admin).is_ok_and(|s| s.synced()))
    })
}

fn geoul_side(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    value: &Arc<str>,
    durability: &'static str,
) -> anyhow::Result<(SyncRun, Option<CatchUp>)> {
    let keys = ctx.args.keys;
    let settings = KvSettings {
        replication_factor: 2,
        write_ack: "one",
        durability,
        fsync_period_ms: 100,
    };
    let mut cluster = GeoulCluster::start_some(ctx, &ctx.dir.join("geoul"), 2, 1, settings)?;
    let first_admin = cluster.nodes[0].planned.admin;
    wait_synced(ctx, &mut cluster, first_admin, "node-1 to be ready")?;
    rt.block_on(async {
        let drivers = cluster
            .connect_clients(ctx.clients(), value, REQUEST_DEADLINE)
            .await?;
        ctx.load(drivers, &load_phase("geoul load", 0, keys))
            .await?;
        anyhow::Ok(())
    })?;
    let admin = cluster.start_next()?;
    let started = Instant::now();
    wait_synced(ctx, &mut cluster, admin, "node-2 to finish its full sync")?;
    let took = started.elapsed();
    let bytes = node_metric(admin, "geoul_sync_bytes_total")?;
    let entries = node_metric(admin, "geoul_sync_entries_total")?;
    ctx.progress(&format!(
        "geoul: node-2 synced {entries} entries ({:.1} MB) in {:.2}s",
        bytes as f64 / 1e6,
        took.as_secs_f64()
    ));
    let full = SyncRun::new(
        "geoul",
        format!(
            "node-1 loaded alone, node-2 joins; [kv] replication_factor = 2 (node-2 holds \
             every key), durability = {durability}, fsync_period_ms = 100; bytes = \
             geoul_sync_bytes_total"
        ),
        entries,
        took,
        bytes,
    );
    if durability != "disk" {
        cluster.check_children()?;
        return Ok((full, None));
    }

    // Catch-up: node-2 down while 10 % more keys are written, then back.
    cluster.kill(1)?;
    let more = (keys / 10).max(1);
    rt.block_on(async {
        // node-2 is down: every client talks to node-1.
        let drivers = cluster
            .connect_clients_to(&[0], ctx.clients(), value, REQUEST_DEADLINE)
            .await?;
        ctx.load(
            drivers,
            &load_phase("geoul load while node-2 is down", keys, keys + more),
        )
        .await?;
        anyhow::Ok(())
    })?;
    cluster.restart(1)?;
    let started = Instant::now();
    wait_synced(
        ctx,
        &mut cluster,
        admin,
        "node-2 to catch up after its restart",
    )?;
    let took = started.elapsed();
    let catch_bytes = node_metric(admin, "geoul_sync_bytes_total")?;
    ctx.progress(&format!(
        "geoul: node-2 caught up with {more} new keys: {:.1} MB in {:.2}s",
        catch_bytes as f64 / 1e6,
        took.as_secs_f64()
    ));
    cluster.check_children()?;
    let catch_up = CatchUp {
        written_while_down: more,
        seconds: took.as_secs_f64(),
        bytes: catch_bytes,
        fraction_of_full: catch_bytes as f64 / bytes.max(1) as f64,
    };
    Ok((full, Some(catch_up)))
}

fn redis_side(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    value: &Arc<str>,
    server: &std::path::Path,
) -> anyhow::Result<SyncRun> {
    let keys = ctx.args.keys;
    let dir = ctx.dir.join("redis");
    let mut primary = RedisServer::start(ctx, server, &dir, "primary", None)?;
    rt.block_on(async {
        let drivers =
            kv_redis::connect_clients(primary.addr, ctx.clients(), value, REQUEST_DEADLINE).await?;
        ctx.load(drivers, &load_phase("redis load", 0, keys))
            .await?;
        anyhow::Ok(())
    })?;
    // The default waits 5 s for more replicas before a diskless transfer
    // starts; one replica is coming, so start at once.
    rt.block_on(async {
        let mut conn = AsyncConn::connect(primary.addr, ADMIN_TIMEOUT).await?;
        conn.text(
            &["CONFIG", "SET", "repl-diskless-sync-delay", "0"],
            ADMIN_TIMEOUT,
        )
        .await
    })?;
    let before = repl_output_bytes(rt, &primary)?;
    let started = Instant::now();
    let mut replica = RedisServer::start(ctx, server, &dir, "replica", Some(primary.addr))?;
    kv_redis::wait_replicating(ctx, &mut primary, &mut replica)?;
    let addr = replica.addr;
    wait_until(
        ctx,
        "the Redis replica to hold every key",
        SYNC_TIMEOUT,
        || {
            replica.check()?;
            let size = rt.block_on(async {
                let mut conn = AsyncConn::connect(addr, ADMIN_TIMEOUT).await?;
                conn.integer(&["DBSIZE"], ADMIN_TIMEOUT).await
            });
            Ok(size.is_ok_and(|n| u64::try_from(n).is_ok_and(|n| n >= keys)))
        },
    )?;
    let took = started.elapsed();
    let bytes = repl_output_bytes(rt, &primary)?.saturating_sub(before);
    ctx.progress(&format!(
        "redis: replica full resync of {keys} keys ({:.1} MB) in {:.2}s",
        bytes as f64 / 1e6,
        took.as_secs_f64()
    ));
    primary.check()?;
    Ok(SyncRun::new(
        "redis",
        "primary without persistence loaded alone, then a new replica (full resync, \
         diskless, repl-diskless-sync-delay 0); bytes = primary total_net_repl_output_bytes"
            .to_string(),
        keys,
        took,
        bytes,
    ))
}

fn repl_output_bytes(rt: &tokio::runtime::Runtime, server: &RedisServer) -> anyhow::Result<u64> {
    rt.block_on(async {
        let mut conn = AsyncConn::connect(server.addr, ADMIN_TIMEOUT).await?;
        let info = conn.text(&["INFO", "stats"], ADMIN_TIMEOUT).await?;
        match super::resp::info_field(&info, "total_net_repl_output_bytes") {
            Some(v) => Ok(v
                .trim()
                .parse::<u64>()
                .context("total_net_repl_output_bytes")?),
            None => bail!("INFO stats has no total_net_repl_output_bytes"),
        }
    })
}

fn render(r: &SyncReport) -> String {
    let mut out = format!(
        "full sync of {} × {}-byte entries to a new node\n{:<6} {:>9} {:>12} {:>10} {:>8}\n",
        r.keys, r.value_bytes, "system", "seconds", "entries/s", "MB moved", "MB/s"
    );
    let line = |s: &SyncRun| {
        format!(
            "{:<6} {:>9.2} {:>12.0} {:>10.1} {:>8.1}   {}\n",
            s.system,
            s.seconds,
            s.entries_per_s,
            s.bytes as f64 / 1e6,
            s.mb_per_s,
            s.settings
        )
    };
    out.push_str(&line(&r.geoul));
    match (&r.redis, &r.redis_skipped) {
        (Some(redis), _) => out.push_str(&line(redis)),
        (None, Some(why)) => out.push_str(&format!("redis  skipped: {why}\n")),
        (None, None) => {}
    }
    if let Some(ratio) = r.ratio {
        out.push_str(&format!("geoul / redis (entries/s): {ratio:.2}×\n"));
    }
    match &r.catch_up {
        Some(c) => out.push_str(&format!(
            "catch-up after a restart with {} keys written while down: {:.1} MB in {:.2}s = {:.1} % of the full sync's bytes\n",
            c.written_while_down,
            c.bytes as f64 / 1e6,
            c.seconds,
            c.fraction_of_full * 100.0
        )),
        None => out.push_str("catch-up after a restart: not measured (needs --durability disk)\n"),
    }
    out.push_str(&format!("command: {}\n", r.command));
    out
}
