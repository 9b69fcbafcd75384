//! Membership: bootstrapping a group and keeping its voters equal to the live nodes
//! that host the service. The rules and why they are safe are in the crate doc
//! ("Membership").
//!
//! Owns: [`CondGroup::reconcile`] (initialization with bootstrap promises; on the
//! leader, one membership step per call), answering `Hello`, and the bookkeeping both
//! need (how long each member has been absent, the promise this replica holds).
//!
//! Does not own: who is alive (the caller's SWIM view, passed in as `desired`), or
//! the membership protocol itself (openraft's joint consensus).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};

use crate::error::CondError;
use crate::group::CondGroup;
use crate::net;
use crate::plan::{next_change, Change, View};
use crate::types::{NodeId, MAX_ADDR_BYTES, MAX_MEMBERS};
use crate::wire::HelloReply;

/// What a [`CondGroup::reconcile`] call did (at most one membership step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Leader; the membership already matches.
    Idle,
    /// An initialized follower or learner: only the leader changes membership.
    NotLeader,
    /// Another reconcile of this group is still running.
    Busy,
    /// Not initialized, and not initializing now (the reason).
    Waiting(String),
    /// This replica initialized the group with these voters.
    Initialized {
        voters: Vec<(NodeId, String)>,
    },
    AddedLearner {
        id: NodeId,
        addr: String,
    },
    Promoted {
        id: NodeId,
    },
    /// A member was removed: its address answers with another id (`replaced`) or it
    /// was absent from `desired` longer than `remove_after_ms`.
    Removed {
        id: NodeId,
        addr: String,
        replaced: bool,
    },
    /// A joint configuration left by an interrupted change was completed.
    FinishedJoint,
}

/// Per-replica bookkeeping for reconcile and `Hello`.
#[derive(Default)]
pub(crate) struct ReconcileState {
    /// Member id → the `now_ms` of the first reconcile that missed its address.
    absent_since: Mutex<HashMap<NodeId, u64>>,
    /// The bootstrap promise this replica holds, if any.
    promise: Mutex<Option<Promise>>,
    /// One reconcile at a time: calls come every second and may take longer.
    running: tokio::sync::Mutex<()>,
}

struct LeaderMetrics {
    /// The new voter set of a joint configuration left behind, if any.
    joint_last: Option<BTreeSet<NodeId>>,
    /// Member → highest log index known replicated to it.
    matched: BTreeMap<NodeId, u64>,
    last_log_index: Option<u64>,
}

struct Promise {
    candidate: NodeId,
    until: tokio::time::Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CondGroup {
    /// Reconciles the group's membership with `desired`, the addresses of the live
    /// nodes hosting this group (from SWIM), this node's own included. Call it about
    /// every second on every replica; `now_ms` is the caller's clock (only durations
    /// between calls matter). See the crate doc, "Membership".
    pub async fn reconcile(
        &self,
        desired: &[String],
        now_ms: u64,
    ) -> Result<Reconciled, CondError> {
        let Ok(_running) = self.inner.reconcile.running.try_lock() else {
            return Ok(Reconciled::Busy);
        };
        let desired: BTreeSet<&str> = desired
            .iter()
            .map(String::as_str)
            .filter(|a| !a.is_empty() && a.len() <= MAX_ADDR_BYTES)
            .take(MAX_MEMBERS)
            .collect();
        if self.membership_is_empty() {
            return self.bootstrap(&desired).await;
        }
        self.track_absence(&desired, now_ms);
        let Some(leader) = self.leader_metrics() else {
            return Ok(Reconciled::NotLeader);
        };
        if let Some(voters) = leader.joint_last {
            let finish = ChangeMembers::ReplaceAllVoters(voters);
            return self.change(finish, Reconciled::FinishedJoint).await;
        }
        let (voters, nodes) = self.members();
        let others: Vec<String> = desired
            .iter()
            .filter(|a| **a != self.addr())
            .map(|a| a.to_string())
            .collect();
        let answered: BTreeMap<String, NodeId> = self
            .hello_all(&others, None)
            .await
            .into_iter()
            .filter_map(|(addr, reply)| Some((addr, reply.ok()?.node_id)))
            .collect();
        let view = View {
            me: self.node_id(),
            desired: &desired,
            voters: &voters.into_iter().collect(),
            nodes: &nodes.into_iter().map(|(id, n)| (id, n.addr)).collect(),
            answered: &answered,
            matched: &leader.matched,
            last_log_index: leader.last_log_index,
            learner_lag_max: self.config().learner_lag_max,
            absent_too_long: &self.absent_too_long(now_ms),
        };
        match next_change(&view) {
            None => Ok(Reconciled::Idle),
            Some(Change::AddLearner { id, addr }) => self.add_learner(id, &addr).await,
            Some(Change::Promote { id }) => {
                let ids = BTreeSet::from([id]);
                self.change(ChangeMembers::AddVoterIds(ids), Reconciled::Promoted { id })
                    .await
            }
            Some(Change::Remove {
                id,
                addr,
                voter,
                replaced,
            }) => self.remove(id, &addr, voter, replaced).await,
        }
    }

    /// What the leader needs from openraft's metrics; `None` if this replica does not
    /// lead.
    fn leader_metrics(&self) -> Option<LeaderMetrics> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        if m.state != ServerState::Leader || m.current_leader != Some(self.node_id()) {
            return None;
        }
        let joint = m.membership_config.membership().get_joint_config();
        let joint_last = (joint.len() > 1).then(|| joint.last().cloned().unwrap_or_default());
        let matched = m
            .replication
            .iter()
            .flatten()
            .filter_map(|(id, log_id)| Some((*id, log_id.as_ref()?.index)))
            .collect();
        Some(LeaderMetrics {
            joint_last,
            matched,
            last_log_index: m.last_log_index,
        })
    }

    /// Initializes the group if this replica is the designated bootstrapper (see the
    /// crate doc, "Initialization"), else says why it waits.
    async fn bootstrap(&self, desired: &BTreeSet<&str>) -> Result<Reconciled, CondError> {
        let me = self.addr().to_string();
        let waiting = |why: String| Ok(Reconciled::Waiting(why));
        if !desired.contains(me.as_str()) {
            return waiting("own address is not in the desired set".into());
        }
        let expect = self.config().bootstrap_expect;
        if desired.len() < expect {
            return waiting(format!(
                "sees {} of the {expect} nodes expected before the first bootstrap (bootstrap_expect)",
                desired.len()
            ));
        }
        if self
            .inner
            .raft
            .is_initialized()
            .await
            .map_err(CondError::from_fatal)?
        {
            return waiting("has a vote or a log; waiting for the leader".into());
        }
        let others: Vec<String> = desired
            .iter()
            .filter(|a| **a != me)
            .map(|a| a.to_string())
            .collect();
        let replies = self.hello_all(&others, None).await;
        let mut answered = vec![me.clone()];
        for (addr, reply) in &replies {
            match reply {
                Ok(r) if r.initialized => {
                    return waiting(format!("{addr} belongs to a group; waiting to be added"));
                }
                Ok(_) => answered.push(addr.clone()),
                Err(_) => {}
            }
        }
        if answered.len() * 2 <= desired.len() {
            return waiting(format!(
                "only {} of {} desired nodes answered",
                answered.len(),
                desired.len()
            ));
        }
        let smallest = answered.iter().min().cloned().unwrap_or_default();
        if smallest != me {
            return waiting(format!(
                "{smallest} has the smallest address and initializes"
            ));
        }
        if !self.grant_promise(self.node_id(), false) {
            return waiting("promised to another bootstrap candidate".into());
        }
        let asked: Vec<String> = answered.iter().filter(|a| **a != me).cloned().collect();
        let promises = self.hello_all(&asked, Some(self.node_id())).await;
        let mut members = BTreeMap::from([(self.node_id(), BasicNode { addr: me.clone() })]);
        for (addr, reply) in &promises {
            if let Ok(r) = reply {
                if r.promised && !r.initialized {
                    members.insert(r.node_id, BasicNode { addr: addr.clone() });
                }
            }
        }
        if members.len() * 2 <= desired.len() {
            return waiting(format!(
                "only {} of {} desired nodes promised",
                members.len(),
                desired.len()
            ));
        }
        let voters: Vec<(NodeId, String)> = members
            .iter()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        match tokio::time::timeout(self.change_timeout(), self.inner.raft.initialize(members)).await
        {
            Err(_) => Err(CondError::Timeout {
                timeout_ms: self.change_timeout().as_millis() as u64,
            }),
            Ok(Err(e)) => Err(CondError::Membership(e.to_string())),
            Ok(Ok(())) => {
                tracing::info!(group = %self.config().group, ?voters, "initialized the group");
                Ok(Reconciled::Initialized { voters })
            }
        }
    }

    /// Answers a peer's `Hello`; with `bootstrap`, grants or refuses a promise.
    pub(crate) async fn answer_hello(
        &self,
        _from_addr: &str,
        bootstrap: Option<NodeId>,
    ) -> HelloReply {
        // A stopped replica claims to be initialized: nobody bootstraps around it.
        let initialized = self.inner.raft.is_initialized().await.unwrap_or(true);
        let promised = match bootstrap {
            Some(candidate) => self.grant_promise(candidate, initialized),
            None => false,
        };
        HelloReply {
            node_id: self.node_id(),
            initialized,
            leader: self.leader(),
            promised,
        }
    }

    /// A replica promises one bootstrap candidate at a time, for
    /// `bootstrap_promise_ms` (renewed when the same candidate asks again), and never
    /// once it belongs to a group.
    fn grant_promise(&self, candidate: NodeId, initialized: bool) -> bool {
        if initialized {
            return false;
        }
        let now = tokio::time::Instant::now();
        let mut promise = lock(&self.inner.reconcile.promise);
        if let Some(p) = promise.as_ref() {
            if p.until > now && p.candidate != candidate {
                return false;
            }
        }
        *promise = Some(Promise {
            candidate,
            until: now + Duration::from_millis(self.config().bootstrap_promise_ms),
        });
        true
    }

    /// Says `Hello` to every address concurrently.
    async fn hello_all(
        &self,
        addrs: &[String],
        bootstrap: Option<NodeId>,
    ) -> BTreeMap<String, Result<HelloReply, String>> {
        let mut tasks = tokio::task::JoinSet::new();
        let timeout = Duration::from_millis(self.config().hello_timeout_ms);
        for addr in addrs {
            let (net, group) = (self.inner.net.clone(), self.config().group.clone());
            let (addr, me) = (addr.clone(), self.addr().to_string());
            tasks.spawn(async move {
                let reply = net::hello(&net, &group, &addr, &me, bootstrap, timeout).await;
                (addr, reply)
            });
        }
        let mut replies = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok((addr, reply)) = joined {
                replies.insert(addr, reply);
            }
        }
        replies
    }

    fn track_absence(&self, desired: &BTreeSet<&str>, now_ms: u64) {
        let (_, nodes) = self.members();
        let mut absent = lock(&self.inner.reconcile.absent_since);
        absent.retain(|id, _| nodes.contains_key(id));
        for (id, node) in &nodes {
            if desired.contains(node.addr.as_str()) {
                absent.remove(id);
            } else {
                absent.entry(*id).or_insert(now_ms);
            }
        }
    }

    fn absent_too_long(&self, now_ms: u64) -> BTreeSet<NodeId> {
        let absent = lock(&self.inner.reconcile.absent_since);
        let limit = self.config().remove_after_ms;
        absent
            .iter()
            .filter(|(_, since)| now_ms.saturating_sub(**since) >= limit)
            .map(|(id, _)| *id)
            .collect()
    }

    fn change_timeout(&self) -> Duration {
        // Two commits (joint, then final) each within a few election rounds.
        Duration::from_millis(self.config().election_timeout_max_ms.saturating_mul(10))
    }

    async fn change(
        &self,
        changes: ChangeMembers<NodeId, BasicNode>,
        done: Reconciled,
    ) -> Result<Reconciled, CondError> {
        let timeout = self.change_timeout();
        // `retain = false`: a voter taken out of the voters leaves the group entirely.
        let change = self.inner.raft.change_membership(changes, false);
        match tokio::time::timeout(timeout, change).await {
            Err(_) => Err(CondError::Timeout {
                timeout_ms: timeout.as_millis() as u64,
            }),
            Ok(Err(e)) => Err(CondError::from_write(e)),
            Ok(Ok(_)) => {
                tracing::info!(group = %self.config().group, ?done, "membership changed");
                Ok(done)
            }
        }
    }

    async fn add_learner(&self, id: NodeId, addr: &str) -> Result<Reconciled, CondError> {
        let timeout = self.change_timeout();
        let node = BasicNode {
            addr: addr.to_string(),
        };
        // Not blocking: promotion waits for catch-up on a later call instead of here.
        let add = self.inner.raft.add_learner(id, node, false);
        match tokio::time::timeout(timeout, add).await {
            Err(_) => Err(CondError::Timeout {
                timeout_ms: timeout.as_millis() as u64,
            }),
            Ok(Err(e)) => Err(CondError::from_write(e)),
            Ok(Ok(_)) => {
                tracing::info!(group = %self.config().group, id, addr, "added a learner");
                Ok(Reconciled::AddedLearner {
                    id,
                    addr: addr.to_string(),
                })
            }
        }
    }

    async fn remove(
        &self,
        id: NodeId,
        addr: &str,
        voter: bool,
        replaced: bool,
    ) -> Result<Reconciled, CondError> {
        let ids = BTreeSet::from([id]);
        let changes = if voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        let done = Reconciled::Removed {
            id,
            addr: addr.to_string(),
            replaced,
        };
        self.change(changes, done).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::net::{BoxFuture, RaftNet};
    use crate::GroupConfig;

    struct NoNet;

    impl RaftNet for NoNet {
        fn call(
            &self,
            _: &str,
            _: Vec<u8>,
            _: Duration,
        ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
            Box::pin(async { Err("no network".to_string()) })
        }
    }

    #[tokio::test]
    async fn a_replica_promises_one_candidate_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let group = CondGroup::open(
            GroupConfig::new("g"),
            dir.path(),
            "a:1".into(),
            Arc::new(NoNet),
        )
        .await
        .expect("open");
        assert!(group.answer_hello("b:1", Some(11)).await.promised);
        assert!(
            !group.answer_hello("c:1", Some(12)).await.promised,
            "held for 11"
        );
        assert!(
            group.answer_hello("b:1", Some(11)).await.promised,
            "renewed for 11"
        );
        let plain = group.answer_hello("c:1", None).await;
        assert!(!plain.promised && !plain.initialized);
        // Alone it is not a majority of three: it waits, and initializes nothing.
        let desired = vec!["a:1".to_string(), "b:1".to_string(), "c:1".to_string()];
        assert!(matches!(
            group.reconcile(&desired, 0).await,
            Ok(Reconciled::Waiting(_))
        ));
        group.shutdown().await;
    }
}
