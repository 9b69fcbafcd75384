//! [`CondGroup`]: one Raft group serving conditional operations.
//!
//! Owns: opening a group from its data directory, submitting operations (and
//! forwarding them to the leader on request), serving peers' requests, status, and
//! shutdown.
//!
//! Does not own: membership decisions (`reconcile`), storage (`storage`), message
//! encoding (`wire`), or the transport (the node, through [`RaftNet`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::{BasicNode, Raft, ServerState};

use crate::config::GroupConfig;
use crate::error::{leader_of, CondError};
use crate::net::{self, NetFactory, RaftNet};
use crate::reconcile::ReconcileState;
use crate::storage::db::Db;
use crate::storage::log::LogStore;
use crate::storage::sm::{self, SmState, StateMachineStore};
use crate::types::{Command, CondOp, CondOutcome, Entry, NodeId, TypeConfig, MAX_ADDR_BYTES};
use crate::wire::{RaftReply, RaftRequest, RemoteFailure, ReplyBody, RequestBody};

/// Longest a forwarded submit may wait, whatever the forwarder asked: a bound on the
/// work a peer can park here.
const MAX_FORWARDED_TIMEOUT: Duration = Duration::from_secs(60);

/// Hops a [`CondGroup::submit_or_forward`] follows: during an election the hint can be
/// stale once; more than that means no stable leader, and the caller should retry.
const MAX_FORWARD_HOPS: usize = 3;

/// How long [`CondGroup::shutdown`] waits for openraft's tasks to release the data
/// file, so that the directory can be reopened at once.
const SHUTDOWN_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// A replica's role, as [`GroupStatus`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Stopped,
}

/// A snapshot of a replica's view of its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: String,
    pub node_id: NodeId,
    pub addr: String,
    pub role: Role,
    pub leader: Option<(NodeId, String)>,
    pub term: u64,
    pub voters: Vec<(NodeId, String)>,
    pub learners: Vec<(NodeId, String)>,
    /// A membership change is half done (joint configuration).
    pub joint: bool,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub initialized: bool,
    /// Entries in this replica's state machine (expired ones not yet dropped included).
    pub entries: usize,
    /// This replica's group clock: the largest `now_ms` it applied.
    pub clock_ms: u64,
    /// On a leader: milliseconds since a quorum last acknowledged it. openraft 0.9
    /// does not make a cut-off leader step down, so a large value (over the election
    /// timeout) says this leader is probably deposed: its submits will time out.
    pub quorum_ack_age_ms: Option<u64>,
}

/// One conditional group's replica on this node. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct CondGroup {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: GroupConfig,
    pub node_id: NodeId,
    pub addr: String,
    pub raft: Raft<TypeConfig>,
    pub net: Arc<dyn RaftNet>,
    pub state: Arc<Mutex<SmState>>,
    /// Turns true once openraft's tasks dropped the data file.
    pub released: Arc<AtomicBool>,
    pub reconcile: ReconcileState,
}

impl CondGroup {
    /// Opens the group's replica from `data_dir` (creating `<group>.redb` and a random
    /// node id on the first open), and starts it. A new replica is not initialized:
    /// [`CondGroup::reconcile`] initializes the group or waits to be added.
    pub async fn open(
        config: GroupConfig,
        data_dir: &Path,
        self_addr: String,
        net: Arc<dyn RaftNet>,
    ) -> Result<CondGroup, CondError> {
        config.validate()?;
        if self_addr.is_empty() || self_addr.len() > MAX_ADDR_BYTES {
            return Err(CondError::Config(format!(
                "self_addr must be 1..={MAX_ADDR_BYTES} bytes"
            )));
        }
        let raft_config = config.raft_config()?;
        let dir = data_dir.to_path_buf();
        let group = config.group.clone();
        // Opening verifies the whole file: blocking work, off the reactor.
        let db = tokio::task::spawn_blocking(move || Db::open(&dir, &group))
            .await
            .map_err(|e| CondError::Storage(format!("open task failed: {e}")))??;
        let db = Arc::new(db);
        let node_id = db
            .node_id()
            .map_err(|e| CondError::Storage(format!("{}: {e}", db.file().display())))?;
        let sm = StateMachineStore::open(db.clone(), node_id)
            .await
            .map_err(|e| CondError::Storage(format!("{}: {e}", db.file().display())))?;
        let state = sm.state();
        let factory = NetFactory {
            net: net.clone(),
            group: config.group.clone(),
            self_id: node_id,
        };
        let released = db.released();
        let raft = Raft::new(node_id, raft_config, factory, LogStore::new(db), sm)
            .await
            .map_err(CondError::from_fatal)?;
        tracing::info!(group = %config.group, node_id, addr = %self_addr, "conditional group opened");
        Ok(CondGroup {
            inner: Arc::new(Inner {
                reconcile: ReconcileState::default(),
                config,
                node_id,
                addr: self_addr,
                raft,
                net,
                state,
                released,
            }),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn config(&self) -> &GroupConfig {
        &self.inner.config
    }

    /// Runs `op` through the log on this replica, which must be the leader; `now_ms`
    /// is the caller's clock (it drives expiry, see [`crate::Entry`]). On a follower it
    /// returns [`CondError::NotLeader`] with the leader's address, having proposed
    /// nothing. [`CondError::Timeout`] is indeterminate: the op may still apply.
    pub async fn submit(
        &self,
        op: CondOp,
        now_ms: u64,
        timeout: Duration,
    ) -> Result<CondOutcome, CondError> {
        op.validate()?;
        if self.membership_is_empty() {
            return Err(CondError::NotInitialized);
        }
        let cmd = Command {
            op,
            now_ms,
            limits: self.inner.config.limits(),
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match tokio::time::timeout(timeout, self.inner.raft.client_write(cmd)).await {
            Err(_) => Err(CondError::Timeout { timeout_ms }),
            Ok(Err(e)) => Err(CondError::from_write(e)),
            Ok(Ok(resp)) => Ok(resp.data),
        }
    }

    /// [`CondGroup::submit`], forwarding to the leader through [`RaftNet`] when this
    /// replica is not it (at most a few hops, all within `timeout`).
    pub async fn submit_or_forward(
        &self,
        op: CondOp,
        now_ms: u64,
        timeout: Duration,
    ) -> Result<CondOutcome, CondError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut result = self.submit(op.clone(), now_ms, timeout).await;
        for _ in 0..MAX_FORWARD_HOPS {
            let Err(CondError::NotLeader {
                leader: Some((id, addr)),
            }) = &result
            else {
                return result;
            };
            if *id == self.inner.node_id {
                return result;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let inner = &self.inner;
            result = net::submit_remote(
                &inner.net,
                &inner.config.group,
                addr,
                op.clone(),
                now_ms,
                left,
            )
            .await;
        }
        result
    }

    /// A local read of this replica's state as of `max(group clock, now_ms)`. Not
    /// linearizable (a follower may lag, a deposed leader may not know it): for
    /// diagnostics and tests. Use `submit(Get)` for a linearizable read.
    pub fn local_get(&self, key: &[u8], now_ms: u64) -> Option<Entry> {
        sm::lock(&self.inner.state).machine.get_local(key, now_ms)
    }

    /// Serves a request from a peer: a Raft RPC, a `Hello`, or a forwarded submit.
    pub async fn handle(&self, request: RaftRequest) -> RaftReply {
        let inner = &self.inner;
        if request.group != inner.config.group {
            return RaftReply::refused(format!("no group {:?} here", request.group));
        }
        if let Err(e) = request.validate() {
            return RaftReply::refused(e.to_string());
        }
        let wrong = |target: NodeId| {
            RaftReply::refused(format!(
                "target {target} is not this node ({})",
                inner.node_id
            ))
        };
        let raft = &inner.raft;
        let body = match request.body {
            RequestBody::AppendEntries { target, .. }
            | RequestBody::Vote { target, .. }
            | RequestBody::InstallSnapshot { target, .. }
                if target != inner.node_id =>
            {
                return wrong(target);
            }
            RequestBody::AppendEntries { rpc, .. } => {
                ReplyBody::AppendEntries(raft.append_entries(rpc).await.map_err(stopped))
            }
            RequestBody::Vote { rpc, .. } => ReplyBody::Vote(raft.vote(rpc).await.map_err(stopped)),
            RequestBody::InstallSnapshot { rpc, .. } => ReplyBody::InstallSnapshot(
                raft.install_snapshot(rpc).await.map_err(snapshot_failure),
            ),
            RequestBody::Hello {
                from_addr,
                bootstrap,
            } => ReplyBody::Hello(self.answer_hello(&from_addr, bootstrap).await),
            RequestBody::Submit {
                op,
                now_ms,
                timeout_ms,
            } => {
                let timeout = Duration::from_millis(timeout_ms).min(MAX_FORWARDED_TIMEOUT);
                ReplyBody::Submit(self.submit(op, now_ms, timeout).await)
            }
        };
        RaftReply(body)
    }

    /// [`CondGroup::handle`] on bytes: decodes, serves, encodes. Undecodable input
    /// gets a `Refused` reply, never a panic.
    pub async fn handle_bytes(&self, request: &[u8]) -> Vec<u8> {
        let reply = match RaftRequest::decode(request) {
            Ok(request) => self.handle(request).await,
            Err(e) => RaftReply::refused(e.to_string()),
        };
        match reply.encode() {
            Ok(bytes) => bytes,
            // Only a reply over the message bound gets here; say so in a small one.
            Err(e) => RaftReply::refused(e.to_string())
                .encode()
                .unwrap_or_default(),
        }
    }

    /// This replica's view of the group.
    pub async fn status(&self) -> GroupStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let (entries, clock_ms) = {
            let st = sm::lock(&self.inner.state);
            (st.machine.len(), st.machine.clock_ms())
        };
        let membership = m.membership_config.membership();
        let addr_of = |id: NodeId| {
            membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default()
        };
        let role = match (&m.running_state, m.state) {
            (Err(_), _) => Role::Stopped,
            (_, ServerState::Leader) => Role::Leader,
            (_, ServerState::Follower) => Role::Follower,
            (_, ServerState::Candidate) => Role::Candidate,
            (_, ServerState::Learner) => Role::Learner,
            (_, ServerState::Shutdown) => Role::Stopped,
        };
        GroupStatus {
            group: self.inner.config.group.clone(),
            node_id: self.inner.node_id,
            addr: self.inner.addr.clone(),
            role,
            leader: m.current_leader.map(|id| (id, addr_of(id))),
            term: m.current_term,
            voters: membership.voter_ids().map(|id| (id, addr_of(id))).collect(),
            learners: membership
                .learner_ids()
                .map(|id| (id, addr_of(id)))
                .collect(),
            joint: membership.get_joint_config().len() > 1,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            initialized: m.vote != Default::default() || m.last_log_index.is_some(),
            entries,
            clock_ms,
            quorum_ack_age_ms: m.millis_since_quorum_ack,
        }
    }

    /// Stops the replica (for every handle) and waits until the data file is released,
    /// so the directory can be reopened.
    pub async fn shutdown(self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(group = %self.inner.config.group, "raft shutdown: {e}");
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_RELEASE_WAIT;
        let released = || self.inner.released.load(Ordering::Acquire);
        while !released() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !released() {
            tracing::warn!(group = %self.inner.config.group, "data file still held after shutdown");
        }
    }

    pub(crate) fn membership_is_empty(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .voter_ids()
            .next()
            .is_none()
    }

    /// The leader as `(id, addr)`, from this replica's metrics.
    pub(crate) fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id).cloned();
        leader_of(Some(id), node)
    }

    /// The current membership: voters and every node's address.
    pub(crate) fn members(&self) -> (Vec<NodeId>, BTreeMap<NodeId, BasicNode>) {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().collect();
        let nodes = membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        (voters, nodes)
    }
}

fn stopped(e: RaftError<NodeId>) -> RemoteFailure {
    RemoteFailure::Stopped(e.to_string())
}

fn snapshot_failure(e: RaftError<NodeId, InstallSnapshotError>) -> RemoteFailure {
    match e {
        RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)) => {
            RemoteFailure::SnapshotMismatch {
                expect: m.expect,
                got: m.got,
            }
        }
        RaftError::Fatal(e) => RemoteFailure::Stopped(e.to_string()),
    }
}
