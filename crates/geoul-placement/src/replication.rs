//! How many replicas each slot of a table has.
//!
//! This module owns [`Replication`], the per-table setting, and its validation. It
//! does not choose the replicas (see [`crate::rendezvous`]).

use serde::{Deserialize, Serialize};

use crate::PlacementError;

/// How many nodes hold each slot of a table.
///
/// Serialized externally tagged: `"All"` or `{"Factor": 3}`. Deserializing
/// `Factor(0)` fails; a value built in code is checked by [`Replication::validate`]
/// (placement functions call it and return [`PlacementError::ZeroReplicationFactor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ReplicationRepr")]
pub enum Replication {
    /// Every live node hosting the table's service holds every slot (small,
    /// read-mostly tables such as configuration).
    All,
    /// Each slot is held by this many nodes (fewer while fewer are live). Must be ≥ 1.
    Factor(u8),
}

impl Replication {
    /// `self` if it is valid, else why not (`Factor(0)`).
    ///
    /// ```
    /// use geoul_placement::Replication;
    /// assert!(Replication::Factor(3).validate().is_ok());
    /// assert!(Replication::Factor(0).validate().is_err());
    /// ```
    pub fn validate(self) -> Result<Self, PlacementError> {
        match self {
            Replication::Factor(0) => Err(PlacementError::ZeroReplicationFactor),
            Replication::All | Replication::Factor(_) => Ok(self),
        }
    }

    /// Number of replicas each slot gets when `candidates` distinct nodes are
    /// eligible: `candidates` for `All`, else `min(factor, candidates)`.
    pub fn replicas_per_slot(self, candidates: usize) -> usize {
        match self {
            Replication::All => candidates,
            Replication::Factor(factor) => candidates.min(usize::from(factor)),
        }
    }
}

/// The serde shape of [`Replication`], unchecked; converted with validation.
#[derive(Deserialize)]
#[serde(rename = "Replication")]
enum ReplicationRepr {
    All,
    Factor(u8),
}

impl TryFrom<ReplicationRepr> for Replication {
    type Error = PlacementError;

    fn try_from(repr: ReplicationRepr) -> Result<Self, Self::Error> {
        match repr {
            ReplicationRepr::All => Replication::All,
            ReplicationRepr::Factor(factor) => Replication::Factor(factor),
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_zero_is_invalid() {
        assert_eq!(
            Replication::Factor(0).validate(),
            Err(PlacementError::ZeroReplicationFactor)
        );
        assert_eq!(
            Replication::Factor(1).validate(),
            Ok(Replication::Factor(1))
        );
        assert_eq!(Replication::All.validate(), Ok(Replication::All));
    }

    #[test]
    fn replicas_per_slot_is_capped_by_candidates() {
        assert_eq!(Replication::Factor(3).replicas_per_slot(2), 2);
        assert_eq!(Replication::Factor(3).replicas_per_slot(10), 3);
        assert_eq!(Replication::All.replicas_per_slot(10), 10);
        assert_eq!(Replication::All.replicas_per_slot(0), 0);
    }

    #[test]
    fn serde_shape_and_validation() {
        let all = serde_json::to_string(&Replication::All).expect("serialize");
        let three = serde_json::to_string(&Replication::Factor(3)).expect("serialize");
        assert_eq!(all, r#""All""#);
        assert_eq!(three, r#"{"Factor":3}"#);
        let back: Replication = serde_json::from_str(&three).expect("deserialize");
        assert_eq!(back, Replication::Factor(3));
        let back: Replication = serde_json::from_str(&all).expect("deserialize");
        assert_eq!(back, Replication::All);
        let zero = serde_json::from_str::<Replication>(r#"{"Factor":0}"#);
        assert!(zero.is_err(), "Factor(0) must not deserialize: {zero:?}");
    }
}
