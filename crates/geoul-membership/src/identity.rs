//! Who a node is: its name, its address, and which life of it this is.
//!
//! Owns: [`NodeId`] (the identity foca gossips) and the rules that make a restarted or
//! rejoined node supersede its older self. Does not own: metadata that changes while
//! a node lives (services, health — see `meta`), which must not change the identity.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Longest node name accepted, in bytes. Names appear in every gossip packet and
/// every status line, so they are kept short enough for ~20 identities to fit a
/// 1400-byte datagram.
pub const NODE_NAME_BYTES_MAX: usize = 48;

/// The identity of one life of one node.
///
/// * `name` is stable across restarts and chosen by the operator.
/// * `addr` is the cluster address (TCP for requests, UDP for gossip, same port).
/// * `generation` grows with every process start (persisted, and never below the
///   boot time in seconds), so a restarted node always supersedes its old life
///   (DESIGN.md §13 "identity and restart").
/// * `rejoin` grows each time this life had to rejoin after being declared dead
///   (e.g. after a partition or a long stall), which foca requires to be a new identity.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    /// Operator-chosen stable name.
    pub name: String,
    /// Cluster address (TCP and UDP).
    pub addr: SocketAddr,
    /// Process generation: strictly greater after every restart.
    pub generation: u64,
    /// Rejoins within this generation.
    pub rejoin: u16,
}

impl NodeId {
    /// A new identity for a freshly started process.
    pub fn new(name: impl Into<String>, addr: SocketAddr, generation: u64) -> Self {
        Self {
            name: name.into(),
            addr,
            generation,
            rejoin: 0,
        }
    }

    /// The identity used to announce to a seed whose name is not known yet.
    ///
    /// foca accepts an announce addressed to any identity with the receiver's
    /// address, so the placeholder only needs the right `addr`.
    pub fn placeholder(addr: SocketAddr) -> Self {
        Self::new(String::new(), addr, 0)
    }

    /// Ordering key of the lives of a node: a higher key supersedes a lower one.
    pub fn life(&self) -> (u64, u16) {
        (self.generation, self.rejoin)
    }

    /// The single number shown as `incarnation` to operators: generation, then
    /// rejoins, then foca's refutation counter, so it only ever grows for a name.
    pub fn incarnation(&self, refutations: u16) -> u64 {
        // Generations are seconds since 1970 at most (~2^31 until 2038, 2^33 in
        // centuries), leaving 32 bits for rejoin and refutation counters.
        (self.generation << 32) | (u64::from(self.rejoin) << 16) | u64::from(refutations)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}#{}.{}",
            self.name, self.addr, self.generation, self.rejoin
        )
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl foca::Identity for NodeId {
    /// Two identities with the same address are two lives of the same node: foca
    /// keeps only the winner of [`foca::Identity::win_addr_conflict`].
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        // Auto-rejoin after being declared down (partition healed, stall ended).
        // Saturating at u16::MAX would stop rejoins; moving to the next generation
        // instead keeps the identity strictly increasing.
        let mut next = self.clone();
        match self.rejoin.checked_add(1) {
            Some(rejoin) => next.rejoin = rejoin,
            None => {
                next.generation += 1;
                next.rejoin = 0;
            }
        }
        Some(next)
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Strictly newer life wins; equal lives cannot happen for distinct
        // identities except with a different name on the same address, where the
        // name breaks the tie deterministically so every node picks the same one.
        (self.life(), &self.name) > (adversary.life(), &adversary.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn addr() -> SocketAddr {
        "127.0.0.1:7000".parse().expect("literal address")
    }

    #[test]
    fn restarted_node_wins_over_its_old_life() {
        let old = NodeId::new("n1", addr(), 100);
        let new = NodeId::new("n1", addr(), 101);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        assert!(new.incarnation(0) > old.incarnation(u16::MAX));
    }

    #[test]
    fn renew_is_strictly_newer_even_at_the_counter_limit() {
        let id = NodeId::new("n1", addr(), 7);
        let renewed = id.renew().expect("always renews");
        assert!(renewed.win_addr_conflict(&id));
        let mut at_limit = id.clone();
        at_limit.rejoin = u16::MAX;
        let renewed = at_limit.renew().expect("always renews");
        assert_eq!(renewed.generation, 8);
        assert!(renewed.win_addr_conflict(&at_limit));
        assert!(renewed.incarnation(0) > at_limit.incarnation(u16::MAX));
    }
}
