//! The network seam: [`RaftNet`], which the node implements over its own transport,
//! and openraft's `RaftNetwork` on top of it.
//!
//! Owns: turning openraft's RPCs into [`RaftRequest`] bytes and replies back into
//! openraft's results (timeouts, unreachable peers, remote failures), and the client
//! side of `Hello` and forwarded submits.
//!
//! Does not own: connections, authentication, framing, retries beyond openraft's own
//! (all the node's transport), or serving requests (`group`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, SnapshotMismatch,
    Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};

use crate::error::CondError;
use crate::types::{CondOp, CondOutcome, NodeId, TypeConfig};
use crate::wire::{HelloReply, RaftReply, RaftRequest, RemoteFailure, ReplyBody, RequestBody};

/// A boxed, sendable future (what [`RaftNet::call`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a group reaches its peers. The node implements it over its authenticated
/// transport: send `request` to the node at `addr`, hand it to that node's group
/// named by [`RaftRequest::group`] (decode with [`RaftRequest::decode`], answer with
/// [`crate::CondGroup::handle`], encode the [`RaftReply`]), and return the reply bytes
/// — or an error string if there is no reply within `timeout`.
pub trait RaftNet: Send + Sync + 'static {
    fn call(
        &self,
        addr: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>>;
}

/// Sends one request and decodes the reply, within `timeout`.
pub(crate) async fn call(
    net: &Arc<dyn RaftNet>,
    addr: &str,
    request: RaftRequest,
    timeout: Duration,
) -> Result<ReplyBody, CallError> {
    let bytes = request
        .encode()
        .map_err(|e| CallError::Failed(e.to_string()))?;
    let reply = match tokio::time::timeout(timeout, net.call(addr, bytes, timeout)).await {
        Err(_) => return Err(CallError::Timeout),
        Ok(Err(e)) => return Err(CallError::Failed(e)),
        Ok(Ok(reply)) => reply,
    };
    let reply = RaftReply::decode(&reply).map_err(|e| CallError::Failed(e.to_string()))?;
    match reply.0 {
        ReplyBody::Refused(why) => Err(CallError::Failed(format!("refused: {why}"))),
        body => Ok(body),
    }
}

#[derive(Debug)]
pub(crate) enum CallError {
    Timeout,
    Failed(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("timed out"),
            CallError::Failed(e) => f.write_str(e),
        }
    }
}

/// Asks the node at `addr` who it is (and with `bootstrap`, for a promise).
pub(crate) async fn hello(
    net: &Arc<dyn RaftNet>,
    group: &str,
    addr: &str,
    from_addr: &str,
    bootstrap: Option<NodeId>,
    timeout: Duration,
) -> Result<HelloReply, String> {
    let body = RequestBody::Hello {
        from_addr: from_addr.to_string(),
        bootstrap,
    };
    match call(net, addr, RaftRequest::new(group, body), timeout).await {
        Ok(ReplyBody::Hello(reply)) => Ok(reply),
        Ok(other) => Err(format!("unexpected reply to hello: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Submits `op` on the node at `addr` (a forward to the leader).
pub(crate) async fn submit_remote(
    net: &Arc<dyn RaftNet>,
    group: &str,
    addr: &str,
    op: CondOp,
    now_ms: u64,
    timeout: Duration,
) -> Result<CondOutcome, CondError> {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let body = RequestBody::Submit {
        op,
        now_ms,
        timeout_ms,
    };
    match call(net, addr, RaftRequest::new(group, body), timeout).await {
        Ok(ReplyBody::Submit(result)) => result,
        Ok(other) => Err(CondError::Network(format!(
            "unexpected reply to submit: {other:?}"
        ))),
        Err(CallError::Timeout) => Err(CondError::Timeout { timeout_ms }),
        Err(CallError::Failed(e)) => Err(CondError::Network(e)),
    }
}

/// openraft's factory of per-peer clients.
pub(crate) struct NetFactory {
    pub net: Arc<dyn RaftNet>,
    pub group: String,
    pub self_id: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for NetFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            net: self.net.clone(),
            group: self.group.clone(),
            self_id: self.self_id,
            target,
            addr: node.addr.clone(),
        }
    }
}

/// openraft's client for one peer.
pub(crate) struct PeerClient {
    net: Arc<dyn RaftNet>,
    group: String,
    self_id: NodeId,
    target: NodeId,
    addr: String,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn rpc<E: std::error::Error>(
        &self,
        body: RequestBody,
        action: RPCTypes,
        option: &RPCOption,
    ) -> RpcResult<ReplyBody, E> {
        let timeout = option.hard_ttl();
        let request = RaftRequest::new(&self.group, body);
        call(&self.net, &self.addr, request, timeout)
            .await
            .map_err(|e| match e {
                CallError::Timeout => RPCError::Timeout(Timeout {
                    action,
                    id: self.self_id,
                    target: self.target,
                    timeout,
                }),
                // Unreachable makes openraft back off before retrying: right for a
                // dead peer and for one that refuses us (e.g. a wiped node).
                CallError::Failed(e) => {
                    RPCError::Unreachable(Unreachable::new(&io::Error::other(e)))
                }
            })
    }

    fn remote(
        &self,
        failure: RemoteFailure,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>> {
        let error = match failure {
            RemoteFailure::Stopped(_) => RaftError::Fatal(Fatal::Stopped),
            RemoteFailure::SnapshotMismatch { expect, got } => {
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                    expect,
                    got,
                }))
            }
        };
        RPCError::RemoteError(RemoteError::new(self.target, error))
    }

    fn unexpected<E: std::error::Error>(
        reply: &ReplyBody,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        let e = io::Error::other(format!("unexpected reply: {reply:?}"));
        RPCError::Network(NetworkError::new(&e))
    }
}

/// Append and vote have no API error; a peer's "stopped" is reported as unreachable.
fn stopped<E: std::error::Error>() -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other("peer stopped")))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let body = RequestBody::AppendEntries {
            target: self.target,
            rpc,
        };
        match self.rpc(body, RPCTypes::AppendEntries, &option).await? {
            ReplyBody::AppendEntries(Ok(resp)) => Ok(resp),
            ReplyBody::AppendEntries(Err(_)) => Err(stopped()),
            other => Err(Self::unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let body = RequestBody::InstallSnapshot {
            target: self.target,
            rpc,
        };
        match self.rpc(body, RPCTypes::InstallSnapshot, &option).await? {
            ReplyBody::InstallSnapshot(Ok(resp)) => Ok(resp),
            ReplyBody::InstallSnapshot(Err(failure)) => Err(self.remote(failure)),
            other => Err(Self::unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let body = RequestBody::Vote {
            target: self.target,
            rpc,
        };
        match self.rpc(body, RPCTypes::Vote, &option).await? {
            ReplyBody::Vote(Ok(resp)) => Ok(resp),
            ReplyBody::Vote(Err(_)) => Err(stopped()),
            other => Err(Self::unexpected(&other)),
        }
    }
}
