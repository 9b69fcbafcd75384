//! Rendezvous (highest-random-weight) hashing: which nodes hold a slot.
//!
//! This module owns the weight function and the ranking of candidates for one
//! slot. Every candidate gets a pseudo-random weight per slot; the slot's replicas
//! are the candidates with the highest weights, best first (the first one is the
//! slot's *preferred* replica). Because a node's weight for a slot depends only on
//! the slot and the node's name:
//! * every node computes the same replicas from the same set of candidates, whatever
//!   order it learnt them in;
//! * a node joining takes, in each slot, only the place of the one it outranks
//!   (≈ k/N of the assignments), and a node leaving gives up only its own places:
//!   no other slot moves.
//!
//! It does not know who is alive or which nodes host which service: the caller
//! passes the candidates (the live members hosting the table's service). For all
//! slots at once, see [`crate::PlacementMap`].

use std::cmp::Ordering;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::{PlacementError, Replication, Slot};

/// Most distinct candidate nodes placement accepts for one table.
///
/// Why 1024: geoul clusters are a handful to ~100 nodes, so this is ten times the
/// largest expected; at the limit a [`crate::PlacementMap`] with
/// [`Replication::All`] is 4096 × 1024 × 2 bytes = 8 MiB and takes ~4 M hashes
/// (~0.1 s) to compute, about the most one membership change should cost. It also
/// keeps node indices within `u16`.
pub const CANDIDATES_MAX: usize = 1024;

/// Index of a node in a sorted, de-duplicated candidate table.
pub(crate) type NodeIndex = u16;

// Every index below CANDIDATES_MAX must fit in a NodeIndex.
const _: () = assert!(CANDIDATES_MAX <= NodeIndex::MAX as usize + 1);

/// Seed of the node-name hash that feeds [`weight`]; the ASCII of `"geoulnod"`.
///
/// Part of the placement contract: changing it moves almost every slot.
pub const NODE_HASH_SEED: u64 = u64::from_be_bytes(*b"geoulnod");

/// Seed of the (slot, node) weight hash; the ASCII of `"geoulwgt"`.
///
/// Part of the placement contract: changing it moves almost every slot.
pub const WEIGHT_HASH_SEED: u64 = u64::from_be_bytes(*b"geoulwgt");

/// The rendezvous weight of `node` for `slot`; higher ranks first.
///
/// Defined as `XXH3-64(seed = WEIGHT_HASH_SEED, le16(slot) ‖ le64(h))` where
/// `h = XXH3-64(seed = NODE_HASH_SEED, node name bytes)`: the name is hashed once
/// and each slot costs one 10-byte hash. Stable across processes, platforms and
/// releases, like [`crate::slot_of`].
pub fn weight(slot: Slot, node: &str) -> u64 {
    weight_of_node_hash(slot, node_hash(node))
}

/// The per-node half of [`weight`], computed once per node.
pub(crate) fn node_hash(node: &str) -> u64 {
    xxh3_64_with_seed(node.as_bytes(), NODE_HASH_SEED)
}

/// The per-slot half of [`weight`].
pub(crate) fn weight_of_node_hash(slot: Slot, node_hash: u64) -> u64 {
    let mut input = [0u8; 10];
    input[..2].copy_from_slice(&slot.get().to_le_bytes());
    input[2..].copy_from_slice(&node_hash.to_le_bytes());
    xxh3_64_with_seed(&input, WEIGHT_HASH_SEED)
}

/// The replicas of `slot` among `candidates` (the live nodes hosting the table's
/// service), best first: the first is the slot's preferred replica.
///
/// Returns `min(factor, distinct candidates)` names for `Factor`, every distinct
/// candidate for `All` (still ordered by weight). The order of `candidates` and
/// duplicates in it do not matter; equal weights (a 64-bit collision) rank by name.
///
/// Errors: `Factor(0)`, or more than [`CANDIDATES_MAX`] distinct candidates.
///
/// ```
/// use geoul_placement::{replicas, slot_of, Replication};
/// let slot = slot_of(b"player:42");
/// let a = replicas(slot, &["n1", "n2", "n3", "n4"], Replication::Factor(2))?;
/// let b = replicas(slot, &["n4", "n3", "n2", "n1", "n1"], Replication::Factor(2))?;
/// assert_eq!(a.len(), 2);
/// assert_eq!(a, b);
/// # Ok::<(), geoul_placement::PlacementError>(())
/// ```
pub fn replicas<S: AsRef<str>>(
    slot: Slot,
    candidates: &[S],
    replication: Replication,
) -> Result<Vec<String>, PlacementError> {
    let replication = replication.validate()?;
    let nodes = distinct_sorted(candidates)?;
    let per_slot = replication.replicas_per_slot(nodes.len());
    let node_hashes: Vec<u64> = nodes.iter().map(|name| node_hash(name)).collect();
    let mut ranking = Vec::with_capacity(nodes.len());
    rank(slot, &node_hashes, per_slot, &mut ranking);
    let chosen: Vec<String> = ranking
        .iter()
        .map(|&(_, index)| nodes[usize::from(index)].to_owned())
        .collect();
    debug_assert_eq!(chosen.len(), per_slot);
    Ok(chosen)
}

/// `candidates` sorted by name with duplicates removed, so that position is a
/// stable [`NodeIndex`] and index order is name order (the tie-break).
pub(crate) fn distinct_sorted<S: AsRef<str>>(
    candidates: &[S],
) -> Result<Vec<&str>, PlacementError> {
    let mut nodes: Vec<&str> = candidates.iter().map(AsRef::as_ref).collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.len() > CANDIDATES_MAX {
        return Err(PlacementError::TooManyCandidates { count: nodes.len() });
    }
    Ok(nodes)
}

/// Fills `ranking` with the `per_slot` best nodes for `slot`, best first, as
/// (weight, index) pairs. `node_hashes[i]` is [`node_hash`] of node `i`, and nodes
/// are indexed in name order so that equal weights rank by name.
///
/// `ranking` is scratch space reused across slots; only the first `per_slot`
/// entries are kept.
pub(crate) fn rank(
    slot: Slot,
    node_hashes: &[u64],
    per_slot: usize,
    ranking: &mut Vec<(u64, NodeIndex)>,
) {
    assert!(
        per_slot <= node_hashes.len(),
        "more replicas than candidates"
    );
    assert!(
        node_hashes.len() <= CANDIDATES_MAX,
        "candidate table over its limit"
    );
    ranking.clear();
    if per_slot == 0 {
        return;
    }
    ranking.extend(node_hashes.iter().enumerate().map(|(index, &hash)| {
        // In range: index < node_hashes.len() <= CANDIDATES_MAX (asserted above).
        (weight_of_node_hash(slot, hash), index as NodeIndex)
    }));
    if per_slot < ranking.len() {
        // Partial selection: O(N) to find the best `per_slot`, then sort only them.
        ranking.select_nth_unstable_by(per_slot - 1, best_first);
        ranking.truncate(per_slot);
    }
    ranking.sort_unstable_by(best_first);
}

/// Higher weight first; equal weights by ascending index (= name).
fn best_first(a: &(u64, NodeIndex), b: &(u64, NodeIndex)) -> Ordering {
    b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u16) -> Slot {
        Slot::new(n).expect("test slot in range")
    }

    #[test]
    fn seeds_are_the_documented_ascii() {
        assert_eq!(NODE_HASH_SEED, 0x6765_6f75_6c6e_6f64);
        assert_eq!(WEIGHT_HASH_SEED, 0x6765_6f75_6c77_6774);
    }

    /// Pins the weight contract: if this fails, nodes of different builds would
    /// disagree on every slot's replicas. Do not "fix" the numbers. Computed
    /// independently with the reference C library (libxxhash 0.8.1).
    #[test]
    fn weight_is_pinned() {
        assert_eq!(weight(slot(0), "node-1"), 0xf3b1_aa30_48cc_f739);
        assert_eq!(weight(slot(4095), "node-2"), 0xa55a_a5f7_76b3_921b);
        assert_eq!(weight(slot(17), ""), 0xe802_ec3c_50f2_bf23);
    }

    #[test]
    fn replicas_are_ranked_by_descending_weight() {
        let candidates = ["a", "b", "c", "d", "e"];
        for n in [0, 1, 99, 4095] {
            let all = replicas(slot(n), &candidates, Replication::All).expect("valid");
            assert_eq!(all.len(), candidates.len());
            let weights: Vec<u64> = all.iter().map(|name| weight(slot(n), name)).collect();
            assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{weights:?}");
            let two = replicas(slot(n), &candidates, Replication::Factor(2)).expect("valid");
            assert_eq!(two[..], all[..2]);
        }
    }

    #[test]
    fn duplicates_and_order_are_ignored() {
        let a = replicas(slot(5), &["x", "y", "z"], Replication::All).expect("valid");
        let b = replicas(slot(5), &["z", "x", "z", "y", "x"], Replication::All).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn factor_larger_than_candidates_returns_all() {
        let got = replicas(slot(9), &["x", "y"], Replication::Factor(5)).expect("valid");
        assert_eq!(got.len(), 2);
        let none = replicas::<&str>(slot(9), &[], Replication::Factor(3)).expect("valid");
        assert!(none.is_empty());
    }

    #[test]
    fn invalid_inputs_are_rejected() {
        assert_eq!(
            replicas(slot(1), &["x"], Replication::Factor(0)),
            Err(PlacementError::ZeroReplicationFactor)
        );
        let too_many: Vec<String> = (0..=CANDIDATES_MAX).map(|i| format!("n{i}")).collect();
        assert_eq!(
            replicas(slot(1), &too_many, Replication::Factor(3)),
            Err(PlacementError::TooManyCandidates {
                count: CANDIDATES_MAX + 1
            })
        );
        // Duplicates do not count against the limit.
        let mut at_limit: Vec<String> = too_many[..CANDIDATES_MAX].to_vec();
        at_limit.push(at_limit[0].clone());
        assert!(replicas(slot(1), &at_limit, Replication::Factor(3)).is_ok());
    }

    #[test]
    fn equal_weights_rank_by_index() {
        let mut ranking = Vec::new();
        // Two nodes with the same name hash have the same weight in every slot.
        rank(slot(3), &[7, 7, 7], 3, &mut ranking);
        let order: Vec<NodeIndex> = ranking.iter().map(|&(_, i)| i).collect();
        assert_eq!(order, vec![0, 1, 2]);
    }
}
