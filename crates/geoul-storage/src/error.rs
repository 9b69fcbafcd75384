//! The crate's one error type, and the translation of engine errors into it.
//!
//! Owns: [`StorageError`] and the mapping from every `redb` error to a variant that
//! names the file (and the table, where one is involved).
//!
//! Does not own: deciding what to do about an error. A `Corrupt` store is never
//! repaired here; the node decides whether to wipe the directory and fully re-sync
//! (DESIGN.md §13: an empty node copies, it is not copied from).

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The operating system refused a read, write, fsync, or directory operation.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file holds something this store did not write: a checksum mismatch, a
    /// truncated file, a record over the bounds, a table of the wrong type.
    #[error("corrupt storage in {file}{}: {detail}", table.as_deref().map(|t| format!(" (table {t})")).unwrap_or_default())]
    Corrupt {
        /// The data file.
        file: PathBuf,
        /// The table being read, when the corruption was found inside one.
        table: Option<String>,
        /// What was found.
        detail: String,
    },
    /// A key, value or batch over its bound; nothing was written.
    #[error("{what} of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// `"key"`, `"value"` or `"batch"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound it exceeds.
        max: usize,
    },
    /// A table name outside `[a-z0-9_.-]{1,64}`.
    #[error("bad table name {0:?}: expected [a-z0-9_.-]{{1,64}}")]
    BadTableName(String),
    /// Invalid [`StorageOptions`](crate::StorageOptions).
    #[error("bad storage options: {0}")]
    BadOptions(String),
    /// Another [`DiskStore`](crate::DiskStore), in this or another process, has the
    /// file open.
    #[error("{path} is already open (another store or process holds its lock)")]
    Locked {
        /// The data file.
        path: PathBuf,
    },
    /// An earlier I/O failure left the engine unable to tell what is on disk; every
    /// further operation fails until the store is reopened (which recovers to the
    /// last durable commit).
    #[error("{path} failed an earlier write or fsync; reopen the store to recover")]
    Poisoned {
        /// The data file.
        path: PathBuf,
    },
    /// The file was written by an incompatible version of this crate or of the
    /// engine.
    #[error("{path} has storage format {found}, this build reads {supported}")]
    UnsupportedFormat {
        /// The data file.
        path: PathBuf,
        /// Format found in the file.
        found: String,
        /// Format this build reads.
        supported: String,
    },
    /// Any other engine failure (a bug on one side or the other, never expected).
    #[error("storage engine error on {path}: {detail}")]
    Engine {
        /// The data file.
        path: PathBuf,
        /// The engine's message.
        detail: String,
    },
}

/// Wraps an I/O error with the path it happened on.
pub(crate) fn io_error(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Translates any engine error into a [`StorageError`] naming `file` and `table`.
pub(crate) fn engine_error(
    file: &Path,
    table: Option<&str>,
    err: impl Into<redb::Error>,
) -> StorageError {
    let corrupt = |detail: String| StorageError::Corrupt {
        file: file.to_path_buf(),
        table: table.map(str::to_string),
        detail,
    };
    match err.into() {
        redb::Error::Corrupted(detail) => corrupt(detail),
        // The engine reads whole pages at offsets its header promises; running off the
        // end of the file means the file was cut short.
        redb::Error::Io(source) if source.kind() == io::ErrorKind::UnexpectedEof => corrupt(
            format!("file is shorter than its header says (truncated?): {source}"),
        ),
        // The engine's only use of this kind: the file is empty or lacks its magic number.
        redb::Error::Io(source) if source.kind() == io::ErrorKind::InvalidData => {
            corrupt(format!("not a store: {source}"))
        }
        redb::Error::Io(source) => io_error(file, source),
        err @ (redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. }) => {
            corrupt(format!("table has an unexpected type: {err}"))
        }
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StorageError::Locked {
                path: file.to_path_buf(),
            }
        }
        redb::Error::PreviousIo => StorageError::Poisoned {
            path: file.to_path_buf(),
        },
        redb::Error::UpgradeRequired(version) => StorageError::UnsupportedFormat {
            path: file.to_path_buf(),
            found: format!("redb file format {version}"),
            supported: "the format of redb 4".to_string(),
        },
        other => StorageError::Engine {
            path: file.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_names_file_and_table() {
        let err = engine_error(
            Path::new("/d/tables/geoul.redb"),
            Some("sessions"),
            redb::StorageError::Corrupted("checksum mismatch".into()),
        );
        assert_eq!(
            err.to_string(),
            "corrupt storage in /d/tables/geoul.redb (table sessions): checksum mismatch"
        );
    }

    #[test]
    fn eof_is_truncation() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "short read");
        let err = engine_error(Path::new("f"), None, redb::StorageError::Io(eof));
        assert!(
            matches!(err, StorageError::Corrupt { table: None, .. }),
            "{err}"
        );
    }
}
