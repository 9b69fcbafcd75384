//! The group's data file: one redb database at `<data_dir>/<group>.redb`.
//!
//! Owns: the file, its tables and their encodings, the node id, and which writes are
//! durable before they return. Every call blocks (redb is synchronous); the async
//! wrappers in `log` and `sm` run them on tokio's blocking pool.
//!
//! Does not own: what the records mean to Raft (`log`, `sm`), or deciding what to do
//! with a damaged file (opening fails; the operator or node wipes the directory, and
//! the wiped node rejoins as a new node — see the crate doc).
//!
//! Tables:
//! - `meta` (`&str` → bytes): `node_id` (u64 LE), `vote`, `committed`, `purged`
//!   (postcard of openraft's `Vote` / `Option<LogId>` / `LogId`);
//! - `log` (`u64` index → postcard of the log entry);
//! - `snapshot` (`&str` → bytes): `meta` (postcard `SnapshotMeta`) and `data` (the
//!   state machine's encoding), always written together.
//!
//! Durability: vote, appends, truncations, purges and snapshots are durable (two-phase
//! commit) when the call returns: Raft's safety needs the vote and the log on disk
//! before a reply acknowledges them. `committed` is written non-durably (it becomes
//! durable with the next durable commit): a stale value only makes a restart re-apply
//! fewer entries before the leader's commit index arrives.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::CondError;
use crate::types::NodeId;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const NODE_ID_KEY: &str = "node_id";
pub(crate) const VOTE_KEY: &str = "vote";
pub(crate) const COMMITTED_KEY: &str = "committed";
pub(crate) const PURGED_KEY: &str = "purged";

/// redb page cache. The working set is the log tail and small metadata; the state
/// machine lives in memory, so a small cache suffices.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A stored snapshot: `(meta, data)` bytes.
pub(crate) type StoredSnapshot = (Vec<u8>, Vec<u8>);

pub(crate) struct Db {
    // Fields drop in order: the database (and its file lock) goes before `released`
    // says so.
    db: Database,
    file: PathBuf,
    released: Released,
}

/// Set once the database is closed: an `Arc<Db>` whose count reached zero may still
/// be closing (the last holder runs the drop), and reopening before it finishes fails.
struct Released(Arc<AtomicBool>);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Creates the tables, so readers never meet a missing one.
fn db_tables(db: &Database) -> Result<(), String> {
    let mut tx = db.begin_write().map_err(err)?;
    tx.set_two_phase_commit(true);
    tx.open_table(META).map_err(err)?;
    tx.open_table(LOG).map_err(err)?;
    tx.open_table(SNAPSHOT).map_err(err)?;
    tx.commit().map_err(err)
}

impl Db {
    /// Opens (or creates) `<dir>/<group>.redb`, verifying the whole file.
    pub fn open(dir: &Path, group: &str) -> Result<Db, CondError> {
        let file = dir.join(format!("{group}.redb"));
        let storage = |e: String| CondError::Storage(format!("{}: {e}", file.display()));
        std::fs::create_dir_all(dir).map_err(|e| storage(e.to_string()))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .create(&file)
            .map_err(|e| storage(e.to_string()))?;
        db_tables(&db).map_err(storage)?;
        let released = Released(Arc::new(AtomicBool::new(false)));
        Ok(Db { db, file, released })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A flag that turns true once this database is closed.
    pub fn released(&self) -> Arc<AtomicBool> {
        self.released.0.clone()
    }

    /// A write transaction committed durably (two-phase) or not at all durably.
    fn write<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut tx = self.db.begin_write().map_err(err)?;
        if durable {
            tx.set_two_phase_commit(true);
        } else {
            tx.set_durability(Durability::None).map_err(err)?;
        }
        let out = f(&tx)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// The persisted node id, drawn at random (never 0) on the first call for a file.
    pub fn node_id(&self) -> Result<NodeId, String> {
        if let Some(raw) = self.meta_raw(NODE_ID_KEY)? {
            let bytes: [u8; 8] = raw
                .as_slice()
                .try_into()
                .map_err(|_| format!("node id record has {} bytes, not 8", raw.len()))?;
            return Ok(u64::from_le_bytes(bytes));
        }
        let id = loop {
            let id = getrandom::u64().map_err(|e| format!("drawing a node id: {e}"))?;
            if id != 0 {
                break id;
            }
        };
        self.write(true, |tx| {
            let mut meta = tx.open_table(META).map_err(err)?;
            meta.insert(NODE_ID_KEY, &id.to_le_bytes()[..])
                .map_err(err)?;
            Ok(())
        })?;
        Ok(id)
    }

    fn meta_raw(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(META).map_err(err)?;
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    pub fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.meta_raw(key)? {
            None => Ok(None),
            Some(raw) => postcard::from_bytes(&raw)
                .map(Some)
                .map_err(|e| format!("decoding meta record {key:?}: {e}")),
        }
    }

    pub fn write_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durable: bool,
    ) -> Result<(), String> {
        let bytes = postcard::to_stdvec(value).map_err(err)?;
        self.write(durable, |tx| {
            let mut meta = tx.open_table(META).map_err(err)?;
            meta.insert(key, bytes.as_slice()).map_err(err)?;
            Ok(())
        })
    }

    /// Writes encoded log entries `(index, bytes)`, durably.
    pub fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), String> {
        self.write(true, |tx| {
            let mut log = tx.open_table(LOG).map_err(err)?;
            for (index, bytes) in entries {
                log.insert(*index, bytes.as_slice()).map_err(err)?;
            }
            Ok(())
        })
    }

    /// Deletes the log from `index` on, durably.
    pub fn truncate(&self, index: u64) -> Result<(), String> {
        self.write(true, |tx| {
            let mut log = tx.open_table(LOG).map_err(err)?;
            log.retain_in(index.., |_, _| false).map_err(err)?;
            Ok(())
        })
    }

    /// Deletes the log up to `index` inclusive and records `purged` in the same
    /// transaction, durably: the file never shows a gap without its reason.
    pub fn purge<T: Serialize>(&self, index: u64, purged: &T) -> Result<(), String> {
        let bytes = postcard::to_stdvec(purged).map_err(err)?;
        self.write(true, |tx| {
            let mut log = tx.open_table(LOG).map_err(err)?;
            log.retain_in(..=index, |_, _| false).map_err(err)?;
            let mut meta = tx.open_table(META).map_err(err)?;
            meta.insert(PURGED_KEY, bytes.as_slice()).map_err(err)?;
            Ok(())
        })
    }

    /// Encoded log entries with index in `[start, end)`, in order, at most `limit`.
    pub fn read_log(
        &self,
        start: u64,
        end: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, String> {
        if start >= end {
            return Ok(Vec::new());
        }
        let tx = self.db.begin_read().map_err(err)?;
        let log = tx.open_table(LOG).map_err(err)?;
        let mut out = Vec::new();
        for item in log.range(start..end).map_err(err)?.take(limit) {
            let (k, v) = item.map_err(err)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The last encoded log entry, if any.
    pub fn last_log(&self) -> Result<Option<(u64, Vec<u8>)>, String> {
        let tx = self.db.begin_read().map_err(err)?;
        let log = tx.open_table(LOG).map_err(err)?;
        let last = log.last().map_err(err)?;
        Ok(last.map(|(k, v)| (k.value(), v.value().to_vec())))
    }

    /// Replaces the stored snapshot, durably.
    pub fn save_snapshot(&self, meta: &[u8], data: &[u8]) -> Result<(), String> {
        self.write(true, |tx| {
            let mut snap = tx.open_table(SNAPSHOT).map_err(err)?;
            snap.insert("meta", meta).map_err(err)?;
            snap.insert("data", data).map_err(err)?;
            Ok(())
        })
    }

    /// The stored snapshot `(meta, data)`, if any.
    pub fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, String> {
        let tx = self.db.begin_read().map_err(err)?;
        let snap = tx.open_table(SNAPSHOT).map_err(err)?;
        let meta = snap.get("meta").map_err(err)?.map(|v| v.value().to_vec());
        let data = snap.get("data").map_err(err)?.map(|v| v.value().to_vec());
        match (meta, data) {
            (Some(meta), Some(data)) => Ok(Some((meta, data))),
            (None, None) => Ok(None),
            _ => Err("snapshot table holds meta or data without the other".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_kept_and_a_new_file_draws_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Db::open(dir.path(), "g")
            .expect("open")
            .node_id()
            .expect("id");
        let again = Db::open(dir.path(), "g")
            .expect("reopen")
            .node_id()
            .expect("id");
        assert_eq!(first, again);
        let other = tempfile::tempdir().expect("tempdir");
        let fresh = Db::open(other.path(), "g")
            .expect("open")
            .node_id()
            .expect("id");
        assert_ne!(first, fresh);
    }

    #[test]
    fn log_append_truncate_purge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), "g").expect("open");
        let entries: Vec<(u64, Vec<u8>)> = (1..=10).map(|i| (i, vec![i as u8])).collect();
        db.append(&entries).expect("append");
        db.truncate(8).expect("truncate");
        assert_eq!(db.last_log().expect("last").map(|(i, _)| i), Some(7));
        db.purge(3, &3u64).expect("purge");
        let rest = db.read_log(0, 100, 100).expect("read");
        assert_eq!(
            rest.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        assert_eq!(db.read_meta::<u64>(PURGED_KEY).expect("purged"), Some(3));
        assert_eq!(db.read_log(5, 100, 1).expect("limited").len(), 1);
    }
}
