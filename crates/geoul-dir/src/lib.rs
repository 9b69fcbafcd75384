//! geoul's instance directory: one entry per live game instance, kept alive
//! by TTL renewals from its game server, searchable only while it is
//! confidently live — built only on the public [`geoul_service::Service`]
//! API, as a user would build it.
//!
//! Host it with `hosted(DirService::new(config)?)` (the `geoul` binary:
//! `services = ["instance-directory"]`), call it with [`DirClient`] over
//! `client.service("instance-directory")`.
//!
//! Modules: `api` (requests, answers, the typed client), `service` (what
//! each request does), `instance` (the entry's fields, bounds and
//! document), `tag` (typed tag values), `search` (queries checked against the fields), `seats` (exact
//! reservations on the service's consensus group), `watch` (subscriptions
//! to a filter, fed by the node's change feed), `config`,
//! `metrics`.

pub mod api;
pub mod config;
pub mod instance;
pub mod metrics;
pub mod search;
pub mod seats;
pub mod service;
pub mod tag;
pub mod watch;

pub use api::{
    DirClient, DirDenied, DirError, DirRequest, DirResponse, SearchPage, Watch, WatchUpdate, DIR,
};
pub use config::{DirConfig, INSTANCES};
pub use instance::{Instance, InstanceSpec, InstanceState, InstanceUpdate, TagValue};
pub use service::DirService;
