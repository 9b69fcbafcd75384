//! Reads that never go back in time: session floors (DESIGN.md §4 line 4).
//!
//! Owns: [`Replicator::read_at_least`] — a read that returns a version at
//! least as new as one the caller has already seen, asking every replica and
//! waiting briefly for replication in flight when the first answer is older.
//! Does not own: tracking what a session saw (geoul-client) or which floors
//! apply to a call (geoul-service).

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use geoul_placement::slot_of;
use geoul_store::{Entry, Key, Version};
use tokio::time::Instant;

use crate::messages::ReplicaLink;
use crate::replicator::{ReadError, ReadLevel, Replicator};

/// Longest wait for the replicas' answers in one round: a live replica on a
/// LAN answers in a millisecond; a silent one must not hold the call.
const ROUND_TIMEOUT: Duration = Duration::from_millis(250);
/// Pause between rounds: a write acknowledged elsewhere reaches the other
/// replicas within a batch period, so a few short waits cover replication lag.
const ROUND_PAUSE: Duration = Duration::from_millis(10);

impl<L: ReplicaLink> Replicator<L> {
    /// Reads `key` at `level`, but never answers with a version older than
    /// `floor` (the caller saw that one already): if the first answer is
    /// older, every replica is asked (and the stale ones repaired) until one
    /// has it, for at most `timeout`; then [`ReadError::Behind`].
    pub async fn read_at_least(
        &self,
        table: &str,
        key: Key,
        level: ReadLevel,
        floor: Option<Version>,
        timeout: Duration,
    ) -> Result<Option<Entry>, ReadError> {
        self.read_stored_at_least(table, key, level, floor, timeout)
            .await
            .map(|e| self.visible(e))
    }

    /// [`Self::read_at_least`] without the visibility filter: deletes and
    /// expired values come back as stored, so a session can remember the
    /// version of a delete it saw too.
    pub async fn read_stored_at_least(
        &self,
        table: &str,
        key: Key,
        level: ReadLevel,
        floor: Option<Version>,
        timeout: Duration,
    ) -> Result<Option<Entry>, ReadError> {
        let Some(floor) = floor else {
            return self.read_stored(table, key, level, timeout).await;
        };
        let deadline = Instant::now() + timeout;
        if let Ok(entry) = self.read_stored(table, key.clone(), level, timeout).await {
            if entry.as_ref().is_some_and(|e| e.version >= floor) {
                return Ok(entry);
            }
        }
        let handle = self
            .store()
            .table(table)
            .ok_or_else(|| ReadError::UnknownTable(table.to_string()))?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Behind { floor, timeout });
            }
            let best = self
                .read_every_replica(&handle, &key, left.min(ROUND_TIMEOUT))
                .await;
            if best.as_ref().is_some_and(|e| e.version >= floor) {
                return Ok(best);
            }
            tokio::time::sleep(ROUND_PAUSE.min(left)).await;
        }
    }

    /// The newest stored entry among every replica that serves the slot and
    /// answers within `wait`; stale answers are repaired.
    async fn read_every_replica(
        &self,
        handle: &crate::TableHandle,
        key: &Key,
        wait: Duration,
    ) -> Option<Entry> {
        let slot = slot_of(key.as_bytes());
        let me = self.me();
        let table = handle.spec().name.clone();
        let mut answers = Vec::new();
        let mut pending = FuturesUnordered::new();
        for route in self.replicas(handle, slot) {
            if route.name == me {
                if handle.sync().serves(slot) {
                    let local = handle.lock().get_entry(key);
                    answers.push((route, local));
                }
            } else {
                let fut = self
                    .link()
                    .read(route.addr, table.clone(), key.clone(), wait);
                pending.push(async move { (route, fut.await) });
            }
        }
        let until = Instant::now() + wait;
        while let Ok(Some((route, answer))) = tokio::time::timeout_at(until, pending.next()).await {
            if let Ok(entry) = answer {
                answers.push((route, entry));
            }
        }
        self.newest_repairing(&table, &answers)
    }
}
