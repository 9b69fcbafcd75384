//! The client wire protocol: what programs outside a node (and services inside
//! one) send to a node to reach a service.
//!
//! Owns: [`ApiRequest`]/[`ApiResponse`], the envelope of a service call
//! ([`Call`]/[`CallReply`]), typed failures ([`Failure`]), the routing view
//! ([`Topology`]), their bounds and the tag byte that separates client requests
//! from node-to-node traffic on the same port. Does not own: how nodes talk to
//! each other (geoul-node's `rpc`) or what a service's payloads mean.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use geoul_placement::Replication;
use serde::{Deserialize, Serialize};

/// First byte of every client request. Node-to-node requests start with their
/// enum tag (a small varint), so the two families never collide on one port.
pub const API_TAG: u8 = 0xFF;

/// Longest idempotency key: room for a UUID or a hash, not for a payload.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 64;
/// Longest routing key (the store's key bound).
pub const ROUTING_KEY_BYTES_MAX: usize = 1024;
/// Session floors sent with one call: enough for the entries one request
/// touches; older ones are dropped first (a bounded session, never a leak).
pub const FLOORS_MAX: usize = 32;
/// Longest deadline a call may carry.
pub const CALL_TIMEOUT_MAX_MS: u32 = 60_000;

/// A version as the store orders it: HLC timestamp, then origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Raw hybrid-logical-clock timestamp.
    pub ts: u64,
    /// Writer identity (tie-break).
    pub origin: u64,
}

/// One table entry a call read or wrote, and the version it saw or made.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Touch {
    /// Table.
    pub table: String,
    /// Key bytes.
    pub key: Vec<u8>,
    /// The version read or written.
    pub version: Stamp,
}

/// What a session has seen, sent with a call so the node serving it never
/// answers from a state older than that (DESIGN.md §4 line 4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFloor {
    /// Highest HLC timestamp the session has observed: the serving node's clock
    /// moves past it, so the call's writes are newer than anything seen.
    pub hlc: u64,
    /// Entries this routing key touched before, with their versions.
    pub floors: Vec<Touch>,
}

/// One call to a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Service name.
    pub service: String,
    /// Routing key (`None` for `call_any` / `broadcast`).
    pub key: Option<Vec<u8>>,
    /// The service's request, encoded by the caller.
    pub payload: Vec<u8>,
    /// Deadline from receipt, ms.
    pub timeout_ms: u32,
    /// Retries carrying the same key are applied at most once.
    pub idempotency_key: Option<Vec<u8>>,
    /// What the caller's session has seen.
    pub session: SessionFloor,
    /// The payload (and the reply) are JSON instead of postcard: for tools
    /// and languages without the service's Rust types (`geoul call`).
    pub json: bool,
}

impl Call {
    /// Checks every bound (a node calls this on what it receives).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(k) = self
            .key
            .as_ref()
            .filter(|k| k.len() > ROUTING_KEY_BYTES_MAX)
        {
            return Err(format!(
                "key is {} bytes (at most {ROUTING_KEY_BYTES_MAX})",
                k.len()
            ));
        }
        if self
            .idempotency_key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > IDEMPOTENCY_KEY_BYTES_MAX)
        {
            return Err(format!(
                "idempotency key must be 1-{IDEMPOTENCY_KEY_BYTES_MAX} bytes"
            ));
        }
        if self.session.floors.len() > FLOORS_MAX {
            return Err(format!("more than {FLOORS_MAX} session floors"));
        }
        if self.timeout_ms == 0 || self.timeout_ms > CALL_TIMEOUT_MAX_MS {
            return Err(format!("timeout must be 1-{CALL_TIMEOUT_MAX_MS} ms"));
        }
        Ok(())
    }
}

/// A call's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReply {
    /// The service's response, encoded by the service.
    pub payload: Vec<u8>,
    /// Entries the call read or wrote (for the caller's session).
    pub touched: Vec<Touch>,
    /// The serving node's HLC after the call.
    pub hlc: u64,
    /// Which node served it.
    pub node: String,
}

/// Why a node did not produce a reply. Whether a caller may retry elsewhere
/// follows from the variant (see [`Failure::executed`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Failure {
    /// No node of the cluster knows this service.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// This node does not host the service (routing was stale): nothing ran.
    #[error("{node} does not host service {service:?}")]
    NotHosted {
        /// Service.
        service: String,
        /// The node asked.
        node: String,
    },
    /// The service refused the request; its reason is for the caller.
    #[error("rejected by {service}: {reason}")]
    Rejected {
        /// Service.
        service: String,
        /// The service's reason.
        reason: String,
    },
    /// The service's concurrency limit is reached: nothing ran.
    #[error("service {0} is overloaded on this node")]
    Overloaded(String),
    /// The deadline passed while the call ran; it may or may not have applied.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The store could not do what the handler asked (e.g. quorum not
    /// reached); the call may have partly applied.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This node's copy is behind what the caller's session has seen and did
    /// not catch up in time. Sent only when the call wrote nothing yet (it
    /// becomes `Unavailable` otherwise), so a retry elsewhere is safe.
    #[error("replica behind the session: {0}")]
    Behind(String),
    /// The handler panicked; the node is unaffected.
    #[error("service {0} failed internally (see the node's log)")]
    Internal(String),
    /// The request was malformed or out of bounds.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The service is not ready on this node (e.g. its consensus group has
    /// not formed yet) and did nothing: a retry, elsewhere or later, is safe.
    /// Last, so older decoders keep their variant numbers.
    #[error("not ready: {0}")]
    NotReady(String),
}

impl Failure {
    /// Whether the handler may have run (and applied writes). `false` means a
    /// retry elsewhere is always safe.
    pub fn executed(&self) -> bool {
        !matches!(
            self,
            Self::UnknownService(_)
                | Self::NotHosted { .. }
                | Self::Overloaded(_)
                | Self::BadRequest(_)
                | Self::Behind(_)
                | Self::NotReady(_)
        )
    }
}

/// One member in the routing view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRoute {
    /// Node name.
    pub name: String,
    /// Cluster address (clients and peers).
    pub addr: SocketAddr,
    /// Suspected by the failure detector (routing tries it last).
    pub suspect: bool,
    /// Services it hosts with whether each is healthy.
    pub services: Vec<(String, bool)>,
    /// Tables it is still syncing (routing tries it last for those).
    pub syncing: Vec<String>,
    /// Tables it declares (where a query on a table can be coordinated).
    pub tables: Vec<String>,
}

/// How one service's calls are placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRoute {
    /// Service name.
    pub name: String,
    /// The table whose replicas serve a key's calls (`None`: the service's
    /// hosts, by rendezvous on the key's slot).
    pub table: Option<String>,
    /// That table's replication.
    pub replication: Replication,
}

/// The routing view a node hands to clients: live members and services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Alive and suspect members.
    pub members: Vec<MemberRoute>,
    /// Services known to the cluster.
    pub services: Vec<ServiceRoute>,
}

/// A distributed query, coordinated by the node that receives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryCall {
    /// The query (its table must be declared on the coordinating node).
    pub query: geoul_query::Query,
    /// Deadline from receipt, ms.
    pub timeout_ms: u32,
}

/// One row of a query's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Key bytes.
    pub key: Vec<u8>,
    /// The document.
    pub doc: geoul_store::Document,
    /// Its version.
    pub version: Stamp,
    /// When it expires, Unix ms.
    pub expires_at_ms: Option<u64>,
}

/// A query's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    /// Rows in query order, at most the limit.
    pub rows: Vec<Row>,
    /// Some slots could not be answered before the deadline: rows may be
    /// missing (see `missing_slots`). Never silently incomplete.
    pub partial: bool,
    /// The slots no replica answered.
    pub missing_slots: Vec<u16>,
    /// Cursor of the next page (`after`) when this page is full.
    pub next: Option<String>,
    /// Nodes that answered a part.
    pub nodes: u32,
    /// Entries examined on all nodes.
    pub examined: u64,
    /// The coordinating node.
    pub node: String,
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiRequest {
    /// The routing view.
    Topology,
    /// A service call.
    Call(Call),
    /// A distributed query.
    Query(QueryCall),
}

/// The answer to an [`ApiRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiResponse {
    /// Answer to `Topology`.
    Topology(Topology),
    /// A call's reply.
    Reply(CallReply),
    /// A call's failure.
    Failed(Failure),
    /// A query's answer.
    Rows(QueryAnswer),
}

/// Encodes a client request: [`API_TAG`] then postcard.
pub fn encode_request(request: &ApiRequest) -> Result<Bytes, postcard::Error> {
    tagged(request)
}

/// [`ApiRequest`] by reference, encoded identically (same variants in the
/// same order), so a call is encoded without copying its payload.
#[derive(Serialize)]
enum ApiRequestRef<'a> {
    #[allow(dead_code)]
    Topology,
    Call(&'a Call),
}

/// Encodes `ApiRequest::Call(call.clone())` without the clone.
pub fn encode_call(call: &Call) -> Result<Bytes, postcard::Error> {
    tagged(&ApiRequestRef::Call(call))
}

fn tagged<T: Serialize>(value: &T) -> Result<Bytes, postcard::Error> {
    let body = postcard::to_stdvec(value)?;
    let mut out = BytesMut::with_capacity(body.len() + 1);
    out.put_u8(API_TAG);
    out.put_slice(&body);
    Ok(out.freeze())
}

/// Whether `bytes` is a client request (starts with [`API_TAG`]).
pub fn is_api_request(bytes: &[u8]) -> bool {
    bytes.first() == Some(&API_TAG)
}

/// Decodes a client request (tag included).
pub fn decode_request(bytes: &[u8]) -> Result<ApiRequest, postcard::Error> {
    match bytes.split_first() {
        Some((&API_TAG, body)) => postcard::from_bytes(body),
        _ => Err(postcard::Error::DeserializeBadEncoding),
    }
}

/// Encodes an answer.
pub fn encode_response(response: &ApiResponse) -> Result<Bytes, postcard::Error> {
    postcard::to_stdvec(response).map(Bytes::from)
}

/// Decodes an answer.
pub fn decode_response(bytes: &[u8]) -> Result<ApiResponse, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call {
            service: "kv".into(),
            key: Some(b"k".to_vec()),
            payload: vec![1, 2, 3],
            timeout_ms: 1000,
            idempotency_key: None,
            session: SessionFloor::default(),
            json: false,
        }
    }

    #[test]
    fn requests_roundtrip_behind_the_tag() {
        let request = ApiRequest::Call(call());
        let bytes = encode_request(&request).expect("encodes");
        assert!(is_api_request(&bytes));
        assert_eq!(decode_request(&bytes).expect("decodes"), request);
        // Node-to-node requests start with a small enum tag, never API_TAG.
        assert!(!is_api_request(&[0, 1, 2]));
        assert!(decode_request(&[0, 1]).is_err());
    }

    #[test]
    fn a_call_encodes_the_same_by_reference() {
        let c = call();
        assert_eq!(
            encode_call(&c).expect("encodes"),
            encode_request(&ApiRequest::Call(c)).expect("encodes")
        );
    }

    #[test]
    fn bounds_are_checked() {
        let mut c = call();
        assert!(c.validate().is_ok());
        c.idempotency_key = Some(vec![0; IDEMPOTENCY_KEY_BYTES_MAX + 1]);
        assert!(c.validate().unwrap_err().contains("idempotency key"));
        let mut c = call();
        c.timeout_ms = 0;
        assert!(c.validate().unwrap_err().contains("timeout"));
        let mut c = call();
        c.key = Some(vec![0; ROUTING_KEY_BYTES_MAX + 1]);
        assert!(c
            .validate()
            .unwrap_err()
            .contains("key is 1025 bytes (at most 1024)"));
    }

    #[test]
    fn only_failures_before_execution_are_always_retryable() {
        assert!(!Failure::Overloaded("s".into()).executed());
        assert!(!Failure::NotHosted {
            service: "s".into(),
            node: "n".into()
        }
        .executed());
        assert!(Failure::Unavailable("x".into()).executed());
        assert!(Failure::DeadlineExceeded.executed());
    }
}
