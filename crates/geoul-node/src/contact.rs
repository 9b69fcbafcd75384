//! Remembering when this node last heard from its peers, across restarts, so
//! a node that was away longer than the tombstone grace does not serve or
//! merge its old copy (DESIGN.md §13, "deletes stay deleted": deletes collected
//! meanwhile elsewhere would otherwise come back from it). Such a node starts
//! with its tables quarantined: kept on disk, not served, wiped and re-synced
//! at the first contact with a peer (`geoul_replication::sync`).
//!
//! Owns: the `last-contact` file next to the durable tables and the check at
//! start. Does not own: the quarantine itself or the live check while running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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

/// How long the node was out of touch, if longer than `limit` (by `now_ms`).
pub fn away_too_long(tables_dir: &Path, now_ms: u64, limit: Duration) -> Option<u64> {
    let away = now_ms.saturating_sub(load(tables_dir)?);
    (away > u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)).then_some(away)
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

    #[test]
    fn too_long_only_past_the_limit_and_with_evidence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limit = Duration::from_secs(10);
        assert_eq!(
            away_too_long(dir.path(), 1_000_000, limit),
            None,
            "no file: no evidence of a long absence"
        );
        save(dir.path(), 1_000_000).expect("save");
        assert_eq!(load(dir.path()), Some(1_000_000));
        assert_eq!(away_too_long(dir.path(), 1_005_000, limit), None);
        assert_eq!(away_too_long(dir.path(), 1_020_000, limit), Some(20_000));
    }
}
