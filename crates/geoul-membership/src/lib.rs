//! geoul-membership: who is in the cluster, who is alive, what each node hosts.
//!
//! SWIM failure detection comes from [`foca`] (sans-IO, so the simulator drives the
//! very same code); this crate adds what geoul needs on top of it:
//! * identities that survive restarts correctly (`identity`),
//! * node metadata with per-service health (`meta`),
//! * `left` distinguished from `dead`, seed retries while isolated, Lifeguard-style
//!   local health awareness (`core`, `health`),
//! * one published view plus a `watch()` event stream (`view`, `runtime`).
//!
//! Architecture invariant: `core` does no IO and reads no clock; the shell passes
//! time and datagrams in.

pub mod config;
pub mod core;
pub mod health;
pub mod identity;
pub mod meta;
pub mod metrics;
pub mod runtime;
pub mod view;

pub use config::MembershipConfig;
pub use identity::NodeId;
pub use meta::{NodeMeta, ServiceHealth};
pub use metrics::MembershipMetrics;
pub use runtime::{Membership, MembershipError, MembershipOptions, Snapshot};
pub use view::{MemberInfo, MemberState, MembershipEvent, View};
