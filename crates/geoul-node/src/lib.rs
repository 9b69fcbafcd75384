//! geoul-node: one geoul node — configuration, wiring of membership and transport,
//! and the admin HTTP API.
//!
//! Architecture invariant: [`node::Node`] is generic over [`geoul_transport::Net`]
//! and never touches HTTP, signals or the process; the binary and the simulator
//! both drive it.

pub mod admin;
pub mod builtin;
pub mod config;
pub mod config_sync;
pub mod consensus;
pub mod contact;
pub mod daemon;
pub mod data_dir;
pub mod kv;
pub mod link;
pub mod metrics;
pub mod node;
pub mod query_json;
pub mod rpc;
pub mod status;
pub mod topology;

pub use config::{ConfigError, NodeConfig, RawConfig};
pub use node::{Node, NodeError, NodeParams};
pub use status::{MemberStatus, StatusReport};
