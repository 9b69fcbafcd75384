//! The messages between replicas of a group: [`RaftRequest`] and [`RaftReply`], as
//! postcard bytes.
//!
//! Owns: the message shapes, their encoding, and the checks every decoded message
//! passes (total size, group name, targets, entry and snapshot bounds, no trailing
//! bytes). Decoding arbitrary bytes returns an error, never panics (property-tested).
//!
//! Does not own: transport, authentication or framing (the node's transport carries
//! the bytes), or what a request does (`group`).
//!
//! Every Raft RPC names its **target** node id, and a replica refuses RPCs for another
//! id. Why: a node whose data directory was wiped comes back at the same address with
//! a new id; without the check it would answer votes and appends meant for its old
//! self, whose promises (its vote, its log) it no longer holds — a voter that forgets
//! its vote can elect two leaders in one term.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::SnapshotSegmentId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::group_name_ok;
use crate::error::CondError;
use crate::types::{
    log_entry_ok, membership_ok, CondOp, CondOutcome, NodeId, TypeConfig, MAX_ADDR_BYTES,
    MAX_MESSAGE_BYTES, MAX_SNAPSHOT_BYTES,
};

/// Most entries one decoded append may carry. Senders use `MAX_ENTRIES_PER_APPEND`;
/// the margin tolerates a peer configured differently, the size bound still holds.
const MAX_ENTRIES_PER_MESSAGE: usize = 1024;

/// Why bytes are not a valid message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {len} bytes is over the bound of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

/// A request from one replica (or forwarding node) to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RaftRequest {
    pub(crate) group: String,
    pub(crate) body: RequestBody,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum RequestBody {
    AppendEntries {
        target: NodeId,
        rpc: AppendEntriesRequest<TypeConfig>,
    },
    Vote {
        target: NodeId,
        rpc: VoteRequest<NodeId>,
    },
    InstallSnapshot {
        target: NodeId,
        rpc: InstallSnapshotRequest<TypeConfig>,
    },
    /// Who are you? With `bootstrap`, also: promise to join the group that candidate
    /// would initialize (see the crate doc, "Initialization").
    Hello {
        from_addr: String,
        bootstrap: Option<NodeId>,
    },
    /// A forwarded [`crate::CondGroup::submit`].
    Submit {
        op: CondOp,
        now_ms: u64,
        timeout_ms: u64,
    },
}

/// The answer to a [`RaftRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct RaftReply(pub(crate) ReplyBody);

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ReplyBody {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RemoteFailure>),
    Vote(Result<VoteResponse<NodeId>, RemoteFailure>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RemoteFailure>),
    Hello(HelloReply),
    Submit(Result<CondOutcome, CondError>),
    /// Wrong group, wrong target, or a message that did not decode.
    Refused(String),
}

/// A peer's failure, flattened: openraft's own error types nest (`AnyError` sources),
/// and a decoder of peer input must not recurse without bound.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum RemoteFailure {
    Stopped(String),
    SnapshotMismatch {
        expect: SnapshotSegmentId,
        got: SnapshotSegmentId,
    },
}

/// A replica's answer to `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    pub node_id: NodeId,
    /// Has a log or a vote: it belongs to a group already.
    pub initialized: bool,
    pub leader: Option<(NodeId, String)>,
    /// For a bootstrap hello: the promise was granted.
    pub promised: bool,
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| WireError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Invalid("trailing bytes"));
    }
    Ok(value)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    let bytes = postcard::to_stdvec(value).map_err(|e| WireError::Decode(e.to_string()))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(bytes)
}

impl RaftRequest {
    pub(crate) fn new(group: &str, body: RequestBody) -> Self {
        RaftRequest {
            group: group.to_string(),
            body,
        }
    }

    /// The group the request is for: the node dispatches on it.
    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }

    /// Decodes and checks a request; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<RaftRequest, WireError> {
        let request: RaftRequest = decode(bytes)?;
        request.validate()?;
        Ok(request)
    }

    /// The checks [`RaftRequest::decode`] applies; `handle` repeats them because a
    /// request can also be built by serde directly.
    pub(crate) fn validate(&self) -> Result<(), WireError> {
        if !group_name_ok(&self.group) {
            return Err(WireError::Invalid("bad group name"));
        }
        match &self.body {
            RequestBody::AppendEntries { rpc, .. } => {
                if rpc.entries.len() > MAX_ENTRIES_PER_MESSAGE {
                    return Err(WireError::Invalid("too many entries"));
                }
                if !rpc.entries.iter().all(log_entry_ok) {
                    return Err(WireError::Invalid("entry over the bounds"));
                }
            }
            RequestBody::Vote { .. } => {}
            RequestBody::InstallSnapshot { rpc, .. } => {
                let end = rpc.offset.checked_add(rpc.data.len() as u64);
                if end.is_none_or(|end| end > MAX_SNAPSHOT_BYTES) {
                    return Err(WireError::Invalid("snapshot over the bound"));
                }
                if !membership_ok(rpc.meta.last_membership.membership())
                    || rpc.meta.snapshot_id.len() > 256
                {
                    return Err(WireError::Invalid("snapshot meta over the bounds"));
                }
            }
            RequestBody::Hello { from_addr, .. } => {
                if from_addr.len() > MAX_ADDR_BYTES {
                    return Err(WireError::Invalid("address too long"));
                }
            }
            RequestBody::Submit { op, .. } => {
                if op.validate().is_err() {
                    return Err(WireError::Invalid("operation over the bounds"));
                }
            }
        }
        Ok(())
    }
}

impl RaftReply {
    pub(crate) fn refused(why: impl Into<String>) -> Self {
        RaftReply(ReplyBody::Refused(why.into()))
    }

    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        encode(self)
    }

    /// Decodes a reply; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<RaftReply, WireError> {
        decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_are_checked() {
        let hello = RaftRequest::new(
            "auth.tickets",
            RequestBody::Hello {
                from_addr: "10.0.0.1:7000".into(),
                bootstrap: Some(5),
            },
        );
        let bytes = hello.encode().expect("encode");
        let back = RaftRequest::decode(&bytes).expect("decode");
        assert_eq!(back.group(), "auth.tickets");
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            RaftRequest::decode(&longer).unwrap_err(),
            WireError::Invalid("trailing bytes")
        );
        let bad = RaftRequest::new(
            "../x",
            RequestBody::Hello {
                from_addr: String::new(),
                bootstrap: None,
            },
        );
        let bytes = postcard::to_stdvec(&bad).expect("encode");
        assert!(RaftRequest::decode(&bytes).is_err());
    }

    #[test]
    fn oversized_inputs_are_refused() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            RaftRequest::decode(&big),
            Err(WireError::TooLarge { .. })
        ));
        let submit = RaftRequest::new(
            "g",
            RequestBody::Submit {
                op: CondOp::Get { key: vec![0; 2000] },
                now_ms: 0,
                timeout_ms: 0,
            },
        );
        let bytes = postcard::to_stdvec(&submit).expect("encode");
        assert!(matches!(
            RaftRequest::decode(&bytes),
            Err(WireError::Invalid(_))
        ));
    }

    /// Valid encodings of every request kind, for mutation.
    fn samples() -> Vec<Vec<u8>> {
        use crate::types::{Command, Limits};
        use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
        let vote = Vote::new(3, 7);
        let log_id = LogId::new(CommittedLeaderId::new(3, 7), 12);
        let cmd = Command {
            op: CondOp::CompareAndSet {
                key: b"k".to_vec(),
                expected: Some(4),
                value: Some(b"v".to_vec()),
                ttl_ms: Some(9),
            },
            now_ms: 100,
            limits: Limits {
                max_entries: 10,
                max_bytes: 1000,
            },
        };
        let entries = vec![
            openraft::Entry {
                log_id,
                payload: EntryPayload::Normal(cmd),
            },
            openraft::Entry {
                log_id,
                payload: EntryPayload::Blank,
            },
        ];
        let bodies = vec![
            RequestBody::AppendEntries {
                target: 1,
                rpc: AppendEntriesRequest {
                    vote,
                    prev_log_id: Some(log_id),
                    entries,
                    leader_commit: None,
                },
            },
            RequestBody::Vote {
                target: 1,
                rpc: VoteRequest::new(vote, Some(log_id)),
            },
            RequestBody::InstallSnapshot {
                target: 1,
                rpc: InstallSnapshotRequest {
                    vote,
                    meta: Default::default(),
                    offset: 0,
                    data: vec![1, 2, 3],
                    done: true,
                },
            },
            RequestBody::Submit {
                op: CondOp::Take { key: b"t".to_vec() },
                now_ms: 5,
                timeout_ms: 10,
            },
        ];
        bodies
            .into_iter()
            .map(|b| RaftRequest::new("g", b).encode().expect("encode"))
            .collect()
    }

    #[test]
    fn samples_decode() {
        for s in samples() {
            RaftRequest::decode(&s).expect("valid sample");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn mutated_requests_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..4096,
        ) {
            let mut bytes = samples()[which].clone();
            for (at, byte) in flips {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            let _ = RaftRequest::decode(&bytes);
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = RaftRequest::decode(&bytes);
        }
    }
}
