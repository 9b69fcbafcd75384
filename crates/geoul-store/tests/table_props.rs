//! Properties replicas rely on: apply is idempotent and commutative, versions
//! decide (deletes included), digests track contents, expiry is read-time and the
//! sweeper never changes what replicas compare.

use std::time::Duration;

use geoul_placement::{Slot, SLOT_COUNT};
use geoul_store::{
    Ack, Applied, Document, Durability, Entry, Key, Origin, Replication, Table, TableOptions,
    TableSpec, Timestamp, Ttl, Value, Version,
};
use proptest::prelude::*;

const MARGIN: Duration = Duration::from_millis(100);

fn table() -> Table {
    Table::new(
        TableSpec {
            name: "t".into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
                indexes: Vec::new(),
            },
        },
        MARGIN,
    )
}

fn entry(key: u8, ts: u64, origin: u8, expires: Option<u64>, value: Option<i64>) -> Entry {
    Entry {
        key: Key::new(&[b'k', key]).expect("valid key"),
        version: Version {
            ts: Timestamp::from_parts(ts, 0),
            origin: Origin::from_raw(u64::from(origin)),
        },
        expires_at_ms: expires,
        value: value.map(|v| {
            Document::single("v", Value::Int(v))
                .and_then(|d| d.encode())
                .expect("valid doc")
        }),
    }
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        0u8..12,
        1u64..50,
        0u8..3,
        prop::option::of(1u64..60),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(k, ts, o, exp, v)| entry(k, ts, o, exp, v))
}

/// Everything a replica holds, in a canonical order.
fn contents(t: &Table) -> Vec<Entry> {
    let mut all: Vec<Entry> = Slot::all()
        .flat_map(|s| t.slot_entries(s).collect::<Vec<_>>())
        .collect();
    all.sort_by(|a, b| a.key.cmp(&b.key));
    all
}

fn digests(t: &Table) -> Vec<u64> {
    Slot::all().map(|s| t.slot_digest(s)).collect()
}

/// Two different entries with the same (key, version) cannot exist in a real
/// cluster (one writer assigns each version once); keep only the first.
fn unique_versions(entries: Vec<Entry>) -> Vec<Entry> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|e| seen.insert((e.key.clone(), e.version)))
        .collect()
}

proptest! {
    #[test]
    fn any_order_and_duplication_gives_the_same_table(
        entries in prop::collection::vec(arb_entry(), 0..60),
        seed in any::<u64>(),
    ) {
        let entries = unique_versions(entries);
        let mut a = table();
        for e in &entries {
            a.apply(e.clone());
        }
        // Shuffle deterministically from `seed` and apply everything twice.
        let mut shuffled: Vec<Entry> = entries.iter().chain(entries.iter()).cloned().collect();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut b = table();
        for e in shuffled {
            b.apply(e);
        }
        prop_assert_eq!(contents(&a), contents(&b));
        prop_assert_eq!(digests(&a), digests(&b));
        prop_assert_eq!(a.stats(), b.stats());
    }

    #[test]
    fn digests_are_equal_iff_contents_are(
        left in prop::collection::vec(arb_entry(), 0..30),
        right in prop::collection::vec(arb_entry(), 0..30),
    ) {
        let mut a = table();
        for e in unique_versions(left) { a.apply(e); }
        let mut b = table();
        for e in unique_versions(right) { b.apply(e); }
        let same_contents = contents(&a) == contents(&b);
        prop_assert_eq!(digests(&a) == digests(&b), same_contents);
    }

    #[test]
    fn sweeping_never_changes_digests_or_resurrects(
        entries in prop::collection::vec(arb_entry(), 0..40),
        now in 0u64..80,
    ) {
        let entries = unique_versions(entries);
        let mut t = table();
        for e in &entries { t.apply(e.clone()); }
        let before = digests(&t);
        t.sweep(now, u64::MAX);
        prop_assert_eq!(before, digests(&t));
        // Re-applying every entry after the sweep restores nothing that expired.
        for e in &entries { t.apply(e.clone()); }
        for e in &entries {
            if let Some(v) = t.get(e.key.as_bytes(), now) {
                let exp = v.expires_at_ms;
                prop_assert!(exp.is_none_or(|x| now + 100 < x));
            }
        }
    }
}

#[test]
fn the_higher_version_wins_whether_write_or_delete() {
    let mut t = table();
    assert_eq!(t.apply(entry(1, 10, 0, None, Some(1))), Applied::Inserted);
    // A later delete beats the write...
    assert!(t.apply(entry(1, 11, 0, None, None)).changed());
    assert!(t.get(b"k\x01", 0).is_none());
    // ...an older write cannot bring it back...
    assert_eq!(t.apply(entry(1, 10, 1, None, Some(2))), Applied::Stale);
    assert!(t.get(b"k\x01", 0).is_none());
    // ...and a newer write beats the delete.
    assert!(t.apply(entry(1, 12, 0, None, Some(3))).changed());
    let v = t.get(b"k\x01", 0).expect("visible");
    assert_eq!(
        v.value.decode().expect("doc").get("v"),
        Some(&Value::Int(3))
    );
    // Equal timestamps: the higher origin wins, on every replica.
    assert!(t.apply(entry(1, 12, 1, None, Some(4))).changed());
    assert_eq!(t.apply(entry(1, 12, 0, None, Some(5))), Applied::Stale);
}

#[test]
fn expiry_hides_entries_a_margin_early_and_ttl_counts_down() {
    let mut t = table();
    t.apply(entry(2, 1, 0, Some(10_000), Some(1)));
    assert_eq!(
        t.ttl(b"k\x02", 5_000),
        Ttl::Remaining(Duration::from_millis(4_900))
    );
    assert!(t.get(b"k\x02", 9_899).is_some());
    assert!(
        t.get(b"k\x02", 9_900).is_none(),
        "hidden from expiry minus margin"
    );
    assert_eq!(t.ttl(b"k\x02", 9_900), Ttl::Missing);
    t.apply(entry(3, 1, 0, None, Some(1)));
    assert_eq!(t.ttl(b"k\x03", 9_900), Ttl::Forever);
    // Expiries near the maximum representable time behave.
    t.apply(entry(4, 1, 0, Some(u64::MAX), Some(1)));
    assert!(t.get(b"k\x04", u64::MAX - 1_000).is_some());
}

#[test]
fn sweeper_works_in_bounded_passes_and_frees_values() {
    let mut t = table();
    for k in 0..200u8 {
        t.apply(entry(k, 1, 0, Some(1_000), Some(i64::from(k))));
    }
    assert_eq!(t.stats().values, 200);
    let mut passes = 0;
    let mut expired = 0;
    while expired < 200 {
        let s = t.sweep(5_000, 10);
        assert!(s.slots <= u32::from(SLOT_COUNT));
        expired += s.expired;
        passes += 1;
        assert!(
            passes <= usize::from(SLOT_COUNT),
            "sweeper made no progress"
        );
    }
    assert!(passes > 1, "a small budget must split the work");
    assert_eq!(t.stats().values, 0);
    assert_eq!(t.stats().markers, 200);
    // A late, older copy of an expired key does not come back.
    assert_eq!(t.apply(entry(7, 0, 0, None, Some(9))), Applied::Stale);
    assert!(t.get(b"k\x07", 5_000).is_none());
}

#[test]
fn entries_from_the_network_are_validated_again() {
    let e = entry(1, 5, 0, None, Some(1));
    let bytes = postcard::to_stdvec(&e).expect("encodes");
    let back: Entry = postcard::from_bytes(&bytes).expect("decodes");
    assert_eq!(back, e);
    // An empty key or a malformed document is refused on the way in.
    let mut bad_key = e.clone();
    bad_key.key = Key::new(b"x").expect("key");
    let mut raw = postcard::to_stdvec(&bad_key).expect("encodes");
    raw[0] = 0; // key length 0
    assert!(postcard::from_bytes::<Entry>(&raw[..]).is_err());
}

fn touch(key: u8, ts: u64, origin: u8, expires: u64) -> geoul_store::Touch {
    let e = entry(key, ts, origin, None, None);
    geoul_store::Touch {
        key: e.key,
        version: e.version,
        expires_at_ms: expires,
    }
}

#[test]
fn a_touch_extends_only_its_own_version_and_matches_a_full_copy() {
    let mut a = table();
    let mut b = table();
    a.apply(entry(1, 10, 0, Some(1_000), Some(1)));
    b.apply(entry(1, 10, 0, Some(1_000), Some(1)));
    // Renewed on A by a touch, on B by the whole entry (what repair sends).
    assert!(a.touch(&touch(1, 10, 0, 5_000)).expect("held").changed());
    assert!(b.apply(entry(1, 10, 0, Some(5_000), Some(1))).changed());
    assert_eq!(a.slot_digest(slot1()), b.slot_digest(slot1()));
    assert!(
        a.get(b"k\x01", 2_000).is_some(),
        "renewed past its old expiry"
    );
    // An earlier expiry of the same version does not shorten it back.
    assert_eq!(
        a.apply(entry(1, 10, 0, Some(1_000), Some(1))),
        Applied::Stale
    );
    assert_eq!(a.touch(&touch(1, 10, 0, 3_000)), Ok(Applied::Stale));
    // A touch of an older version cannot undo a newer write's expiry.
    a.apply(entry(1, 11, 0, Some(2_000), Some(2)));
    assert_eq!(a.touch(&touch(1, 10, 0, 9_000)), Ok(Applied::Stale));
    assert!(
        a.get(b"k\x01", 1_950).is_none(),
        "the newer write's expiry holds"
    );
    // A replica that lacks the version refuses (sync brings the entry).
    assert_eq!(
        a.touch(&touch(1, 12, 0, 9_000)),
        Err(geoul_store::TouchRefused::Missing)
    );
    assert_eq!(
        a.touch(&touch(9, 1, 0, 9_000)),
        Err(geoul_store::TouchRefused::Missing)
    );
}

#[test]
fn a_swept_value_is_not_revived_by_a_touch_but_by_a_renewed_copy() {
    let mut t = table();
    t.apply(entry(2, 10, 0, Some(1_000), Some(1)));
    while t.stats().values > 0 {
        t.sweep(5_000, 1_000);
    }
    assert_eq!(
        t.touch(&touch(2, 10, 0, 9_000)),
        Err(geoul_store::TouchRefused::Expired)
    );
    // Another replica took the renewal in time: its copy wins everywhere.
    assert!(t.apply(entry(2, 10, 0, Some(9_000), Some(1))).changed());
    assert!(t.get(b"k\x02", 5_000).is_some());
}

fn slot1() -> Slot {
    geoul_placement::slot_of(b"k\x01")
}
