//! Commits: the writer lock, durable versus non-durable commits, and the periodic
//! flusher thread.
//!
//! Owns: [`Inner`], the state a [`DiskStore`](crate::DiskStore) shares with its
//! flusher; the rule deciding which commit is durable; exact durable-batch
//! accounting; the flusher's loop.
//!
//! Does not own: what a batch contains (`store`), nor the counters' layout (`stats`).
//!
//! Group commit without starvation. The engine has one writer at a time and its lock
//! is not fair, so a flusher that simply waits for it can be starved by a steady
//! stream of batches (measured: 3 syncs in a second of writes at a 10 ms period;
//! with this scheme, 76).
//! Instead, a sync that is due raises `sync_due`; the next batch to commit sees it and
//! commits durably itself, so under load the period is kept by the writers, and the
//! flusher only commits when it can take the lock without waiting (the store is idle).
//!
//! Exact accounting. Every commit and its counting happen under `write_lock`, so batch
//! sequence numbers follow commit order, and a durable commit at number `n` proves
//! every batch up to `n` durable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{engine_error, io_error, StorageError};
use crate::options::SyncPolicy;
use crate::stats::Counters;

/// How often the flusher retries while a writer holds the lock and has not yet made
/// the due sync itself. Short against any period, long against a commit's CPU work.
pub const SYNC_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// State shared by a store and its flusher thread.
pub(crate) struct Inner {
    pub(crate) db: redb::Database,
    pub(crate) file: PathBuf,
    pub(crate) sync: SyncPolicy,
    pub(crate) counters: Counters,
    /// Held from the start of a write transaction until it is committed and counted.
    write_lock: Mutex<()>,
    /// Under `Periodic`: the next commit must be durable.
    sync_due: AtomicBool,
}

impl Inner {
    pub(crate) fn new(db: redb::Database, file: PathBuf, sync: SyncPolicy) -> Self {
        Self {
            db,
            file,
            sync,
            counters: Counters::default(),
            write_lock: Mutex::new(()),
            sync_due: AtomicBool::new(false),
        }
    }

    /// Takes the writer lock. It guards no data of its own (the engine keeps its state
    /// consistent by itself), so a panic that poisoned it leaves nothing to repair.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a write transaction; the caller holds the writer lock.
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction, StorageError> {
        self.db.begin_write().map_err(|e| self.error(None, e))
    }

    /// Commits a transaction from [`Inner::begin_write`], durably under `EveryBatch`
    /// or when a periodic sync is due, and counts it. The caller holds the writer lock.
    pub(crate) fn commit(
        &self,
        mut tx: redb::WriteTransaction,
        records: u64,
        bytes: u64,
    ) -> Result<(), StorageError> {
        let durable = match self.sync {
            SyncPolicy::EveryBatch => true,
            SyncPolicy::Periodic(_) => self.sync_due.swap(false, Ordering::AcqRel),
        };
        if durable {
            tx.set_two_phase_commit(true);
        } else {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| self.error(None, e))?;
        }
        let started = Instant::now();
        if let Err(e) = tx.commit() {
            if durable {
                self.counters.sync_failed();
                self.sync_due
                    .store(self.sync != SyncPolicy::EveryBatch, Ordering::Release);
            }
            return Err(self.error(None, e));
        }
        let took = started.elapsed();
        let seq = self.counters.committed(records, bytes);
        if durable {
            self.counters.synced(seq, took);
        }
        Ok(())
    }

    /// Makes every committed batch durable, waiting for the writer lock if needed.
    pub(crate) fn sync_now(&self) -> Result<(), StorageError> {
        if self.counters.committed_seq() <= self.counters.durable_seq() {
            return Ok(());
        }
        // A writer that gets the lock first does the sync for us.
        self.sync_due.store(true, Ordering::Release);
        let _writer = self.lock_writer();
        self.sync_locked()
    }

    /// One flusher tick: make everything durable without queueing behind writers.
    fn periodic_tick(&self) -> Result<(), StorageError> {
        let target = self.counters.committed_seq();
        if target <= self.counters.durable_seq() {
            return Ok(());
        }
        self.sync_due.store(true, Ordering::Release);
        loop {
            let _writer = match self.write_lock.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    // A writer is committing; it or the next one makes the sync.
                    if self.counters.durable_seq() >= target {
                        return Ok(());
                    }
                    std::thread::sleep(SYNC_RETRY_INTERVAL);
                    continue;
                }
            };
            return self.sync_locked();
        }
    }

    /// An empty durable commit, if any batch is not yet durable. The caller holds the
    /// writer lock, so every counted batch is committed and covered by it.
    fn sync_locked(&self) -> Result<(), StorageError> {
        let target = self.counters.committed_seq();
        if target <= self.counters.durable_seq() {
            self.sync_due.store(false, Ordering::Release);
            return Ok(());
        }
        let mut tx = self.begin_write()?;
        tx.set_two_phase_commit(true);
        let started = Instant::now();
        if let Err(e) = tx.commit() {
            self.counters.sync_failed();
            return Err(self.error(None, e));
        }
        self.sync_due.store(false, Ordering::Release);
        self.counters.synced(target, started.elapsed());
        Ok(())
    }

    pub(crate) fn error(&self, table: Option<&str>, err: impl Into<redb::Error>) -> StorageError {
        engine_error(&self.file, table, err)
    }

    pub(crate) fn corrupt(&self, table: Option<&str>, detail: String) -> StorageError {
        StorageError::Corrupt {
            file: self.file.clone(),
            table: table.map(str::to_string),
            detail,
        }
    }
}

/// The periodic flusher thread; [`Flusher::stop`] wakes and joins it.
pub(crate) struct Flusher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Flusher {
    pub(crate) fn start(inner: Arc<Inner>, period: Duration) -> Result<Self, StorageError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let file = inner.file.clone();
        let thread = std::thread::Builder::new()
            .name("geoul-storage-sync".to_string())
            .spawn(move || loop {
                match stopped.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(err) = inner.periodic_tick() {
                            tracing::error!(%err, "periodic storage sync failed");
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .map_err(|e| io_error(&file, e))?;
        Ok(Self { stop, thread })
    }

    pub(crate) fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            tracing::error!("storage sync thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner(dir: &std::path::Path) -> Inner {
        let file = dir.join("t.redb");
        let db = redb::Database::create(&file).expect("create");
        Inner::new(db, file, SyncPolicy::Periodic(Duration::from_secs(60)))
    }

    fn empty_batch(inner: &Inner) {
        let _writer = inner.lock_writer();
        let tx = inner.begin_write().expect("begin");
        inner.commit(tx, 1, 0).expect("commit");
    }

    #[test]
    fn a_due_sync_is_made_by_the_next_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = inner(dir.path());
        empty_batch(&inner);
        assert_eq!(
            inner.counters.durable_seq(),
            0,
            "periodic commits are not durable"
        );
        inner.sync_due.store(true, Ordering::Release);
        empty_batch(&inner);
        assert_eq!(
            inner.counters.durable_seq(),
            2,
            "the writer made the due sync"
        );
        assert!(!inner.sync_due.load(Ordering::Acquire));
        empty_batch(&inner);
        assert_eq!(inner.counters.durable_seq(), 2);
    }

    #[test]
    fn the_flusher_syncs_an_idle_store_and_skips_a_clean_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = inner(dir.path());
        inner.periodic_tick().expect("clean tick");
        assert_eq!(inner.counters.snapshot(None).sync_latency.count, 0);
        empty_batch(&inner);
        inner.periodic_tick().expect("tick");
        assert_eq!(inner.counters.durable_seq(), 1);
        assert_eq!(inner.counters.snapshot(None).sync_latency.count, 1);
        assert!(!inner.sync_due.load(Ordering::Acquire));
    }
}
