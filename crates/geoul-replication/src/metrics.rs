//! Replication metrics, registered into the node's Prometheus registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of write and read counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// Table.
    pub table: String,
    /// `one | quorum | all`.
    pub level: &'static str,
    /// `ok | failed`.
    pub outcome: &'static str,
}

/// Handles to replication metrics; clones share values.
#[derive(Clone, Debug)]
pub struct ReplicationMetrics {
    /// Writes by table, ack level and outcome.
    pub writes: Family<OpLabels, Counter>,
    /// Touches (expiry renewals) by table, ack level and outcome.
    pub touches: Family<OpLabels, Counter>,
    /// Reads by table, consistency level and outcome.
    pub reads: Family<OpLabels, Counter>,
    /// Entries per replication batch sent.
    pub batch_entries: Histogram,
    /// Seconds from a write's start until its last replica acked (replication lag).
    pub replica_lag: Histogram,
    /// Stale replicas repaired by quorum reads.
    pub read_repairs: Counter,
    /// Items refused when applying batches from other nodes.
    pub apply_refused: Counter,
}

impl Default for ReplicationMetrics {
    fn default() -> Self {
        Self {
            writes: Family::default(),
            touches: Family::default(),
            reads: Family::default(),
            batch_entries: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            replica_lag: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0, 5.0,
            ]),
            read_repairs: Counter::default(),
            apply_refused: Counter::default(),
        }
    }
}

impl ReplicationMetrics {
    /// Registers under `geoul_replication_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("geoul_replication");
        r.register(
            "writes",
            "Writes by table, ack level and outcome",
            self.writes.clone(),
        );
        r.register(
            "touches",
            "Expiry renewals (touches) by table, ack level and outcome",
            self.touches.clone(),
        );
        r.register(
            "reads",
            "Reads by table, consistency and outcome",
            self.reads.clone(),
        );
        r.register(
            "batch_entries",
            "Entries per replication batch",
            self.batch_entries.clone(),
        );
        r.register(
            "replica_lag_seconds",
            "Time from a write's start until each replica acknowledged it",
            self.replica_lag.clone(),
        );
        r.register(
            "read_repairs",
            "Stale replicas repaired by quorum reads",
            self.read_repairs.clone(),
        );
        r.register(
            "apply_refused",
            "Replicated items refused on apply",
            self.apply_refused.clone(),
        );
    }
}
