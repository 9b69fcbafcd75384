//! Session guarantees on the caller's side: what one `ServiceRef` has seen.
//!
//! Owns: [`Session`] — the highest HLC timestamp observed and, per routing
//! key, the entries calls with that key touched and their versions, bounded
//! in both dimensions. Does not own: enforcing the floors (the serving node
//! does, in its table reads) or routing.
//!
//! Why per routing key: a node cannot tell from one global timestamp whether
//! its copy of a given key is behind (LWW keeps no per-slot log), but it can
//! compare the version of the exact entry a previous call touched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::wire::{SessionFloor, Touch, FLOORS_MAX};

/// Routing keys remembered per session; the least recently used is forgotten
/// first (a forgotten key only loses its floors, never correctness of data).
pub const SESSION_KEYS_MAX: usize = 4096;

#[derive(Default)]
struct Floors {
    /// Per routing key: its floors and when it was last used.
    by_key: HashMap<Vec<u8>, (Vec<Touch>, u64)>,
    uses: u64,
}

/// What one session has seen. Shared by clones of a `ServiceRef`.
#[derive(Default)]
pub struct Session {
    hlc: AtomicU64,
    floors: Mutex<Floors>,
}

impl Session {
    /// The floor to send with a call routed by `key` (`None`: keyless calls
    /// share one bucket).
    pub fn floor(&self, key: Option<&[u8]>) -> SessionFloor {
        let floors = self.floors.lock().unwrap_or_else(PoisonError::into_inner);
        let key = key.unwrap_or_default();
        SessionFloor {
            hlc: self.hlc.load(Ordering::Relaxed),
            floors: floors
                .by_key
                .get(key)
                .map(|(f, _)| f.clone())
                .unwrap_or_default(),
        }
    }

    /// Records what a call routed by `key` touched and the node's clock.
    pub fn observe(&self, key: Option<&[u8]>, touched: &[Touch], hlc: u64) {
        self.hlc.fetch_max(hlc, Ordering::Relaxed);
        if touched.is_empty() {
            return;
        }
        let key = key.unwrap_or_default();
        let mut floors = self.floors.lock().unwrap_or_else(PoisonError::into_inner);
        floors.uses += 1;
        let now = floors.uses;
        // The key is copied only the first time it is seen.
        let (list, used) = match floors.by_key.get_mut(key) {
            Some(slot) => slot,
            None => floors.by_key.entry(key.to_vec()).or_default(),
        };
        *used = now;
        for t in touched {
            match list
                .iter_mut()
                .find(|f| f.key == t.key && f.table == t.table)
            {
                Some(f) => f.version = f.version.max(t.version),
                None => list.push(t.clone()),
            }
        }
        if list.len() > FLOORS_MAX {
            let excess = list.len() - FLOORS_MAX;
            list.drain(..excess);
        }
        if floors.by_key.len() > SESSION_KEYS_MAX {
            evict_oldest(&mut floors.by_key);
        }
    }

    /// Routing keys currently remembered.
    pub fn keys(&self) -> usize {
        self.floors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }
}

/// Forgets the least recently used eighth of the keys at once: one O(n) pass
/// every n/8 new keys instead of an ordered index updated on every call.
fn evict_oldest(by_key: &mut HashMap<Vec<u8>, (Vec<Touch>, u64)>) {
    let mut uses: Vec<u64> = by_key.values().map(|(_, u)| *u).collect();
    let cut = (uses.len() / 8).max(1);
    let (_, cutoff, _) = uses.select_nth_unstable(cut - 1);
    let cutoff = *cutoff;
    by_key.retain(|_, (_, u)| *u > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Stamp;

    fn touch(key: &str, ts: u64) -> Touch {
        Touch {
            table: "t".into(),
            key: key.as_bytes().to_vec(),
            version: Stamp { ts, origin: 1 },
        }
    }

    #[test]
    fn floors_only_grow_and_follow_their_routing_key() {
        let s = Session::default();
        s.observe(Some(b"a"), &[touch("x", 5)], 10);
        s.observe(Some(b"a"), &[touch("x", 3)], 8);
        let floor = s.floor(Some(b"a"));
        assert_eq!(floor.hlc, 10);
        assert_eq!(floor.floors, vec![touch("x", 5)]);
        assert!(s.floor(Some(b"b")).floors.is_empty());
        assert_eq!(s.floor(Some(b"b")).hlc, 10);
    }

    #[test]
    fn the_session_is_bounded() {
        let s = Session::default();
        for i in 0..(SESSION_KEYS_MAX + 10) {
            s.observe(Some(i.to_string().as_bytes()), &[touch("x", 1)], 1);
        }
        assert!(s.keys() <= SESSION_KEYS_MAX, "{}", s.keys());
        assert!(s.keys() > SESSION_KEYS_MAX * 3 / 4, "{}", s.keys());
        // The oldest keys went first; the newest is kept.
        assert!(s.floor(Some(b"0")).floors.is_empty());
        let newest = (SESSION_KEYS_MAX + 9).to_string();
        assert!(!s.floor(Some(newest.as_bytes())).floors.is_empty());
        let many: Vec<Touch> = (0..FLOORS_MAX + 5)
            .map(|i| touch(&i.to_string(), 1))
            .collect();
        s.observe(Some(b"k"), &many, 1);
        assert_eq!(s.floor(Some(b"k")).floors.len(), FLOORS_MAX);
    }
}
