//! [`ReplicaLink`] over the node's authenticated transport.
//!
//! Owns: turning replication calls into [`PeerRequest`]s and back. Does not own:
//! what the messages mean (replication) or how frames travel (transport).

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use geoul_replication::sync::{SyncRequest, SyncResponse};
use geoul_replication::{BatchAck, LinkError, ReplicaLink, ReplicateBatch, ScanPage};
use geoul_store::{Entry, Key};
use geoul_transport::{Net, Transport};

use crate::rpc::{PeerRequest, PeerResponse};

/// Reaches other replicas through `transport`.
pub struct TransportLink<N: Net> {
    transport: Transport<N>,
}

impl<N: Net> TransportLink<N> {
    /// A link over `transport`.
    pub fn new(transport: Transport<N>) -> Self {
        Self { transport }
    }

    fn call(
        &self,
        to: SocketAddr,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<PeerResponse, LinkError>> {
        let transport = self.transport.clone();
        Box::pin(async move {
            let payload = request.encode().map_err(|e| LinkError(e.to_string()))?;
            let bytes = transport
                .request(to, payload, timeout)
                .await
                .map_err(|e| LinkError(format!("{to}: {e}")))?;
            PeerResponse::decode(&bytes).map_err(|e| LinkError(format!("{to}: bad reply: {e}")))
        })
    }
}

fn unexpected(r: PeerResponse) -> LinkError {
    LinkError(format!("unexpected reply {r:?}"))
}

impl<N: Net> ReplicaLink for TransportLink<N> {
    fn replicate(
        &self,
        to: SocketAddr,
        batch: ReplicateBatch,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<BatchAck, LinkError>> {
        let call = self.call(to, PeerRequest::Replicate(batch), timeout);
        Box::pin(async move {
            match call.await? {
                PeerResponse::Applied(ack) => Ok(ack),
                other => Err(unexpected(other)),
            }
        })
    }

    fn read(
        &self,
        to: SocketAddr,
        table: String,
        key: Key,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<Entry>, LinkError>> {
        let call = self.call(to, PeerRequest::ReadEntry { table, key }, timeout);
        Box::pin(async move {
            match call.await? {
                PeerResponse::Entry(entry) => Ok(entry),
                other => Err(unexpected(other)),
            }
        })
    }

    fn scan(
        &self,
        to: SocketAddr,
        table: String,
        prefix: Vec<u8>,
        limit: u32,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<ScanPage, LinkError>> {
        let call = self.call(
            to,
            PeerRequest::ScanEntries {
                table,
                prefix,
                limit,
            },
            timeout,
        );
        Box::pin(async move {
            match call.await? {
                PeerResponse::ScanPage(page) => Ok(page),
                other => Err(unexpected(other)),
            }
        })
    }

    fn sync(
        &self,
        to: SocketAddr,
        request: SyncRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<SyncResponse, LinkError>> {
        let call = self.call(to, PeerRequest::Sync(request), timeout);
        Box::pin(async move {
            match call.await? {
                PeerResponse::Sync(r) => Ok(r),
                other => Err(unexpected(other)),
            }
        })
    }

    fn query(
        &self,
        to: SocketAddr,
        query: geoul_query::Query,
        slots: geoul_replication::query::SlotSet,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<geoul_replication::query::QueryPage, LinkError>> {
        let call = self.call(to, PeerRequest::QueryLocal { query, slots }, timeout);
        Box::pin(async move {
            match call.await? {
                PeerResponse::QueryPage(page) => Ok(page),
                other => Err(unexpected(other)),
            }
        })
    }
}
