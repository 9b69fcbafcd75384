//! Memory cost of a secondary index per entry: loads the same entries into a
//! table without and with an index and prints the difference in live heap
//! bytes (counted by a wrapping allocator) per entry.
//!
//! `cargo run --release -p geoul-store --example index_memory [entries=1000000]`
//!
//! Heap bytes are what the program asked for; the allocator's own overhead
//! (about 8-16 bytes per allocation for glibc) comes on top, which is why
//! index elements avoid allocations of their own where they can.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use geoul_store::{
    Ack, Document, Durability, Entry, Key, Origin, Replication, Table, TableOptions, TableSpec,
    Timestamp, Value, Version,
};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn table(indexes: &[&str]) -> Table {
    Table::new(
        TableSpec {
            name: "memory".into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
                indexes: indexes.iter().map(|f| f.to_string()).collect(),
            },
        },
        Duration::ZERO,
    )
}

fn entry(key: &str, score: i64, region: &str) -> Entry {
    let doc = Document::from_fields([
        ("region".to_string(), Value::Str(region.to_string())),
        ("score".to_string(), Value::Int(score)),
        ("value".to_string(), Value::Bytes(vec![b'x'; 100].into())),
    ])
    .and_then(|d| d.encode())
    .expect("valid document");
    Entry {
        key: Key::new(key.as_bytes()).expect("valid key"),
        version: Version {
            ts: Timestamp::from_parts(1, 0),
            origin: Origin::new("memory", 1),
        },
        expires_at_ms: None,
        value: Some(doc),
    }
}

/// A permutation of `0..n` (7919 is prime, so coprime with any `n` it does
/// not divide).
fn scatter(j: u64, n: u64) -> u64 {
    if n.is_multiple_of(7919) {
        j
    } else {
        j * 7919 % n
    }
}

/// Live heap bytes and allocations of a table of `n` entries.
fn load(n: u64, indexes: &[&str], key_of: &dyn Fn(u64) -> String) -> (usize, usize) {
    let (bytes, allocations) = (
        LIVE.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    let mut t = table(indexes);
    for j in 0..n {
        // Keys in a scattered order, as writes arrive: appending each value's
        // keys in order would leave B-tree leaves about half full (~120 B
        // per int-index entry instead of ~95).
        let i = scatter(j, n);
        let region = ["eu-west", "us-east", "ap-south"][(i % 3) as usize];
        t.apply(entry(&key_of(i), (i % 1000) as i64, region));
    }
    let used = (
        LIVE.load(Ordering::Relaxed) - bytes,
        ALLOCATIONS.load(Ordering::Relaxed) - allocations,
    );
    drop(t);
    used
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("entries: a number"))
        .unwrap_or(1_000_000);
    let short = |i: u64| format!("key:{i:08}");
    let long = |i: u64| format!("instance/eu-west/ranked/{i:016}");
    println!("{n} entries, 100-byte documents; per entry, index cost = indexed - plain");
    for (keys, key_of) in [
        ("12-byte keys", &short as &dyn Fn(u64) -> String),
        ("40-byte keys", &long),
    ] {
        let (plain, plain_allocs) = load(n, &[], key_of);
        println!(
            "{keys}: plain table {:.1} B/entry, {:.2} allocations/entry",
            plain as f64 / n as f64,
            plain_allocs as f64 / n as f64
        );
        for (what, fields) in [
            ("int index (score)", &["score"][..]),
            ("string index (region)", &["region"][..]),
        ] {
            let (indexed, allocs) = load(n, fields, key_of);
            println!(
                "  + {what}: {:.1} B/entry, {:.2} allocations/entry",
                (indexed as f64 - plain as f64) / n as f64,
                (allocs as f64 - plain_allocs as f64) / n as f64
            );
        }
    }
}
