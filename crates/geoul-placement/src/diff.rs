//! What a membership change does to placement: slots gained and lost per node.
//!
//! This module owns [`PlacementDiff`], the comparison of two [`PlacementMap`]s.
//! Replication uses it to know which slots a node must now fetch (gained: start a
//! sync, copying from a replica of the old view) and which it may hand off and
//! drop (lost). It does not decide when to do either; it only lists.

use std::collections::BTreeMap;

use crate::rendezvous::NodeIndex;
use crate::{PlacementMap, Slot};

/// The slots one node gains and loses between two views, each ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotChanges {
    gained: Vec<Slot>,
    lost: Vec<Slot>,
}

impl SlotChanges {
    /// Slots the node holds in the new view but not in the old one, ascending.
    pub fn gained(&self) -> &[Slot] {
        &self.gained
    }

    /// Slots the node held in the old view but not in the new one, ascending.
    pub fn lost(&self) -> &[Slot] {
        &self.lost
    }
}

/// Per node, the slots gained and lost from an old [`PlacementMap`] to a new one
/// (see [`PlacementMap::diff`]). Nodes with no change are absent.
///
/// A change of rank within a slot's replica set (for example a new preferred
/// replica) is not a gain or a loss and is not listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementDiff {
    nodes: BTreeMap<String, SlotChanges>,
}

impl PlacementDiff {
    /// True when no node gains or loses any slot.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes that gain or lose slots, in ascending name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &SlotChanges)> + '_ {
        self.nodes
            .iter()
            .map(|(name, changes)| (name.as_str(), changes))
    }

    /// The changes of `node`, or `None` if it neither gains nor loses a slot.
    pub fn node(&self, node: &str) -> Option<&SlotChanges> {
        self.nodes.get(node)
    }

    /// Number of (slot, node) assignments that appear in the new view only. With
    /// the same number of replicas per slot in both views it equals the number
    /// that disappear, and it is the amount of slot data that must be copied.
    pub fn gained_total(&self) -> usize {
        self.nodes
            .values()
            .map(|changes| changes.gained.len())
            .sum()
    }

    /// Number of (slot, node) assignments that appear in the old view only.
    pub fn lost_total(&self) -> usize {
        self.nodes.values().map(|changes| changes.lost.len()).sum()
    }

    /// Compares `old` with `new`, slot by slot, in `O(SLOT_COUNT × k log k)`.
    pub(crate) fn between(old: &PlacementMap, new: &PlacementMap) -> PlacementDiff {
        let union = NameUnion::of(old.node_table(), new.node_table());
        let mut changes = vec![SlotChanges::default(); union.names.len()];
        let mut before = Vec::with_capacity(old.replicas_per_slot());
        let mut after = Vec::with_capacity(new.replicas_per_slot());
        for slot in Slot::all() {
            union.sorted_row(old.row(slot), &union.from_old, &mut before);
            union.sorted_row(new.row(slot), &union.from_new, &mut after);
            for_each_difference(&before, &after, |index| changes[index].lost.push(slot));
            for_each_difference(&after, &before, |index| changes[index].gained.push(slot));
        }
        let nodes = union
            .names
            .into_iter()
            .zip(changes)
            .filter(|(_, change)| !change.gained.is_empty() || !change.lost.is_empty())
            .map(|(name, change)| (name.to_owned(), change))
            .collect();
        PlacementDiff { nodes }
    }
}

/// The union of two sorted name tables, with each table's indices translated.
struct NameUnion<'a> {
    /// Every name of either table, ascending.
    names: Vec<&'a str>,
    /// Old-table index → union index.
    from_old: Vec<usize>,
    /// New-table index → union index.
    from_new: Vec<usize>,
}

impl<'a> NameUnion<'a> {
    fn of(old: &'a [String], new: &'a [String]) -> Self {
        let mut names: Vec<&str> = old.iter().chain(new).map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let position = |name: &String| {
            names
                .binary_search(&name.as_str())
                .expect("every name of either table is in their union")
        };
        let from_old = old.iter().map(position).collect();
        let from_new = new.iter().map(position).collect();
        NameUnion {
            names,
            from_old,
            from_new,
        }
    }

    /// `row` translated to union indices, sorted ascending, into `out`.
    fn sorted_row(&self, row: &[NodeIndex], translate: &[usize], out: &mut Vec<usize>) {
        out.clear();
        out.extend(row.iter().map(|&index| translate[usize::from(index)]));
        out.sort_unstable();
    }
}

/// Calls `found` with every element of sorted `left` absent from sorted `right`.
fn for_each_difference(left: &[usize], right: &[usize], mut found: impl FnMut(usize)) {
    let mut rest = right;
    for &value in left {
        while let Some((&head, tail)) = rest.split_first() {
            if head >= value {
                break;
            }
            rest = tail;
        }
        if rest.first() != Some(&value) {
            found(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Replication;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn difference_of_sorted_lists() {
        let mut out = Vec::new();
        for_each_difference(&[1, 3, 5, 7], &[0, 3, 4, 7, 9], |v| out.push(v));
        assert_eq!(out, vec![1, 5]);
        out.clear();
        for_each_difference(&[1, 2], &[], |v| out.push(v));
        assert_eq!(out, vec![1, 2]);
        out.clear();
        for_each_difference(&[], &[1, 2], |v| out.push(v));
        assert!(out.is_empty());
    }

    #[test]
    fn same_view_has_no_diff() {
        let view = names(&["a", "b", "c"]);
        let map = PlacementMap::compute(&view, Replication::Factor(2)).expect("valid");
        let again =
            PlacementMap::compute(&names(&["c", "a", "b"]), Replication::Factor(2)).expect("valid");
        assert!(map.diff(&again).is_empty());
    }

    #[test]
    fn from_empty_every_node_gains_all_its_slots() {
        let empty = PlacementMap::compute::<String>(&[], Replication::Factor(2)).expect("valid");
        let map =
            PlacementMap::compute(&names(&["a", "b", "c"]), Replication::Factor(2)).expect("valid");
        let diff = empty.diff(&map);
        for node in map.nodes() {
            let expected: Vec<Slot> = map.slots_of(node).collect();
            let changes = diff.node(node).expect("every node gains");
            assert_eq!(changes.gained(), &expected[..]);
            assert!(changes.lost().is_empty());
        }
        let back = map.diff(&empty);
        assert_eq!(back.lost_total(), diff.gained_total());
        assert_eq!(back.gained_total(), 0);
    }

    #[test]
    fn diff_agrees_with_slot_membership() {
        let old = PlacementMap::compute(&names(&["a", "b", "c", "d"]), Replication::Factor(2))
            .expect("valid");
        let new = PlacementMap::compute(&names(&["b", "c", "d", "e"]), Replication::Factor(2))
            .expect("valid");
        let diff = old.diff(&new);
        for (node, changes) in diff.iter() {
            for &slot in changes.gained() {
                assert!(!old.holds(slot, node) && new.holds(slot, node));
            }
            for &slot in changes.lost() {
                assert!(old.holds(slot, node) && !new.holds(slot, node));
            }
        }
        for node in ["a", "b", "c", "d", "e"] {
            let gained = new.slots_of(node).filter(|&s| !old.holds(s, node)).count();
            let lost = old.slots_of(node).filter(|&s| !new.holds(s, node)).count();
            let listed = diff.node(node).cloned().unwrap_or_default();
            assert_eq!(listed.gained().len(), gained, "{node}");
            assert_eq!(listed.lost().len(), lost, "{node}");
        }
        assert_eq!(diff.gained_total(), diff.lost_total());
        assert_eq!(diff.node("a").map(|c| c.gained().len()), Some(0));
    }
}
