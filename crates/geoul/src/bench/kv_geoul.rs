//! The geoul side of `bench kv`: local `geoul node` processes of this binary with
//! a `[kv]` config, their readiness check (every node sees every member alive and
//! hosting `kv`), the client connection that drives them, and a node's RSS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use geoul_node::kv::{KvRequest, KvResponse, KV};
use geoul_replication::ReadLevel;
use geoul_store::Ack;
use geoul_transport::ClusterSecret;
use rand::Rng;

use super::admin::{agent, status};
use super::kv::{wait_until, KvCtx};
use super::kv_load::{Driver, Op};
use super::{die_with_parent, failure};
use crate::cluster_client::ClusterClient;
use crate::local_cluster::{
    check_ports_free, ensure_secret, node_command, plan, LogMode, Planned, Running,
};

/// Random cluster ports are drawn below this (admin = +1000): under Linux's
/// ephemeral range and clear of the random Redis ports (21100..).
const RANDOM_PORTS: std::ops::Range<u16> = 10_000..20_000;
const PORT_ATTEMPTS: usize = 64;
/// Bound on the wait for every node to see every member alive with `kv`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the wait for a probe write to reach the expected replica count.
const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one admin HTTP request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The `[kv]` settings of one benchmark cluster.
#[derive(Clone, Copy, Debug)]
pub struct KvSettings {
    pub replication_factor: u8,
    pub write_ack: &'static str,
    pub durability: &'static str,
    /// 0: fsync every batch; N: group commit every N ms.
    pub fsync_period_ms: u64,
}

impl KvSettings {
    /// The node config file.
    pub fn toml(&self) -> String {
        format!(
            "fsync_period_ms = {}\n[kv]\nreplication_factor = {}\nwrite_ack = \"{}\"\ndurability = \"{}\"\n",
            self.fsync_period_ms, self.replication_factor, self.write_ack, self.durability
        )
    }
}

/// A running local cluster; every node is killed when it is dropped.
pub struct GeoulCluster {
    dir: PathBuf,
    pub secret: ClusterSecret,
    pub nodes: Vec<Running>,
    /// Planned nodes not started yet (see [`GeoulCluster::start_next`]).
    later: Vec<Planned>,
    all: Vec<SocketAddr>,
    config: PathBuf,
    secret_path: PathBuf,
}

fn plan_ports(nodes: u16) -> anyhow::Result<Vec<Planned>> {
    let mut rng = rand::rng();
    for _ in 0..PORT_ATTEMPTS {
        let base = rng.random_range(RANDOM_PORTS);
        if let Ok(planned) = plan(nodes, base) {
            if check_ports_free(&planned).is_ok() {
                return Ok(planned);
            }
        }
    }
    bail!("no free loopback ports for {nodes} nodes found in {RANDOM_PORTS:?}")
}

impl GeoulCluster {
    /// Starts `nodes` nodes in `dir` with `settings` and waits until each of them
    /// sees every member alive and hosting `kv`.
    pub fn start(
        ctx: &KvCtx,
        dir: &Path,
        nodes: u16,
        settings: KvSettings,
    ) -> anyhow::Result<Self> {
        Self::start_some(ctx, dir, nodes, nodes, settings)
    }

    /// Plans `nodes` nodes but starts only the first `now` (the others join
    /// later, one by one, with [`GeoulCluster::start_next`]).
    pub fn start_some(
        ctx: &KvCtx,
        dir: &Path,
        nodes: u16,
        now: u16,
        settings: KvSettings,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("node.toml");
        std::fs::write(&config, settings.toml())
            .with_context(|| format!("writing {}", config.display()))?;
        let secret_path = ensure_secret(dir).map_err(failure)?;
        let secret = ClusterSecret::load_file(&secret_path)
            .map_err(|e| anyhow!("{}: {e}", secret_path.display()))?;
        let mut planned = plan_ports(nodes)?;
        let all: Vec<SocketAddr> = planned.iter().map(|p| p.cluster).collect();
        let later = planned.split_off(usize::from(now.min(nodes)));
        let mut cluster = GeoulCluster {
            dir: dir.to_path_buf(),
            secret,
            nodes: Vec::new(),
            later,
            all,
            config,
            secret_path,
        };
        for p in planned {
            cluster.spawn(p)?;
        }
        let http = agent(ADMIN_TIMEOUT);
        let n = cluster.nodes.len();
        let what = format!("every geoul node to see {n} members alive and hosting {KV}");
        wait_until(ctx, &what, READY_TIMEOUT, || {
            cluster.check_children()?;
            Ok(cluster.nodes.iter().all(|node| {
                status(&http, node.planned.admin).is_ok_and(|s| {
                    s.count("alive") == n && s.members.iter().all(|m| m.services.contains_key(KV))
                })
            }))
        })?;
        Ok(cluster)
    }

    fn spawn(&mut self, p: Planned) -> anyhow::Result<()> {
        let mut cmd = node_command(
            &p,
            &self.all,
            &self.dir,
            &self.secret_path,
            LogMode::Truncate,
        )
        .map_err(failure)?;
        cmd.arg("--config").arg(&self.config);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", p.name))?;
        self.nodes.push(Running { planned: p, child });
        Ok(())
    }

    /// kill -9 of node `i` (it can be restarted with its data).
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        node.child.kill().context("killing a node")?;
        node.child.wait().context("reaping a node")?;
        Ok(())
    }

    /// Starts node `i` again after [`GeoulCluster::kill`], with its data.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let p = self.nodes.get(i).context("no such node")?.planned.clone();
        let mut cmd = node_command(&p, &self.all, &self.dir, &self.secret_path, LogMode::Append)
            .map_err(failure)?;
        cmd.arg("--config").arg(&self.config);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("restarting {}", p.name))?;
        self.nodes[i].child = child;
        Ok(())
    }

    /// Starts the next planned node; returns its admin address.
    pub fn start_next(&mut self) -> anyhow::Result<SocketAddr> {
        if self.later.is_empty() {
            bail!("every planned node is already running");
        }
        let p = self.later.remove(0);
        let admin = p.admin;
        self.spawn(p)?;
        Ok(admin)
    }

    /// A node that exited is a failure.
    pub fn check_children(&mut self) -> anyhow::Result<()> {
        crate::local_cluster::ensure_running(&mut self.nodes, &self.dir)
    }

    /// `name pid` of every node, for attaching a profiler.
    pub fn pids(&self) -> String {
        let pids: Vec<String> = (self.nodes.iter())
            .map(|n| format!("{} pid {}", n.planned.name, n.child.id()))
            .collect();
        pids.join(", ")
    }

    /// `n` clients, spread round-robin over the nodes.
    pub async fn connect_clients(
        &self,
        n: usize,
        value: &Arc<str>,
        timeout: Duration,
    ) -> anyhow::Result<Vec<GeoulDriver>> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.connect_clients_to(&all, n, value, timeout).await
    }

    /// `n` clients, spread round-robin over the nodes at `indexes`.
    pub async fn connect_clients_to(
        &self,
        indexes: &[usize],
        n: usize,
        value: &Arc<str>,
        timeout: Duration,
    ) -> anyhow::Result<Vec<GeoulDriver>> {
        let mut drivers = Vec::with_capacity(n);
        for i in 0..n {
            let node = indexes
                .get(i % indexes.len().max(1))
                .and_then(|x| self.nodes.get(*x))
                .context("no such node")?;
            let target = node.planned.cluster.to_string();
            let client = ClusterClient::connect_to(&[target], &self.secret)
                .await
                .map_err(failure)?;
            drivers.push(GeoulDriver {
                client,
                value: value.clone(),
                timeout,
            });
        }
        Ok(drivers)
    }
}

/// Waits until a write through every driver is placed on the configured number
/// of replicas (placement follows the gossiped table declarations).
pub async fn wait_placed(
    ctx: &KvCtx,
    drivers: &[GeoulDriver],
    replicas: u32,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    for (i, d) in drivers.iter().enumerate().take(3) {
        loop {
            ctx.check_stop()?;
            let key = format!("bench-probe-{i}");
            let last = match d.set(key.into_bytes(), Some(Ack::All)).await {
                Ok(KvResponse::Written { replicas: r, .. }) if r == replicas => break,
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > PLACEMENT_TIMEOUT {
                bail!(
                    "a probe write did not reach {replicas} replicas within {}s; last answer: {last}",
                    PLACEMENT_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// One benchmark client: its own authenticated connection to one node.
pub struct GeoulDriver {
    client: ClusterClient,
    value: Arc<str>,
    timeout: Duration,
}

impl GeoulDriver {
    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    async fn set(&self, key: Vec<u8>, ack: Option<Ack>) -> anyhow::Result<KvResponse> {
        let request = KvRequest::Set {
            key,
            value: self.value.to_string(),
            ttl_ms: None,
            ack,
            timeout_ms: self.timeout_ms(),
        };
        self.client.kv(request).await.map_err(failure)
    }

    async fn written(&self, key: &str, ack: Ack) -> anyhow::Result<bool> {
        match self.set(key.as_bytes().to_vec(), Some(ack)).await? {
            KvResponse::Written { .. } => Ok(true),
            other => bail!("SET: unexpected answer {other:?}"),
        }
    }
}

impl Driver for GeoulDriver {
    async fn call(&mut self, op: Op, key: &str) -> anyhow::Result<bool> {
        match op {
            Op::SetReplicated => self.written(key, Ack::Quorum).await,
            Op::SetOne => self.written(key, Ack::One).await,
            Op::Get => {
                let request = KvRequest::Get {
                    key: key.as_bytes().to_vec(),
                    level: ReadLevel::One,
                    timeout_ms: self.timeout_ms(),
                };
                match self.client.kv(request).await.map_err(failure)? {
                    KvResponse::Value(v) => Ok(v.is_some()),
                    other => bail!("GET: unexpected answer {other:?}"),
                }
            }
        }
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&text).ok_or_else(|| anyhow!("{path} has no VmRSS line"))
}

/// The `VmRSS:  123456 kB` line, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    (parts.next() == Some("kB")).then_some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tgeoul\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn config_file() {
        let s = KvSettings {
            replication_factor: 2,
            write_ack: "quorum",
            durability: "memory",
            fsync_period_ms: 100,
        };
        assert_eq!(
            s.toml(),
            "fsync_period_ms = 100\n[kv]\nreplication_factor = 2\nwrite_ack = \"quorum\"\ndurability = \"memory\"\n"
        );
    }

    #[test]
    fn reads_this_process_rss() {
        let rss = rss_bytes(std::process::id()).expect("own /proc status");
        assert!(rss > 0);
    }
}
