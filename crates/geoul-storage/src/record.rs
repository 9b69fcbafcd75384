//! Records, table names and the size bounds every write is checked against.
//!
//! Owns: the shape of a [`Record`], the table-name grammar and the per-record and
//! per-batch bounds. Everything here is a pure check on caller input, done before the
//! engine is touched, so a rejected batch leaves the store unchanged.
//!
//! Does not own: what keys and values mean (the in-memory table encodes versions,
//! tombstones and expiries inside the opaque value), nor how they reach the disk
//! (`store`).

use crate::error::StorageError;

/// Largest key, in bytes.
///
/// Keys are ids (player, session, ticket); 1 KiB is far above any of them and keeps
/// the B-tree's branch pages dense.
pub const MAX_KEY_BYTES: usize = 1024;

/// Largest value, in bytes: 1 MiB of document plus 64 bytes of the table's own header
/// (version, expiry, flags) that the in-memory table prepends.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024 + 64;

/// Longest table name, in bytes. Names are `[a-z0-9_.-]{1,64}`.
pub const MAX_TABLE_NAME_BYTES: usize = 64;

/// Largest batch: the sum of key and value bytes over all its records.
///
/// A batch is one engine transaction, held in memory until it commits. 64 MiB admits
/// dozens of maximal values (and any anti-entropy or full-sync chunk, which the wire
/// bounds to 16 MiB) while keeping one commit from taking an unbounded share of RAM.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// One change to persist: put `value` under `key` in `table`, or delete `key` when
/// `value` is `None`.
///
/// The store never looks inside keys or values.
///
/// ```
/// use geoul_storage::Record;
/// let put = Record { table: "sessions", key: b"p1", value: Some(b"state") };
/// let delete = Record { table: "sessions", key: b"p2", value: None };
/// # let _ = (put, delete);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Table the record belongs to; see [`validate_table_name`].
    pub table: &'a str,
    /// Key, at most [`MAX_KEY_BYTES`].
    pub key: &'a [u8],
    /// New value (at most [`MAX_VALUE_BYTES`]), or `None` to delete the key.
    pub value: Option<&'a [u8]>,
}

impl Record<'_> {
    /// Bytes this record adds to its batch (key plus value).
    pub fn payload_len(&self) -> usize {
        self.key.len() + self.value.map_or(0, <[u8]>::len)
    }
}

/// Checks that `name` matches `[a-z0-9_.-]{1,64}`.
///
/// The grammar keeps names usable as metric labels and file-name fragments, and
/// leaves every other character free for the store's internal tables.
pub fn validate_table_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TABLE_NAME_BYTES
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::BadTableName(name.to_string()))
    }
}

/// Checks one record against the name grammar and the size bounds.
pub(crate) fn validate_record(record: &Record<'_>) -> Result<(), StorageError> {
    validate_table_name(record.table)?;
    if record.key.len() > MAX_KEY_BYTES {
        return Err(StorageError::TooLarge {
            what: "key",
            len: record.key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    if let Some(value) = record.value {
        if value.len() > MAX_VALUE_BYTES {
            return Err(StorageError::TooLarge {
                what: "value",
                len: value.len(),
                max: MAX_VALUE_BYTES,
            });
        }
    }
    Ok(())
}

/// Checks every record of a batch and the batch's total size.
pub(crate) fn validate_batch(batch: &[Record<'_>]) -> Result<(), StorageError> {
    let mut total = 0usize;
    for record in batch {
        validate_record(record)?;
        total = total.saturating_add(record.payload_len());
    }
    if total > MAX_BATCH_BYTES {
        return Err(StorageError::TooLarge {
            what: "batch",
            len: total,
            max: MAX_BATCH_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_grammar() {
        for good in [
            "a",
            "sessions",
            "match_tickets.v2",
            "dir-1",
            &"x".repeat(64),
        ] {
            assert!(validate_table_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Sessions", "a b", "a/b", "é", "t:x", &"x".repeat(65)] {
            assert!(
                matches!(validate_table_name(bad), Err(StorageError::BadTableName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bounds_are_inclusive() {
        let key = vec![0u8; MAX_KEY_BYTES];
        let value = vec![0u8; MAX_VALUE_BYTES];
        let at_bound = Record {
            table: "t",
            key: &key,
            value: Some(&value),
        };
        assert!(validate_record(&at_bound).is_ok());

        let long_key = vec![0u8; MAX_KEY_BYTES + 1];
        let over = Record {
            key: &long_key,
            ..at_bound
        };
        assert!(matches!(
            validate_record(&over),
            Err(StorageError::TooLarge { what: "key", .. })
        ));
    }

    #[test]
    fn batch_total_is_bounded() {
        let value = vec![0u8; MAX_VALUE_BYTES];
        let record = Record {
            table: "t",
            key: b"k",
            value: Some(&value),
        };
        let batch = vec![record; MAX_BATCH_BYTES / record.payload_len() + 1];
        assert!(matches!(
            validate_batch(&batch),
            Err(StorageError::TooLarge { what: "batch", .. })
        ));
        assert!(validate_batch(&batch[..batch.len() - 1]).is_ok());
    }
}
