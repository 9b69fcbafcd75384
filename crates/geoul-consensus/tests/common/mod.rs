//! The in-process test cluster: replicas of one group on tokio tasks, talking through
//! an in-memory [`RaftNet`] with switches to partition nodes, data in tempdirs.
//!
//! Owns: wiring, partitions, restarts and wipes, forwarding on `NotLeader`, and
//! bounded waits. Every wait has a deadline and panics with every replica's status
//! when it passes; nothing asserts speed.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use geoul_consensus::{
    BoxFuture, CondError, CondGroup, CondOp, CondOutcome, GroupConfig, GroupStatus, RaftNet,
    Reconciled, Role,
};
use tempfile::TempDir;

/// Longest any wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// Timeout of one submit in tests: generous, the machine is shared.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Hub {
    groups: Mutex<HashMap<String, CondGroup>>,
    /// Directed pairs (from, to) whose messages are dropped.
    blocked: Mutex<HashSet<(String, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    fn is_blocked(&self, from: &str, to: &str) -> bool {
        lock(&self.blocked).contains(&(from.to_string(), to.to_string()))
    }

    /// Drops every message between a node of `a` and a node of `b`, both ways.
    pub fn partition(&self, a: &[String], b: &[String]) {
        let mut blocked = lock(&self.blocked);
        for x in a {
            for y in b {
                blocked.insert((x.clone(), y.clone()));
                blocked.insert((y.clone(), x.clone()));
            }
        }
    }

    pub fn heal(&self) {
        lock(&self.blocked).clear();
    }
}

/// One node's view of the network: knows its own address, for partitions.
pub struct MemNet {
    me: String,
    hub: Arc<Hub>,
}

impl RaftNet for MemNet {
    fn call(
        &self,
        addr: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let (hub, from, to) = (self.hub.clone(), self.me.clone(), addr.to_string());
        Box::pin(async move {
            if hub.is_blocked(&from, &to) {
                return Err(format!("{from} -> {to}: partitioned"));
            }
            let group = lock(&hub.groups).get(&to).cloned();
            let Some(group) = group else {
                return Err(format!("{to}: connection refused"));
            };
            // Served on its own task, as a real server would: the caller giving up
            // does not cancel the handler.
            let served = tokio::spawn(async move { group.handle_bytes(&request).await });
            let reply = match tokio::time::timeout(timeout, served).await {
                Err(_) => return Err(format!("{to}: timed out")),
                Ok(Err(e)) => return Err(format!("{to}: handler failed: {e}")),
                Ok(Ok(reply)) => reply,
            };
            // A partition that began meanwhile loses the reply.
            if hub.is_blocked(&to, &from) {
                return Err(format!("{to} -> {from}: partitioned"));
            }
            Ok(reply)
        })
    }
}

pub struct Node {
    pub addr: String,
    pub dir: TempDir,
    pub group: Option<CondGroup>,
}

pub struct Cluster {
    pub hub: Arc<Hub>,
    pub nodes: Vec<Node>,
    pub config: GroupConfig,
    started: tokio::time::Instant,
}

pub fn test_config() -> GroupConfig {
    let mut config = GroupConfig::new("test.cond");
    // Small, so tests build snapshots, purge logs and install snapshots on joiners.
    config.snapshot_every_n_logs = 20;
    config.logs_to_keep = 5;
    config
}

impl Cluster {
    /// `n` replicas, opened but not initialized.
    pub async fn new(n: usize) -> Cluster {
        Self::with_config(n, test_config()).await
    }

    pub async fn with_config(n: usize, config: GroupConfig) -> Cluster {
        let mut cluster = Cluster {
            hub: Arc::new(Hub::default()),
            nodes: Vec::new(),
            config,
            started: tokio::time::Instant::now(),
        };
        for i in 0..n {
            cluster.nodes.push(Node {
                addr: format!("node-{i}:7000"),
                dir: tempfile::tempdir().expect("tempdir"),
                group: None,
            });
            cluster.open(i).await;
        }
        cluster
    }

    /// Milliseconds since the cluster started: the tests' clock.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn addrs(&self, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|i| self.nodes[*i].addr.clone()).collect()
    }

    pub fn group(&self, i: usize) -> &CondGroup {
        self.nodes[i].group.as_ref().expect("node is up")
    }

    pub fn up(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].group.is_some())
            .collect()
    }

    pub async fn open(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let net = Arc::new(MemNet {
            me: node.addr.clone(),
            hub: self.hub.clone(),
        });
        let group = CondGroup::open(self.config.clone(), node.dir.path(), node.addr.clone(), net)
            .await
            .expect("open group");
        lock(&self.hub.groups).insert(node.addr.clone(), group.clone());
        node.group = Some(group);
    }

    /// Stops a replica: its address stops answering, its data stays.
    pub async fn stop(&mut self, i: usize) {
        lock(&self.hub.groups).remove(&self.nodes[i].addr);
        if let Some(group) = self.nodes[i].group.take() {
            group.shutdown().await;
        }
    }

    /// Stops a replica and replaces its data directory with an empty one.
    pub async fn wipe(&mut self, i: usize) {
        self.stop(i).await;
        self.nodes[i].dir = tempfile::tempdir().expect("tempdir");
    }

    pub async fn statuses(&self) -> Vec<GroupStatus> {
        let mut out = Vec::new();
        for i in self.up() {
            out.push(self.group(i).status().await);
        }
        out
    }

    /// One reconcile round on every running replica, `desired` = the running ones
    /// (what SWIM would report).
    pub async fn reconcile_all(&self) -> Vec<Result<Reconciled, CondError>> {
        let desired = self.addrs(&self.up());
        let mut out = Vec::new();
        for i in self.up() {
            out.push(self.group(i).reconcile(&desired, self.now_ms()).await);
        }
        out
    }

    /// Waits until `check` holds, reconciling every round; panics with the statuses
    /// after [`WAIT`].
    pub async fn wait_for(&self, what: &str, mut check: impl FnMut(&[GroupStatus]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.reconcile_all().await;
            let statuses = self.statuses().await;
            if check(&statuses) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}: {statuses:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until one running replica leads, every running replica agrees on it, and
    /// the voters are exactly the running replicas (stable, not joint).
    pub async fn converge(&self) -> usize {
        let up = self.up();
        let want: HashSet<u64> = up.iter().map(|i| self.group(*i).node_id()).collect();
        self.wait_for("one leader, voters = running replicas", |st| {
            let leader = st[0].leader.as_ref().map(|l| l.0);
            leader.is_some()
                && st
                    .iter()
                    .all(|s| s.leader.as_ref().map(|l| l.0) == leader && !s.joint)
                && st.iter().any(|s| s.role == Role::Leader)
                && st.iter().all(|s| {
                    s.voters.iter().map(|v| v.0).collect::<HashSet<_>>() == want
                        && s.learners.is_empty()
                })
        })
        .await;
        self.leader_index().await.expect("a leader")
    }

    /// The index of the running replica that believes it leads, if exactly one does.
    pub async fn leader_index(&self) -> Option<usize> {
        let mut leaders = Vec::new();
        for i in self.up() {
            if self.group(i).status().await.role == Role::Leader {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Waits until a replica among `among` leads and the others in `among` follow it.
    pub async fn wait_leader_among(&self, among: &[usize]) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for i in among {
                let st = self.group(*i).status().await;
                if st.role == Role::Leader {
                    return *i;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no leader among {among:?}: {:#?}", self.statuses().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits `op` at replica `via`, following `NotLeader` hints through the harness
    /// (as the node's forwarding would), a bounded number of times.
    pub async fn submit(
        &self,
        via: usize,
        op: CondOp,
        now_ms: u64,
    ) -> Result<CondOutcome, CondError> {
        let mut at = via;
        let mut result = self
            .group(at)
            .submit(op.clone(), now_ms, SUBMIT_TIMEOUT)
            .await;
        for _ in 0..20 {
            match &result {
                Err(CondError::NotLeader { leader }) => {
                    let next = leader.as_ref().and_then(|(_, addr)| {
                        self.up().into_iter().find(|i| self.nodes[*i].addr == *addr)
                    });
                    match next {
                        Some(next) if next != at => at = next,
                        // No leader known yet (election): wait a little and retry.
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                    result = self
                        .group(at)
                        .submit(op.clone(), now_ms, SUBMIT_TIMEOUT)
                        .await;
                }
                _ => return result,
            }
        }
        result
    }
}

/// Runs `f` under a bound, failing the test rather than hanging it.
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT * 2, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish in time"),
    }
}
