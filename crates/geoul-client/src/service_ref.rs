//! [`ServiceRef`]: a service reached by name, the same handle outside and
//! inside the cluster.
//!
//! Owns: encoding a call, choosing nodes in routing order, failing over, the
//! deadline, session floors, and the typed [`CallError`]s. Does not own: how
//! bytes reach a node or how the routing view is learned (the [`Backend`]).
//!
//! Failover rule: a call moves to the next node when the previous one surely
//! did not run it (unreachable, not hosting, overloaded, behind the session),
//! and — only if the caller said the request is idempotent or gave it an
//! idempotency key — also when it may have run (timeout, connection lost,
//! store unavailable). Otherwise such a failure is returned as
//! [`CallError::Indeterminate`], because retrying could apply it twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use geoul_transport::RequestError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::routes::{RouteError, Routes, Target};
use crate::session::Session;
use crate::wire::{
    decode_response, encode_call, encode_request, ApiRequest, ApiResponse, Call, Failure,
    CALL_TIMEOUT_MAX_MS,
};

/// Default deadline of a call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for its reply beyond the deadline it sends, so the
/// node's own verdict (e.g. `quorum not reached`) arrives rather than a bare
/// client-side timeout.
const REPLY_GRACE: Duration = Duration::from_millis(250);

/// Pause between passes over every node when all of them failed: long enough
/// for the failure detector and topology refresh to move on, short against
/// any deadline.
const PASS_PAUSE: Duration = Duration::from_millis(100);

/// How bytes reach nodes and where the routing view comes from. Implemented by
/// the external [`Client`](crate::Client) and by a node for its services.
pub trait Backend: Send + Sync + 'static {
    /// Sends a request to `to`, waiting at most `timeout`.
    fn request(
        &self,
        to: SocketAddr,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, RequestError>>;
    /// Queues a one-way message to `to`.
    fn send_oneway(
        &self,
        to: SocketAddr,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), RequestError>>;
    /// The current routing view.
    fn routes(&self) -> Arc<Routes>;
    /// A routing failure was seen: refresh the view soon (if it is pulled).
    fn stale(&self) {}
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No node knows the service.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// No live node hosts it (or every one refused before running the call).
    #[error("no replica of {service} took the call: {detail}")]
    NoLiveReplica {
        /// Service.
        service: String,
        /// What each node said, for the operator.
        detail: String,
    },
    /// The deadline passed.
    #[error("deadline exceeded after {0:?}")]
    DeadlineExceeded(Duration),
    /// The service refused the request.
    #[error("rejected by {service}: {reason}")]
    Rejected {
        /// Service.
        service: String,
        /// Its reason.
        reason: String,
    },
    /// Every node tried is at its concurrency limit for this service.
    #[error("service {0} is overloaded")]
    Overloaded(String),
    /// The call may or may not have been applied, and it is not safe to
    /// retry automatically (not idempotent, no idempotency key).
    #[error("outcome unknown ({0}); mark the call idempotent or give it an idempotency key to let it be retried")]
    Indeterminate(String),
    /// The node could not complete the call (e.g. quorum not reached).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The service failed internally on the node (a bug; the node is fine).
    #[error("{0}")]
    Internal(String),
    /// The request is malformed or out of bounds.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Encoding the request or decoding the response failed.
    #[error("codec: {0}")]
    Codec(String),
}

/// How one call is run.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Deadline (the ref's default if `None`).
    pub timeout: Option<Duration>,
    /// The request may be applied twice without harm: retry it anywhere.
    pub idempotent: bool,
    /// Retries carrying this key are applied at most once (the node dedups it
    /// for a bounded window); implies retrying anywhere.
    pub idempotency_key: Option<Vec<u8>>,
}

/// A service reached by name. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct ServiceRef {
    backend: Arc<dyn Backend>,
    name: Arc<str>,
    session: Option<Arc<Session>>,
    timeout: Duration,
}

impl std::fmt::Debug for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRef")
            .field("service", &self.name)
            .finish_non_exhaustive()
    }
}

enum Attempt {
    Done(Result<Bytes, CallError>),
    /// Did not run: try the next node.
    Next(String),
    /// May have run: try the next node only if retrying is safe.
    Maybe(String),
}

impl ServiceRef {
    /// A handle on `service` over `backend`, with a fresh session.
    pub fn new(backend: Arc<dyn Backend>, service: &str) -> Self {
        Self {
            backend,
            name: Arc::from(service),
            session: Some(Arc::new(Session::default())),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same ref with another default deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same ref without session guarantees (no floors sent or kept): for
    /// callers that need neither read-your-writes nor monotonic reads.
    pub fn without_session(mut self) -> Self {
        self.session = None;
        self
    }

    /// Calls the replica of `key` (failing over only before the call ran).
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
        request: &Req,
    ) -> Result<Resp, CallError> {
        self.call_with(Some(key.as_ref()), request, CallOptions::default())
            .await
    }

    /// Calls the replica of `key` with a request that is safe to apply twice:
    /// fails over on any failure until the deadline.
    pub async fn call_idempotent<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
        request: &Req,
    ) -> Result<Resp, CallError> {
        let options = CallOptions {
            idempotent: true,
            ..CallOptions::default()
        };
        self.call_with(Some(key.as_ref()), request, options).await
    }

    /// Calls any host of the service, chosen at random.
    pub async fn call_any<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        request: &Req,
    ) -> Result<Resp, CallError> {
        self.call_with(None, request, CallOptions::default()).await
    }

    /// The general form: routing `key` (or any host), and `options`.
    pub async fn call_with<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        key: Option<&[u8]>,
        request: &Req,
        options: CallOptions,
    ) -> Result<Resp, CallError> {
        let payload = postcard::to_stdvec(request).map_err(|e| CallError::Codec(e.to_string()))?;
        let reply = self.call_raw(key, payload, options).await?;
        postcard::from_bytes(&reply)
            .map_err(|e| CallError::Codec(format!("{} answered something else: {e}", self.name)))
    }

    /// A call whose request and response are JSON (any service whose types
    /// are serde types accepts it): for tools and other languages.
    pub async fn call_json(
        &self,
        key: Option<&[u8]>,
        request: &str,
        options: CallOptions,
    ) -> Result<String, CallError> {
        let reply = self
            .call_encoded(key, request.as_bytes().to_vec(), options, true)
            .await?;
        String::from_utf8(reply).map_err(|e| CallError::Codec(e.to_string()))
    }

    /// A call with an already encoded request; returns the encoded response.
    pub async fn call_raw(
        &self,
        key: Option<&[u8]>,
        payload: Vec<u8>,
        options: CallOptions,
    ) -> Result<Vec<u8>, CallError> {
        self.call_encoded(key, payload, options, false).await
    }

    async fn call_encoded(
        &self,
        key: Option<&[u8]>,
        payload: Vec<u8>,
        options: CallOptions,
        json: bool,
    ) -> Result<Vec<u8>, CallError> {
        let timeout = options.timeout.unwrap_or(self.timeout);
        let started = Instant::now();
        let deadline = started + timeout;
        let retry_safe = options.idempotent || options.idempotency_key.is_some();
        let mut call = Call {
            service: self.name.to_string(),
            key: key.map(<[u8]>::to_vec),
            payload,
            timeout_ms: u32::try_from(timeout.as_millis())
                .unwrap_or(u32::MAX)
                .clamp(1, CALL_TIMEOUT_MAX_MS),
            idempotency_key: options.idempotency_key,
            session: self
                .session
                .as_ref()
                .map(|s| s.floor(key))
                .unwrap_or_default(),
            json,
        };
        call.validate().map_err(CallError::BadRequest)?;
        let mut refused: Vec<String> = Vec::new();
        loop {
            let routes = self.backend.routes();
            // The thread-local RNG must not live across an await (not Send).
            let order = routes.order(&self.name, key, &mut rand::rng());
            let targets = match order {
                Ok(t) => t,
                Err(RouteError::UnknownService(s)) => {
                    self.backend.stale();
                    if Instant::now() + PASS_PAUSE >= deadline {
                        return Err(CallError::UnknownService(s));
                    }
                    tokio::time::sleep(PASS_PAUSE).await;
                    continue;
                }
                Err(RouteError::NoLiveReplica(_)) => Vec::new(),
            };
            for target in &targets {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(CallError::DeadlineExceeded(timeout));
                }
                call.timeout_ms = u32::try_from(left.as_millis())
                    .unwrap_or(u32::MAX)
                    .clamp(1, CALL_TIMEOUT_MAX_MS);
                match self.attempt(target, &call, left).await {
                    Attempt::Done(Ok(bytes)) => return Ok(bytes.to_vec()),
                    Attempt::Done(Err(e)) => return Err(e),
                    Attempt::Next(why) => refused.push(why),
                    Attempt::Maybe(why) if retry_safe => refused.push(why),
                    Attempt::Maybe(why) => return Err(CallError::Indeterminate(why)),
                }
            }
            self.backend.stale();
            if Instant::now() + PASS_PAUSE >= deadline {
                if refused.is_empty() {
                    return Err(CallError::NoLiveReplica {
                        service: self.name.to_string(),
                        detail: "no host is alive and healthy".into(),
                    });
                }
                if refused.iter().all(|r| r.contains("overloaded")) {
                    return Err(CallError::Overloaded(self.name.to_string()));
                }
                refused.dedup();
                return Err(CallError::NoLiveReplica {
                    service: self.name.to_string(),
                    detail: refused.join("; "),
                });
            }
            tokio::time::sleep(PASS_PAUSE).await;
        }
    }

    /// A call to the service on one named node, without failover: for a
    /// conversation with state on that node (a watch's polls). Any failure —
    /// the node gone, not hosting the service, refusing — is an error; the
    /// caller starts over elsewhere.
    pub async fn call_on<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let payload = postcard::to_stdvec(request).map_err(|e| CallError::Codec(e.to_string()))?;
        let call = Call {
            service: self.name.to_string(),
            key: None,
            payload,
            timeout_ms: u32::try_from(timeout.as_millis())
                .unwrap_or(u32::MAX)
                .clamp(1, CALL_TIMEOUT_MAX_MS),
            idempotency_key: None,
            session: Default::default(),
            json: false,
        };
        call.validate().map_err(CallError::BadRequest)?;
        let routes = self.backend.routes();
        let target = routes
            .order(&self.name, None, &mut rand::rng())
            .ok()
            .and_then(|targets| targets.into_iter().find(|t| &*t.name == node))
            .ok_or_else(|| CallError::NoLiveReplica {
                service: self.name.to_string(),
                detail: format!("{node} is not a live host of {}", self.name),
            })?;
        let reply = match self.attempt(&target, &call, timeout).await {
            Attempt::Done(r) => r?,
            Attempt::Next(why) => {
                return Err(CallError::NoLiveReplica {
                    service: self.name.to_string(),
                    detail: why,
                })
            }
            Attempt::Maybe(why) => return Err(CallError::Indeterminate(why)),
        };
        postcard::from_bytes(&reply).map_err(|e| CallError::Codec(e.to_string()))
    }

    async fn attempt(&self, target: &Target, call: &Call, left: Duration) -> Attempt {
        let bytes = match encode_call(call) {
            Ok(b) => b,
            Err(e) => return Attempt::Done(Err(CallError::Codec(e.to_string()))),
        };
        let answer = self
            .backend
            .request(target.addr, bytes, left + REPLY_GRACE)
            .await;
        let who = &target.name;
        match answer {
            Ok(bytes) => match decode_response(&bytes) {
                Ok(ApiResponse::Reply(reply)) => {
                    if let Some(session) = &self.session {
                        session.observe(call.key.as_deref(), &reply.touched, reply.hlc);
                    }
                    Attempt::Done(Ok(Bytes::from(reply.payload)))
                }
                Ok(ApiResponse::Failed(failure)) => self.failure(who, failure),
                Ok(other) => Attempt::Maybe(format!("{who} answered {other:?}")),
                Err(e) => Attempt::Maybe(format!("{who} sent an unreadable reply: {e}")),
            },
            Err(
                e @ (RequestError::Unreachable { .. }
                | RequestError::Rejected { .. }
                | RequestError::Overloaded
                | RequestError::Auth),
            ) => Attempt::Next(format!("{who}: {e}")),
            Err(RequestError::FrameTooLarge) => Attempt::Done(Err(CallError::BadRequest(
                "request exceeds the frame size limit".into(),
            ))),
            Err(RequestError::Remote(reason)) if reason.contains("starting") => {
                Attempt::Next(format!("{who}: {reason}"))
            }
            Err(e) => Attempt::Maybe(format!("{who}: {e}")),
        }
    }

    fn failure(&self, who: &str, failure: Failure) -> Attempt {
        let service = self.name.to_string();
        match failure {
            Failure::UnknownService(_) | Failure::NotHosted { .. } => {
                self.backend.stale();
                Attempt::Next(format!("{who}: {failure}"))
            }
            Failure::Overloaded(_) => Attempt::Next(format!("{who}: overloaded")),
            Failure::Behind(_) | Failure::NotReady(_) => Attempt::Next(format!("{who}: {failure}")),
            Failure::Unavailable(reason) => Attempt::Maybe(format!("{who}: {reason}")),
            Failure::DeadlineExceeded => Attempt::Maybe(format!("{who}: deadline exceeded")),
            Failure::Rejected { reason, .. } => {
                Attempt::Done(Err(CallError::Rejected { service, reason }))
            }
            Failure::Internal(_) => Attempt::Done(Err(CallError::Internal(failure.to_string()))),
            Failure::BadRequest(reason) => Attempt::Done(Err(CallError::BadRequest(reason))),
        }
    }

    /// Runs a distributed query on one of the service's tables, coordinated
    /// by one of its hosts (any failure fails over: a query only reads).
    pub async fn query(
        &self,
        query: &geoul_query::Query,
    ) -> Result<crate::wire::QueryAnswer, CallError> {
        let routes = self.backend.routes();
        let targets = routes
            .order(&self.name, None, &mut rand::rng())
            .map_err(|e| self.route_error(e))?;
        crate::query::run_query(self.backend.as_ref(), &targets, query, self.timeout).await
    }

    /// Sends a one-way message to the replica of `key` (at most once, no
    /// answer, no session).
    pub async fn send<Msg: Serialize>(
        &self,
        key: impl AsRef<[u8]>,
        message: &Msg,
    ) -> Result<(), CallError> {
        let key = key.as_ref();
        let routes = self.backend.routes();
        let targets = routes
            .order(&self.name, Some(key), &mut rand::rng())
            .map_err(|e| self.route_error(e))?;
        let bytes = self.oneway_bytes(Some(key), message)?;
        let mut failures = Vec::new();
        for target in targets {
            // A one-way message that could not even be queued never ran.
            match self.backend.send_oneway(target.addr, bytes.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => failures.push(format!("{}: {e}", target.name)),
            }
        }
        Err(CallError::NoLiveReplica {
            service: self.name.to_string(),
            detail: failures.join("; "),
        })
    }

    /// Sends a one-way message to every healthy host of the service; returns
    /// how many queued it.
    pub async fn broadcast<Msg: Serialize>(&self, message: &Msg) -> Result<usize, CallError> {
        let routes = self.backend.routes();
        let hosts = routes.hosts(&self.name).map_err(|e| self.route_error(e))?;
        let bytes = self.oneway_bytes(None, message)?;
        let sends = hosts
            .iter()
            .map(|t| self.backend.send_oneway(t.addr, bytes.clone()));
        let results = futures::future::join_all(sends).await;
        Ok(results.iter().filter(|r| r.is_ok()).count())
    }

    fn oneway_bytes<Msg: Serialize>(
        &self,
        key: Option<&[u8]>,
        message: &Msg,
    ) -> Result<Bytes, CallError> {
        let payload = postcard::to_stdvec(message).map_err(|e| CallError::Codec(e.to_string()))?;
        let call = Call {
            service: self.name.to_string(),
            key: key.map(<[u8]>::to_vec),
            payload,
            timeout_ms: u32::try_from(self.timeout.as_millis())
                .unwrap_or(u32::MAX)
                .clamp(1, CALL_TIMEOUT_MAX_MS),
            idempotency_key: None,
            session: Default::default(),
            json: false,
        };
        encode_request(&ApiRequest::Call(call)).map_err(|e| CallError::Codec(e.to_string()))
    }

    fn route_error(&self, e: RouteError) -> CallError {
        self.backend.stale();
        match e {
            RouteError::UnknownService(s) => CallError::UnknownService(s),
            RouteError::NoLiveReplica(s) => CallError::NoLiveReplica {
                service: s,
                detail: "no host is alive and healthy".into(),
            },
        }
    }
}
