//! Requests a node serves over the transport: node-level (`Ping`), replication
//! and sync between replicas, and client requests (service calls, topology).
//!
//! Owns: [`PeerRequest`]/[`PeerResponse`] and the handler that dispatches
//! them and client requests (told apart by their first byte, see
//! `geoul_client::wire::API_TAG`). Does not own: framing or authentication
//! (the transport), what replication or services do (their crates).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use geoul_membership::Membership;
use geoul_replication::query::{local_query, QueryError, QueryPage, SlotSet};
use geoul_replication::sync::{SyncRequest, SyncResponse, SyncServer};
use geoul_replication::{local_scan, BatchAck, ReplicateBatch, Replicator, ScanPage};
use geoul_store::{Entry, Key};
use geoul_transport::{Handler, Net, PeerInfo, RemoteError};
use serde::{Deserialize, Serialize};

use geoul_client::wire::{self, ApiRequest, ApiResponse, Failure};
use geoul_service::{Caller, ServiceHost};

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
    /// Sync and anti-entropy between replicas.
    Sync(SyncRequest),
    /// This node's top rows of a distributed query over `slots`.
    QueryLocal {
        /// The query.
        query: geoul_query::Query,
        /// Slots asked.
        slots: SlotSet,
    },
    /// A Raft message of a consensus group (`geoul-consensus` bytes).
    Consensus(Vec<u8>),
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
    /// Answer to `Sync`.
    Sync(SyncResponse),
    /// Answer to `QueryLocal`.
    QueryPage(QueryPage),
    /// Answer to `Consensus`.
    Consensus(Vec<u8>),
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

/// The service host of a node, set once the replicator it needs exists.
pub type HostCell = Arc<OnceLock<Arc<ServiceHost>>>;

/// The consensus groups of a node, set once they are open.
pub type GroupsCell = Arc<OnceLock<Arc<crate::consensus::Groups>>>;

/// Serves [`PeerRequest`]s and client requests.
pub struct PeerHandler<N: Net> {
    membership: Membership,
    replicator: ReplicatorCell<N>,
    host: HostCell,
    groups: GroupsCell,
    sync: SyncServer,
}

impl<N: Net> PeerHandler<N> {
    /// A handler answering from `membership`, `sync` and, once set,
    /// `replicator` and `host`.
    pub fn new(
        membership: Membership,
        replicator: ReplicatorCell<N>,
        host: HostCell,
        groups: GroupsCell,
        sync: SyncServer,
    ) -> Arc<Self> {
        Arc::new(Self {
            membership,
            replicator,
            host,
            groups,
            sync,
        })
    }

    fn api(
        &self,
        peer: PeerInfo,
        request: &[u8],
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        let request = match wire::decode_request(request) {
            Ok(r) => r,
            Err(e) => {
                let err = RemoteError(format!("malformed client request: {e}"));
                return Box::pin(async move { Err(err) });
            }
        };
        match request {
            ApiRequest::Topology => {
                let topology = crate::topology::topology(&self.membership.snapshot().view);
                Box::pin(async move { api_reply(&ApiResponse::Topology(topology)) })
            }
            ApiRequest::Query(q) => {
                let Some(replicator) = self.replicator.get().cloned() else {
                    return Box::pin(async { Err(RemoteError("node is starting".into())) });
                };
                let node = self.membership.snapshot().identity.name.clone();
                Box::pin(async move {
                    let timeout = std::time::Duration::from_millis(u64::from(q.timeout_ms));
                    let answer = match replicator.query(&q.query, timeout).await {
                        Ok(result) => ApiResponse::Rows(geoul_service::query::answer(result, node)),
                        Err(QueryError::UnknownTable(table)) => {
                            ApiResponse::Failed(Failure::NotHosted {
                                service: format!("table {table}"),
                                node,
                            })
                        }
                        Err(e) => ApiResponse::Failed(Failure::BadRequest(e.to_string())),
                    };
                    api_reply(&answer)
                })
            }
            ApiRequest::Call(call) => {
                let Some(host) = self.host.get().cloned() else {
                    let name = self.membership.snapshot().identity.name.clone();
                    let answer = ApiResponse::Failed(Failure::NotHosted {
                        service: call.service,
                        node: name,
                    });
                    return Box::pin(async move { api_reply(&answer) });
                };
                let caller = Caller {
                    addr: peer.addr,
                    hello: peer.hello,
                };
                Box::pin(async move { api_reply(&host.handle(call, caller).await) })
            }
        }
    }
}

fn api_reply(response: &ApiResponse) -> Result<Bytes, RemoteError> {
    wire::encode_response(response).map_err(|e| RemoteError(format!("encoding reply: {e}")))
}

fn reply(response: PeerResponse) -> Result<Bytes, RemoteError> {
    postcard::to_stdvec(&response)
        .map(Bytes::from)
        .map_err(|e| RemoteError(format!("encoding reply: {e}")))
}

impl<N: Net> Handler for PeerHandler<N> {
    /// One-way service messages (`ServiceRef::send`, `broadcast`): run like a
    /// call, the answer dropped. Anything else one-way is ignored.
    fn handle_oneway(&self, peer: PeerInfo, message: Bytes) {
        if !wire::is_api_request(&message) {
            return;
        }
        let Ok(ApiRequest::Call(call)) = wire::decode_request(&message) else {
            return;
        };
        let Some(host) = self.host.get().cloned() else {
            return;
        };
        let caller = Caller {
            addr: peer.addr,
            hello: peer.hello,
        };
        tokio::spawn(async move {
            if let ApiResponse::Failed(f) = host.handle(call, caller).await {
                tracing::debug!(failure = %f, "one-way service message failed");
            }
        });
    }

    fn handle(
        &self,
        peer: PeerInfo,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        if wire::is_api_request(&request) {
            return self.api(peer, &request);
        }
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
        if let PeerRequest::Consensus(bytes) = request {
            let Some(groups) = self.groups.get().cloned() else {
                return Box::pin(async { Err(RemoteError("node is starting".into())) });
            };
            return Box::pin(async move {
                let answer = groups.serve(&bytes).await.map_err(RemoteError)?;
                reply(PeerResponse::Consensus(answer))
            });
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
        PeerRequest::Ping | PeerRequest::Sync(_) | PeerRequest::Consensus(_) => Err(RemoteError(
            "answered before the replicator is needed".into(),
        )),
        PeerRequest::Replicate(batch) => {
            let results = store.apply_changes(batch.items);
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
        PeerRequest::QueryLocal { query, slots } => {
            let handle = store
                .table(&query.table)
                .ok_or_else(|| unknown(&query.table))?;
            let now = store.hlc().wall_ms();
            let page = local_query(&handle, &query, &slots, now)
                .map_err(|e| RemoteError(e.to_string()))?;
            reply(PeerResponse::QueryPage(page))
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
    }
}
