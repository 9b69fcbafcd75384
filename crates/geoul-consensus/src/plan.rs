//! The leader's membership decision, as a pure function: given what it sees, which
//! one change comes next.
//!
//! Owns: the order and the conditions of the rules in the crate doc ("Changes").
//! Does not own: gathering the view (`reconcile` says `Hello` and reads openraft's
//! metrics) or carrying the change out (openraft). No IO, no clock, no async.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::NodeId;

/// Everything the decision depends on.
pub(crate) struct View<'a> {
    /// The leader itself.
    pub me: NodeId,
    /// Addresses of the live nodes that host the group.
    pub desired: &'a BTreeSet<&'a str>,
    pub voters: &'a BTreeSet<NodeId>,
    /// Every member (voters and learners) and its address.
    pub nodes: &'a BTreeMap<NodeId, String>,
    /// Address → the id that answered `Hello` there (addresses that answered only).
    pub answered: &'a BTreeMap<String, NodeId>,
    /// Member → highest log index known replicated to it.
    pub matched: &'a BTreeMap<NodeId, u64>,
    pub last_log_index: Option<u64>,
    pub learner_lag_max: u64,
    /// Members absent from `desired` for longer than `remove_after_ms`.
    pub absent_too_long: &'a BTreeSet<NodeId>,
}

/// One membership step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Remove {
        id: NodeId,
        addr: String,
        voter: bool,
        replaced: bool,
    },
    AddLearner {
        id: NodeId,
        addr: String,
    },
    Promote {
        id: NodeId,
    },
}

/// The next change, or `None` when the membership matches the view.
pub(crate) fn next_change(v: &View<'_>) -> Option<Change> {
    replaced(v)
        .or_else(|| missing(v))
        .or_else(|| caught_up(v))
        .or_else(|| absent(v))
}

/// Rule 1: a member whose address answers with another id was wiped and restarted:
/// the old id is gone for good and only counts against the quorum.
fn replaced(v: &View<'_>) -> Option<Change> {
    v.nodes.iter().find_map(|(id, addr)| {
        let answered = v.answered.get(addr)?;
        (*id != v.me && answered != id).then(|| Change::Remove {
            id: *id,
            addr: addr.clone(),
            voter: v.voters.contains(id),
            replaced: true,
        })
    })
}

/// Rule 2: a desired node that answered and is not a member joins as a learner.
fn missing(v: &View<'_>) -> Option<Change> {
    v.answered.iter().find_map(|(addr, id)| {
        let wanted = v.desired.contains(addr.as_str()) && !v.nodes.contains_key(id);
        wanted.then(|| Change::AddLearner {
            id: *id,
            addr: addr.clone(),
        })
    })
}

/// Rule 3: a desired learner within `learner_lag_max` of the leader's log is promoted.
fn caught_up(v: &View<'_>) -> Option<Change> {
    let last = v.last_log_index?;
    v.nodes.iter().find_map(|(id, addr)| {
        let learner = !v.voters.contains(id) && v.desired.contains(addr.as_str());
        let matched = v.matched.get(id)?;
        (learner && last.saturating_sub(*matched) <= v.learner_lag_max)
            .then_some(Change::Promote { id: *id })
    })
}

/// Rule 4: members absent too long are removed: voters first (they weigh on the
/// quorum), never the leader, never the last voter.
fn absent(v: &View<'_>) -> Option<Change> {
    let removable = |voter: bool| {
        v.nodes.iter().find_map(|(id, addr)| {
            let ok = v.voters.contains(id) == voter
                && v.absent_too_long.contains(id)
                && *id != v.me
                && (!voter || v.voters.len() > 1);
            ok.then(|| Change::Remove {
                id: *id,
                addr: addr.clone(),
                voter,
                replaced: false,
            })
        })
    };
    removable(true).or_else(|| removable(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        desired: BTreeSet<&'static str>,
        voters: BTreeSet<NodeId>,
        nodes: BTreeMap<NodeId, String>,
        answered: BTreeMap<String, NodeId>,
        matched: BTreeMap<NodeId, u64>,
        absent: BTreeSet<NodeId>,
    }

    /// Leader 1 at "a"; voters 1, 2 ("b"), 3 ("c"); everyone desired and answering.
    fn fixture() -> Fixture {
        Fixture {
            desired: BTreeSet::from(["a", "b", "c"]),
            voters: BTreeSet::from([1, 2, 3]),
            nodes: BTreeMap::from([(1, "a".into()), (2, "b".into()), (3, "c".into())]),
            answered: BTreeMap::from([("b".into(), 2), ("c".into(), 3)]),
            matched: BTreeMap::from([(2, 10), (3, 10)]),
            absent: BTreeSet::new(),
        }
    }

    fn plan(f: &Fixture) -> Option<Change> {
        next_change(&View {
            me: 1,
            desired: &f.desired,
            voters: &f.voters,
            nodes: &f.nodes,
            answered: &f.answered,
            matched: &f.matched,
            last_log_index: Some(10),
            learner_lag_max: 2,
            absent_too_long: &f.absent,
        })
    }

    #[test]
    fn a_matching_membership_needs_nothing() {
        assert_eq!(plan(&fixture()), None);
    }

    #[test]
    fn a_wiped_node_is_removed_then_added_then_promoted() {
        let mut f = fixture();
        f.answered.insert("c".into(), 9);
        let removed = Change::Remove {
            id: 3,
            addr: "c".into(),
            voter: true,
            replaced: true,
        };
        assert_eq!(plan(&f), Some(removed));
        f.voters.remove(&3);
        f.nodes.remove(&3);
        assert_eq!(
            plan(&f),
            Some(Change::AddLearner {
                id: 9,
                addr: "c".into()
            })
        );
        f.nodes.insert(9, "c".into());
        f.matched.insert(9, 5);
        assert_eq!(plan(&f), None, "lagging by 5 > 2: not yet");
        f.matched.insert(9, 8);
        assert_eq!(plan(&f), Some(Change::Promote { id: 9 }));
    }

    #[test]
    fn absent_members_go_voters_first_never_the_leader_or_the_last_voter() {
        let mut f = fixture();
        f.nodes.insert(4, "d".into());
        f.absent = BTreeSet::from([1, 3, 4]);
        let voter = Change::Remove {
            id: 3,
            addr: "c".into(),
            voter: true,
            replaced: false,
        };
        assert_eq!(plan(&f), Some(voter));
        f.absent = BTreeSet::from([1, 4]);
        let learner = Change::Remove {
            id: 4,
            addr: "d".into(),
            voter: false,
            replaced: false,
        };
        assert_eq!(plan(&f), Some(learner));
        f.absent = BTreeSet::from([1]);
        assert_eq!(plan(&f), None, "the leader never removes itself");
    }

    #[test]
    fn undesired_or_silent_nodes_are_not_added() {
        let mut f = fixture();
        f.answered.insert("x".into(), 7);
        assert_eq!(plan(&f), None, "answered but not desired");
        f.desired.insert("y");
        assert_eq!(plan(&f), None, "desired but silent");
    }
}
