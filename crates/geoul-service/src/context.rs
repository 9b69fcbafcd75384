//! What a handler works with: its tables, the caller, the deadline, and refs
//! to other services.
//!
//! Owns: [`Context`], [`Record`], [`Written`], [`PutOptions`], [`StoreError`]
//! and the [`StoreAccess`] seam the host fills in. Session floors are applied
//! here: a read of an entry the caller's session has seen never returns an
//! older version. Does not own: replication (behind `StoreAccess`) or
//! dispatch (the host).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use geoul_client::wire::{Stamp, Touch, FLOORS_MAX};
use geoul_client::{Backend, ServiceRef};
use geoul_replication::ReadLevel;
use geoul_store::{Ack, Document, Entry, Key, Origin, Timestamp, Version};
use tokio::time::Instant;

/// Why a table operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The service did not declare this table.
    #[error("table {0:?} is not one of this service's tables")]
    UnknownTable(String),
    /// The key is empty or too long.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The document is invalid.
    #[error("bad document: {0}")]
    BadDocument(String),
    /// The table is at its `max_entries`.
    #[error("{0}")]
    TableFull(String),
    /// Replication could not complete (e.g. quorum not reached in time).
    #[error("{0}")]
    Unavailable(String),
    /// No replica reached the version the caller's session has seen.
    #[error("{0}")]
    Behind(String),
    /// Not ready on this node and nothing was done (e.g. a conditional group
    /// not formed yet): safe to retry, here later or on another node.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The query is invalid.
    #[error("bad query: {0}")]
    BadQuery(String),
}

/// A write to run through the replicated store.
#[derive(Clone, Debug)]
pub struct WriteOp {
    /// Table.
    pub table: String,
    /// Key.
    pub key: Key,
    /// New document, `None` deletes.
    pub value: Option<Document>,
    /// Expiry from now (the table's default if `None`).
    pub ttl: Option<Duration>,
    /// Ack level (the table's default if `None`).
    pub ack: Option<Ack>,
    /// Deadline.
    pub timeout: Duration,
}

/// A renewal to run through the replicated store (see [`Context::touch`]).
#[derive(Clone, Debug)]
pub struct TouchOp {
    /// Table.
    pub table: String,
    /// Key.
    pub key: Key,
    /// The version whose expiry is extended.
    pub version: Version,
    /// New expiry, from now.
    pub ttl: Duration,
    /// Ack level (the table's default if `None`).
    pub ack: Option<Ack>,
    /// Deadline.
    pub timeout: Duration,
}

/// The replicated store as handlers reach it (implemented over the node's
/// replicator; a seam so the framework does not depend on the transport).
pub trait StoreAccess: Send + Sync + 'static {
    /// The stored entry of a key (deletes and expired values included:
    /// the context filters them after noting their version), never older
    /// than `floor`.
    fn read(
        &self,
        table: &str,
        key: Key,
        level: ReadLevel,
        floor: Option<Version>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<Entry>, StoreError>>;
    /// A write; returns the version it got.
    fn write(&self, op: WriteOp) -> BoxFuture<'static, Result<Written, StoreError>>;
    /// Extends the expiry of the entry at exactly `op.version`.
    fn touch(&self, op: TouchOp) -> BoxFuture<'static, Result<Written, StoreError>>;
    /// Moves this node's clock past `ts` (a version the caller has seen), so
    /// later writes here are newer; refuses timestamps too far ahead.
    fn observe(&self, ts: u64);
    /// Current wall time, Unix ms (the store's clock).
    fn now_ms(&self) -> u64;
    /// Current HLC timestamp (raw).
    fn hlc_now(&self) -> u64;
    /// The clock-skew allowance used for expiry, ms.
    fn skew_margin_ms(&self) -> u64;
    /// When this node last completed an anti-entropy round with a majority
    /// of `table`'s hosts (Unix ms); `None`: not yet, or no such table.
    fn majority_contact_ms(&self, table: &str) -> Option<u64>;
    /// Hosts of `table` seen alive or suspect, and hosts that declared it.
    fn hosts_seen(&self, table: &str) -> (usize, usize);
    /// Visible entries whose key starts with `prefix`, from every host, in
    /// key order (`partial` when some slot could not be answered).
    fn scan(
        &self,
        table: &str,
        prefix: Vec<u8>,
        limit: u32,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(Vec<Entry>, bool), StoreError>>;
    /// The changes this node applies to `table` from now on (`None`: no
    /// such table here).
    fn subscribe(
        &self,
        table: &str,
    ) -> Option<tokio::sync::broadcast::Receiver<std::sync::Arc<geoul_store::Change>>>;
    /// A distributed query.
    fn query(
        &self,
        query: geoul_query::Query,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<geoul_client::QueryAnswer, StoreError>>;
}

/// The result of a prefix scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Scanned {
    /// Records in key order.
    pub records: Vec<Record>,
    /// Some slot could not be answered: records may be missing (never
    /// silently).
    pub partial: bool,
}

/// An entry read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Its key.
    pub key: Vec<u8>,
    /// Its document.
    pub doc: Document,
    /// Its version.
    pub version: Stamp,
    /// When it expires, Unix ms.
    pub expires_at_ms: Option<u64>,
}

/// A completed write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// The version it got.
    pub version: Stamp,
    /// Replicas that acknowledged.
    pub acked: usize,
    /// Replicas of the slot.
    pub replicas: usize,
}

/// Options of one write.
#[derive(Clone, Copy, Debug, Default)]
pub struct PutOptions {
    /// Expiry from now (the table's default if `None`).
    pub ttl: Option<Duration>,
    /// Ack level (the table's default if `None`).
    pub ack: Option<Ack>,
}

/// Who called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The peer's address as the connection saw it.
    pub addr: std::net::SocketAddr,
    /// What the peer announced itself as ("client", a node's name and address).
    pub hello: String,
}

pub(crate) struct Shared {
    pub(crate) node: String,
    pub(crate) store: Arc<dyn StoreAccess>,
    pub(crate) cond: Arc<dyn crate::conditional::ConditionalAccess>,
    pub(crate) groups: Vec<String>,
    pub(crate) refs: Arc<dyn Backend>,
    pub(crate) service: String,
    pub(crate) tables: Vec<String>,
}

/// A handler's view of one call.
pub struct Context {
    pub(crate) shared: Arc<Shared>,
    pub(crate) deadline: Instant,
    pub(crate) caller: Caller,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) floors: Vec<Touch>,
    pub(crate) trail: Arc<Trail>,
}

/// What a call touched (for the caller's session) and whether it wrote.
#[derive(Default)]
pub(crate) struct Trail {
    touched: Mutex<Vec<Touch>>,
    wrote: std::sync::atomic::AtomicBool,
}

impl Trail {
    fn record(&self, table: &str, key: &[u8], version: Stamp) {
        let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
        match touched
            .iter_mut()
            .find(|t| t.table == table && t.key == key)
        {
            Some(t) => t.version = t.version.max(version),
            None => {
                if touched.len() == FLOORS_MAX {
                    touched.remove(0);
                }
                touched.push(Touch {
                    table: table.to_string(),
                    key: key.to_vec(),
                    version,
                });
            }
        }
    }

    pub(crate) fn take(&self) -> Vec<Touch> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn wrote(&self) -> bool {
        self.wrote.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn stamp(v: Version) -> Stamp {
    Stamp {
        ts: v.ts.raw(),
        origin: v.origin.raw(),
    }
}

fn version(s: Stamp) -> Version {
    Version {
        ts: Timestamp::from_raw(s.ts),
        origin: Origin::from_raw(s.origin),
    }
}

impl Context {
    /// The node serving this call.
    pub fn node_name(&self) -> &str {
        &self.shared.node
    }

    /// The service this call is for.
    pub fn service_name(&self) -> &str {
        &self.shared.service
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Who called.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The call's routing key, if it had one.
    pub fn routing_key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The store's wall clock, Unix ms (use it, not the OS clock, so
    /// simulations and expiry agree).
    pub fn now_ms(&self) -> u64 {
        self.shared.store.now_ms()
    }

    /// The clock-skew allowance used for expiry, ms.
    pub fn skew_margin_ms(&self) -> u64 {
        self.shared.store.skew_margin_ms()
    }

    /// Whether this node heard from a majority of `table`'s hosts within
    /// `window` (and repaired what it had missed then): when it has not — it
    /// may be cut off — a service that answers from its local copy should
    /// read at `Quorum` instead.
    pub fn in_touch(&self, table: &str, window: Duration) -> bool {
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.shared
            .store
            .majority_contact_ms(table)
            .is_some_and(|at| self.now_ms().saturating_sub(at) <= window)
    }

    /// Whether this node sees a majority of the hosts that declared `table`
    /// alive (a node on the minority side of a partition does not, once it
    /// declared the others dead; a `Quorum` read there counts only the hosts
    /// it still sees).
    pub fn sees_majority(&self, table: &str) -> bool {
        let (seen, declared) = self.shared.store.hosts_seen(table);
        seen * 2 > declared
    }

    /// Visible entries of `table` whose key starts with `prefix`, in key
    /// order, at most `limit`, gathered from every host.
    pub async fn scan(
        &self,
        table: &str,
        prefix: Vec<u8>,
        limit: u32,
    ) -> Result<Scanned, StoreError> {
        if !self.shared.tables.iter().any(|t| t == table) {
            return Err(StoreError::UnknownTable(table.to_string()));
        }
        let (entries, partial) = self
            .shared
            .store
            .scan(table, prefix, limit, self.remaining())
            .await?;
        let mut records = Vec::with_capacity(entries.len());
        for e in entries {
            let Some(value) = &e.value else { continue };
            records.push(Record {
                key: e.key.as_bytes().to_vec(),
                doc: value
                    .decode()
                    .map_err(|err| StoreError::BadDocument(err.to_string()))?,
                version: stamp(e.version),
                expires_at_ms: e.expires_at_ms,
            });
        }
        Ok(Scanned { records, partial })
    }

    /// Runs a distributed query on one of this service's tables: rows in the
    /// query's order, `partial` (with the slots) when some slot could not be
    /// answered before the deadline.
    pub async fn query(
        &self,
        query: &geoul_query::Query,
    ) -> Result<geoul_client::QueryAnswer, StoreError> {
        if !self.shared.tables.contains(&query.table) {
            return Err(StoreError::UnknownTable(query.table.clone()));
        }
        self.shared
            .store
            .query(query.clone(), self.remaining())
            .await
    }

    /// The changes this node applies to one of this service's tables from
    /// now on (see [`ChangeFeed`](crate::ChangeFeed)).
    pub fn changes(&self, table: &str) -> Result<crate::ChangeFeed, StoreError> {
        if !self.shared.tables.iter().any(|t| t == table) {
            return Err(StoreError::UnknownTable(table.to_string()));
        }
        let rx = self
            .shared
            .store
            .subscribe(table)
            .ok_or_else(|| StoreError::UnknownTable(table.to_string()))?;
        Ok(crate::ChangeFeed::new(rx, self.shared.store.clone()))
    }

    /// Runs a conditional operation on one of this service's consensus
    /// groups (create-if-absent, compare-and-set, take): decided by the
    /// group's leader, acknowledged once a majority logged it. A timeout is
    /// indeterminate (it may still apply).
    pub async fn conditional(
        &self,
        group: &str,
        op: crate::conditional::CondOp,
    ) -> Result<crate::conditional::CondOutcome, StoreError> {
        if !self.shared.groups.iter().any(|g| g == group) {
            return Err(StoreError::UnknownTable(group.to_string()));
        }
        let mutates = !matches!(op, crate::conditional::CondOp::Get { .. });
        let result = self.shared.cond.submit(group, op, self.remaining()).await;
        if mutates && !matches!(result, Err(StoreError::NotReady(_))) {
            // It may have applied: a later `Behind` or `NotReady` must not
            // tell the caller that nothing happened.
            self.trail
                .wrote
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// A ref to another service (or this one), for calls from inside a
    /// handler; it has its own session.
    pub fn service(&self, name: &str) -> ServiceRef {
        ServiceRef::new(self.shared.refs.clone(), name)
    }

    fn check(&self, table: &str, key: &[u8]) -> Result<Key, StoreError> {
        if !self.shared.tables.iter().any(|t| t == table) {
            return Err(StoreError::UnknownTable(table.to_string()));
        }
        Key::new(key).map_err(|e| StoreError::BadKey(e.to_string()))
    }

    /// Reads `key` from one replica (the nearest serving one), never older
    /// than what the caller's session has seen of it.
    pub async fn get(&self, table: &str, key: &[u8]) -> Result<Option<Record>, StoreError> {
        self.get_with(table, key, ReadLevel::One).await
    }

    /// Reads `key` at `level` (`Quorum`: the newest among a majority).
    pub async fn get_with(
        &self,
        table: &str,
        key: &[u8],
        level: ReadLevel,
    ) -> Result<Option<Record>, StoreError> {
        let k = self.check(table, key)?;
        let floor = self
            .floors
            .iter()
            .find(|t| t.table == table && t.key == key)
            .map(|t| version(t.version));
        let entry = self
            .shared
            .store
            .read(table, k, level, floor, self.remaining())
            .await?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        // Remembered even for a delete or an expired value: the session must
        // not see the key come back from a replica that missed the delete.
        self.trail.record(table, key, stamp(entry.version));
        let store = &self.shared.store;
        if !entry.visible_at(store.now_ms(), store.skew_margin_ms()) {
            return Ok(None);
        }
        let doc = match &entry.value {
            Some(v) => v
                .decode()
                .map_err(|e| StoreError::BadDocument(e.to_string()))?,
            None => return Ok(None),
        };
        Ok(Some(Record {
            key: key.to_vec(),
            doc,
            version: stamp(entry.version),
            expires_at_ms: entry.expires_at_ms,
        }))
    }

    /// Writes `doc` under `key` with the table's default TTL and ack level.
    pub async fn put(&self, table: &str, key: &[u8], doc: Document) -> Result<Written, StoreError> {
        self.put_with(table, key, Some(doc), PutOptions::default())
            .await
    }

    /// Deletes `key` (a versioned tombstone).
    pub async fn delete(&self, table: &str, key: &[u8]) -> Result<Written, StoreError> {
        self.put_with(table, key, None, PutOptions::default()).await
    }

    /// Renews `key`: the entry at exactly `version` (as a read returned it)
    /// now expires `ttl` from now. Only the key, the version and the expiry
    /// travel — no value — and a newer write to the key is never undone by it
    /// (the renewal of an older version is ignored), so a heartbeat can run
    /// beside updates without a lost update. `acked` counts the replicas that
    /// hold the renewal; a replica that lacks the version refuses it (sync
    /// brings it the entry, renewed).
    pub async fn touch(
        &self,
        table: &str,
        key: &[u8],
        version: Stamp,
        ttl: Duration,
        options: PutOptions,
    ) -> Result<Written, StoreError> {
        let k = self.check(table, key)?;
        self.trail
            .wrote
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .store
            .touch(TouchOp {
                table: table.to_string(),
                key: k,
                version: self::version(version),
                ttl,
                ack: options.ack,
                timeout: self.remaining(),
            })
            .await
    }

    /// Writes (`Some`) or deletes (`None`) with explicit options.
    pub async fn put_with(
        &self,
        table: &str,
        key: &[u8],
        doc: Option<Document>,
        options: PutOptions,
    ) -> Result<Written, StoreError> {
        let k = self.check(table, key)?;
        self.trail
            .wrote
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let written = self
            .shared
            .store
            .write(WriteOp {
                table: table.to_string(),
                key: k,
                value: doc,
                ttl: options.ttl,
                ack: options.ack,
                timeout: self.remaining(),
            })
            .await?;
        self.trail.record(table, key, written.version);
        Ok(written)
    }
}
