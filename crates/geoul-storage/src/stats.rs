//! Counters a store keeps about itself, for metrics and `/status`.
//!
//! Owns: the lock-free counters updated on every write and durable commit, the
//! durable-commit latency histogram, and the [`StorageStats`] snapshot.
//!
//! Does not own: exporting them. The node copies a snapshot into its Prometheus
//! registry; the histogram's buckets are plain (not cumulative) so either convention
//! can be built from them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds, in microseconds, of the durable-commit latency buckets; a last,
/// unbounded bucket follows. From 100 µs (a write-back cache) to 1 s (a stalled disk).
pub const SYNC_LATENCY_BUCKETS_MICROS: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Number of histogram buckets: one per bound plus the overflow bucket.
pub const SYNC_LATENCY_BUCKETS: usize = SYNC_LATENCY_BUCKETS_MICROS.len() + 1;

/// A point-in-time copy of a store's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageStats {
    /// Size of the data file, or `None` if it could not be read just now.
    pub bytes_on_disk: Option<u64>,
    /// Batches committed since open (including `drop_table`).
    pub batches: u64,
    /// Records (puts and deletes) committed since open.
    pub records: u64,
    /// Key and value bytes committed since open.
    pub bytes_written: u64,
    /// Batches known to be durable. Equal to `batches` under `EveryBatch`; under
    /// `Periodic` the difference is what a crash right now could lose.
    pub durable_batches: u64,
    /// Durable commits that failed (the store is then poisoned until reopened).
    pub sync_failures: u64,
    /// Latency of durable commits: writing the dirty pages plus the fsyncs.
    pub sync_latency: LatencyHistogram,
}

/// Durable-commit latencies: count, sum, max, and per-bucket counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Durable commits measured.
    pub count: u64,
    /// Their total duration.
    pub sum: Duration,
    /// The slowest one.
    pub max: Duration,
    /// `buckets[i]` counts commits that took at most `SYNC_LATENCY_BUCKETS_MICROS[i]`
    /// and more than the bound before it; the last entry counts the rest.
    pub buckets: [u64; SYNC_LATENCY_BUCKETS],
}

/// The live counters behind [`StorageStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    records: AtomicU64,
    bytes_written: AtomicU64,
    durable_batches: AtomicU64,
    sync_failures: AtomicU64,
    sync_count: AtomicU64,
    sync_sum_micros: AtomicU64,
    sync_max_micros: AtomicU64,
    sync_buckets: [AtomicU64; SYNC_LATENCY_BUCKETS],
}

impl Counters {
    /// Counts one committed batch and returns its sequence number (1-based).
    pub(crate) fn committed(&self, records: u64, bytes: u64) -> u64 {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Sequence number of the last committed batch.
    pub(crate) fn committed_seq(&self) -> u64 {
        self.batches.load(Ordering::Acquire)
    }

    /// Sequence number of the last batch known durable.
    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable_batches.load(Ordering::Acquire)
    }

    /// Records that every batch up to `seq` is durable, after a commit of `took`.
    pub(crate) fn synced(&self, seq: u64, took: Duration) {
        self.durable_batches.fetch_max(seq, Ordering::AcqRel);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sync_count.fetch_add(1, Ordering::Relaxed);
        self.sync_sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.sync_max_micros.fetch_max(micros, Ordering::Relaxed);
        let bucket = SYNC_LATENCY_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(SYNC_LATENCY_BUCKETS_MICROS.len());
        self.sync_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed durable commit.
    pub(crate) fn sync_failed(&self) {
        self.sync_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the counters.
    pub(crate) fn snapshot(&self, bytes_on_disk: Option<u64>) -> StorageStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StorageStats {
            bytes_on_disk,
            batches: load(&self.batches),
            records: load(&self.records),
            bytes_written: load(&self.bytes_written),
            durable_batches: load(&self.durable_batches),
            sync_failures: load(&self.sync_failures),
            sync_latency: LatencyHistogram {
                count: load(&self.sync_count),
                sum: Duration::from_micros(load(&self.sync_sum_micros)),
                max: Duration::from_micros(load(&self.sync_max_micros)),
                buckets: std::array::from_fn(|i| load(&self.sync_buckets[i])),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let counters = Counters::default();
        let seq = counters.committed(3, 30);
        counters.synced(seq, Duration::from_micros(100));
        counters.synced(seq, Duration::from_micros(101));
        counters.synced(seq, Duration::from_secs(2));
        let stats = counters.snapshot(Some(7));
        let h = &stats.sync_latency;
        assert_eq!((h.count, h.max), (3, Duration::from_secs(2)));
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[SYNC_LATENCY_BUCKETS - 1], 1);
        assert_eq!(
            (stats.batches, stats.durable_batches, stats.records),
            (1, 1, 3)
        );
    }
}
