//! openraft's state machine (storage v2): the in-memory [`Machine`] plus persisted
//! snapshots.
//!
//! Owns: applying committed entries in log order, openraft's bookkeeping (last
//! applied log id, last membership), building, persisting, installing and serving
//! snapshots, and rebuilding the state from the last snapshot when the group opens
//! (openraft then re-applies the log after it, up to the persisted committed index).
//!
//! Does not own: the semantics of commands (`machine`), the log (`log`).
//!
//! Why in memory with persisted snapshots rather than a persisted map: the state is
//! small and bounded (`max_entries`, `max_bytes`), every change already sits in the
//! durable log, and a snapshot every `snapshot_every_n_logs` entries bounds the replay
//! at start. A snapshot is persisted before openraft may purge the log it covers.

use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};

use super::db::Db;
use super::log::{blocking, io_error};
use crate::machine::Machine;
use crate::types::{
    membership_ok, CondOutcome, LogEntry, LogId, NodeId, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig, MAX_SNAPSHOT_BYTES,
};

/// What the state machine holds beyond the [`Machine`]: openraft's bookkeeping.
#[derive(Default)]
pub(crate) struct SmState {
    pub machine: Machine,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Distinguishes snapshots built at the same log id.
    snapshot_seq: u64,
}

/// The state machine handed to openraft, and (cloned) its snapshot builder.
#[derive(Clone)]
pub(crate) struct StateMachineStore {
    db: Arc<Db>,
    node_id: NodeId,
    state: Arc<Mutex<SmState>>,
}

/// Locks the state; a panic while holding it cannot leave the map half-written (every
/// mutation is a single call), so a poisoned lock is still consistent.
pub(crate) fn lock(state: &Mutex<SmState>) -> MutexGuard<'_, SmState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn snapshot_error(e: String) -> StorageError {
    io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)
}

/// Decodes a snapshot's meta and checks it.
fn decode_meta(meta: &[u8]) -> Result<SnapshotMeta, String> {
    let meta: SnapshotMeta =
        postcard::from_bytes(meta).map_err(|e| format!("decoding snapshot meta: {e}"))?;
    if !membership_ok(meta.last_membership.membership()) || meta.snapshot_id.len() > 256 {
        return Err("snapshot meta over the bounds".into());
    }
    Ok(meta)
}

impl StateMachineStore {
    /// Loads the last persisted snapshot, if any, as the starting state.
    pub async fn open(db: Arc<Db>, node_id: NodeId) -> Result<Self, String> {
        let stored = blocking(&db, |db| db.load_snapshot()).await?;
        let mut state = SmState::default();
        if let Some((meta, data)) = stored {
            let meta = decode_meta(&meta)?;
            state.machine = Machine::decode(&data)?;
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership;
        }
        Ok(StateMachineStore {
            db,
            node_id,
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// The shared state, for local (non-linearizable) reads.
    pub fn state(&self) -> Arc<Mutex<SmState>> {
        self.state.clone()
    }

    async fn persist(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<(), StorageError> {
        let meta_bytes = postcard::to_stdvec(meta).map_err(|e| snapshot_error(e.to_string()))?;
        blocking(&self.db, move |db| db.save_snapshot(&meta_bytes, &data))
            .await
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Copy under the lock, encode and write outside it: applies go on meanwhile.
        let (machine, last_applied, membership, seq) = {
            let mut st = lock(&self.state);
            st.snapshot_seq += 1;
            (
                st.machine.clone(),
                st.last_applied,
                st.membership.clone(),
                st.snapshot_seq,
            )
        };
        let data = machine.encode().map_err(snapshot_error)?;
        let index = last_applied.map_or(0, |l| l.index);
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id: format!("{:x}-{index}-{seq}", self.node_id),
        };
        self.persist(&meta, data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let st = lock(&self.state);
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CondOutcome>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut st = lock(&self.state);
        let mut outcomes = Vec::new();
        for entry in entries {
            debug_assert!(st.last_applied < Some(entry.log_id), "applies move forward");
            st.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Normal(cmd) => st.machine.apply(entry.log_id.index, &cmd),
                EntryPayload::Membership(m) => {
                    st.membership = StoredMembership::new(Some(entry.log_id), m);
                    // Never seen by a caller: membership changes ignore the answer.
                    CondOutcome::Value(None)
                }
                EntryPayload::Blank => CondOutcome::Value(None),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        if data.len() as u64 > MAX_SNAPSHOT_BYTES {
            return Err(snapshot_error(format!(
                "snapshot of {} bytes over the bound",
                data.len()
            )));
        }
        let machine = Machine::decode(&data).map_err(snapshot_error)?;
        // Persist first: once the state is replaced, openraft may purge the log.
        self.persist(meta, data).await?;
        let mut st = lock(&self.state);
        st.machine = machine;
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some((meta, data)) = blocking(&self.db, |db| db.load_snapshot())
            .await
            .map_err(snapshot_error)?
        else {
            return Ok(None);
        };
        // The data is checked by whoever installs it; serving it needs only the meta.
        let meta = decode_meta(&meta).map_err(snapshot_error)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
