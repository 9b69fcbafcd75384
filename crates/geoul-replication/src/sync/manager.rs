//! The sync manager: follows placement, moves slots between states, and runs
//! slot syncs with bounded concurrency (DESIGN.md §5, "full sync").
//!
//! Owns: the state transitions on placement changes, the sync scheduler, and
//! the choice of sources. Does not own: comparing a slot with one peer
//! (`reconcile`), anti-entropy and handoff completion (`anti_entropy`).
//!
//! Transitions when placement changes (held = this node is a replica now):
//!
//! | state   | held      | not held                      |
//! |---------|-----------|-------------------------------|
//! | absent  | syncing   | absent                        |
//! | syncing | syncing   | stale                         |
//! | synced  | synced    | leaving                       |
//! | leaving | syncing   | leaving                       |
//! | stale   | syncing   | stale                         |
//!
//! A syncing slot copies from a replica that serves it (synced or leaving),
//! trying current replicas first, then every other host of the table. If no
//! node serves it — a new cluster, or every holder restarted — the node may
//! merge from every reachable host and declare it synced, but only after
//! `bootstrap_wait` and only while it sees a majority of the table's known
//! hosts alive: a node cut off on its own never declares itself authoritative
//! (DESIGN.md §13, "an empty or new node is never authoritative").

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use geoul_placement::Slot;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::local::{LocalStore, TableHandle};
use crate::messages::ReplicaLink;
use crate::placement::{Placement, Route};
use crate::sync::config::SyncConfig;
use crate::sync::metrics::SyncMetrics;
use crate::sync::reconcile::{Mode, Reconcile, ReconcileError, Transfer};
use crate::sync::state::SlotState;

/// How often the scheduler looks for slots to start.
const SCHEDULE_TICK: Duration = Duration::from_millis(50);
/// How long a failed slot sync waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(300);
/// How often syncing slots are compared with every host in one batch (and at
/// once after a placement change).
const QUICK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Shared by the scheduler and anti-entropy tasks.
pub(crate) struct Inner<L: ReplicaLink> {
    pub(crate) store: Arc<LocalStore>,
    pub(crate) link: Arc<L>,
    pub(crate) placement: watch::Receiver<Arc<Placement>>,
    pub(crate) config: SyncConfig,
    pub(crate) metrics: SyncMetrics,
    pub(crate) started: Instant,
    /// Per table: when a peer last answered anti-entropy (Unix ms).
    pub(crate) last_contact: Mutex<HashMap<String, u64>>,
    /// Tables out of touch past the grace: not served, not synced, wiped at
    /// the first contact.
    quarantined: Mutex<HashSet<String>>,
}

/// Told whether this node is still syncing some slot of a table, on every
/// change (the node advertises it in membership metadata).
pub type SyncingSink = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// Runs sync for every table of a store. Dropping it stops its tasks.
pub struct SyncManager {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    last_contact: Arc<dyn Fn() -> Option<u64> + Send + Sync>,
}

impl Drop for SyncManager {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl SyncManager {
    /// Starts the scheduler and anti-entropy for `store`, reaching peers via
    /// `link`, following `placement`. With `quarantine_all` (the node was away
    /// longer than the tombstone grace allows) every table starts quarantined:
    /// kept, not served, wiped at the first contact with a peer.
    pub fn spawn<L: ReplicaLink>(
        store: Arc<LocalStore>,
        link: Arc<L>,
        placement: watch::Receiver<Arc<Placement>>,
        config: SyncConfig,
        metrics: SyncMetrics,
        on_syncing: SyncingSink,
        quarantine_all: bool,
    ) -> Self {
        let now = store.hlc().wall_ms();
        let inner = Arc::new(Inner {
            store,
            link,
            placement,
            config,
            metrics,
            started: Instant::now(),
            last_contact: Mutex::new(HashMap::new()),
            quarantined: Mutex::new(HashSet::new()),
        });
        if quarantine_all {
            for t in inner.store.tables() {
                inner.quarantine(t.spec().name.as_str());
                for slot in Slot::all() {
                    let held = t.lock().slot_len(slot) > 0;
                    t.sync().set(
                        slot,
                        if held {
                            SlotState::Stale
                        } else {
                            SlotState::Absent
                        },
                    );
                }
            }
        }
        for t in inner.store.tables() {
            inner.touch(t.spec().name.as_str(), now);
        }
        let weak = Arc::downgrade(&inner);
        let last_contact = Arc::new(move || {
            let inner = weak.upgrade()?;
            let map = inner
                .last_contact
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.values().min().copied()
        });
        let tasks = vec![
            tokio::spawn(schedule_forever(inner.clone(), on_syncing)),
            tokio::spawn(crate::sync::anti_entropy::run_forever(inner)),
        ];
        Self {
            tasks,
            last_contact,
        }
    }

    /// The oldest "last heard from a peer" time over all tables (Unix ms), for
    /// the node to persist: a node restarting after longer than the tombstone
    /// grace must be wiped.
    pub fn last_contact_ms(&self) -> Option<u64> {
        (self.last_contact)()
    }

    /// [`Self::last_contact_ms`] as a function a background task can keep.
    pub fn last_contact_fn(&self) -> Arc<dyn Fn() -> Option<u64> + Send + Sync> {
        self.last_contact.clone()
    }
}

impl<L: ReplicaLink> Inner<L> {
    /// Marks `table` quarantined; `false` if it already was.
    pub(crate) fn quarantine(&self, table: &str) -> bool {
        self.quarantined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table.to_string())
    }

    pub(crate) fn release(&self, table: &str) {
        self.quarantined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(table);
    }

    pub(crate) fn is_quarantined(&self, table: &str) -> bool {
        self.quarantined
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(table)
    }

    pub(crate) fn touch(&self, table: &str, now_ms: u64) {
        self.last_contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(table.to_string(), now_ms);
    }

    pub(crate) fn placement(&self) -> Arc<Placement> {
        self.placement.borrow().clone()
    }

    /// Moves every slot of every table to its state under `p`.
    fn apply_placement(&self, p: &Placement) {
        let now = self.store.hlc().wall_ms();
        for handle in self.store.tables() {
            let table = handle.spec().name.clone();
            if !p.knows(&table) || self.is_quarantined(&table) {
                continue;
            }
            let states = handle.sync();
            let mut started = 0u32;
            let mut abandoned = 0u32;
            for slot in Slot::all() {
                let held = p.holds(&table, slot);
                let next = match (states.get(slot), held) {
                    (SlotState::Absent | SlotState::Leaving | SlotState::Stale, true) => {
                        started += 1;
                        SlotState::Syncing
                    }
                    (SlotState::Syncing, false) => {
                        abandoned += 1;
                        SlotState::Stale
                    }
                    (SlotState::Synced, false) => SlotState::Leaving,
                    (state, _) => state,
                };
                states.set(slot, next);
            }
            if started > 0 || abandoned > 0 {
                states.update_progress(|pr| {
                    if pr.slots_done >= pr.slots_total {
                        *pr = crate::sync::SyncProgress {
                            started_ms: now,
                            ..Default::default()
                        };
                    }
                    pr.slots_total += started;
                    pr.slots_done += abandoned;
                    if pr.slots_done >= pr.slots_total {
                        pr.finished_ms = now;
                    }
                });
                tracing::info!(
                    table,
                    started,
                    abandoned,
                    "placement changed; slots to sync"
                );
            }
        }
    }

    /// The nodes to copy `slot` from: its current replicas, then every other
    /// host of the table (a leaving holder may be anywhere); alive ones first.
    fn sources(&self, p: &Placement, table: &str, slot: Slot) -> Vec<Route> {
        let me = p.me().to_string();
        let mut out: Vec<Route> = p
            .replicas(table, slot)
            .into_iter()
            .filter(|r| r.name != me)
            .collect();
        for h in p.hosts(table) {
            if h.name != me && !out.iter().any(|r| r.name == h.name) {
                out.push(h);
            }
        }
        out.sort_by_key(|r| !r.alive);
        out
    }

    /// How many serving copies a syncing slot must merge before it is synced:
    /// enough that every set of replicas that can acknowledge a write at the
    /// table's ack level includes one of them (n − acks + 1, this node not
    /// counted). Copying from a single replica is not enough: it may have
    /// missed a write that a quorum without it acknowledged.
    fn sources_needed(&self, p: &Placement, handle: &TableHandle, slot: Slot) -> usize {
        let table = handle.spec().name.as_str();
        let n = p.replicas(table, slot).len();
        let acks = handle.spec().options.write_ack.required(n);
        let others = if p.holds(table, slot) {
            n.saturating_sub(1)
        } else {
            n
        };
        (n + 1).saturating_sub(acks).min(others).max(1)
    }

    fn bootstrap_allowed(&self, p: &Placement, table: &str) -> bool {
        let alive = p.hosts(table).len();
        self.started.elapsed() >= self.config.bootstrap_wait && alive * 2 > p.declared_hosts(table)
    }

    pub(crate) fn reconcile<'a>(
        &'a self,
        handle: &'a TableHandle,
        slot: Slot,
        peer: &Route,
        mode: Mode,
    ) -> Reconcile<'a, L> {
        Reconcile {
            link: self.link.as_ref(),
            store: &self.store,
            handle,
            peer: peer.addr,
            slot,
            mode,
            timeout: self.config.request_timeout,
        }
    }

    /// Syncs one slot; `Ok` once it holds everything a serving replica holds.
    async fn sync_slot(&self, handle: &TableHandle, slot: Slot) -> Result<Transfer, String> {
        let table = handle.spec().name.clone();
        let p = self.placement();
        if !p.complete() {
            return Err("waiting for every member's metadata".into());
        }
        let sources = self.sources(&p, &table, slot);
        let entries = SyncMetrics::of(&self.metrics.sync_entries, &table);
        let mut on_page = |n: u64, b: u64| {
            entries.inc_by(n);
            handle.sync().update_progress(|pr| {
                pr.entries += n;
                pr.bytes += b;
            });
        };
        let mut busy = false;
        let mut total = Transfer::default();
        let needed = self.sources_needed(&p, handle, slot);
        let mut merged: Vec<&str> = Vec::new();
        for source in &sources {
            let r = self.reconcile(handle, slot, source, Mode::FromServing);
            match r.run(&mut on_page).await {
                Ok(t) => {
                    total.add(t);
                    merged.push(&source.name);
                    // After the first copy the others cost only their differences.
                    if merged.len() >= needed {
                        return Ok(total);
                    }
                }
                Err(ReconcileError::Busy) => busy = true,
                Err(e) => {
                    tracing::debug!(table, %slot, source = %source.name, error = %e, "source unusable")
                }
            }
        }
        if busy {
            return Err("serving sources are busy".into());
        }
        if merged.is_empty() && !self.bootstrap_allowed(&p, &table) {
            return Err(
                "no synced replica reachable; waiting (bootstrap needs a majority of hosts alive)"
                    .into(),
            );
        }
        // Too few serving copies (other replicas are syncing too, or none
        // serves at all): merge every copy any live host holds, whatever its
        // state. That union holds every write any replica acknowledged; a copy
        // older than the tombstone grace cannot be among them (such a node
        // wipes itself first).
        for source in sources
            .iter()
            .filter(|s| s.alive && !merged.contains(&s.name.as_str()))
        {
            let r = self.reconcile(handle, slot, source, Mode::FromAny);
            match r.run(&mut on_page).await {
                Ok(t) => total.add(t),
                Err(e) => return Err(format!("merging from {}: {e}", source.name)),
            }
        }
        if !merged.is_empty() {
            return Ok(total);
        }
        SyncMetrics::of(&self.metrics.bootstraps, &table).inc();
        Ok(total)
    }

    /// Compares every syncing slot with every other host in one request per
    /// host. A slot equal to a serving copy is synced at once (a restart with
    /// unchanged data, an empty table); so is one no host serves, when bootstrap
    /// is allowed and every host's copy is empty or equal to ours (a new
    /// cluster). Returns the slots nobody serves, which a slot sync could not
    /// copy from, so the scheduler leaves them alone until the next check.
    async fn quick_check(&self, in_flight: &HashSet<(String, Slot)>) -> HashSet<(String, Slot)> {
        let mut unserved = HashSet::new();
        let p = self.placement();
        if !p.complete() {
            return unserved;
        }
        for handle in self.store.tables() {
            let table = handle.spec().name.clone();
            if self.is_quarantined(&table) {
                continue;
            }
            let syncing: Vec<Slot> = Slot::all()
                .filter(|s| handle.sync().get(*s) == SlotState::Syncing)
                .filter(|s| !in_flight.contains(&(table.clone(), *s)))
                .collect();
            if syncing.is_empty() || !p.knows(&table) {
                continue;
            }
            let hosts: Vec<Route> = p
                .hosts(&table)
                .into_iter()
                .filter(|h| h.name != p.me())
                .collect();
            let mut answers: HashMap<Slot, Vec<crate::sync::SlotDigest>> = HashMap::new();
            let mut all_answered = true;
            let asks = hosts.iter().map(|h| {
                let request = crate::sync::SyncRequest::Digests {
                    table: table.clone(),
                    slots: syncing.clone(),
                };
                self.link.sync(h.addr, request, self.config.request_timeout)
            });
            let bytes = SyncMetrics::of(&self.metrics.sync_bytes, &table);
            for reply in futures::future::join_all(asks).await {
                match reply {
                    Ok(crate::sync::SyncResponse::Digests(digests)) => {
                        // Slot, state, digest; and the slot in the request.
                        bytes.inc_by(digests.len() as u64 * 14);
                        for d in digests {
                            answers.entry(d.slot).or_default().push(d);
                        }
                    }
                    _ => all_answered = false,
                }
            }
            let bootstrap = all_answered && self.bootstrap_allowed(&p, &table);
            for slot in syncing {
                let mine = handle.lock().slot_digest(slot);
                let theirs = answers.remove(&slot).unwrap_or_default();
                let serving = theirs.iter().any(|d| d.state.serves());
                let equal_serving = theirs
                    .iter()
                    .filter(|d| d.state.serves() && d.digest == mine)
                    .count()
                    >= self.sources_needed(&p, &handle, slot);
                let nothing_to_merge = theirs.iter().all(|d| d.digest == mine || d.digest == 0);
                // Too few serving copies, but every host answered with a copy
                // equal to ours: merging every live copy (what a slot sync
                // would do next) could add nothing. The common case: a new
                // cluster where one node bootstrapped and the others are empty.
                let every_copy_equal = all_answered
                    && theirs.len() == hosts.len()
                    && theirs.iter().all(|d| d.digest == mine);
                if equal_serving
                    || (serving && every_copy_equal)
                    || (!serving && bootstrap && nothing_to_merge)
                {
                    if !serving {
                        SyncMetrics::of(&self.metrics.bootstraps, &table).inc();
                    }
                    self.finish(&handle, slot, Transfer::default());
                } else if !serving && !bootstrap {
                    unserved.insert((table.clone(), slot));
                }
            }
        }
        unserved
    }

    fn finish(&self, handle: &TableHandle, slot: Slot, transfer: Transfer) {
        let table = handle.spec().name.as_str();
        if self.is_quarantined(table) {
            // Quarantined while this copy ran: it may sit on stale data.
            return;
        }
        SyncMetrics::of(&self.metrics.sync_bytes, table)
            .inc_by(transfer.bytes_in + transfer.bytes_out);
        let states = handle.sync();
        match states.get(slot) {
            SlotState::Syncing => {
                states.set(slot, SlotState::Synced);
            }
            // Lost the slot while copying, but the copy is complete.
            SlotState::Stale => {
                states.set(slot, SlotState::Leaving);
                return;
            }
            _ => return,
        }
        SyncMetrics::of(&self.metrics.slots_synced, table).inc();
        let now = self.store.hlc().wall_ms();
        states.update_progress(|pr| {
            pr.slots_done += 1;
            pr.entries_expected += transfer.source_entries;
            if pr.slots_done >= pr.slots_total {
                pr.finished_ms = now;
            }
        });
    }
}

async fn schedule_forever<L: ReplicaLink>(inner: Arc<Inner<L>>, on_syncing: SyncingSink) {
    let mut advertised: HashMap<String, bool> = HashMap::new();
    let mut placement = inner.placement.clone();
    let mut tick = tokio::time::interval(SCHEDULE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: JoinSet<(String, Slot, Result<Transfer, String>)> = JoinSet::new();
    let mut in_flight: HashSet<(String, Slot)> = HashSet::new();
    let mut retry_at: HashMap<(String, Slot), Instant> = HashMap::new();
    let mut unserved: HashSet<(String, Slot)> = HashSet::new();
    let mut last_quick: Option<Instant> = None;
    let current = placement.borrow_and_update().clone();
    inner.apply_placement(&current);
    loop {
        tokio::select! {
            changed = placement.changed() => {
                if changed.is_err() {
                    return;
                }
                let p = placement.borrow_and_update().clone();
                inner.apply_placement(&p);
                // A new placement may offer new sources: retry at once.
                retry_at.clear();
                last_quick = None;
            }
            _ = tick.tick() => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((table, slot, result)) = done else { continue };
                in_flight.remove(&(table.clone(), slot));
                let Some(handle) = inner.store.table(&table) else { continue };
                match result {
                    Ok(transfer) => inner.finish(&handle, slot, transfer),
                    Err(reason) => {
                        SyncMetrics::of(&inner.metrics.sync_retries, &table).inc();
                        tracing::debug!(table, %slot, reason, "slot sync will be retried");
                        retry_at.insert((table, slot), Instant::now() + RETRY_AFTER);
                    }
                }
                // Fall through: a finished slot frees room for the next one now,
                // not at the next tick.
            }
        }
        for handle in inner.store.tables() {
            let syncing = handle.sync().syncing_count() > 0;
            let name = handle.spec().name.clone();
            if advertised.get(&name) != Some(&syncing) {
                on_syncing(&name, syncing);
                advertised.insert(name, syncing);
            }
        }
        let now = Instant::now();
        retry_at.retain(|_, at| *at > now);
        if last_quick.is_none_or(|at| now.saturating_duration_since(at) >= QUICK_CHECK_EVERY) {
            last_quick = Some(now);
            unserved = inner.quick_check(&in_flight).await;
        }
        let mut room = inner.config.concurrency.saturating_sub(running.len());
        if room == 0 || !inner.placement().complete() {
            continue;
        }
        'tables: for handle in inner.store.tables() {
            let table = handle.spec().name.clone();
            if inner.is_quarantined(&table) || handle.sync().syncing_count() == 0 {
                continue;
            }
            for slot in Slot::all() {
                if room == 0 {
                    break 'tables;
                }
                let key = (table.clone(), slot);
                if handle.sync().get(slot) != SlotState::Syncing
                    || in_flight.contains(&key)
                    || retry_at.contains_key(&key)
                    || unserved.contains(&key)
                {
                    continue;
                }
                in_flight.insert(key);
                room -= 1;
                let inner = inner.clone();
                let handle = handle.clone();
                let table = table.clone();
                running.spawn(async move {
                    let result = inner.sync_slot(&handle, slot).await;
                    (table, slot, result)
                });
            }
        }
    }
}
