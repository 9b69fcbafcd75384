//! Settings of sync and anti-entropy, with defaults sized for a LAN cluster.

use std::time::Duration;

use crate::local::TOMBSTONE_GRACE_DEFAULT;
use crate::sync::protocol::SERVE_CONCURRENCY_DEFAULT;

/// How sync and anti-entropy run on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Slots this node syncs at once.
    pub concurrency: usize,
    /// Slot transfers this node serves at once (the per-source cap).
    pub serve_concurrency: usize,
    /// How often replicas compare digests.
    pub anti_entropy_period: Duration,
    /// Most slots repaired per period per table (bounds CPU).
    pub anti_entropy_slots: usize,
    /// Most bytes moved by repair per period per table (bounds bandwidth).
    pub anti_entropy_bytes: u64,
    /// How long after start a node waits before it may declare a slot synced
    /// without a synced source (a new cluster, a whole-cluster restart).
    pub bootstrap_wait: Duration,
    /// Timeout of each sync request.
    pub request_timeout: Duration,
    /// Deletes and expiry markers are collected after this; a node out of touch
    /// longer is wiped and fully re-synced.
    pub tombstone_grace: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            serve_concurrency: SERVE_CONCURRENCY_DEFAULT,
            anti_entropy_period: Duration::from_secs(1),
            anti_entropy_slots: 256,
            anti_entropy_bytes: 16 * 1024 * 1024,
            bootstrap_wait: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            tombstone_grace: TOMBSTONE_GRACE_DEFAULT,
        }
    }
}

impl SyncConfig {
    /// How long a node may be out of touch with its peers before its data must
    /// be wiped: the tombstone grace minus a margin (two anti-entropy periods
    /// and a second of clock skew), so it wipes before any peer could have
    /// collected a delete it missed.
    pub fn wipe_after(&self) -> Duration {
        self.tombstone_grace
            .saturating_sub(self.anti_entropy_period * 2 + Duration::from_secs(1))
    }
}
