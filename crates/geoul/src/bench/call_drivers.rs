//! The clients of `bench call`, three ways of sending the same kv request:
//!
//! * [`RawDriver`]: one bare authenticated connection to one node, a kv call
//!   frame built with `geoul_node::kv::encode_call` and read back with
//!   `decode_reply` — no routing, no session, no failover: the floor cost of a
//!   kv request through the service host (the receiving node forwards to the
//!   key's replicas itself when it is not one);
//! * [`RefDriver`] with a session: its own `geoul_client::Client` (its own
//!   connection pool and routing view) and `client.service("kv")`, calls
//!   through `geoul_node::kv::call` (routed by key to a replica);
//! * [`RefDriver`] without a session: the same ref with `without_session()`.
//!
//! Owns: connecting the drivers and turning a benchmark operation into a kv
//! request and its answer into found / not found. Does not own: the load loop
//! (`kv_load`) or the cluster (`kv_geoul`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use geoul_client::{ClientOptions, ServiceRef};
use geoul_node::kv::{decode_reply, encode_call, KvRequest, KvResponse, KV};
use geoul_replication::ReadLevel;
use geoul_store::Ack;
use geoul_transport::{ClusterSecret, TokioNet, TransportConfig};

use super::kv::REQUEST_DEADLINE;
use super::kv_load::{Driver, Op};
use crate::cluster_client::{CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT};

/// How long past the request's own deadline a raw client waits for the
/// node's answer (the node answers "deadline exceeded" itself; same grace as
/// `ServiceRef`'s).
const REPLY_GRACE: Duration = Duration::from_millis(250);

/// The hello string of the raw connections (shown in node logs).
const RAW_HELLO: &str = "bench-call";

/// The kv request of `op` on `key`: writes carry an explicit ack level, reads
/// are at `One`; every request has the benchmark's deadline.
pub fn kv_request(op: Op, key: &str, value: &str) -> KvRequest {
    let timeout_ms = u64::try_from(REQUEST_DEADLINE.as_millis()).unwrap_or(u64::MAX);
    let key = key.as_bytes().to_vec();
    let set = |ack| KvRequest::Set {
        key: key.clone(),
        value: value.to_string(),
        ttl_ms: None,
        ack: Some(ack),
        timeout_ms,
    };
    match op {
        Op::SetReplicated => set(Ack::Quorum),
        Op::SetOne => set(Ack::One),
        Op::Get => KvRequest::Get {
            key,
            level: ReadLevel::One,
            timeout_ms,
        },
    }
}

/// `Ok(true)` for an acknowledged write or a read that found its key.
pub fn answered(op: Op, response: KvResponse) -> anyhow::Result<bool> {
    match (op, response) {
        (Op::SetReplicated | Op::SetOne, KvResponse::Written { .. }) => Ok(true),
        (Op::Get, KvResponse::Value(v)) => Ok(v.is_some()),
        (_, other) => bail!("unexpected answer {other:?}"),
    }
}

/// A bare connection to one node.
pub struct RawDriver {
    conn: geoul_transport::Client<TokioNet>,
    value: Arc<str>,
}

impl Driver for RawDriver {
    async fn call(&mut self, op: Op, key: &str) -> anyhow::Result<bool> {
        let request = kv_request(op, key, &self.value);
        let frame = encode_call(&request).map_err(|e| anyhow!("encoding a kv call: {e}"))?;
        let reply = self
            .conn
            .request(frame, REQUEST_DEADLINE + REPLY_GRACE)
            .await
            .with_context(|| format!("kv call to {}", self.conn.peer_addr()))?;
        let response = decode_reply(&reply).map_err(|e| anyhow!("kv call: {e}"))?;
        answered(op, response)
    }
}

/// `n` raw drivers, spread round-robin over `nodes`.
pub async fn connect_raw(
    nodes: &[SocketAddr],
    secret: &ClusterSecret,
    n: usize,
    value: &Arc<str>,
) -> anyhow::Result<Vec<RawDriver>> {
    if nodes.is_empty() {
        bail!("no node to connect to");
    }
    let config = TransportConfig {
        hello: RAW_HELLO.into(),
        connect_timeout: CONNECT_TIMEOUT,
        handshake_timeout: HANDSHAKE_TIMEOUT,
        ..TransportConfig::default()
    };
    let mut drivers = Vec::with_capacity(n);
    for i in 0..n {
        let addr = nodes[i % nodes.len()];
        let conn = geoul_transport::Client::connect(TokioNet, addr, secret, config.clone())
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        drivers.push(RawDriver {
            conn,
            value: value.clone(),
        });
    }
    Ok(drivers)
}

/// A `ServiceRef` on `kv` over its own client.
pub struct RefDriver {
    kv: ServiceRef,
    /// Keeps the client's topology refresher running.
    _client: geoul_client::Client,
    value: Arc<str>,
}

impl Driver for RefDriver {
    async fn call(&mut self, op: Op, key: &str) -> anyhow::Result<bool> {
        let request = kv_request(op, key, &self.value);
        let response = geoul_node::kv::call(&self.kv, &request)
            .await
            .map_err(|e| anyhow!("kv call: {e}"))?;
        answered(op, response)
    }
}

/// `n` clients with `ClientOptions::default()`, client `i` seeded with node
/// `i mod len` first; `session: false` turns session guarantees off.
pub async fn connect_refs(
    nodes: &[SocketAddr],
    secret: &ClusterSecret,
    n: usize,
    value: &Arc<str>,
    session: bool,
) -> anyhow::Result<Vec<RefDriver>> {
    let mut drivers = Vec::with_capacity(n);
    for i in 0..n {
        let client = connect_client(nodes, i, secret).await?;
        let kv = client.service(KV);
        let kv = if session { kv } else { kv.without_session() };
        drivers.push(RefDriver {
            kv,
            _client: client,
            value: value.clone(),
        });
    }
    Ok(drivers)
}

/// A `geoul_client::Client` whose seed list starts at node `first mod len`
/// (so that topology requests spread over the nodes).
pub async fn connect_client(
    nodes: &[SocketAddr],
    first: usize,
    secret: &ClusterSecret,
) -> anyhow::Result<geoul_client::Client> {
    if nodes.is_empty() {
        bail!("no node to connect to");
    }
    let mut seeds = nodes.to_vec();
    seeds.rotate_left(first % nodes.len());
    geoul_client::Client::connect(&seeds, secret, ClientOptions::default())
        .await
        .with_context(|| format!("connecting a client through {}", seeds[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_node::kv::KvValue;

    #[test]
    fn requests_follow_the_operation() {
        match kv_request(Op::SetReplicated, "key:1", "v") {
            KvRequest::Set { key, ack, .. } => {
                assert_eq!(key, b"key:1");
                assert_eq!(ack, Some(Ack::Quorum));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            kv_request(Op::Get, "k", "v"),
            KvRequest::Get {
                level: ReadLevel::One,
                ..
            }
        ));
    }

    #[test]
    fn answers_are_checked_against_the_operation() {
        let written = KvResponse::Written {
            version: 1,
            origin: 2,
            acked: 2,
            replicas: 2,
        };
        assert!(answered(Op::SetReplicated, written.clone()).expect("written"));
        assert!(answered(Op::Get, written).is_err());
        let hit = KvResponse::Value(Some(KvValue {
            value: "v".into(),
            expires_at_ms: None,
            version: 1,
        }));
        assert!(answered(Op::Get, hit).expect("hit"));
        assert!(!answered(Op::Get, KvResponse::Value(None)).expect("miss"));
        assert!(answered(Op::SetOne, KvResponse::Value(None)).is_err());
    }
}
