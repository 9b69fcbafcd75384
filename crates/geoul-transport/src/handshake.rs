//! Connection setup: the plaintext preamble exchange, then the Noise handshake.
//!
//! Owns: both sides of connection establishment, up to a pair of transport-mode
//! cipher states, and the polite ways of turning a peer away (a readable reject, a
//! "wrong secret" marker, a lingering close so those bytes are not lost to a RST).
//!
//! ```text
//! client                                        server
//!   ClientHello  "GEOL" ver len hello  ──────►
//!                                      ◄──────  ServerReply accept | reject(code, reason)
//!   [u16 len] Noise -> psk, e          ──────►
//!                                      ◄──────  [u16 len] Noise <- e, ee   (or [0u16]: refused)
//!   ... transport mode ([u16 len][ciphertext] messages, see `channel`) ...
//! ```
//!
//! The prologue is the exact bytes of both preambles, so an attacker who alters
//! either (to downgrade a version or fake a hello) breaks the handshake. With
//! `psk0`, the very first Noise message is encrypted under the cluster key, so the
//! server detects a wrong secret before doing anything else for that peer.
//!
//! Does not own: timeouts (the caller bounds the whole exchange), connection limits,
//! logging and metrics (the server and dialer decide what a failure means).

use std::io;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use geoul_proto::{
    decode_hello, decode_reply, encode_hello, encode_reply, ClientHello, PreambleError, RejectCode,
    ServerReply,
};
use snow::{HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::secret::KEY_BYTES;

/// The Noise protocol: no static keys (`NN`), authenticated by the pre-shared cluster
/// key mixed in before the first message (`psk0`).
const NOISE_PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Largest handshake message accepted. NNpsk0 messages are 48 bytes (an ephemeral
/// key and a tag); 1 KiB leaves room for future payloads while an unauthenticated
/// peer cannot make us buffer more.
pub(crate) const HANDSHAKE_MESSAGE_MAX_BYTES: usize = 1024;

/// Bytes read per call while waiting for a preamble: a preamble is ≤ 264 bytes.
const PREAMBLE_READ_CHUNK: usize = 512;

/// How long a turned-away connection is kept open so the peer can read why: long
/// enough for the reply to cross a region, short enough that rejected peers do not
/// pile up.
const REJECT_LINGER: Duration = Duration::from_secs(1);

/// Bytes drained from a turned-away peer before closing (so the close is a FIN, not
/// a RST that could destroy the reply in flight). Bounds the work a rejected peer
/// can cause.
const REJECT_DRAIN_MAX_BYTES: usize = 64 * 1024;

/// A zero-length handshake message: "your cluster secret is not ours". It is not
/// authenticated (nothing can be, without the secret); an attacker able to forge it
/// could equally cut the connection, so it only improves the error a client sees.
const REFUSED_MARKER: [u8; 2] = [0, 0];

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("peer closed the connection during the handshake")]
    Closed,
    #[error("bad preamble: {0}")]
    Preamble(#[from] PreambleError),
    #[error("{reason}")]
    Rejected { code: RejectCode, reason: String },
    #[error("peer refused our cluster secret")]
    Refused,
    #[error("authentication failed: wrong cluster secret or tampered preamble")]
    Auth,
    #[error("handshake message of {len} bytes exceeds {max}")]
    MessageTooLong { len: usize, max: usize },
    #[error("noise error: {0}")]
    Noise(snow::Error),
}

/// The result of a successful handshake.
pub(crate) struct Established {
    /// Transport-mode ciphers with explicit nonces (reader and writer are independent).
    pub(crate) noise: StatelessTransportState,
    /// Bytes received after the last handshake message (the start of the channel).
    pub(crate) leftover: BytesMut,
}

/// A decoded client preamble, kept for the prologue.
pub(crate) struct IncomingHello {
    pub(crate) hello: ClientHello,
    raw: BytesMut,
    rbuf: BytesMut,
}

/// Client side: preamble exchange and Noise handshake as initiator.
pub(crate) async fn initiate<S>(
    stream: &mut S,
    psk: &[u8; KEY_BYTES],
    hello: &str,
) -> Result<Established, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello_bytes = BytesMut::new();
    encode_hello(hello, &mut hello_bytes)?;
    stream.write_all(&hello_bytes).await?;
    stream.flush().await?;

    let mut rbuf = BytesMut::new();
    let (reply, used) = read_preamble(stream, &mut rbuf, decode_reply).await?;
    let reply_bytes = rbuf.split_to(used);
    if let ServerReply::Reject { code, reason, .. } = reply {
        return Err(HandshakeError::Rejected { code, reason });
    }

    let prologue = [&hello_bytes[..], &reply_bytes[..]].concat();
    let mut noise = new_handshake(psk, &prologue, true)?;
    let mut msg = [0u8; HANDSHAKE_MESSAGE_MAX_BYTES];
    let len = noise
        .write_message(&[], &mut msg)
        .map_err(HandshakeError::Noise)?;
    write_message(stream, &msg[..len]).await?;

    let incoming = read_message(stream, &mut rbuf).await?;
    if incoming.is_empty() {
        return Err(HandshakeError::Refused);
    }
    let mut payload = [0u8; HANDSHAKE_MESSAGE_MAX_BYTES];
    noise
        .read_message(&incoming, &mut payload)
        .map_err(|_| HandshakeError::Auth)?;
    finish(noise, rbuf)
}

/// Server side, step 1: read and validate the client's preamble.
pub(crate) async fn read_hello<S>(stream: &mut S) -> Result<IncomingHello, HandshakeError>
where
    S: AsyncRead + Unpin,
{
    let mut rbuf = BytesMut::new();
    let (hello, used) = read_preamble(stream, &mut rbuf, decode_hello).await?;
    let raw = rbuf.split_to(used);
    Ok(IncomingHello { hello, raw, rbuf })
}

/// Server side, step 2: accept the preamble and run the Noise handshake as responder.
pub(crate) async fn respond<S>(
    stream: &mut S,
    incoming: IncomingHello,
    psk: &[u8; KEY_BYTES],
) -> Result<Established, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let IncomingHello { raw, mut rbuf, .. } = incoming;
    let mut reply = BytesMut::new();
    encode_reply(&ServerReply::accept(), &mut reply)?;
    stream.write_all(&reply).await?;
    stream.flush().await?;

    let prologue = [&raw[..], &reply[..]].concat();
    let mut noise = new_handshake(psk, &prologue, false)?;
    let incoming = read_message(stream, &mut rbuf).await?;
    let mut payload = [0u8; HANDSHAKE_MESSAGE_MAX_BYTES];
    noise
        .read_message(&incoming, &mut payload)
        .map_err(|_| HandshakeError::Auth)?;
    let mut msg = [0u8; HANDSHAKE_MESSAGE_MAX_BYTES];
    let len = noise
        .write_message(&[], &mut msg)
        .map_err(HandshakeError::Noise)?;
    write_message(stream, &msg[..len]).await?;
    finish(noise, rbuf)
}

/// What a server should answer to a preamble it could not accept.
pub(crate) fn reject_for(err: &PreambleError) -> ServerReply {
    match err {
        PreambleError::UnsupportedVersion { theirs, ours } => ServerReply::reject(
            RejectCode::UnsupportedVersion,
            format!("this server speaks geoul protocol version {ours}, you sent version {theirs}"),
        ),
        other => ServerReply::reject(
            RejectCode::MalformedPreamble,
            format!("malformed preamble: {other}"),
        ),
    }
}

/// Sends `reply` (a rejection), then closes gracefully.
pub(crate) async fn send_reject<S>(stream: &mut S, reply: &ServerReply)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut bytes = BytesMut::new();
    if encode_reply(reply, &mut bytes).is_ok() {
        linger_close(stream, &bytes).await;
    }
}

/// Tells the client its secret was refused, then closes gracefully.
pub(crate) async fn send_refused<S>(stream: &mut S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    linger_close(stream, &REFUSED_MARKER).await;
}

/// Writes `last`, half-closes, and drains the peer briefly so our FIN (not a RST)
/// reaches it after the bytes. Best effort: every failure just ends the linger.
async fn linger_close<S>(stream: &mut S, last: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let linger = async {
        stream.write_all(last).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        while drained < REJECT_DRAIN_MAX_BYTES {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            drained += n;
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(REJECT_LINGER, linger).await;
}

fn new_handshake(
    psk: &[u8; KEY_BYTES],
    prologue: &[u8],
    initiator: bool,
) -> Result<HandshakeState, HandshakeError> {
    let params = NOISE_PATTERN.parse().map_err(HandshakeError::Noise)?;
    let builder = snow::Builder::new(params)
        .psk(0, psk)
        .and_then(|b| b.prologue(prologue))
        .map_err(HandshakeError::Noise)?;
    let state = if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    };
    state.map_err(HandshakeError::Noise)
}

fn finish(noise: HandshakeState, leftover: BytesMut) -> Result<Established, HandshakeError> {
    let noise = noise
        .into_stateless_transport_mode()
        .map_err(HandshakeError::Noise)?;
    Ok(Established { noise, leftover })
}

/// A `geoul_proto` preamble decoder: the message and its length, once complete.
type PreambleDecoder<T> = fn(&[u8]) -> Result<Option<(T, usize)>, PreambleError>;

/// Reads until `decode` yields a preamble message; returns it and its length.
async fn read_preamble<S, T>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    decode: PreambleDecoder<T>,
) -> Result<(T, usize), HandshakeError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some(done) = decode(rbuf)? {
            return Ok(done);
        }
        // The decoders fail as soon as a bound is crossed, so rbuf stays ≤ one
        // preamble plus one chunk.
        rbuf.reserve(PREAMBLE_READ_CHUNK);
        if stream.read_buf(rbuf).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

async fn write_message<S>(stream: &mut S, msg: &[u8]) -> Result<(), HandshakeError>
where
    S: AsyncWrite + Unpin,
{
    debug_assert!(!msg.is_empty() && msg.len() <= HANDSHAKE_MESSAGE_MAX_BYTES);
    let len = u16::try_from(msg.len()).map_err(|_| HandshakeError::MessageTooLong {
        len: msg.len(),
        max: HANDSHAKE_MESSAGE_MAX_BYTES,
    })?;
    let mut framed = BytesMut::with_capacity(2 + msg.len());
    framed.put_u16(len);
    framed.put_slice(msg);
    stream.write_all(&framed).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads one `[u16 len][msg]` handshake message (possibly empty: the refusal marker).
async fn read_message<S>(stream: &mut S, rbuf: &mut BytesMut) -> Result<BytesMut, HandshakeError>
where
    S: AsyncRead + Unpin,
{
    loop {
        if rbuf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rbuf[0], rbuf[1]]));
            if len > HANDSHAKE_MESSAGE_MAX_BYTES {
                return Err(HandshakeError::MessageTooLong {
                    len,
                    max: HANDSHAKE_MESSAGE_MAX_BYTES,
                });
            }
            if rbuf.len() >= 2 + len {
                let mut msg = rbuf.split_to(2 + len);
                return Ok(msg.split_off(2));
            }
        }
        rbuf.reserve(HANDSHAKE_MESSAGE_MAX_BYTES);
        if stream.read_buf(rbuf).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterSecret;

    fn psk(secret: &[u8]) -> [u8; KEY_BYTES] {
        *ClusterSecret::from_bytes(secret)
            .expect("long enough")
            .noise_psk()
    }

    async fn run(
        client_secret: &[u8],
        server_secret: &[u8],
    ) -> (
        Result<Established, HandshakeError>,
        Result<Established, HandshakeError>,
    ) {
        let (mut c, mut s) = tokio::io::duplex(4096);
        let (cpsk, spsk) = (psk(client_secret), psk(server_secret));
        let server = async move {
            let hello = read_hello(&mut s).await?;
            assert_eq!(hello.hello.hello, "node-1 test");
            let result = respond(&mut s, hello, &spsk).await;
            if matches!(result, Err(HandshakeError::Auth)) {
                send_refused(&mut s).await;
            }
            result
        };
        let client = async move { initiate(&mut c, &cpsk, "node-1 test").await };
        tokio::join!(client, server)
    }

    #[tokio::test]
    async fn same_secret_yields_matching_ciphers() {
        let (client, server) = run(b"the-same-cluster-secret", b"the-same-cluster-secret").await;
        let (client, server) = (client.expect("client ok"), server.expect("server ok"));
        let mut ct = [0u8; 64];
        let n = client
            .noise
            .write_message(0, b"ping", &mut ct)
            .expect("encrypt");
        let mut pt = [0u8; 64];
        let m = server
            .noise
            .read_message(0, &ct[..n], &mut pt)
            .expect("decrypt");
        assert_eq!(&pt[..m], b"ping");
    }

    #[tokio::test]
    async fn wrong_secret_is_refused_on_both_sides() {
        let (client, server) =
            run(b"the-client-cluster-secret", b"the-server-cluster-secret").await;
        assert!(
            matches!(client, Err(HandshakeError::Refused)),
            "{:?}",
            client.err()
        );
        assert!(
            matches!(server, Err(HandshakeError::Auth)),
            "{:?}",
            server.err()
        );
    }

    #[test]
    fn version_reject_is_readable() {
        let reply = reject_for(&PreambleError::UnsupportedVersion { theirs: 2, ours: 1 });
        let ServerReply::Reject { code, reason, .. } = reply else {
            panic!("a reject");
        };
        assert_eq!(code, RejectCode::UnsupportedVersion);
        assert!(
            reason.contains("version 1") && reason.contains("version 2"),
            "{reason}"
        );
    }
}
