//! Errors callers of the transport see.
//!
//! Owns: [`TransportError`] (binding), [`RequestError`] (one request or one-way
//! send) and [`RemoteError`] (what a handler returns). Errors internal to a
//! connection (handshake, channel, framing) live with their modules and are mapped
//! here; they never leak key material or peer-controlled bytes beyond a bounded,
//! lossily decoded reason.

use std::net::SocketAddr;

use crate::config::ConfigError;

/// Why a transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The configuration is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Why a request (or one-way send) failed.
///
/// `Unreachable`, `Rejected`, `Auth`, `Overloaded` and `FrameTooLarge` mean the
/// request was never sent: callers may fail over to another replica safely.
/// `Timeout`, `ConnectionClosed` and `ShuttingDown` (for a request already pending
/// when this side shut down) mean it may or may not have been processed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No connection to the peer: the dial failed, or the address is in backoff after
    /// a recent failure (fails fast so callers can fail over).
    #[error("{addr} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        addr: SocketAddr,
        /// Why, for logs.
        reason: String,
    },
    /// The deadline passed before a response arrived.
    #[error("request timed out")]
    Timeout,
    /// The peer's handler returned an error (its reason).
    #[error("remote error: {0}")]
    Remote(String),
    /// The connection died while the request was pending.
    #[error("connection closed")]
    ConnectionClosed,
    /// Too many requests in flight on the connection.
    #[error("too many requests in flight")]
    Overloaded,
    /// The peer refused our cluster secret (or we refused its).
    #[error("authentication failed: the peer uses another cluster secret")]
    Auth,
    /// The payload exceeds the configured frame limit.
    #[error("payload exceeds the frame size limit")]
    FrameTooLarge,
    /// This transport is shutting down.
    #[error("transport is shutting down")]
    ShuttingDown,
    /// The peer refused the connection before authentication: another protocol
    /// version, at its connection limit, or shutting down. The reason is the peer's.
    #[error("{addr} refused the connection: {reason}")]
    Rejected {
        /// The peer.
        addr: SocketAddr,
        /// The peer's reason, or why its preamble was unreadable.
        reason: String,
    },
    /// The configuration given to `Client::connect` is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// A handler's failure, sent back to the caller as [`RequestError::Remote`].
///
/// Keep the reason short and free of secrets: it crosses the network. Reasons longer
/// than [`REMOTE_ERROR_MAX_BYTES`](crate::REMOTE_ERROR_MAX_BYTES) are cut.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

impl RemoteError {
    /// A remote error with `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}
