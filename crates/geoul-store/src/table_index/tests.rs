//! Index maintenance, one test per path that changes what a key holds, and a
//! property test: after any sequence of changes every index equals the one
//! recomputed from the table's entries, and ranges return exactly the keys
//! whose value is within the bounds.

use std::cmp::Ordering;
use std::ops::Bound;
use std::time::Duration;

use geoul_placement::{slot_of, Slot};
use proptest::prelude::*;

use crate::entry::{Entry, Key, Origin, Version};
use crate::hlc::Timestamp;
use crate::options::{Ack, Durability, Replication, TableOptions, TableSpec};
use crate::order::compare_values;
use crate::table::Table;
use crate::value::{Document, Value};

const MARGIN_MS: u64 = 10;

fn table(indexes: &[&str]) -> Table {
    Table::new(
        TableSpec {
            name: "t".into(),
            options: TableOptions {
                replication: Replication::All,
                write_ack: Ack::One,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
                indexes: indexes.iter().map(|f| f.to_string()).collect(),
            },
        },
        Duration::from_millis(MARGIN_MS),
    )
}

fn key(k: &str) -> Key {
    Key::new(k.as_bytes()).expect("key")
}

/// A write of `fields` (a document) or a delete (`None`).
fn write(k: &str, ms: u64, fields: Option<&[(&str, Value)]>, expires: Option<u64>) -> Entry {
    Entry {
        key: key(k),
        version: Version {
            ts: Timestamp::from_parts(ms, 0),
            origin: Origin::from_raw(1),
        },
        expires_at_ms: expires,
        value: fields.map(|f| {
            Document::from_fields(f.iter().map(|(n, v)| (n.to_string(), v.clone())))
                .and_then(|d| d.encode())
                .expect("valid document")
        }),
    }
}

fn score(k: &str, ms: u64, score: i64) -> Entry {
    write(k, ms, Some(&[("score", Value::Int(score))]), None)
}

/// Every key of `field`'s index, in ascending order.
fn all(t: &Table, field: &str) -> Vec<String> {
    keys(t, field, Bound::Unbounded, Bound::Unbounded, false)
}

fn keys(
    t: &Table,
    field: &str,
    lower: Bound<&Value>,
    upper: Bound<&Value>,
    descending: bool,
) -> Vec<String> {
    t.index_range(field, lower, upper, descending)
        .expect("indexed")
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

#[test]
fn inserts_index_documents_that_have_the_field_and_nothing_else() {
    let mut t = table(&["score"]);
    t.apply(score("a", 1, 5));
    t.apply(write(
        "no-field",
        1,
        Some(&[("other", Value::Int(1))]),
        None,
    ));
    t.apply(write("deleted", 1, None, None));
    t.apply(score("b", 1, 3));
    assert_eq!(all(&t, "score"), ["b", "a"]);
    assert_eq!(t.index_len("score"), Some(2));
    assert!(t.has_index("score"));
    assert!(!t.has_index("other"));
    assert!(t
        .index_range("other", Bound::Unbounded, Bound::Unbounded, false)
        .is_none());
    assert_eq!(t.index_len("other"), None);
    assert_eq!(t.index_stats(), [("score".to_string(), 2)]);
}

#[test]
fn a_table_without_indexes_has_none() {
    let mut t = table(&[]);
    t.apply(score("a", 1, 5));
    assert!(!t.has_index("score"));
    assert!(t.index_stats().is_empty());
}

#[test]
fn newer_versions_move_or_remove_the_key_and_stale_ones_change_nothing() {
    let mut t = table(&["score"]);
    t.apply(score("a", 10, 5));
    t.apply(score("b", 10, 7));
    // A newer value moves the key.
    assert!(t.apply(score("a", 11, 9)).changed());
    assert_eq!(all(&t, "score"), ["b", "a"]);
    // A stale write changes nothing, even with another value.
    assert!(!t.apply(score("a", 10, 1)).changed());
    assert_eq!(all(&t, "score"), ["b", "a"]);
    let nine = Value::Int(9);
    assert_eq!(
        keys(
            &t,
            "score",
            Bound::Included(&nine),
            Bound::Included(&nine),
            false
        ),
        ["a"]
    );
    // A newer document without the field removes the key.
    t.apply(write("a", 12, Some(&[("other", Value::Int(1))]), None));
    assert_eq!(all(&t, "score"), ["b"]);
    // So does a newer delete...
    t.apply(write("b", 11, None, None));
    assert!(all(&t, "score").is_empty());
    // ...and a stale write does not bring it back, a newer one does.
    t.apply(score("b", 10, 7));
    assert!(all(&t, "score").is_empty());
    t.apply(score("b", 12, 7));
    assert_eq!(all(&t, "score"), ["b"]);
}

#[test]
fn a_new_value_equal_in_order_but_of_another_type_replaces_the_old() {
    let mut t = table(&["score"]);
    t.apply(score("a", 1, 2));
    t.apply(write("a", 2, Some(&[("score", Value::Float(2.0))]), None));
    assert_eq!(
        t.indexes.elements("score"),
        Some(vec![(Value::Float(2.0), b"a".to_vec())])
    );
}

#[test]
fn sweeping_removes_expired_values_and_unswept_ones_stay_until_then() {
    let mut t = table(&["score"]);
    t.apply(write(
        "short",
        1,
        Some(&[("score", Value::Int(1))]),
        Some(1_000),
    ));
    t.apply(write(
        "long",
        1,
        Some(&[("score", Value::Int(2))]),
        Some(9_000),
    ));
    t.apply(score("forever", 1, 3));
    // Expired for reads but not swept: still indexed, `get` says gone.
    assert_eq!(all(&t, "score"), ["short", "long", "forever"]);
    assert!(t.get(b"short", 1_000).is_none());
    t.sweep(1_000 + MARGIN_MS, u64::MAX);
    assert_eq!(all(&t, "score"), ["long", "forever"]);
    t.sweep(100_000, u64::MAX);
    assert_eq!(all(&t, "score"), ["forever"]);
    // The marker stops an older copy, so it stays out of the index.
    t.apply(write("short", 0, Some(&[("score", Value::Int(1))]), None));
    assert_eq!(all(&t, "score"), ["forever"]);
}

#[test]
fn garbage_collection_leaves_indexed_values_alone() {
    let mut t = table(&["score"]);
    t.apply(score("kept", 1, 1));
    t.apply(write(
        "expired",
        1,
        Some(&[("score", Value::Int(2))]),
        Some(100),
    ));
    t.apply(write("deleted", 1, None, None));
    t.sweep(1_000, u64::MAX);
    let gc = t.collect_garbage(10_000, u64::MAX);
    assert_eq!(gc.collected.len(), 2);
    assert_eq!(all(&t, "score"), ["kept"]);
    assert_eq!(t.indexes.elements("score").map(|e| e.len()), Some(1));
}

#[test]
fn dropping_a_slot_removes_its_keys_only() {
    let mut t = table(&["score"]);
    t.apply(score("a", 1, 1));
    t.apply(score("b", 1, 2));
    assert_ne!(slot_of(b"a"), slot_of(b"b"));
    t.drop_slot(slot_of(b"a"));
    assert_eq!(all(&t, "score"), ["b"]);
}

#[test]
fn every_index_of_a_table_is_maintained() {
    let mut t = table(&["x", "y", "z"]);
    let both = [("x", Value::Int(1)), ("y", Value::Str("s".into()))];
    t.apply(write("a", 1, Some(&both), None));
    t.apply(write("b", 1, Some(&[("y", Value::Str("r".into()))]), None));
    assert_eq!(all(&t, "x"), ["a"]);
    assert_eq!(all(&t, "y"), ["b", "a"]);
    assert!(all(&t, "z").is_empty());
    t.apply(write("a", 2, None, None));
    assert!(all(&t, "x").is_empty());
    assert_eq!(all(&t, "y"), ["b"]);
    assert_eq!(
        t.index_stats(),
        [("x".into(), 0), ("y".into(), 1), ("z".into(), 0)]
    );
}

#[test]
fn ranges_follow_the_one_order_of_values_both_ways() {
    let mut t = table(&["v"]);
    let values = [
        ("bool", Value::Bool(true)),
        ("int-2", Value::Int(2)),
        ("float-2", Value::Float(2.0)),
        ("float-2.5", Value::Float(2.5)),
        ("int-3", Value::Int(3)),
        ("str", Value::Str("a".into())),
        ("bytes", Value::Bytes(vec![0].into())),
    ];
    for (k, v) in &values {
        t.apply(write(k, 1, Some(&[("v", v.clone())]), None));
    }
    let two = Value::Int(2);
    let three = Value::Float(3.0);
    // Within one value, keys ascend; descending is the exact reverse.
    assert_eq!(
        keys(
            &t,
            "v",
            Bound::Included(&two),
            Bound::Included(&three),
            false
        ),
        ["float-2", "int-2", "float-2.5", "int-3"]
    );
    assert_eq!(
        keys(
            &t,
            "v",
            Bound::Included(&two),
            Bound::Included(&three),
            true
        ),
        ["int-3", "float-2.5", "int-2", "float-2"]
    );
    assert_eq!(
        keys(
            &t,
            "v",
            Bound::Excluded(&two),
            Bound::Excluded(&three),
            false
        ),
        ["float-2.5"]
    );
    assert_eq!(
        keys(&t, "v", Bound::Unbounded, Bound::Excluded(&two), true),
        ["bool"]
    );
    assert_eq!(
        keys(&t, "v", Bound::Excluded(&three), Bound::Unbounded, false),
        ["str", "bytes"]
    );
    // Ranges that admit nothing are empty, never a panic.
    let nan = Value::Float(f64::NAN);
    for (lower, upper) in [
        (Bound::Included(&three), Bound::Included(&two)),
        (Bound::Excluded(&two), Bound::Excluded(&two)),
        (Bound::Excluded(&two), Bound::Included(&two)),
        (Bound::Included(&nan), Bound::Unbounded),
        (Bound::Unbounded, Bound::Excluded(&nan)),
    ] {
        assert!(
            keys(&t, "v", lower, upper, false).is_empty(),
            "{lower:?} {upper:?}"
        );
        assert!(
            keys(&t, "v", lower, upper, true).is_empty(),
            "{lower:?} {upper:?}"
        );
    }
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    /// A write (`Some`: a document, with or without each field) or a delete.
    Apply {
        key: u8,
        ts: u64,
        origin: u8,
        expires: Option<u64>,
        doc: Option<(Option<Value>, Option<Value>)>,
    },
    Sweep {
        now: u64,
    },
    Gc {
        horizon: u64,
    },
    DropSlot {
        key: u8,
    },
}

const FIELDS: [&str; 2] = ["f", "g"];

/// Short keys, and some past the inline bound so both forms mix in one index.
fn key_of(k: u8) -> String {
    if k < 4 {
        format!("k{k}-{}", "long".repeat(8))
    } else {
        format!("k{k}")
    }
}

/// Few distinct values, so that equal values (also across int and float)
/// and ties between keys are common.
fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(Value::Int),
        (-6i64..8).prop_map(|i| Value::Float(i as f64 / 2.0)),
        Just(Value::Float(-0.0)),
        Just(Value::Float(f64::INFINITY)),
        "[ab]{0,2}".prop_map(Value::Str),
        prop::collection::vec(0u8..2, 0..2).prop_map(|b| Value::Bytes(b.into())),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let doc = prop::option::weighted(
        0.8,
        (prop::option::of(arb_value()), prop::option::of(arb_value())),
    );
    prop_oneof![
        8 => (0u8..12, 1u64..40, 0u8..2, prop::option::weighted(0.3, 1u64..60), doc)
            .prop_map(|(key, ts, origin, expires, doc)| Op::Apply { key, ts, origin, expires, doc }),
        1 => (0u64..80).prop_map(|now| Op::Sweep { now }),
        1 => (0u64..80).prop_map(|horizon| Op::Gc { horizon }),
        1 => (0u8..12).prop_map(|key| Op::DropSlot { key }),
    ]
}

fn arb_bound() -> impl Strategy<Value = Bound<Value>> {
    prop_oneof![
        Just(Bound::Unbounded),
        arb_value().prop_map(Bound::Included),
        arb_value().prop_map(Bound::Excluded),
    ]
}

fn run(t: &mut Table, op: &Op) {
    match op {
        Op::Apply {
            key,
            ts,
            origin,
            expires,
            doc,
        } => {
            let value = doc.as_ref().map(|(f, g)| {
                let fields = FIELDS
                    .iter()
                    .zip([f, g])
                    .filter_map(|(name, v)| v.clone().map(|v| (name.to_string(), v)))
                    .chain([("other".to_string(), Value::Int(0))]);
                Document::from_fields(fields)
                    .and_then(|d| d.encode())
                    .expect("valid document")
            });
            t.apply(Entry {
                key: Key::new(key_of(*key).as_bytes()).expect("key"),
                version: Version {
                    ts: Timestamp::from_parts(*ts, 0),
                    origin: Origin::from_raw(u64::from(*origin)),
                },
                expires_at_ms: *expires,
                value,
            });
        }
        Op::Sweep { now } => {
            t.sweep(*now, u64::MAX);
        }
        Op::Gc { horizon } => {
            t.collect_garbage(*horizon, u64::MAX);
        }
        Op::DropSlot { key } => {
            t.drop_slot(slot_of(key_of(*key).as_bytes()));
        }
    }
}

/// Every stored value and its document, decoded whole (not read field by
/// field, as the index does).
fn documents(t: &Table) -> Vec<(Key, Document)> {
    Slot::all()
        .flat_map(|s| t.slot_entries(s).collect::<Vec<_>>())
        .filter_map(|e| Some((e.key, e.value?.decode().expect("stored documents decode"))))
        .collect()
}

/// `field`'s index computed from scratch: every document that has the field,
/// in index order.
fn recompute(documents: &[(Key, Document)], field: &str) -> Vec<(Value, Vec<u8>)> {
    let mut expected: Vec<(Value, Vec<u8>)> = documents
        .iter()
        .filter_map(|(key, doc)| doc.get(field).map(|v| (v.clone(), key.as_bytes().to_vec())))
        .collect();
    expected.sort_by(|a, b| compare_values(&a.0, &b.0).then_with(|| a.1.cmp(&b.1)));
    expected
}

fn within(value: &Value, lower: &Bound<Value>, upper: &Bound<Value>) -> bool {
    let above = match lower {
        Bound::Included(l) => compare_values(value, l) != Ordering::Less,
        Bound::Excluded(l) => compare_values(value, l) == Ordering::Greater,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(u) => compare_values(value, u) != Ordering::Greater,
        Bound::Excluded(u) => compare_values(value, u) == Ordering::Less,
        Bound::Unbounded => true,
    };
    above && below
}

proptest! {
    #[test]
    fn indexes_always_equal_a_recomputation_and_ranges_are_exact(
        steps in prop::collection::vec((arb_op(), arb_bound(), arb_bound()), 1..60),
    ) {
        let mut t = table(&FIELDS);
        for (op, lower, upper) in &steps {
            run(&mut t, op);
            let documents = documents(&t);
            for field in FIELDS {
                let expected = recompute(&documents, field);
                let actual = t.indexes.elements(field);
                prop_assert_eq!(actual.as_ref(), Some(&expected), "{:?}", op);
                prop_assert_eq!(t.index_len(field), Some(expected.len()));
                let mut inside: Vec<&[u8]> = expected
                    .iter()
                    .filter(|(v, _)| within(v, lower, upper))
                    .map(|(_, k)| k.as_slice())
                    .collect();
                let ascending: Vec<&[u8]> = t
                    .index_range(field, lower.as_ref(), upper.as_ref(), false)
                    .expect("indexed")
                    .collect();
                prop_assert_eq!(&ascending, &inside, "{:?} {:?}", lower, upper);
                inside.reverse();
                let descending: Vec<&[u8]> = t
                    .index_range(field, lower.as_ref(), upper.as_ref(), true)
                    .expect("indexed")
                    .collect();
                prop_assert_eq!(&descending, &inside, "{:?} {:?}", lower, upper);
            }
        }
    }
}
