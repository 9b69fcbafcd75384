//! The memory part of `bench kv`: each key of `--memory-keys` written once into a
//! fresh single instance of each system; geoul's growth of the node's RSS and
//! Redis's growth of `used_memory` (and `used_memory_rss`), per key.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::kv::{KvCtx, REQUEST_DEADLINE, SETTLE};
use super::kv_geoul::{rss_bytes, wait_placed, GeoulCluster, KvSettings};
use super::kv_load::{Op, Phase, Work};
use super::kv_redis::{self, memory, RedisServer, ADMIN_TIMEOUT};
use super::kv_report::{MemoryFigure, MemoryRun, PhaseStats};
use super::kv_resp::AsyncConn;

fn memory_phase(ctx: &KvCtx, system: &str) -> Phase {
    Phase {
        label: format!("{system} memory load"),
        op: Op::SetOne,
        work: Work::LoadAll(ctx.args.memory_keys),
        keys: ctx.args.memory_keys,
    }
}

pub fn geoul_memory(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    value: &Arc<str>,
) -> anyhow::Result<MemoryRun> {
    let settings = KvSettings {
        replication_factor: 1,
        write_ack: "one",
        durability: "memory",
        fsync_period_ms: 0,
    };
    let mut cluster = GeoulCluster::start(ctx, &ctx.dir.join("geoul-memory"), 1, settings)?;
    ctx.progress(&format!("geoul: memory node ready ({})", cluster.pids()));
    let pid = cluster.nodes[0].child.id();
    let (outcome, before, after) = rt.block_on(async {
        let drivers = (cluster.connect_clients(ctx.clients(), value, REQUEST_DEADLINE)).await?;
        wait_placed(ctx, &drivers, 1).await?;
        tokio::time::sleep(SETTLE).await;
        let before = rss_bytes(pid)?;
        let phase = memory_phase(ctx, "geoul");
        let (_, outcome) = ctx.load(drivers, &phase).await?;
        tokio::time::sleep(SETTLE).await;
        anyhow::Ok((outcome, before, rss_bytes(pid)?))
    })?;
    cluster.check_children()?;
    Ok(MemoryRun {
        system: "geoul".to_string(),
        settings: "1 node, [kv] replication_factor = 1, durability = memory; RSS of the node \
                   process (/proc/<pid>/status VmRSS)"
            .to_string(),
        keys: outcome.ok,
        load: PhaseStats::new(Op::SetOne, "SET ack=one", &outcome),
        figures: vec![MemoryFigure::new("RSS", before, after, outcome.ok)],
    })
}

pub fn redis_memory(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    value: &Arc<str>,
    server: &Path,
) -> anyhow::Result<MemoryRun> {
    let dir = ctx.dir.join("redis-memory");
    let mut redis = RedisServer::start(ctx, server, &dir, "memory", None)?;
    ctx.progress(&format!("redis: memory instance {} ready", redis.addr));
    let (outcome, before, after, dbsize) = rt.block_on(async {
        let mut admin = AsyncConn::connect(redis.addr, ADMIN_TIMEOUT).await?;
        let drivers =
            kv_redis::connect_clients(redis.addr, ctx.clients(), value, REQUEST_DEADLINE).await?;
        let before = memory(&mut admin).await?;
        let phase = memory_phase(ctx, "redis");
        let (_, outcome) = ctx.load(drivers, &phase).await?;
        tokio::time::sleep(SETTLE).await;
        let after = memory(&mut admin).await?;
        let dbsize = admin.integer(&["DBSIZE"], ADMIN_TIMEOUT).await?;
        anyhow::Ok((outcome, before, after, dbsize))
    })?;
    redis.check()?;
    let keys = u64::try_from(dbsize).context("DBSIZE")?;
    Ok(MemoryRun {
        system: "redis".to_string(),
        settings: format!(
            "1 server, no persistence; INFO memory used_memory (and used_memory_rss); \
             DBSIZE {keys}"
        ),
        keys,
        load: PhaseStats::new(Op::SetOne, "SET", &outcome),
        figures: vec![
            MemoryFigure::new("used_memory", before.0, after.0, keys),
            MemoryFigure::new("RSS (used_memory_rss)", before.1, after.1, keys),
        ],
    })
}
