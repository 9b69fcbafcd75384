//! Remembering when this node last heard from its peers, across restarts, so
//! a node that was away longer than the tombstone grace is wiped before it
//! loads anything (DESIGN.md §13, "deletes stay deleted": deletes collected
//! meanwhile elsewhere would otherwise come back from its old copy).
//!
//! Owns: the `last-contact` file next to the durable tables and the decision
//! to wipe at start. Does not own: the live check while running (the sync
//! manager wipes a table that lost touch for longer than the grace).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use geoul_storage::DiskStore;

/// File name, inside the tables directory.
pub const LAST_CONTACT_FILE: &str = "last-contact";

/// How often the last contact time is written.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

fn path(tables_dir: &Path) -> PathBuf {
    tables_dir.join(LAST_CONTACT_FILE)
}

/// The saved last contact (Unix ms), if any; an unreadable file counts as none
/// (the node then keeps its data: it has no evidence it was away too long).
pub fn load(tables_dir: &Path) -> Option<u64> {
    std::fs::read_to_string(path(tables_dir))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Saves `unix_ms` atomically (write, then rename).
pub fn save(tables_dir: &Path, unix_ms: u64) -> std::io::Result<()> {
    let tmp = tables_dir.join(format!("{LAST_CONTACT_FILE}.tmp"));
    std::fs::write(&tmp, unix_ms.to_string())?;
    std::fs::rename(&tmp, path(tables_dir))
}

/// Drops every durable table if the node was out of touch for longer than
/// `grace` (by `now_ms`). Returns how long it was away when it wiped.
pub fn wipe_if_away_too_long(
    disk: &DiskStore,
    tables_dir: &Path,
    now_ms: u64,
    grace: Duration,
) -> Result<Option<u64>, geoul_storage::StorageError> {
    let Some(last) = load(tables_dir) else {
        return Ok(None);
    };
    let away = now_ms.saturating_sub(last);
    if away <= u64::try_from(grace.as_millis()).unwrap_or(u64::MAX) {
        return Ok(None);
    }
    let tables = disk.tables()?;
    tracing::warn!(
        away_s = away / 1000,
        grace_s = grace.as_secs(),
        tables = tables.len(),
        "away longer than the tombstone grace: wiping local data; it will be fully re-synced"
    );
    for t in tables {
        disk.drop_table(&t)?;
    }
    Ok(Some(away))
}

/// Saves the node's last contact every [`SAVE_EVERY`], forever.
pub async fn save_forever(
    tables_dir: PathBuf,
    last_contact: Arc<dyn Fn() -> Option<u64> + Send + Sync>,
) {
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(ms) = last_contact() {
            if let Err(e) = save(&tables_dir, ms) {
                tracing::warn!(error = %e, "could not save the last contact time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_storage::{Record, StorageOptions, SyncPolicy};

    #[test]
    fn wipes_only_after_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let disk = DiskStore::open(
            dir.path(),
            StorageOptions::with_sync(SyncPolicy::EveryBatch),
        )
        .expect("open");
        disk.write_batch(&[Record {
            table: "kv",
            key: b"k",
            value: Some(b"v"),
        }])
        .expect("write");
        let grace = Duration::from_secs(10);
        assert_eq!(
            wipe_if_away_too_long(&disk, dir.path(), 1_000_000, grace).expect("check"),
            None,
            "no file: no evidence of a long absence"
        );
        save(dir.path(), 1_000_000).expect("save");
        assert_eq!(load(dir.path()), Some(1_000_000));
        assert_eq!(
            wipe_if_away_too_long(&disk, dir.path(), 1_005_000, grace).expect("check"),
            None
        );
        assert_eq!(disk.tables().expect("tables"), vec!["kv".to_string()]);
        assert_eq!(
            wipe_if_away_too_long(&disk, dir.path(), 1_020_000, grace).expect("check"),
            Some(20_000)
        );
        assert!(disk.tables().expect("tables").is_empty());
    }
}
