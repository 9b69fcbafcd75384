//! `kill -9` in the middle of a stream of batches: every acknowledged batch survives,
//! every batch is all or nothing, and what survives is a prefix of the stream.
//!
//! The writer is this test binary re-executed as a child (`crash_child`), which
//! prints `ACK n` only after `write_batch` of batch `n` returned. The parent kills it
//! at a different point in each of several rounds on the same directory, reopening
//! and checking in between, so recovery is also exercised on a recovered file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{kill9, read_table, read_until, spawn_child};
use geoul_storage::{DiskStore, Record, StorageOptions, SyncPolicy};

const CHILD_ENV: &str = "GEOUL_STORAGE_CRASH_CHILD";
/// Records per batch in the main table (plus a marker, a delete and one record in a
/// second table).
const RECORDS_PER_BATCH: u32 = 20;
const MAIN: &str = "crash";
const SIDE: &str = "crash.side";
const MARKER: &[u8] = b"marker";

fn key(batch: u64, i: u32) -> Vec<u8> {
    format!("b{batch:08}-{i:02}").into_bytes()
}

fn value(batch: u64, i: u32) -> Vec<u8> {
    // 100 bytes that differ per batch and record, so a torn or stale value shows.
    let seed = format!("{batch}:{i}:");
    seed.bytes().cycle().take(100).collect()
}

/// The last batch recorded in the store (0 if none).
fn marker(store: &DiskStore) -> u64 {
    let main = read_table(store, MAIN).expect("load main table");
    main.get(MARKER).map_or(0, |v| {
        u64::from_le_bytes(v.as_slice().try_into().expect("8-byte marker"))
    })
}

/// Batch `n`: 20 puts, the marker set to `n`, batch `n - 1`'s first key deleted, and
/// one put in a second table. Every part of it is visible after a crash or none.
fn write_batch(store: &DiskStore, n: u64) {
    let keys: Vec<_> = (0..RECORDS_PER_BATCH).map(|i| key(n, i)).collect();
    let values: Vec<_> = (0..RECORDS_PER_BATCH).map(|i| value(n, i)).collect();
    let previous_first = key(n - 1, 0);
    let marker_value = n.to_le_bytes();
    let side_key = n.to_be_bytes();
    let mut batch: Vec<Record<'_>> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| Record {
            table: MAIN,
            key: k,
            value: Some(v),
        })
        .collect();
    batch.push(Record {
        table: MAIN,
        key: &previous_first,
        value: None,
    });
    batch.push(Record {
        table: MAIN,
        key: MARKER,
        value: Some(&marker_value),
    });
    batch.push(Record {
        table: SIDE,
        key: &side_key,
        value: Some(b"side"),
    });
    store.write_batch(&batch).expect("write batch");
}

/// Not a test by itself: the writer process, active only when the parent sets
/// `CHILD_ENV`. Writes batches forever, acknowledging each on stdout.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = DiskStore::open(
        Path::new(&dir),
        StorageOptions::with_sync(SyncPolicy::EveryBatch),
    )
    .expect("child open");
    let mut n = marker(&store);
    loop {
        n += 1;
        write_batch(&store, n);
        println!("ACK {n}");
    }
}

/// Asserts the store holds exactly batches `1..=m` for some `m >= acked`, each whole.
fn check(dir: &Path, acked: u64) -> u64 {
    let store = DiskStore::open(dir, StorageOptions::default()).expect("reopen after kill -9");
    let m = marker(&store);
    assert!(
        m >= acked,
        "batch {acked} was acknowledged but the store ends at {m}"
    );

    let main = read_table(&store, MAIN).expect("load main");
    let side = read_table(&store, SIDE).expect("load side");
    let mut expected = BTreeMap::new();
    let mut expected_side = BTreeMap::new();
    for n in 1..=m {
        let first = if n == m { 0 } else { 1 };
        for i in first..RECORDS_PER_BATCH {
            expected.insert(key(n, i), value(n, i));
        }
        expected_side.insert(n.to_be_bytes().to_vec(), b"side".to_vec());
    }
    expected.insert(MARKER.to_vec(), m.to_le_bytes().to_vec());
    // Any trace of batch m + 1 (a partial batch) or a lost delete fails here.
    assert!(
        main == expected,
        "main table is not exactly batches 1..={m}"
    );
    assert_eq!(
        side, expected_side,
        "side table is not exactly batches 1..={m}"
    );
    m
}

#[test]
fn kill_9_loses_no_acknowledged_batch_and_tears_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut survived = 0;
    // Kill at a different depth each round; the child resumes from the marker.
    for extra in [1u64, 37, 150, 5, 400, 2, 90, 13] {
        let mut seen = BTreeMap::new();
        let (child, mut out) = spawn_child("crash_child", CHILD_ENV, dir.path());
        read_until(&mut out, "ACK", survived + extra, &mut seen);
        kill9(child, out, &mut seen);
        let acked = seen.get("ACK").copied().unwrap_or(0);
        survived = check(dir.path(), acked);
        eprintln!("round: acknowledged {acked}, store holds {survived} whole batches");
    }
}
