//! Exposes the transport's counters through the node's Prometheus registry.
//!
//! Owns: metric names and help texts for transport counters. Does not own: the
//! counters themselves (`geoul_transport::TransportMetrics`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use geoul_transport::TransportMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the transport's atomic counters at scrape time.
#[derive(Debug)]
pub struct TransportCollector(pub Arc<TransportMetrics>);

impl Collector for TransportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let counters = [
            ("geoul_transport_frames_in", "Frames received", &m.frames_in),
            ("geoul_transport_frames_out", "Frames sent", &m.frames_out),
            ("geoul_transport_bytes_in", "Bytes received", &m.bytes_in),
            ("geoul_transport_bytes_out", "Bytes sent", &m.bytes_out),
            (
                "geoul_transport_auth_failures",
                "Connections refused: wrong cluster secret or failed handshake",
                &m.auth_failures,
            ),
            (
                "geoul_transport_protocol_errors",
                "Connections closed for garbage, bad magic, wrong version or bad frames",
                &m.protocol_errors,
            ),
            (
                "geoul_transport_connections_accepted",
                "Inbound connections accepted",
                &m.connections_accepted,
            ),
            (
                "geoul_transport_connections_refused",
                "Inbound connections refused at the connection limit",
                &m.connections_refused,
            ),
            (
                "geoul_transport_connect_failures",
                "Outbound connection attempts that failed",
                &m.connect_failures,
            ),
            (
                "geoul_transport_requests_timed_out",
                "Requests that hit their deadline",
                &m.requests_timed_out,
            ),
            (
                "geoul_transport_connections_presumed_dead",
                "Connections closed after a request timed out with no traffic from the peer",
                &m.connections_presumed_dead,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let open = ConstGauge::new(
            i64::try_from(m.connections_open.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        let metric = encoder.encode_descriptor(
            "geoul_transport_connections_open",
            "Connections currently open (inbound and outbound)",
            None,
            open.metric_type(),
        )?;
        open.encode(metric)
    }
}

/// Work done by the expiry sweeper, per node.
#[derive(Debug, Default)]
pub struct SweepCounters {
    /// Entries examined.
    pub examined: std::sync::atomic::AtomicU64,
    /// Values dropped because they expired.
    pub expired: std::sync::atomic::AtomicU64,
    /// Deletes and expiry markers collected after the tombstone grace.
    pub collected: std::sync::atomic::AtomicU64,
}

/// Reads one number out of a table's stats.
type StatField = fn(&geoul_store::TableStats) -> u64;

/// Reads table sizes, sweeper work and durable-store counters at scrape time.
#[derive(Debug)]
pub struct StoreCollector {
    /// The tables.
    pub store: Arc<geoul_replication::LocalStore>,
    /// Sweeper counters.
    pub sweep: Arc<SweepCounters>,
}

/// One gauge per table: `name{table="…"}` = `value(table)`.
fn table_gauge(
    encoder: &mut DescriptorEncoder,
    tables: &[Arc<geoul_replication::TableHandle>],
    name: &str,
    help: &str,
    value: impl Fn(&geoul_replication::TableHandle) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for t in tables {
        let labels = [("table", t.spec().name.as_str())];
        let family = metric.encode_family(&labels)?;
        ConstGauge::new(i64::try_from(value(t)).unwrap_or(i64::MAX)).encode(family)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tables = self.store.tables();
        let gauges: [(&str, &str, StatField); 3] = [
            ("geoul_table_values", "Entries holding a value", |s| {
                s.values
            }),
            (
                "geoul_table_markers",
                "Deletes and swept expiry markers",
                |s| s.markers,
            ),
            (
                "geoul_table_bytes",
                "Key and value bytes held in memory",
                |s| s.bytes,
            ),
        ];
        for (name, help, get) in gauges {
            table_gauge(&mut encoder, &tables, name, help, |t| {
                get(&t.lock().stats())
            })?;
        }
        {
            let mut metric = encoder.encode_descriptor(
                "geoul_sync_slots",
                "Slots of each table on this node by sync state",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for t in &tables {
                let counts = t.sync().counts();
                for state in geoul_replication::sync::SlotState::ALL {
                    let labels = [("table", t.spec().name.as_str()), ("state", state.word())];
                    let family = metric.encode_family(&labels)?;
                    ConstGauge::new(i64::from(counts.get(state))).encode(family)?;
                }
            }
        }
        type ProgressField = fn(&geoul_replication::sync::SyncProgress) -> u64;
        let progress: [(&str, &str, ProgressField); 4] = [
            (
                "geoul_sync_progress_slots_total",
                "Slots to sync in the current round",
                |p| u64::from(p.slots_total),
            ),
            (
                "geoul_sync_progress_slots_done",
                "Slots synced in the current round",
                |p| u64::from(p.slots_done),
            ),
            (
                "geoul_sync_progress_entries",
                "Entries received in the current round",
                |p| p.entries,
            ),
            (
                "geoul_sync_progress_bytes",
                "Bytes received in the current round",
                |p| p.bytes,
            ),
        ];
        for (name, help, get) in progress {
            table_gauge(&mut encoder, &tables, name, help, |t| {
                get(&t.sync().progress())
            })?;
        }
        for (name, help, value) in [
            (
                "geoul_sweeper_examined",
                "Entries examined by the expiry sweeper",
                &self.sweep.examined,
            ),
            (
                "geoul_sweeper_expired",
                "Values dropped by the expiry sweeper",
                &self.sweep.expired,
            ),
            (
                "geoul_tombstones_collected",
                "Deletes and expiry markers collected after the tombstone grace",
                &self.sweep.collected,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        if let Some(disk) = self.store.disk() {
            let stats = disk.stats();
            let latency = &stats.sync_latency;
            let buckets: Vec<(f64, u64)> = geoul_storage::SYNC_LATENCY_BUCKETS_MICROS
                .iter()
                .map(|us| *us as f64 / 1e6)
                .chain(std::iter::once(f64::INFINITY))
                .zip(latency.buckets.iter().copied())
                .collect();
            let mut metric = encoder.encode_descriptor(
                "geoul_storage_fsync_seconds",
                "Latency of durable commits (dirty pages plus fsyncs)",
                None,
                prometheus_client::metrics::MetricType::Histogram,
            )?;
            metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                latency.sum.as_secs_f64(),
                latency.count,
                &buckets,
                None,
            )?;
            for (name, help, value) in [
                (
                    "geoul_storage_batches",
                    "Batches committed to the durable store",
                    stats.batches,
                ),
                (
                    "geoul_storage_sync_failures",
                    "Durable commits that failed",
                    stats.sync_failures,
                ),
            ] {
                let counter = ConstCounter::new(value);
                let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
                counter.encode(metric)?;
            }
        }
        Ok(())
    }
}
