//! geoul-service: write replicated services.
//!
//! * `service` — the [`Service`] trait users implement, [`Limits`],
//!   [`HandlerError`];
//! * `context` — what a handler gets: its tables ([`Context::get`],
//!   [`Context::put`], …) with session floors, the caller, the deadline, and
//!   [`ServiceRef`](geoul_client::ServiceRef)s to other services;
//! * `host` — [`ServiceHost`]: dispatch, limits, contained panics,
//!   idempotency keys, metrics;
//! * `idempotency` — the per-service dedup table;
//! * `access` — [`StoreAccess`] over a node's replicator;
//! * `conditional` — create-if-absent, compare-and-set and take on a
//!   consensus group ([`Context::conditional`]);
//! * `feed` — [`ChangeFeed`]: the changes a node applies to a table
//!   ([`Context::changes`]), for per-node state such as subscriptions.
//!
//! Handlers never replicate: they produce writes; the framework versions,
//! applies and ships them (results, not requests).

pub mod access;
pub mod conditional;
pub mod context;
pub mod feed;
pub mod host;
pub mod idempotency;
pub mod metrics;
pub mod query;
pub mod service;

pub use access::ReplicatorAccess;
pub use conditional::{CondEntry, CondOp, CondOutcome, ConditionalAccess, NoGroups};
pub use context::{
    Caller, Context, PutOptions, Record, Scanned, StoreAccess, StoreError, TouchOp, WriteOp,
    Written,
};
pub use feed::{ChangeFeed, FeedEvent};
pub use geoul_client::{CallError, CallOptions, ServiceRef};
pub use geoul_replication::ReadLevel;
pub use host::{table_specs, HostError, ServiceHost};
pub use metrics::ServiceMetrics;
pub use service::{hosted, DynService, HandlerError, Limits, Service};
