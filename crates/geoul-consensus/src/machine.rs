//! The replicated state machine: a key → [`Entry`] map with conditional commands.
//!
//! Owns: applying a [`Command`] at a log index (deterministically: the outcome depends
//! only on the state and the command, never on this replica's clock or config), the
//! group clock and expiry, the capacity limits, and the snapshot encoding.
//!
//! Does not own: the log, durability, or openraft's bookkeeping (last applied id,
//! membership): `storage::sm` wraps this and persists snapshots. No IO, no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{
    Command, CondOp, CondOutcome, Entry, EXPIRED_DROPS_PER_APPLY, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};

/// The state every replica holds identically after applying the same log prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Machine {
    /// Ordered, so a snapshot's bytes depend only on the contents.
    entries: BTreeMap<Vec<u8>, Entry>,
    /// `(expires_at_ms, key)` of every entry with an expiry: the lazy sweep's queue.
    expiry: BTreeSet<(u64, Vec<u8>)>,
    /// The group clock: the largest `now_ms` of any applied command.
    clock_ms: u64,
    /// Sum of key and value lengths over `entries` (expired ones included until
    /// dropped), checked against `Limits::max_bytes`.
    bytes: u64,
}

/// The snapshot's serialized form.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    clock_ms: u64,
    entries: Vec<(Vec<u8>, Entry)>,
}

impl Machine {
    /// Applies `cmd`, the payload of the log entry at `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> CondOutcome {
        debug_assert!(cmd.op.validate().is_ok(), "the log holds only valid ops");
        self.clock_ms = self.clock_ms.max(cmd.now_ms);
        self.drop_expired(EXPIRED_DROPS_PER_APPLY);
        let current = self.live(cmd.op.key()).cloned();
        let expires = |ttl: &Option<u64>| ttl.map(|t| self.clock_ms.saturating_add(t));
        match &cmd.op {
            CondOp::Get { .. } => CondOutcome::Value(current),
            CondOp::Take { key } => {
                if current.is_some() {
                    self.remove(key);
                }
                CondOutcome::Taken(current)
            }
            CondOp::CreateIfAbsent { key, value, ttl_ms } => {
                if current.is_some() {
                    return CondOutcome::Conflict { current };
                }
                let entry = Entry {
                    value: value.clone(),
                    version: index,
                    expires_at_ms: expires(ttl_ms),
                };
                self.write(key, entry, cmd, None)
            }
            CondOp::CompareAndSet {
                key,
                expected,
                value,
                ttl_ms,
            } => {
                if current.as_ref().map(|e| e.version) != *expected {
                    return CondOutcome::Conflict { current };
                }
                match value {
                    Some(value) => {
                        let entry = Entry {
                            value: value.clone(),
                            version: index,
                            expires_at_ms: expires(ttl_ms),
                        };
                        self.write(key, entry, cmd, current)
                    }
                    None => {
                        if current.is_some() {
                            self.remove(key);
                        }
                        CondOutcome::Done {
                            version: index,
                            previous: current,
                        }
                    }
                }
            }
        }
    }

    /// Writes `entry` at `key` unless that breaks the command's limits.
    fn write(
        &mut self,
        key: &[u8],
        entry: Entry,
        cmd: &Command,
        previous: Option<Entry>,
    ) -> CondOutcome {
        if !self.fits(key, &entry, cmd) {
            // Expired entries still count until dropped; drop them all before refusing
            // so `Full` means "full of live entries". Bounded by `max_entries`.
            self.drop_expired(usize::MAX);
            if !self.fits(key, &entry, cmd) {
                return CondOutcome::Full;
            }
        }
        let version = entry.version;
        self.insert(key.to_vec(), entry);
        CondOutcome::Done { version, previous }
    }

    fn fits(&self, key: &[u8], entry: &Entry, cmd: &Command) -> bool {
        let old = self.entries.get(key);
        let count = self.entries.len() as u64 + u64::from(old.is_none());
        let old_bytes = old.map_or(0, |e| (key.len() + e.value.len()) as u64);
        let bytes = self.bytes - old_bytes + (key.len() + entry.value.len()) as u64;
        count <= cmd.limits.max_entries && bytes <= cmd.limits.max_bytes
    }

    /// The entry at `key` if it exists and has not expired on the group clock.
    fn live(&self, key: &[u8]) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| e.expires_at_ms.is_none_or(|at| at > self.clock_ms))
    }

    /// The live entry at `key` as of `max(group clock, now_ms)`. A local read: not
    /// linearizable, for diagnostics and tests.
    pub fn get_local(&self, key: &[u8], now_ms: u64) -> Option<Entry> {
        let clock = self.clock_ms.max(now_ms);
        self.entries
            .get(key)
            .filter(|e| e.expires_at_ms.is_none_or(|at| at > clock))
            .cloned()
    }

    fn insert(&mut self, key: Vec<u8>, entry: Entry) {
        self.remove(&key);
        self.bytes += (key.len() + entry.value.len()) as u64;
        if let Some(at) = entry.expires_at_ms {
            self.expiry.insert((at, key.clone()));
        }
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.bytes -= (key.len() + entry.value.len()) as u64;
        if let Some(at) = entry.expires_at_ms {
            self.expiry.remove(&(at, key.to_vec()));
        }
        Some(entry)
    }

    /// Drops up to `limit` entries expired on the group clock, oldest first.
    fn drop_expired(&mut self, limit: usize) {
        for _ in 0..limit {
            let Some((at, key)) = self.expiry.first().cloned() else {
                return;
            };
            if at > self.clock_ms {
                return;
            }
            self.remove(&key);
        }
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Number of stored entries, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The snapshot bytes: the whole state, in key order.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let body = SnapshotBody {
            clock_ms: self.clock_ms,
            entries: self
                .entries
                .iter()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
        };
        postcard::to_stdvec(&body).map_err(|e| format!("encoding a snapshot: {e}"))
    }

    /// Rebuilds a state from [`Machine::encode`]'s bytes; refuses anything over the
    /// bounds or out of order instead of trusting it.
    pub fn decode(bytes: &[u8]) -> Result<Machine, String> {
        let body: SnapshotBody =
            postcard::from_bytes(bytes).map_err(|e| format!("decoding a snapshot: {e}"))?;
        let mut machine = Machine {
            clock_ms: body.clock_ms,
            ..Machine::default()
        };
        for (key, entry) in body.entries {
            if key.len() > MAX_KEY_BYTES || entry.value.len() > MAX_VALUE_BYTES {
                return Err("a snapshot entry is over the size bounds".into());
            }
            if machine
                .entries
                .last_key_value()
                .is_some_and(|(k, _)| *k >= key)
            {
                return Err("snapshot entries are not in strictly increasing key order".into());
            }
            machine.insert(key, entry);
        }
        Ok(machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Limits;

    const LIMITS: Limits = Limits {
        max_entries: 3,
        max_bytes: 1 << 20,
    };

    fn cmd(op: CondOp, now_ms: u64) -> Command {
        Command {
            op,
            now_ms,
            limits: LIMITS,
        }
    }

    fn create(key: &str, ttl_ms: Option<u64>) -> CondOp {
        CondOp::CreateIfAbsent {
            key: key.into(),
            value: b"v".to_vec(),
            ttl_ms,
        }
    }

    fn get(key: &str) -> CondOp {
        CondOp::Get { key: key.into() }
    }

    #[test]
    fn create_if_absent_once_then_conflict() {
        let mut m = Machine::default();
        let first = m.apply(1, &cmd(create("k", None), 0));
        assert_eq!(
            first,
            CondOutcome::Done {
                version: 1,
                previous: None
            }
        );
        match m.apply(2, &cmd(create("k", None), 0)) {
            CondOutcome::Conflict { current: Some(e) } => assert_eq!(e.version, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compare_and_set_checks_the_version_and_versions_grow() {
        let mut m = Machine::default();
        m.apply(1, &cmd(create("k", None), 0));
        let cas = |expected, value: &str| CondOp::CompareAndSet {
            key: b"k".to_vec(),
            expected,
            value: Some(value.into()),
            ttl_ms: None,
        };
        assert!(matches!(
            m.apply(2, &cmd(cas(Some(7), "x"), 0)),
            CondOutcome::Conflict { .. }
        ));
        assert!(matches!(
            m.apply(3, &cmd(cas(None, "x"), 0)),
            CondOutcome::Conflict { .. }
        ));
        match m.apply(4, &cmd(cas(Some(1), "x"), 0)) {
            CondOutcome::Done {
                version: 4,
                previous: Some(p),
            } => assert_eq!(p.version, 1),
            other => panic!("{other:?}"),
        }
        // A stale version (1) is a conflict now; the current one (4) works.
        assert!(matches!(
            m.apply(5, &cmd(cas(Some(1), "y"), 0)),
            CondOutcome::Conflict { .. }
        ));
        let delete = CondOp::CompareAndSet {
            key: b"k".to_vec(),
            expected: Some(4),
            value: None,
            ttl_ms: None,
        };
        assert!(matches!(
            m.apply(6, &cmd(delete, 0)),
            CondOutcome::Done { version: 6, .. }
        ));
        assert_eq!(m.apply(7, &cmd(get("k"), 0)), CondOutcome::Value(None));
    }

    #[test]
    fn take_returns_the_entry_once() {
        let mut m = Machine::default();
        m.apply(1, &cmd(create("t", None), 0));
        let take = || cmd(CondOp::Take { key: b"t".to_vec() }, 0);
        assert!(matches!(m.apply(2, &take()), CondOutcome::Taken(Some(_))));
        assert_eq!(m.apply(3, &take()), CondOutcome::Taken(None));
        assert!(m.is_empty());
    }

    #[test]
    fn expiry_follows_the_command_clock_not_the_replica() {
        let mut m = Machine::default();
        m.apply(1, &cmd(create("k", Some(1000)), 10_000));
        assert!(matches!(
            m.apply(2, &cmd(get("k"), 10_999)),
            CondOutcome::Value(Some(_))
        ));
        // A proposer with a slow clock cannot move the group clock back.
        assert!(matches!(
            m.apply(3, &cmd(get("k"), 5)),
            CondOutcome::Value(Some(_))
        ));
        assert_eq!(m.apply(4, &cmd(get("k"), 11_000)), CondOutcome::Value(None));
        assert_eq!(m.apply(5, &cmd(get("k"), 0)), CondOutcome::Value(None));
        assert!(matches!(
            m.apply(6, &cmd(create("k", None), 0)),
            CondOutcome::Done { .. }
        ));
    }

    #[test]
    fn expiry_near_the_maximum_saturates() {
        let mut m = Machine::default();
        m.apply(1, &cmd(create("k", Some(u64::MAX)), u64::MAX - 1));
        assert!(matches!(
            m.apply(2, &cmd(get("k"), u64::MAX - 1)),
            CondOutcome::Value(Some(_))
        ));
        assert_eq!(
            m.apply(3, &cmd(get("k"), u64::MAX)),
            CondOutcome::Value(None)
        );
    }

    #[test]
    fn full_counts_live_entries_only() {
        let mut m = Machine::default();
        m.apply(1, &cmd(create("a", Some(10)), 0));
        m.apply(2, &cmd(create("b", None), 0));
        m.apply(3, &cmd(create("c", None), 0));
        assert_eq!(m.apply(4, &cmd(create("d", None), 0)), CondOutcome::Full);
        // Once "a" expired, its room is free again.
        assert!(matches!(
            m.apply(5, &cmd(create("d", None), 10)),
            CondOutcome::Done { .. }
        ));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn max_bytes_is_enforced() {
        let mut m = Machine::default();
        let small = Command {
            op: create("k", None),
            now_ms: 0,
            limits: Limits {
                max_entries: 10,
                max_bytes: 1,
            },
        };
        assert_eq!(m.apply(1, &small), CondOutcome::Full);
    }

    #[test]
    fn snapshot_round_trips_and_rejects_garbage() {
        let mut m = Machine::default();
        m.apply(1, &cmd(create("a", Some(50)), 7));
        m.apply(2, &cmd(create("b", None), 7));
        let bytes = m.encode().expect("encode");
        assert_eq!(Machine::decode(&bytes).expect("decode"), m);
        assert!(Machine::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Machine::decode(&[0xff; 16]).is_err());
    }
}
