//! The accepting side: admission and authentication of inbound connections.
//!
//! Owns: the accept loop, the `max_connections` bound (excess connections get a
//! readable "overloaded" rejection, then are closed), the server half of the
//! handshake under `handshake_timeout`, and the logging and counting of every
//! pre-authentication failure. Failures are logged at most once per
//! (peer IP, hello) per minute (`log_limit`) but always counted.
//!
//! Does not own: serving requests on an authenticated connection (`serve`).
//!
//! Shutdown (after mini-redis): the accept loop and every connection watch one
//! signal. The loop stops accepting and drops the listener (freeing the port), then
//! waits a bounded time for connections to wind down.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use geoul_proto::{RejectCode, ServerReply};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

use crate::config::TransportConfig;
use crate::handler::{Handler, PeerInfo};
use crate::handshake::{self, Established, HandshakeError};
use crate::log_limit::FailureLogLimiter;
use crate::metrics::{incr, TransportMetrics};
use crate::net::{Listener, Stream};
use crate::secret::ClusterSecret;
use crate::serve::{serve_connection, SHUTDOWN_GRACE};

/// Rejections of over-limit connections in progress. Each holds a socket for at
/// most the reject linger (1 s); beyond 64, excess connections are closed without a
/// reply so a connection flood cannot turn into a task flood.
const REJECTS_IN_FLIGHT_MAX: usize = 64;

/// Pause after a failed accept (such as running out of file descriptors) so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Log-limiter key for failures before a hello was read (the peer named nothing).
const NO_HELLO: &str = "<no preamble>";
/// Log-limiter key for connections refused at the connection limit.
const OVER_LIMIT: &str = "<over connection limit>";

/// What every inbound connection of one transport shares.
pub(crate) struct ServerCtx {
    pub(crate) secret: ClusterSecret,
    pub(crate) config: TransportConfig,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) metrics: Arc<TransportMetrics>,
    failure_log: FailureLogLimiter,
    connection_slots: Arc<Semaphore>,
    reject_slots: Arc<Semaphore>,
}

impl ServerCtx {
    pub(crate) fn new(
        secret: ClusterSecret,
        config: TransportConfig,
        handler: Arc<dyn Handler>,
        metrics: Arc<TransportMetrics>,
    ) -> Self {
        let connection_slots = Arc::new(Semaphore::new(config.max_connections));
        Self {
            secret,
            config,
            handler,
            metrics,
            failure_log: FailureLogLimiter::default(),
            connection_slots,
            reject_slots: Arc::new(Semaphore::new(REJECTS_IN_FLIGHT_MAX)),
        }
    }

    /// Warns about a pre-authentication failure, rate limited per (IP, hello).
    fn warn_rate_limited(&self, peer: SocketAddr, hello: &str, what: &str, err: &dyn Display) {
        if let Some(suppressed) = self.failure_log.check(peer.ip(), hello, Instant::now()) {
            tracing::warn!(peer = %peer, hello = %hello, error = %err, suppressed, "{what}");
        }
    }
}

/// Accepts until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn accept_loop<L: Listener>(
    listener: L,
    ctx: Arc<ServerCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, addr)) => admit(stream, addr, &ctx, &shutdown, &mut connections),
            Err(err) => {
                tracing::warn!(error = %err, "accept failed; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    drop(listener);
    // Connections saw the same signal; each finishes within its own grace period.
    let drained = timeout(SHUTDOWN_GRACE * 2, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "connections did not close in time; aborting them"
        );
        connections.shutdown().await;
    }
}

fn admit<S: Stream>(
    mut stream: S,
    addr: SocketAddr,
    ctx: &Arc<ServerCtx>,
    shutdown: &watch::Receiver<bool>,
    connections: &mut JoinSet<()>,
) {
    match Arc::clone(&ctx.connection_slots).try_acquire_owned() {
        Ok(slot) => {
            incr(&ctx.metrics.connections_accepted);
            connections.spawn(serve(stream, addr, Arc::clone(ctx), shutdown.clone(), slot));
        }
        Err(_) => {
            incr(&ctx.metrics.connections_refused);
            let limit = ctx.config.max_connections;
            let why = format!("all {limit} connection slots are taken");
            ctx.warn_rate_limited(
                addr,
                OVER_LIMIT,
                "refusing connection: connection limit reached",
                &why,
            );
            if let Ok(reject_slot) = Arc::clone(&ctx.reject_slots).try_acquire_owned() {
                tokio::spawn(async move {
                    let _reject_slot = reject_slot;
                    let reply = ServerReply::reject(
                        RejectCode::Overloaded,
                        format!("server is at its limit of {limit} connections; try another node"),
                    );
                    handshake::send_reject(&mut stream, &reply).await;
                });
            }
        }
    }
}

async fn serve<S: Stream>(
    mut stream: S,
    addr: SocketAddr,
    ctx: Arc<ServerCtx>,
    shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let mut stop = shutdown.clone();
    let authenticated = tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => None,
        authenticated = authenticate(&mut stream, addr, &ctx, &shutdown) => authenticated,
    };
    if let Some((established, hello)) = authenticated {
        let peer = PeerInfo { addr, hello };
        serve_connection(stream, established, peer, ctx, shutdown).await;
    }
}

/// Runs the server half of the handshake; `None` if the connection was turned away
/// (already logged, counted and closed politely where that helps the peer).
async fn authenticate<S: Stream>(
    stream: &mut S,
    addr: SocketAddr,
    ctx: &ServerCtx,
    shutdown: &watch::Receiver<bool>,
) -> Option<(Established, String)> {
    let deadline = Instant::now() + ctx.config.handshake_timeout;
    let incoming = match timeout_at(deadline, handshake::read_hello(stream)).await {
        Err(_) => {
            tracing::debug!(peer = %addr, "no preamble before the handshake timeout");
            return None;
        }
        Ok(Err(HandshakeError::Preamble(err))) => {
            incr(&ctx.metrics.protocol_errors);
            ctx.warn_rate_limited(addr, NO_HELLO, "refusing connection: bad preamble", &err);
            handshake::send_reject(stream, &handshake::reject_for(&err)).await;
            return None;
        }
        Ok(Err(err)) => {
            tracing::debug!(peer = %addr, error = %err, "connection ended before its preamble");
            return None;
        }
        Ok(Ok(incoming)) => incoming,
    };
    let hello = incoming.hello.hello.clone();
    if *shutdown.borrow() {
        let reply = ServerReply::reject(
            RejectCode::ShuttingDown,
            "server is shutting down; try another node",
        );
        handshake::send_reject(stream, &reply).await;
        return None;
    }
    match timeout_at(
        deadline,
        handshake::respond(stream, incoming, ctx.secret.noise_psk()),
    )
    .await
    {
        Err(_) => {
            tracing::debug!(peer = %addr, hello = %hello, "handshake timed out");
            None
        }
        Ok(Err(err @ HandshakeError::Auth)) => {
            incr(&ctx.metrics.auth_failures);
            ctx.warn_rate_limited(
                addr,
                &hello,
                "refusing connection: authentication failed",
                &err,
            );
            handshake::send_refused(stream).await;
            None
        }
        Ok(Err(err @ HandshakeError::MessageTooLong { .. })) => {
            incr(&ctx.metrics.protocol_errors);
            ctx.warn_rate_limited(addr, &hello, "refusing connection: bad handshake", &err);
            None
        }
        Ok(Err(err)) => {
            tracing::debug!(peer = %addr, hello = %hello, error = %err, "handshake failed");
            None
        }
        Ok(Ok(established)) => Some((established, hello)),
    }
}
