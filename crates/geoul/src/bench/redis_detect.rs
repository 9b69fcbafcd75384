//! The Redis Cluster side of `bench detect`: the kill -9 loop (time until every
//! survivor flags the node `fail` in `CLUSTER NODES`) and the CPU-hog phase
//! (`fail?` counts as a suspicion, `fail` as a death).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rand::Rng;

use super::hog::{threads_per_core, with_hog, Episodes};
use super::redis::{node_timeout_ms, RedisBins, RedisCluster, REQUEST_TIMEOUT};
use super::report::{Hog, SystemResult};
use super::resp::{parse_cluster_nodes, Conn, NodeLine};
use super::watch::{time_until_all, Detected};
use super::{stats, Ctx};

/// Runs both phases against a fresh Redis Cluster.
pub fn run(ctx: &Ctx, bins: &RedisBins) -> anyhow::Result<SystemResult> {
    let mut cluster = RedisCluster::start(ctx, bins)?;
    let samples = kill_loop(ctx, &mut cluster)?;
    let detection = stats::summarize(&samples).ok_or_else(|| anyhow!("no kill was measured"))?;
    let hog = match ctx.args.hog_seconds {
        0 => None,
        _ => Some(hog_phase(ctx, &mut cluster)?),
    };
    Ok(SystemResult {
        system: "redis-cluster".to_string(),
        version: cluster.version.clone(),
        settings: format!(
            "cluster-node-timeout {} ms (= geoul's suspicion timeout), {} masters, no replicas",
            node_timeout_ms(),
            cluster.nodes.len()
        ),
        detection,
        hog,
    })
}

fn kill_loop(ctx: &Ctx, cluster: &mut RedisCluster) -> anyhow::Result<Vec<Duration>> {
    let mut rng = rand::rng();
    let mut samples = Vec::new();
    for k in 1..=ctx.args.kills {
        let victim = rng.random_range(0..cluster.nodes.len());
        let Detected { first, all } = kill_and_time(ctx, cluster, victim)?;
        let restarted = Instant::now();
        cluster.restart(ctx, victim)?;
        cluster.wait_healthy(ctx)?;
        ctx.progress(&format!(
            "redis kill {k}/{}: {} fail on all {} survivors after {:.1} ms (first {:.1} ms); \
             cluster_state:ok on all {:.1} s after restart",
            ctx.args.kills,
            cluster.nodes[victim].name,
            cluster.nodes.len() - 1,
            all.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            restarted.elapsed().as_secs_f64()
        ));
        samples.push(all);
    }
    Ok(samples)
}

/// Kills master `victim` and polls every survivor's `CLUSTER NODES` until each
/// flags it `fail` (not merely `fail?`).
fn kill_and_time(ctx: &Ctx, cluster: &mut RedisCluster, victim: usize) -> anyhow::Result<Detected> {
    let (id, name) = (
        cluster.nodes[victim].id.clone(),
        cluster.nodes[victim].name.clone(),
    );
    let survivors: Vec<(String, SocketAddr)> = (cluster.nodes.iter().enumerate())
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| (n.name.clone(), n.addr))
        .collect();
    let t0 = cluster.kill(victim)?;
    time_until_all(ctx, t0, &survivors, |addr| {
        let (mut conn, addr, id) = (None, *addr, id.as_str());
        move || {
            let lines = cluster_nodes(&mut conn, addr).map_err(|e| format!("{e:#}"))?;
            match lines.iter().find(|l| l.id == id) {
                Some(l) if l.failed() => Ok(()),
                Some(l) => Err(format!("flags {}", l.flags.join(","))),
                None => Err(format!("{id} not listed")),
            }
        }
    })
    .with_context(|| format!("{name} killed"))
}

/// `CLUSTER NODES` of `addr`; the connection is dropped on error and
/// re-established on the next call.
fn cluster_nodes(conn: &mut Option<Conn>, addr: SocketAddr) -> anyhow::Result<Vec<NodeLine>> {
    if conn.is_none() {
        *conn = Some(Conn::connect(addr, REQUEST_TIMEOUT)?);
    }
    let Some(c) = conn.as_mut() else {
        bail!("no connection to {addr}");
    };
    let text = c.text(&["CLUSTER", "NODES"]);
    if text.is_err() {
        *conn = None;
    }
    parse_cluster_nodes(&text?)
}

/// What the poller saw during the hog.
struct HogWatch {
    /// Node id to name.
    names: HashMap<String, String>,
    conns: Vec<Option<Conn>>,
    polls: u64,
    errors: u64,
    suspects: Episodes,
    deaths: Episodes,
}

impl HogWatch {
    fn new(cluster: &RedisCluster) -> Self {
        HogWatch {
            names: (cluster.nodes.iter())
                .map(|n| (n.id.clone(), n.name.clone()))
                .collect(),
            conns: cluster.nodes.iter().map(|_| None).collect(),
            polls: 0,
            errors: 0,
            suspects: Episodes::default(),
            deaths: Episodes::default(),
        }
    }

    fn name_of(&self, id: &str) -> String {
        self.names.get(id).map_or(id, String::as_str).to_string()
    }

    fn round(&mut self, addrs: &[SocketAddr]) {
        let (mut suspects, mut deaths) = (HashSet::new(), HashSet::new());
        for (i, addr) in addrs.iter().enumerate() {
            self.polls += 1;
            let Ok(lines) = cluster_nodes(&mut self.conns[i], *addr) else {
                self.errors += 1;
                continue;
            };
            for l in &lines {
                if l.suspected() {
                    suspects.insert(self.name_of(&l.id));
                }
                if l.failed() {
                    deaths.insert(self.name_of(&l.id));
                }
            }
        }
        self.suspects.observe(suspects);
        self.deaths.observe(deaths);
    }
}

/// Saturates every core from this process for `--hog-seconds` while polling
/// every node's `CLUSTER NODES`; nothing is killed, so every flag is false.
fn hog_phase(ctx: &Ctx, cluster: &mut RedisCluster) -> anyhow::Result<Hog> {
    ctx.progress(&format!(
        "redis: CPU hog on {} threads for {} s, polling every node's CLUSTER NODES",
        threads_per_core(),
        ctx.args.hog_seconds
    ));
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let mut watch = HogWatch::new(cluster);
    let threads = with_hog(ctx, || {
        cluster.check_processes()?;
        watch.round(&addrs);
        Ok(())
    })?;
    Ok(Hog {
        seconds: ctx.args.hog_seconds,
        threads,
        polls: watch.polls,
        poll_errors: watch.errors,
        false_suspicions: watch.suspects.count(),
        false_deaths: watch.deaths.count(),
        suspected: watch.suspects.subjects(),
        declared_dead: watch.deaths.subjects(),
        refutations: None,
        local_health_end: None,
        max_local_health_seen: None,
    })
}
