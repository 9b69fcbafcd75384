//! Versioned entries: what a write produces, what replicas apply, what disk keeps.
//!
//! Owns: [`Key`], [`Origin`], [`Version`], [`Entry`], [`Touch`] and [`Change`]
//! with their bounds, ordering and the per-entry digest hash. Does not own:
//! where entries live (`table`).
//!
//! Ordering is last-writer-wins on `(timestamp, origin)`: total, so every replica
//! picks the same winner, and deterministic on ties (DESIGN.md §13, "clocks").

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::hlc::Timestamp;
use crate::value::EncodedDoc;

/// Longest key, in bytes: enough for composite keys (region/mode/id), small
/// enough that keys stay a minor part of per-entry memory.
pub const KEY_BYTES_MAX: usize = 1024;

/// Seed of the entry hash. Part of the digest contract between replicas: never
/// change it without a protocol version bump.
const ENTRY_HASH_SEED: u64 = 0x6765_6f75_6c5f_6531; // "geoul_e1"

/// A key that passed its bound check (also when it arrives from the network:
/// deserializing re-checks the bound).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>")]
pub struct Key(Box<[u8]>);

impl TryFrom<Vec<u8>> for Key {
    type Error = KeyError;
    fn try_from(bytes: Vec<u8>) -> Result<Self, KeyError> {
        Key::new(&bytes)
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty keys have no slot worth having and are always a caller bug.
    #[error("key is empty")]
    Empty,
    /// Over [`KEY_BYTES_MAX`].
    #[error("key is {len} bytes (at most {KEY_BYTES_MAX})")]
    TooLong {
        /// Given length.
        len: usize,
    },
}

impl Key {
    /// Checks and copies `bytes`.
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.is_empty() {
            return Err(KeyError::Empty);
        }
        if bytes.len() > KEY_BYTES_MAX {
            return Err(KeyError::TooLong { len: bytes.len() });
        }
        Ok(Self(bytes.into()))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(
                f,
                "0x{}",
                self.0
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
        }
    }
}

/// Which node life produced a version: 32 bits of a stable hash of the node name
/// and the low 32 bits of its generation. Breaks timestamp ties deterministically
/// and keeps two lives of one node from ever producing the same version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin(u64);

impl Origin {
    /// The origin of `node_name` in its `generation`.
    pub fn new(node_name: &str, generation: u64) -> Self {
        let name = xxhash_rust::xxh3::xxh3_64_with_seed(node_name.as_bytes(), ENTRY_HASH_SEED);
        Self(((name >> 32) << 32) | (generation & 0xffff_ffff))
    }

    /// From the raw form (wire, disk).
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw form.
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// The version of an entry: the highest one wins on every replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// When it was written (hybrid logical clock of the writer).
    pub ts: Timestamp,
    /// Who wrote it.
    pub origin: Origin,
}

/// One versioned write: a value, or a tombstone when `value` is `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: Key,
    /// The version assigned by the node that handled the write.
    pub version: Version,
    /// Absolute expiry, Unix ms; carried with the entry so every replica expires
    /// it at the same instant (DESIGN.md §13, "expiry").
    pub expires_at_ms: Option<u64>,
    /// The document, or `None` for a delete.
    pub value: Option<EncodedDoc>,
}

/// A renewal of one entry's lifetime: the entry at exactly `version` now
/// expires at `expires_at_ms`. It carries no value, so a heartbeat costs a key
/// and a few numbers on the wire, and it cannot undo a concurrent update (a
/// newer version ignores it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    /// The key.
    pub key: Key,
    /// The version whose expiry is extended.
    pub version: Version,
    /// The new absolute expiry, Unix ms.
    pub expires_at_ms: u64,
}

/// What a replica applies: a whole entry or a touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A write or a delete.
    Put(Entry),
    /// A renewal.
    Touch(Touch),
}

impl Change {
    /// The key it changes.
    pub fn key(&self) -> &Key {
        match self {
            Self::Put(e) => &e.key,
            Self::Touch(t) => &t.key,
        }
    }

    /// The version it carries.
    pub fn version(&self) -> Version {
        match self {
            Self::Put(e) => e.version,
            Self::Touch(t) => t.version,
        }
    }

    /// Roughly what it costs in a replication batch, bytes.
    pub fn wire_bytes(&self) -> usize {
        let value = match self {
            Self::Put(e) => e.value.as_ref().map_or(0, EncodedDoc::len),
            Self::Touch(_) => 0,
        };
        self.key().as_bytes().len() + value + 32
    }
}

/// Which of two states of one key is newer: the higher version, and for one
/// version the later expiry (a touch only ever extends it; "never" is
/// latest). Sync compares these, apply keeps the larger.
pub fn freshness(version: Version, expires_at_ms: Option<u64>) -> (Version, u64) {
    (version, expires_at_ms.unwrap_or(u64::MAX))
}

impl Entry {
    /// See [`freshness`].
    pub fn freshness(&self) -> (Version, u64) {
        freshness(self.version, self.expires_at_ms)
    }

    /// Whether this is a delete.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether a read at `now_ms` may return this entry: it holds a value and is
    /// not expired, counting `skew_margin_ms` early (the rule `Table::get` uses).
    pub fn visible_at(&self, now_ms: u64, skew_margin_ms: u64) -> bool {
        self.value.is_some()
            && self
                .expires_at_ms
                .is_none_or(|at| now_ms.saturating_add(skew_margin_ms) < at)
    }

    /// This entry's contribution to its slot's digest.
    pub fn digest_hash(&self) -> u64 {
        digest_hash(
            &self.key,
            self.version,
            self.expires_at_ms,
            self.is_tombstone(),
        )
    }
}

/// Hash of what identifies an entry's state: key, version, expiry, tombstone.
/// The value is not hashed: one version always carries one value.
pub(crate) fn digest_hash(
    key: &Key,
    version: Version,
    expires_at_ms: Option<u64>,
    tombstone: bool,
) -> u64 {
    let mut h = Xxh3::with_seed(ENTRY_HASH_SEED);
    h.update(&(key.0.len() as u64).to_le_bytes());
    h.update(&key.0);
    h.update(&version.ts.raw().to_le_bytes());
    h.update(&version.origin.raw().to_le_bytes());
    h.update(&expires_at_ms.map_or(0, |e| e.wrapping_add(1)).to_le_bytes());
    h.update(&[u8::from(tombstone)]);
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded() {
        assert_eq!(Key::new(b""), Err(KeyError::Empty));
        assert!(Key::new(&[1u8; KEY_BYTES_MAX]).is_ok());
        assert_eq!(
            Key::new(&[1u8; KEY_BYTES_MAX + 1]),
            Err(KeyError::TooLong {
                len: KEY_BYTES_MAX + 1
            })
        );
    }

    #[test]
    fn versions_order_by_time_then_origin() {
        let a = Origin::new("node-1", 5);
        let b = Origin::new("node-2", 5);
        let t1 = Timestamp::from_parts(100, 0);
        let t2 = Timestamp::from_parts(100, 1);
        assert!(Version { ts: t2, origin: a } > Version { ts: t1, origin: b });
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        assert!(Version { ts: t1, origin: hi } > Version { ts: t1, origin: lo });
        assert_ne!(Origin::new("node-1", 5), Origin::new("node-1", 6));
    }
}
