//! Frames over the secure channel, for both ends of a connection.
//!
//! Owns: [`FrameReader`] (decrypted bytes → frames) and [`write_loop`] (queued
//! frames → batched, encrypted writes), plus the frame/byte counters they update.
//!
//! Does not own: what frames mean (the dialer's `connection` and the `server`), the
//! queue's capacity (configuration), or the decision to close on an error.

use std::sync::Arc;

use bytes::BytesMut;
use geoul_proto::{encode, Frame, FrameDecoder, FrameError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

use crate::channel::{ChannelError, NoiseReader, NoiseWriter};
use crate::metrics::{add, incr, TransportMetrics};

/// Plaintext gathered from the queue before one encrypted write. Batching amortises
/// the syscall and per-message tag over many small frames; 256 KiB keeps the batch
/// latency for the first frame well under a millisecond on a LAN.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Why reading frames stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl ReadError {
    /// Whether the peer broke the protocol (as opposed to the network failing).
    pub(crate) fn is_protocol_violation(&self) -> bool {
        match self {
            ReadError::Channel(err) => err.is_protocol_violation(),
            ReadError::Frame(_) => true,
        }
    }
}

/// Reads whole frames from the secure channel.
pub(crate) struct FrameReader<R> {
    channel: NoiseReader<R>,
    decoder: FrameDecoder,
    metrics: Arc<TransportMetrics>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(
        channel: NoiseReader<R>,
        max_frame_bytes: usize,
        metrics: Arc<TransportMetrics>,
    ) -> Self {
        Self {
            channel,
            decoder: FrameDecoder::new(max_frame_bytes),
            metrics,
        }
    }

    /// The next frame; `Ok(None)` when the peer closed cleanly between frames.
    ///
    /// Cancel-safe, so it can sit in a `select!` beside a shutdown signal.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                incr(&self.metrics.frames_in);
                return Ok(Some(frame));
            }
            match self.channel.recv().await? {
                Some((plain, wire)) => {
                    add(&self.metrics.bytes_in, wire as u64);
                    self.decoder.push(plain);
                }
                None => {
                    self.decoder.finish()?;
                    return Ok(None);
                }
            }
        }
    }
}

/// Writes queued frames until the queue closes (every sender dropped; frames already
/// queued are flushed first) or `stop` turns true (abandon the rest). Half-closes
/// the stream on the way out.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut queue: mpsc::Receiver<Frame>,
    mut writer: NoiseWriter<W>,
    metrics: Arc<TransportMetrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ChannelError> {
    let mut plain = BytesMut::new();
    let result = loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break Ok(()),
            frame = queue.recv() => match frame {
                Some(frame) => frame,
                None => break Ok(()),
            },
        };
        plain.clear();
        let mut frames = u64::from(encode_into(&first, &mut plain));
        while plain.len() < WRITE_BATCH_BYTES {
            match queue.try_recv() {
                Ok(frame) => frames += u64::from(encode_into(&frame, &mut plain)),
                Err(_) => break,
            }
        }
        let sent = writer.send(&plain).await;
        if plain.capacity() > 2 * WRITE_BATCH_BYTES {
            // One large frame must not pin its buffer for the connection's lifetime.
            plain = BytesMut::new();
        }
        match sent {
            Ok(wire) => {
                add(&metrics.frames_out, frames);
                add(&metrics.bytes_out, wire as u64);
            }
            Err(err) => break Err(err),
        }
    };
    writer.shutdown().await;
    result
}

/// Encodes one frame; false (and an error log) if it exceeds the protocol limit,
/// which senders rule out by checking the configured limit first.
fn encode_into(frame: &Frame, dst: &mut BytesMut) -> bool {
    match encode(frame, dst) {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(request_id = frame.request_id, error = %err, "dropping unencodable frame");
            false
        }
    }
}
