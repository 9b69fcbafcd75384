//! [`DiskStore`]: one redb file holding every `Disk` table of a node.
//!
//! Owns: the file's life cycle (atomic creation, integrity-checked open, format
//! record), the mapping of tables onto engine tables (`t:<name>`), batches as single
//! engine transactions, and reading tables back.
//!
//! Does not own: when a commit is durable and the flusher thread (`commit`), what
//! records mean, the node's data directory and its lock (the node passes
//! `<data_dir>/tables`), nor deciding to wipe a corrupt store.
//!
//! Every durable commit uses redb's two-phase commit: the new tree is written and
//! fsynced before the header flip is written and fsynced. The primary commit slot
//! then always names a fully written tree, so a checksum failure there on open is
//! reported as [`StorageError::Corrupt`] instead of being rolled back to the
//! previous commit (which is what the one-fsync commit does, and which would silently
//! drop the last acknowledged batch).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError, TableHandle};

use crate::commit::{Flusher, Inner};
use crate::error::{engine_error, io_error, StorageError};
use crate::options::{StorageOptions, SyncPolicy};
use crate::record::{validate_batch, validate_table_name, Record, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::stats::StorageStats;

/// Conventional name of the store's directory inside a node's data directory.
pub const TABLES_DIR_NAME: &str = "tables";

/// Name of the data file inside the store's directory.
pub const DATA_FILE_NAME: &str = "geoul.redb";

/// A new data file is built under this name and renamed into place once its format
/// record is durable, so a crash during creation never leaves a half-made
/// `DATA_FILE_NAME` that a later open could mistake for an empty store.
const CREATING_FILE_NAME: &str = "geoul.redb.creating";

/// Version of this crate's layout inside the engine file (table naming, meta table).
/// Bump it on any incompatible change; an older build then refuses the file.
pub const FORMAT_VERSION: u32 = 1;

/// Prefix of user tables among the engine's tables; everything else is internal.
const TABLE_PREFIX: &str = "t:";

/// Internal table holding the format record.
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Key of the format record in [`META_TABLE`]; its value is `FORMAT_VERSION`, u32 LE.
const FORMAT_KEY: &str = "format";

/// Engine table type of every user table: opaque bytes to opaque bytes.
type Bytes<'name> = TableDefinition<'name, &'static [u8], &'static [u8]>;

/// The durable backing of a node's `Disk` tables. `Send + Sync`; share it with an
/// `Arc`. Writers take turns (the engine has one writer at a time); readers (`load`,
/// `tables`) run beside them, each on a consistent snapshot.
///
/// Dropping the store stops the periodic flusher and makes every committed batch
/// durable (errors are logged, as a drop cannot return them; call
/// [`DiskStore::flush`] first to see them).
pub struct DiskStore {
    inner: Arc<Inner>,
    /// Present under `SyncPolicy::Periodic`.
    flusher: Option<Flusher>,
}

impl DiskStore {
    /// Opens the store in `dir` (normally `<data_dir>/`[`TABLES_DIR_NAME`]), creating
    /// the directory and an empty store if missing.
    ///
    /// Every open verifies the checksum of every page of the committed trees (a
    /// sequential read of the file: 0.2 s for a million 116-byte records), so a damaged or truncated file is reported as
    /// [`StorageError::Corrupt`] naming the file, never trusted and never a panic. A
    /// store that was not closed cleanly is recovered to its last durable commit.
    pub fn open(dir: &Path, options: StorageOptions) -> Result<Self, StorageError> {
        options.validate()?;
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let file = dir.join(DATA_FILE_NAME);
        if !file.try_exists().map_err(|e| io_error(&file, e))? {
            create_file(dir, &file, &options)?;
        }
        let mut db = builder(&options)
            .open(&file)
            .map_err(|e| engine_error(&file, None, e))?;
        check_format(&db, &file)?;
        if options.compact_on_open {
            compact(&mut db, &file)?;
        }
        tracing::debug!(file = %file.display(), "storage opened");

        let inner = Arc::new(Inner::new(db, file, options.sync));
        let flusher = match options.sync {
            SyncPolicy::EveryBatch => None,
            SyncPolicy::Periodic(period) => Some(Flusher::start(Arc::clone(&inner), period)?),
        };
        Ok(Self { inner, flusher })
    }

    /// Applies `batch` atomically: after any crash either every record of it is on
    /// disk or none is. Records apply in order, so a later record for the same key
    /// wins. Durable when it returns iff the policy is [`SyncPolicy::EveryBatch`].
    ///
    /// The whole batch is checked against the bounds first; a rejected batch changes
    /// nothing. An empty batch is a no-op.
    pub fn write_batch(&self, batch: &[Record<'_>]) -> Result<(), StorageError> {
        validate_batch(batch)?;
        if batch.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let _writer = inner.lock_writer();
        let tx = inner.begin_write()?;
        let mut bytes = 0u64;
        // Batches usually touch one table; each run of same-table records opens it once.
        for run in batch.chunk_by(|a, b| a.table == b.table) {
            let table_name = run[0].table;
            let engine_name = engine_table_name(table_name);
            let mut table = tx
                .open_table(Bytes::new(&engine_name))
                .map_err(|e| inner.error(Some(table_name), e))?;
            for record in run {
                let result = match record.value {
                    Some(value) => table.insert(record.key, value).map(drop),
                    None => table.remove(record.key).map(drop),
                };
                result.map_err(|e| inner.error(Some(table_name), e))?;
                bytes += record.payload_len() as u64;
            }
        }
        inner.commit(tx, batch.len() as u64, bytes)
    }

    /// Makes every committed batch durable now (a no-op when all already are, as
    /// always under `EveryBatch`).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.sync_now()
    }

    /// Streams every live record of `table` to `visit`, in key order, and returns how
    /// many there were. Memory stays bounded by the engine's page cache whatever the
    /// table's size. Reads one consistent snapshot; writes may go on meanwhile.
    ///
    /// A table that was never written (or was dropped) has no records. A record over
    /// the bounds, which this store can never have written, is reported as
    /// [`StorageError::Corrupt`]. An error from `visit` stops the scan and is returned
    /// as is; return [`StorageError::Corrupt`] for a record that does not decode.
    pub fn load(
        &self,
        table: &str,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        validate_table_name(table)?;
        let inner = &self.inner;
        let err = |e: redb::Error| inner.error(Some(table), e);
        let tx = inner.db.begin_read().map_err(|e| err(e.into()))?;
        let engine_name = engine_table_name(table);
        let handle = match tx.open_table(Bytes::new(&engine_name)) {
            Ok(handle) => handle,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(err(e.into())),
        };
        let mut count = 0u64;
        for entry in handle.iter().map_err(|e| err(e.into()))? {
            let (key, value) = entry.map_err(|e| err(e.into()))?;
            let (key, value) = (key.value(), value.value());
            if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
                return Err(inner.corrupt(
                    Some(table),
                    format!(
                        "record with a {}-byte key and a {}-byte value is over the bounds",
                        key.len(),
                        value.len()
                    ),
                ));
            }
            visit(key, value)?;
            count += 1;
        }
        Ok(count)
    }

    /// Names of the tables written to (by a put or a delete) and not dropped since,
    /// sorted.
    pub fn tables(&self) -> Result<Vec<String>, StorageError> {
        let inner = &self.inner;
        let tx = inner.db.begin_read().map_err(|e| inner.error(None, e))?;
        let mut names = Vec::new();
        for handle in tx.list_tables().map_err(|e| inner.error(None, e))? {
            let Some(name) = handle.name().strip_prefix(TABLE_PREFIX) else {
                continue;
            };
            if validate_table_name(name).is_err() {
                return Err(inner.corrupt(
                    None,
                    format!("engine table {:?} has an invalid name", handle.name()),
                ));
            }
            names.push(name.to_string());
        }
        names.sort();
        Ok(names)
    }

    /// Deletes `table` and all its records, atomically and with the store's policy
    /// (durable on return under `EveryBatch`). Dropping a missing table is a no-op.
    pub fn drop_table(&self, table: &str) -> Result<(), StorageError> {
        validate_table_name(table)?;
        let inner = &self.inner;
        let _writer = inner.lock_writer();
        let tx = inner.begin_write()?;
        let engine_name = engine_table_name(table);
        tx.delete_table(Bytes::new(&engine_name))
            .map_err(|e| inner.error(Some(table), e))?;
        inner.commit(tx, 0, 0)
    }

    /// A snapshot of the store's counters and the size of its file.
    pub fn stats(&self) -> StorageStats {
        let bytes_on_disk = fs::metadata(&self.inner.file).ok().map(|m| m.len());
        self.inner.counters.snapshot(bytes_on_disk)
    }

    /// Path of the data file.
    pub fn file(&self) -> &Path {
        &self.inner.file
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.take() {
            flusher.stop();
        }
        if let Err(err) = self.inner.sync_now() {
            tracing::error!(%err, "final flush of the storage failed; the last period of writes may be lost");
        }
    }
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("file", &self.inner.file)
            .field("sync", &self.inner.sync)
            .finish_non_exhaustive()
    }
}

/// The engine's name for a user table.
fn engine_table_name(table: &str) -> String {
    format!("{TABLE_PREFIX}{table}")
}

fn builder(options: &StorageOptions) -> redb::Builder {
    let mut builder = redb::Database::builder();
    builder
        .set_cache_size(options.cache_bytes)
        .set_check_integrity_on_open(true);
    builder
}

/// Builds an empty store with its format record under a temporary name, then renames
/// it into place and fsyncs the directory.
fn create_file(dir: &Path, file: &Path, options: &StorageOptions) -> Result<(), StorageError> {
    let creating = dir.join(CREATING_FILE_NAME);
    match fs::remove_file(&creating) {
        Ok(()) => tracing::info!(file = %creating.display(), "removed a store left half-created"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&creating, e)),
    }
    let db = builder(options)
        .create(&creating)
        .map_err(|e| engine_error(&creating, None, e))?;
    let mut tx = db
        .begin_write()
        .map_err(|e| engine_error(&creating, None, e))?;
    tx.set_two_phase_commit(true);
    {
        let mut meta = tx
            .open_table(META_TABLE)
            .map_err(|e| engine_error(&creating, None, e))?;
        meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_le_bytes()[..])
            .map_err(|e| engine_error(&creating, None, e))?;
    }
    tx.commit().map_err(|e| engine_error(&creating, None, e))?;
    db.close().map_err(|e| engine_error(&creating, None, e))?;
    fs::File::open(&creating)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(&creating, e))?;
    fs::rename(&creating, file).map_err(|e| io_error(file, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))?;
    tracing::info!(file = %file.display(), "created an empty store");
    Ok(())
}

/// Rewrites the file without its free pages (needs the only handle on it).
fn compact(db: &mut redb::Database, file: &Path) -> Result<(), StorageError> {
    let before = fs::metadata(file).map_err(|e| io_error(file, e))?.len();
    let started = Instant::now();
    db.compact().map_err(|e| engine_error(file, None, e))?;
    let after = fs::metadata(file).map_err(|e| io_error(file, e))?.len();
    tracing::info!(file = %file.display(), before, after, took = ?started.elapsed(), "storage compacted");
    Ok(())
}

/// Refuses a file without this crate's format record, or with another version.
fn check_format(db: &redb::Database, file: &Path) -> Result<(), StorageError> {
    let corrupt = |detail: &str| StorageError::Corrupt {
        file: file.to_path_buf(),
        table: None,
        detail: detail.to_string(),
    };
    let tx = db.begin_read().map_err(|e| engine_error(file, None, e))?;
    let meta = match tx.open_table(META_TABLE) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(corrupt("no format record: not a geoul store"))
        }
        Err(e) => return Err(engine_error(file, None, e)),
    };
    let Some(record) = meta
        .get(FORMAT_KEY)
        .map_err(|e| engine_error(file, None, e))?
    else {
        return Err(corrupt("no format record: not a geoul store"));
    };
    let bytes: [u8; 4] = record
        .value()
        .try_into()
        .map_err(|_| corrupt("format record is not 4 bytes"))?;
    let found = u32::from_le_bytes(bytes);
    if found != FORMAT_VERSION {
        return Err(StorageError::UnsupportedFormat {
            path: file.to_path_buf(),
            found: found.to_string(),
            supported: FORMAT_VERSION.to_string(),
        });
    }
    Ok(())
}
