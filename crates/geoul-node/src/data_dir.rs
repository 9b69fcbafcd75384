//! The node's data directory: exclusive ownership and the persisted generation.
//!
//! Owns: the lock file that stops two processes from sharing a directory, and the
//! `generation` file that makes every restart of a node a strictly newer life
//! (DESIGN.md §13). Does not own: table data (later layers add their own files).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// An IO error, with the path it happened on.
    #[error("data dir {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error("data dir {0} is in use by another geoul process")]
    Locked(PathBuf),
    /// The generation file is not a number.
    #[error("data dir {path}: generation file is corrupt ({content:?})")]
    CorruptGeneration {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An opened, locked data directory. The lock is released when this is dropped
/// (or when the process dies, however it dies).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
    generation: u64,
}

impl DataDir {
    /// Creates (if needed) and locks `path`, then bumps the generation:
    /// `max(previous + 1, unix_seconds)` — the persisted value guards against a
    /// clock that went backwards, the clock guards against a lost directory.
    pub fn open(path: &Path, unix_seconds: u64) -> Result<Self, DataDirError> {
        std::fs::create_dir_all(path).map_err(io(path))?;
        let lock_path = path.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked(path.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let generation = bump_generation(path, unix_seconds)?;
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
            generation,
        })
    }

    /// The generation of this process's life.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn bump_generation(dir: &Path, unix_seconds: u64) -> Result<u64, DataDirError> {
    let path = dir.join("generation");
    let previous = match File::open(&path) {
        Ok(mut f) => {
            let mut text = String::new();
            f.read_to_string(&mut text).map_err(io(&path))?;
            text.trim()
                .parse::<u64>()
                .map_err(|_| DataDirError::CorruptGeneration {
                    path: path.clone(),
                    content: text.chars().take(40).collect(),
                })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(&path)(e)),
    };
    let generation = (previous + 1).max(unix_seconds);
    // Write-then-rename so a crash leaves either the old or the new value, and
    // fsync both the file and the directory so the rename itself is durable.
    let tmp = dir.join("generation.tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(format!("{generation}\n").as_bytes())
        .map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_grows_even_if_the_clock_goes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g1 = DataDir::open(dir.path(), 1_000).expect("open").generation();
        assert_eq!(g1, 1_000);
        let g2 = DataDir::open(dir.path(), 10).expect("open").generation();
        assert_eq!(g2, 1_001);
        let g3 = DataDir::open(dir.path(), 5_000).expect("open").generation();
        assert_eq!(g3, 5_000);
    }

    #[test]
    fn a_directory_cannot_be_opened_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = DataDir::open(dir.path(), 1).expect("open");
        assert!(matches!(
            DataDir::open(dir.path(), 1),
            Err(DataDirError::Locked(_))
        ));
    }

    #[test]
    fn corrupt_generation_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("generation"), "garbage").expect("write");
        assert!(matches!(
            DataDir::open(dir.path(), 1),
            Err(DataDirError::CorruptGeneration { .. })
        ));
    }
}
