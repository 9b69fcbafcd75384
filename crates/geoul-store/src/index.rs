//! Secondary indexes: for each indexed field, the table's keys ordered by that
//! field's value.
//!
//! Owns: the index structure (`Indexes`), how one stored document change
//! updates it, and range iteration over it ([`IndexKeys`]). Does not own: which
//! fields are indexed (`options` declares and validates them), when entries
//! change (`table` and `table_sync` call in on every change), the order of
//! values (`order`), or visibility (an index knows nothing of expiry; readers
//! re-check each key with `Table::get`).
//!
//! What is indexed: an entry that holds a value (not a delete, not a swept
//! expiry marker) and whose document has the field. A document without the
//! field is absent from that field's index. The invariant every mutation keeps:
//! each index equals what recomputing it from the table's entries gives.
//!
//! Layout: one `BTreeSet` of `(value, key)` per field. Ranges over a value need
//! bounds that fall between keys ("before every key holding 5", "after every
//! key holding 5"), which no real key can express, so the set is searched
//! through a `Probe` trait object that is either an entry or such an edge.
//! Removals probe with borrowed parts too: a write never clones a key just to
//! find what to remove.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{btree_set, BTreeSet};
use std::ops::Bound;

use crate::entry::Key;
use crate::order::compare_values;
use crate::value::{EncodedDoc, Value};

/// Longest key an index element holds inline, without an allocation of its
/// own: 22 bytes keep [`IndexKey`] at 24 bytes (8 more than a boxed slice)
/// and cover short composite keys (`eu/ranked/12345678`).
const INLINE_KEY_BYTES_MAX: usize = 22;

/// A key as an index element holds it: a copy, inline when short.
///
/// Not a `Key` clone: `Key` is a boxed slice, so a clone is an allocation
/// per element, and every comparison between two elements holding the same
/// value would follow two pointers (in a low-cardinality index, most
/// comparisons). Sharing the table's key instead (reference counting) would
/// add a counter to every key of every table, indexed or not.
#[derive(Debug)]
enum IndexKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES_MAX],
    },
    Heap(Box<[u8]>),
}

impl IndexKey {
    fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE_KEY_BYTES_MAX => {
                let mut bytes = [0u8; INLINE_KEY_BYTES_MAX];
                bytes[..key.len()].copy_from_slice(key);
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(key.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            // `new` is the only constructor and keeps `len` within the array.
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

/// One index element: a field value and the key whose document holds it.
#[derive(Debug)]
struct IndexEntry {
    value: Value,
    key: IndexKey,
}

/// Where a probe sits among the elements holding one value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum At<'a> {
    /// Before every key.
    Before,
    /// At this key.
    Key(&'a [u8]),
    /// After every key.
    After,
}

/// Something the set can be searched with: ordered by value, then position.
trait Probe {
    fn value(&self) -> &Value;
    fn at(&self) -> At<'_>;
}

impl Probe for IndexEntry {
    fn value(&self) -> &Value {
        &self.value
    }
    fn at(&self) -> At<'_> {
        At::Key(self.key.as_bytes())
    }
}

/// An element made of borrowed parts (for removals).
struct EntryRef<'a> {
    value: &'a Value,
    key: &'a [u8],
}

impl Probe for EntryRef<'_> {
    fn value(&self) -> &Value {
        self.value
    }
    fn at(&self) -> At<'_> {
        At::Key(self.key)
    }
}

/// The edge before or after every element holding `value` (for ranges).
struct Edge<'a> {
    value: &'a Value,
    after: bool,
}

impl Probe for Edge<'_> {
    fn value(&self) -> &Value {
        self.value
    }
    fn at(&self) -> At<'_> {
        if self.after {
            At::After
        } else {
            At::Before
        }
    }
}

impl Ord for dyn Probe + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_values(self.value(), other.value()).then_with(|| self.at().cmp(&other.at()))
    }
}

impl PartialOrd for dyn Probe + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn Probe + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn Probe + '_ {}

// `Borrow` requires the borrowed form to order like the owned one: both go
// through the same `dyn Probe` comparison.
impl<'a> Borrow<dyn Probe + 'a> for IndexEntry {
    fn borrow(&self) -> &(dyn Probe + 'a) {
        self
    }
}

impl Ord for IndexEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self as &dyn Probe).cmp(other as &dyn Probe)
    }
}

impl PartialOrd for IndexEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for IndexEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for IndexEntry {}

/// The index of one field.
struct FieldIndex {
    field: String,
    entries: BTreeSet<IndexEntry>,
}

/// The value of `field` in `doc`, as the index sees it.
fn read(doc: &EncodedDoc, field: &str) -> Option<Value> {
    // A stored document was validated when it was built or received, so this
    // cannot fail; if it ever did, the field counts as absent, which keeps
    // `apply` infallible and the index equal to a recomputation (which reads
    // fields the same way).
    let value = doc.field(field);
    debug_assert!(value.is_ok(), "stored document unreadable: {value:?}");
    value.ok().flatten()
}

impl FieldIndex {
    fn insert(&mut self, value: Value, key: &Key) {
        let key = IndexKey::new(key.as_bytes());
        let fresh = self.entries.insert(IndexEntry { value, key });
        debug_assert!(fresh, "index {}: element inserted twice", self.field);
    }

    fn remove(&mut self, value: &Value, key: &Key) {
        let probe = EntryRef {
            value,
            key: key.as_bytes(),
        };
        let found = self.entries.remove(&probe as &dyn Probe);
        debug_assert!(found, "index {}: element to remove is missing", self.field);
    }
}

/// Every index of one table.
pub(crate) struct Indexes {
    fields: Vec<FieldIndex>,
}

impl Indexes {
    /// Empty indexes on `fields` (a field named twice is indexed once).
    pub(crate) fn new(fields: &[String]) -> Self {
        let mut indexes: Vec<FieldIndex> = Vec::with_capacity(fields.len());
        for field in fields {
            if !indexes.iter().any(|i| i.field == *field) {
                indexes.push(FieldIndex {
                    field: field.clone(),
                    entries: BTreeSet::new(),
                });
            }
        }
        Self { fields: indexes }
    }

    /// Whether there are no indexes (then no write needs to read a field).
    pub(crate) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn get(&self, field: &str) -> Option<&FieldIndex> {
        self.fields.iter().find(|i| i.field == field)
    }

    /// `key` held `old` and now holds `new` (`None`: no value, i.e. absent, a
    /// delete or an expiry marker).
    pub(crate) fn update(&mut self, key: &Key, old: Option<&EncodedDoc>, new: Option<&EncodedDoc>) {
        for index in &mut self.fields {
            let before = old.and_then(|doc| read(doc, &index.field));
            let after = new.and_then(|doc| read(doc, &index.field));
            // Structural equality, not the order's (`2` and `2.0` are equal
            // there): the index keeps the value's type as the document has it.
            if before == after {
                continue;
            }
            if let Some(value) = &before {
                index.remove(value, key);
            }
            if let Some(value) = after {
                index.insert(value, key);
            }
        }
    }

    /// `key`, which held `old`, no longer holds a value (swept, collected, or
    /// its slot dropped).
    pub(crate) fn remove(&mut self, key: &Key, old: Option<&EncodedDoc>) {
        let Some(doc) = old else {
            return;
        };
        for index in &mut self.fields {
            if let Some(value) = read(doc, &index.field) {
                index.remove(&value, key);
            }
        }
    }

    /// Number of elements of `field`'s index, if it is indexed.
    pub(crate) fn len(&self, field: &str) -> Option<usize> {
        self.get(field).map(|i| i.entries.len())
    }

    /// Elements per index, in declaration order.
    pub(crate) fn stats(&self) -> Vec<(String, usize)> {
        self.fields
            .iter()
            .map(|i| (i.field.clone(), i.entries.len()))
            .collect()
    }

    /// Every element of `field`'s index, in order (for checks).
    #[cfg(test)]
    pub(crate) fn elements(&self, field: &str) -> Option<Vec<(Value, Vec<u8>)>> {
        self.get(field).map(|i| {
            i.entries
                .iter()
                .map(|e| (e.value.clone(), e.key.as_bytes().to_vec()))
                .collect()
        })
    }

    /// Keys whose `field` value is within the bounds; `None` if `field` is not
    /// indexed.
    pub(crate) fn range(
        &self,
        field: &str,
        lower: Bound<&Value>,
        upper: Bound<&Value>,
        descending: bool,
    ) -> Option<IndexKeys<'_>> {
        let index = self.get(field)?;
        // Included/excluded becomes which side of a value's run the edge
        // sits on; edges never equal an element, so both ends are "included".
        let lower = match lower {
            Bound::Included(value) => Some(Edge {
                value,
                after: false,
            }),
            Bound::Excluded(value) => Some(Edge { value, after: true }),
            Bound::Unbounded => None,
        };
        let upper = match upper {
            Bound::Included(value) => Some(Edge { value, after: true }),
            Bound::Excluded(value) => Some(Edge {
                value,
                after: false,
            }),
            Bound::Unbounded => None,
        };
        let nan = |edge: &Option<Edge<'_>>| {
            edge.as_ref()
                .is_some_and(|e| matches!(e.value, Value::Float(x) if x.is_nan()))
        };
        // NaN has no place in the order (no stored value is NaN); an empty
        // range also keeps an ill-defined comparison away from the set, which
        // may panic on one. So does a lower bound above the upper one.
        let empty = nan(&lower)
            || nan(&upper)
            || matches!((&lower, &upper), (Some(l), Some(u))
                if (l as &dyn Probe) > (u as &dyn Probe));
        if empty {
            return Some(IndexKeys {
                range: None,
                descending,
            });
        }
        let range = index
            .entries
            .range::<dyn Probe, _>((edge_bound(&lower), edge_bound(&upper)));
        Some(IndexKeys {
            range: Some(range),
            descending,
        })
    }
}

fn edge_bound<'a>(edge: &'a Option<Edge<'a>>) -> Bound<&'a (dyn Probe + 'a)> {
    match edge {
        Some(e) => Bound::Included(e),
        None => Bound::Unbounded,
    }
}

/// Keys from one index range, in `(value, key)` order, or exactly its reverse
/// when descending (so within one value, keys run descending too).
#[derive(Debug)]
pub struct IndexKeys<'a> {
    range: Option<btree_set::Range<'a, IndexEntry>>,
    descending: bool,
}

impl<'a> Iterator for IndexKeys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let range = self.range.as_mut()?;
        let entry = if self.descending {
            range.next_back()
        } else {
            range.next()
        };
        entry.map(|e| e.key.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_up_to_the_inline_bound_need_no_allocation_of_their_own() {
        assert_eq!(std::mem::size_of::<IndexKey>(), 24);
        for len in [1, INLINE_KEY_BYTES_MAX, INLINE_KEY_BYTES_MAX + 1, 1024] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let key = IndexKey::new(&bytes);
            assert_eq!(key.as_bytes(), &bytes[..]);
            assert_eq!(
                matches!(key, IndexKey::Inline { .. }),
                len <= INLINE_KEY_BYTES_MAX
            );
        }
    }
}
