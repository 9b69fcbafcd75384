//! geoul-replication: results, not requests, travel to replicas.
//!
//! * `local` — this node's tables, their durable backing, applying batches;
//! * `placement` — replica sets and routes from the membership view;
//! * `batcher` — one batching sender per peer, bounded queue and in-flight;
//! * `replicator` — the write path (version, apply, ship, wait for acks) and the
//!   read paths (`One`, `Quorum` with read repair), and scans across nodes;
//! * `scan` — one node's scan page and the merge of pages;
//! * `sync` — slot states, full sync, anti-entropy, handoff, tombstone wipe;
//! * `messages` — batch and read messages, and the `ReplicaLink` seam.

pub mod batcher;
mod fresh;
pub mod local;
pub mod messages;
pub mod metrics;
pub mod placement;
pub mod query;
pub mod replicator;
pub mod scan;
pub mod sync;

pub use local::{LocalStore, StoreError, TableHandle};

impl LocalStore {
    /// How this node declares each of its tables, for placement and gossip.
    pub fn table_uses(&self) -> Vec<TableUse> {
        self.tables()
            .iter()
            .map(|t| TableUse {
                table: t.spec().name.clone(),
                service: t.service().to_string(),
                replication: t.spec().options.replication,
                summary: t.spec().options.summary(),
            })
            .collect()
    }
}
pub use messages::{BatchAck, LinkError, ReplicaLink, ReplicateBatch};
pub use metrics::ReplicationMetrics;
pub use placement::{Conflict, Placement, Route, TableUse};
pub use replicator::{
    ReadError, ReadLevel, Replicator, TouchRequest, WriteError, WriteOutcome, WriteRequest,
};
pub use scan::{local_scan, ScanPage, ScanResult};
