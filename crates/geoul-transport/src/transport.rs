//! A node's transport: one listener serving a [`Handler`], plus a pool of outbound
//! connections for its own requests.
//!
//! Owns: the lifecycle (bind, shutdown) and the public request API. Inbound and
//! outbound connections are separate: a node answers on connections others dialled
//! and asks on connections it dialled, so each connection has one client and one
//! server and request ids never collide.
//!
//! Does not own: framing, authentication or pooling details (see the modules named
//! after them).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::TransportConfig;
use crate::connection::deadline_after;
use crate::error::{RequestError, TransportError};
use crate::handler::Handler;
use crate::metrics::TransportMetrics;
use crate::net::{Listener, Net};
use crate::pool::Pool;
use crate::secret::ClusterSecret;
use crate::server::{accept_loop, ServerCtx};

/// Listener + outbound pool. Cheap to clone; every clone is the same transport.
///
/// Dropping the last clone stops the accept loop and closes outbound connections;
/// call [`shutdown`](Self::shutdown) to also wait until the port is released.
pub struct Transport<N: Net> {
    inner: Arc<Inner<N>>,
}

impl<N: Net> Clone for Transport<N> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<N: Net> {
    local_addr: SocketAddr,
    config: TransportConfig,
    pool: Arc<Pool<N>>,
    metrics: Arc<TransportMetrics>,
    shutdown: watch::Sender<bool>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl<N: Net> Drop for Inner<N> {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.pool.shutdown();
    }
}

impl<N: Net> Transport<N> {
    /// Binds `addr` and starts accepting connections authenticated with `secret`,
    /// serving their requests with `handler`.
    pub async fn bind(
        net: N,
        addr: SocketAddr,
        secret: ClusterSecret,
        config: TransportConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Self, TransportError> {
        config.validate()?;
        let bind_err = |source| TransportError::Bind { addr, source };
        let listener = net.listen(addr).await.map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let metrics = Arc::new(TransportMetrics::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = ServerCtx::new(
            secret.clone(),
            config.clone(),
            handler,
            Arc::clone(&metrics),
        );
        let accept_task = tokio::spawn(accept_loop(listener, Arc::new(ctx), shutdown_rx));
        let pool = Pool::new(net, secret, config.clone(), Arc::clone(&metrics));
        tracing::info!(addr = %local_addr, hello = %config.hello, "transport listening");
        Ok(Self {
            inner: Arc::new(Inner {
                local_addr,
                config,
                pool,
                metrics,
                shutdown,
                accept_task: Mutex::new(Some(accept_task)),
            }),
        })
    }

    /// The address actually bound (resolves port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The configuration in force.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Sends `payload` to `to` and waits for the answer, at most `timeout` in total
    /// (dialling included). See [`RequestError`] for which failures are safe to retry
    /// elsewhere.
    pub async fn request(
        &self,
        to: SocketAddr,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.check(&payload)?;
        let deadline = deadline_after(timeout);
        let connection = self.inner.pool.get(to, deadline).await?;
        connection.request(payload, deadline).await
    }

    /// Queues a message to `to` that expects no answer. Waits for a connection and a
    /// queue slot at most `connect_timeout + handshake_timeout`; success means
    /// queued, not delivered.
    pub async fn send_oneway(&self, to: SocketAddr, payload: Bytes) -> Result<(), RequestError> {
        self.check(&payload)?;
        let deadline =
            deadline_after(self.inner.config.connect_timeout + self.inner.config.handshake_timeout);
        let connection = self.inner.pool.get(to, deadline).await?;
        connection.send_oneway(payload, deadline).await
    }

    /// Tells the transport that `to` is alive (the failure detector heard from
    /// it): a dial backoff on it ends now, so the next request dials at once
    /// instead of failing fast for the rest of a backoff that grew while the
    /// peer was away (up to `backoff_max`). Returns whether it was backing off.
    pub fn peer_alive(&self, to: SocketAddr) -> bool {
        self.inner.pool.end_backoff(to)
    }

    /// Live counters.
    pub fn metrics(&self) -> Arc<TransportMetrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// Stops accepting (releasing the port), closes every connection and fails
    /// pending requests with [`RequestError::ShuttingDown`]. Inbound requests already
    /// running get a short grace period to answer. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        self.inner.pool.shutdown();
        let accept_task = self
            .inner
            .accept_task
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(task) = accept_task {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "accept loop failed");
            }
        }
        tracing::info!(addr = %self.inner.local_addr, "transport shut down");
    }

    fn check(&self, payload: &Bytes) -> Result<(), RequestError> {
        if *self.inner.shutdown.borrow() {
            return Err(RequestError::ShuttingDown);
        }
        if payload.len() > self.inner.config.max_payload_bytes() {
            return Err(RequestError::FrameTooLarge);
        }
        Ok(())
    }
}

impl<N: Net> std::fmt::Debug for Transport<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_addr", &self.inner.local_addr)
            .field("shutting_down", &*self.inner.shutdown.borrow())
            .finish_non_exhaustive()
    }
}
