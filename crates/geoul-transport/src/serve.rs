//! Serving requests on one authenticated inbound connection.
//!
//! Owns: reading request frames, running the [`Handler`](crate::Handler) under
//! the caller's deadline, and queueing responses for the writer task.
//!
//! Backpressure: at most `max_concurrent_handlers_per_conn` handler futures run per
//! connection. At the limit this loop stops reading the socket, so the kernel's
//! receive buffer fills and TCP flow control slows the sender; nothing queues
//! without bound. Responses go through the bounded outbound queue, so a peer that
//! stops reading eventually stalls its own handlers, not the node.
//!
//! Deadlines: a request carries the caller's remaining time (`timeout_ms`). A handler
//! still running after it is dropped unanswered; the caller already gave up.
//!
//! Does not own: admission or authentication (`server`), the client side
//! (`connection`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use geoul_proto::{Frame, FrameKind};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::channel::{NoiseReader, NoiseWriter};
use crate::connection::report_read_error;
use crate::error::RemoteError;
use crate::framed::{write_loop, FrameReader};
use crate::handler::{Handler, PeerInfo};
use crate::handshake::Established;
use crate::metrics::{incr, OpenConnection};
use crate::net::Stream;
use crate::server::ServerCtx;

/// On shutdown, how long in-flight handlers get to finish and their responses to be
/// flushed before the connection is cut: long enough for ordinary requests (they are
/// milliseconds), short enough that a stuck handler cannot hold a restart hostage.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Longest handler error reason sent back, in bytes. A reason is a sentence; the
/// bound keeps error storms cheap and stops a handler from echoing large inputs.
pub const REMOTE_ERROR_MAX_BYTES: usize = 4096;

/// How the read side of a connection ended.
enum End {
    /// This transport is shutting down: finish in-flight work, then close.
    Shutdown,
    /// The peer hung up or broke the protocol: abandon everything.
    Abandon,
}

/// Serves `peer` until it hangs up, breaks the protocol, or shutdown is signalled.
pub(crate) async fn serve_connection<S: Stream>(
    stream: S,
    established: Established,
    peer: PeerInfo,
    ctx: Arc<ServerCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _open = OpenConnection::new(Arc::clone(&ctx.metrics));
    tracing::debug!(peer = %peer.addr, hello = %peer.hello, "inbound connection authenticated");
    let noise = Arc::new(established.noise);
    let (read_half, write_half) = tokio::io::split(stream);
    let channel = NoiseReader::new(read_half, Arc::clone(&noise), established.leftover);
    let mut reader = FrameReader::new(
        channel,
        ctx.config.max_frame_bytes,
        Arc::clone(&ctx.metrics),
    );
    let (responses, queue) = mpsc::channel(ctx.config.outbound_queue_frames);
    let (abandon, abandon_rx) = watch::channel(false);
    let writer = NoiseWriter::new(write_half, noise);
    let mut writer_task = tokio::spawn(write_loop(
        queue,
        writer,
        Arc::clone(&ctx.metrics),
        abandon_rx,
    ));

    let slots = Arc::new(Semaphore::new(ctx.config.max_concurrent_handlers_per_conn));
    let mut handlers = JoinSet::new();
    let end = read_requests(
        &mut reader,
        &peer,
        &ctx,
        &responses,
        &slots,
        &mut handlers,
        &mut shutdown,
    )
    .await;
    if let End::Shutdown = end {
        let finished = timeout(SHUTDOWN_GRACE, async {
            while handlers.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(peer = %peer.addr, left = handlers.len(), "handlers did not finish before shutdown");
        }
    } else {
        abandon.send_replace(true);
    }
    handlers.shutdown().await;
    // With every sender gone the writer flushes what is queued and half-closes.
    drop(responses);
    if timeout(SHUTDOWN_GRACE, &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    tracing::debug!(peer = %peer.addr, "inbound connection closed");
}

async fn read_requests<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    peer: &PeerInfo,
    ctx: &Arc<ServerCtx>,
    responses: &mpsc::Sender<Frame>,
    slots: &Arc<Semaphore>,
    handlers: &mut JoinSet<()>,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    loop {
        while handlers.try_join_next().is_some() {}
        let frame = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return End::Shutdown,
            next = reader.next() => match next {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    tracing::debug!(peer = %peer.addr, "peer closed the connection");
                    return End::Abandon;
                }
                Err(err) => {
                    report_read_error(peer.addr, &err, &ctx.metrics);
                    return End::Abandon;
                }
            },
        };
        match frame.kind {
            FrameKind::OneWay => deliver_oneway(ctx.handler.as_ref(), peer, frame.payload),
            FrameKind::Request => {
                // Waiting here, not reading, is the backpressure.
                let slot = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => return End::Shutdown,
                    slot = Arc::clone(slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return End::Abandon,
                    },
                };
                let max_payload = ctx.config.max_payload_bytes();
                let work = run_handler(Arc::clone(&ctx.handler), peer.clone(), frame, max_payload);
                handlers.spawn(respond(work, responses.clone(), slot));
            }
            FrameKind::Ping => {
                // A full queue means answers are flowing, which proves liveness
                // as well as a Pong would; never block the reader for a probe.
                let pong = Frame {
                    kind: FrameKind::Pong,
                    request_id: frame.request_id,
                    timeout_ms: 0,
                    payload: Bytes::new(),
                };
                let _ = responses.try_send(pong);
            }
            kind @ (FrameKind::Response | FrameKind::ErrorResponse | FrameKind::Pong) => {
                incr(&ctx.metrics.protocol_errors);
                tracing::warn!(peer = %peer.addr, ?kind, "closing connection: client sent a response frame");
                return End::Abandon;
            }
        }
    }
}

fn deliver_oneway(handler: &dyn Handler, peer: &PeerInfo, payload: Bytes) {
    let delivered = std::panic::catch_unwind(AssertUnwindSafe(|| {
        handler.handle_oneway(peer.clone(), payload)
    }));
    if delivered.is_err() {
        tracing::error!(peer = %peer.addr, "one-way handler panicked");
    }
}

/// Queues a handler's reply (if any), then releases its concurrency slot. The slot
/// is held until the reply is queued, so a peer that stops reading its responses
/// stops getting new requests served instead of piling up finished tasks.
async fn respond(
    work: impl std::future::Future<Output = Option<Frame>>,
    responses: mpsc::Sender<Frame>,
    slot: OwnedSemaphorePermit,
) {
    if let Some(reply) = work.await {
        // A closed queue means the connection is gone; nobody is left to tell.
        let _ = responses.send(reply).await;
    }
    drop(slot);
}

/// Runs the handler under the request's deadline; `None` if the deadline passed.
async fn run_handler(
    handler: Arc<dyn Handler>,
    peer: PeerInfo,
    request: Frame,
    max_payload: usize,
) -> Option<Frame> {
    let id = request.request_id;
    let addr = peer.addr;
    let work =
        AssertUnwindSafe(async move { handler.handle(peer, request.payload).await }).catch_unwind();
    let outcome = if request.timeout_ms == 0 {
        work.await
    } else {
        match timeout(Duration::from_millis(u64::from(request.timeout_ms)), work).await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::debug!(peer = %addr, id, "request expired before its handler finished; dropped");
                return None;
            }
        }
    };
    Some(match outcome {
        Ok(Ok(body)) if body.len() <= max_payload => Frame {
            kind: FrameKind::Response,
            request_id: id,
            timeout_ms: 0,
            payload: body,
        },
        Ok(Ok(body)) => error_frame(
            id,
            format!(
                "response of {} bytes exceeds the frame limit of {max_payload}",
                body.len()
            ),
            max_payload,
        ),
        Ok(Err(RemoteError(reason))) => error_frame(id, reason, max_payload),
        Err(_) => {
            tracing::error!(peer = %addr, id, "request handler panicked");
            error_frame(id, "request handler panicked".to_owned(), max_payload)
        }
    })
}

fn error_frame(request_id: u64, mut reason: String, max_payload: usize) -> Frame {
    let max = REMOTE_ERROR_MAX_BYTES.min(max_payload);
    if reason.len() > max {
        let mut cut = max;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    Frame {
        kind: FrameKind::ErrorResponse,
        request_id,
        timeout_ms: 0,
        payload: Bytes::from(reason),
    }
}
