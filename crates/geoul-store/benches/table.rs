//! Micro benchmarks of a table's hot paths: apply (a replica's work per write),
//! visible reads, and document encoding. `cargo bench -p geoul-store`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use geoul_store::{
    Ack, Document, Durability, Entry, Key, Origin, Replication, Table, TableOptions, TableSpec,
    Timestamp, Value, Version,
};

const KEYS: u64 = 100_000;

fn table() -> Table {
    Table::new(
        TableSpec {
            name: "bench".into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
            },
        },
        Duration::from_millis(500),
    )
}

fn entry(i: u64, ts: u64) -> Entry {
    let value = Document::single("value", Value::Bytes(vec![b'x'; 100].into()))
        .and_then(|d| d.encode())
        .expect("valid document");
    Entry {
        key: Key::new(format!("key:{i:08}").as_bytes()).expect("valid key"),
        version: Version {
            ts: Timestamp::from_parts(ts, 0),
            origin: Origin::new("bench", 1),
        },
        expires_at_ms: None,
        value: Some(value),
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("table");
    group.throughput(Throughput::Elements(1));
    group.bench_function("apply_insert_100B", |b| {
        b.iter_batched_ref(
            || (table(), (0..1024).map(|i| entry(i, 1)).collect::<Vec<_>>()),
            |(t, entries)| {
                for e in entries.drain(..) {
                    black_box(t.apply(e));
                }
            },
            BatchSize::SmallInput,
        )
    });
    let mut full = table();
    for i in 0..KEYS {
        full.apply(entry(i, 1));
    }
    let mut ts = 2;
    group.bench_function("apply_overwrite_100B_in_100k", |b| {
        b.iter(|| {
            ts += 1;
            black_box(full.apply(entry(ts % KEYS, ts)))
        })
    });
    group.bench_function("get_visible_in_100k", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(full.get(format!("key:{i:08}").as_bytes(), 1).is_some())
        })
    });
    group.bench_function("encode_document_100B", |b| {
        let doc = Document::single("value", Value::Bytes(vec![b'x'; 100].into())).expect("valid");
        b.iter(|| black_box(doc.encode()))
    });
    group.finish();
}

criterion_group!(table_benches, benches);
criterion_main!(table_benches);
