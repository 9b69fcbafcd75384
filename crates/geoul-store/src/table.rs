//! One table's local copy: entries partitioned by slot, last-writer-wins apply,
//! read-time expiry, a bounded sweeper, and a digest per slot kept up to date on
//! every change.
//!
//! Owns: the in-memory state of a table on one node, including keeping its
//! secondary indexes (`index`) in step with every change. Does not own:
//! deciding versions (the write path does, with the HLC), replication, or disk
//! (the caller persists what [`Table::apply`] reports as changed).
//!
//! Expiry: an entry is visible while `now + skew_margin < expires_at`, so it is
//! never returned after its expiry minus the margin (DESIGN.md §4 line 5). Once
//! `now >= expires_at + skew_margin` every replica agrees it is gone and the
//! sweeper drops its value but keeps its version and expiry as a marker: the
//! marker hashes exactly like the live entry (the digest does not depend on who
//! swept first), and it stops an older version of the key, arriving late from a
//! replica that missed the expiring write, from coming back to life.

use std::collections::HashMap;
use std::time::Duration;

use geoul_placement::{slot_of, Slot, SLOT_COUNT};

use crate::entry::{digest_hash, Entry, Key, Touch, Version};
use crate::index::Indexes;
use crate::options::TableSpec;
use crate::value::EncodedDoc;

/// Most entries one prefix scan returns: scans are for operators and tools, not
/// for serving traffic.
pub const SCAN_LIMIT_MAX: usize = 1000;

#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) version: Version,
    /// 0 = never.
    pub(crate) expires_at_ms: u64,
    pub(crate) value: Option<EncodedDoc>,
}

impl Stored {
    pub(crate) fn expires(&self) -> Option<u64> {
        (self.expires_at_ms != 0).then_some(self.expires_at_ms)
    }

    pub(crate) fn freshness(&self) -> (Version, u64) {
        crate::entry::freshness(self.version, self.expires())
    }

    /// An explicit delete (a swept expired entry keeps its expiry instead).
    pub(crate) fn is_delete(&self) -> bool {
        self.value.is_none() && self.expires_at_ms == 0
    }

    fn bytes(&self, key: &Key) -> u64 {
        (key.as_bytes().len() + self.value.as_ref().map_or(0, EncodedDoc::len)) as u64
    }
}

#[derive(Default)]
pub(crate) struct SlotData {
    pub(crate) entries: HashMap<Key, Stored>,
    pub(crate) digest: u64,
}

/// What [`Table::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The key was unknown; the entry was stored.
    Inserted,
    /// An older version was replaced.
    Replaced {
        /// The version that lost.
        previous: Version,
    },
    /// An equal or newer version is already here; nothing changed.
    Stale,
}

impl Applied {
    /// Whether the table changed (and the change must be persisted).
    pub fn changed(self) -> bool {
        !matches!(self, Applied::Stale)
    }
}

/// Why a replica did not take a [`Touch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TouchRefused {
    /// It does not hold that version (sync will bring the entry).
    #[error("this replica does not hold that version")]
    Missing,
    /// The entry already expired here.
    #[error("the entry already expired on this replica")]
    Expired,
}

/// Remaining lifetime of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No visible entry.
    Missing,
    /// Visible, never expires.
    Forever,
    /// Visible for this long (already net of the skew margin).
    Remaining(Duration),
}

/// Counts of a table's contents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Entries holding a value (expired-but-unswept included).
    pub values: u64,
    /// Deletes and swept expiry markers.
    pub markers: u64,
    /// Key and value bytes held.
    pub bytes: u64,
}

impl TableStats {
    /// Forgets `old`, stored under `key`, from the counts.
    pub(crate) fn uncount(&mut self, old: &Stored, key: &Key) {
        self.bytes = self.bytes.saturating_sub(old.bytes(key));
        if old.value.is_some() {
            self.values = self.values.saturating_sub(1);
        } else {
            self.markers = self.markers.saturating_sub(1);
        }
    }
}

/// What one sweeper pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepStats {
    /// Slots visited.
    pub slots: u32,
    /// Entries looked at.
    pub examined: u64,
    /// Values dropped because they expired.
    pub expired: u64,
}

/// A visible entry, borrowed from the table.
#[derive(Clone, Copy, Debug)]
pub struct Visible<'a> {
    /// Its version.
    pub version: Version,
    /// Its expiry, if any.
    pub expires_at_ms: Option<u64>,
    /// Its document.
    pub value: &'a EncodedDoc,
}

/// A table's local copy.
pub struct Table {
    spec: TableSpec,
    skew_margin_ms: u64,
    slots: Box<[SlotData]>,
    pub(crate) indexes: Indexes,
    pub(crate) stats: TableStats,
    sweep_cursor: u16,
    gc_cursor: u16,
}

impl Table {
    /// An empty table. `skew_margin` is the clock-skew allowance used for expiry.
    pub fn new(spec: TableSpec, skew_margin: Duration) -> Self {
        Self {
            skew_margin_ms: u64::try_from(skew_margin.as_millis()).unwrap_or(u64::MAX),
            slots: (0..SLOT_COUNT).map(|_| SlotData::default()).collect(),
            indexes: Indexes::new(&spec.options.indexes),
            stats: TableStats::default(),
            sweep_cursor: 0,
            gc_cursor: 0,
            spec,
        }
    }

    pub(crate) fn next_gc_slot(&mut self) -> Slot {
        let slot = Slot::new(self.gc_cursor).unwrap_or_else(|| slot_of(b""));
        self.gc_cursor = (self.gc_cursor + 1) % SLOT_COUNT;
        slot
    }

    /// The table's declaration.
    pub fn spec(&self) -> &TableSpec {
        &self.spec
    }

    pub(crate) fn slot_mut(&mut self, slot: Slot) -> &mut SlotData {
        &mut self.slots[usize::from(slot.get())]
    }

    pub(crate) fn slot(&self, slot: Slot) -> &SlotData {
        &self.slots[usize::from(slot.get())]
    }

    /// Keeps the highest version of `entry.key`. Idempotent and commutative:
    /// replicas that applied the same entries in any order hold the same state.
    pub fn apply(&mut self, entry: Entry) -> Applied {
        let slot = slot_of(entry.key.as_bytes());
        let new = Stored {
            version: entry.version,
            expires_at_ms: entry.expires_at_ms.unwrap_or(0),
            value: entry.value,
        };
        let new_hash = digest_hash(&entry.key, new.version, new.expires(), new.is_delete());
        let new_bytes = new.bytes(&entry.key);
        let new_is_value = new.value.is_some();
        // Through the field, not `slot_mut`: the stored entry stays borrowed
        // while the stats and the indexes (other fields) change.
        let data = &mut self.slots[usize::from(slot.get())];
        let (outcome, old, stored) = match data.entries.get_mut(&entry.key) {
            // One version with a later expiry is newer too (a touch reached
            // the sender but not us), so repair converges on the renewal.
            Some(old) if old.freshness() >= new.freshness() => return Applied::Stale,
            Some(old) => {
                let previous = old.version;
                let replaced = std::mem::replace(old, new);
                (Applied::Replaced { previous }, Some(replaced), &*old)
            }
            None => {
                let stored = data.entries.entry(entry.key.clone()).or_insert(new);
                (Applied::Inserted, None, &*stored)
            }
        };
        data.digest = data.digest.wrapping_add(new_hash);
        if let Some(old) = &old {
            let old_hash = digest_hash(&entry.key, old.version, old.expires(), old.is_delete());
            data.digest = data.digest.wrapping_sub(old_hash);
            self.stats.uncount(old, &entry.key);
        }
        self.stats.bytes += new_bytes;
        if new_is_value {
            self.stats.values += 1;
        } else {
            self.stats.markers += 1;
        }
        // Tables without indexes never read a field.
        if !self.indexes.is_empty() {
            let old_value = old.as_ref().and_then(|o| o.value.as_ref());
            self.indexes
                .update(&entry.key, old_value, stored.value.as_ref());
        }
        outcome
    }

    fn visible(&self, stored: &Stored, now_ms: u64) -> bool {
        stored.value.is_some()
            && (stored.expires_at_ms == 0
                || now_ms.saturating_add(self.skew_margin_ms) < stored.expires_at_ms)
    }

    /// The entry for `key` if it is visible at `now_ms` (not deleted, not expired
    /// minus the skew margin).
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Visible<'_>> {
        let key = Key::new(key).ok()?;
        let stored = self.slot(slot_of(key.as_bytes())).entries.get(&key)?;
        if !self.visible(stored, now_ms) {
            return None;
        }
        stored.value.as_ref().map(|value| Visible {
            version: stored.version,
            expires_at_ms: stored.expires(),
            value,
        })
    }

    /// The stored entry for `key` in whatever state (for replication and repair).
    pub fn get_entry(&self, key: &Key) -> Option<Entry> {
        let stored = self.slot(slot_of(key.as_bytes())).entries.get(key)?;
        Some(Entry {
            key: key.clone(),
            version: stored.version,
            expires_at_ms: stored.expires(),
            value: stored.value.clone(),
        })
    }

    /// Extends the expiry of `key` at exactly `touch.version` (see
    /// [`Touch`]). `Stale` when nothing changed yet the replica is fine with
    /// the renewal (a newer version superseded it, or the expiry is already
    /// as late); refused when this replica cannot hold the renewal (it lacks
    /// that version, or the value already expired and was swept here).
    pub fn touch(&mut self, touch: &Touch) -> Result<Applied, TouchRefused> {
        let slot = slot_of(touch.key.as_bytes());
        let data = &mut self.slots[usize::from(slot.get())];
        let Some(stored) = data.entries.get_mut(&touch.key) else {
            return Err(TouchRefused::Missing);
        };
        if stored.version > touch.version {
            return Ok(Applied::Stale);
        }
        if stored.version < touch.version {
            return Err(TouchRefused::Missing);
        }
        if stored.value.is_none() {
            return Err(if stored.expires_at_ms == 0 {
                TouchRefused::Missing
            } else {
                TouchRefused::Expired
            });
        }
        if stored.expires_at_ms == 0 || stored.expires_at_ms >= touch.expires_at_ms {
            return Ok(Applied::Stale);
        }
        let old_hash = digest_hash(&touch.key, stored.version, stored.expires(), false);
        stored.expires_at_ms = touch.expires_at_ms;
        let new_hash = digest_hash(&touch.key, stored.version, stored.expires(), false);
        data.digest = data.digest.wrapping_sub(old_hash).wrapping_add(new_hash);
        Ok(Applied::Replaced {
            previous: touch.version,
        })
    }

    /// The freshness (version, then expiry) stored for `key`, in whatever
    /// state: what sync compares.
    pub fn freshness_of(&self, key: &Key) -> Option<(Version, u64)> {
        self.slot(slot_of(key.as_bytes()))
            .entries
            .get(key)
            .map(Stored::freshness)
    }

    /// The version stored for `key`, in whatever state.
    pub fn version_of(&self, key: &Key) -> Option<Version> {
        self.slot(slot_of(key.as_bytes()))
            .entries
            .get(key)
            .map(|s| s.version)
    }

    /// How long `key` stays visible.
    pub fn ttl(&self, key: &[u8], now_ms: u64) -> Ttl {
        match self.get(key, now_ms) {
            None => Ttl::Missing,
            Some(Visible {
                expires_at_ms: None,
                ..
            }) => Ttl::Forever,
            Some(Visible {
                expires_at_ms: Some(at),
                ..
            }) => {
                let left = at.saturating_sub(now_ms.saturating_add(self.skew_margin_ms));
                Ttl::Remaining(Duration::from_millis(left))
            }
        }
    }

    /// Visible entries whose key starts with `prefix`, in key order, at most
    /// `limit` (capped at [`SCAN_LIMIT_MAX`]). Costs a pass over the table.
    pub fn scan_prefix(&self, prefix: &[u8], now_ms: u64, limit: usize) -> Vec<(Key, EncodedDoc)> {
        let limit = limit.min(SCAN_LIMIT_MAX);
        let mut found: Vec<(Key, EncodedDoc)> = self
            .slots
            .iter()
            .flat_map(|s| s.entries.iter())
            .filter(|(k, s)| k.as_bytes().starts_with(prefix) && self.visible(s, now_ms))
            .filter_map(|(k, s)| s.value.clone().map(|v| (k.clone(), v)))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.truncate(limit);
        found
    }

    /// The digest of one slot: a sum of per-entry hashes, equal on two replicas
    /// iff they hold the same entries (up to hash collisions).
    pub fn slot_digest(&self, slot: Slot) -> u64 {
        self.slot(slot).digest
    }

    /// Every stored entry of a slot, in whatever state (for sync and repair).
    pub fn slot_entries(&self, slot: Slot) -> impl Iterator<Item = Entry> + '_ {
        self.slot(slot).entries.iter().map(|(key, s)| Entry {
            key: key.clone(),
            version: s.version,
            expires_at_ms: s.expires(),
            value: s.value.clone(),
        })
    }

    /// Keys stored in `slot` (values and markers; check visibility with
    /// [`Table::get`]), in no particular order, without copying.
    pub fn slot_keys(&self, slot: Slot) -> impl Iterator<Item = &Key> + '_ {
        self.slot(slot).entries.keys()
    }

    /// Number of stored entries in a slot.
    pub fn slot_len(&self, slot: Slot) -> usize {
        self.slot(slot).entries.len()
    }

    /// Counts.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Whether a write creating a new key would exceed `max_entries`.
    pub fn would_overflow(&self, key: &Key) -> bool {
        match self.spec.options.max_entries {
            None => false,
            Some(max) => {
                let exists = self
                    .slot(slot_of(key.as_bytes()))
                    .entries
                    .get(key)
                    .is_some_and(|s| s.value.is_some());
                !exists && self.stats.values >= max
            }
        }
    }

    /// Drops the values of entries expired at `now_ms` (plus the skew margin),
    /// visiting whole slots until `budget` entries were examined. Resumes where
    /// the previous pass stopped, so repeated small passes cover the table.
    pub fn sweep(&mut self, now_ms: u64, budget: u64) -> SweepStats {
        let mut stats = SweepStats::default();
        let horizon = now_ms.saturating_sub(self.skew_margin_ms);
        while stats.examined < budget && stats.slots < u32::from(SLOT_COUNT) {
            let index = usize::from(self.sweep_cursor);
            self.sweep_cursor = (self.sweep_cursor + 1) % SLOT_COUNT;
            stats.slots += 1;
            let mut freed_bytes = 0u64;
            let mut expired = 0u64;
            let data = &mut self.slots[index];
            stats.examined += data.entries.len() as u64;
            for (key, stored) in data.entries.iter_mut() {
                if stored.value.is_some()
                    && stored.expires_at_ms != 0
                    && stored.expires_at_ms <= horizon
                {
                    // The marker hashes like the entry did: the digest is unchanged.
                    let value = stored.value.take();
                    freed_bytes += value.as_ref().map_or(0, EncodedDoc::len) as u64;
                    self.indexes.remove(key, value.as_ref());
                    expired += 1;
                }
            }
            stats.expired += expired;
            self.stats.values = self.stats.values.saturating_sub(expired);
            self.stats.markers += expired;
            self.stats.bytes = self.stats.bytes.saturating_sub(freed_bytes);
        }
        stats
    }
}
