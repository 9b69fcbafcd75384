//! The secure channel: Noise transport messages over a byte stream.
//!
//! Owns: turning plaintext byte runs into `[u16 BE len][ciphertext]` messages and
//! back, with one explicit nonce counter per direction. Using snow's
//! `StatelessTransportState` (nonce passed in, not kept inside) lets the reader and
//! writer halves run in separate tasks sharing one immutable cipher state.
//!
//! A Noise message is at most 65535 bytes, so plaintext is cut into
//! ≤ [`NOISE_PAYLOAD_MAX_BYTES`] pieces. The channel knows nothing of frames: a
//! large frame spans several messages, a batch of small frames shares one, and the
//! frame decoder above reassembles them.
//!
//! Does not own: the handshake, framing, or deciding to close a connection.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest Noise message, fixed by the Noise specification.
pub(crate) const NOISE_MESSAGE_MAX_BYTES: usize = 65535;
/// ChaChaPoly authentication tag appended to every message.
pub(crate) const NOISE_TAG_BYTES: usize = 16;
/// Largest plaintext per message.
pub(crate) const NOISE_PAYLOAD_MAX_BYTES: usize = NOISE_MESSAGE_MAX_BYTES - NOISE_TAG_BYTES;
/// Size of the message length prefix.
const LEN_PREFIX_BYTES: usize = 2;

/// Ciphertext buffered before a socket write: a few messages' worth, so a 16 MiB
/// frame is written in pieces instead of being encrypted whole into memory, while
/// small batches still go out in one syscall.
const WRITE_BUFFER_BYTES: usize = 4 * (LEN_PREFIX_BYTES + NOISE_MESSAGE_MAX_BYTES);

/// Bytes asked of the socket per read: one full message, so large frames need few
/// reads. The read buffer never holds more than one message plus this.
const READ_CHUNK_BYTES: usize = LEN_PREFIX_BYTES + NOISE_MESSAGE_MAX_BYTES;

/// Why the channel failed. All but `Io` mean the peer broke the protocol.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("message failed to decrypt (tampered, replayed or reordered)")]
    Decrypt,
    #[error("message of {len} bytes is shorter than its {NOISE_TAG_BYTES}-byte tag")]
    ShortMessage { len: usize },
    #[error("stream ended inside a message ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("nonce space exhausted; the connection must be re-established")]
    NonceExhausted,
    #[error("encryption failed: {0}")]
    Encrypt(snow::Error),
}

impl ChannelError {
    /// Whether the peer broke the protocol (as opposed to the network failing).
    pub(crate) fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            ChannelError::Decrypt
                | ChannelError::ShortMessage { .. }
                | ChannelError::Truncated { .. }
        )
    }
}

/// Takes the next nonce of a direction. Noise forbids reuse; u64::MAX is reserved.
fn next_nonce(counter: &mut u64) -> Result<u64, ChannelError> {
    if *counter == u64::MAX {
        return Err(ChannelError::NonceExhausted);
    }
    let nonce = *counter;
    *counter += 1;
    Ok(nonce)
}

/// The sending half.
pub(crate) struct NoiseWriter<W> {
    io: W,
    noise: Arc<StatelessTransportState>,
    nonce: u64,
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> NoiseWriter<W> {
    pub(crate) fn new(io: W, noise: Arc<StatelessTransportState>) -> Self {
        Self {
            io,
            noise,
            nonce: 0,
            out: Vec::new(),
        }
    }

    /// Encrypts and writes `plaintext`; returns the bytes put on the wire.
    pub(crate) async fn send(&mut self, plaintext: &[u8]) -> Result<usize, ChannelError> {
        let mut wire = 0;
        self.out.clear();
        for piece in plaintext.chunks(NOISE_PAYLOAD_MAX_BYTES) {
            let nonce = next_nonce(&mut self.nonce)?;
            let start = self.out.len();
            let sealed_len = piece.len() + NOISE_TAG_BYTES;
            self.out.resize(start + LEN_PREFIX_BYTES + sealed_len, 0);
            let sealed = &mut self.out[start + LEN_PREFIX_BYTES..];
            let n = self
                .noise
                .write_message(nonce, piece, sealed)
                .map_err(ChannelError::Encrypt)?;
            debug_assert_eq!(n, sealed_len);
            // n ≤ NOISE_MESSAGE_MAX_BYTES, checked by snow, so it fits in u16.
            let prefix = u16::try_from(n).map_err(|_| ChannelError::Encrypt(snow::Error::Input))?;
            self.out[start..start + LEN_PREFIX_BYTES].copy_from_slice(&prefix.to_be_bytes());
            if self.out.len() >= WRITE_BUFFER_BYTES {
                wire += self.flush_out().await?;
            }
        }
        wire += self.flush_out().await?;
        self.io.flush().await?;
        Ok(wire)
    }

    async fn flush_out(&mut self) -> Result<usize, ChannelError> {
        let n = self.out.len();
        if n > 0 {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(n)
    }

    /// Half-closes the stream (sends FIN). Best effort.
    pub(crate) async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

/// The receiving half.
pub(crate) struct NoiseReader<R> {
    io: R,
    noise: Arc<StatelessTransportState>,
    nonce: u64,
    buf: BytesMut,
    plain: Vec<u8>,
}

impl<R: AsyncRead + Unpin> NoiseReader<R> {
    /// `leftover` is whatever the handshake read past its last message.
    pub(crate) fn new(io: R, noise: Arc<StatelessTransportState>, leftover: BytesMut) -> Self {
        Self {
            io,
            noise,
            nonce: 0,
            buf: leftover,
            plain: vec![0u8; NOISE_MESSAGE_MAX_BYTES],
        }
    }

    /// The plaintext of the next message, with the wire bytes it took; `Ok(None)` on
    /// a clean end of stream.
    ///
    /// Cancel-safe: bytes read before a cancellation stay buffered, and decryption
    /// happens without awaiting.
    pub(crate) async fn recv(&mut self) -> Result<Option<(&[u8], usize)>, ChannelError> {
        loop {
            if let Some(len) = self.complete_message_len()? {
                let nonce = next_nonce(&mut self.nonce)?;
                let msg = &self.buf[LEN_PREFIX_BYTES..LEN_PREFIX_BYTES + len];
                let n = self
                    .noise
                    .read_message(nonce, msg, &mut self.plain)
                    .map_err(|_| ChannelError::Decrypt)?;
                self.buf.advance(LEN_PREFIX_BYTES + len);
                return Ok(Some((&self.plain[..n], LEN_PREFIX_BYTES + len)));
            }
            self.buf.reserve(READ_CHUNK_BYTES);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ChannelError::Truncated {
                    buffered: self.buf.len(),
                });
            }
        }
    }

    /// Length of the buffered message if it is complete.
    fn complete_message_len(&self) -> Result<Option<usize>, ChannelError> {
        if self.buf.len() < LEN_PREFIX_BYTES {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len < NOISE_TAG_BYTES {
            return Err(ChannelError::ShortMessage { len });
        }
        Ok((self.buf.len() >= LEN_PREFIX_BYTES + len).then_some(len))
    }
}

/// Appends a raw `[u16 len][bytes]` message (tests use it to inject garbage).
#[cfg(test)]
pub(crate) fn put_raw_message(dst: &mut BytesMut, bytes: &[u8]) {
    use bytes::BufMut;
    dst.put_u16(u16::try_from(bytes.len()).expect("test message fits a u16"));
    dst.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Arc<StatelessTransportState>, Arc<StatelessTransportState>) {
        let params: snow::params::NoiseParams = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s"
            .parse()
            .expect("params");
        let psk = [7u8; 32];
        let mut i = snow::Builder::new(params.clone())
            .psk(0, &psk)
            .expect("psk")
            .build_initiator()
            .expect("initiator");
        let mut r = snow::Builder::new(params)
            .psk(0, &psk)
            .expect("psk")
            .build_responder()
            .expect("responder");
        let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
        let n = i.write_message(&[], &mut a).expect("msg1");
        r.read_message(&a[..n], &mut b).expect("msg1");
        let n = r.write_message(&[], &mut a).expect("msg2");
        i.read_message(&a[..n], &mut b).expect("msg2");
        (
            Arc::new(i.into_stateless_transport_mode().expect("done")),
            Arc::new(r.into_stateless_transport_mode().expect("done")),
        )
    }

    #[tokio::test]
    async fn large_plaintext_spans_messages() {
        let (i, r) = pair();
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut writer = NoiseWriter::new(a, i);
        let mut reader = NoiseReader::new(b, r, BytesMut::new());
        let data: Vec<u8> = (0..200_000u32).map(|x| x as u8).collect();
        let sent = data.clone();
        let send = tokio::spawn(async move {
            let wire = writer.send(&sent).await.expect("send");
            writer.shutdown().await;
            wire
        });
        let mut got = Vec::new();
        let mut messages = 0;
        while let Some((plain, _)) = reader.recv().await.expect("recv") {
            got.extend_from_slice(plain);
            messages += 1;
        }
        assert_eq!(got, data);
        assert_eq!(messages, 4);
        let wire = send.await.expect("join");
        assert_eq!(wire, data.len() + 4 * (LEN_PREFIX_BYTES + NOISE_TAG_BYTES));
    }

    #[tokio::test]
    async fn garbage_and_short_messages_fail() {
        let (_, r) = pair();
        let mut raw = BytesMut::new();
        put_raw_message(&mut raw, &[0u8; 40]);
        let mut reader = NoiseReader::new(tokio::io::empty(), r.clone(), raw);
        assert!(matches!(reader.recv().await, Err(ChannelError::Decrypt)));

        let mut raw = BytesMut::new();
        put_raw_message(&mut raw, &[0u8; 3]);
        let mut reader = NoiseReader::new(tokio::io::empty(), r.clone(), raw);
        assert!(matches!(
            reader.recv().await,
            Err(ChannelError::ShortMessage { len: 3 })
        ));

        let mut reader = NoiseReader::new(tokio::io::empty(), r, BytesMut::from(&[0u8, 40, 1][..]));
        assert!(matches!(
            reader.recv().await,
            Err(ChannelError::Truncated { buffered: 3 })
        ));
    }
}
