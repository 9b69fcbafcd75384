//! geoul-client: reach geoul services by name.
//!
//! * `wire` — the client protocol (calls, replies, typed failures, topology);
//! * `routes` — where a call goes (replicas of the key's slot first);
//! * `session` — what a session has seen (read-your-writes, monotonic reads);
//! * `service_ref` — [`ServiceRef`]: `call`, `call_idempotent`, `call_any`,
//!   `send`, `broadcast`, failover and deadlines, over a [`Backend`];
//! * `client` — [`Client`]: seeds, topology refresh, refs for external programs;
//! * `query` — running a distributed query through a coordinating node.
//!
//! ```no_run
//! # async fn demo(secret: geoul_transport::ClusterSecret) -> Result<(), Box<dyn std::error::Error>> {
//! use geoul_client::{Client, ClientOptions};
//! let seeds = ["127.0.0.1:7001".parse()?];
//! let client = Client::connect(&seeds, &secret, ClientOptions::default()).await?;
//! let kv = client.service("kv");
//! # let request = ();
//! let answer: () = kv.call_idempotent(b"player:42", &request).await?;
//! # Ok(()) }
//! ```
//!
//! The same [`ServiceRef`] type is what a service uses inside a node to call
//! another service.

pub mod client;
pub mod query;
pub mod routes;
pub mod service_ref;
pub mod session;
pub mod wire;

pub use client::{Client, ClientOptions, ConnectError};
/// The query language (expressions, order keys, cursors), for building
/// queries without text.
pub use geoul_query as query_lang;
pub use geoul_query::{parse_query, parse_search, Query};
pub use routes::{RouteError, Routes, Target};
pub use service_ref::{Backend, CallError, CallOptions, ServiceRef, DEFAULT_TIMEOUT};
pub use session::Session;
pub use wire::{Failure, QueryAnswer, Row, Stamp, Topology, Touch};
