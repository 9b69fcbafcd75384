//! Anti-entropy and handoff completion, once per period (DESIGN.md §5).
//!
//! Owns: comparing slot digests with every peer that shares slots with this
//! node and repairing the slots that differ (both ways, within a per-period
//! budget of slots and bytes, so repair never starves live traffic); dropping
//! leaving slots once every new replica reports them synced; and wiping a
//! table that lost touch with its peers for longer than the tombstone grace.
//! Does not own: per-slot comparison (`reconcile`) or slot syncs (`manager`).
//!
//! Expiry never causes repair traffic: an entry hashes the same before and
//! after it expires and is swept, and entries about to be collected are left
//! out of bucket comparisons (`LocalStore::gc_exclude_before_ms`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use geoul_placement::Slot;

use crate::local::TableHandle;
use crate::messages::ReplicaLink;
use crate::placement::Placement;
use crate::sync::manager::Inner;
use crate::sync::metrics::SyncMetrics;
use crate::sync::protocol::{SyncRequest, SyncResponse};
use crate::sync::reconcile::Mode;
use crate::sync::state::SlotState;

pub(crate) async fn run_forever<L: ReplicaLink>(inner: Arc<Inner<L>>) {
    let mut tick = tokio::time::interval(inner.config.anti_entropy_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut confirmed_once: HashSet<(String, Slot)> = HashSet::new();
    loop {
        tick.tick().await;
        let p = inner.placement();
        for handle in inner.store.tables() {
            if !p.knows(handle.spec().name.as_str()) {
                continue;
            }
            confirm_handoffs(&inner, &p, &handle, &mut confirmed_once).await;
            repair(&inner, &p, &handle).await;
        }
    }
}

/// Drops leaving and stale slots whose current replicas all reported synced
/// on two consecutive periods (the second gives readers whose view lags a
/// period to learn the new owners); marks data found in absent slots (late
/// writes) as stale so it is dropped too.
async fn confirm_handoffs<L: ReplicaLink>(
    inner: &Inner<L>,
    p: &Placement,
    handle: &TableHandle,
    confirmed_once: &mut HashSet<(String, Slot)>,
) {
    let table = handle.spec().name.clone();
    let states = handle.sync();
    {
        let t = handle.lock();
        for slot in Slot::all() {
            if states.get(slot) == SlotState::Absent
                && !p.holds(&table, slot)
                && t.slot_len(slot) > 0
            {
                states.set(slot, SlotState::Stale);
            }
        }
    }
    let me = p.me();
    let mut asks: BTreeMap<SocketAddr, Vec<Slot>> = BTreeMap::new();
    let mut needed: HashMap<Slot, usize> = HashMap::new();
    for slot in Slot::all() {
        if !matches!(states.get(slot), SlotState::Leaving | SlotState::Stale) {
            continue;
        }
        let replicas: Vec<_> = p
            .replicas(&table, slot)
            .into_iter()
            .filter(|r| r.name != me)
            .collect();
        if replicas.is_empty() {
            continue;
        }
        needed.insert(slot, replicas.len());
        for r in replicas {
            asks.entry(r.addr).or_default().push(slot);
        }
    }
    let mut confirmed: HashMap<Slot, usize> = HashMap::new();
    for (addr, slots) in asks {
        let request = SyncRequest::Digests {
            table: table.clone(),
            slots,
        };
        let Ok(SyncResponse::Digests(digests)) = inner
            .link
            .sync(addr, request, inner.config.request_timeout)
            .await
        else {
            continue;
        };
        for d in digests {
            if d.state == SlotState::Synced {
                *confirmed.entry(d.slot).or_default() += 1;
            }
        }
    }
    let mut dropped = 0u64;
    for (slot, need) in needed {
        let key = (table.clone(), slot);
        if confirmed.get(&slot).copied().unwrap_or(0) < need {
            confirmed_once.remove(&key);
            continue;
        }
        if !matches!(states.get(slot), SlotState::Leaving | SlotState::Stale) {
            confirmed_once.remove(&key);
            continue;
        }
        if confirmed_once.insert(key.clone()) {
            continue;
        }
        confirmed_once.remove(&key);
        let keys = handle.lock().drop_slot(slot);
        states.set(slot, SlotState::Absent);
        if let Err(e) = inner.store.forget(handle, &keys) {
            tracing::warn!(table, %slot, error = %e, "dropping a handed-off slot from disk failed");
        }
        dropped += 1;
    }
    if dropped > 0 {
        SyncMetrics::of(&inner.metrics.handoffs, &table).inc_by(dropped);
        tracing::info!(
            table,
            slots = dropped,
            "handoff complete; dropped slots no longer held"
        );
    }
}

/// Compares digests with every peer sharing synced slots and repairs what
/// differs, within the period's budget.
async fn repair<L: ReplicaLink>(inner: &Inner<L>, p: &Placement, handle: &TableHandle) {
    let table = handle.spec().name.clone();
    let now = inner.store.hlc().wall_ms();
    let me = p.me().to_string();
    let peers: Vec<_> = p
        .hosts(&table)
        .into_iter()
        .filter(|h| h.name != me)
        .collect();
    let previous = inner
        .last_contact
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&table)
        .copied()
        .unwrap_or(now);
    let limit = u64::try_from(inner.config.wipe_after().as_millis()).unwrap_or(u64::MAX);
    if peers.is_empty() {
        if p.declared_hosts(&table) <= 1 {
            // Alone by design: nothing to diverge from.
            inner.touch(&table, now);
            handle.sync().note_majority_contact(now);
        } else if now.saturating_sub(previous) > limit {
            // Cut off from every peer for too long: what we hold may miss
            // deletes that peers are about to collect.
            quarantine(inner, p, handle, now.saturating_sub(previous));
        }
        return;
    }
    let mut slots_left = inner.config.anti_entropy_slots;
    let mut bytes_left = inner.config.anti_entropy_bytes;
    let mut contact = false;
    // Ask every peer at once, with a timeout short enough that one silent
    // peer cannot stall the round. An empty slot list still proves contact
    // (a `Factor(1)` table shares no slot with anyone).
    let timeout = inner
        .config
        .request_timeout
        .min(inner.config.anti_entropy_period * 2);
    let asks = peers.iter().map(|peer| {
        let shared: Vec<Slot> = Slot::all()
            .filter(|s| handle.sync().get(*s) == SlotState::Synced)
            .filter(|s| p.is_replica(&table, *s, &peer.name))
            .collect();
        let request = SyncRequest::Digests {
            table: table.clone(),
            slots: shared,
        };
        inner.link.sync(peer.addr, request, timeout)
    });
    let replies = futures::future::join_all(asks).await;
    let answered = replies
        .iter()
        .filter(|r| matches!(r, Ok(SyncResponse::Digests(_))))
        .count();
    let majority = (answered + 1) * 2 > p.declared_hosts(&table).max(1);
    for (peer, reply) in peers.iter().zip(replies) {
        let Ok(SyncResponse::Digests(theirs)) = reply else {
            continue;
        };
        contact = true;
        SyncMetrics::of(&inner.metrics.ae_exchanges, &table).inc();
        let differing: Vec<Slot> = {
            let t = handle.lock();
            theirs
                .iter()
                // A peer still syncing a slot is not merged from: its copy may be
                // older than the tombstone grace (it is repaired by its own sync).
                .filter(|d| d.state.serves() && d.digest != t.slot_digest(d.slot))
                .map(|d| d.slot)
                .collect()
        };
        for slot in differing {
            if slots_left == 0 || bytes_left == 0 {
                break;
            }
            slots_left -= 1;
            let r = inner.reconcile(handle, slot, peer, Mode::Repair);
            match r.run(&mut |_, _| {}).await {
                Ok(t) => {
                    let moved = t.bytes_in + t.bytes_out;
                    bytes_left = bytes_left.saturating_sub(moved);
                    if t.entries_in + t.entries_out > 0 {
                        SyncMetrics::of(&inner.metrics.ae_mismatches, &table).inc();
                    }
                    SyncMetrics::of(&inner.metrics.ae_entries_in, &table).inc_by(t.entries_in);
                    SyncMetrics::of(&inner.metrics.ae_entries_out, &table).inc_by(t.entries_out);
                    SyncMetrics::of(&inner.metrics.ae_bytes, &table).inc_by(moved);
                }
                Err(e) => {
                    tracing::debug!(table, %slot, peer = %peer.name, error = %e, "repair failed")
                }
            }
        }
    }
    if majority && !inner.is_quarantined(&table) {
        // Marked after the repairs: what this round found missing is here.
        handle.sync().note_majority_contact(now);
    }
    // `now` is the round's start: a slow round is not a gap.
    let away = now.saturating_sub(previous);
    match (contact, away > limit || inner.is_quarantined(&table)) {
        (true, true) => {
            wipe(inner, p, handle, away);
            inner.touch(&table, now);
        }
        (true, false) => inner.touch(&table, inner.store.hlc().wall_ms()),
        (false, true) => quarantine(inner, p, handle, away),
        (false, false) => {}
    }
}

/// Stops serving the whole table, keeping its data, until a peer is heard
/// from again; then it is wiped and synced ([`wipe`]). Keeping the data means
/// nothing is lost if the peers never come back (an operator can still read
/// the disk); not serving it means no peer ever merges it back either
/// (anti-entropy merges only serving copies) and the scheduler does not sync
/// into it.
fn quarantine<L: ReplicaLink>(inner: &Inner<L>, p: &Placement, handle: &TableHandle, away_ms: u64) {
    let table = handle.spec().name.clone();
    if !inner.quarantine(&table) {
        return;
    }
    tracing::warn!(
        table,
        away_ms,
        "out of touch with every peer for longer than the tombstone grace allows; \
         no longer serving this table, will wipe and re-sync it at the first contact"
    );
    for slot in Slot::all() {
        let next = match (p.holds(&table, slot), handle.lock().slot_len(slot) > 0) {
            (true, _) => SlotState::Syncing,
            (false, true) => SlotState::Stale,
            (false, false) => SlotState::Absent,
        };
        handle.sync().set(slot, next);
    }
}

/// Forgets the whole table and syncs every held slot again: after a gap longer
/// than the tombstone grace, merging could resurrect collected deletes.
fn wipe<L: ReplicaLink>(inner: &Inner<L>, p: &Placement, handle: &TableHandle, away_ms: u64) {
    let table = handle.spec().name.clone();
    tracing::warn!(
        table,
        away_ms,
        "back in touch after longer than the tombstone grace allows; wiping and re-syncing"
    );
    for slot in Slot::all() {
        let keys = handle.lock().drop_slot(slot);
        if let Err(e) = inner.store.forget(handle, &keys) {
            tracing::warn!(table, error = %e, "wiping from disk failed");
        }
        let next = if p.holds(&table, slot) {
            SlotState::Syncing
        } else {
            SlotState::Absent
        };
        handle.sync().set(slot, next);
    }
    let now = inner.store.hlc().wall_ms();
    handle.sync().update_progress(|pr| {
        *pr = crate::sync::SyncProgress {
            started_ms: now,
            slots_total: handle.sync().counts().syncing,
            ..Default::default()
        };
    });
    SyncMetrics::of(&inner.metrics.wipes, &table).inc();
    inner.release(&table);
}
