//! The crate's error type.
//!
//! Owns: [`CondError`], the one error callers see, and the mapping from openraft's
//! errors into it. Serializable, so a forwarded submit can carry it back.
//!
//! Does not own: openraft's internal errors on the Raft RPC path (`net` maps those).

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Why an operation did not produce a [`crate::CondOutcome`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CondError {
    /// This replica is not the leader; `leader` is who is, when known (id, address).
    /// Nothing was proposed: forwarding to the leader is always safe.
    #[error("not the leader; leader: {leader:?}")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// No answer in time: no quorum, or an election in progress. The operation may
    /// still apply later (it is indeterminate, as any timed-out write): a retry of a
    /// create sees `Conflict` with its own value if the first attempt applied.
    #[error("no result within {timeout_ms} ms; the operation may still apply")]
    Timeout { timeout_ms: u64 },
    /// The group has no membership yet (see `CondGroup::reconcile`).
    #[error("the group is not initialized")]
    NotInitialized,
    /// An input over a bound; nothing was proposed.
    #[error("{what} is {len} bytes, over the bound of {max}")]
    TooLarge { what: String, len: u64, max: u64 },
    /// The data file could not be read or written.
    #[error("storage: {0}")]
    Storage(String),
    /// A membership change was refused or failed; the next reconcile retries.
    #[error("membership: {0}")]
    Membership(String),
    /// A peer could not be reached or answered nonsense.
    #[error("network: {0}")]
    Network(String),
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The group stopped (shut down, or a storage failure made openraft stop it).
    #[error("the group stopped: {0}")]
    Fatal(String),
}

impl CondError {
    pub(crate) fn too_large(what: &str, len: usize, max: usize) -> Self {
        CondError::TooLarge {
            what: what.to_string(),
            len: len as u64,
            max: max as u64,
        }
    }

    pub(crate) fn from_fatal(e: openraft::error::Fatal<NodeId>) -> Self {
        match e {
            openraft::error::Fatal::StorageError(e) => CondError::Storage(e.to_string()),
            other => CondError::Fatal(other.to_string()),
        }
    }

    /// Maps the error of a client write (also a membership change).
    pub(crate) fn from_write(
        e: openraft::error::RaftError<
            NodeId,
            openraft::error::ClientWriteError<NodeId, openraft::BasicNode>,
        >,
    ) -> Self {
        use openraft::error::{ClientWriteError, RaftError};
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => CondError::NotLeader {
                leader: leader_of(f.leader_id, f.leader_node),
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                CondError::Membership(e.to_string())
            }
            RaftError::Fatal(e) => CondError::from_fatal(e),
        }
    }
}

pub(crate) fn leader_of(
    id: Option<NodeId>,
    node: Option<openraft::BasicNode>,
) -> Option<(NodeId, String)> {
    match (id, node) {
        (Some(id), Some(node)) => Some((id, node.addr)),
        _ => None,
    }
}
