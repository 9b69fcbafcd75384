//! What a service is: the [`Service`] trait users implement, its [`Limits`],
//! the errors a handler returns, and the type-erased form the host keeps.
//!
//! Owns: [`Service`], [`Limits`], [`HandlerError`], [`DynService`] and
//! [`hosted`]. Does not own: dispatching (the host) or table access (the
//! context).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use geoul_store::TableSpec;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::{Context, StoreError};

/// A replicated service. Implement it, register it on the nodes that host it,
/// and call it by name through a `ServiceRef`.
///
/// A handler never replicates anything itself: it reads and writes its tables
/// through the [`Context`]; each write is versioned, applied and shipped to
/// the replicas by the framework (results, not requests, are replicated).
///
/// ```
/// use geoul_service::{Context, HandlerError, Service};
/// use geoul_store::{Ack, Document, Durability, Replication, TableOptions, TableSpec, Value};
/// use serde::{Deserialize, Serialize};
///
/// /// Counts visits per page.
/// struct Visits;
///
/// #[derive(Serialize, Deserialize)]
/// enum Request { Visit(String), Count(String) }
///
/// impl Service for Visits {
///     type Request = Request;
///     type Response = i64;
///     fn name(&self) -> &str { "visits" }
///     fn tables(&self) -> Vec<TableSpec> {
///         vec![TableSpec {
///             name: "visits".into(),
///             options: TableOptions {
///                 replication: Replication::Factor(3),
///                 write_ack: Ack::Quorum,
///                 durability: Durability::Memory,
///                 default_ttl: None,
///                 max_entries: None,
///                 indexes: Vec::new(),
///             },
///         }]
///     }
///     async fn handle(&self, ctx: Context, request: Request) -> Result<i64, HandlerError> {
///         match request {
///             Request::Count(page) => Ok(count(&ctx, &page).await?),
///             Request::Visit(page) => {
///                 let n = count(&ctx, &page).await? + 1;
///                 let doc = Document::single("n", Value::Int(n)).map_err(HandlerError::reject)?;
///                 ctx.put("visits", page.as_bytes(), doc).await?;
///                 Ok(n)
///             }
///         }
///     }
/// }
///
/// async fn count(ctx: &Context, page: &str) -> Result<i64, HandlerError> {
///     let record = ctx.get("visits", page.as_bytes()).await?;
///     Ok(match record.as_ref().and_then(|r| r.doc.get("n")) {
///         Some(Value::Int(n)) => *n,
///         _ => 0,
///     })
/// }
/// ```
pub trait Service: Send + Sync + 'static {
    /// What callers send (postcard-encoded on the wire).
    type Request: DeserializeOwned + Send + 'static;
    /// What the service answers.
    type Response: Serialize + Send + 'static;

    /// The name callers use (`[a-z0-9-_.]`, 1-42 bytes).
    fn name(&self) -> &str;

    /// The tables the service keeps. Calls with a key are routed to the
    /// replicas of that key in the first table.
    fn tables(&self) -> Vec<TableSpec>;

    /// Concurrency and size limits.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// Registers the service's own metrics in the node's registry (served
    /// at `/metrics`). Called once when the node starts.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}

    /// Consensus groups for conditional writes (`<service>.<name>`, see
    /// [`Context::conditional`]); each is one Raft group over the nodes
    /// hosting the service. Needs a data directory on the node.
    fn conditional_groups(&self) -> Vec<String> {
        Vec::new()
    }

    /// Serves one request.
    fn handle(
        &self,
        ctx: Context,
        request: Self::Request,
    ) -> impl Future<Output = Result<Self::Response, HandlerError>> + Send;
}

/// Per-service limits on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Calls running at once; beyond it calls wait in the queue.
    pub concurrency: usize,
    /// Calls waiting for a slot; beyond it a call is refused as overloaded
    /// (and the caller fails over) instead of queueing without bound.
    pub queue: usize,
    /// Largest encoded request.
    pub request_bytes_max: usize,
    /// How long an idempotency key is remembered; `None`: the service keeps
    /// no dedup table and refuses calls that carry a key (a service whose
    /// requests are all idempotent saves the table).
    pub idempotency_window: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            concurrency: 512,
            queue: 2048,
            request_bytes_max: 1024 * 1024,
            idempotency_window: Some(Duration::from_secs(600)),
        }
    }
}

/// Why a handler did not produce a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The service refuses the request; the reason goes to the caller.
    #[error("{0}")]
    Rejected(String),
    /// The store could not do what was asked (quorum not reached, …).
    #[error("{0}")]
    Unavailable(String),
    /// This node is behind what the caller already saw.
    #[error("{0}")]
    Behind(String),
    /// Not ready on this node and nothing was done: the caller may retry,
    /// here later or elsewhere.
    #[error("{0}")]
    NotReady(String),
}

impl HandlerError {
    /// A rejection with `reason` (usable with `map_err`).
    pub fn reject(reason: impl std::fmt::Display) -> Self {
        Self::Rejected(reason.to_string())
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Behind(_) => Self::Behind(e.to_string()),
            StoreError::NotReady(_) => Self::NotReady(e.to_string()),
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            StoreError::UnknownTable(_)
            | StoreError::BadKey(_)
            | StoreError::BadDocument(_)
            | StoreError::TableFull(_)
            | StoreError::BadQuery(_) => Self::Rejected(e.to_string()),
        }
    }
}

/// A service with its types erased, as the host keeps it.
pub trait DynService: Send + Sync + 'static {
    /// See [`Service::name`].
    fn name(&self) -> &str;
    /// See [`Service::tables`].
    fn tables(&self) -> Vec<TableSpec>;
    /// See [`Service::limits`].
    fn limits(&self) -> Limits;
    /// See [`Service::register_metrics`].
    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry);
    /// See [`Service::conditional_groups`].
    fn conditional_groups(&self) -> Vec<String>;
    /// Decodes, handles, encodes (postcard, or JSON when `json`).
    fn call(
        &self,
        ctx: Context,
        payload: Vec<u8>,
        json: bool,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallFault>>;
}

/// What went wrong in an erased call.
#[derive(Debug)]
pub enum CallFault {
    /// The payload is not this service's request type.
    Decode(String),
    /// The response could not be encoded.
    Encode(String),
    /// The handler's error.
    Handler(HandlerError),
}

struct Erased<S: Service>(Arc<S>);

impl<S: Service> DynService for Erased<S> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn tables(&self) -> Vec<TableSpec> {
        self.0.tables()
    }

    fn limits(&self) -> Limits {
        self.0.limits()
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.0.register_metrics(registry);
    }

    fn conditional_groups(&self) -> Vec<String> {
        self.0.conditional_groups()
    }

    fn call(
        &self,
        ctx: Context,
        payload: Vec<u8>,
        json: bool,
    ) -> BoxFuture<'static, Result<Vec<u8>, CallFault>> {
        let service = self.0.clone();
        Box::pin(async move {
            let request: S::Request = if json {
                serde_json::from_slice(&payload).map_err(|e| CallFault::Decode(e.to_string()))?
            } else {
                postcard::from_bytes(&payload).map_err(|e| CallFault::Decode(e.to_string()))?
            };
            let response = service
                .handle(ctx, request)
                .await
                .map_err(CallFault::Handler)?;
            if json {
                serde_json::to_vec(&response).map_err(|e| CallFault::Encode(e.to_string()))
            } else {
                postcard::to_stdvec(&response).map_err(|e| CallFault::Encode(e.to_string()))
            }
        })
    }
}

/// Wraps a service for registration on a node.
pub fn hosted<S: Service>(service: S) -> Arc<dyn DynService> {
    Arc::new(Erased(Arc::new(service)))
}

impl std::fmt::Debug for dyn DynService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}
