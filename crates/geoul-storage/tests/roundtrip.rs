//! Writes, deletes and loads across reopen; table isolation; bounds; locking.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{read_table, Contents};
use geoul_storage::{
    DiskStore, Record, StorageError, StorageOptions, SyncPolicy, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};

fn open(dir: &std::path::Path) -> DiskStore {
    DiskStore::open(dir, StorageOptions::default()).expect("open")
}

fn put<'a>(table: &'a str, key: &'a [u8], value: &'a [u8]) -> Record<'a> {
    Record {
        table,
        key,
        value: Some(value),
    }
}

fn del<'a>(table: &'a str, key: &'a [u8]) -> Record<'a> {
    Record {
        table,
        key,
        value: None,
    }
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DiskStore>();
}

#[test]
fn write_delete_load_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tables");
    {
        let store = open(&path);
        assert!(store.tables().expect("tables").is_empty());
        store
            .write_batch(&[
                put("t", b"a", b"1"),
                put("t", b"b", b"2"),
                put("t", b"c", b"3"),
            ])
            .expect("write");
        // Later records win within a batch; deletes of absent keys are no-ops.
        store
            .write_batch(&[
                del("t", b"b"),
                put("t", b"c", b"x"),
                put("t", b"c", b"4"),
                del("t", b"zz"),
            ])
            .expect("write");
        store.write_batch(&[]).expect("empty batch");
        let stats = store.stats();
        assert_eq!(
            (stats.batches, stats.records, stats.durable_batches),
            (2, 7, 2)
        );
        assert!(stats.bytes_on_disk.is_some_and(|b| b > 0));
    }
    let store = open(&path);
    let expected: Contents = [
        (b"a".to_vec(), b"1".to_vec()),
        (b"c".to_vec(), b"4".to_vec()),
    ]
    .into();
    assert_eq!(read_table(&store, "t").expect("load"), expected);
    assert_eq!(store.tables().expect("tables"), vec!["t".to_string()]);
    assert_eq!(read_table(&store, "never-written").expect("load").len(), 0);
}

#[test]
fn many_tables_are_isolated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..40).map(|i| format!("table_{i:02}")).collect();
    {
        let store = open(dir.path());
        // One batch spanning all tables, with the same keys in each.
        let values: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        let mut batch = Vec::new();
        for (name, value) in names.iter().zip(&values) {
            for key in [b"k1".as_slice(), b"k2", b"k3"] {
                batch.push(put(name, key, value));
            }
        }
        store.write_batch(&batch).expect("write");
        store
            .write_batch(&[del(&names[3], b"k2")])
            .expect("delete in one table");
        store.drop_table(&names[7]).expect("drop");
        store
            .drop_table("absent")
            .expect("dropping a missing table is a no-op");
    }
    let store = open(dir.path());
    let tables = store.tables().expect("tables");
    assert_eq!(tables.len(), names.len() - 1);
    assert!(!tables.contains(&names[7]));
    for name in &names {
        let contents = read_table(&store, name).expect("load");
        let expected_len = match name.as_str() {
            n if n == names[7] => 0,
            n if n == names[3] => 2,
            _ => 3,
        };
        assert_eq!(contents.len(), expected_len, "{name}");
        assert!(
            contents.values().all(|v| v == name.as_bytes()),
            "{name} holds only its own values"
        );
    }
}

#[test]
fn bounds_are_enforced_and_a_rejected_batch_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let max_key = vec![7u8; MAX_KEY_BYTES];
    let max_value = vec![9u8; MAX_VALUE_BYTES];
    store
        .write_batch(&[put("big", &max_key, &max_value)])
        .expect("at the bounds");

    let long_value = vec![0u8; MAX_VALUE_BYTES + 1];
    let long_key = vec![0u8; MAX_KEY_BYTES + 1];
    let err = store
        .write_batch(&[put("big", b"ok", b"ok"), put("big", b"v", &long_value)])
        .expect_err("value over the bound");
    assert!(
        matches!(err, StorageError::TooLarge { what: "value", len, max } if len == MAX_VALUE_BYTES + 1 && max == MAX_VALUE_BYTES)
    );
    let err = store
        .write_batch(&[del("big", &long_key)])
        .expect_err("key over the bound");
    assert!(matches!(err, StorageError::TooLarge { what: "key", .. }));
    let err = store
        .write_batch(&[put("Big", b"k", b"v")])
        .expect_err("bad name");
    assert!(matches!(err, StorageError::BadTableName(name) if name == "Big"));
    assert!(matches!(
        store.load("a/b", |_, _| Ok(())),
        Err(StorageError::BadTableName(_))
    ));
    assert!(matches!(
        store.drop_table(""),
        Err(StorageError::BadTableName(_))
    ));
    drop(store);

    let store = open(dir.path());
    let contents = read_table(&store, "big").expect("load");
    assert_eq!(contents, BTreeMap::from([(max_key, max_value)]));
}

#[test]
fn visitor_errors_stop_the_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let keys: Vec<[u8; 4]> = (0u32..100).map(u32::to_be_bytes).collect();
    let batch: Vec<_> = keys.iter().map(|k| put("t", k, b"v")).collect();
    store.write_batch(&batch).expect("write");
    let mut visited = 0;
    let err = store
        .load("t", |_, _| {
            visited += 1;
            if visited == 10 {
                return Err(StorageError::Corrupt {
                    file: "x".into(),
                    table: Some("t".into()),
                    detail: "does not decode".into(),
                });
            }
            Ok(())
        })
        .expect_err("visitor error");
    assert!(matches!(err, StorageError::Corrupt { .. }));
    assert_eq!(visited, 10);
}

#[test]
fn a_second_open_of_the_same_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = open(dir.path());
    let err = DiskStore::open(dir.path(), StorageOptions::default()).expect_err("locked");
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StorageOptions::with_sync(SyncPolicy::Periodic(std::time::Duration::ZERO));
    let err = DiskStore::open(dir.path(), options).expect_err("zero period");
    assert!(matches!(err, StorageError::BadOptions(_)));
}

#[test]
fn concurrent_writers_and_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    for sync in [
        SyncPolicy::EveryBatch,
        SyncPolicy::Periodic(std::time::Duration::from_millis(5)),
    ] {
        let store =
            Arc::new(DiskStore::open(dir.path(), StorageOptions::with_sync(sync)).expect("open"));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let table = format!("w{t}");
                    for i in 0u16..50 {
                        let key = i.to_be_bytes();
                        store
                            .write_batch(&[put(&table, &key, &[t])])
                            .expect("write");
                        store
                            .load(&table, |_, v| {
                                assert_eq!(v, [t]);
                                Ok(())
                            })
                            .expect("load");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer thread");
        }
        store.flush().expect("flush");
        let stats = store.stats();
        assert_eq!(stats.durable_batches, stats.batches);
        assert_eq!(store.tables().expect("tables").len(), 4);
        for t in 0..4 {
            assert_eq!(
                read_table(&store, &format!("w{t}")).expect("load").len(),
                50
            );
        }
    }
}

#[test]
fn compaction_on_open_keeps_the_data_and_shrinks_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let value = vec![3u8; 2000];
    let keys: Vec<[u8; 4]> = (0u32..2000).map(u32::to_be_bytes).collect();
    let size_before = {
        let store = open(dir.path());
        for chunk in keys.chunks(100) {
            let batch: Vec<_> = chunk.iter().map(|k| put("c", k, &value)).collect();
            store.write_batch(&batch).expect("write");
        }
        // Delete most of it, leaving free pages behind.
        let batch: Vec<_> = keys[100..].iter().map(|k| del("c", k)).collect();
        store.write_batch(&batch).expect("delete");
        store.stats().bytes_on_disk.expect("size")
    };
    let options = StorageOptions {
        compact_on_open: true,
        ..StorageOptions::default()
    };
    let store = DiskStore::open(dir.path(), options).expect("open with compaction");
    let size_after = store.stats().bytes_on_disk.expect("size");
    assert!(size_after < size_before, "{size_after} < {size_before}");
    let contents = read_table(&store, "c").expect("load");
    assert_eq!(contents.len(), 100);
    assert!(contents.values().all(|v| v == &value));
}
