//! Slots: the fixed partition of every table's keyspace.
//!
//! This module owns [`SLOT_COUNT`], the [`Slot`] newtype and [`slot_of`], the key →
//! slot hash. All three are part of geoul's data layout: a key's slot decides which
//! replicas store it, which digest covers it and which sync moves it, so they are
//! shared by every node, every release and every client that routes by key.
//!
//! It does not decide which nodes hold a slot (that is [`crate::rendezvous`] and
//! [`crate::PlacementMap`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::PlacementError;

/// Number of slots each table's keyspace is split into.
///
/// Why 4096:
/// * fine enough: one slot is ~0.024 % of a table, so a membership change moves
///   data in small steps and per-slot sync batches and digests stay small;
/// * coarse enough: per-slot state (digest, sync state, preferred replica) for every
///   slot of every table fits easily in memory, and a full-table digest exchange is
///   4096 × 8 bytes = 32 KiB, one round trip;
/// * a power of two, so the slot is the low 12 bits of the key hash (no modulo bias).
///
/// It never changes for a cluster's lifetime: it is part of the data layout (stored
/// slot numbers, digests and the key → slot mapping all depend on it).
pub const SLOT_COUNT: u16 = 4096;

/// `SLOT_COUNT - 1`: the mask that keeps a hash's low bits as the slot number.
const SLOT_MASK: u64 = SLOT_COUNT as u64 - 1;

// The mask trick above is only a fair reduction when SLOT_COUNT is a power of two.
const _: () = assert!(SLOT_COUNT.is_power_of_two());

/// Seed of the key → slot hash ([`slot_of`]).
///
/// Fixed forever (it is part of the on-disk and wire contract); it is the ASCII of
/// `"geoulslt"` so that a reimplementation can recognise it. Changing it re-slots
/// every key of every table.
pub const SLOT_HASH_SEED: u64 = u64::from_be_bytes(*b"geoulslt");

/// One of the [`SLOT_COUNT`] parts of a table's keyspace; always `< SLOT_COUNT`.
///
/// Serialized as its number; deserializing a number `>= SLOT_COUNT` fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Slot(u16);

impl Slot {
    /// The slot numbered `value`, or `None` if `value >= SLOT_COUNT`.
    ///
    /// ```
    /// use geoul_placement::{Slot, SLOT_COUNT};
    /// assert_eq!(Slot::new(7).map(Slot::get), Some(7));
    /// assert!(Slot::new(SLOT_COUNT).is_none());
    /// ```
    pub const fn new(value: u16) -> Option<Slot> {
        if value < SLOT_COUNT {
            Some(Slot(value))
        } else {
            None
        }
    }

    /// The slot's number, `0..SLOT_COUNT`.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The slot's number as an index into per-slot arrays of length `SLOT_COUNT`.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every slot, in ascending order.
    pub fn all() -> impl DoubleEndedIterator<Item = Slot> + ExactSizeIterator {
        (0..SLOT_COUNT).map(Slot)
    }
}

impl TryFrom<u16> for Slot {
    type Error = PlacementError;

    fn try_from(value: u16) -> Result<Self, Self::Error> {
        Slot::new(value).ok_or(PlacementError::SlotOutOfRange { value })
    }
}

impl From<Slot> for u16 {
    fn from(slot: Slot) -> u16 {
        slot.0
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The slot that holds `key`.
///
/// Defined as the low 12 bits of XXH3-64 (the standard algorithm, xxHash ≥ 0.8) of
/// the key bytes with seed [`SLOT_HASH_SEED`]. This is part of the on-disk and wire
/// contract: it gives the same slot in every process, on every platform and in
/// every release, and any client may compute it to route a key itself. It is never
/// std's `DefaultHasher`/`RandomState`, whose output is randomised per process and
/// unspecified across releases.
///
/// ```
/// use geoul_placement::{slot_of, SLOT_COUNT};
/// let slot = slot_of(b"player:42");
/// assert!(slot.get() < SLOT_COUNT);
/// assert_eq!(slot, slot_of(b"player:42"));
/// ```
pub fn slot_of(key: &[u8]) -> Slot {
    let low_bits = xxh3_64_with_seed(key, SLOT_HASH_SEED) & SLOT_MASK;
    // The mask keeps the value below SLOT_COUNT, which fits in u16.
    Slot(low_bits as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_accepts_exactly_the_range() {
        assert_eq!(Slot::new(0).map(Slot::get), Some(0));
        assert_eq!(
            Slot::new(SLOT_COUNT - 1).map(Slot::get),
            Some(SLOT_COUNT - 1)
        );
        assert!(Slot::new(SLOT_COUNT).is_none());
        assert!(Slot::new(u16::MAX).is_none());
        assert_eq!(
            Slot::try_from(SLOT_COUNT),
            Err(PlacementError::SlotOutOfRange { value: SLOT_COUNT })
        );
    }

    #[test]
    fn all_lists_every_slot_in_order() {
        let all: Vec<u16> = Slot::all().map(Slot::get).collect();
        assert_eq!(all.len(), usize::from(SLOT_COUNT));
        assert!(all.iter().enumerate().all(|(i, &s)| usize::from(s) == i));
    }

    #[test]
    fn display_is_the_number() {
        assert_eq!(Slot(4095).to_string(), "4095");
    }

    #[test]
    fn serde_round_trips_and_rejects_out_of_range() {
        let json = serde_json::to_string(&Slot(123)).expect("serialize");
        assert_eq!(json, "123");
        let back: Slot = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, Slot(123));
        assert!(serde_json::from_str::<Slot>("4096").is_err());
    }

    /// Pins the key → slot contract. If this test fails, stored data and clients
    /// that route by key would disagree with this build: do not "fix" the numbers.
    /// The hashes were computed independently with the reference C library
    /// (libxxhash 0.8.1, `XXH3_64bits_withSeed`).
    #[test]
    fn slot_of_is_pinned() {
        let pinned: [(&[u8], u64, u16); 5] = [
            (b"", 0xeb7b_a962_a297_873c, 1852),
            (b"a", 0x011d_f5a0_cd76_237a, 890),
            (b"player:42", 0xdb8c_2b0c_0c9d_da99, 2713),
            (b"geoul", 0x35a9_f831_9168_a2e5, 741),
            (&[0u8; 64], 0xf178_216d_66d2_3e16, 3606),
        ];
        for (key, hash, slot) in pinned {
            assert_eq!(
                xxh3_64_with_seed(key, SLOT_HASH_SEED),
                hash,
                "hash of {key:?}"
            );
            assert_eq!(slot_of(key).get(), slot, "slot of {key:?}");
        }
    }

    #[test]
    fn seed_is_the_documented_ascii() {
        assert_eq!(SLOT_HASH_SEED, 0x6765_6f75_6c73_6c74);
    }
}
