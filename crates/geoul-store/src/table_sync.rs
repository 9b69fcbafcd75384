//! What sync and anti-entropy need from a table: sub-bucket digests of a slot,
//! the slot's entries (or just their versions) in a stable order for paging,
//! dropping a slot the node no longer holds, and collecting old deletes.
//!
//! Owns: the sub-bucket split of a slot, the paging order and cursor, and the
//! tombstone-GC rule. Does not own: deciding when to sync, with whom, or what
//! to do with a difference (`geoul-replication::sync`).
//!
//! Tombstone GC (DESIGN.md §13, "deletes stay deleted"): a delete, or the
//! marker a swept expiry leaves, is collected once it is older than the grace
//! period — deletes by their version's time, expiry markers by their expiry.
//! The grace period must be longer than any partition the cluster tolerates; a
//! node away longer is wiped and fully re-synced (the replication layer
//! enforces that), so it cannot bring a collected delete's older value back.

use geoul_placement::Slot;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::entry::{digest_hash, Entry, Key, Version};
use crate::table::{Stored, Table};

/// Sub-buckets per slot. Anti-entropy narrows a slot mismatch down to buckets
/// before listing versions: with 4096 slots × 64 buckets a difference of `d`
/// keys costs about `d` bucket listings, not a slot's worth each.
pub const BUCKETS: usize = 64;

/// Seed of the bucket hash; independent of the slot hash so a slot's keys
/// spread evenly over its buckets. Part of the sync protocol.
const BUCKET_SEED: u64 = u64::from_be_bytes(*b"geoulbkt");

/// The sub-bucket of `key` inside its slot.
pub fn bucket_of(key: &[u8]) -> u8 {
    // BUCKETS is 64: the low six bits.
    (xxh3_64_with_seed(key, BUCKET_SEED) & (BUCKETS as u64 - 1)) as u8
}

/// A set of buckets, one bit each.
pub type BucketMask = u64;

/// Every bucket.
pub const ALL_BUCKETS: BucketMask = u64::MAX;

/// A position in a slot's paging order, which is (bucket, key): stable while
/// entries change, so a page request can resume after the last key it got.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    /// Bucket of the last item returned.
    pub bucket: u8,
    /// The last key returned.
    pub key: Key,
}

/// One page of a slot: items in paging order, and where the next page starts
/// (`None` when the slot is exhausted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Resume point, if more remain.
    pub next: Option<Cursor>,
}

/// A key and the version stored for it: what a version list compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// The key.
    pub key: Key,
    /// Its stored version.
    pub version: Version,
    /// Its stored expiry (a touch extends it without a new version).
    pub expires_at_ms: Option<u64>,
}

impl KeyVersion {
    /// See [`crate::entry::freshness`].
    pub fn freshness(&self) -> (Version, u64) {
        crate::entry::freshness(self.version, self.expires_at_ms)
    }
}

/// What a garbage-collection pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Slots visited.
    pub slots: u32,
    /// Keys whose delete or expiry marker was collected (for the durable store).
    pub collected: Vec<Key>,
}

impl Stored {
    fn hash(&self, key: &Key) -> u64 {
        digest_hash(key, self.version, self.expires(), self.is_delete())
    }

    /// Whether this is a delete or expiry marker older than `horizon_ms`.
    pub(crate) fn collectable(&self, horizon_ms: u64) -> bool {
        if self.value.is_some() {
            return false;
        }
        if self.expires_at_ms == 0 {
            self.version.ts.unix_ms() < horizon_ms
        } else {
            self.expires_at_ms < horizon_ms
        }
    }
}

/// Whether `entry` is a delete or expiry marker (or expired value) that GC at
/// `horizon_ms` would collect: such entries are not worth storing or sending.
pub fn collectable(entry: &Entry, horizon_ms: u64) -> bool {
    match (entry.value.is_some(), entry.expires_at_ms) {
        (false, None) => entry.version.ts.unix_ms() < horizon_ms,
        (_, Some(at)) => at < horizon_ms,
        (true, None) => false,
    }
}

impl Table {
    /// Digest of each bucket of `slot`, leaving out entries collectable at
    /// `exclude_before_ms` (replicas collect at slightly different moments;
    /// comparing without them keeps GC from looking like a difference).
    pub fn bucket_digests(&self, slot: Slot, exclude_before_ms: u64) -> Vec<u64> {
        let mut digests = vec![0u64; BUCKETS];
        for (key, stored) in &self.slot(slot).entries {
            let ignore = (stored.value.is_none() && stored.collectable(exclude_before_ms))
                || (stored.expires_at_ms != 0 && stored.expires_at_ms < exclude_before_ms);
            if ignore {
                continue;
            }
            let b = usize::from(bucket_of(key.as_bytes()));
            digests[b] = digests[b].wrapping_add(stored.hash(key));
        }
        digests
    }

    fn sorted_keys(&self, slot: Slot, mask: BucketMask, after: Option<&Cursor>) -> Vec<(u8, &Key)> {
        let mut keys: Vec<(u8, &Key)> = self
            .slot(slot)
            .entries
            .keys()
            .map(|k| (bucket_of(k.as_bytes()), k))
            .filter(|(b, _)| mask & (1u64 << b) != 0)
            .filter(|(b, k)| after.is_none_or(|c| (*b, *k) > (c.bucket, &c.key)))
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Stored entries of `slot` in buckets `mask`, after `after`, in paging
    /// order: at most `max_items` and about `max_bytes` (at least one item).
    pub fn slot_page(
        &self,
        slot: Slot,
        mask: BucketMask,
        after: Option<&Cursor>,
        max_items: usize,
        max_bytes: usize,
    ) -> Page<Entry> {
        let data = self.slot(slot);
        let keys = self.sorted_keys(slot, mask, after);
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let mut next = None;
        for (i, (_, key)) in keys.iter().enumerate() {
            let Some(stored) = data.entries.get(*key) else {
                continue;
            };
            let size = key.as_bytes().len() + stored.value.as_ref().map_or(0, |v| v.len()) + 32;
            if !items.is_empty() && (items.len() >= max_items || bytes + size > max_bytes) {
                next = keys.get(i.saturating_sub(1)).map(|(b, k)| Cursor {
                    bucket: *b,
                    key: (*k).clone(),
                });
                break;
            }
            bytes += size;
            items.push(Entry {
                key: (*key).clone(),
                version: stored.version,
                expires_at_ms: stored.expires(),
                value: stored.value.clone(),
            });
        }
        Page { items, next }
    }

    /// Like [`Table::slot_page`] but only keys and versions (a version list).
    pub fn slot_versions(
        &self,
        slot: Slot,
        mask: BucketMask,
        after: Option<&Cursor>,
        max_items: usize,
    ) -> Page<KeyVersion> {
        let data = self.slot(slot);
        let keys = self.sorted_keys(slot, mask, after);
        let more = keys.len() > max_items;
        let items: Vec<KeyVersion> = keys
            .iter()
            .take(max_items)
            .filter_map(|(_, k)| {
                data.entries.get(*k).map(|s| KeyVersion {
                    key: (*k).clone(),
                    version: s.version,
                    expires_at_ms: s.expires(),
                })
            })
            .collect();
        let next = more
            .then(|| keys.get(max_items.saturating_sub(1)))
            .flatten()
            .map(|(b, k)| Cursor {
                bucket: *b,
                key: (*k).clone(),
            });
        Page { items, next }
    }

    /// Forgets every entry of `slot` (the node no longer holds it); returns the
    /// keys so the caller can delete them from the durable store.
    pub fn drop_slot(&mut self, slot: Slot) -> Vec<Key> {
        let data = std::mem::take(self.slot_mut(slot));
        let mut keys = Vec::with_capacity(data.entries.len());
        for (key, stored) in data.entries {
            self.stats.uncount(&stored, &key);
            self.indexes.remove(&key, stored.value.as_ref());
            keys.push(key);
        }
        keys
    }

    /// Collects deletes and expiry markers older than `horizon_ms` (now minus
    /// the grace period), visiting whole slots until about `budget` entries
    /// were examined; resumes where the previous pass stopped.
    pub fn collect_garbage(&mut self, horizon_ms: u64, budget: u64) -> GcStats {
        let mut stats = GcStats::default();
        let mut examined = 0u64;
        let slot_count = u32::from(geoul_placement::SLOT_COUNT);
        while examined < budget && stats.slots < slot_count {
            let slot = self.next_gc_slot();
            stats.slots += 1;
            let data = self.slot_mut(slot);
            examined += data.entries.len() as u64;
            let doomed: Vec<Key> = data
                .entries
                .iter()
                .filter(|(_, s)| s.collectable(horizon_ms))
                .map(|(k, _)| k.clone())
                .collect();
            for key in doomed {
                let data = self.slot_mut(slot);
                if let Some(stored) = data.entries.remove(&key) {
                    data.digest = data.digest.wrapping_sub(stored.hash(&key));
                    self.stats.uncount(&stored, &key);
                    // Only markers are collectable and markers are never
                    // indexed, so this finds nothing to remove; it is here so
                    // that GC stays correct if that rule ever changes.
                    self.indexes.remove(&key, stored.value.as_ref());
                    stats.collected.push(key);
                }
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Origin;
    use crate::hlc::Timestamp;
    use crate::options::{Ack, Durability, Replication, TableOptions, TableSpec};
    use crate::value::{Document, Value};
    use geoul_placement::slot_of;
    use std::time::Duration;

    fn table() -> Table {
        Table::new(
            TableSpec {
                name: "t".into(),
                options: TableOptions {
                    replication: Replication::All,
                    write_ack: Ack::One,
                    durability: Durability::Memory,
                    default_ttl: None,
                    max_entries: None,
                    indexes: Vec::new(),
                },
            },
            Duration::ZERO,
        )
    }

    fn entry(key: &str, ms: u64, value: bool, expires: Option<u64>) -> Entry {
        Entry {
            key: Key::new(key.as_bytes()).expect("key"),
            version: Version {
                ts: Timestamp::from_parts(ms, 0),
                origin: Origin::from_raw(7),
            },
            expires_at_ms: expires,
            value: value.then(|| {
                Document::single("v", Value::Int(1))
                    .and_then(|d| d.encode())
                    .expect("doc")
            }),
        }
    }

    /// Keys that all land in one slot, so pages have something to page over.
    fn same_slot_keys(n: usize) -> (Slot, Vec<String>) {
        let slot = slot_of(b"k0");
        let keys = (0..200_000)
            .map(|i| format!("k{i}"))
            .filter(|k| slot_of(k.as_bytes()) == slot)
            .take(n)
            .collect();
        (slot, keys)
    }

    #[test]
    fn pages_cover_a_slot_exactly_once_in_order() {
        let (slot, keys) = same_slot_keys(40);
        let mut t = table();
        for k in &keys {
            t.apply(entry(k, 10, true, None));
        }
        let mut seen = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = t.slot_page(slot, ALL_BUCKETS, after.as_ref(), 7, usize::MAX);
            seen.extend(page.items.iter().map(|e| e.key.clone()));
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        let mut expected: Vec<Key> = keys
            .iter()
            .map(|k| Key::new(k.as_bytes()).expect("key"))
            .collect();
        expected.sort_by_key(|k| (bucket_of(k.as_bytes()), k.clone()));
        assert_eq!(seen, expected);
        let mut listed = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = t.slot_versions(slot, ALL_BUCKETS, after.as_ref(), 6);
            listed.extend(page.items.into_iter().map(|kv| kv.key));
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        assert_eq!(listed, expected);
    }

    #[test]
    fn bucket_digests_sum_to_the_slot_digest_and_locate_differences() {
        let (slot, keys) = same_slot_keys(30);
        let mut a = table();
        let mut b = table();
        for k in &keys {
            a.apply(entry(k, 10, true, None));
            b.apply(entry(k, 10, true, None));
        }
        b.apply(entry(&keys[3], 11, false, None));
        let da = a.bucket_digests(slot, 0);
        let db = b.bucket_digests(slot, 0);
        let sum = da.iter().fold(0u64, |s, d| s.wrapping_add(*d));
        assert_eq!(sum, a.slot_digest(slot));
        let differing: Vec<usize> = (0..BUCKETS).filter(|i| da[*i] != db[*i]).collect();
        assert_eq!(differing, vec![usize::from(bucket_of(keys[3].as_bytes()))]);
    }

    #[test]
    fn gc_collects_only_old_deletes_and_markers_and_keeps_digests_equal() {
        let mut t = table();
        t.apply(entry("old-delete", 100, false, None));
        t.apply(entry("new-delete", 5_000, false, None));
        t.apply(entry("value", 100, true, None));
        t.apply(entry("expired", 100, true, Some(200)));
        t.sweep(10_000, u64::MAX);
        let stats = t.collect_garbage(1_000, u64::MAX);
        let mut collected: Vec<&[u8]> = stats.collected.iter().map(Key::as_bytes).collect();
        collected.sort();
        assert_eq!(
            collected,
            vec![b"expired".as_slice(), b"old-delete".as_slice()]
        );
        let mut fresh = table();
        fresh.apply(entry("new-delete", 5_000, false, None));
        fresh.apply(entry("value", 100, true, None));
        for s in [
            slot_of(b"new-delete"),
            slot_of(b"value"),
            slot_of(b"old-delete"),
        ] {
            assert_eq!(t.slot_digest(s), fresh.slot_digest(s));
        }
        assert!(collectable(&entry("x", 100, false, None), 1_000));
        assert!(!collectable(&entry("x", 100, true, None), 1_000));
    }

    #[test]
    fn dropping_a_slot_forgets_it() {
        let mut t = table();
        t.apply(entry("a", 1, true, None));
        let keys = t.drop_slot(slot_of(b"a"));
        assert_eq!(keys.len(), 1);
        assert_eq!(t.slot_digest(slot_of(b"a")), 0);
        assert_eq!(t.stats().values, 0);
    }
}
