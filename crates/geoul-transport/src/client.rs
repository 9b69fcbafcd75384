//! A single authenticated connection for tools: the CLI, load generators, tests.
//!
//! Owns: a thin public wrapper over one dialled connection, without a listener or a
//! pool. It does not reconnect: a tool reports the error and exits, or connects
//! again. Does not own: anything a node needs (use [`Transport`](crate::Transport)).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::TransportConfig;
use crate::connection::{deadline_after, Connection};
use crate::error::RequestError;
use crate::metrics::TransportMetrics;
use crate::net::Net;
use crate::secret::ClusterSecret;

/// One authenticated, multiplexed connection to one address.
///
/// Requests may be issued concurrently from many tasks (`&self`). Dropping the
/// client flushes queued messages and closes the connection.
pub struct Client<N: Net> {
    connection: Connection,
    addr: SocketAddr,
    metrics: Arc<TransportMetrics>,
    oneway_wait: Duration,
    _net: PhantomData<fn() -> N>,
}

impl<N: Net> Client<N> {
    /// Connects to `addr` and authenticates with `secret`, within
    /// `config.connect_timeout` + `config.handshake_timeout`.
    pub async fn connect(
        net: N,
        addr: SocketAddr,
        secret: &ClusterSecret,
        config: TransportConfig,
    ) -> Result<Self, RequestError> {
        config.validate()?;
        let metrics = Arc::new(TransportMetrics::default());
        let connection = Connection::establish(&net, addr, secret, &config, &metrics).await?;
        Ok(Self {
            connection,
            addr,
            metrics,
            oneway_wait: config.connect_timeout + config.handshake_timeout,
            _net: PhantomData,
        })
    }

    /// Sends a request and waits at most `timeout` for its answer.
    pub async fn request(&self, payload: Bytes, timeout: Duration) -> Result<Bytes, RequestError> {
        self.connection
            .request(payload, deadline_after(timeout))
            .await
    }

    /// Queues a one-way message, waiting for a queue slot at most
    /// `connect_timeout + handshake_timeout`.
    pub async fn send_oneway(&self, payload: Bytes) -> Result<(), RequestError> {
        self.connection
            .send_oneway(payload, deadline_after(self.oneway_wait))
            .await
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection has died; a closed client must be reconnected.
    pub fn is_closed(&self) -> bool {
        self.connection.is_closed()
    }

    /// Closes the connection now; pending requests fail with `ConnectionClosed`.
    pub fn close(&self) {
        self.connection.close(RequestError::ConnectionClosed);
    }

    /// Counters of this connection.
    pub fn metrics(&self) -> Arc<TransportMetrics> {
        Arc::clone(&self.metrics)
    }
}

impl<N: Net> std::fmt::Debug for Client<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
