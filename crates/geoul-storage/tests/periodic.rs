//! `SyncPolicy::Periodic`: a batch becomes durable by the background thread within
//! the period, `flush` makes everything durable at once, and a crash keeps a prefix
//! of whole batches that includes every batch known durable.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{kill9, read_table, read_until, spawn_child};
use geoul_storage::{DiskStore, Record, StorageOptions, SyncPolicy, MAX_SYNC_PERIOD};

const CHILD_ENV: &str = "GEOUL_STORAGE_PERIODIC_CHILD";
const TABLE: &str = "periodic";
const PERIOD: Duration = Duration::from_millis(20);
/// How long the child waits for the flusher before declaring it broken. Generous:
/// this is a liveness bound on a loaded machine, not a timing assertion.
const FLUSHER_DEADLINE: Duration = Duration::from_secs(30);

fn put(store: &DiskStore, n: u64) {
    let key = n.to_be_bytes();
    let value = format!("value {n}");
    let batch = [
        Record {
            table: TABLE,
            key: &key,
            value: Some(value.as_bytes()),
        },
        Record {
            table: TABLE,
            key: b"last",
            value: Some(&key),
        },
    ];
    store.write_batch(&batch).expect("write");
}

/// Not a test by itself: the writer, active only when `CHILD_ENV` is set. Every 10th
/// batch it waits for the background thread to report it durable and prints
/// `DURABLE n`; every 25th it calls `flush` and prints `DURABLE n` too.
#[test]
fn periodic_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let options = StorageOptions::with_sync(SyncPolicy::Periodic(PERIOD));
    let store = DiskStore::open(Path::new(&dir), options).expect("child open");
    for n in 1.. {
        put(&store, n);
        println!("ACK {n}");
        if n % 25 == 0 {
            store.flush().expect("flush");
            println!("DURABLE {n}");
        } else if n % 10 == 0 {
            let deadline = Instant::now() + FLUSHER_DEADLINE;
            while store.stats().durable_batches < n {
                assert!(Instant::now() < deadline, "flusher never synced batch {n}");
                std::thread::sleep(Duration::from_millis(1));
            }
            println!("DURABLE {n}");
        }
    }
}

#[test]
fn crash_keeps_every_batch_made_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seen = Default::default();
    let (child, mut out) = spawn_child("periodic_child", CHILD_ENV, dir.path());
    read_until(&mut out, "DURABLE", 120, &mut seen);
    kill9(child, out, &mut seen);
    let durable = seen["DURABLE"];
    let acked = seen["ACK"];

    let store = DiskStore::open(dir.path(), StorageOptions::default()).expect("reopen");
    let contents = read_table(&store, TABLE).expect("load");
    let last = contents
        .get(b"last".as_slice())
        .map(|v| u64::from_be_bytes(v.as_slice().try_into().expect("8 bytes")))
        .expect("some batch survived");
    assert!(
        last >= durable,
        "batch {durable} was durable but the store ends at {last}"
    );
    assert!(
        last <= acked + 1,
        "store holds batch {last}, beyond what was written"
    );
    // A prefix of whole batches: 1..=last and the `last` pointer, nothing else.
    assert_eq!(contents.len() as u64, last + 1);
    for n in 1..=last {
        let value = contents.get(n.to_be_bytes().as_slice());
        assert_eq!(
            value.map(Vec::as_slice),
            Some(format!("value {n}").as_bytes())
        );
    }
    eprintln!("acknowledged {acked}, durable {durable}, survived {last}");
}

#[test]
fn flush_makes_writes_durable_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A period long enough that only `flush` can have synced.
    let options = StorageOptions::with_sync(SyncPolicy::Periodic(MAX_SYNC_PERIOD));
    let store = DiskStore::open(dir.path(), options.clone()).expect("open");
    for n in 1..=5 {
        put(&store, n);
    }
    let before = store.stats();
    assert_eq!((before.batches, before.durable_batches), (5, 0));
    store.flush().expect("flush");
    let after = store.stats();
    assert_eq!(after.durable_batches, 5);
    assert_eq!(after.sync_latency.count, 1);
    store.flush().expect("flush with nothing new");
    assert_eq!(
        store.stats().sync_latency.count,
        1,
        "a clean flush does not sync"
    );
    drop(store);

    let store = DiskStore::open(dir.path(), options).expect("reopen");
    assert_eq!(read_table(&store, TABLE).expect("load").len(), 6);
}
