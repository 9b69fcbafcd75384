//! geoul's auth service: accounts, sessions valid on every node, refresh
//! rotation with reuse detection, revocation, login rate limits — built only
//! on the public [`geoul_service::Service`] API, as a user would build it.
//!
//! Host it with `hosted(AuthService::new(config)?)` (the `geoul` binary:
//! `services = ["kv", "auth"]`), call it with [`AuthClient`] over
//! `client.service("auth")`.
//!
//! Modules: `api` (requests, answers, the typed client), `service` (what
//! each request does), `records` (tables and stored documents), `password`
//! (argon2id), `token` (CSPRNG tokens, stored hashed), `names` (username and
//! password rules), `limits` (rate limits), `locks`
//! (exactly-once locks), `tickets` (single-use server
//! tickets on the framework's conditional writes), `config`, `metrics`.

pub mod api;
pub mod config;
pub mod limits;
pub mod locks;
pub mod metrics;
pub mod names;
pub mod password;
pub mod records;
pub mod service;
pub mod tickets;
pub mod token;

pub use api::{
    AuthClient, AuthError, AuthRequest, AuthResponse, Denied, SessionInfo, Tokens, AUTH,
};
pub use config::AuthConfig;
pub use password::HashParams;
pub use service::AuthService;
