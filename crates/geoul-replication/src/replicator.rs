//! The write and read paths of every table (DESIGN.md §5): the handling node
//! versions the write, applies it if it is a replica, ships the result to the
//! other replicas, waits for the ack level, replies. Reads at `One` are local
//! when possible; at `Quorum` the highest version among a majority wins and
//! stale replicas are repaired.
//!
//! Owns: [`Replicator`]. Does not own: the wire (`ReplicaLink`), placement
//! computation (`placement`), or the local copy (`local`).
//!
//! What an ack means: the replica applied the entry to its table and, for `Disk`
//! tables, wrote it under the node's sync policy, before answering. A write that
//! misses its ack level is reported with the number of acks it got and is *not*
//! rolled back: replicas that applied it keep it, and it may become visible
//! (Cassandra's semantics; DESIGN.md §13, "say what an ack means").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use geoul_placement::{slot_of, Slot};
use geoul_store::{Ack, Change, DocError, Document, Entry, Key, Origin, Touch, Version};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::batcher::{LocalApplier, PeerBatcher};
use crate::local::{LocalStore, TableHandle};
use crate::messages::{ReplicaLink, ReplicateBatch};
use crate::metrics::{OpLabels, ReplicationMetrics};
use crate::placement::{Placement, Route};
use crate::scan::{local_scan, merge_pages, ScanPage, ScanResult};

/// Most entries a scan returns.
pub const SCAN_LIMIT_MAX: u32 = 1000;

/// A write to run.
#[derive(Clone, Debug)]
pub struct WriteRequest {
    /// Table.
    pub table: String,
    /// Key.
    pub key: Key,
    /// New document, or `None` to delete.
    pub value: Option<Document>,
    /// Expiry from now; the table's default if `None`.
    pub ttl: Option<Duration>,
    /// Ack level; the table's default if `None`.
    pub ack: Option<Ack>,
    /// Deadline for reaching the ack level.
    pub timeout: Duration,
}

/// A renewal to run (see [`Replicator::touch`]).
#[derive(Clone, Debug)]
pub struct TouchRequest {
    /// Table.
    pub table: String,
    /// Key.
    pub key: Key,
    /// The version whose expiry is extended.
    pub version: Version,
    /// New expiry, from now.
    pub ttl: Duration,
    /// Ack level; the table's default if `None`.
    pub ack: Option<Ack>,
    /// Deadline for reaching the ack level.
    pub timeout: Duration,
}

/// A successful write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The version it got.
    pub version: Version,
    /// Replicas that acknowledged before the reply.
    pub acked: usize,
    /// Replicas of the slot.
    pub replicas: usize,
}

/// Read consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadLevel {
    /// One replica (this node if it is one).
    One,
    /// The highest version among a majority, repairing stale replicas.
    Quorum,
}

impl ReadLevel {
    fn word(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::Quorum => "quorum",
        }
    }
}

fn ack_word(ack: Ack) -> &'static str {
    match ack {
        Ack::One => "one",
        Ack::Quorum => "quorum",
        Ack::All => "all",
    }
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No such table.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// Nobody hosts the slot.
    #[error("no live replica for slot {0}")]
    NoLiveReplica(Slot),
    /// `max_entries` reached.
    #[error("table {table} is full ({max} entries)")]
    TableFull {
        /// Table.
        table: String,
        /// Its bound.
        max: u64,
    },
    /// The document is invalid.
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The ack level was not reached in time. The write is not rolled back.
    #[error("{level} not reached: {acked} of {required} acks before {timeout:?} ({replicas} replicas; the write is not rolled back and may still become visible)")]
    AckNotReached {
        /// Level asked for.
        level: &'static str,
        /// Acks received.
        acked: usize,
        /// Acks needed.
        required: usize,
        /// Replicas of the slot.
        replicas: usize,
        /// The deadline.
        timeout: Duration,
        /// The version the write got.
        version: Version,
    },
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No such table.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// Nobody hosts the slot.
    #[error("no live replica for slot {0}")]
    NoLiveReplica(Slot),
    /// Too few replicas answered in time.
    #[error(
        "{level} read not reached: {answered} of {required} replicas answered before {timeout:?}"
    )]
    NotEnoughReplicas {
        /// Level asked for.
        level: &'static str,
        /// Answers received.
        answered: usize,
        /// Answers needed.
        required: usize,
        /// The deadline.
        timeout: Duration,
    },
    /// No replica reached the version the caller has already seen before the
    /// deadline (session guarantees: never answer from an older state).
    #[error("no replica of the key reached version {floor:?} before {timeout:?}")]
    Behind {
        /// The version asked for.
        floor: Version,
        /// The deadline.
        timeout: Duration,
    },
}

/// The replicated write and read paths of one node.
pub struct Replicator<L: ReplicaLink> {
    store: Arc<LocalStore>,
    origin: Origin,
    link: Arc<L>,
    placement: watch::Receiver<Arc<Placement>>,
    batchers: Mutex<HashMap<SocketAddr, PeerBatcher>>,
    local: LocalApplier,
    metrics: ReplicationMetrics,
}

impl<L: ReplicaLink> Replicator<L> {
    /// Paths over `store`, versioning writes as `origin`, reaching peers through
    /// `link`, routing by the latest `placement`.
    pub fn new(
        store: Arc<LocalStore>,
        origin: Origin,
        link: Arc<L>,
        placement: watch::Receiver<Arc<Placement>>,
        metrics: ReplicationMetrics,
    ) -> Self {
        let local = LocalApplier::spawn(store.clone(), metrics.clone());
        Self {
            store,
            origin,
            link,
            placement,
            batchers: Mutex::new(HashMap::new()),
            local,
            metrics,
        }
    }

    /// The local store.
    pub fn store(&self) -> &Arc<LocalStore> {
        &self.store
    }

    pub(crate) fn link(&self) -> &Arc<L> {
        &self.link
    }

    fn batcher(&self, addr: SocketAddr) -> PeerBatcher {
        let mut map = self.batchers.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(addr)
            .or_insert_with(|| PeerBatcher::spawn(addr, self.link.clone(), self.metrics.clone()))
            .clone()
    }

    pub(crate) fn replicas(&self, handle: &TableHandle, slot: Slot) -> Vec<Route> {
        let placement = self.placement.borrow().clone();
        placement.routing_order(&handle.spec().name, slot)
    }

    /// The replicas a read of `key` may ask, in routing order.
    fn read_replicas(&self, handle: &TableHandle, key: &Key) -> Result<Vec<Route>, ReadError> {
        let slot = slot_of(key.as_bytes());
        let replicas = self.replicas(handle, slot);
        if replicas.is_empty() {
            return Err(ReadError::NoLiveReplica(slot));
        }
        Ok(replicas)
    }

    /// Previous owners of `slot` during a handoff (see `Placement::previous_only`).
    fn previous_owners(&self, handle: &TableHandle, slot: Slot) -> Vec<Route> {
        let placement = self.placement.borrow().clone();
        placement.previous_only(&handle.spec().name, slot)
    }

    /// Where a `One` read of `slot` may look once its current replicas refused
    /// (all still syncing): previous owners first, then every other host, any
    /// of which may still hold the slot as leaving (this node may not have seen
    /// the placement before the change, e.g. because it just joined).
    fn fallback_owners(&self, handle: &TableHandle, slot: Slot, current: &[Route]) -> Vec<Route> {
        let placement = self.placement.borrow().clone();
        let table = &handle.spec().name;
        let mut out = placement.previous_only(table, slot);
        for host in placement.hosts(table) {
            if !current
                .iter()
                .chain(out.iter())
                .any(|r| r.name == host.name)
            {
                out.push(host);
            }
        }
        out.sort_by_key(|r| (r.syncing, !r.alive));
        out
    }

    /// The current placement.
    pub(crate) fn placement_now(&self) -> Arc<Placement> {
        self.placement.borrow().clone()
    }

    /// This node's name (as placement knows it).
    /// Hosts of `table` this node sees alive or suspect, and hosts that
    /// declared it (dead ones included): a node that sees fewer than a
    /// majority of the declared hosts may be the cut-off side of a partition.
    pub fn hosts_seen(&self, table: &str) -> (usize, usize) {
        let p = self.placement_now();
        (p.hosts(table).len(), p.declared_hosts(table))
    }

    pub fn placement_me(&self) -> String {
        self.me()
    }

    pub(crate) fn me(&self) -> String {
        self.placement.borrow().me().to_string()
    }

    /// Runs a write (see the module docs for what the result means).
    pub async fn write(&self, req: WriteRequest) -> Result<WriteOutcome, WriteError> {
        let handle = self
            .store
            .table(&req.table)
            .ok_or_else(|| WriteError::UnknownTable(req.table.clone()))?;
        let options = handle.spec().options.clone();
        let ack = req.ack.unwrap_or(options.write_ack);
        let result = self.write_inner(&handle, req.clone(), ack).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.metrics
            .writes
            .get_or_create(&OpLabels {
                table: req.table,
                level: ack_word(ack),
                outcome,
            })
            .inc();
        result
    }

    async fn write_inner(
        &self,
        handle: &TableHandle,
        req: WriteRequest,
        ack: Ack,
    ) -> Result<WriteOutcome, WriteError> {
        let started = Instant::now();
        let deadline = started + req.timeout;
        let slot = slot_of(req.key.as_bytes());
        let replicas = self.replicas(handle, slot);
        if replicas.is_empty() {
            return Err(WriteError::NoLiveReplica(slot));
        }
        if req.value.is_some() && handle.lock().would_overflow(&req.key) {
            return Err(WriteError::TableFull {
                table: req.table.clone(),
                max: handle.spec().options.max_entries.unwrap_or(0),
            });
        }
        let value = req.value.as_ref().map(Document::encode).transpose()?;
        let hlc = self.store.hlc();
        let ttl = req.ttl.or(handle.spec().options.default_ttl);
        let expires_at_ms = ttl.map(|t| {
            hlc.wall_ms()
                .saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
        });
        let version = Version {
            ts: hlc.now(),
            origin: self.origin,
        };
        let entry = Entry {
            key: req.key.clone(),
            version,
            expires_at_ms,
            value,
        };
        self.ship(
            handle,
            &req.table,
            slot,
            &replicas,
            Change::Put(entry),
            ack,
            (started, deadline, req.timeout),
        )
        .await
    }

    /// Extends the expiry of `req.key` at exactly `req.version` on its
    /// replicas (see [`Touch`]): a renewal that ships no value and cannot undo
    /// a concurrent update. Replicas that lack the version refuse it, so the
    /// ack count says how many copies hold the renewal.
    pub async fn touch(&self, req: TouchRequest) -> Result<WriteOutcome, WriteError> {
        let handle = self
            .store
            .table(&req.table)
            .ok_or_else(|| WriteError::UnknownTable(req.table.clone()))?;
        let ack = req.ack.unwrap_or(handle.spec().options.write_ack);
        let started = Instant::now();
        let deadline = started + req.timeout;
        let slot = slot_of(req.key.as_bytes());
        let replicas = self.replicas(&handle, slot);
        if replicas.is_empty() {
            return Err(WriteError::NoLiveReplica(slot));
        }
        let expires_at_ms = self
            .store
            .hlc()
            .wall_ms()
            .saturating_add(u64::try_from(req.ttl.as_millis()).unwrap_or(u64::MAX));
        let touch = Touch {
            key: req.key.clone(),
            version: req.version,
            expires_at_ms,
        };
        let result = self
            .ship(
                &handle,
                &req.table,
                slot,
                &replicas,
                Change::Touch(touch),
                ack,
                (started, deadline, req.timeout),
            )
            .await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.metrics
            .touches
            .get_or_create(&OpLabels {
                table: req.table,
                level: ack_word(ack),
                outcome,
            })
            .inc();
        result
    }

    /// Sends `change` to the slot's replicas and waits for `ack` of them.
    #[allow(clippy::too_many_arguments)]
    async fn ship(
        &self,
        handle: &TableHandle,
        table: &str,
        slot: Slot,
        replicas: &[Route],
        change: Change,
        ack: Ack,
        (started, deadline, timeout): (Instant, Instant, Duration),
    ) -> Result<WriteOutcome, WriteError> {
        let version = change.version();
        let required = ack.required(replicas.len());
        let me = self.me();
        let mut pending = FuturesUnordered::new();
        let mut acked = 0usize;
        for route in replicas {
            if route.name == me {
                let rx = self.local.submit(table, change.clone(), deadline).await;
                pending.push(rx);
            } else {
                let rx = self
                    .batcher(route.addr)
                    .submit(table, change.clone(), deadline)
                    .await;
                pending.push(rx);
            }
        }
        while acked < required {
            match tokio::time::timeout_at(deadline, pending.next()).await {
                Ok(Some(Ok(Ok(())))) => {
                    acked += 1;
                    self.metrics
                        .replica_lag
                        .observe(started.elapsed().as_secs_f64());
                }
                // A refusal or an unreachable replica: give up as soon as the
                // replicas still outstanding cannot make up the difference.
                Ok(Some(_)) if acked + pending.len() >= required => {}
                Ok(Some(_)) | Ok(None) | Err(_) => {
                    return Err(WriteError::AckNotReached {
                        level: ack_word(ack),
                        acked,
                        required,
                        replicas: replicas.len(),
                        timeout,
                        version,
                    })
                }
            }
        }
        // Previous owners still serving the slot during a handoff get the
        // write too (not counted: they are about to drop the slot), so a `One`
        // read that falls back to them is not stale.
        for route in self.previous_owners(handle, slot) {
            if route.name != me {
                drop(
                    self.batcher(route.addr)
                        .submit(table, change.clone(), deadline)
                        .await,
                );
            }
        }
        // Remaining replicas keep going in their batchers; record their lag.
        let lag = self.metrics.replica_lag.clone();
        if !pending.is_empty() {
            tokio::spawn(async move {
                while let Some(r) = pending.next().await {
                    if matches!(r, Ok(Ok(()))) {
                        lag.observe(started.elapsed().as_secs_f64());
                    }
                }
            });
        }
        Ok(WriteOutcome {
            version,
            acked,
            replicas: replicas.len(),
        })
    }

    /// Reads `key`; `Ok(None)` when it does not exist, is deleted or expired.
    pub async fn read(
        &self,
        table: &str,
        key: Key,
        level: ReadLevel,
        timeout: Duration,
    ) -> Result<Option<Entry>, ReadError> {
        self.read_stored(table, key, level, timeout)
            .await
            .map(|e| self.visible(e))
    }

    /// Drops an entry that is deleted or expired (minus the skew margin).
    pub(crate) fn visible(&self, entry: Option<Entry>) -> Option<Entry> {
        let now = self.store.hlc().wall_ms();
        let margin = self.store.skew_margin_ms();
        entry.filter(|e| e.visible_at(now, margin))
    }

    /// The stored entry of `key` (deletes and expired values included), for
    /// version comparisons; `None` when no replica holds the key at all.
    pub async fn read_stored(
        &self,
        table: &str,
        key: Key,
        level: ReadLevel,
        timeout: Duration,
    ) -> Result<Option<Entry>, ReadError> {
        let handle = self
            .store
            .table(table)
            .ok_or_else(|| ReadError::UnknownTable(table.to_string()))?;
        let result = match level {
            ReadLevel::One => self.read_one(&handle, key, timeout).await,
            ReadLevel::Quorum => self.read_quorum(&handle, key, timeout).await,
        };
        self.metrics
            .reads
            .get_or_create(&OpLabels {
                table: table.to_string(),
                level: level.word(),
                outcome: if result.is_ok() { "ok" } else { "failed" },
            })
            .inc();
        result
    }

    async fn read_one(
        &self,
        handle: &TableHandle,
        key: Key,
        timeout: Duration,
    ) -> Result<Option<Entry>, ReadError> {
        let replicas = self.read_replicas(handle, &key)?;
        let deadline = Instant::now() + timeout;
        let me = self.me();
        let slot = slot_of(key.as_bytes());
        for route in &replicas {
            if let Some(entry) = self.read_at(handle, route, &key, &me, deadline).await {
                return Ok(entry);
            }
        }
        // Every current replica refused (all still syncing) or failed: a
        // previous owner that keeps the slot until the handoff completes
        // answers instead. Computed only now, off the common path.
        for route in &self.fallback_owners(handle, slot, &replicas) {
            if let Some(entry) = self.read_at(handle, route, &key, &me, deadline).await {
                return Ok(entry);
            }
        }
        Err(ReadError::NotEnoughReplicas {
            level: "one",
            answered: 0,
            required: 1,
            timeout,
        })
    }

    /// The entry `route` stores for `key`; `None` when it cannot answer (a
    /// syncing copy never answers: DESIGN.md §4 line 5).
    async fn read_at(
        &self,
        handle: &TableHandle,
        route: &Route,
        key: &Key,
        me: &str,
        deadline: Instant,
    ) -> Option<Option<Entry>> {
        if route.name == me {
            let serves = handle.sync().serves(slot_of(key.as_bytes()));
            return serves.then(|| handle.lock().get_entry(key));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let name = handle.spec().name.clone();
        let entry = self
            .link
            .read(route.addr, name, key.clone(), left)
            .await
            .ok()?;
        let hlc = self.store.hlc();
        Some(entry.filter(|e| hlc.check(e.version.ts).is_ok()))
    }

    pub(crate) async fn read_quorum(
        &self,
        handle: &TableHandle,
        key: Key,
        timeout: Duration,
    ) -> Result<Option<Entry>, ReadError> {
        let replicas = self.read_replicas(handle, &key)?;
        let required = Ack::Quorum.required(replicas.len());
        let deadline = Instant::now() + timeout;
        let me = self.me();
        let table = handle.spec().name.clone();
        let mut answers: Vec<(Route, Option<Entry>)> = Vec::new();
        let mut pending = FuturesUnordered::new();
        let serves_here = handle.sync().serves(slot_of(key.as_bytes()));
        for route in replicas {
            if route.name == me {
                if serves_here {
                    let local = handle.lock().get_entry(&key);
                    answers.push((route, local));
                }
            } else {
                let fut = self
                    .link
                    .read(route.addr, table.clone(), key.clone(), timeout);
                pending.push(async move { (route, fut.await) });
            }
        }
        while answers.len() < required {
            match tokio::time::timeout_at(deadline, pending.next()).await {
                Ok(Some((route, Ok(entry)))) => answers.push((route, entry)),
                Ok(Some((_, Err(_)))) => {}
                Ok(None) | Err(_) => {
                    return Err(ReadError::NotEnoughReplicas {
                        level: "quorum",
                        answered: answers.len(),
                        required,
                        timeout,
                    })
                }
            }
        }
        Ok(self.newest_repairing(&table, &answers))
    }

    /// The newest of the replicas' answers, after repairing those that
    /// answered with an older one (or none).
    pub(crate) fn newest_repairing(
        &self,
        table: &str,
        answers: &[(Route, Option<Entry>)],
    ) -> Option<Entry> {
        // A version from a clock too far ahead of ours must not win a read either,
        // or a node with a fast clock would make its (unacknowledged) writes
        // beat every later one.
        let hlc = self.store.hlc();
        let winner = answers
            .iter()
            .filter_map(|(_, e)| e.clone())
            .filter(|e| hlc.check(e.version.ts).is_ok())
            .max_by_key(|e| e.freshness());
        if let Some(winner) = &winner {
            self.repair(table, winner, answers);
        }
        winner
    }

    /// Sends the winning entry to answering replicas that had an older one (or
    /// none); best effort, the reply does not wait for it.
    pub(crate) fn repair(&self, table: &str, winner: &Entry, answers: &[(Route, Option<Entry>)]) {
        let me = self.me();
        for (route, entry) in answers {
            let stale = entry
                .as_ref()
                .is_none_or(|e| e.freshness() < winner.freshness());
            if !stale {
                continue;
            }
            self.metrics.read_repairs.inc();
            if route.name == me {
                self.store
                    .apply_batch(vec![(table.to_string(), winner.clone())]);
            } else {
                let batch = ReplicateBatch::entries([(table.to_string(), winner.clone())]);
                let fut = self
                    .link
                    .replicate(route.addr, batch, crate::batcher::BATCH_TIMEOUT);
                tokio::spawn(async move {
                    let _ = fut.await;
                });
            }
        }
    }

    /// Visible entries whose key starts with `prefix`, merged from every node
    /// hosting the table (highest version per key), in key order, at most
    /// `limit`. `partial` is set when some node did not answer in time: then
    /// keys it alone holds may be missing (never silently).
    pub async fn scan(
        &self,
        table: &str,
        prefix: Vec<u8>,
        limit: u32,
        timeout: Duration,
    ) -> Result<ScanResult, ReadError> {
        let handle = self
            .store
            .table(table)
            .ok_or_else(|| ReadError::UnknownTable(table.to_string()))?;
        let limit = limit.min(SCAN_LIMIT_MAX);
        let placement = self.placement.borrow().clone();
        let hosts = placement.hosts(&handle.spec().name);
        let me = self.me();
        let now = self.store.hlc().wall_ms();
        let margin = self.store.skew_margin_ms();
        let mut pages = Vec::new();
        let mut pending = FuturesUnordered::new();
        for route in hosts {
            if route.name == me {
                pages.push(local_scan(&handle, &prefix, limit, now, margin));
            } else {
                pending.push(self.link.scan(
                    route.addr,
                    table.to_string(),
                    prefix.clone(),
                    limit,
                    timeout,
                ));
            }
        }
        let mut partial = false;
        let deadline = Instant::now() + timeout;
        while !pending.is_empty() {
            match tokio::time::timeout_at(deadline, pending.next()).await {
                Ok(Some(Ok(page))) => pages.push(page),
                Ok(Some(Err(_))) => partial = true,
                Ok(None) => break,
                Err(_) => {
                    partial = true;
                    break;
                }
            }
        }
        let hlc = self.store.hlc().clone();
        let mut covered = vec![0u64; usize::from(geoul_placement::SLOT_COUNT) / 64];
        let pages: Vec<ScanPage> = pages
            .into_iter()
            .map(|mut p| {
                p.entries.retain(|e| hlc.check(e.version.ts).is_ok());
                for (c, s) in covered.iter_mut().zip(&p.served) {
                    *c |= *s;
                }
                p
            })
            .collect();
        // A slot no answering node serves (all its replicas syncing or down)
        // may hide keys: say so.
        let partial = partial || covered.iter().any(|w| *w != u64::MAX);
        Ok(merge_pages(pages, limit, now, margin, partial))
    }
}
