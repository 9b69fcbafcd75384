//! Real-process test support: spawn `geoul node` processes on loopback with their
//! own ports and directories, poll their admin `/status`, kill them on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use geoul_node::kv::{KvRequest, KvResponse};
use geoul_node::StatusReport;
use geoul_transport::{Client, ClusterSecret, TokioNet, TransportConfig};

/// A client connection as the CLI opens it.
pub type KvClient = Client<TokioNet>;

pub const GEOUL: &str = env!("CARGO_BIN_EXE_geoul");

/// Generous: the machine is shared and noisy; speed is measured by the benchmark.
pub const WAIT: Duration = Duration::from_secs(30);

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768+), so
/// an outgoing connection of another process cannot take a node's port between
/// the check and the bind, or while a killed node is down before its restart.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(TEST_PORTS);
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// One `geoul node` process.
pub struct NodeProc {
    pub name: String,
    pub cluster: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub secret_file: PathBuf,
    pub seeds: Vec<SocketAddr>,
    /// Network namespace to run in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// More `geoul node` arguments (e.g. `--services kv,auth`).
    pub extra_args: Vec<String>,
}

impl NodeProc {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", self.name)))
            .expect("log file");
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the command: the child is the node itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, GEOUL]);
                c
            }
            None => Command::new(GEOUL),
        };
        cmd.args(["node", "--name", &self.name])
            .args(["--bind", &self.cluster.to_string()])
            .args(["--admin", &self.admin.to_string()])
            .arg("--data-dir")
            .arg(self.dir.join(&self.name))
            .arg("--cluster-secret-file")
            .arg(&self.secret_file)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if !self.seeds.is_empty() {
            let seeds: Vec<String> = self.seeds.iter().map(ToString::to_string).collect();
            cmd.args(["--seeds", &seeds.join(",")]);
        }
        cmd.args(&self.extra_args);
        self.child = Some(cmd.spawn().expect("spawn geoul node"));
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        assert!(pid > 0);
        // SAFETY: kill(2) on a child we spawned.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// kill -9 and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit, returning its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn status(&self) -> Option<StatusReport> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        agent
            .get(&format!("{}/status", self.admin_url()))
            .call()
            .ok()?
            .into_json()
            .ok()
    }

    pub fn metrics(&self) -> Option<String> {
        ureq::get(&format!("{}/metrics", self.admin_url()))
            .call()
            .ok()?
            .into_string()
            .ok()
    }

    /// How this node sees `member`: state and incarnation.
    pub fn sees(&self, member: &str) -> Option<(String, u64)> {
        let s = self.status()?;
        s.members
            .iter()
            .find(|m| m.name == member)
            .map(|m| (m.state.clone(), m.incarnation))
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped process; kill9 reaps it.
        self.kill9();
    }
}

/// A cluster of node processes sharing a secret, each with its own ports.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<NodeProc>,
}

pub fn write_secret(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, secret).expect("write secret");
    path
}

impl Cluster {
    /// Starts `n` nodes and waits until all see all alive.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    /// [`Cluster::start`] with more `geoul node` arguments for every node.
    pub fn start_with(n: usize, extra_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = write_secret(dir.path(), "secret", "test-cluster-secret-0123456789abcdef");
        let addrs: Vec<(SocketAddr, SocketAddr)> = (0..n)
            .map(|_| {
                let c = SocketAddr::from(([127, 0, 0, 1], free_port()));
                let a = SocketAddr::from(([127, 0, 0, 1], free_port()));
                (c, a)
            })
            .collect();
        let nodes: Vec<NodeProc> = addrs
            .iter()
            .enumerate()
            .map(|(i, (cluster, admin))| NodeProc {
                name: format!("node-{}", i + 1),
                cluster: *cluster,
                admin: *admin,
                dir: dir.path().to_path_buf(),
                child: None,
                secret_file: secret.clone(),
                seeds: addrs
                    .iter()
                    .map(|(c, _)| *c)
                    .filter(|c| c != cluster)
                    .collect(),
                netns: None,
                extra_args: extra_args.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let mut cluster = Self { dir, nodes };
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster.wait_all_alive();
        cluster.wait_synced();
        cluster
    }

    /// Starts one more node (`node-<n+1>`) seeded with the existing ones.
    pub fn add_node(&mut self) {
        let seeds: Vec<SocketAddr> = self.nodes.iter().map(|n| n.cluster).collect();
        let mut node = NodeProc {
            name: format!("node-{}", self.nodes.len() + 1),
            cluster: SocketAddr::from(([127, 0, 0, 1], free_port())),
            admin: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: self.dir.path().to_path_buf(),
            child: None,
            secret_file: self.nodes[0].secret_file.clone(),
            seeds,
            netns: None,
            extra_args: self.nodes[0].extra_args.clone(),
        };
        node.start();
        self.nodes.push(node);
    }

    /// Waits until every running node holds all its slots synced.
    pub fn wait_synced(&self) {
        wait_for(
            "every node synced",
            || {
                self.nodes
                    .iter()
                    .all(|node| node.status().is_some_and(|s| s.synced()))
            },
            self,
        );
    }

    pub fn node(&self, name: &str) -> &NodeProc {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("known node")
    }

    pub fn node_mut(&mut self, name: &str) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .expect("known node")
    }

    /// Waits until every running node sees every node alive.
    pub fn wait_all_alive(&self) {
        let n = self.nodes.len();
        wait_for(
            &format!("all {n} nodes see {n} alive"),
            || {
                self.nodes
                    .iter()
                    .all(|node| node.status().is_some_and(|s| s.count("alive") == n))
            },
            self,
        );
    }

    /// Waits until every node other than `member` sees it in `state`.
    pub fn wait_others_see(&self, member: &str, state: &str) {
        wait_for(
            &format!("others see {member} {state}"),
            || {
                self.nodes
                    .iter()
                    .filter(|n| n.name != member && n.child.is_some())
                    .all(|n| n.sees(member).is_some_and(|(s, _)| s == state))
            },
            self,
        );
    }

    pub fn describe(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            match n.status() {
                Some(s) => {
                    let members: Vec<String> = s
                        .members
                        .iter()
                        .map(|m| format!("{}={}#{}", m.name, m.state, m.incarnation))
                        .collect();
                    out.push_str(&format!("{}: {}\n", n.name, members.join(" ")));
                }
                None => out.push_str(&format!("{}: no status\n", n.name)),
            }
        }
        for n in &self.nodes {
            let log =
                std::fs::read_to_string(n.dir.join(format!("{}.log", n.name))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!("--- {} log tail:\n", n.name));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

pub fn wait_for(what: &str, pred: impl FnMut() -> bool, cluster: &Cluster) {
    wait_for_at_most(what, WAIT, pred, cluster);
}

/// [`wait_for`] with another bound (large on-demand runs).
pub fn wait_for_at_most(
    what: &str,
    limit: Duration,
    mut pred: impl FnMut() -> bool,
    cluster: &Cluster,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}\n{}", cluster.describe());
}

/// Reads lines from a child's stdout until `count` lines matching `prefix` arrive.
pub fn read_lines(child: &mut Child, prefix: &str, count: usize, limit: Duration) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the caller stopped listening: closing the pipe
        // would hand the child an EPIPE on its next line.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + limit;
    let mut lines = Vec::new();
    while lines.len() < count && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if line.starts_with(prefix) {
                lines.push(line);
            }
        }
    }
    lines
}

impl Cluster {
    /// Waits until every node sees every node hosting `service` (alive is not
    /// enough: service metadata spreads by gossip a little later).
    pub fn wait_service(&self, service: &str) {
        let n = self.nodes.len();
        let hosts = |s: StatusReport| s.members.iter().all(|m| m.services.contains_key(service));
        let sees = |node: &NodeProc| {
            node.status()
                .is_some_and(|s| s.count("alive") == n && hosts(s))
        };
        let what = format!("all {n} nodes see {n} hosting {service}");
        wait_for(&what, || self.nodes.iter().all(sees), self);
    }
}

/// Exit code (`None` if killed by a signal) and output of a finished `geoul`.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `geoul ARGS` in `cwd` with `envs` (and without the caller's
/// `GEOUL_CLUSTER*` variables); kills it if it runs longer than `limit`.
pub fn run_geoul(args: &[&str], envs: &[(&str, &str)], cwd: &Path, limit: Duration) -> CliOutput {
    let mut cmd = Command::new(GEOUL);
    cmd.args(args).current_dir(cwd).stdin(Stdio::null());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for var in ["GEOUL_CLUSTER", "GEOUL_CLUSTER_SECRET"] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied());
    let child = cmd.spawn().expect("spawn geoul");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(output) = rx.recv_timeout(limit) else {
        // SAFETY: kill(2) on a child we spawned and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("geoul {args:?} ran longer than {limit:?}");
    };
    let output = output.expect("collect geoul output");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let code = output.status.code();
    CliOutput {
        code,
        stdout,
        stderr,
    }
}

/// The secret every node of `cluster` was started with.
pub fn cluster_secret(cluster: &Cluster) -> ClusterSecret {
    ClusterSecret::load_file(&cluster.nodes[0].secret_file).expect("cluster secret")
}

/// An authenticated client connection to `addr`, as the CLI opens it.
pub async fn kv_client(addr: SocketAddr, secret: &ClusterSecret) -> Result<KvClient, String> {
    let config = TransportConfig {
        hello: "test".into(),
        ..Default::default()
    };
    let client = Client::connect(TokioNet, addr, secret, config).await;
    client.map_err(|e| e.to_string())
}

/// Sends one kv request over `c`; the server gets `t` as its deadline, the
/// client waits one second longer.
pub async fn kv_call(c: &KvClient, req: KvRequest, t: Duration) -> Result<KvResponse, String> {
    let payload = geoul_node::kv::encode_call(&req)?;
    let reply = c.request(payload, t + Duration::from_secs(1)).await;
    let bytes = reply.map_err(|e| e.to_string())?;
    geoul_node::kv::decode_reply(&bytes)
}
