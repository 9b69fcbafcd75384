//! Result order: sort keys, their total order, and cursors for paging.
//!
//! Owns: [`SortKey`], [`compare`], [`Cursor`] (its text form and its checks) and
//! [`CursorError`].
//! Does not own: the order over single values (`geoul_store::compare_values`),
//! keeping the best rows ([`crate::TopK`]) or merging pages
//! ([`crate::merge_pages`]).
//!
//! The order: for each order key, present values compare with
//! [`compare_values`] (reversed for `desc`) and a missing value sorts after every
//! present one in both directions (so "rows without a rating" come last whether
//! the best or the worst are asked for); then the entry's key bytes, ascending.
//! Entry keys are unique in a table, so the order is total over a table's rows
//! and a cursor (the last row's sort key) marks an exact place to resume.

use std::cmp::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use geoul_store::{compare_values, Document, Value, KEY_BYTES_MAX};
use serde::{Deserialize, Serialize};

use crate::ast::{OrderKey, ORDER_KEYS_MAX};

/// Largest cursor, encoded (postcard). A cursor is up to [`ORDER_KEYS_MAX`] sort
/// values plus a key; 4 KiB holds any reasonable sort values and keeps the text
/// form (about 5.5 KB) inside the URL length proxies accept (8 KiB is common).
pub const CURSOR_BYTES_MAX: usize = 4096;
/// Longest cursor text: base64 of [`CURSOR_BYTES_MAX`] bytes, unpadded.
pub const CURSOR_TEXT_MAX: usize = CURSOR_BYTES_MAX.div_ceil(3) * 4;
/// First byte of an encoded cursor. Cursors are opaque to clients but may
/// outlive a release; a changed layout bumps this so old cursors fail clearly.
const CURSOR_FORMAT: u8 = 1;

/// Where a row sorts under one order: its values for the order keys (`None` =
/// field missing) and its entry key, the final tie-break.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SortKey {
    /// One value per order key, in order-key order.
    pub values: Vec<Option<Value>>,
    /// The entry's key bytes.
    pub key: Vec<u8>,
}

impl SortKey {
    /// The sort key of the entry `key` holding `doc`, under `order`.
    pub fn new(order: &[OrderKey], doc: &Document, key: &[u8]) -> Self {
        Self {
            values: order.iter().map(|k| doc.get(&k.field).cloned()).collect(),
            key: key.to_vec(),
        }
    }

    /// [`SortKey::new`] from a stored document, reading only the order
    /// fields.
    pub fn from_encoded(order: &[OrderKey], doc: &geoul_store::EncodedDoc, key: &[u8]) -> Self {
        Self {
            values: order
                .iter()
                .map(|k| doc.field(&k.field).ok().flatten())
                .collect(),
            key: key.to_vec(),
        }
    }

    /// A cursor that resumes right after this row.
    pub fn to_cursor(&self) -> Cursor {
        Cursor {
            values: self.values.clone(),
            key: self.key.clone(),
        }
    }
}

/// Compares two rows' sort keys under `order` (see the module doc). Total even
/// for keys from a faulty peer: NaN (never stored, so never produced by
/// [`SortKey::new`]) sorts after every other value, and a key with fewer values
/// than `order` has missing ones, so sorting with this never panics.
pub fn compare(order: &[OrderKey], a: &SortKey, b: &SortKey) -> Ordering {
    compare_parts(order, (&a.values, &a.key), (&b.values, &b.key))
}

type Parts<'a> = (&'a [Option<Value>], &'a [u8]);

fn compare_parts(order: &[OrderKey], a: Parts<'_>, b: Parts<'_>) -> Ordering {
    for (i, order_key) in order.iter().enumerate() {
        let x = a.0.get(i).and_then(Option::as_ref);
        let y = b.0.get(i).and_then(Option::as_ref);
        let ord = match (x, y) {
            (Some(x), Some(y)) if order_key.descending => compare_present(x, y).reverse(),
            (Some(x), Some(y)) => compare_present(x, y),
            // Missing after present, in both directions.
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.1.cmp(b.1)
}

fn is_nan(v: &Value) -> bool {
    matches!(v, Value::Float(x) if x.is_nan())
}

/// [`compare_values`], made total over NaN too (NaN last, all NaNs equal).
fn compare_present(a: &Value, b: &Value) -> Ordering {
    match (is_nan(a), is_nan(b)) {
        (false, false) => compare_values(a, b),
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
    }
}

/// Where the next page starts: the sort key of the last row returned. A row is
/// on the next page iff its sort key is strictly after the cursor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last row's values for the order keys.
    pub values: Vec<Option<Value>>,
    /// The last row's entry key.
    pub key: Vec<u8>,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Text longer than [`CURSOR_TEXT_MAX`] (checked before decoding anything).
    #[error("cursor is {len} characters (at most {CURSOR_TEXT_MAX})")]
    TooLong {
        /// Given length.
        len: usize,
    },
    /// Encodes to more than [`CURSOR_BYTES_MAX`]: the row's sort values are too
    /// large to page past with a cursor.
    #[error("cursor is {len} bytes encoded (at most {CURSOR_BYTES_MAX}): the row's sort values are too large to page past")]
    TooLarge {
        /// Encoded length.
        len: usize,
    },
    /// Not text this crate produced (or produced by an incompatible release).
    #[error("malformed cursor: {0}")]
    Malformed(String),
    /// Made for a different `order by`.
    #[error("cursor has {values} sort values but the query orders by {order_keys} keys")]
    WrongArity {
        /// Values in the cursor.
        values: usize,
        /// Order keys in the query.
        order_keys: usize,
    },
}

impl Cursor {
    /// URL-safe text (base64url of a format byte and the postcard encoding).
    /// Fails only when the cursor would be refused on the way back in.
    pub fn encode(&self) -> Result<String, CursorError> {
        let bytes = self.to_bytes()?;
        self.check_bounds(bytes.len())?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Reads [`Cursor::encode`]'s text, checking every bound. Whether it fits a
    /// query's order is checked separately ([`Cursor::check`]).
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        if text.len() > CURSOR_TEXT_MAX {
            return Err(CursorError::TooLong { len: text.len() });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| CursorError::Malformed(e.to_string()))?;
        let (format, body) = bytes
            .split_first()
            .ok_or_else(|| CursorError::Malformed("empty".into()))?;
        if *format != CURSOR_FORMAT {
            return Err(CursorError::Malformed(format!("unknown format {format}")));
        }
        let (cursor, rest): (Cursor, &[u8]) =
            postcard::take_from_bytes(body).map_err(|e| CursorError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CursorError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        cursor.check_bounds(bytes.len())?;
        Ok(cursor)
    }

    /// Checks that the cursor fits `order` (one value per order key) and its
    /// bounds, as for a cursor that arrived inside a binary query.
    pub fn check(&self, order: &[OrderKey]) -> Result<(), CursorError> {
        if self.values.len() != order.len() {
            return Err(CursorError::WrongArity {
                values: self.values.len(),
                order_keys: order.len(),
            });
        }
        self.check_bounds(self.to_bytes()?.len())
    }

    /// Whether `row` sorts strictly after this cursor, i.e. belongs to the next
    /// page.
    pub fn admits(&self, order: &[OrderKey], row: &SortKey) -> bool {
        compare_parts(order, (&self.values, &self.key), (&row.values, &row.key)) == Ordering::Less
    }

    fn to_bytes(&self) -> Result<Vec<u8>, CursorError> {
        postcard::to_extend(self, vec![CURSOR_FORMAT])
            .map_err(|e| CursorError::Malformed(e.to_string()))
    }

    fn check_bounds(&self, encoded_len: usize) -> Result<(), CursorError> {
        if encoded_len > CURSOR_BYTES_MAX {
            return Err(CursorError::TooLarge { len: encoded_len });
        }
        if self.values.len() > ORDER_KEYS_MAX {
            return Err(CursorError::Malformed(format!(
                "{} sort values (at most {ORDER_KEYS_MAX})",
                self.values.len()
            )));
        }
        if self.key.len() > KEY_BYTES_MAX {
            return Err(CursorError::Malformed(format!(
                "key is {} bytes (at most {KEY_BYTES_MAX})",
                self.key.len()
            )));
        }
        // Stored values are never NaN, so a NaN cursor was not made from a row.
        if self.values.iter().flatten().any(is_nan) {
            return Err(CursorError::Malformed("NaN sort value".into()));
        }
        Ok(())
    }
}

impl From<SortKey> for Cursor {
    fn from(key: SortKey) -> Self {
        Self {
            values: key.values,
            key: key.key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: Vec<Option<Value>>, key: &str) -> SortKey {
        SortKey {
            values,
            key: key.as_bytes().to_vec(),
        }
    }

    #[test]
    fn missing_values_sort_last_in_both_directions() {
        let present = row(vec![Some(Value::Int(1))], "b");
        let missing = row(vec![None], "a");
        for order in [[OrderKey::asc("x")], [OrderKey::desc("x")]] {
            assert_eq!(compare(&order, &present, &missing), Ordering::Less);
            assert_eq!(compare(&order, &missing, &present), Ordering::Greater);
        }
    }

    #[test]
    fn descending_reverses_values_but_not_the_key_tie_break() {
        let order = [OrderKey::desc("x")];
        let low = row(vec![Some(Value::Int(1))], "a");
        let high = row(vec![Some(Value::Float(2.5))], "b");
        assert_eq!(compare(&order, &high, &low), Ordering::Less);
        let tie_a = row(vec![Some(Value::Int(2))], "a");
        let tie_b = row(vec![Some(Value::Float(2.0))], "b");
        assert_eq!(compare(&order, &tie_a, &tie_b), Ordering::Less);
    }

    #[test]
    fn builds_sort_keys_from_documents() {
        let doc = Document::from_fields([("rating".to_string(), Value::Int(7))]).expect("doc");
        let order = [OrderKey::desc("rating"), OrderKey::asc("name")];
        let key = SortKey::new(&order, &doc, b"k1");
        assert_eq!(key.values, vec![Some(Value::Int(7)), None]);
        assert_eq!(key.key, b"k1");
    }

    #[test]
    fn nan_from_a_faulty_peer_still_sorts_totally() {
        let order = [OrderKey::asc("x")];
        let mut rows = [
            row(vec![Some(Value::Float(f64::NAN))], "a"),
            row(vec![Some(Value::Int(3))], "b"),
            row(vec![Some(Value::Float(-f64::NAN))], "c"),
            row(vec![], "d"),
        ];
        rows.sort_by(|a, b| compare(&order, a, b));
        let keys: Vec<&[u8]> = rows.iter().map(|r| r.key.as_slice()).collect();
        assert_eq!(keys, [&b"b"[..], b"a", b"c", b"d"]);
    }

    #[test]
    fn cursor_text_round_trips_and_admits_only_later_rows() {
        let order = [OrderKey::desc("x")];
        let last = row(vec![Some(Value::Int(5))], "m");
        let cursor = Cursor::decode(&last.to_cursor().encode().expect("encodes")).expect("decodes");
        assert_eq!(cursor, last.to_cursor());
        assert!(!cursor.admits(&order, &last));
        assert!(cursor.admits(&order, &row(vec![Some(Value::Int(5))], "n")));
        assert!(cursor.admits(&order, &row(vec![Some(Value::Int(4))], "a")));
        assert!(cursor.admits(&order, &row(vec![None], "a")));
        assert!(!cursor.admits(&order, &row(vec![Some(Value::Int(6))], "z")));
    }

    #[test]
    fn refuses_bad_cursors() {
        let too_long = "A".repeat(CURSOR_TEXT_MAX + 1);
        assert_eq!(
            Cursor::decode(&too_long),
            Err(CursorError::TooLong {
                len: CURSOR_TEXT_MAX + 1
            })
        );
        assert!(matches!(
            Cursor::decode("!!"),
            Err(CursorError::Malformed(_))
        ));
        assert!(matches!(Cursor::decode(""), Err(CursorError::Malformed(_))));
        // Another format byte.
        let other = URL_SAFE_NO_PAD.encode([2u8, 0, 0]);
        assert!(matches!(
            Cursor::decode(&other),
            Err(CursorError::Malformed(_))
        ));
        // Trailing bytes after a valid cursor.
        let mut bytes = vec![CURSOR_FORMAT];
        bytes.extend(
            postcard::to_stdvec(&Cursor {
                values: vec![],
                key: vec![1],
            })
            .expect("enc"),
        );
        bytes.push(0);
        let trailing = URL_SAFE_NO_PAD.encode(bytes);
        assert!(matches!(
            Cursor::decode(&trailing),
            Err(CursorError::Malformed(_))
        ));

        let huge = Cursor {
            values: vec![Some(Value::Str("x".repeat(CURSOR_BYTES_MAX)))],
            key: vec![1],
        };
        assert!(matches!(huge.encode(), Err(CursorError::TooLarge { .. })));
        let nan = Cursor {
            values: vec![Some(Value::Float(f64::NAN))],
            key: vec![1],
        };
        assert!(matches!(nan.encode(), Err(CursorError::Malformed(_))));

        let one = Cursor {
            values: vec![None],
            key: vec![1],
        };
        assert_eq!(
            one.check(&[]),
            Err(CursorError::WrongArity {
                values: 1,
                order_keys: 0
            })
        );
        assert_eq!(one.check(&[OrderKey::asc("x")]), Ok(()));
    }
}
