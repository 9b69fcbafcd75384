//! The membership view every layer reacts to: one record per node name.
//!
//! Owns: [`MemberState`], [`MemberInfo`], [`MembershipEvent`] and the diff between
//! two views that produces events. Does not own: how states are decided (foca) or
//! how events are delivered (the shell's broadcast channel).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::meta::NodeMeta;

/// A member's state as operators and routing see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed a probe; has `suspicion_timeout` to refute. Routing avoids it.
    Suspect,
    /// Declared failed by the detector.
    Dead,
    /// Left gracefully.
    Left,
}

impl MemberState {
    /// Lowercase word used in JSON, tables and metrics labels.
    pub fn word(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Dead => "dead",
            Self::Left => "left",
        }
    }

    /// All states, for metrics that must report zeros too.
    pub const ALL: [MemberState; 4] = [Self::Alive, Self::Suspect, Self::Dead, Self::Left];
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// What one node knows about one member (itself included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// The newest known life of this node name.
    pub id: NodeId,
    /// Its state.
    pub state: MemberState,
    /// Generation, rejoins and refutations folded into one growing number.
    pub incarnation: u64,
    /// Metadata of this life, once it has been gossiped to us.
    pub meta: Option<NodeMeta>,
    /// Whether this record is the observing node itself.
    pub is_self: bool,
}

/// A change in the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member appeared or changed state or life (restart, rejoin).
    StateChanged {
        /// The member after the change.
        member: MemberInfo,
        /// Its previous state, `None` when first seen.
        previous: Option<MemberState>,
    },
    /// A member's metadata (services, health) changed.
    MetaChanged {
        /// The member after the change.
        member: MemberInfo,
    },
    /// The detector forgot a long-dead member.
    Forgotten {
        /// The last known identity.
        id: NodeId,
    },
}

/// The whole view: name → member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// Members by name, the observing node included.
    pub members: BTreeMap<String, MemberInfo>,
}

impl View {
    /// Members in one state.
    pub fn count(&self, state: MemberState) -> usize {
        self.members.values().filter(|m| m.state == state).count()
    }

    /// Adds `member` unless a newer life of the same name is already present.
    pub fn offer(&mut self, member: MemberInfo) {
        match self.members.get(&member.id.name) {
            Some(known) if known.id.life() > member.id.life() => {}
            Some(known) if known.id.life() == member.id.life() && known.is_self => {}
            _ => {
                self.members.insert(member.id.name.clone(), member);
            }
        }
    }

    /// Events that turn `self` into `next`.
    pub fn diff(&self, next: &View) -> Vec<MembershipEvent> {
        let mut events = Vec::new();
        for (name, member) in &next.members {
            match self.members.get(name) {
                None => events.push(MembershipEvent::StateChanged {
                    member: member.clone(),
                    previous: None,
                }),
                Some(old) if old.state != member.state || old.id != member.id => {
                    events.push(MembershipEvent::StateChanged {
                        member: member.clone(),
                        previous: Some(old.state),
                    })
                }
                Some(old) if old.meta != member.meta => events.push(MembershipEvent::MetaChanged {
                    member: member.clone(),
                }),
                Some(_) => {}
            }
        }
        for (name, old) in &self.members {
            if !next.members.contains_key(name) {
                events.push(MembershipEvent::Forgotten { id: old.id.clone() });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, generation: u64, state: MemberState) -> MemberInfo {
        let id = NodeId::new(name, "127.0.0.1:7000".parse().expect("literal"), generation);
        MemberInfo {
            incarnation: id.incarnation(0),
            id,
            state,
            meta: None,
            is_self: false,
        }
    }

    #[test]
    fn newest_life_wins_and_diff_reports_transitions() {
        let mut before = View::default();
        before.offer(member("a", 1, MemberState::Alive));
        let mut after = View::default();
        after.offer(member("a", 1, MemberState::Dead));
        after.offer(member("a", 2, MemberState::Alive));
        after.offer(member("a", 1, MemberState::Dead));
        assert_eq!(after.members["a"].id.generation, 2);
        let events = before.diff(&after);
        assert_eq!(events.len(), 1);
        assert!(matches!(
            &events[0],
            MembershipEvent::StateChanged { member, previous: Some(MemberState::Alive) }
                if member.id.generation == 2
        ));
        assert!(matches!(
            after.diff(&View::default())[0],
            MembershipEvent::Forgotten { .. }
        ));
    }
}
