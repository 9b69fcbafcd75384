//! What replicas ask each other to sync and repair a slot, and how a node
//! answers (the source side).
//!
//! Owns: [`SyncRequest`], [`SyncResponse`], their bounds, and [`SyncServer`]
//! with its cap on concurrent bulk transfers served. Does not own: deciding
//! what to ask (`reconcile`, `manager`).
//!
//! Every request is read-only on the answering node and idempotent, so a lost
//! reply is simply asked again (DESIGN.md §13, "no amplification"). Slot
//! transfers (`Pull`) are sessions per (table, slot), capped per node; past the
//! cap the node answers `Busy` at once and the asker tries another source or
//! waits, so a mass restart cannot pile every sync onto one node. A session ends
//! with its last page or after [`SESSION_IDLE`] without a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use geoul_placement::{Slot, SLOT_COUNT};
use geoul_store::{BucketMask, Cursor, Entry, Key, KeyVersion, Page};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::local::LocalStore;
use crate::sync::state::SlotState;

/// Entries in one pulled page.
pub const PULL_ITEMS_MAX: usize = 2048;
/// Bytes (keys and values) in one pulled page: well under the frame bound, and
/// small enough that a page is applied in a few milliseconds.
pub const PULL_BYTES_MAX: usize = 1024 * 1024;
/// Keys and versions in one version-list page.
pub const VERSIONS_ITEMS_MAX: usize = 8192;
/// Keys in one `Fetch`.
pub const FETCH_KEYS_MAX: usize = 1024;
/// Default number of slot transfers one node serves at once.
pub const SERVE_CONCURRENCY_DEFAULT: usize = 8;
/// A transfer session with no request for this long is over.
pub const SESSION_IDLE: Duration = Duration::from_secs(2);

/// A sync or repair question about one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The state and digest of each of `slots` (anti-entropy, handoff checks).
    Digests {
        /// Table.
        table: String,
        /// Slots (at most `SLOT_COUNT`).
        slots: Vec<Slot>,
    },
    /// The state, size and bucket digests of one slot.
    Buckets {
        /// Table.
        table: String,
        /// Slot.
        slot: Slot,
        /// Leave out entries collectable before this (see `Table::bucket_digests`).
        exclude_before_ms: u64,
    },
    /// A page of a slot's entries (or only their versions) in `mask` buckets.
    Pull {
        /// Table.
        table: String,
        /// Slot.
        slot: Slot,
        /// Buckets.
        mask: BucketMask,
        /// Resume after this position.
        after: Option<Cursor>,
        /// Keys and versions only.
        versions: bool,
    },
    /// The stored entries of these keys (after comparing version lists).
    Fetch {
        /// Table.
        table: String,
        /// Keys (at most [`FETCH_KEYS_MAX`]).
        keys: Vec<Key>,
    },
}

/// A slot's digest as one node holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDigest {
    /// Slot.
    pub slot: Slot,
    /// Its state on the answering node.
    pub state: SlotState,
    /// Its digest there.
    pub digest: u64,
}

/// The answer to a [`SyncRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// Answer to `Digests`.
    Digests(Vec<SlotDigest>),
    /// Answer to `Buckets`.
    Buckets {
        /// The slot's state on the answering node.
        state: SlotState,
        /// Entries stored in the slot.
        entries: u64,
        /// One digest per bucket.
        digests: Vec<u64>,
    },
    /// Answer to `Pull` with `versions: false`.
    Entries(Page<Entry>),
    /// Answer to `Pull` with `versions: true`.
    Versions(Page<KeyVersion>),
    /// Answer to `Fetch`: the entries found (keys unknown here are left out).
    Fetched(Vec<Entry>),
    /// The node serves its maximum of bulk transfers right now; ask later or
    /// elsewhere.
    Busy,
}

/// Why a sync request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncServeError {
    /// The table is not declared here.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// A bound was exceeded.
    #[error("sync request over its bound: {0}")]
    TooLarge(&'static str),
}

/// The source side of sync: answers [`SyncRequest`]s from the local store.
#[derive(Clone)]
pub struct SyncServer {
    store: Arc<LocalStore>,
    cap: usize,
    sessions: Arc<Mutex<HashMap<(String, Slot), Instant>>>,
}

impl SyncServer {
    /// Answers from `store`, serving at most `concurrency` slot transfers at once.
    pub fn new(store: Arc<LocalStore>, concurrency: usize) -> Self {
        Self {
            store,
            cap: concurrency.max(1),
            sessions: Arc::default(),
        }
    }

    /// Transfer sessions open right now.
    pub fn sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Joins or opens the session of (table, slot); `false` when at the cap.
    fn admit(&self, table: &str, slot: Slot, last_page: bool) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, seen| now.saturating_duration_since(*seen) < SESSION_IDLE);
        let key = (table.to_string(), slot);
        if !sessions.contains_key(&key) && sessions.len() >= self.cap {
            return false;
        }
        if last_page {
            sessions.remove(&key);
        } else {
            sessions.insert(key, now);
        }
        true
    }

    /// Answers one request. Runs on the caller's task; every answer is bounded
    /// by the page limits above.
    pub fn serve(&self, request: SyncRequest) -> Result<SyncResponse, SyncServeError> {
        let table_of = |name: &str| {
            self.store
                .table(name)
                .ok_or_else(|| SyncServeError::UnknownTable(name.to_string()))
        };
        match request {
            SyncRequest::Digests { table, slots } => {
                if slots.len() > usize::from(SLOT_COUNT) {
                    return Err(SyncServeError::TooLarge("slots"));
                }
                let handle = table_of(&table)?;
                let t = handle.lock();
                Ok(SyncResponse::Digests(
                    slots
                        .into_iter()
                        .map(|slot| SlotDigest {
                            slot,
                            state: handle.sync().get(slot),
                            digest: t.slot_digest(slot),
                        })
                        .collect(),
                ))
            }
            SyncRequest::Buckets {
                table,
                slot,
                exclude_before_ms,
            } => {
                let handle = table_of(&table)?;
                let t = handle.lock();
                Ok(SyncResponse::Buckets {
                    state: handle.sync().get(slot),
                    entries: t.slot_len(slot) as u64,
                    digests: t.bucket_digests(slot, exclude_before_ms),
                })
            }
            SyncRequest::Pull {
                table,
                slot,
                mask,
                after,
                versions,
            } => {
                let handle = table_of(&table)?;
                if !self.admit(&table, slot, false) {
                    return Ok(SyncResponse::Busy);
                }
                let response = {
                    let t = handle.lock();
                    if versions {
                        SyncResponse::Versions(t.slot_versions(
                            slot,
                            mask,
                            after.as_ref(),
                            VERSIONS_ITEMS_MAX,
                        ))
                    } else {
                        SyncResponse::Entries(t.slot_page(
                            slot,
                            mask,
                            after.as_ref(),
                            PULL_ITEMS_MAX,
                            PULL_BYTES_MAX,
                        ))
                    }
                };
                let done = match &response {
                    SyncResponse::Versions(p) => p.next.is_none(),
                    SyncResponse::Entries(p) => p.next.is_none(),
                    _ => true,
                };
                // The last page ends the session (fetches that may follow a
                // version list are small and not counted).
                if done {
                    self.admit(&table, slot, true);
                }
                Ok(response)
            }
            SyncRequest::Fetch { table, keys } => {
                if keys.len() > FETCH_KEYS_MAX {
                    return Err(SyncServeError::TooLarge("keys"));
                }
                let handle = table_of(&table)?;
                let t = handle.lock();
                Ok(SyncResponse::Fetched(
                    keys.iter().filter_map(|k| t.get_entry(k)).collect(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_store::{
        Ack, Document, Durability, Hlc, Key, ManualClock, Origin, Replication, TableOptions,
        TableSpec, Timestamp, Value, Version, ALL_BUCKETS,
    };

    fn server(cap: usize) -> SyncServer {
        let hlc = Arc::new(Hlc::new(
            ManualClock::new(10_000),
            Duration::from_millis(500),
            Timestamp::ZERO,
        ));
        let store = Arc::new(LocalStore::new(hlc, Duration::ZERO, None));
        let spec = TableSpec {
            name: "t".into(),
            options: TableOptions {
                replication: Replication::All,
                write_ack: Ack::One,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
                indexes: Vec::new(),
            },
        };
        store.declare("svc", spec).expect("declare");
        // Enough entries in slot 0 for more than one page.
        let items = (0..200_000)
            .map(|i| format!("k{i}"))
            .filter(|k| geoul_placement::slot_of(k.as_bytes()).get() < 3)
            .map(|k| {
                let entry = Entry {
                    key: Key::new(k.as_bytes()).expect("key"),
                    version: Version {
                        ts: Timestamp::from_parts(9_000, 0),
                        origin: Origin::from_raw(1),
                    },
                    expires_at_ms: None,
                    value: Some(
                        Document::single("v", Value::Str("x".repeat(60_000)))
                            .and_then(|d| d.encode())
                            .expect("doc"),
                    ),
                };
                ("t".to_string(), entry)
            })
            .collect();
        store.apply_batch(items);
        SyncServer::new(store, cap)
    }

    fn pull(slot: u16, after: Option<Cursor>) -> SyncRequest {
        SyncRequest::Pull {
            table: "t".into(),
            slot: Slot::new(slot).expect("slot"),
            mask: ALL_BUCKETS,
            after,
            versions: false,
        }
    }

    #[test]
    fn transfers_past_the_cap_are_busy_until_one_ends() {
        let s = server(2);
        let first = |slot| match s.serve(pull(slot, None)) {
            Ok(SyncResponse::Entries(p)) => p,
            other => panic!("slot {slot}: {other:?}"),
        };
        let a = first(0);
        let b = first(1);
        assert!(
            a.next.is_some() && b.next.is_some(),
            "slots span several pages"
        );
        assert_eq!(s.sessions(), 2);
        assert_eq!(s.serve(pull(2, None)), Ok(SyncResponse::Busy));
        // Slot 0's session continues, and its last page ends it.
        let mut after = a.next;
        while let Some(c) = after {
            match s.serve(pull(0, Some(c))) {
                Ok(SyncResponse::Entries(p)) => after = p.next,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(s.sessions(), 1);
        assert!(matches!(
            s.serve(pull(2, None)),
            Ok(SyncResponse::Entries(_))
        ));
    }

    #[test]
    fn requests_over_their_bounds_are_refused() {
        let s = server(1);
        let keys = vec![Key::new(b"k").expect("key"); FETCH_KEYS_MAX + 1];
        assert_eq!(
            s.serve(SyncRequest::Fetch {
                table: "t".into(),
                keys
            }),
            Err(SyncServeError::TooLarge("keys"))
        );
        assert_eq!(
            s.serve(SyncRequest::Digests {
                table: "nope".into(),
                slots: vec![]
            }),
            Err(SyncServeError::UnknownTable("nope".into()))
        );
    }
}
