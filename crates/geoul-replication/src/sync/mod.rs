//! Slot sync states, full sync, catch-up, anti-entropy, handoff and tombstone
//! GC coordination (DESIGN.md §5): a new, restarted or returning node is brought
//! fully in sync before it answers for a slot.
//!
//! * `state` — per-slot states (`syncing`, `synced`, `leaving`, …) and progress;
//! * `protocol` — the requests replicas ask each other, and the source side;
//! * `reconcile` — one slot against one peer: digests, then buckets, then
//!   version lists, moving only what differs;
//! * `manager` — placement-driven transitions and the slot sync scheduler;
//! * `anti_entropy` — periodic repair, handoff completion, wipe after a long gap.

pub mod anti_entropy;
pub mod config;
pub mod manager;
pub mod metrics;
pub mod protocol;
pub mod reconcile;
pub mod state;

pub use config::SyncConfig;
pub use manager::SyncManager;
pub use metrics::SyncMetrics;
pub use protocol::{SlotDigest, SyncRequest, SyncResponse, SyncServeError, SyncServer};
pub use reconcile::{Mode, Reconcile, ReconcileError, Transfer};
pub use state::{SlotState, SlotStates, StateCounts, SyncProgress};
