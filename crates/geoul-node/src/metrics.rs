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
