//! The sync state of every slot of one table on this node, and the progress of
//! the sync under way.
//!
//! Owns: [`SlotState`], [`SlotStates`] (lock-free reads: every read request
//! checks its slot) and [`SyncProgress`]. Does not own: the transitions (the
//! sync manager decides them from placement and sync results).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use geoul_placement::{Slot, SLOT_COUNT};
use serde::{Deserialize, Serialize};

/// What this node may do with one slot of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Not held and no data kept.
    Absent,
    /// Held; copying from a synced replica. Live writes are applied, reads refused.
    Syncing,
    /// Held and complete: answers reads and queries.
    Synced,
    /// No longer held but complete: keeps answering until every new replica of
    /// the slot is synced (handoff), then drops its data.
    Leaving,
    /// No longer held and never completed (it lost the slot while syncing):
    /// answers nothing, still offers its data to a bootstrap merge, dropped
    /// like a leaving slot.
    Stale,
}

impl SlotState {
    /// Whether a read or query for the slot may be answered here.
    pub fn serves(self) -> bool {
        matches!(self, Self::Synced | Self::Leaving)
    }

    /// The word used in status, metrics and errors.
    pub fn word(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Syncing => "syncing",
            Self::Synced => "synced",
            Self::Leaving => "leaving",
            Self::Stale => "stale",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Absent => 0,
            Self::Syncing => 1,
            Self::Synced => 2,
            Self::Leaving => 3,
            Self::Stale => 4,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Syncing,
            2 => Self::Synced,
            3 => Self::Leaving,
            4 => Self::Stale,
            _ => Self::Absent,
        }
    }

    /// Every state, in status order.
    pub const ALL: [SlotState; 5] = [
        Self::Synced,
        Self::Syncing,
        Self::Leaving,
        Self::Stale,
        Self::Absent,
    ];
}

/// Slot counts per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Synced slots.
    pub synced: u32,
    /// Syncing slots.
    pub syncing: u32,
    /// Leaving slots.
    pub leaving: u32,
    /// Stale slots.
    pub stale: u32,
    /// Absent slots.
    pub absent: u32,
}

impl StateCounts {
    /// The count for `state`.
    pub fn get(&self, state: SlotState) -> u32 {
        match state {
            SlotState::Synced => self.synced,
            SlotState::Syncing => self.syncing,
            SlotState::Leaving => self.leaving,
            SlotState::Stale => self.stale,
            SlotState::Absent => self.absent,
        }
    }
}

/// Progress of the current sync of a table: from the moment some slot started
/// syncing until none is left. Counts cover what was received, whether it was
/// a full copy or a diff.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Slots that needed a sync in this round.
    pub slots_total: u32,
    /// Of those, slots now synced (or no longer held).
    pub slots_done: u32,
    /// Entries received.
    pub entries: u64,
    /// Bytes of keys and values received.
    pub bytes: u64,
    /// Entries the sources held in the slots started so far (to estimate the end).
    pub entries_expected: u64,
    /// When this round started (node clock, Unix ms); 0 when idle.
    pub started_ms: u64,
    /// When the last round finished (Unix ms); 0 if never.
    pub finished_ms: u64,
}

/// The state of every slot of a table, readable without locks.
pub struct SlotStates {
    states: Box<[AtomicU8]>,
    progress: Mutex<SyncProgress>,
    /// Start (Unix ms) of the last anti-entropy round in which a majority of
    /// the table's declared hosts (this node included) answered; 0: never.
    majority_contact_ms: std::sync::atomic::AtomicU64,
    /// Slots in `Syncing`, kept by `set` so the scheduler's idle check does
    /// not scan every slot each tick.
    syncing: std::sync::atomic::AtomicUsize,
}

impl Default for SlotStates {
    fn default() -> Self {
        Self {
            states: (0..SLOT_COUNT).map(|_| AtomicU8::new(0)).collect(),
            progress: Mutex::new(SyncProgress::default()),
            majority_contact_ms: std::sync::atomic::AtomicU64::new(0),
            syncing: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl std::fmt::Debug for SlotStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotStates")
            .field("counts", &self.counts())
            .finish()
    }
}

impl SlotStates {
    /// The state of `slot`.
    pub fn get(&self, slot: Slot) -> SlotState {
        SlotState::from_code(self.states[slot.index()].load(Ordering::Acquire))
    }

    /// Sets the state of `slot`, returning the previous one.
    pub fn set(&self, slot: Slot, state: SlotState) -> SlotState {
        let before =
            SlotState::from_code(self.states[slot.index()].swap(state.code(), Ordering::AcqRel));
        match (before == SlotState::Syncing, state == SlotState::Syncing) {
            (false, true) => {
                self.syncing.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.syncing.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        before
    }

    /// How many slots are `Syncing` (without scanning them).
    pub fn syncing_count(&self) -> usize {
        self.syncing.load(Ordering::Acquire)
    }

    /// Whether a read for `slot` may be answered here.
    pub fn serves(&self, slot: Slot) -> bool {
        self.get(slot).serves()
    }

    /// Slot counts per state.
    pub fn counts(&self) -> StateCounts {
        let mut c = StateCounts::default();
        for s in Slot::all() {
            match self.get(s) {
                SlotState::Synced => c.synced += 1,
                SlotState::Syncing => c.syncing += 1,
                SlotState::Leaving => c.leaving += 1,
                SlotState::Stale => c.stale += 1,
                SlotState::Absent => c.absent += 1,
            }
        }
        c
    }

    /// A bitmap of the slots this node answers reads for (bit `i` of word
    /// `i / 64`).
    pub fn serving_bitmap(&self) -> Vec<u64> {
        let mut bits = vec![0u64; usize::from(SLOT_COUNT) / 64];
        for s in Slot::all() {
            if self.serves(s) {
                bits[s.index() / 64] |= 1u64 << (s.index() % 64);
            }
        }
        bits
    }

    /// When this node last heard from a majority of the table's hosts in an
    /// anti-entropy round (Unix ms, the round's start); `None`: not yet. A
    /// node that heard from a majority recently has also repaired, in that
    /// round, what it had missed: services use it to decide whether a local
    /// copy is fresh enough to answer alone (auth's validation).
    pub fn majority_contact_ms(&self) -> Option<u64> {
        match self.majority_contact_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(ms),
        }
    }

    /// Records a round with majority contact that started at `ms`.
    pub fn note_majority_contact(&self, ms: u64) {
        self.majority_contact_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// The progress of the current (or last) sync round.
    pub fn progress(&self) -> SyncProgress {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Updates the progress.
    pub fn update_progress(&self, f: impl FnOnce(&mut SyncProgress)) {
        f(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_count() {
        let s = SlotStates::default();
        assert_eq!(s.counts().absent, u32::from(SLOT_COUNT));
        let a = Slot::new(5).expect("slot");
        let b = Slot::new(4095).expect("slot");
        for state in SlotState::ALL {
            s.set(a, state);
            assert_eq!(s.get(a), state);
        }
        s.set(a, SlotState::Synced);
        s.set(b, SlotState::Leaving);
        assert!(s.serves(a) && s.serves(b));
        let bits = s.serving_bitmap();
        assert_eq!(bits[0], 1 << 5);
        assert_eq!(bits[63], 1 << 63);
        let c = s.counts();
        assert_eq!((c.synced, c.leaving), (1, 1));
    }

    #[test]
    fn the_syncing_count_follows_every_transition() {
        let s = SlotStates::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            // xorshift: a fixed pseudo-random walk over slots and states.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = Slot::new((x % u64::from(SLOT_COUNT)) as u16).expect("slot");
            let state = SlotState::ALL[((x >> 20) % 5) as usize];
            s.set(slot, state);
        }
        assert_eq!(s.syncing_count(), s.counts().syncing as usize);
        for slot in Slot::all() {
            s.set(slot, SlotState::Syncing);
        }
        assert_eq!(s.syncing_count(), usize::from(SLOT_COUNT));
    }
}
