//! geoul-proto: the wire format of geoul, with no IO.
//!
//! Owns: the byte layout of everything geoul sends over TCP — the plaintext
//! [preamble] exchanged before authentication and the application [frame]s carried
//! inside the secure channel — plus the protocol-wide bounds ([`PROTOCOL_VERSION`],
//! [`MAX_FRAME_BYTES`]). Everything here is a pure function of bytes in and bytes out:
//! decoders are fed arbitrary chunks and never panic on hostile input.
//!
//! Does not own: sockets, timers, encryption or authentication (all in
//! `geoul-transport`), nor the meaning of payloads (services define those). Frames
//! are independent of the secure channel's message size: a frame may span several
//! encrypted messages and one message may carry several frames.
//!
//! Architecture invariant: this crate has no async runtime and no clock, so the
//! simulator and fuzzers can drive it directly.

pub mod frame;
pub mod preamble;

pub use frame::{
    encode, Frame, FrameDecoder, FrameError, FrameKind, FRAME_HEADER_BYTES, LENGTH_PREFIX_BYTES,
};
pub use preamble::{
    decode_hello, decode_reply, encode_hello, encode_hello_with_version, encode_reply, ClientHello,
    PreambleError, RejectCode, ServerReply, HELLO_MAX_BYTES, PREAMBLE_MAGIC,
    REJECT_REASON_MAX_BYTES,
};

/// Version of the wire protocol spoken by this build.
///
/// Sent in the plaintext preamble so that a node or CLI of another version is told
/// why it was refused instead of failing later with an opaque decrypt error. Bump it
/// on any incompatible change to the frame layout or the handshake.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame body (everything after the 4-byte length prefix) any peer may send.
///
/// 16 MiB is far above any single request a game service should make (sessions,
/// match tickets, directory entries are kilobytes) yet large enough for a bulk
/// anti-entropy batch. The bound exists so a hostile or buggy peer cannot make a node
/// allocate unbounded memory from one length prefix: decoders reject a larger length
/// as soon as the prefix arrives, before buffering the body.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
