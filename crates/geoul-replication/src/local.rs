//! This node's copy of every table it knows: declarations, the in-memory tables,
//! their durable backing, and applying results from other replicas.
//!
//! Owns: [`LocalStore`]. Does not own: deciding who the replicas are (`placement`)
//! or talking to them (`write`, `read`).
//!
//! "Seen means applied" (DESIGN.md §13): [`LocalStore::apply_batch`] returns only
//! after every accepted entry is in the table and, for `Disk` tables, written to
//! the durable store under its sync policy; only then does the caller ack.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use geoul_storage::{DiskStore, Record, StorageError};
use geoul_store::{
    Applied, Change, Durability, EncodedDoc, Entry, Hlc, Key, Origin, SpecError, Table, TableSpec,
    Timestamp, Version,
};
use serde::{Deserialize, Serialize};

use crate::sync::SlotStates;

/// Default grace period before deletes and expiry markers are collected: longer
/// than any partition or outage the cluster is meant to ride out; a node away
/// longer is wiped and fully re-synced.
pub const TOMBSTONE_GRACE_DEFAULT: Duration = Duration::from_secs(6 * 3600);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such table on this node.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// A declaration that is invalid or conflicts with an existing one.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The durable store failed; the table's data on this node is not trustworthy.
    #[error("table {table}: durable storage: {source}")]
    Storage {
        /// Table.
        table: String,
        /// Cause.
        source: StorageError,
    },
    /// A record on disk that does not decode: the node refuses to serve the table.
    #[error("table {table}: corrupt record on disk: {detail}")]
    CorruptRecord {
        /// Table.
        table: String,
        /// What was wrong.
        detail: String,
    },
    /// A `Disk` table on a node started without a data dir.
    #[error("table {0}: durability is Disk but this node has no durable store")]
    NoDiskStore(String),
}

/// One declared table.
pub struct TableHandle {
    service: String,
    spec: TableSpec,
    table: Mutex<Table>,
    sync: SlotStates,
    changes: tokio::sync::broadcast::Sender<Arc<Change>>,
}

/// Changes buffered per table for subscribers that have not read them yet;
/// one that falls further behind is told it lagged (and must resync).
pub const CHANGE_FEED_CAPACITY: usize = 4096;

impl TableHandle {
    /// The service that declared it.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Its declaration.
    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    /// The sync state of each slot on this node.
    pub fn sync(&self) -> &SlotStates {
        &self.sync
    }

    /// Every change this node applies to the table from now on (its own
    /// writes, replication, sync and repair; not expiry sweeps), in apply
    /// order, each a newer version or a later expiry of its key than the
    /// one before. Bounded: a receiver that falls [`CHANGE_FEED_CAPACITY`]
    /// changes behind gets `Lagged`.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Locks the table. Held for microseconds (one apply or one read).
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        // Table methods never panic midway through a change; recover the guard.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The on-disk form of an entry (the key is the record key).
#[derive(Serialize, Deserialize)]
struct DiskEntry {
    ts: u64,
    origin: u64,
    expires_at_ms: Option<u64>,
    value: Option<Vec<u8>>,
}

fn encode_disk(entry: &Entry) -> Vec<u8> {
    let disk = DiskEntry {
        ts: entry.version.ts.raw(),
        origin: entry.version.origin.raw(),
        expires_at_ms: entry.expires_at_ms,
        value: entry.value.as_ref().map(|v| v.as_bytes().to_vec()),
    };
    // Serializing plain integers and byte vectors into a Vec cannot fail.
    postcard::to_stdvec(&disk).unwrap_or_default()
}

fn decode_disk(key: &[u8], bytes: &[u8]) -> Result<Entry, String> {
    let disk: DiskEntry = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
    let key = Key::new(key).map_err(|e| e.to_string())?;
    let value = match disk.value {
        Some(v) => Some(EncodedDoc::from_bytes(&v).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Entry {
        key,
        version: Version {
            ts: Timestamp::from_raw(disk.ts),
            origin: Origin::from_raw(disk.origin),
        },
        expires_at_ms: disk.expires_at_ms,
        value,
    })
}

/// Every table this node holds, plus the clock that versions their writes.
pub struct LocalStore {
    tables: RwLock<BTreeMap<String, Arc<TableHandle>>>,
    hlc: Arc<Hlc>,
    skew_margin: Duration,
    disk: Option<Arc<DiskStore>>,
    tombstone_grace: Duration,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.tables().iter().map(|t| t.spec.name.clone()).collect();
        f.debug_struct("LocalStore")
            .field("tables", &names)
            .field("durable", &self.disk.is_some())
            .finish()
    }
}

impl LocalStore {
    /// A store versioning with `hlc`, expiring with `skew_margin`, persisting
    /// `Disk` tables in `disk`.
    pub fn new(hlc: Arc<Hlc>, skew_margin: Duration, disk: Option<Arc<DiskStore>>) -> Self {
        Self {
            tables: RwLock::new(BTreeMap::new()),
            hlc,
            skew_margin,
            disk,
            tombstone_grace: TOMBSTONE_GRACE_DEFAULT,
        }
    }

    /// Sets the tombstone grace period (see [`TOMBSTONE_GRACE_DEFAULT`]).
    pub fn with_tombstone_grace(mut self, grace: Duration) -> Self {
        self.tombstone_grace = grace;
        self
    }

    /// The tombstone grace period.
    pub fn tombstone_grace(&self) -> Duration {
        self.tombstone_grace
    }

    /// Deletes and markers older than this (Unix ms) are collected now.
    pub fn gc_horizon_ms(&self) -> u64 {
        let grace = u64::try_from(self.tombstone_grace.as_millis()).unwrap_or(u64::MAX);
        self.hlc.wall_ms().saturating_sub(grace)
    }

    /// Entries that may be collected within the skew margin: left out of digest
    /// comparisons so replicas collecting a moment apart do not look different.
    pub fn gc_exclude_before_ms(&self) -> u64 {
        self.gc_horizon_ms().saturating_add(self.skew_margin_ms())
    }

    /// The clock.
    pub fn hlc(&self) -> &Arc<Hlc> {
        &self.hlc
    }

    /// The durable store, if this node has one.
    pub fn disk(&self) -> Option<&Arc<DiskStore>> {
        self.disk.as_ref()
    }

    /// The skew margin used for expiry, in ms.
    pub fn skew_margin_ms(&self) -> u64 {
        u64::try_from(self.skew_margin.as_millis()).unwrap_or(u64::MAX)
    }

    /// Declares a table for `service` and, if it is `Disk`, reloads its durable
    /// copy before returning (a restarted node serves nothing it has not loaded).
    pub fn declare(&self, service: &str, spec: TableSpec) -> Result<u64, StoreError> {
        spec.validate()?;
        if let Some(existing) = self.table(&spec.name) {
            existing.spec.check_compatible(&spec)?;
            return Ok(0);
        }
        let mut table = Table::new(spec.clone(), self.skew_margin);
        let loaded = if spec.options.durability == Durability::Disk {
            let disk = self
                .disk
                .as_ref()
                .ok_or_else(|| StoreError::NoDiskStore(spec.name.clone()))?;
            load_table(disk, &spec.name, &mut table)?
        } else {
            0
        };
        let handle = Arc::new(TableHandle {
            service: service.to_string(),
            spec: spec.clone(),
            table: Mutex::new(table),
            sync: SlotStates::default(),
            changes: tokio::sync::broadcast::channel(CHANGE_FEED_CAPACITY).0,
        });
        self.tables
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name.clone(), handle);
        Ok(loaded)
    }

    /// A declared table.
    pub fn table(&self, name: &str) -> Option<Arc<TableHandle>> {
        self.tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every declared table.
    pub fn tables(&self) -> Vec<Arc<TableHandle>> {
        self.tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Applies entries (from this node's write path or from another replica).
    /// Returns, per item, `Ok` or why it was refused. Refused: unknown table, or
    /// a version from a clock too far ahead of ours. Accepted entries are in the
    /// table and, for `Disk` tables, durable per the sync policy on return.
    pub fn apply_batch(&self, items: Vec<(String, Entry)>) -> Vec<Result<Applied, String>> {
        self.apply_changes(
            items
                .into_iter()
                .map(|(t, e)| (t, Change::Put(e)))
                .collect(),
        )
    }

    /// Applies entries and touches, as [`LocalStore::apply_batch`]; a touch is
    /// also refused by a replica that does not hold its version (sync brings
    /// the entry) or on which the entry already expired.
    pub fn apply_changes(&self, items: Vec<(String, Change)>) -> Vec<Result<Applied, String>> {
        let mut results = Vec::with_capacity(items.len());
        let mut to_persist: Vec<(String, Entry)> = Vec::new();
        // (result index, table, change) for subscribers, sent once persisted.
        let mut to_emit: Vec<(usize, Arc<TableHandle>, Change)> = Vec::new();
        let horizon = self.gc_horizon_ms();
        for (table_name, change) in items {
            let Some(handle) = self.table(&table_name) else {
                results.push(Err(format!("unknown table {table_name:?}")));
                continue;
            };
            // Cloned only while someone watches the table.
            let emit = (handle.changes.receiver_count() > 0)
                .then(|| (results.len(), handle.clone(), change.clone()));
            if let Err(e) = self.hlc.observe(change.version().ts) {
                results.push(Err(format!("refused: {e}")));
                continue;
            }
            let durable = handle.spec.options.durability == Durability::Disk;
            match change {
                Change::Put(entry) => {
                    if geoul_store::collectable(&entry, horizon) {
                        // GC would drop it at once; storing it would only make a
                        // replica that already collected it look different.
                        results.push(Ok(Applied::Stale));
                        continue;
                    }
                    let applied = handle.lock().apply(entry.clone());
                    if durable && applied.changed() {
                        to_persist.push((table_name, entry));
                    }
                    if applied.changed() {
                        to_emit.extend(emit);
                    }
                    results.push(Ok(applied));
                }
                Change::Touch(touch) => {
                    let mut table = handle.lock();
                    match table.touch(&touch) {
                        Ok(applied) => {
                            if durable && applied.changed() {
                                if let Some(entry) = table.get_entry(&touch.key) {
                                    to_persist.push((table_name, entry));
                                }
                            }
                            if applied.changed() {
                                to_emit.extend(emit);
                            }
                            results.push(Ok(applied));
                        }
                        Err(refused) => results.push(Err(refused.to_string())),
                    }
                }
            }
        }
        if let Err(e) = self.persist(&to_persist) {
            // Not durable means not applied as far as acks go: refuse the
            // persisted items so the sender retries (apply is idempotent).
            tracing::error!(error = %e, "durable write failed; refusing the batch");
            for r in &mut results {
                if r.as_ref().is_ok_and(|a| a.changed()) {
                    *r = Err(format!("durable storage failed: {e}"));
                }
            }
        }
        for (i, handle, change) in to_emit {
            if results.get(i).is_some_and(Result::is_ok) {
                // No receiver left is fine: nobody watches any more.
                let _ = handle.changes.send(Arc::new(change));
            }
        }
        results
    }

    /// Removes `keys` of `table` from the durable store (a dropped slot, a
    /// collected delete). A no-op for `Memory` tables.
    pub fn forget(&self, table: &TableHandle, keys: &[Key]) -> Result<(), StoreError> {
        if table.spec.options.durability != Durability::Disk || keys.is_empty() {
            return Ok(());
        }
        let disk = self
            .disk
            .as_ref()
            .ok_or_else(|| StoreError::NoDiskStore(table.spec.name.clone()))?;
        for chunk in keys.chunks(4096) {
            let records: Vec<Record<'_>> = chunk
                .iter()
                .map(|k| Record {
                    table: &table.spec.name,
                    key: k.as_bytes(),
                    value: None,
                })
                .collect();
            run_blocking(|| disk.write_batch(&records)).map_err(|source| StoreError::Storage {
                table: table.spec.name.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn persist(&self, items: &[(String, Entry)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let disk = self
            .disk
            .as_ref()
            .ok_or_else(|| StoreError::NoDiskStore(items[0].0.clone()))?;
        let encoded: Vec<Vec<u8>> = items.iter().map(|(_, e)| encode_disk(e)).collect();
        let records: Vec<Record<'_>> = items
            .iter()
            .zip(&encoded)
            .map(|((table, entry), bytes)| Record {
                table,
                key: entry.key.as_bytes(),
                value: Some(bytes),
            })
            .collect();
        run_blocking(|| disk.write_batch(&records)).map_err(|source| StoreError::Storage {
            table: items[0].0.clone(),
            source,
        })
    }
}

/// Runs disk work that may block for milliseconds (fsync). On a multi-threaded
/// runtime the worker hands its other tasks to the rest of the pool meanwhile; on
/// a current-thread runtime (the simulator) it runs inline, which keeps the
/// simulation deterministic.
fn run_blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn load_table(disk: &DiskStore, name: &str, table: &mut Table) -> Result<u64, StoreError> {
    let mut corrupt: Option<String> = None;
    let result = disk.load(name, |key, value| {
        match decode_disk(key, value) {
            Ok(entry) => {
                table.apply(entry);
            }
            Err(detail) => {
                corrupt.get_or_insert(detail);
            }
        }
        Ok(())
    });
    if let Some(detail) = corrupt {
        return Err(StoreError::CorruptRecord {
            table: name.to_string(),
            detail,
        });
    }
    result.map_err(|source| StoreError::Storage {
        table: name.to_string(),
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use geoul_storage::{StorageOptions, SyncPolicy};
    use geoul_store::{Ack, Document, ManualClock, Replication, TableOptions, Value};

    fn spec(durability: Durability) -> TableSpec {
        TableSpec {
            name: "kv".into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability,
                default_ttl: None,
                max_entries: None,
                indexes: Vec::new(),
            },
        }
    }

    /// A write of `key` at `ms` by `n1`, holding `{v: v}` (also used by
    /// the batcher's tests).
    pub(crate) fn entry(key: &str, ms: u64, v: i64) -> Entry {
        Entry {
            key: Key::new(key.as_bytes()).expect("key"),
            version: Version {
                ts: Timestamp::from_parts(ms, 0),
                origin: Origin::new("n1", 1),
            },
            expires_at_ms: None,
            value: Some(
                Document::single("v", Value::Int(v))
                    .and_then(|d| d.encode())
                    .expect("doc"),
            ),
        }
    }

    fn store(clock_ms: u64, disk: Option<Arc<DiskStore>>) -> LocalStore {
        let hlc = Arc::new(Hlc::new(
            ManualClock::new(clock_ms),
            Duration::from_millis(500),
            Timestamp::ZERO,
        ));
        LocalStore::new(hlc, Duration::from_millis(100), disk)
    }

    #[test]
    fn disk_tables_reload_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || {
            Arc::new(
                DiskStore::open(
                    dir.path(),
                    StorageOptions::with_sync(SyncPolicy::EveryBatch),
                )
                .expect("open"),
            )
        };
        {
            let s = store(10_000, Some(open()));
            s.declare("kv", spec(Durability::Disk)).expect("declare");
            let results = s.apply_batch(vec![
                ("kv".into(), entry("a", 9_000, 1)),
                ("kv".into(), entry("b", 9_000, 2)),
            ]);
            assert!(results.iter().all(Result::is_ok));
        }
        let s = store(10_000, Some(open()));
        assert_eq!(s.declare("kv", spec(Durability::Disk)).expect("declare"), 2);
        let t = s.table("kv").expect("table");
        assert!(t.lock().get(b"a", 10_000).is_some());
    }

    #[test]
    fn refuses_unknown_tables_and_clocks_too_far_ahead() {
        let s = store(10_000, None);
        s.declare("kv", spec(Durability::Memory)).expect("declare");
        let results = s.apply_batch(vec![
            ("nope".into(), entry("a", 9_000, 1)),
            ("kv".into(), entry("a", 70_000, 1)),
            ("kv".into(), entry("a", 10_100, 1)),
        ]);
        assert!(results[0]
            .as_ref()
            .is_err_and(|e| e.contains("unknown table")));
        assert!(results[1].as_ref().is_err_and(|e| e.contains("ahead")));
        assert!(results[2].is_ok());
        assert!(matches!(
            s.declare("kv", spec(Durability::Disk)),
            Err(StoreError::Spec(_))
        ));
        assert!(matches!(
            store(1, None).declare("kv", spec(Durability::Disk)),
            Err(StoreError::NoDiskStore(_))
        ));
    }
}
