//! What a transport serves: the [`Handler`] trait and what it learns of the caller.
//!
//! Owns: the contract between the transport and the layer above (the node's
//! service host). Does not own: dispatch by service or message type (payloads are
//! opaque bytes here).

use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::RemoteError;

/// The authenticated peer a request came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's socket address (for inbound connections, its ephemeral port).
    pub addr: SocketAddr,
    /// What the peer said it is in its preamble (e.g. "node-4 127.0.0.1:7004").
    /// Authenticated as "someone holding the cluster secret said this", nothing more.
    pub hello: String,
}

/// Serves requests arriving on a [`Transport`](crate::Transport)'s listener.
///
/// At most `max_concurrent_handlers_per_conn` futures run per connection; a future
/// still running when the caller's deadline (sent with the request) passes is
/// dropped, so handlers must be cancel-safe at await points. A panicking handler is
/// reported to the caller as a remote error and logged; the connection survives.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        &self,
        peer: PeerInfo,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>>;

    /// Receives one one-way message. Runs on the connection's reader, so it must not
    /// block: hand long work to a task or channel.
    fn handle_oneway(&self, peer: PeerInfo, message: Bytes) {
        let _ = (peer, message);
    }
}
