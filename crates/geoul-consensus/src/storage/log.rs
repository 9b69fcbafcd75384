//! openraft's log storage (storage v2) over the group's redb file.
//!
//! Owns: the vote, the log entries, the purge point and the committed pointer, as
//! openraft's `RaftLogStorage` and `RaftLogReader` see them; validating every entry
//! read back from disk.
//!
//! Does not own: the file format (`db`), the state machine or snapshots (`sm`).
//!
//! Every call waits for its IO: openraft requires writes to be serialized and appended
//! entries to be readable when `append` returns, and the vote and log on disk before
//! they are acknowledged; awaiting the blocking write before calling the flush
//! callback gives all three.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageIOError};

use super::db::{Db, COMMITTED_KEY, PURGED_KEY, VOTE_KEY};
use crate::types::{
    log_entry_ok, LogEntry, LogId, StorageError, TypeConfig, Vote, MAX_ENTRIES_PER_APPEND,
};

/// The log store and (cloned) its readers.
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<Db>,
}

pub(crate) fn io_error(subject: ErrorSubject<u64>, verb: ErrorVerb, msg: String) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(msg)).into()
}

/// Runs a blocking storage call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    db: &Arc<Db>,
    f: impl FnOnce(&Db) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || f(&db)).await {
        Ok(result) => result,
        Err(e) => Err(format!("storage task failed: {e}")),
    }
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<LogEntry, String> {
    let entry: LogEntry =
        postcard::from_bytes(bytes).map_err(|e| format!("log entry {index}: {e}"))?;
    if entry.log_id.index != index || !log_entry_ok(&entry) {
        return Err(format!(
            "log entry {index} is inconsistent or over the bounds"
        ));
    }
    Ok(entry)
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }

    async fn read(
        &self,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let raw = blocking(&self.db, move |db| db.read_log(start, end, limit))
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        raw.iter()
            .map(|(index, bytes)| decode_entry(*index, bytes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        // Unlimited: openraft's apply path reads a whole committed range and fails
        // if anything is missing. The range is bounded by what was committed.
        self.read(start, end, usize::MAX).await
    }

    /// Replication reads: at most one append message's worth of entries.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<LogEntry>, StorageError> {
        self.read(start, end, MAX_ENTRIES_PER_APPEND as usize).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = |e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e);
        let purged: Option<LogId> = blocking(&self.db, |db| db.read_meta(PURGED_KEY))
            .await
            .map_err(read)?;
        let last = blocking(&self.db, |db| db.last_log()).await.map_err(read)?;
        let last = match last {
            Some((index, bytes)) => Some(decode_entry(index, &bytes).map_err(read)?.log_id),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        blocking(&self.db, move |db| db.write_meta(VOTE_KEY, &vote, true))
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        blocking(&self.db, |db| db.read_meta(VOTE_KEY))
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        blocking(&self.db, move |db| {
            db.write_meta(COMMITTED_KEY, &committed, false)
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = blocking(&self.db, |db| db.read_meta(COMMITTED_KEY))
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let write = |e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e);
        let encoded = entries
            .into_iter()
            .map(|e| postcard::to_stdvec(&e).map(|b| (e.log_id.index, b)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| write(e.to_string()))?;
        match blocking(&self.db, move |db| db.append(&encoded)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(write(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        blocking(&self.db, move |db| db.truncate(log_id.index))
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        blocking(&self.db, move |db| db.purge(log_id.index, &log_id))
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
