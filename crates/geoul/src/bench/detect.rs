//! The geoul side of `bench detect`: a local cluster of this binary, the kill -9
//! loop (time until every survivor reports the node `dead`) and the CPU-hog phase.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use geoul_membership::MembershipConfig;
use rand::Rng;

use super::admin::{agent, member_state, metric_value, metrics, status};
use super::hog::{threads_per_core, with_hog, Episodes};
use super::report::{Hog, SystemResult};
use super::watch::{time_until_all, Detected};
use super::{die_with_parent, failure, stats, wait_until, Ctx};
use crate::cli::DetectArgs;
use crate::local_cluster::{
    check_ports_free, converged, ensure_secret, node_command, plan, LogMode, Planned, Running,
};
use crate::Failure;

/// Bound on every wait for the cluster to see every node alive.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeout of one admin HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Random cluster ports are drawn below this (admin = +1000), under Linux's
/// ephemeral range so that no outgoing connection takes a port between restarts.
const RANDOM_PORTS: std::ops::Range<u16> = 10_000..20_000;
const PORT_ATTEMPTS: usize = 64;

const REFUTATIONS: &str = "geoul_membership_refutations_total";
const LOCAL_HEALTH: &str = "geoul_membership_local_health_score";

/// The node plan: at `--base-port` if given (refused if taken), else free ports.
pub fn plan_ports(args: &DetectArgs) -> Result<Vec<Planned>, Failure> {
    if let Some(base) = args.base_port {
        let planned = plan(args.nodes, base)?;
        check_ports_free(&planned)?;
        return Ok(planned);
    }
    let mut rng = rand::rng();
    for _ in 0..PORT_ATTEMPTS {
        let base = rng.random_range(RANDOM_PORTS);
        if let Ok(planned) = plan(args.nodes, base) {
            if check_ports_free(&planned).is_ok() {
                return Ok(planned);
            }
        }
    }
    Err(Failure::Runtime(format!(
        "no free loopback ports for {} nodes found in {RANDOM_PORTS:?}; pass --base-port",
        args.nodes
    )))
}

struct Cluster {
    dir: PathBuf,
    secret: PathBuf,
    all: Vec<SocketAddr>,
    nodes: Vec<Running>,
}

impl Cluster {
    fn start(ctx: &Ctx, planned: Vec<Planned>) -> anyhow::Result<Self> {
        let dir = ctx.dir.join("geoul");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let secret = ensure_secret(&dir).map_err(failure)?;
        let all = planned.iter().map(|p| p.cluster).collect();
        let mut cluster = Cluster {
            dir,
            secret,
            all,
            nodes: Vec::new(),
        };
        for p in planned {
            let node = cluster.spawn(p, LogMode::Truncate)?;
            cluster.nodes.push(node);
        }
        let took = cluster.wait_converged(ctx)?;
        ctx.progress(&format!(
            "geoul: {} nodes up, all alive on all after {:.1} s",
            cluster.nodes.len(),
            took.as_secs_f64()
        ));
        Ok(cluster)
    }

    fn spawn(&self, p: Planned, mode: LogMode) -> anyhow::Result<Running> {
        let mut cmd =
            node_command(&p, &self.all, &self.dir, &self.secret, mode).map_err(failure)?;
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", p.name))?;
        Ok(Running { planned: p, child })
    }

    fn wait_converged(&mut self, ctx: &Ctx) -> anyhow::Result<Duration> {
        let what = "every geoul node to see every node alive";
        wait_until(ctx, what, CONVERGE_TIMEOUT, || {
            self.check_children()?;
            Ok(converged(&self.nodes))
        })
    }

    /// A node that exited without being killed by the benchmark is a failure.
    fn check_children(&mut self) -> anyhow::Result<()> {
        crate::local_cluster::ensure_running(&mut self.nodes, &self.dir)
    }

    /// Reaps the killed node `i` and starts it again: same name, ports, data dir.
    fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        node.child.wait().context("reaping a killed node")?;
        let planned = node.planned.clone();
        self.nodes[i] = self.spawn(planned, LogMode::Append)?;
        Ok(())
    }
}

/// Runs both phases against a fresh cluster of `planned` nodes.
pub fn run(ctx: &Ctx, planned: Vec<Planned>) -> anyhow::Result<SystemResult> {
    let mut cluster = Cluster::start(ctx, planned)?;
    let samples = kill_loop(ctx, &mut cluster)?;
    let detection = stats::summarize(&samples).ok_or_else(|| anyhow!("no kill was measured"))?;
    let hog = match ctx.args.hog_seconds {
        0 => None,
        _ => Some(hog_phase(ctx, &mut cluster)?),
    };
    let d = MembershipConfig::default();
    Ok(SystemResult {
        system: "geoul".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        settings: format!(
            "defaults: probe period {} ms, probe rtt {} ms, suspicion timeout {} ms, \
             local health awareness {}",
            d.probe_period.as_millis(),
            d.probe_rtt.as_millis(),
            d.suspicion_timeout.as_millis(),
            if d.local_health_awareness {
                "on"
            } else {
                "off"
            }
        ),
        detection,
        hog,
    })
}

fn kill_loop(ctx: &Ctx, cluster: &mut Cluster) -> anyhow::Result<Vec<Duration>> {
    let mut rng = rand::rng();
    let mut samples = Vec::new();
    for k in 1..=ctx.args.kills {
        let victim = rng.random_range(0..cluster.nodes.len());
        let Detected { first, all } = kill_and_time(ctx, cluster, victim)?;
        cluster.restart(victim)?;
        let back = cluster.wait_converged(ctx)?;
        ctx.progress(&format!(
            "geoul kill {k}/{}: {} dead on all {} survivors after {:.1} ms (first {:.1} ms); \
             all alive again {:.1} s after restart",
            ctx.args.kills,
            cluster.nodes[victim].planned.name,
            cluster.nodes.len() - 1,
            all.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            back.as_secs_f64()
        ));
        samples.push(all);
    }
    Ok(samples)
}

/// Kills node `victim` with SIGKILL and polls every survivor's `/status` until
/// each reports it `dead`.
fn kill_and_time(ctx: &Ctx, cluster: &mut Cluster, victim: usize) -> anyhow::Result<Detected> {
    let name = cluster.nodes[victim].planned.name.clone();
    let survivors: Vec<(String, SocketAddr)> = (cluster.nodes.iter().enumerate())
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| (n.planned.name.clone(), n.planned.admin))
        .collect();
    let node = &mut cluster.nodes[victim].child;
    node.kill().with_context(|| format!("kill -9 {name}"))?;
    let t0 = Instant::now();
    time_until_all(ctx, t0, &survivors, |admin| {
        let (agent, admin, name) = (agent(REQUEST_TIMEOUT), *admin, name.as_str());
        move || match status(&agent, admin) {
            Ok(report) => match member_state(&report, name) {
                "dead" => Ok(()),
                state => Err(format!("reports {name} {state}")),
            },
            Err(e) => Err(format!("{e:#}")),
        }
    })
    .with_context(|| format!("{name} killed"))
}

#[derive(Default)]
struct HogWatch {
    polls: u64,
    errors: u64,
    suspects: Episodes,
    deaths: Episodes,
    max_health: u32,
}

impl HogWatch {
    fn round(&mut self, agent: &ureq::Agent, nodes: &[Running]) {
        let mut suspects = HashSet::new();
        let mut deaths = HashSet::new();
        for n in nodes {
            self.polls += 1;
            let Ok(report) = status(agent, n.planned.admin) else {
                self.errors += 1;
                continue;
            };
            self.max_health = self.max_health.max(report.local_health_score);
            for m in report.members {
                match m.state.as_str() {
                    "suspect" => suspects.insert(m.name),
                    "dead" => deaths.insert(m.name),
                    _ => false,
                };
            }
        }
        self.suspects.observe(suspects);
        self.deaths.observe(deaths);
    }
}

/// Saturates every core from this process for `--hog-seconds` while polling
/// every node; nothing is killed, so every suspicion and death is false.
fn hog_phase(ctx: &Ctx, cluster: &mut Cluster) -> anyhow::Result<Hog> {
    let agent = agent(REQUEST_TIMEOUT);
    let before = read_metric(&agent, &cluster.nodes, REFUTATIONS)?;
    ctx.progress(&format!(
        "geoul: CPU hog on {} threads for {} s, polling every node's /status",
        threads_per_core(),
        ctx.args.hog_seconds
    ));
    let mut watch = HogWatch::default();
    let threads = with_hog(ctx, || {
        cluster.check_children()?;
        watch.round(&agent, &cluster.nodes);
        Ok(())
    })?;
    let after = read_metric(&agent, &cluster.nodes, REFUTATIONS)?;
    let health = read_metric(&agent, &cluster.nodes, LOCAL_HEALTH)?;
    let refutations = (after.iter())
        .map(|(n, v)| v.saturating_sub(*before.get(n).unwrap_or(&0)))
        .sum();
    Ok(Hog {
        seconds: ctx.args.hog_seconds,
        threads,
        polls: watch.polls,
        poll_errors: watch.errors,
        false_suspicions: watch.suspects.count(),
        false_deaths: watch.deaths.count(),
        suspected: watch.suspects.subjects(),
        declared_dead: watch.deaths.subjects(),
        refutations: Some(refutations),
        local_health_end: Some(health),
        max_local_health_seen: Some(watch.max_health),
    })
}

/// One unlabelled integer metric of every node, by node name.
fn read_metric(
    agent: &ureq::Agent,
    nodes: &[Running],
    name: &str,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let text = metrics(agent, n.planned.admin)?;
        let value = metric_value(&text, name)
            .ok_or_else(|| anyhow!("{} exports no {name}", n.planned.name))?;
        // Counters and the 0-8 health score are small non-negative integers.
        out.insert(n.planned.name.clone(), value.max(0.0) as u64);
    }
    Ok(out)
}
