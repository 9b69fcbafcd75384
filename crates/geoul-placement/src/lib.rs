//! geoul-placement: which nodes hold which part of a table.
//!
//! Every table's keyspace is split into [`SLOT_COUNT`] slots by a stable hash of
//! the key ([`slot_of`]). A slot's replicas are chosen among the candidates — the
//! live nodes hosting the table's service — by rendezvous hashing ([`replicas`]),
//! so every node computes the same owners from the same view and a membership
//! change moves only the slots of the node that joined or left. [`PlacementMap`]
//! holds the answer for all slots of one view; [`PlacementMap::diff`] lists what a
//! view change gains and loses per node.
//!
//! What this crate owns: the slot count, the key → slot hash and the (slot, node)
//! weight — all three part of the on-disk and wire contract, pinned by tests — and
//! the replica sets derived from them.
//!
//! What it deliberately does not own: membership (callers pass node names; this
//! crate does not depend on `geoul-membership`), liveness or health filtering,
//! range placement for matchmaking, leases, and moving data.
//!
//! Architecture invariant: pure functions of their arguments. No IO, no clock, no
//! randomness, no tokio; the same inputs give the same outputs on every node,
//! platform and release.

mod diff;
mod error;
mod map;
pub mod rendezvous;
mod replication;
mod slot;

pub use diff::{PlacementDiff, SlotChanges};
pub use error::PlacementError;
pub use map::PlacementMap;
pub use rendezvous::{replicas, weight, CANDIDATES_MAX, NODE_HASH_SEED, WEIGHT_HASH_SEED};
pub use replication::Replication;
pub use slot::{slot_of, Slot, SLOT_COUNT, SLOT_HASH_SEED};
