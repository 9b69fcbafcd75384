//! The plaintext preamble exchanged before authentication.
//!
//! Owns: the two messages that precede the Noise handshake, their bounds and their
//! incremental decoders.
//!
//! ```text
//! connecting side:  "GEOL" [u16 BE version] [u16 BE hello_len] [hello: UTF-8, ≤ 256]
//! accepting side:   "GEOL" [u16 BE version] [u8 0]                          (accept)
//!                   "GEOL" [u16 BE version] [u8 1] [u8 code] [u16 BE len] [reason]
//! ```
//!
//! The hello describes the caller ("node-4 127.0.0.1:7004", "cli") for logs only; it
//! is not authenticated by itself, but both preambles are the Noise prologue, so a
//! tampered preamble fails the handshake that follows.
//!
//! The reply layout is frozen for every protocol version: a client of any version
//! can read why it was rejected (e.g. "server speaks version 1, you sent 2").
//!
//! Does not own: the handshake or any cryptography (`geoul-transport`).

use bytes::{BufMut, BytesMut};

use crate::PROTOCOL_VERSION;

/// First bytes of every preamble message; garbage is rejected on the first byte.
pub const PREAMBLE_MAGIC: [u8; 4] = *b"GEOL";

/// Largest hello string, in bytes.
///
/// A node name plus an address fits in well under 100 bytes; 256 leaves room for a
/// CLI's version string while keeping the pre-authentication read tiny, because an
/// unauthenticated peer must not be able to make the server buffer much.
pub const HELLO_MAX_BYTES: usize = 256;

/// Largest rejection reason, in bytes: one readable sentence, bounded for the same
/// reason as [`HELLO_MAX_BYTES`].
pub const REJECT_REASON_MAX_BYTES: usize = 256;

const MAGIC_LEN: usize = PREAMBLE_MAGIC.len();
const HELLO_FIXED_BYTES: usize = MAGIC_LEN + 2 + 2;
const REPLY_FIXED_BYTES: usize = MAGIC_LEN + 2 + 1;
const REJECT_FIXED_BYTES: usize = REPLY_FIXED_BYTES + 1 + 2;
const STATUS_ACCEPT: u8 = 0;
const STATUS_REJECT: u8 = 1;

/// Why a preamble message could not be decoded or encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreambleError {
    /// The stream does not start with [`PREAMBLE_MAGIC`]: not a geoul peer.
    #[error("bad magic: not a geoul peer")]
    BadMagic,
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {theirs} (this side speaks {ours})")]
    UnsupportedVersion {
        /// The version the peer sent.
        theirs: u16,
        /// [`PROTOCOL_VERSION`].
        ours: u16,
    },
    /// The hello is longer than [`HELLO_MAX_BYTES`].
    #[error("hello of {len} bytes exceeds the limit of {max} bytes")]
    HelloTooLong {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The hello or the rejection reason is not UTF-8.
    #[error("preamble text is not valid UTF-8")]
    BadUtf8,
    /// The reply status byte is neither accept nor reject.
    #[error("unknown reply status {0}")]
    UnknownStatus(u8),
    /// The rejection reason is longer than [`REJECT_REASON_MAX_BYTES`].
    #[error("reject reason of {len} bytes exceeds the limit of {max} bytes")]
    ReasonTooLong {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The connecting side's preamble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// Protocol version of the caller (always [`PROTOCOL_VERSION`] once decoded).
    pub version: u16,
    /// Who the caller says it is, for logs.
    pub hello: String,
}

/// Why the accepting side refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// The caller speaks another protocol version.
    UnsupportedVersion,
    /// The caller's preamble was malformed (bad magic, bad UTF-8, too long).
    MalformedPreamble,
    /// The server is at its connection limit.
    Overloaded,
    /// The server is shutting down.
    ShuttingDown,
    /// A code this version does not know (sent by a newer peer).
    Other(u8),
}

impl RejectCode {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            RejectCode::UnsupportedVersion => 1,
            RejectCode::MalformedPreamble => 2,
            RejectCode::Overloaded => 3,
            RejectCode::ShuttingDown => 4,
            RejectCode::Other(code) => code,
        }
    }

    /// Decodes a wire code; unknown codes are kept, not refused.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => RejectCode::UnsupportedVersion,
            2 => RejectCode::MalformedPreamble,
            3 => RejectCode::Overloaded,
            4 => RejectCode::ShuttingDown,
            other => RejectCode::Other(other),
        }
    }
}

/// The accepting side's answer to a [`ClientHello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerReply {
    /// Proceed to the handshake.
    Accept {
        /// The server's protocol version.
        version: u16,
    },
    /// The connection is refused; it will be closed.
    Reject {
        /// The server's protocol version.
        version: u16,
        /// Machine-readable reason.
        code: RejectCode,
        /// Human-readable reason, at most [`REJECT_REASON_MAX_BYTES`].
        reason: String,
    },
}

impl ServerReply {
    /// An acceptance at [`PROTOCOL_VERSION`].
    pub fn accept() -> Self {
        ServerReply::Accept {
            version: PROTOCOL_VERSION,
        }
    }

    /// A rejection at [`PROTOCOL_VERSION`]; `reason` is cut to
    /// [`REJECT_REASON_MAX_BYTES`] on a character boundary.
    pub fn reject(code: RejectCode, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > REJECT_REASON_MAX_BYTES {
            let mut cut = REJECT_REASON_MAX_BYTES;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        ServerReply::Reject {
            version: PROTOCOL_VERSION,
            code,
            reason,
        }
    }
}

/// Appends a [`ClientHello`] at [`PROTOCOL_VERSION`] to `dst`.
pub fn encode_hello(hello: &str, dst: &mut BytesMut) -> Result<(), PreambleError> {
    encode_hello_with_version(PROTOCOL_VERSION, hello, dst)
}

/// Appends a hello claiming `version` (tests use it to play an incompatible peer).
pub fn encode_hello_with_version(
    version: u16,
    hello: &str,
    dst: &mut BytesMut,
) -> Result<(), PreambleError> {
    let len = u16::try_from(hello.len())
        .ok()
        .filter(|&len| usize::from(len) <= HELLO_MAX_BYTES)
        .ok_or(PreambleError::HelloTooLong {
            len: hello.len(),
            max: HELLO_MAX_BYTES,
        })?;
    dst.reserve(HELLO_FIXED_BYTES + hello.len());
    dst.put_slice(&PREAMBLE_MAGIC);
    dst.put_u16(version);
    dst.put_u16(len);
    dst.put_slice(hello.as_bytes());
    Ok(())
}

/// Decodes a [`ClientHello`] from the start of `buf`.
///
/// Returns the hello and the number of bytes it used, or `Ok(None)` if more bytes are
/// needed. Errors are reported as soon as the offending bytes arrive (a wrong first
/// byte fails immediately), so the caller never buffers more than
/// `8 + HELLO_MAX_BYTES` bytes.
pub fn decode_hello(buf: &[u8]) -> Result<Option<(ClientHello, usize)>, PreambleError> {
    check_magic(buf)?;
    let Some(version) = read_u16(buf, MAGIC_LEN) else {
        return Ok(None);
    };
    if version != PROTOCOL_VERSION {
        return Err(PreambleError::UnsupportedVersion {
            theirs: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let Some(len) = read_u16(buf, MAGIC_LEN + 2) else {
        return Ok(None);
    };
    let len = usize::from(len);
    if len > HELLO_MAX_BYTES {
        return Err(PreambleError::HelloTooLong {
            len,
            max: HELLO_MAX_BYTES,
        });
    }
    let Some(text) = buf.get(HELLO_FIXED_BYTES..HELLO_FIXED_BYTES + len) else {
        return Ok(None);
    };
    let hello = std::str::from_utf8(text).map_err(|_| PreambleError::BadUtf8)?;
    let used = HELLO_FIXED_BYTES + len;
    Ok(Some((
        ClientHello {
            version,
            hello: hello.to_owned(),
        },
        used,
    )))
}

/// Appends a [`ServerReply`] to `dst`.
pub fn encode_reply(reply: &ServerReply, dst: &mut BytesMut) -> Result<(), PreambleError> {
    match reply {
        ServerReply::Accept { version } => {
            dst.reserve(REPLY_FIXED_BYTES);
            dst.put_slice(&PREAMBLE_MAGIC);
            dst.put_u16(*version);
            dst.put_u8(STATUS_ACCEPT);
        }
        ServerReply::Reject {
            version,
            code,
            reason,
        } => {
            let len = u16::try_from(reason.len())
                .ok()
                .filter(|&len| usize::from(len) <= REJECT_REASON_MAX_BYTES)
                .ok_or(PreambleError::ReasonTooLong {
                    len: reason.len(),
                    max: REJECT_REASON_MAX_BYTES,
                })?;
            dst.reserve(REJECT_FIXED_BYTES + reason.len());
            dst.put_slice(&PREAMBLE_MAGIC);
            dst.put_u16(*version);
            dst.put_u8(STATUS_REJECT);
            dst.put_u8(code.code());
            dst.put_u16(len);
            dst.put_slice(reason.as_bytes());
        }
    }
    Ok(())
}

/// Decodes a [`ServerReply`] from the start of `buf`, like [`decode_hello`].
///
/// A rejection is decoded whatever its version (that is the point of it); an
/// acceptance at another version is [`PreambleError::UnsupportedVersion`].
pub fn decode_reply(buf: &[u8]) -> Result<Option<(ServerReply, usize)>, PreambleError> {
    check_magic(buf)?;
    let (Some(version), Some(&status)) = (read_u16(buf, MAGIC_LEN), buf.get(MAGIC_LEN + 2)) else {
        return Ok(None);
    };
    match status {
        STATUS_ACCEPT if version == PROTOCOL_VERSION => {
            Ok(Some((ServerReply::Accept { version }, REPLY_FIXED_BYTES)))
        }
        STATUS_ACCEPT => Err(PreambleError::UnsupportedVersion {
            theirs: version,
            ours: PROTOCOL_VERSION,
        }),
        STATUS_REJECT => decode_reject(buf, version),
        other => Err(PreambleError::UnknownStatus(other)),
    }
}

fn decode_reject(buf: &[u8], version: u16) -> Result<Option<(ServerReply, usize)>, PreambleError> {
    let (Some(&code), Some(len)) = (
        buf.get(REPLY_FIXED_BYTES),
        read_u16(buf, REPLY_FIXED_BYTES + 1),
    ) else {
        return Ok(None);
    };
    let len = usize::from(len);
    if len > REJECT_REASON_MAX_BYTES {
        return Err(PreambleError::ReasonTooLong {
            len,
            max: REJECT_REASON_MAX_BYTES,
        });
    }
    let Some(text) = buf.get(REJECT_FIXED_BYTES..REJECT_FIXED_BYTES + len) else {
        return Ok(None);
    };
    let reason = std::str::from_utf8(text).map_err(|_| PreambleError::BadUtf8)?;
    let reply = ServerReply::Reject {
        version,
        code: RejectCode::from_code(code),
        reason: reason.to_owned(),
    };
    Ok(Some((reply, REJECT_FIXED_BYTES + len)))
}

/// Fails as soon as any received byte differs from the magic.
fn check_magic(buf: &[u8]) -> Result<(), PreambleError> {
    let n = buf.len().min(MAGIC_LEN);
    if buf[..n] == PREAMBLE_MAGIC[..n] {
        Ok(())
    } else {
        Err(PreambleError::BadMagic)
    }
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes: [u8; 2] = buf.get(at..at + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_bytes(hello: &str) -> BytesMut {
        let mut buf = BytesMut::new();
        encode_hello(hello, &mut buf).expect("short hello");
        buf
    }

    #[test]
    fn hello_round_trips_and_needs_every_byte() {
        let wire = hello_bytes("node-4 127.0.0.1:7004");
        for cut in 0..wire.len() {
            assert_eq!(decode_hello(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        let (hello, used) = decode_hello(&wire).expect("valid").expect("complete");
        assert_eq!(hello.hello, "node-4 127.0.0.1:7004");
        assert_eq!(hello.version, PROTOCOL_VERSION);
        assert_eq!(used, wire.len());
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        let mut wire = hello_bytes("cli");
        wire.extend_from_slice(b"noise message");
        let (_, used) = decode_hello(&wire).expect("valid").expect("complete");
        assert_eq!(used, HELLO_FIXED_BYTES + 3);
    }

    #[test]
    fn bad_magic_fails_on_first_wrong_byte() {
        assert_eq!(decode_hello(b"G"), Ok(None));
        assert_eq!(decode_hello(b"X"), Err(PreambleError::BadMagic));
        assert_eq!(
            decode_hello(b"GET / HTTP/1.1\r\n"),
            Err(PreambleError::BadMagic)
        );
        assert_eq!(decode_reply(b"HTTP"), Err(PreambleError::BadMagic));
    }

    #[test]
    fn wrong_version_is_reported_with_both_versions() {
        let mut wire = BytesMut::new();
        encode_hello_with_version(7, "cli", &mut wire).expect("short hello");
        assert_eq!(
            decode_hello(&wire[..6]),
            Err(PreambleError::UnsupportedVersion {
                theirs: 7,
                ours: PROTOCOL_VERSION
            })
        );
    }

    #[test]
    fn hello_too_long() {
        let long = "x".repeat(HELLO_MAX_BYTES + 1);
        let mut buf = BytesMut::new();
        assert!(matches!(
            encode_hello(&long, &mut buf),
            Err(PreambleError::HelloTooLong { .. })
        ));
        let mut wire = Vec::from(PREAMBLE_MAGIC);
        wire.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        wire.extend_from_slice(&300u16.to_be_bytes());
        assert_eq!(
            decode_hello(&wire),
            Err(PreambleError::HelloTooLong {
                len: 300,
                max: HELLO_MAX_BYTES
            })
        );
    }

    #[test]
    fn hello_bad_utf8() {
        let mut wire = Vec::from(PREAMBLE_MAGIC);
        wire.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        wire.extend_from_slice(&2u16.to_be_bytes());
        wire.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(decode_hello(&wire), Err(PreambleError::BadUtf8));
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            ServerReply::accept(),
            ServerReply::reject(RejectCode::UnsupportedVersion, "server speaks 1"),
            ServerReply::reject(RejectCode::Overloaded, ""),
            ServerReply::reject(RejectCode::Other(77), "from the future"),
        ];
        for reply in replies {
            let mut wire = BytesMut::new();
            encode_reply(&reply, &mut wire).expect("bounded reason");
            for cut in 0..wire.len() {
                assert_eq!(decode_reply(&wire[..cut]), Ok(None), "cut at {cut}");
            }
            assert_eq!(decode_reply(&wire), Ok(Some((reply, wire.len()))));
        }
    }

    #[test]
    fn reject_from_another_version_is_readable() {
        let reply = ServerReply::Reject {
            version: 9,
            code: RejectCode::UnsupportedVersion,
            reason: "speak 9".into(),
        };
        let mut wire = BytesMut::new();
        encode_reply(&reply, &mut wire).expect("bounded reason");
        assert_eq!(decode_reply(&wire), Ok(Some((reply, wire.len()))));
        let mut accept = BytesMut::new();
        encode_reply(&ServerReply::Accept { version: 9 }, &mut accept).expect("accept");
        assert_eq!(
            decode_reply(&accept),
            Err(PreambleError::UnsupportedVersion {
                theirs: 9,
                ours: PROTOCOL_VERSION
            })
        );
    }

    #[test]
    fn malformed_replies() {
        let mut wire = Vec::from(PREAMBLE_MAGIC);
        wire.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        wire.push(5);
        assert_eq!(decode_reply(&wire), Err(PreambleError::UnknownStatus(5)));

        let mut long = Vec::from(PREAMBLE_MAGIC);
        long.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        long.extend_from_slice(&[STATUS_REJECT, 1]);
        long.extend_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(
            decode_reply(&long),
            Err(PreambleError::ReasonTooLong { len: 1000, .. })
        ));

        let mut utf = Vec::from(PREAMBLE_MAGIC);
        utf.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        utf.extend_from_slice(&[STATUS_REJECT, 1, 0, 1, 0xc3]);
        assert_eq!(decode_reply(&utf), Err(PreambleError::BadUtf8));

        let oversized = ServerReply::Reject {
            version: 1,
            code: RejectCode::Overloaded,
            reason: "r".repeat(REJECT_REASON_MAX_BYTES + 1),
        };
        assert!(matches!(
            encode_reply(&oversized, &mut BytesMut::new()),
            Err(PreambleError::ReasonTooLong { .. })
        ));
    }

    #[test]
    fn reject_truncates_on_char_boundary() {
        let ServerReply::Reject { reason, .. } =
            ServerReply::reject(RejectCode::Overloaded, "é".repeat(200))
        else {
            panic!("reject builds a Reject");
        };
        assert!(reason.len() <= REJECT_REASON_MAX_BYTES);
        assert!(reason.chars().all(|c| c == 'é'));
    }
}
