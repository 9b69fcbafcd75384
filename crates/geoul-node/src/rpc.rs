//! Node-to-node requests that belong to the node itself (not to a service).
//!
//! Owns: the [`PeerRequest`]/[`PeerResponse`] messages and their handler. Does not
//! own: framing or authentication (the transport), or service requests (later
//! layers register their own handlers).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use geoul_membership::Membership;
use geoul_transport::{Handler, PeerInfo, RemoteError};
use serde::{Deserialize, Serialize};

/// A request one node (or a client) sends to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Liveness and identity check over the authenticated transport.
    Ping,
}

/// The answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to [`PeerRequest::Ping`]: who answered.
    Pong {
        /// Node name.
        name: String,
        /// Its generation.
        generation: u64,
    },
}

impl PeerRequest {
    /// Encodes for the wire.
    pub fn encode(&self) -> Bytes {
        // Encoding a fieldless/owned enum into a Vec cannot fail.
        Bytes::from(postcard::to_stdvec(self).unwrap_or_default())
    }
}

impl PeerResponse {
    /// Decodes a reply from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// Serves [`PeerRequest`]s.
pub struct PeerHandler {
    membership: Membership,
}

impl PeerHandler {
    /// A handler answering from `membership`'s view.
    pub fn new(membership: Membership) -> Arc<Self> {
        Arc::new(Self { membership })
    }
}

impl Handler for PeerHandler {
    fn handle(
        &self,
        _peer: PeerInfo,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        let reply = match postcard::from_bytes::<PeerRequest>(&request) {
            Ok(PeerRequest::Ping) => {
                let id = self.membership.snapshot().identity.clone();
                let pong = PeerResponse::Pong {
                    name: id.name,
                    generation: id.generation,
                };
                postcard::to_stdvec(&pong)
                    .map(Bytes::from)
                    .map_err(|e| RemoteError(format!("encoding reply: {e}")))
            }
            Err(e) => Err(RemoteError(format!("unknown or malformed request: {e}"))),
        };
        Box::pin(async move { reply })
    }
}
