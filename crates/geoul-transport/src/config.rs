//! Transport limits and timeouts.
//!
//! Owns: [`TransportConfig`], its defaults (each a named constant saying why) and
//! its validation. Does not own: reading configuration files (the `geoul` binary).

use std::time::Duration;

use geoul_proto::{FRAME_HEADER_BYTES, HELLO_MAX_BYTES, MAX_FRAME_BYTES};

/// Default frame limit: the protocol maximum, so nodes with default settings accept
/// whatever any other default node sends. Lower it on memory-constrained edges.
pub const DEFAULT_MAX_FRAME_BYTES: usize = MAX_FRAME_BYTES;

/// Default bound on requests awaiting a response on one outbound connection.
///
/// At a 1 ms round trip this allows ~4 M requests/s per peer, well beyond need; past
/// it the caller gets `Overloaded` at once instead of growing an unbounded map.
pub const DEFAULT_MAX_INFLIGHT_REQUESTS_PER_CONN: usize = 4096;

/// Default bound on frames queued for one connection's writer.
///
/// Enough to absorb a burst while the writer encrypts a batch; when full, callers
/// wait (within their deadline) for a slot — this is where backpressure begins.
pub const DEFAULT_OUTBOUND_QUEUE_FRAMES: usize = 1024;

/// Default bound on handler futures running for one inbound connection.
///
/// At the limit the server stops reading that socket, so TCP flow control slows the
/// sender instead of the server queueing work without bound. 256 keeps a CPU busy
/// with I/O-bound handlers without letting one peer monopolise the node.
pub const DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONN: usize = 256;

/// Default bound on inbound connections (handshaking or established).
///
/// A cluster of tens of nodes plus CLIs and game servers stays far below this; the
/// bound caps the file descriptors and memory an unauthenticated flood can take.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default TCP connect timeout: a few round trips across a region, short enough for
/// callers to fail over to another replica quickly.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Default bound on the whole preamble + Noise handshake, per connection. It also
/// bounds how long an idle unauthenticated connection holds a slot.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default smallest backoff after a failed dial: long enough not to spin on a dead
/// peer, short enough that a restarted node is reached again almost at once.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Default largest backoff: a node that was down for a long time is retried at least
/// this often (membership will usually notice it sooner).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Default hello: names the software; nodes should set `"node-<name> <addr>"`.
pub const DEFAULT_HELLO: &str = "geoul";

/// Limits and timeouts of a transport. All bounds are per process unless named
/// "per connection".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Largest frame body accepted or sent (≤ [`MAX_FRAME_BYTES`]). Keep it equal
    /// across the cluster: a peer that sends a larger frame is disconnected.
    pub max_frame_bytes: usize,
    /// Requests awaiting a response per outbound connection; beyond it `Overloaded`.
    pub max_inflight_requests_per_conn: usize,
    /// Frames queued per connection for its writer.
    pub outbound_queue_frames: usize,
    /// Handler futures running per inbound connection.
    pub max_concurrent_handlers_per_conn: usize,
    /// Inbound connections, handshaking or established.
    pub max_connections: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Bound on the preamble exchange and Noise handshake.
    pub handshake_timeout: Duration,
    /// Smallest backoff after a failed dial.
    pub backoff_min: Duration,
    /// Largest backoff after repeated failed dials.
    pub backoff_max: Duration,
    /// Seed of the RNG behind backoff jitter; `None` draws it from the OS. Set it in
    /// simulations so runs reproduce.
    pub rng_seed: Option<u64>,
    /// Who this side says it is in its preamble (≤ [`HELLO_MAX_BYTES`]), for the
    /// peer's logs, e.g. "node-4 127.0.0.1:7004" or "cli".
    pub hello: String,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_inflight_requests_per_conn: DEFAULT_MAX_INFLIGHT_REQUESTS_PER_CONN,
            outbound_queue_frames: DEFAULT_OUTBOUND_QUEUE_FRAMES,
            max_concurrent_handlers_per_conn: DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            rng_seed: None,
            hello: DEFAULT_HELLO.to_owned(),
        }
    }
}

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid transport config: {field} {problem}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl TransportConfig {
    /// Checks every bound; `bind` and `Client::connect` call it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, problem: String| Err(ConfigError { field, problem });
        if !(FRAME_HEADER_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return fail(
                "max_frame_bytes",
                format!(
                    "must be in {FRAME_HEADER_BYTES}..={MAX_FRAME_BYTES}, got {}",
                    self.max_frame_bytes
                ),
            );
        }
        let counts = [
            (
                "max_inflight_requests_per_conn",
                self.max_inflight_requests_per_conn,
            ),
            ("outbound_queue_frames", self.outbound_queue_frames),
            (
                "max_concurrent_handlers_per_conn",
                self.max_concurrent_handlers_per_conn,
            ),
            ("max_connections", self.max_connections),
        ];
        for (field, value) in counts {
            if value == 0 || value > tokio::sync::Semaphore::MAX_PERMITS {
                return fail(
                    field,
                    format!(
                        "must be in 1..={}, got {value}",
                        tokio::sync::Semaphore::MAX_PERMITS
                    ),
                );
            }
        }
        let durations = [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("backoff_min", self.backoff_min),
        ];
        for (field, value) in durations {
            if value.is_zero() {
                return fail(field, "must be greater than zero".to_owned());
            }
        }
        if self.backoff_max < self.backoff_min {
            return fail(
                "backoff_max",
                format!(
                    "({:?}) must be at least backoff_min ({:?})",
                    self.backoff_max, self.backoff_min
                ),
            );
        }
        if self.hello.len() > HELLO_MAX_BYTES {
            return fail(
                "hello",
                format!(
                    "is {} bytes, at most {HELLO_MAX_BYTES} allowed",
                    self.hello.len()
                ),
            );
        }
        Ok(())
    }

    /// Largest request or response payload a frame can carry under this config.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_frame_bytes - FRAME_HEADER_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(TransportConfig::default().validate(), Ok(()));
    }

    #[test]
    fn bad_values_name_the_field() {
        type Mutation = fn(&mut TransportConfig);
        let cases: [(Mutation, &str); 5] = [
            (
                |c| c.max_frame_bytes = MAX_FRAME_BYTES + 1,
                "max_frame_bytes",
            ),
            (|c| c.outbound_queue_frames = 0, "outbound_queue_frames"),
            (
                |c| c.handshake_timeout = Duration::ZERO,
                "handshake_timeout",
            ),
            (|c| c.backoff_max = Duration::from_millis(1), "backoff_max"),
            (|c| c.hello = "h".repeat(HELLO_MAX_BYTES + 1), "hello"),
        ];
        for (mutate, field) in cases {
            let mut config = TransportConfig::default();
            mutate(&mut config);
            let err = config.validate().expect_err(field);
            assert_eq!(err.field, field);
        }
    }
}
