//! The directory's Prometheus metrics (`geoul_dir_*`).
//!
//! Owns: [`DirMetrics`]. Does not own: the registry (the node's), the
//! table's gauges (`geoul_table_values{table="dir.instances"}` is the number
//! of entries held, `geoul_sweeper_expired` counts expired values dropped)
//! or call metrics (`geoul_service_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// One outcome of one operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `register | update | renew | remove | get | search | reserve`.
    pub op: &'static str,
    /// `ok`, or why not: `not_found | bad_input | full | no_room | error`.
    pub outcome: &'static str,
}

/// Handles to the directory metrics; clones share values.
#[derive(Clone, Debug)]
pub struct DirMetrics {
    /// Operations by outcome (renewals/s and searches/s are rates of it).
    pub ops: Family<Outcome, Counter>,
    /// Seconds a search took on the node that coordinated it.
    pub search_seconds: Histogram,
    /// Entries returned by searches.
    pub search_rows: Counter,
    /// Searches answered partial (some slot had no serving replica).
    pub search_partial: Counter,
}

impl Default for DirMetrics {
    fn default() -> Self {
        Self {
            ops: Family::default(),
            search_seconds: Histogram::new([
                0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0,
            ]),
            search_rows: Counter::default(),
            search_partial: Counter::default(),
        }
    }
}

impl DirMetrics {
    /// Counts one operation.
    pub fn count(&self, op: &'static str, outcome: &'static str) {
        self.ops.get_or_create(&Outcome { op, outcome }).inc();
    }

    /// Registers under `geoul_dir_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("geoul_dir");
        r.register(
            "ops",
            "Directory operations by operation and outcome",
            self.ops.clone(),
        );
        r.register(
            "search_seconds",
            "Time to answer a search on the coordinating node",
            self.search_seconds.clone(),
        );
        r.register(
            "search_rows",
            "Entries returned by searches",
            self.search_rows.clone(),
        );
        r.register(
            "search_partial",
            "Searches answered partial",
            self.search_partial.clone(),
        );
    }
}
