//! The Redis Cluster peer: finding the binaries, starting N `redis-server`
//! processes on loopback, creating the cluster, killing and restarting nodes, and
//! checking that every node sees a healthy cluster.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use geoul_membership::MembershipConfig;
use rand::Rng;

use super::resp::{info_field, parse_cluster_nodes, Conn};
use super::{die_with_parent, wait_until, ChildGuard, Ctx};
use crate::cli::{DetectArgs, RedisMode};
use crate::Failure;

/// Redis ports sit this far above `--base-port` (geoul uses +0 and +1000).
const BASE_PORT_OFFSET: u16 = 2000;
/// Redis Cluster's bus port is the client port + 10000.
const BUS_PORT_OFFSET: u16 = 10_000;
/// Random Redis ports: bus ports stay below Linux's ephemeral range (32768) and
/// clear of the random geoul ports (10000..21064).
const RANDOM_PORTS: std::ops::Range<u16> = 21_100..22_600;
const PORT_ATTEMPTS: usize = 64;
/// Timeout of one connection attempt and of every command.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on a server answering PING after its start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on `redis-cli --cluster create`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on every wait for a healthy cluster (all `cluster_state:ok`).
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

/// Paths of the Redis binaries.
pub struct RedisBins {
    pub server: PathBuf,
    pub cli: PathBuf,
}

/// Whether the Redis side runs.
pub enum Peer {
    Available(RedisBins),
    Skipped(String),
}

/// Applies `--redis`: `on` without the binaries is an error, `auto` skips.
pub fn resolve(args: &DetectArgs) -> Result<Peer, Failure> {
    if args.redis == RedisMode::Off {
        return Ok(Peer::Skipped("--redis off".to_string()));
    }
    if let Some(base) = args.base_port {
        let last = u32::from(base) + u32::from(BASE_PORT_OFFSET + BUS_PORT_OFFSET);
        if last + u32::from(args.nodes) > u32::from(u16::MAX) {
            return Err(Failure::Usage(format!(
                "--base-port {base}: Redis bus ports (base + 12000 + i) would exceed 65535"
            )));
        }
    }
    match (which("redis-server"), which("redis-cli")) {
        (Some(server), Some(cli)) => Ok(Peer::Available(RedisBins { server, cli })),
        _ if args.redis == RedisMode::On => Err(Failure::Runtime(
            "--redis on: redis-server and redis-cli must be on PATH \
             (scripts/bench-detect.sh installs them)"
                .to_string(),
        )),
        _ => Ok(Peer::Skipped(
            "redis-server and redis-cli not found on PATH".to_string(),
        )),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The node timeout given to Redis: geoul's default suspicion timeout.
pub fn node_timeout_ms() -> u128 {
    MembershipConfig::default().suspicion_timeout.as_millis()
}

/// One `redis-server` of the cluster.
pub struct RedisNode {
    pub name: String,
    pub addr: SocketAddr,
    /// The cluster node id (kept across restarts by its config file).
    pub id: String,
    process: Option<ChildGuard>,
}

/// A running Redis Cluster of N masters without replicas.
pub struct RedisCluster {
    bins: RedisBins,
    dir: PathBuf,
    pub nodes: Vec<RedisNode>,
    pub version: String,
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn pick_ports(args: &DetectArgs) -> anyhow::Result<Vec<u16>> {
    let ports_at = |base: u16| (0..args.nodes).map(move |i| base + i);
    let all_free =
        |base: u16| ports_at(base).all(|p| port_free(p) && port_free(p + BUS_PORT_OFFSET));
    if let Some(base) = args.base_port {
        let base = base + BASE_PORT_OFFSET;
        if !all_free(base) {
            bail!("a Redis port in {base}.. or its bus port (+10000) is taken; pass another --base-port");
        }
        return Ok(ports_at(base).collect());
    }
    let mut rng = rand::rng();
    (0..PORT_ATTEMPTS)
        .map(|_| rng.random_range(RANDOM_PORTS))
        .find(|b| all_free(*b))
        .map(|b| ports_at(b).collect())
        .ok_or_else(|| anyhow!("no free loopback ports for Redis found in {RANDOM_PORTS:?}"))
}

fn open_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Sends one command to `addr` on a fresh connection.
pub fn ask(addr: SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    Conn::connect(addr, REQUEST_TIMEOUT)?.text(args)
}

impl RedisCluster {
    /// Starts the servers, creates the cluster and waits until it is healthy.
    pub fn start(ctx: &Ctx, bins: &RedisBins) -> anyhow::Result<Self> {
        let dir = ctx.dir.join("redis");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports = pick_ports(&ctx.args)?;
        let mut cluster = RedisCluster {
            bins: RedisBins {
                server: bins.server.clone(),
                cli: bins.cli.clone(),
            },
            dir,
            nodes: Vec::new(),
            version: String::new(),
        };
        for (i, port) in ports.into_iter().enumerate() {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let process = Some(cluster.spawn(addr)?);
            let name = format!("redis-{}", i + 1);
            let id = String::new();
            cluster.nodes.push(RedisNode {
                name,
                addr,
                id,
                process,
            });
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_started(ctx, i)?;
            cluster.nodes[i].id = ask(cluster.nodes[i].addr, &["CLUSTER", "MYID"])?;
        }
        let info = ask(cluster.nodes[0].addr, &["INFO", "server"])?;
        cluster.version = info_field(&info, "redis_version")
            .unwrap_or("unknown")
            .to_string();
        cluster.create(ctx)?;
        let took = cluster.wait_healthy(ctx)?;
        ctx.progress(&format!(
            "redis: {} masters up (redis {}), cluster_state:ok on all after {:.1} s",
            cluster.nodes.len(),
            cluster.version,
            took.as_secs_f64()
        ));
        Ok(cluster)
    }

    fn spawn(&self, addr: SocketAddr) -> anyhow::Result<ChildGuard> {
        let port = addr.port();
        let out = open_append(&self.dir.join(format!("redis-{port}.out")))?;
        let err = out.try_clone().context("redis output file")?;
        let mut cmd = Command::new(&self.bins.server);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout"])
            .arg(node_timeout_ms().to_string())
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join(format!("redis-{port}.log")))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting redis-server on {addr}"))?;
        Ok(ChildGuard(child))
    }

    fn wait_started(&mut self, ctx: &Ctx, i: usize) -> anyhow::Result<()> {
        let addr = self.nodes[i].addr;
        let what = format!("redis-server on {addr} to answer PING");
        wait_until(ctx, &what, START_TIMEOUT, || {
            self.check_processes()?;
            Ok(ask(addr, &["PING"]).is_ok_and(|r| r == "PONG"))
        })?;
        Ok(())
    }

    fn create(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let log_path = self.dir.join("cluster-create.log");
        let log = open_append(&log_path)?;
        let mut cmd = Command::new(&self.bins.cli);
        cmd.args(["--cluster", "create"])
            .args(self.nodes.iter().map(|n| n.addr.to_string()))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("create log")?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let mut child = ChildGuard(cmd.spawn().context("starting redis-cli --cluster create")?);
        let mut exit = None;
        wait_until(ctx, "redis-cli --cluster create", CREATE_TIMEOUT, || {
            exit = child.0.try_wait().context("waiting for redis-cli")?;
            Ok(exit.is_some())
        })?;
        match exit {
            Some(status) if status.success() => Ok(()),
            status => bail!(
                "redis-cli --cluster create failed ({status:?}); see {}",
                log_path.display()
            ),
        }
    }

    /// A server that exited without being killed by the benchmark is a failure.
    pub fn check_processes(&mut self) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            let Some(process) = n.process.as_mut() else {
                continue;
            };
            if let Some(status) = process.0.try_wait().context("checking redis-server")? {
                bail!(
                    "redis-server {} exited unexpectedly ({status}); see {}",
                    n.addr,
                    self.dir
                        .join(format!("redis-{}.log", n.addr.port()))
                        .display()
                );
            }
        }
        Ok(())
    }

    /// Waits until every node reports `cluster_state:ok` and sees every node
    /// connected with no failure flag.
    pub fn wait_healthy(&mut self, ctx: &Ctx) -> anyhow::Result<Duration> {
        let what = "every Redis node to report cluster_state:ok and all nodes connected";
        wait_until(ctx, what, HEALTHY_TIMEOUT, || {
            self.check_processes()?;
            Ok(self
                .nodes
                .iter()
                .all(|n| self.healthy_on(n.addr).unwrap_or(false)))
        })
    }

    fn healthy_on(&self, addr: SocketAddr) -> anyhow::Result<bool> {
        let mut conn = Conn::connect(addr, REQUEST_TIMEOUT)?;
        let info = conn.text(&["CLUSTER", "INFO"])?;
        if info_field(&info, "cluster_state") != Some("ok") {
            return Ok(false);
        }
        let lines = parse_cluster_nodes(&conn.text(&["CLUSTER", "NODES"])?)?;
        Ok(lines.len() == self.nodes.len() && lines.iter().all(|l| l.healthy()))
    }

    /// SIGKILLs node `i`; returns when the signal was sent.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<Instant> {
        let node = &mut self.nodes[i];
        let process =
            (node.process.as_mut()).ok_or_else(|| anyhow!("{} is not running", node.name))?;
        process
            .0
            .kill()
            .with_context(|| format!("kill -9 {}", node.name))?;
        Ok(Instant::now())
    }

    /// Reaps killed node `i` and starts it again with the same port and config
    /// file (so the same node id).
    pub fn restart(&mut self, ctx: &Ctx, i: usize) -> anyhow::Result<()> {
        if let Some(mut old) = self.nodes[i].process.take() {
            old.0
                .wait()
                .with_context(|| format!("reaping {}", self.nodes[i].name))?;
        }
        self.nodes[i].process = Some(self.spawn(self.nodes[i].addr)?);
        self.wait_started(ctx, i)
    }
}
