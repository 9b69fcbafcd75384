//! The replica sets of every slot of a table, for one membership view.
//!
//! This module owns [`PlacementMap`]: computed once when the view changes, then
//! read on every request (which replicas hold this key's slot?) and compared with
//! the previous map ([`PlacementMap::diff`]) to start syncs and handoffs.
//!
//! It does not watch membership, start syncs or move data; it only answers
//! questions about one view.

use std::fmt;

use crate::diff::PlacementDiff;
use crate::rendezvous::{self, NodeIndex};
use crate::{PlacementError, Replication, Slot, SLOT_COUNT};

/// The replicas of all [`SLOT_COUNT`] slots of a table for one set of candidates.
///
/// Stored compactly: the distinct node names once, sorted, and per slot a row of
/// `replicas_per_slot` `u16` indices into them, best first. With `Factor(3)` that
/// is 4096 × 3 × 2 bytes = 24 KiB whatever the cluster size.
///
/// Cost of [`compute`](Self::compute): `SLOT_COUNT × N` weight hashes (one 10-byte
/// XXH3 each, ~10 ns) plus a partial selection of the best k per slot. Measured
/// once on the 2-core development machine (release build, best of 50): N = 10 with
/// `Factor(3)` 0.6 ms; N = 100 with `Factor(3)` 4.6 ms, with `All` 8.8 ms; at
/// [`crate::CANDIDATES_MAX`] (1024) 43 ms with `Factor(3)`, 0.1 s with `All`.
/// Compute it once per membership view, never per request; an async caller with
/// large views should compute it off the reactor thread.
///
/// ```
/// use geoul_placement::{slot_of, PlacementMap, Replication};
/// let view = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
/// let map = PlacementMap::compute(&view, Replication::Factor(2))?;
/// let slot = slot_of(b"player:42");
/// let owners: Vec<&str> = map.replicas(slot).collect();
/// assert_eq!(owners.len(), 2);
/// assert_eq!(map.preferred(slot), Some(owners[0]));
/// # Ok::<(), geoul_placement::PlacementError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PlacementMap {
    replication: Replication,
    /// Distinct candidate names in ascending order; a [`NodeIndex`] points here.
    nodes: Vec<String>,
    /// Length of each slot's row in `rows`.
    per_slot: usize,
    /// `SLOT_COUNT` rows of `per_slot` indices, slot-major, best first.
    rows: Vec<NodeIndex>,
}

impl PlacementMap {
    /// Computes every slot's replicas among `candidates` (the live nodes hosting
    /// the table's service). Same result on every node for the same set of
    /// candidates: their order and duplicates do not matter.
    ///
    /// Errors: `Factor(0)`, or more than [`crate::CANDIDATES_MAX`] distinct
    /// candidates.
    pub fn compute<S: AsRef<str>>(
        candidates: &[S],
        replication: Replication,
    ) -> Result<Self, PlacementError> {
        let replication = replication.validate()?;
        let nodes = rendezvous::distinct_sorted(candidates)?;
        let per_slot = replication.replicas_per_slot(nodes.len());
        let node_hashes: Vec<u64> = nodes
            .iter()
            .map(|name| rendezvous::node_hash(name))
            .collect();
        let mut rows = Vec::with_capacity(usize::from(SLOT_COUNT) * per_slot);
        let mut ranking = Vec::with_capacity(nodes.len());
        for slot in Slot::all() {
            rendezvous::rank(slot, &node_hashes, per_slot, &mut ranking);
            rows.extend(ranking.iter().map(|&(_, index)| index));
        }
        assert_eq!(rows.len(), usize::from(SLOT_COUNT) * per_slot);
        Ok(PlacementMap {
            replication,
            nodes: nodes.into_iter().map(str::to_owned).collect(),
            per_slot,
            rows,
        })
    }

    /// The setting this map was computed with.
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// Number of replicas every slot has in this map (the same for all slots).
    pub fn replicas_per_slot(&self) -> usize {
        self.per_slot
    }

    /// The distinct candidate nodes, in ascending name order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.nodes.iter().map(String::as_str)
    }

    /// The replicas of `slot`, best first (the first is the preferred replica).
    pub fn replicas(&self, slot: Slot) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.row(slot)
            .iter()
            .map(|&index| self.nodes[usize::from(index)].as_str())
    }

    /// The slot's preferred replica (the highest weight), if it has any replica.
    pub fn preferred(&self, slot: Slot) -> Option<&str> {
        self.replicas(slot).next()
    }

    /// Whether `node` is one of the replicas of `slot`.
    pub fn holds(&self, slot: Slot, node: &str) -> bool {
        self.index_of(node)
            .is_some_and(|index| self.row(slot).contains(&index))
    }

    /// The slots `node` is a replica of, ascending; empty if `node` is not a
    /// candidate in this map.
    pub fn slots_of<'a>(&'a self, node: &str) -> impl Iterator<Item = Slot> + 'a {
        let index = self.index_of(node);
        Slot::all().filter(move |&slot| index.is_some_and(|i| self.row(slot).contains(&i)))
    }

    /// What changes from `self` (the old view) to `other` (the new view): per
    /// node, the slots it gains and the slots it loses. Nodes whose slots do not
    /// change are absent; a node only in `other` gains all its slots, a node only
    /// in `self` loses all of them.
    pub fn diff(&self, other: &PlacementMap) -> PlacementDiff {
        PlacementDiff::between(self, other)
    }

    /// The row of node indices of `slot`, best first.
    pub(crate) fn row(&self, slot: Slot) -> &[NodeIndex] {
        let start = slot.index() * self.per_slot;
        &self.rows[start..start + self.per_slot]
    }

    /// The sorted node-name table that [`row`](Self::row) indexes into.
    pub(crate) fn node_table(&self) -> &[String] {
        &self.nodes
    }

    fn index_of(&self, node: &str) -> Option<NodeIndex> {
        let position = self
            .nodes
            .binary_search_by(|name| name.as_str().cmp(node))
            .ok()?;
        // In range: the table holds at most CANDIDATES_MAX names.
        Some(position as NodeIndex)
    }
}

impl fmt::Debug for PlacementMap {
    /// A summary: the 4096 rows would drown any log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlacementMap")
            .field("replication", &self.replication)
            .field("nodes", &self.nodes)
            .field("replicas_per_slot", &self.per_slot)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicas;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn rows_match_the_single_slot_function() {
        let view = names(7);
        for replication in [
            Replication::Factor(1),
            Replication::Factor(3),
            Replication::All,
        ] {
            let map = PlacementMap::compute(&view, replication).expect("valid");
            for slot in Slot::all() {
                let from_map: Vec<&str> = map.replicas(slot).collect();
                let direct = replicas(slot, &view, replication).expect("valid");
                assert_eq!(from_map, direct, "slot {slot} {replication:?}");
            }
        }
    }

    #[test]
    fn slots_of_and_holds_agree_with_rows() {
        let view = names(5);
        let map = PlacementMap::compute(&view, Replication::Factor(2)).expect("valid");
        let mut total = 0;
        for node in map.nodes() {
            for slot in map.slots_of(node) {
                assert!(map.holds(slot, node));
                assert!(map.replicas(slot).any(|r| r == node));
                total += 1;
            }
        }
        assert_eq!(total, usize::from(SLOT_COUNT) * 2);
        assert_eq!(map.slots_of("stranger").count(), 0);
        assert!(!map.holds(Slot::all().next().expect("slot 0"), "stranger"));
    }

    #[test]
    fn empty_view_has_no_replicas() {
        let map = PlacementMap::compute::<String>(&[], Replication::Factor(3)).expect("valid");
        assert_eq!(map.replicas_per_slot(), 0);
        assert_eq!(map.nodes().len(), 0);
        assert!(Slot::all().all(|slot| map.preferred(slot).is_none()));
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        assert_eq!(
            PlacementMap::compute(&names(3), Replication::Factor(0)),
            Err(PlacementError::ZeroReplicationFactor)
        );
        let too_many = names(crate::CANDIDATES_MAX + 1);
        assert_eq!(
            PlacementMap::compute(&too_many, Replication::Factor(1)),
            Err(PlacementError::TooManyCandidates {
                count: crate::CANDIDATES_MAX + 1
            })
        );
    }

    #[test]
    fn debug_is_a_summary() {
        let map = PlacementMap::compute(&names(2), Replication::All).expect("valid");
        let text = format!("{map:?}");
        assert!(text.contains("node-0") && text.len() < 200, "{text}");
    }
}
