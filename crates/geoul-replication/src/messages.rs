//! What replicas say to each other: batches of results to apply, and reads.
//!
//! Owns: the message types and the [`ReplicaLink`] seam through which the write
//! and read paths reach other nodes. Does not own: framing or authentication (the
//! transport does that; the node implements `ReplicaLink` over it).

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use geoul_store::{Change, Entry, Key};
use serde::{Deserialize, Serialize};

/// Entries in one replication batch. Bounds the frame (≤ 256 × (1 KiB key +
/// 1 MiB value) is still under the 16 MiB... only for small values, so the
/// batcher also caps bytes) and the time one batch holds a replica's table lock.
pub const BATCH_ENTRIES_MAX: usize = 256;

/// Bytes of keys and values in one batch, kept well under the 16 MiB frame bound.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Results to apply on a replica: (table, change) pairs, applied in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateBatch {
    /// The entries and touches.
    pub items: Vec<(String, Change)>,
}

impl ReplicateBatch {
    /// A batch of whole entries (sync and repair send those).
    pub fn entries(items: impl IntoIterator<Item = (String, Entry)>) -> Self {
        Self {
            items: items
                .into_iter()
                .map(|(t, e)| (t, Change::Put(e)))
                .collect(),
        }
    }
}

/// A replica's answer: which items it refused (by index) and why. Everything not
/// listed was applied (and persisted, for `Disk` tables) before the answer left.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// (index in the batch, reason).
    pub refused: Vec<(u32, String)>,
}

/// Why a peer could not be reached or answered with an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LinkError(pub String);

/// How the write and read paths reach another replica.
pub trait ReplicaLink: Send + Sync + 'static {
    /// Sends a batch; resolves when the replica applied it (or refused items).
    fn replicate(
        &self,
        to: SocketAddr,
        batch: ReplicateBatch,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<BatchAck, LinkError>>;

    /// Reads the stored entry for `key` (in any state) from a replica.
    fn read(
        &self,
        to: SocketAddr,
        table: String,
        key: Key,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<Entry>, LinkError>>;

    /// One node's scan page of `table` for `prefix` (see `ScanPage`).
    fn scan(
        &self,
        to: SocketAddr,
        table: String,
        prefix: Vec<u8>,
        limit: u32,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<crate::scan::ScanPage, LinkError>>;

    /// A sync or repair request (see `sync::protocol`).
    fn sync(
        &self,
        to: SocketAddr,
        request: crate::sync::SyncRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<crate::sync::SyncResponse, LinkError>>;

    /// Runs `query` on `to` over `slots` (its local top-k).
    fn query(
        &self,
        to: SocketAddr,
        query: geoul_query::Query,
        slots: crate::query::SlotSet,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<crate::query::QueryPage, LinkError>>;
}
