//! Micro benchmarks of a table's hot paths: apply (a replica's work per write),
//! with and without a secondary index, visible reads, document encoding and
//! reading one field of an encoded document. `cargo bench -p geoul-store`.
//!
//! The apply benches build each entry (key text, document encoding) inside the
//! timed loop, as a replica receives them; `encode_document_100B` shows that
//! share.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use geoul_store::{
    Ack, Document, Durability, EncodedDoc, Entry, Key, Origin, Replication, Table, TableOptions,
    TableSpec, Timestamp, Value, Version,
};

const KEYS: u64 = 100_000;
/// Entries per iteration of the insert benches (each starts from an empty table).
const BATCH: u64 = 1024;

fn table(indexes: &[&str]) -> Table {
    Table::new(
        TableSpec {
            name: "bench".into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
                indexes: indexes.iter().map(|f| f.to_string()).collect(),
            },
        },
        Duration::from_millis(500),
    )
}

fn entry_of(i: u64, ts: u64, doc: Document) -> Entry {
    Entry {
        key: Key::new(format!("key:{i:08}").as_bytes()).expect("valid key"),
        version: Version {
            ts: Timestamp::from_parts(ts, 0),
            origin: Origin::new("bench", 1),
        },
        expires_at_ms: None,
        value: Some(doc.encode().expect("valid document")),
    }
}

fn payload() -> Value {
    Value::Bytes(vec![b'x'; 100].into())
}

/// The kv shape: one 100-byte field.
fn entry(i: u64, ts: u64) -> Entry {
    entry_of(
        i,
        ts,
        Document::single("value", payload()).expect("valid document"),
    )
}

/// A record with an integer `score` next to the 100-byte field.
fn scored(i: u64, ts: u64, score: i64) -> Entry {
    let doc = Document::from_fields([
        ("score".to_string(), Value::Int(score)),
        ("value".to_string(), payload()),
    ])
    .expect("valid document");
    entry_of(i, ts, doc)
}

/// A table of `KEYS` scored entries.
fn full_scored(indexes: &[&str]) -> Table {
    let mut t = table(indexes);
    for i in 0..KEYS {
        t.apply(scored(i, 1, (i % 1000) as i64));
    }
    t
}

fn apply_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("table");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("apply_insert_100B", |b| {
        b.iter_batched_ref(
            || {
                (
                    table(&[]),
                    (0..BATCH).map(|i| entry(i, 1)).collect::<Vec<_>>(),
                )
            },
            |(t, entries)| {
                for e in entries.drain(..) {
                    black_box(t.apply(e));
                }
            },
            BatchSize::SmallInput,
        )
    });
    for (name, indexes) in [("noindex", &[][..]), ("indexed", &["score"][..])] {
        group.bench_function(format!("apply_insert_scored_100B_{name}"), |b| {
            b.iter_batched_ref(
                || {
                    let entries = (0..BATCH).map(|i| scored(i, 1, (i % 1000) as i64));
                    (table(indexes), entries.collect::<Vec<_>>())
                },
                |(t, entries)| {
                    for e in entries.drain(..) {
                        black_box(t.apply(e));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.throughput(Throughput::Elements(1));
    let mut full = table(&[]);
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
    for (name, indexes) in [("noindex", &[][..]), ("indexed", &["score"][..])] {
        let mut t = full_scored(indexes);
        let mut ts = 2;
        // Every overwrite changes the score: the index removes and inserts.
        group.bench_function(format!("apply_overwrite_scored_100B_in_100k_{name}"), |b| {
            b.iter(|| {
                ts += 1;
                black_box(t.apply(scored(ts % KEYS, ts, (ts % 997) as i64)))
            })
        });
    }
    group.bench_function("get_visible_in_100k", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(full.get(format!("key:{i:08}").as_bytes(), 1).is_some())
        })
    });
    group.finish();
}

fn document_benches(c: &mut Criterion) {
    // The same group as the apply benches: names stay comparable with saved
    // baselines.
    let mut group = c.benchmark_group("table");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_document_100B", |b| {
        let doc = Document::single("value", payload()).expect("valid");
        b.iter(|| black_box(doc.encode()))
    });
    // Twelve fields, the one read last in name order: the walk's worst case.
    let wide: EncodedDoc = Document::from_fields((0..12).map(|i| {
        let value = if i % 2 == 0 {
            Value::Str(format!("text of field {i}"))
        } else {
            Value::Int(i)
        };
        (format!("f{i:02}"), value)
    }))
    .and_then(|d| d.encode())
    .expect("valid");
    group.bench_function("read_last_of_12_fields", |b| {
        b.iter(|| black_box(wide.field(black_box("f11"))))
    });
    group.bench_function("decode_12_fields_then_get", |b| {
        b.iter(|| black_box(wide.decode().map(|d| d.get(black_box("f11")).cloned())))
    });
    group.finish();
}

criterion_group!(table_benches, apply_benches, document_benches);
criterion_main!(table_benches);
