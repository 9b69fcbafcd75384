//! Application frames: the unit of request/response multiplexing.
//!
//! Owns: the frame layout, its encoder and an incremental decoder.
//!
//! ```text
//! [u32 BE body_len][u8 kind][u64 BE request_id][u32 BE timeout_ms][payload ...]
//!                  \_____________________ body_len bytes ____________________/
//! ```
//!
//! `request_id` matches a response to its request on a multiplexed connection;
//! `timeout_ms` tells the server how long the caller will wait, so it can drop work
//! nobody is waiting for (0 = no deadline, used by one-way messages).
//!
//! Does not own: encryption (frames travel inside the secure channel of
//! `geoul-transport`), request-id allocation or timeouts (the transport's job), or
//! the meaning of payloads.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::MAX_FRAME_BYTES;

/// Size of the big-endian body-length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Size of the fixed part of a body: kind (1) + request id (8) + timeout (4).
pub const FRAME_HEADER_BYTES: usize = 1 + 8 + 4;

/// What a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A request that expects exactly one `Response` or `ErrorResponse`.
    Request = 1,
    /// The successful answer to the request with the same id.
    Response = 2,
    /// The failed answer to the request with the same id; payload is a UTF-8 reason.
    ErrorResponse = 3,
    /// A message that expects no answer (its request id is ignored).
    OneWay = 4,
    /// A liveness probe from the dialling side; the server answers `Pong` with the
    /// same id without involving any handler.
    Ping = 5,
    /// The answer to a `Ping`.
    Pong = 6,
}

impl FrameKind {
    /// Every kind, in wire-code order (handy for tests and exhaustive checks).
    pub const ALL: [FrameKind; 6] = [
        FrameKind::Request,
        FrameKind::Response,
        FrameKind::ErrorResponse,
        FrameKind::OneWay,
        FrameKind::Ping,
        FrameKind::Pong,
    ];
}

impl TryFrom<u8> for FrameKind {
    type Error = FrameError;

    fn try_from(code: u8) -> Result<Self, FrameError> {
        match code {
            1 => Ok(FrameKind::Request),
            2 => Ok(FrameKind::Response),
            3 => Ok(FrameKind::ErrorResponse),
            4 => Ok(FrameKind::OneWay),
            5 => Ok(FrameKind::Ping),
            6 => Ok(FrameKind::Pong),
            other => Err(FrameError::UnknownKind(other)),
        }
    }
}

/// One decoded frame. The payload shares the decoder's buffer (no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is for.
    pub kind: FrameKind,
    /// Matches responses to requests on one connection.
    pub request_id: u64,
    /// How long the sender waits for an answer, in milliseconds (0 = no deadline).
    pub timeout_ms: u32,
    /// Opaque application bytes.
    pub payload: Bytes,
}

impl Frame {
    /// Length of this frame's body (what the length prefix will say).
    pub fn body_len(&self) -> usize {
        FRAME_HEADER_BYTES + self.payload.len()
    }

    /// Length of this frame on the wire, prefix included.
    pub fn encoded_len(&self) -> usize {
        LENGTH_PREFIX_BYTES + self.body_len()
    }
}

/// Why bytes could not be decoded (or a frame encoded).
///
/// Every decode error means the byte stream is no longer trustworthy: the caller
/// must close the connection. The decoder stays failed after the first error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces a body larger than the limit.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    Oversized {
        /// Announced (or attempted) body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The kind byte is not one this version knows.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The length prefix is smaller than the fixed header, so the body cannot hold one.
    #[error("frame body of {len} bytes is shorter than the {min}-byte header")]
    ShortHeader {
        /// Announced body length.
        len: usize,
        /// The fixed header size.
        min: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame: {buffered} bytes buffered, {needed} needed")]
    Truncated {
        /// Bytes of the partial frame received.
        buffered: usize,
        /// Bytes the frame needs in total (or the prefix size if unknown yet).
        needed: usize,
    },
}

/// Appends the wire form of `frame` to `dst`.
///
/// Fails with [`FrameError::Oversized`] if the body exceeds [`MAX_FRAME_BYTES`]; a
/// transport with a smaller configured limit checks it before calling this.
pub fn encode(frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
    let body_len = frame.body_len();
    if body_len > MAX_FRAME_BYTES {
        return Err(FrameError::Oversized {
            len: body_len,
            max: MAX_FRAME_BYTES,
        });
    }
    // MAX_FRAME_BYTES fits in u32, so this conversion cannot fail after the check.
    let prefix = u32::try_from(body_len).map_err(|_| FrameError::Oversized {
        len: body_len,
        max: MAX_FRAME_BYTES,
    })?;
    dst.reserve(LENGTH_PREFIX_BYTES + body_len);
    dst.put_u32(prefix);
    dst.put_u8(frame.kind as u8);
    dst.put_u64(frame.request_id);
    dst.put_u32(frame.timeout_ms);
    dst.put_slice(&frame.payload);
    Ok(())
}

/// Incremental frame decoder: feed it bytes in any chunking, pull whole frames.
///
/// Memory bound: the caller drains frames after each [`push`](Self::push), so the
/// buffer holds at most one partial frame (≤ `max_body_bytes` + prefix) plus the last
/// pushed chunk. An oversized length is rejected as soon as the prefix arrives.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_body_bytes: usize,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    /// A decoder accepting bodies up to `max_body_bytes` (clamped to [`MAX_FRAME_BYTES`]).
    pub fn new(max_body_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_body_bytes: max_body_bytes.min(MAX_FRAME_BYTES),
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.try_decode() {
            Ok(frame) => Ok(frame),
            Err(err) => {
                self.buf = BytesMut::new();
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Call at end of stream: fails with [`FrameError::Truncated`] if a partial frame
    /// is buffered (the peer hung up mid-frame).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let needed = match self.peek_body_len() {
            Some(body_len) => LENGTH_PREFIX_BYTES + body_len,
            None => LENGTH_PREFIX_BYTES,
        };
        Err(FrameError::Truncated {
            buffered: self.buf.len(),
            needed,
        })
    }

    fn peek_body_len(&self) -> Option<usize> {
        let prefix: [u8; LENGTH_PREFIX_BYTES] =
            self.buf.get(..LENGTH_PREFIX_BYTES)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(prefix)).ok()
    }

    fn try_decode(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(body_len) = self.peek_body_len() else {
            return Ok(None);
        };
        if body_len > self.max_body_bytes {
            return Err(FrameError::Oversized {
                len: body_len,
                max: self.max_body_bytes,
            });
        }
        if body_len < FRAME_HEADER_BYTES {
            return Err(FrameError::ShortHeader {
                len: body_len,
                min: FRAME_HEADER_BYTES,
            });
        }
        // The kind is checked as soon as it arrives, so garbage fails fast.
        if let Some(&code) = self.buf.get(LENGTH_PREFIX_BYTES) {
            FrameKind::try_from(code)?;
        }
        if self.buf.len() < LENGTH_PREFIX_BYTES + body_len {
            self.buf
                .reserve(LENGTH_PREFIX_BYTES + body_len - self.buf.len());
            return Ok(None);
        }
        let mut body = self.buf.split_to(LENGTH_PREFIX_BYTES + body_len).freeze();
        body.advance(LENGTH_PREFIX_BYTES);
        let kind = FrameKind::try_from(body.get_u8())?;
        let request_id = body.get_u64();
        let timeout_ms = body.get_u32();
        debug_assert_eq!(body.len(), body_len - FRAME_HEADER_BYTES);
        Ok(Some(Frame {
            kind,
            request_id,
            timeout_ms,
            payload: body,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: FrameKind, payload: &'static [u8]) -> Frame {
        Frame {
            kind,
            request_id: 0x0102_0304_0506_0708,
            timeout_ms: 1500,
            payload: Bytes::from_static(payload),
        }
    }

    fn encoded(frames: &[Frame]) -> BytesMut {
        let mut buf = BytesMut::new();
        for f in frames {
            encode(f, &mut buf).expect("frame within limits");
        }
        buf
    }

    #[test]
    fn every_kind_round_trips() {
        for kind in FrameKind::ALL {
            let f = frame(kind, b"hello");
            let mut dec = FrameDecoder::default();
            dec.push(&encoded(std::slice::from_ref(&f)));
            assert_eq!(dec.next_frame(), Ok(Some(f)));
            assert_eq!(dec.next_frame(), Ok(None));
            assert_eq!(dec.finish(), Ok(()));
        }
    }

    #[test]
    fn empty_payload_round_trips() {
        let f = frame(FrameKind::OneWay, b"");
        let mut dec = FrameDecoder::default();
        dec.push(&encoded(std::slice::from_ref(&f)));
        assert_eq!(dec.next_frame(), Ok(Some(f)));
    }

    #[test]
    fn frames_split_at_every_boundary() {
        let frames: Vec<Frame> = FrameKind::ALL
            .iter()
            .map(|&k| frame(k, b"payload bytes"))
            .collect();
        let wire = encoded(&frames);
        for split in 0..=wire.len() {
            let mut dec = FrameDecoder::default();
            let mut got = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                dec.push(chunk);
                while let Some(f) = dec.next_frame().expect("valid stream") {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "split at {split}");
        }
    }

    #[test]
    fn byte_at_a_time() {
        let frames: Vec<Frame> = FrameKind::ALL.iter().map(|&k| frame(k, b"xyz")).collect();
        let wire = encoded(&frames);
        let mut dec = FrameDecoder::default();
        let mut got = Vec::new();
        for b in wire.iter() {
            dec.push(std::slice::from_ref(b));
            while let Some(f) = dec.next_frame().expect("valid stream") {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn oversized_length_rejected_from_prefix_alone() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&2000u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::Oversized {
                len: 2000,
                max: 1024
            })
        );
        // Sticky: the stream is not trusted again.
        dec.push(&encoded(&[frame(FrameKind::Request, b"")]));
        assert!(dec.next_frame().is_err());
    }

    #[test]
    fn encode_refuses_oversized() {
        let f = Frame {
            kind: FrameKind::Request,
            request_id: 1,
            timeout_ms: 0,
            payload: Bytes::from(vec![0u8; MAX_FRAME_BYTES]),
        };
        let mut buf = BytesMut::new();
        assert!(matches!(
            encode(&f, &mut buf),
            Err(FrameError::Oversized { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn short_header_rejected() {
        let mut dec = FrameDecoder::default();
        dec.push(&5u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::ShortHeader {
                len: 5,
                min: FRAME_HEADER_BYTES
            })
        );
    }

    #[test]
    fn unknown_kind_rejected_before_body_arrives() {
        let mut dec = FrameDecoder::default();
        dec.push(&100u32.to_be_bytes());
        dec.push(&[9]);
        assert_eq!(dec.next_frame(), Err(FrameError::UnknownKind(9)));
    }

    #[test]
    fn truncated_stream_reported_by_finish() {
        let wire = encoded(&[frame(FrameKind::Response, b"abcdef")]);
        let mut dec = FrameDecoder::default();
        dec.push(&wire[..wire.len() - 2]);
        assert_eq!(dec.next_frame(), Ok(None));
        assert_eq!(
            dec.finish(),
            Err(FrameError::Truncated {
                buffered: wire.len() - 2,
                needed: wire.len()
            })
        );
        let mut partial_prefix = FrameDecoder::default();
        partial_prefix.push(&[0, 0]);
        assert_eq!(
            partial_prefix.finish(),
            Err(FrameError::Truncated {
                buffered: 2,
                needed: 4
            })
        );
    }
}
