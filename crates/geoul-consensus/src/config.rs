//! Configuration of one conditional group.
//!
//! Owns: [`GroupConfig`], its defaults (tuned for a LAN), its validation, and the
//! translation into openraft's `Config`.
//!
//! Does not own: where the values come from (the node's TOML), or the data directory.

use std::sync::Arc;

use crate::error::CondError;
use crate::types::{
    Limits, MAX_ENTRIES_PER_APPEND, MAX_GROUP_BYTES, MAX_GROUP_NAME_BYTES, SNAPSHOT_CHUNK_BYTES,
};

/// Configuration of one [`crate::CondGroup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// The group's name, e.g. `"auth.tickets"`: ASCII letters, digits, `.`, `_`, `-`.
    /// It names the data file and every message carries it.
    pub group: String,
    /// Leader heartbeat period. 100 ms: a LAN round trip is well under 1 ms, so this
    /// is about leader detection, not bandwidth.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time in this range campaigns.
    /// 500..1000 ms: 5–10 heartbeats, so one lost heartbeat never starts an election,
    /// and a dead leader is replaced in about a second.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Timeout of the `Hello` RPC that reconcile sends.
    pub hello_timeout_ms: u64,
    /// Timeout for sending and installing one snapshot chunk.
    pub install_snapshot_timeout_ms: u64,
    /// A snapshot is built (and persisted) every this many applied log entries; the
    /// log before it can then be purged. On open the state is rebuilt from the last
    /// snapshot plus the log after it, so this also bounds the replay at start.
    pub snapshot_every_n_logs: u64,
    /// Log entries kept behind the last snapshot, so a briefly lagging follower
    /// catches up from the log rather than by a whole snapshot.
    pub logs_to_keep: u64,
    /// Creates are refused (`Full`) beyond this many live entries.
    pub max_entries: usize,
    /// Creates (and growing writes) are refused beyond this many bytes of keys plus
    /// values. The state machine lives in memory and in every snapshot.
    pub max_bytes: u64,
    /// A voter absent from `reconcile`'s desired set for this long is removed. 60 s:
    /// longer than a restart, so a restarting node keeps its seat.
    pub remove_after_ms: u64,
    /// A learner is promoted to voter once its replicated log is within this many
    /// entries of the leader's.
    pub learner_lag_max: u64,
    /// How long a bootstrap promise holds (see the crate doc, "Initialization").
    pub bootstrap_promise_ms: u64,
    /// A group that was never initialized is first formed only once `desired`
    /// holds at least this many nodes (like Consul's `bootstrap_expect`): a
    /// node that sees too few, e.g. one started while its peers were
    /// unreachable, waits rather than form a group of its own. Set it to a
    /// majority of the hosts, so any two views allowed to bootstrap overlap.
    pub bootstrap_expect: usize,
}

impl GroupConfig {
    /// The defaults for a LAN, for the group named `group`.
    pub fn new(group: impl Into<String>) -> Self {
        GroupConfig {
            group: group.into(),
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            hello_timeout_ms: 500,
            install_snapshot_timeout_ms: 2000,
            snapshot_every_n_logs: 1000,
            logs_to_keep: 1000,
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            remove_after_ms: 60_000,
            learner_lag_max: 64,
            bootstrap_promise_ms: 10_000,
            bootstrap_expect: 1,
        }
    }

    /// Checks every field; errors name the field.
    pub fn validate(&self) -> Result<(), CondError> {
        let bad = |m: String| Err(CondError::Config(m));
        if !group_name_ok(&self.group) {
            return bad(format!(
                "group {:?}: 1..={MAX_GROUP_NAME_BYTES} bytes of ASCII letters, digits, '.', '_', '-', not starting with '.'",
                self.group
            ));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms >= self.election_timeout_min_ms {
            return bad("heartbeat_ms must be > 0 and < election_timeout_min_ms".into());
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return bad("election_timeout_min_ms must be < election_timeout_max_ms".into());
        }
        if self.hello_timeout_ms == 0 || self.install_snapshot_timeout_ms == 0 {
            return bad("hello_timeout_ms and install_snapshot_timeout_ms must be > 0".into());
        }
        if self.bootstrap_expect == 0 || self.bootstrap_expect > crate::types::MAX_MEMBERS {
            return bad(format!(
                "bootstrap_expect must be in 1..={}",
                crate::types::MAX_MEMBERS
            ));
        }
        if self.snapshot_every_n_logs == 0 {
            return bad("snapshot_every_n_logs must be > 0".into());
        }
        if self.max_entries == 0 || self.max_bytes == 0 || self.max_bytes > MAX_GROUP_BYTES {
            return bad(format!(
                "max_entries must be > 0 and max_bytes in 1..={MAX_GROUP_BYTES}"
            ));
        }
        Ok(())
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_entries: self.max_entries as u64,
            max_bytes: self.max_bytes,
        }
    }

    pub(crate) fn raft_config(&self) -> Result<Arc<openraft::Config>, CondError> {
        let config = openraft::Config {
            cluster_name: self.group.clone(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            max_payload_entries: MAX_ENTRIES_PER_APPEND,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every_n_logs),
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            max_in_snapshot_log_to_keep: self.logs_to_keep,
            ..Default::default()
        };
        let config = config
            .validate()
            .map_err(|e| CondError::Config(e.to_string()))?;
        Ok(Arc::new(config))
    }
}

/// Group names become file names: no separators, no leading dot, bounded.
pub(crate) fn group_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GROUP_NAME_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_translate() {
        let config = GroupConfig::new("auth.tickets");
        config.validate().expect("defaults valid");
        config.raft_config().expect("openraft accepts the defaults");
    }

    #[test]
    fn bad_names_and_timeouts_are_refused() {
        for name in ["", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(GroupConfig::new(name).validate().is_err(), "{name:?}");
        }
        let mut config = GroupConfig::new("g");
        config.election_timeout_max_ms = config.election_timeout_min_ms;
        assert!(config.validate().is_err());
        let mut config = GroupConfig::new("g");
        config.heartbeat_ms = config.election_timeout_min_ms;
        assert!(config.validate().is_err());
    }
}
