//! The one error type of this crate.
//!
//! Every error here is a caller's input error (a configuration value or a number
//! read from the wire); placement itself cannot fail once its inputs are valid.

use crate::{CANDIDATES_MAX, SLOT_COUNT};

/// Why a placement input was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// `Replication::Factor(0)`: a table whose slots have no replica cannot store
    /// anything.
    #[error("replication factor must be at least 1 (got 0)")]
    ZeroReplicationFactor,

    /// More distinct candidate nodes than [`CANDIDATES_MAX`].
    #[error("{count} candidate nodes exceed the limit of {max}", max = CANDIDATES_MAX)]
    TooManyCandidates {
        /// Number of distinct candidates given.
        count: usize,
    },

    /// A slot number outside `0..SLOT_COUNT` (for example read from the wire).
    #[error("slot {value} is out of range (there are {count} slots)", count = SLOT_COUNT)]
    SlotOutOfRange {
        /// The rejected number.
        value: u16,
    },
}
