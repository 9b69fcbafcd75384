//! Outbound-only connections for programs that call a cluster but serve nothing
//! (client libraries, the CLI, load generators).
//!
//! Owns: [`Outbound`], the shared connection pool without a listener. Does not
//! own: dialling, backoff and reuse (the pool) or inbound connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::TransportConfig;
use crate::connection::deadline_after;
use crate::error::RequestError;
use crate::metrics::TransportMetrics;
use crate::net::Net;
use crate::pool::Pool;
use crate::secret::ClusterSecret;

/// A pool of authenticated connections to any number of nodes. Cheap to clone;
/// every clone shares the pool. Dropping the last clone closes the connections.
pub struct Outbound<N: Net> {
    inner: Arc<Inner<N>>,
}

struct Inner<N: Net> {
    pool: Arc<Pool<N>>,
    config: TransportConfig,
    metrics: Arc<TransportMetrics>,
}

impl<N: Net> Drop for Inner<N> {
    fn drop(&mut self) {
        self.pool.shutdown();
    }
}

impl<N: Net> Clone for Outbound<N> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<N: Net> Outbound<N> {
    /// A pool dialling with `secret` under `config`.
    pub fn new(
        net: N,
        secret: ClusterSecret,
        config: TransportConfig,
    ) -> Result<Self, RequestError> {
        config.validate()?;
        let metrics = Arc::new(TransportMetrics::default());
        let pool = Pool::new(net, secret, config.clone(), Arc::clone(&metrics));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                config,
                metrics,
            }),
        })
    }

    /// Sends `payload` to `to` and waits at most `timeout` (dialling included).
    pub async fn request(
        &self,
        to: SocketAddr,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        if payload.len() > self.inner.config.max_payload_bytes() {
            return Err(RequestError::FrameTooLarge);
        }
        let deadline = deadline_after(timeout);
        let connection = self.inner.pool.get(to, deadline).await?;
        connection.request(payload, deadline).await
    }

    /// Queues a one-way message to `to` (success means queued, not delivered).
    pub async fn send_oneway(&self, to: SocketAddr, payload: Bytes) -> Result<(), RequestError> {
        if payload.len() > self.inner.config.max_payload_bytes() {
            return Err(RequestError::FrameTooLarge);
        }
        let deadline =
            deadline_after(self.inner.config.connect_timeout + self.inner.config.handshake_timeout);
        let connection = self.inner.pool.get(to, deadline).await?;
        connection.send_oneway(payload, deadline).await
    }

    /// Counters of every connection of the pool.
    pub fn metrics(&self) -> Arc<TransportMetrics> {
        Arc::clone(&self.inner.metrics)
    }
}

impl<N: Net> std::fmt::Debug for Outbound<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}
