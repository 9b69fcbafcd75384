//! geoul-consensus: conditional operations on a Raft group (DESIGN.md §10).
//!
//! Last-writer-wins cannot say "exactly once" (a ticket redeemed once, a matchmaking
//! ticket in one match). This crate offers the one primitive geoul uses for it: a
//! [`CondGroup`] is one Raft group (openraft 0.9) whose state machine is a small key →
//! [`Entry`] map with conditional commands — [`CondOp::CreateIfAbsent`],
//! [`CondOp::CompareAndSet`], [`CondOp::Take`] (single use) and a linearizable
//! [`CondOp::Get`]. A command is appended to the log by the leader, committed by a
//! majority of voters, and applied by every replica in log order, so its outcome is
//! the same everywhere. An entry's `version` is the log index that wrote it: it only
//! grows, across leaders, and serves as the fencing token.
//!
//! # Map
//!
//! - `types` — operations, outcomes, entries, the log command, bounds, openraft types.
//! - `machine` — the pure state machine (apply, expiry, capacity, snapshot bytes).
//! - `storage` — redb file (`db`), openraft log storage (`log`), state machine and
//!   snapshots (`sm`).
//! - `wire` — [`RaftRequest`] / [`RaftReply`] and their checked decoders.
//! - `net` — [`RaftNet`], the seam the node implements, and openraft's network on it.
//! - `group` — [`CondGroup`]: open, submit, handle, status, shutdown.
//! - `reconcile` — membership: bootstrap and keeping voters = live hosts; `plan` —
//!   the leader's next membership step as a pure function.
//!
//! *Invariant:* every decoder (wire, disk, snapshot) checks sizes and bounds and
//! returns an error on bad input; nothing from the disk or the network is unwrapped.
//! *Invariant:* applying a command depends only on the state and the command (the
//! proposer's clock and capacity limits travel inside it), never on the replica.
//!
//! # What an acknowledgement means
//!
//! `submit` returning an outcome means the command is in the log of a majority of
//! voters, **on disk** there (the vote and every appended entry are fsynced, two-phase,
//! before openraft acknowledges them), and applied on the leader. It survives any
//! minority of crashes. [`CondError::Timeout`] is indeterminate: the command may still
//! commit (callers retry; a retried create sees `Conflict` with its own value).
//! [`CondError::NotLeader`] means nothing was proposed: forward it (see
//! [`CondGroup::submit_or_forward`]).
//!
//! # Expiry
//!
//! Deterministic: the proposer puts its `now_ms` into each command; the state machine
//! keeps `clock = max(clock, now_ms)` and treats an entry with `expires_at_ms <= clock`
//! as absent (and drops a bounded number of them per command). A replica's own clock
//! never matters. A proposer with a fast clock expires entries early for everyone —
//! the node should pass its HLC-clamped wall time.
//!
//! # Membership
//!
//! The node calls [`CondGroup::reconcile`] about every second on every replica with
//! `desired`: the addresses of the live nodes hosting the service (its SWIM view).
//!
//! ## Initialization
//!
//! A replica with no membership first waits until `desired` holds at least
//! `bootstrap_expect` nodes, so a node that sees too few (started while its
//! peers were unreachable) does not form a group of its own. It then says
//! `Hello` to every desired address. If any peer
//! already belongs to a group (has a log or a vote), it waits to be added — this is
//! what a node whose directory was wiped does. Otherwise, only if its own address is
//! the smallest among the replicas that answered, and those are a majority of
//! `desired`, it asks each of them for a **bootstrap promise** and initializes the
//! group with itself and the peers that promised, if they are still a majority.
//! A replica promises one candidate at a time (for `bootstrap_promise_ms`, renewed on
//! each ask), never once it belongs to a group, and a candidate first promises itself.
//! Why this avoids two groups: two initializations need two majorities of the same
//! `desired` set, which share a replica, and that replica holds one promise at a time.
//! After a promise lapses, a second group can only form if the first never reached
//! that shared replica — then the first has no majority and never commits anything;
//! when it meets the second group it is added as a learner and its one divergent
//! entry (the initial membership, at the same log id) is superseded by the newer
//! membership entries it receives. The smallest-address rule only makes the common
//! case settle in one round.
//!
//! *Not covered by the promise rule alone:* nodes that disagree on `desired` during
//! bootstrap (their majorities need not intersect). `bootstrap_expect` covers it
//! when set to a majority of the hosts: two views of at least that size share a
//! node, whose one promise at a time decides. A group where a majority of
//! voters lost their data at once cannot recover by itself (the survivors cannot
//! reach a quorum; Raft cannot tell "lost" from "slow"): an operator must wipe all of
//! it, and then it bootstraps as a new, empty group.
//!
//! ## Changes (on the leader, one step per call)
//!
//! 1. A member whose address now answers `Hello` with a different node id (wiped and
//!    restarted) is removed: the old id holds a seat it can never fill again.
//! 2. A desired node that is not a member is added as a learner (not blocking).
//! 3. A desired learner whose replicated log is within `learner_lag_max` entries of
//!    the leader's is promoted to voter.
//! 4. A member absent from `desired` for `remove_after_ms` is removed (voters first,
//!    never the leader itself, never the last voter).
//!
//! An interrupted change (a joint configuration left behind) is completed first.
//! Every voter change goes through openraft's joint consensus: the joint config needs
//! a majority of the old **and** of the new voters, so there is no moment where two
//! disjoint majorities can decide. One change at a time keeps each step small and
//! lets each commit under the quorum it needs; a change that times out is retried by
//! a later call.
//!
//! A wiped node reuses its address with a new id, so every Raft RPC names its target
//! id and a replica refuses RPCs for another id: otherwise it would answer for its old
//! self, whose vote and log it no longer has, and could help elect two leaders in a
//! term.
//!
//! *Not covered:* a two-voter group cannot remove a dead voter (the change needs both);
//! three or more voters are the useful minimum. A leader that leaves `desired` stays
//! until it loses leadership; a node that is leaving should shut its group down.
//! `remove_after_ms` trades availability against churn: a voter away longer than it
//! (e.g. a long partition) is removed and, when back, rejoins as a learner and catches
//! up. The liveness view (SWIM) only drives changes; safety never depends on it.
//!
//! # Storage
//!
//! One redb file per group, `<data_dir>/<group>.redb` (vote, log, purge point,
//! committed pointer, snapshot, node id); see `storage::db` for durability per record.
//! The state machine lives in memory and is rebuilt at open from the last snapshot
//! plus the log after it. A file that fails redb's integrity check refuses to open;
//! wiping the directory makes the replica a new node that rejoins and copies.
//!
//! # The node's side
//!
//! Implement [`RaftNet::call`] over the cluster transport (the bytes are this crate's
//! [`RaftRequest`] / [`RaftReply`]); on the serving side decode with
//! [`RaftRequest::decode`], find the group by [`RaftRequest::group`], answer with
//! [`CondGroup::handle`] (or use [`CondGroup::handle_bytes`]).

mod config;
mod error;
mod group;
mod machine;
mod net;
mod plan;
mod reconcile;
mod storage;
mod types;
mod wire;

pub use config::GroupConfig;
pub use error::CondError;
pub use group::{CondGroup, GroupStatus, Role};
pub use net::{BoxFuture, RaftNet};
pub use reconcile::Reconciled;
pub use types::{
    CondOp, CondOutcome, Entry, NodeId, MAX_ADDR_BYTES, MAX_ENTRIES_PER_APPEND, MAX_GROUP_BYTES,
    MAX_GROUP_NAME_BYTES, MAX_KEY_BYTES, MAX_MESSAGE_BYTES, MAX_SNAPSHOT_BYTES, MAX_VALUE_BYTES,
    SNAPSHOT_CHUNK_BYTES,
};
pub use wire::{HelloReply, RaftReply, RaftRequest, WireError};
