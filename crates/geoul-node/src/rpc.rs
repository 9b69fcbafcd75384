//! Requests a node serves over the transport: node-level (`Ping`), replication
//! between replicas, and the `kv` service.
//!
//! Owns: [`PeerRequest`]/[`PeerResponse`] and the handler that dispatches them.
//! Does not own: framing or authentication (the transport), what replication or
//! kv do (their modules).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use geoul_membership::Membership;
use geoul_replication::sync::{SyncRequest, SyncResponse, SyncServer};
use geoul_replication::{local_scan, BatchAck, ReplicateBatch, Replicator, ScanPage};
use geoul_store::{Entry, Key};
use geoul_transport::{Handler, Net, PeerInfo, RemoteError};
use serde::{Deserialize, Serialize};

use crate::kv::{KvRequest, KvResponse};
use crate::link::TransportLink;

/// A request one node (or a client) sends to a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Liveness and identity check over the authenticated transport.
    Ping,
    /// Results to apply (replica ← write path).
    Replicate(ReplicateBatch),
    /// The stored entry of a key, in any state (quorum reads, read repair).
    ReadEntry {
        /// Table.
        table: String,
        /// Key.
        key: Key,
    },
    /// Stored entries with a prefix, from this node's copy only.
    ScanEntries {
        /// Table.
        table: String,
        /// Prefix.
        prefix: Vec<u8>,
        /// Most results.
        limit: u32,
    },
    /// A kv service request (from a client or another node).
    Kv(KvRequest),
    /// Sync and anti-entropy between replicas.
    Sync(SyncRequest),
}

/// The answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to [`PeerRequest::Ping`]: who answered.
    Pong {
        /// Node name.
        name: String,
        /// Its generation.
        generation: u64,
    },
    /// Answer to `Replicate`.
    Applied(BatchAck),
    /// Answer to `ReadEntry`.
    Entry(Option<Entry>),
    /// Answer to `ScanEntries`.
    ScanPage(ScanPage),
    /// Answer to `Kv`.
    Kv(KvResponse),
    /// Answer to `Sync`.
    Sync(SyncResponse),
}

impl PeerRequest {
    /// Encodes for the wire.
    pub fn encode(&self) -> Result<Bytes, postcard::Error> {
        postcard::to_stdvec(self).map(Bytes::from)
    }
}

impl PeerResponse {
    /// Decodes a reply from a peer.
    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The replicator of a node, set once the transport it needs exists.
pub type ReplicatorCell<N> = Arc<OnceLock<Arc<Replicator<TransportLink<N>>>>>;

/// Serves [`PeerRequest`]s.
pub struct PeerHandler<N: Net> {
    membership: Membership,
    replicator: ReplicatorCell<N>,
    sync: SyncServer,
}

impl<N: Net> PeerHandler<N> {
    /// A handler answering from `membership`, `sync` and, once set, `replicator`.
    pub fn new(
        membership: Membership,
        replicator: ReplicatorCell<N>,
        sync: SyncServer,
    ) -> Arc<Self> {
        Arc::new(Self {
            membership,
            replicator,
            sync,
        })
    }
}

fn reply(response: PeerResponse) -> Result<Bytes, RemoteError> {
    postcard::to_stdvec(&response)
        .map(Bytes::from)
        .map_err(|e| RemoteError(format!("encoding reply: {e}")))
}

impl<N: Net> Handler for PeerHandler<N> {
    fn handle(
        &self,
        _peer: PeerInfo,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        let request = match postcard::from_bytes::<PeerRequest>(&request) {
            Ok(r) => r,
            Err(e) => {
                let err = RemoteError(format!("unknown or malformed request: {e}"));
                return Box::pin(async move { Err(err) });
            }
        };
        if let PeerRequest::Ping = request {
            let id = self.membership.snapshot().identity.clone();
            let pong = PeerResponse::Pong {
                name: id.name,
                generation: id.generation,
            };
            return Box::pin(async move { reply(pong) });
        }
        if let PeerRequest::Sync(request) = request {
            let answer = self
                .sync
                .serve(request)
                .map_err(|e| RemoteError(e.to_string()))
                .and_then(|r| reply(PeerResponse::Sync(r)));
            return Box::pin(async move { answer });
        }
        let Some(replicator) = self.replicator.get().cloned() else {
            return Box::pin(async { Err(RemoteError("node is starting".into())) });
        };
        Box::pin(async move { serve(&replicator, request).await })
    }
}

async fn serve<N: Net>(
    replicator: &Replicator<TransportLink<N>>,
    request: PeerRequest,
) -> Result<Bytes, RemoteError> {
    let store = replicator.store();
    let unknown = |t: &str| RemoteError(format!("unknown table {t:?}"));
    match request {
        PeerRequest::Ping | PeerRequest::Sync(_) => Err(RemoteError(
            "answered before the replicator is needed".into(),
        )),
        PeerRequest::Replicate(batch) => {
            let results = store.apply_batch(batch.items);
            let refused = results
                .into_iter()
                .enumerate()
                .filter_map(|(i, r)| r.err().map(|e| (u32::try_from(i).unwrap_or(u32::MAX), e)))
                .collect();
            reply(PeerResponse::Applied(BatchAck { refused }))
        }
        PeerRequest::ReadEntry { table, key } => {
            let handle = store.table(&table).ok_or_else(|| unknown(&table))?;
            let slot = geoul_placement::slot_of(key.as_bytes());
            let state = handle.sync().get(slot);
            if !state.serves() {
                // The reader moves on to the next replica.
                return Err(RemoteError(format!(
                    "table {table} slot {slot} is {} on this node",
                    state.word()
                )));
            }
            let entry = handle.lock().get_entry(&key);
            reply(PeerResponse::Entry(entry))
        }
        PeerRequest::ScanEntries {
            table,
            prefix,
            limit,
        } => {
            let handle = store.table(&table).ok_or_else(|| unknown(&table))?;
            let now = store.hlc().wall_ms();
            let page = local_scan(&handle, &prefix, limit, now, store.skew_margin_ms());
            reply(PeerResponse::ScanPage(page))
        }
        PeerRequest::Kv(kv) => {
            let response = crate::kv::handle(replicator, kv)
                .await
                .map_err(RemoteError)?;
            reply(PeerResponse::Kv(response))
        }
    }
}
