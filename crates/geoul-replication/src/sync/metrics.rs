//! Sync and anti-entropy metrics (slot state counts are read from the tables
//! by the node's collector).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label: table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// Table.
    pub table: String,
}

/// Handles to sync metrics; clones share values.
#[derive(Clone, Debug, Default)]
pub struct SyncMetrics {
    /// Entries received by slot syncs.
    pub sync_entries: Family<TableLabel, Counter>,
    /// Bytes moved by slot syncs, both ways: digests, version lists, entries.
    pub sync_bytes: Family<TableLabel, Counter>,
    /// Slots that finished syncing.
    pub slots_synced: Family<TableLabel, Counter>,
    /// Slot syncs that failed and will be retried.
    pub sync_retries: Family<TableLabel, Counter>,
    /// Slots declared synced by a bootstrap merge (no synced source existed).
    pub bootstraps: Family<TableLabel, Counter>,
    /// Anti-entropy digest exchanges with a peer.
    pub ae_exchanges: Family<TableLabel, Counter>,
    /// Slots found different by anti-entropy.
    pub ae_mismatches: Family<TableLabel, Counter>,
    /// Entries pulled by anti-entropy.
    pub ae_entries_in: Family<TableLabel, Counter>,
    /// Entries pushed by anti-entropy.
    pub ae_entries_out: Family<TableLabel, Counter>,
    /// Bytes moved by anti-entropy (both ways).
    pub ae_bytes: Family<TableLabel, Counter>,
    /// Slots dropped after their handoff completed.
    pub handoffs: Family<TableLabel, Counter>,
    /// Tables wiped because this node was out of touch past the grace period.
    pub wipes: Family<TableLabel, Counter>,
}

impl SyncMetrics {
    /// Registers under `geoul_sync_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("geoul_sync");
        let counters: [(&str, &str, &Family<TableLabel, Counter>); 12] = [
            (
                "entries",
                "Entries received by slot syncs",
                &self.sync_entries,
            ),
            (
                "bytes",
                "Bytes moved by slot syncs (digests, version lists, entries; both ways)",
                &self.sync_bytes,
            ),
            (
                "slots_completed",
                "Slots that finished syncing",
                &self.slots_synced,
            ),
            (
                "retries",
                "Slot syncs that failed and will be retried",
                &self.sync_retries,
            ),
            (
                "bootstraps",
                "Slots declared synced by a bootstrap merge",
                &self.bootstraps,
            ),
            (
                "ae_exchanges",
                "Anti-entropy digest exchanges",
                &self.ae_exchanges,
            ),
            (
                "ae_mismatches",
                "Slots found different by anti-entropy",
                &self.ae_mismatches,
            ),
            (
                "ae_entries_in",
                "Entries pulled by anti-entropy",
                &self.ae_entries_in,
            ),
            (
                "ae_entries_out",
                "Entries pushed by anti-entropy",
                &self.ae_entries_out,
            ),
            ("ae_bytes", "Bytes moved by anti-entropy", &self.ae_bytes),
            (
                "handoffs",
                "Slots dropped after their handoff completed",
                &self.handoffs,
            ),
            (
                "wipes",
                "Tables wiped after losing touch past the tombstone grace",
                &self.wipes,
            ),
        ];
        for (name, help, family) in counters {
            r.register(name, help, family.clone());
        }
    }

    /// The counter of `family` for `table`.
    pub fn of(family: &Family<TableLabel, Counter>, table: &str) -> Counter {
        family
            .get_or_create(&TableLabel {
                table: table.to_string(),
            })
            .clone()
    }
}
