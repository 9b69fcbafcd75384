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

use std::collections::{BTreeMap, HashMap};
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
    /// Last use → key, least recently used first.
    recency: BTreeMap<u64, Vec<u8>>,
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
        let key = key.unwrap_or_default().to_vec();
        let mut floors = self.floors.lock().unwrap_or_else(PoisonError::into_inner);
        floors.uses += 1;
        let now = floors.uses;
        let Floors {
            by_key, recency, ..
        } = &mut *floors;
        let (list, used) = by_key.entry(key.clone()).or_default();
        if *used != 0 {
            recency.remove(used);
        }
        *used = now;
        for t in touched {
            match list
                .iter_mut()
                .find(|f| f.table == t.table && f.key == t.key)
            {
                Some(f) => f.version = f.version.max(t.version),
                None => list.push(t.clone()),
            }
        }
        if list.len() > FLOORS_MAX {
            let excess = list.len() - FLOORS_MAX;
            list.drain(..excess);
        }
        recency.insert(now, key);
        while recency.len() > SESSION_KEYS_MAX {
            if let Some((_, old)) = recency.pop_first() {
                by_key.remove(&old);
            }
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
        assert_eq!(s.keys(), SESSION_KEYS_MAX);
        // The oldest keys went first.
        assert!(s.floor(Some(b"0")).floors.is_empty());
        let many: Vec<Touch> = (0..FLOORS_MAX + 5)
            .map(|i| touch(&i.to_string(), 1))
            .collect();
        s.observe(Some(b"k"), &many, 1);
        assert_eq!(s.floor(Some(b"k")).floors.len(), FLOORS_MAX);
    }
}
