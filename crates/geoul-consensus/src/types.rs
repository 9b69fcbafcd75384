//! The data model: operations, outcomes, entries, the log command, the bounds, and the
//! openraft type configuration.
//!
//! Owns: what a caller can ask ([`CondOp`]), what it gets back ([`CondOutcome`]), what
//! the group stores ([`Entry`]), what goes into the Raft log ([`Command`]) and every
//! size bound, each a named constant saying why that value.
//!
//! Does not own: applying commands (that is `machine`), encoding messages (`wire`) or
//! storing anything (`storage`).

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::error::CondError;

/// A replica's identity inside one group: a random `u64` drawn when the group's data
/// file is created and kept with the log. A wiped data directory is a new node.
pub type NodeId = u64;

/// Longest key. Keys are ticket ids, range names, lock names: short by nature; the
/// bound keeps one entry's overhead predictable.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest value. Values are small records (a ticket's owner, a range's lease holder);
/// 64 KiB bounds a log entry and so one append message (see [`MAX_ENTRIES_PER_APPEND`]).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Most log entries in one append message. With [`MAX_VALUE_BYTES`] and
/// [`MAX_KEY_BYTES`] this keeps an append under ~4.2 MiB, below [`MAX_MESSAGE_BYTES`].
pub const MAX_ENTRIES_PER_APPEND: u64 = 64;

/// Snapshot chunk size on the wire: 1 MiB keeps each install-snapshot message small
/// next to [`MAX_MESSAGE_BYTES`] and the transport's 16 MiB frame bound.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;

/// Largest request or reply the crate encodes or decodes. Below geoul-proto's 16 MiB
/// frame bound so a message always fits one transport frame.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Largest snapshot a replica accepts (the sum of the chunks). A group is bounded by
/// `max_bytes` (at most [`MAX_GROUP_BYTES`]) plus per-entry overhead; 2× leaves room.
pub const MAX_SNAPSHOT_BYTES: u64 = 2 * MAX_GROUP_BYTES;

/// The largest `GroupConfig::max_bytes` accepted: the state machine is held in memory
/// and serialized whole into each snapshot, so it must stay small.
pub const MAX_GROUP_BYTES: u64 = 512 * 1024 * 1024;

/// Most nodes (voters and learners) in a membership. Conditional groups are 3–7 voters;
/// the bound only protects decoders.
pub const MAX_MEMBERS: usize = 64;

/// Longest node address. Addresses are `host:port` strings.
pub const MAX_ADDR_BYTES: usize = 256;

/// Longest group name. The name is part of the data file name.
pub const MAX_GROUP_NAME_BYTES: usize = 128;

/// Expired entries the state machine drops per applied command. Dropping is lazy so an
/// apply costs O(this) at most, except when a create hits `max_entries`: then every
/// expired entry is dropped before refusing (bounded by `max_entries`).
pub const EXPIRED_DROPS_PER_APPLY: usize = 64;

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: Vec<u8>,
    /// The index of the log entry that wrote this value. It only grows, for the
    /// group's whole life, across leaders: it is the fencing token a holder presents.
    pub version: u64,
    /// Absolute expiry on the group clock (the largest `now_ms` any command carried);
    /// the entry is absent once `expires_at_ms <= clock`.
    pub expires_at_ms: Option<u64>,
}

/// A conditional operation. Every replica applies it in log order, so its outcome is
/// the same everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CondOp {
    /// Writes `value` if `key` is absent (or expired); else `Conflict` with the current.
    CreateIfAbsent {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    /// Writes (or with `value: None` deletes) `key` if its version is `expected`
    /// (`None`: it must be absent); else `Conflict` with the current entry.
    CompareAndSet {
        key: Vec<u8>,
        expected: Option<u64>,
        value: Option<Vec<u8>>,
        ttl_ms: Option<u64>,
    },
    /// Returns the entry and deletes it, atomically: whoever takes it first gets it,
    /// every later `Take` gets `Taken(None)`.
    Take { key: Vec<u8> },
    /// A linearizable read. It goes through the log (so it also advances the group
    /// clock); it never changes an entry.
    Get { key: Vec<u8> },
}

impl CondOp {
    pub fn key(&self) -> &[u8] {
        match self {
            CondOp::CreateIfAbsent { key, .. }
            | CondOp::CompareAndSet { key, .. }
            | CondOp::Take { key }
            | CondOp::Get { key } => key,
        }
    }

    fn value(&self) -> Option<&[u8]> {
        match self {
            CondOp::CreateIfAbsent { value, .. } => Some(value),
            CondOp::CompareAndSet { value, .. } => value.as_deref(),
            CondOp::Take { .. } | CondOp::Get { .. } => None,
        }
    }

    /// Checks the size bounds; everything that enters the log passed this.
    pub fn validate(&self) -> Result<(), CondError> {
        let key = self.key().len();
        if key > MAX_KEY_BYTES {
            return Err(CondError::too_large("key", key, MAX_KEY_BYTES));
        }
        if let Some(value) = self.value() {
            if value.len() > MAX_VALUE_BYTES {
                return Err(CondError::too_large("value", value.len(), MAX_VALUE_BYTES));
            }
        }
        Ok(())
    }
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CondOutcome {
    /// The write (or delete) happened at log index `version`; `previous` is what it
    /// replaced.
    Done {
        version: u64,
        previous: Option<Entry>,
    },
    /// The condition did not hold; nothing changed.
    Conflict { current: Option<Entry> },
    /// `Take`'s answer: the entry it removed, or `None` if there was none.
    Taken(Option<Entry>),
    /// `Get`'s answer.
    Value(Option<Entry>),
    /// A create was refused: the group holds `max_entries` live entries or
    /// `max_bytes` of keys and values.
    Full,
}

/// The capacity limits, carried in every command so that all replicas decide `Full`
/// identically even if their configs differ (a config change must not fork states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_entries: u64,
    pub max_bytes: u64,
}

/// A log entry's application payload: the operation plus the proposer's inputs that
/// make applying it deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub op: CondOp,
    /// The proposer's clock. The state machine clock is the max of these, so expiry is
    /// decided by the log, never by a replica's own clock.
    pub now_ms: u64,
    pub limits: Limits,
}

openraft::declare_raft_types!(
    /// The openraft type configuration of a conditional group.
    pub TypeConfig:
        D = Command,
        R = CondOutcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type LogEntry = openraft::Entry<TypeConfig>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type Membership = openraft::Membership<NodeId, openraft::BasicNode>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

/// Checks a membership read from the wire or the disk against the bounds.
pub(crate) fn membership_ok(membership: &Membership) -> bool {
    membership.get_joint_config().len() <= 2
        && membership.nodes().count() <= MAX_MEMBERS
        && membership
            .get_joint_config()
            .iter()
            .all(|c| c.len() <= MAX_MEMBERS)
        && membership
            .nodes()
            .all(|(_, n)| n.addr.len() <= MAX_ADDR_BYTES)
}

/// Checks a log entry read from the wire or the disk against the bounds.
pub(crate) fn log_entry_ok(entry: &LogEntry) -> bool {
    match &entry.payload {
        openraft::EntryPayload::Blank => true,
        openraft::EntryPayload::Normal(cmd) => cmd.op.validate().is_ok(),
        openraft::EntryPayload::Membership(m) => membership_ok(m),
    }
}
