//! What a query executor needs from a table's secondary indexes: which fields
//! are indexed, the keys whose field value lies in a range, in value order, and
//! sizes for planning and metrics.
//!
//! Owns: the read API of a table's indexes. Does not own: the index structure
//! (`index`), keeping it up to date (`table` and `table_sync` do on every
//! change), or planning and running queries (a later layer).
//!
//! Indexes are not filtered by time: an entry that expired but was not swept
//! yet is still indexed (expiry is decided at read time, with the skew margin,
//! and only the sweeper changes what is stored). Callers re-check each key with
//! [`Table::get`] at their `now`, which they need anyway for the document.

use std::ops::Bound;

use crate::index::IndexKeys;
use crate::table::Table;
use crate::value::Value;

impl Table {
    /// Whether `field` has an index (declared in `TableOptions::indexes`).
    pub fn has_index(&self, field: &str) -> bool {
        self.indexes.len(field).is_some()
    }

    /// Keys of the entries whose document has `field` with a value within
    /// `lower` and `upper`, under the one order of values
    /// ([`crate::compare_values`]: `bool < number < string < bytes`, integers
    /// and floats compared exactly as numbers, so `Included(&Int(2))` matches
    /// a stored `2.0`). `None` if `field` is not indexed.
    ///
    /// Ascending yields keys in `(value, key)` order; descending yields exactly
    /// the reverse, so keys holding one value come in descending key order.
    /// Bounds that admit nothing (lower above upper, or a NaN) give an empty
    /// iterator. Lazy: the cost is `O(log n)` plus the keys taken.
    ///
    /// Yields key bytes, the form [`Table::get`] takes: the index keeps its own
    /// copy of each key, inline when short, rather than a `Key`.
    ///
    /// Includes entries expired but not swept yet: re-check each key with
    /// [`Table::get`] (see the module doc).
    pub fn index_range(
        &self,
        field: &str,
        lower: Bound<&Value>,
        upper: Bound<&Value>,
        descending: bool,
    ) -> Option<IndexKeys<'_>> {
        self.indexes.range(field, lower, upper, descending)
    }

    /// Entries in `field`'s index (`None` if it is not indexed), in `O(1)`:
    /// what a planner can weigh an index by. There is deliberately no count of
    /// the entries in a range or of one value: an ordered set counts those
    /// only by walking them, so a caller that wants an estimate takes a
    /// bounded prefix of [`Table::index_range`] and pays for what it sees.
    pub fn index_len(&self, field: &str) -> Option<usize> {
        self.indexes.len(field)
    }

    /// Entries per index, in declaration order (for metrics).
    pub fn index_stats(&self) -> Vec<(String, usize)> {
        self.indexes.stats()
    }
}

#[cfg(test)]
mod tests;
