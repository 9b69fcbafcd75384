//! geoul-transport: authenticated, multiplexed TCP between nodes and from tools, and
//! sealed datagrams for gossip.
//!
//! # What goes in, what comes out
//!
//! A caller hands [`Transport::request`] an address, opaque bytes and a timeout; it
//! gets the peer [`Handler`]'s bytes back, or a [`RequestError`] saying whether the
//! request may have run. Underneath, one connection per peer carries many concurrent
//! requests matched by id, every queue and map is bounded, and a slow peer slows its
//! callers (backpressure) instead of growing memory.
//!
//! # Security: Noise `NNpsk0` with the cluster secret
//!
//! Every node and trusted tool shares one [`ClusterSecret`]. A connection starts with
//! a plaintext preamble (magic, protocol version, a hello naming the caller) so a
//! peer of another version or a stray client gets a readable rejection, then runs a
//! Noise `NNpsk0_25519_ChaChaPoly_BLAKE2s` handshake (via `snow`) keyed by a PSK
//! derived from the secret, with both preambles as the prologue. After it, every
//! byte is encrypted and authenticated with per-direction nonces.
//!
//! Why this and not the alternatives:
//! - **vs mTLS**: TLS identifies peers by certificates, which means a CA, issuance,
//!   rotation and expiry to operate, all to express "holds the cluster secret". One
//!   shared secret needs no PKI; Noise's PSK modes are made for exactly that.
//! - **vs a bare HMAC challenge at connect time**: that proves the secret once, then
//!   leaves the stream unauthenticated (injectable, readable) for its lifetime.
//!   Noise gives confidentiality and per-message integrity for every frame, and the
//!   ephemeral Diffie-Hellman gives forward secrecy: a secret leaked later does not
//!   decrypt recorded traffic.
//! - **`NN` rather than `XX`/`KK`**: nodes have no static keys to manage; the PSK is
//!   the identity ("member of this cluster"). The hello is informational only.
//!
//! Gossip datagrams use [`DatagramSeal`] (XChaCha20-Poly1305, random nonces) with a
//! separate key derived from the same secret.
//!
//! # Code map
//! - `net`: the [`Net`] seam (tokio in production, turmoil in simulation). The
//!   transport never touches `tokio::net` or `std::time`; all timers are
//!   `tokio::time`, so simulated time drives it.
//! - `secret`, `seal`: key derivation and datagram sealing.
//! - `handshake`: preamble + Noise handshake; `channel`: Noise messages;
//!   `framed`: frames over the channel (frames and messages are independent layers).
//! - `connection`: one outbound multiplexed connection; `pool`: one per peer, with
//!   backoff; `transport`: the public node API; `client`: one connection for tools.
//! - `server`: admission and authentication; `serve`: running handlers.
//!
//! # Architecture invariants
//! - No IO outside [`Net`]; no clock but `tokio::time`; randomness that affects
//!   behaviour comes from an RNG seeded by [`TransportConfig::rng_seed`].
//! - Nothing unauthenticated is believed: before the handshake completes, only the
//!   preamble is parsed, with fixed small bounds and a timeout.
//! - Secrets and key material are never logged; `Debug` redacts them.

mod channel;
mod client;
mod config;
mod connection;
mod error;
mod framed;
mod handler;
mod handshake;
mod log_limit;
mod metrics;
pub mod net;
mod outbound;
mod pool;
mod seal;
mod secret;
mod serve;
mod server;
mod transport;

#[cfg(test)]
mod tests;

pub use client::Client;
pub use config::{
    ConfigError, TransportConfig, DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_HELLO,
    DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONN, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_MAX_INFLIGHT_REQUESTS_PER_CONN, DEFAULT_OUTBOUND_QUEUE_FRAMES,
};
pub use error::{RemoteError, RequestError, TransportError};
pub use handler::{Handler, PeerInfo};
pub use metrics::{MetricsSnapshot, TransportMetrics};
pub use net::{Datagram, Listener, Net, Stream, TokioNet};
pub use outbound::Outbound;
pub use seal::{DatagramError, DatagramSeal, DATAGRAM_OVERHEAD};
pub use secret::{ClusterSecret, SecretError, SECRET_FILE_MAX_BYTES, SECRET_MIN_BYTES};
pub use serve::REMOTE_ERROR_MAX_BYTES;
pub use transport::Transport;
