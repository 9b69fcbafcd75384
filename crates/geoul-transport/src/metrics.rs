//! Transport counters.
//!
//! Owns: the atomic counters every connection updates and a plain snapshot of them.
//! Does not own: exporting (the admin HTTP edge renders snapshots as Prometheus).
//!
//! Counters only grow, except `connections_open`, a gauge. Relaxed ordering is
//! enough: each value is independent and read for monitoring only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Live counters of one [`Transport`](crate::Transport) or [`Client`](crate::Client).
#[derive(Debug, Default)]
pub struct TransportMetrics {
    /// Application frames received.
    pub frames_in: AtomicU64,
    /// Application frames sent.
    pub frames_out: AtomicU64,
    /// Encrypted bytes received after the handshake (length prefixes included).
    pub bytes_in: AtomicU64,
    /// Encrypted bytes sent after the handshake (length prefixes included).
    pub bytes_out: AtomicU64,
    /// Handshakes that failed authentication (wrong cluster secret or tampering).
    pub auth_failures: AtomicU64,
    /// Connections closed for breaking the protocol (garbage, bad magic or version,
    /// oversized or truncated frames, decrypt failures after the handshake).
    pub protocol_errors: AtomicU64,
    /// Inbound TCP connections admitted under `max_connections`.
    pub connections_accepted: AtomicU64,
    /// Inbound TCP connections refused because `max_connections` was reached.
    pub connections_refused: AtomicU64,
    /// Authenticated connections currently open, both directions (a gauge).
    pub connections_open: AtomicU64,
    /// Outbound dials that failed (connect, handshake or authentication).
    pub connect_failures: AtomicU64,
    /// Requests whose caller stopped waiting at its deadline.
    pub requests_timed_out: AtomicU64,
    /// Outbound connections closed because a request timed out with nothing at
    /// all received from the peer meanwhile (a silently dead path).
    pub connections_presumed_dead: AtomicU64,
}

/// A point-in-time copy of [`TransportMetrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MetricsSnapshot {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub auth_failures: u64,
    pub protocol_errors: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub connections_open: u64,
    pub connect_failures: u64,
    pub requests_timed_out: u64,
    pub connections_presumed_dead: u64,
}

impl TransportMetrics {
    /// Copies every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            auth_failures: get(&self.auth_failures),
            protocol_errors: get(&self.protocol_errors),
            connections_accepted: get(&self.connections_accepted),
            connections_refused: get(&self.connections_refused),
            connections_open: get(&self.connections_open),
            connect_failures: get(&self.connect_failures),
            requests_timed_out: get(&self.requests_timed_out),
            connections_presumed_dead: get(&self.connections_presumed_dead),
        }
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub(crate) fn incr(counter: &AtomicU64) {
    add(counter, 1);
}

/// Holds `connections_open` up by one for as long as it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    metrics: Arc<TransportMetrics>,
}

impl OpenConnection {
    pub(crate) fn new(metrics: Arc<TransportMetrics>) -> Self {
        incr(&metrics.connections_open);
        Self { metrics }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}
