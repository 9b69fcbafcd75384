//! One outbound connection: dialled, authenticated, multiplexed.
//!
//! Owns: dialling (connect + handshake, each under its timeout), the request-id →
//! waiter map (bounded by `max_inflight_requests_per_conn`), per-request deadlines,
//! and the reader/writer tasks of the dialling side. When the connection dies every
//! waiter is failed at once with the reason (`ConnectionClosed`, or `ShuttingDown`).
//!
//! A request waits for a slot in the bounded outbound queue and then for its
//! response, both within its deadline: a slow peer slows its callers down
//! (backpressure) instead of growing memory. A response that arrives after its
//! caller gave up is dropped quietly (the race is normal, not a protocol error).
//!
//! Does not own: pooling, backoff (`pool`), or serving requests (`server`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use geoul_proto::{Frame, FrameKind};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{timeout, timeout_at, Instant};

use crate::channel::{NoiseReader, NoiseWriter};
use crate::config::TransportConfig;
use crate::error::RequestError;
use crate::framed::{write_loop, FrameReader, ReadError};
use crate::handshake::{self, Established, HandshakeError};
use crate::metrics::{incr, OpenConnection, TransportMetrics};
use crate::net::{Net, Stream};
use crate::secret::ClusterSecret;

type Waiter = oneshot::Sender<Result<Bytes, RequestError>>;

#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, Waiter>,
    /// Set once, when the connection dies; new requests fail with it.
    closed: Option<RequestError>,
}

/// State shared by the handle and the connection's two tasks.
struct Shared {
    peer: SocketAddr,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    stop: watch::Sender<bool>,
    metrics: Arc<TransportMetrics>,
    max_inflight: usize,
    /// When the last frame arrived from the peer (or the connection opened).
    last_frame_at: Mutex<Instant>,
    /// Whether a liveness probe is under way (at most one at a time).
    probing: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // No code panics while holding this lock; recover rather than cascade if one did.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the connection dead and fails every waiter with `why` (first reason wins).
    fn close(&self, why: RequestError) {
        let waiters = {
            let mut pending = self.lock();
            if pending.closed.is_some() {
                return;
            }
            pending.closed = Some(why.clone());
            std::mem::take(&mut pending.waiting)
        };
        self.stop.send_replace(true);
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(why.clone()));
        }
    }

    fn close_reason(&self) -> RequestError {
        self.lock()
            .closed
            .clone()
            .unwrap_or(RequestError::ConnectionClosed)
    }

    fn register(
        &self,
    ) -> Result<(u64, oneshot::Receiver<Result<Bytes, RequestError>>), RequestError> {
        let mut pending = self.lock();
        if let Some(why) = &pending.closed {
            return Err(why.clone());
        }
        if pending.waiting.len() >= self.max_inflight {
            return Err(RequestError::Overloaded);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        pending.waiting.insert(id, tx);
        debug_assert!(pending.waiting.len() <= self.max_inflight);
        Ok((id, rx))
    }

    /// Whether nothing at all has arrived from the peer since `since`.
    fn silent_since(&self, since: Instant) -> bool {
        *self
            .last_frame_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            <= since
    }

    /// Routes a frame from the peer; `Err` means the peer broke the protocol.
    fn dispatch(&self, frame: Frame) -> Result<(), FrameKind> {
        *self
            .last_frame_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        let result = match frame.kind {
            FrameKind::Response => Ok(frame.payload),
            FrameKind::ErrorResponse => Err(RequestError::Remote(
                String::from_utf8_lossy(&frame.payload).into_owned(),
            )),
            FrameKind::Pong => return Ok(()),
            kind @ (FrameKind::Request | FrameKind::OneWay | FrameKind::Ping) => return Err(kind),
        };
        match self.lock().waiting.remove(&frame.request_id) {
            Some(waiter) => {
                let _ = waiter.send(result);
            }
            None => {
                tracing::trace!(peer = %self.peer, id = frame.request_id, "late response dropped")
            }
        }
        Ok(())
    }
}

/// Removes a request's waiter however the request ends (answer, timeout, or the
/// caller dropping the future), so the in-flight map never leaks.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiting.remove(&self.id);
    }
}

/// Handle to one outbound connection. Dropping it lets the writer flush what is
/// queued, then closes the connection.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    outbound: mpsc::Sender<Frame>,
    max_payload: usize,
}

impl Connection {
    /// Connects to `addr` and authenticates, each step under its configured timeout.
    pub(crate) async fn establish<N: Net>(
        net: &N,
        addr: SocketAddr,
        secret: &ClusterSecret,
        config: &TransportConfig,
        metrics: &Arc<TransportMetrics>,
    ) -> Result<Connection, RequestError> {
        let result = Self::dial(net, addr, secret, config, metrics).await;
        if result.is_err() {
            incr(&metrics.connect_failures);
        }
        result
    }

    async fn dial<N: Net>(
        net: &N,
        addr: SocketAddr,
        secret: &ClusterSecret,
        config: &TransportConfig,
        metrics: &Arc<TransportMetrics>,
    ) -> Result<Connection, RequestError> {
        let unreachable = |reason: String| RequestError::Unreachable { addr, reason };
        let mut stream = match timeout(config.connect_timeout, net.connect(addr)).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "connect timed out after {:?}",
                    config.connect_timeout
                )))
            }
            Ok(Err(err)) => return Err(unreachable(format!("connect failed: {err}"))),
            Ok(Ok(stream)) => stream,
        };
        let handshake = handshake::initiate(&mut stream, secret.noise_psk(), &config.hello);
        let established = match timeout(config.handshake_timeout, handshake).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "handshake timed out after {:?}",
                    config.handshake_timeout
                )))
            }
            Ok(Err(err)) => return Err(map_handshake_error(addr, err, metrics)),
            Ok(Ok(established)) => established,
        };
        Ok(Self::spawn(
            stream,
            established,
            addr,
            config,
            Arc::clone(metrics),
        ))
    }

    /// Starts the reader and writer tasks over an authenticated stream.
    fn spawn<S: Stream>(
        stream: S,
        established: Established,
        peer: SocketAddr,
        config: &TransportConfig,
        metrics: Arc<TransportMetrics>,
    ) -> Connection {
        let noise = Arc::new(established.noise);
        let (read_half, write_half) = tokio::io::split(stream);
        let channel = NoiseReader::new(read_half, Arc::clone(&noise), established.leftover);
        let reader = FrameReader::new(channel, config.max_frame_bytes, Arc::clone(&metrics));
        let writer = NoiseWriter::new(write_half, noise);
        let (outbound, queue) = mpsc::channel(config.outbound_queue_frames);
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            peer,
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            stop,
            metrics: Arc::clone(&metrics),
            max_inflight: config.max_inflight_requests_per_conn,
            last_frame_at: Mutex::new(Instant::now()),
            probing: std::sync::atomic::AtomicBool::new(false),
        });
        let open = OpenConnection::new(Arc::clone(&metrics));
        let writer_shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(err) = write_loop(queue, writer, metrics, stop_rx).await {
                tracing::debug!(peer = %writer_shared.peer, error = %err, "connection write failed");
            }
            writer_shared.close(RequestError::ConnectionClosed);
        });
        tokio::spawn(read_loop(reader, Arc::clone(&shared), open));
        Connection {
            shared,
            outbound,
            max_payload: config.max_payload_bytes(),
        }
    }

    /// Sends a request and waits for its answer until `deadline`.
    pub(crate) async fn request(
        &self,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, RequestError> {
        if payload.len() > self.max_payload {
            return Err(RequestError::FrameTooLarge);
        }
        let (id, answer) = self.shared.register()?;
        let _guard = PendingGuard {
            shared: &self.shared,
            id,
        };
        let frame = Frame {
            kind: FrameKind::Request,
            request_id: id,
            timeout_ms: timeout_ms_until(deadline),
            payload,
        };
        let sent_at = Instant::now();
        match timeout_at(deadline, self.outbound.send(frame)).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(_)) => return Err(self.shared.close_reason()),
            Ok(Ok(())) => {}
        }
        match timeout_at(deadline, answer).await {
            Err(_) => {
                self.close_if_silent(sent_at);
                Err(self.timed_out())
            }
            Ok(Err(_)) => Err(self.shared.close_reason()),
            Ok(Ok(result)) => result,
        }
    }

    /// Queues a one-way message, waiting for a queue slot until `deadline`.
    pub(crate) async fn send_oneway(
        &self,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<(), RequestError> {
        if payload.len() > self.max_payload {
            return Err(RequestError::FrameTooLarge);
        }
        if self.is_closed() {
            return Err(self.shared.close_reason());
        }
        let frame = Frame {
            kind: FrameKind::OneWay,
            request_id: 0,
            timeout_ms: 0,
            payload,
        };
        match timeout_at(deadline, self.outbound.send(frame)).await {
            Err(_) => Err(RequestError::Timeout),
            Ok(Err(_)) => Err(self.shared.close_reason()),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Whether the connection has died (a new one must be dialled).
    pub(crate) fn is_closed(&self) -> bool {
        *self.shared.stop.borrow()
    }

    /// Closes the connection, failing pending requests with `why`.
    pub(crate) fn close(&self, why: RequestError) {
        self.shared.close(why);
    }

    /// A request timed out. If the peer sent nothing at all meanwhile, the path
    /// may be dead (peer host gone without a FIN or RST, a partition that ate
    /// segments) or the peer may just be slow: probe it with a `Ping`, and close
    /// the connection only if that too goes unanswered, so the next request
    /// redials instead of queueing behind a connection that will never answer.
    fn close_if_silent(&self, sent_at: Instant) {
        if !self.shared.silent_since(sent_at) || self.is_closed() {
            return;
        }
        if self.shared.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let outbound = self.outbound.clone();
        tokio::spawn(async move {
            let probe_sent = Instant::now();
            let ping = Frame {
                kind: FrameKind::Ping,
                request_id: 0,
                timeout_ms: 0,
                payload: Bytes::new(),
            };
            // A full outbound queue is itself a sign of a stuck path: the probe
            // then just waits out its timeout like an unanswered ping.
            let _ = outbound.try_send(ping);
            tokio::time::sleep(LIVENESS_PROBE_TIMEOUT).await;
            if shared.silent_since(probe_sent) && !*shared.stop.borrow() {
                incr(&shared.metrics.connections_presumed_dead);
                tracing::debug!(peer = %shared.peer, "peer silent through a request timeout and a ping; closing the connection");
                shared.close(RequestError::ConnectionClosed);
            }
            shared.probing.store(false, Ordering::Release);
        });
    }

    fn timed_out(&self) -> RequestError {
        incr(&self.shared.metrics.requests_timed_out);
        RequestError::Timeout
    }
}

/// How long a liveness probe waits for any frame before the connection is
/// presumed dead. A live peer answers a `Ping` from its reader without running
/// any handler, so well under a second even when loaded; a dead path is then
/// detected one second after the request that revealed it timed out.
const LIVENESS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest deadline honoured: a caller passing `Duration::MAX` means "no limit",
/// which a year is, in practice, while keeping instant arithmetic from overflowing.
const DEADLINE_MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The instant `timeout` from now (tokio time: simulated under turmoil).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(DEADLINE_MAX)
}

/// Milliseconds left until `deadline`, rounded up, at least 1 (0 means "none").
fn timeout_ms_until(deadline: Instant) -> u32 {
    let left = deadline.saturating_duration_since(Instant::now());
    let ms = left.as_micros().div_ceil(1000);
    u32::try_from(ms).unwrap_or(u32::MAX).max(1)
}

fn map_handshake_error(
    addr: SocketAddr,
    err: HandshakeError,
    metrics: &TransportMetrics,
) -> RequestError {
    match err {
        HandshakeError::Refused | HandshakeError::Auth => {
            incr(&metrics.auth_failures);
            // Not a warning here: the pool warns once per failing peer and a CLI
            // reports the returned error, so a retry loop cannot flood the log.
            tracing::debug!(peer = %addr, error = %err, "peer did not accept our cluster secret");
            RequestError::Auth
        }
        HandshakeError::Rejected { code, reason } => RequestError::Rejected {
            addr,
            reason: format!("{reason} ({code:?})"),
        },
        HandshakeError::Preamble(err) => RequestError::Rejected {
            addr,
            reason: format!("unreadable preamble reply: {err}"),
        },
        other => RequestError::Unreachable {
            addr,
            reason: format!("handshake failed: {other}"),
        },
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    shared: Arc<Shared>,
    _open: OpenConnection,
) {
    let mut stop = shared.stop.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            next = reader.next() => match next {
                Ok(Some(frame)) => {
                    if let Err(kind) = shared.dispatch(frame) {
                        incr(&shared.metrics.protocol_errors);
                        tracing::warn!(peer = %shared.peer, ?kind, "closing connection: server sent a request frame");
                        break;
                    }
                }
                Ok(None) => {
                    tracing::debug!(peer = %shared.peer, "peer closed the connection");
                    break;
                }
                Err(err) => {
                    report_read_error(shared.peer, &err, &shared.metrics);
                    break;
                }
            },
        }
    }
    shared.close(RequestError::ConnectionClosed);
}

/// Logs and counts why a connection's reader stopped.
pub(crate) fn report_read_error(peer: SocketAddr, err: &ReadError, metrics: &TransportMetrics) {
    if err.is_protocol_violation() {
        incr(&metrics.protocol_errors);
        tracing::warn!(peer = %peer, error = %err, "closing connection: protocol violation");
    } else {
        tracing::debug!(peer = %peer, error = %err, "connection failed");
    }
}
