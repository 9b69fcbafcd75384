//! geoul-store: the local core of geoul's replicated store.
//!
//! * `value` — documents of typed fields and their compact encoding;
//! * `hlc` — hybrid logical clock with an injected wall clock;
//! * `entry` — keys, versions (last-writer-wins), entries and their digest hash;
//! * `options` — what a service declares about a table;
//! * `order` — the one total order over field values (indexes, queries, sorting);
//! * `index` — secondary indexes: per indexed field, an ordered set of
//!   `(value, key)`; what one change does to it, and range iteration;
//! * `table` — one table's local copy: apply, read-time expiry, sweeper, per-slot
//!   digests, and index maintenance on every change;
//! * `table_index` — the read side of a table's indexes (ranges in value order,
//!   sizes);
//! * `table_sync` — what sync needs: sub-bucket digests, paging, dropping a
//!   slot, tombstone GC.
//!
//! Architecture invariant: no IO, no async, no clock reads except through
//! [`hlc::Clock`]; replication and durability are layered on top.

pub mod entry;
pub mod hlc;
pub mod index;
pub mod options;
pub mod order;
pub mod table;
pub mod table_index;
pub mod table_sync;
pub mod value;

pub use entry::{freshness, Change, Entry, Key, KeyError, Origin, Touch, Version, KEY_BYTES_MAX};
pub use hlc::{Clock, ClockSkewError, Hlc, ManualClock, SystemClock, Timestamp};
pub use index::IndexKeys;
pub use options::{
    Ack, Durability, Replication, SpecError, TableOptions, TableSpec, INDEXES_MAX,
    SUMMARY_BYTES_MAX,
};
pub use order::{compare_values, values_equal, OrdValue};
pub use table::{Applied, SweepStats, Table, TableStats, TouchRefused, Ttl, Visible};
pub use table_sync::{
    bucket_of, collectable, BucketMask, Cursor, GcStats, KeyVersion, Page, ALL_BUCKETS, BUCKETS,
};
pub use value::{DocError, Document, EncodedDoc, Value};
