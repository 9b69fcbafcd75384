//! Properties of placement over whole views: agreement, minimal movement on join
//! and leave, balance, and `All`.

use geoul_placement::{replicas, slot_of, PlacementMap, Replication, Slot, SLOT_COUNT};
use proptest::prelude::*;

/// Cluster sizes the movement tests run over.
const CLUSTER_SIZES: [usize; 4] = [3, 5, 10, 20];

/// Replication factors the movement tests run over.
const FACTORS: [u8; 2] = [1, 3];

/// Allowed relative deviation of moved assignments from their expectation.
///
/// Why 25 %: the count is binomial; at the smallest expectation tested (20 → 21
/// nodes, Factor(1): 4096 / 21 ≈ 195, σ ≈ 14) 25 % is ~3.5 σ, and the hash is
/// fixed, so a pass here is a pass forever.
const MOVED_TOLERANCE: f64 = 0.25;

/// Allowed relative deviation of moved assignments from the rule of thumb
/// `SLOT_COUNT × k / N` (N = nodes before the change).
///
/// Why 40 %: the rule of thumb is exact only for large N; for small clusters the
/// exact expectation differs (3 → 4 nodes with Factor(3) moves 3/4 of the slots,
/// not 3/3), which is 25 % away. 40 % accepts that and still fails any scheme
/// that reshuffles (which moves ~(1 − k/N) of everything).
const RULE_OF_THUMB_TOLERANCE: f64 = 0.4;

/// Allowed deviation of a node's slot count from the mean, as a fraction.
const BALANCE_TOLERANCE: f64 = 0.2;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i}")).collect()
}

fn map(view: &[String], replication: Replication) -> PlacementMap {
    PlacementMap::compute(view, replication).expect("valid view")
}

fn row(map: &PlacementMap, slot: Slot) -> Vec<&str> {
    map.replicas(slot).collect()
}

/// Expected (slot, node) assignments of one node among `members` nodes: it is in
/// a slot's top k with probability min(k, members) / members.
fn expected_assignments(factor: u8, members: usize) -> f64 {
    let k = usize::from(factor).min(members);
    f64::from(SLOT_COUNT) * k as f64 / members as f64
}

/// `SLOT_COUNT × k / N`, with N the number of nodes before the change.
fn rule_of_thumb(factor: u8, nodes_before: usize) -> f64 {
    f64::from(SLOT_COUNT) * f64::from(factor) / nodes_before as f64
}

fn assert_near(actual: usize, expected: f64, tolerance: f64, what: &str) {
    let deviation = (actual as f64 - expected).abs() / expected;
    assert!(
        deviation <= tolerance,
        "{what}: moved {actual}, expected ≈ {expected:.0} (off by {:.0} %)",
        deviation * 100.0
    );
}

/// Asserts that, in every slot, `bigger` (the view with `node`) differs from
/// `smaller` (the view without it) only by `node`: either `node` is not a replica
/// and the rows are identical, or removing `node` from `bigger`'s row leaves a
/// prefix of `smaller`'s row (`node` displaced at most the last replica).
/// Returns the number of slots `node` holds in `bigger`.
fn assert_only_node_moves(smaller: &PlacementMap, bigger: &PlacementMap, node: &str) -> usize {
    let mut held = 0;
    for slot in Slot::all() {
        let small = row(smaller, slot);
        let big = row(bigger, slot);
        assert!(!small.contains(&node), "slot {slot}");
        if !big.contains(&node) {
            assert_eq!(small, big, "slot {slot} changed without {node}");
            continue;
        }
        held += 1;
        let others: Vec<&str> = big.iter().copied().filter(|&n| n != node).collect();
        assert_eq!(others[..], small[..others.len()], "slot {slot}");
        assert!(small.len() - others.len() <= 1, "slot {slot}");
    }
    held
}

#[test]
fn every_order_of_the_view_gives_the_same_map() {
    let view = names(10);
    let reference = map(&view, Replication::Factor(3));
    let mut reversed = view.clone();
    reversed.reverse();
    let mut by_hash = view.clone();
    by_hash.sort_by_key(|name| slot_of(name.as_bytes()));
    let mut with_duplicates = view.clone();
    with_duplicates.extend(view.iter().take(4).cloned());
    with_duplicates.rotate_left(3);
    for (i, other) in [reversed, by_hash, with_duplicates].iter().enumerate() {
        assert_eq!(
            map(other, Replication::Factor(3)),
            reference,
            "ordering {i}"
        );
    }
    for rotation in 0..view.len() {
        let mut rotated = view.clone();
        rotated.rotate_left(rotation);
        assert_eq!(map(&rotated, Replication::Factor(3)), reference);
    }
}

#[test]
fn a_join_moves_about_k_over_n_and_only_to_the_joiner() {
    for n in CLUSTER_SIZES {
        for factor in FACTORS {
            let replication = Replication::Factor(factor);
            let before = names(n);
            let joiner = format!("node-{n}");
            let mut after = before.clone();
            after.push(joiner.clone());
            let (old, new) = (map(&before, replication), map(&after, replication));

            let moved = assert_only_node_moves(&old, &new, &joiner);
            let case = format!("join {n} → {} nodes, Factor({factor})", n + 1);
            assert_near(
                moved,
                expected_assignments(factor, n + 1),
                MOVED_TOLERANCE,
                &case,
            );
            let thumb = rule_of_thumb(factor, n);
            assert_near(moved, thumb, RULE_OF_THUMB_TOLERANCE, &case);

            let diff = old.diff(&new);
            assert_eq!(diff.node(&joiner).map(|c| c.gained().len()), Some(moved));
            for (node, changes) in diff.iter() {
                assert!(
                    node == joiner || changes.gained().is_empty(),
                    "{case}: {node}"
                );
                assert!(changes.lost().is_empty() || node != joiner, "{case}");
            }
            if n >= usize::from(factor) {
                assert_eq!(diff.lost_total(), moved, "{case}: each gain displaces one");
            }
        }
    }
}

#[test]
fn a_leave_moves_about_k_over_n_and_only_from_the_leaver() {
    for n in CLUSTER_SIZES {
        for factor in FACTORS {
            let replication = Replication::Factor(factor);
            let before = names(n);
            let leaver = before[n / 2].clone();
            let after: Vec<String> = before.iter().filter(|&x| *x != leaver).cloned().collect();
            let (old, new) = (map(&before, replication), map(&after, replication));

            let moved = assert_only_node_moves(&new, &old, &leaver);
            let case = format!("leave {n} → {} nodes, Factor({factor})", n - 1);
            assert_near(
                moved,
                expected_assignments(factor, n),
                MOVED_TOLERANCE,
                &case,
            );
            let thumb = rule_of_thumb(factor, n);
            assert_near(moved, thumb, RULE_OF_THUMB_TOLERANCE, &case);

            let diff = old.diff(&new);
            assert_eq!(diff.node(&leaver).map(|c| c.lost().len()), Some(moved));
            for (node, changes) in diff.iter() {
                assert!(
                    node == leaver || changes.lost().is_empty(),
                    "{case}: {node}"
                );
                assert!(changes.gained().is_empty() || node != leaver, "{case}");
            }
            if n > usize::from(factor) {
                assert_eq!(diff.gained_total(), moved, "{case}: each loss is replaced");
            }
        }
    }
}

#[test]
fn ten_nodes_with_factor_three_are_balanced() {
    let placement = map(&names(10), Replication::Factor(3));
    let mean = f64::from(SLOT_COUNT) * 3.0 / 10.0;
    let preferred_mean = f64::from(SLOT_COUNT) / 10.0;
    for node in placement.nodes() {
        let held = placement.slots_of(node).count() as f64;
        assert!(
            (held - mean).abs() <= BALANCE_TOLERANCE * mean,
            "{node} holds {held} slots, mean {mean}"
        );
        let preferred = Slot::all()
            .filter(|&slot| placement.preferred(slot) == Some(node))
            .count() as f64;
        assert!(
            (preferred - preferred_mean).abs() <= BALANCE_TOLERANCE * preferred_mean,
            "{node} is preferred for {preferred} slots, mean {preferred_mean}"
        );
    }
}

#[test]
fn all_gives_every_node_every_slot() {
    let view = names(5);
    let placement = map(&view, Replication::All);
    assert_eq!(placement.replicas_per_slot(), view.len());
    for node in &view {
        assert_eq!(placement.slots_of(node).count(), usize::from(SLOT_COUNT));
    }
    for slot in Slot::all() {
        let mut members = row(&placement, slot);
        members.sort_unstable();
        assert_eq!(members, view.iter().map(String::as_str).collect::<Vec<_>>());
    }
    // Adding a node under All: it gains every slot, nobody loses any.
    let mut bigger = view.clone();
    bigger.push("node-5".to_string());
    let diff = placement.diff(&map(&bigger, Replication::All));
    assert_eq!(diff.gained_total(), usize::from(SLOT_COUNT));
    assert_eq!(diff.lost_total(), 0);
}

fn replication_strategy() -> impl Strategy<Value = Replication> {
    prop_oneof![
        Just(Replication::All),
        (1u8..=8).prop_map(Replication::Factor),
    ]
}

proptest! {
    #[test]
    fn replicas_are_distinct_candidates(
        candidates in prop::collection::vec("[a-z0-9.-]{0,12}|\\PC{0,6}", 0..40),
        key in prop::collection::vec(any::<u8>(), 0..64),
        replication in replication_strategy(),
    ) {
        let slot = slot_of(&key);
        let chosen = replicas(slot, &candidates, replication).expect("valid input");
        let mut distinct = candidates.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let expected_len = match replication {
            Replication::All => distinct.len(),
            Replication::Factor(k) => distinct.len().min(usize::from(k)),
        };
        prop_assert_eq!(chosen.len(), expected_len);
        let mut unique = chosen.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(unique.len(), chosen.len());
        prop_assert!(chosen.iter().all(|name| candidates.contains(name)));
        let mut shuffled = candidates.clone();
        shuffled.reverse();
        prop_assert_eq!(replicas(slot, &shuffled, replication).expect("valid input"), chosen);
    }
}

proptest! {
    // Each case computes whole maps (4096 × N hashes), so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn a_join_only_moves_slots_to_the_joiner(
        view in prop::collection::btree_set("[a-z]{1,8}", 1..16),
        joiner in "[A-Z]{1,8}",
        factor in 1u8..=4,
    ) {
        let before: Vec<String> = view.into_iter().collect();
        let mut after = before.clone();
        after.push(joiner.clone());
        let old = map(&before, Replication::Factor(factor));
        let new = map(&after, Replication::Factor(factor));
        assert_only_node_moves(&old, &new, &joiner);
        for slot in [Slot::all().next(), Slot::all().last()].into_iter().flatten() {
            let direct = replicas(slot, &after, Replication::Factor(factor)).expect("valid");
            prop_assert_eq!(row(&new, slot), direct.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
