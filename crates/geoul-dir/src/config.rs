//! The instance directory's settings (`[dir]` in a node's config).
//!
//! Owns: [`DirConfig`] with its defaults, validation and the table it
//! declares. Does not own: reading files (the node's config) or acting on
//! the settings (`service`).

use std::time::Duration;

use geoul_store::{Ack, Durability, Replication, TableOptions, TableSpec};
use serde::{Deserialize, Serialize};

use crate::instance::field_kind;

/// The table of instances.
pub const INSTANCES: &str = "dir.instances";

/// Longest TTL an instance may ask for (persistent instances that players
/// join directly live this long between renewals).
pub const TTL_MAX_S: u64 = 30 * 24 * 3600;

/// Settings of the directory on one node. Every node hosting it must agree
/// on `copies`, `write_ack`, `durability`, `indexes` and `max_entries` (they
/// are the table's declaration, which the cluster checks); the rest may
/// differ per node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirConfig {
    /// Copies of each entry: absent (the default) = every directory node
    /// holds every entry and answers searches locally (`All`); `n` = n
    /// copies, searches scatter to a covering set of nodes and gather
    /// (`Factor(n)`, for when entries outgrow one node's memory).
    pub copies: Option<usize>,
    /// Acks a write waits for.
    pub write_ack: Ack,
    /// `memory` (the default: entries live seconds and game servers
    /// re-register when a renewal finds theirs gone) or `disk`.
    pub durability: Durability,
    /// Indexed fields (searches filter and sort on them cheaply; others
    /// are checked per candidate).
    pub indexes: Vec<String>,
    /// Most live instances; registering more is refused as full.
    pub max_entries: u64,
    /// TTL of a registration that names none, seconds.
    pub ttl_default_s: u64,
    /// Longest TTL a registration may ask for, seconds.
    pub ttl_max_s: u64,
    /// Most entries one search page returns.
    pub search_limit_max: u32,
    /// A node answers searches and reads from its own copy only if it
    /// completed an anti-entropy round with a majority of directory nodes
    /// within this many ms; else it refuses (the client asks another node)
    /// or, for `get`, reads at `Quorum`. With the default 1 s anti-entropy
    /// period this bounds how long a cut-off node can show a removed
    /// instance: this window plus one period.
    pub local_read_window_ms: u64,
    /// Most watches one node serves (each holds a long poll and a buffer
    /// of up to 1024 events).
    pub watchers_max: usize,
}

impl Default for DirConfig {
    fn default() -> Self {
        Self {
            copies: None,
            write_ack: Ack::Quorum,
            durability: Durability::Memory,
            indexes: ["mode", "region", "state", "rating", "spectators"]
                .map(String::from)
                .to_vec(),
            max_entries: 20_000_000,
            ttl_default_s: 30,
            ttl_max_s: TTL_MAX_S,
            search_limit_max: 1000,
            local_read_window_ms: 3000,
            watchers_max: 256,
        }
    }
}

impl DirConfig {
    /// See `local_read_window_ms`.
    pub fn local_read_window(&self) -> Duration {
        Duration::from_millis(self.local_read_window_ms)
    }

    /// The default TTL.
    pub fn ttl_default(&self) -> Duration {
        Duration::from_secs(self.ttl_default_s)
    }

    /// The instance table's declaration.
    pub fn table(&self) -> TableSpec {
        TableSpec {
            name: INSTANCES.into(),
            options: TableOptions {
                replication: match self.copies {
                    None => Replication::All,
                    Some(n) => Replication::Factor(u8::try_from(n).unwrap_or(u8::MAX)),
                },
                write_ack: self.write_ack,
                durability: self.durability,
                default_ttl: Some(self.ttl_default()),
                max_entries: Some(self.max_entries),
                indexes: self.indexes.clone(),
            },
        }
    }

    /// Checks every setting; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let field = |f: &str, why: String| Err((format!("dir.{f}"), why));
        if let Some(n) = self.copies {
            if !(1..=16).contains(&n) {
                return field(
                    "copies",
                    "must be 1-16 (leave it out for every node)".into(),
                );
            }
        }
        for f in &self.indexes {
            if field_kind(f).is_none() {
                return field(
                    "indexes",
                    format!(
                        "{f:?} is not a field of an instance ({})",
                        crate::instance::FIELDS
                    ),
                );
            }
        }
        if !(1..=1_000_000_000).contains(&self.max_entries) {
            return field("max_entries", "must be 1-1000000000".into());
        }
        if !(1..=TTL_MAX_S).contains(&self.ttl_max_s) {
            return field("ttl_max_s", format!("must be 1-{TTL_MAX_S}"));
        }
        if !(1..=self.ttl_max_s).contains(&self.ttl_default_s) {
            return field("ttl_default_s", "must be 1 s to ttl_max_s".into());
        }
        if !(1..=geoul_client::query_lang::LIMIT_MAX).contains(&self.search_limit_max) {
            return field(
                "search_limit_max",
                format!("must be 1-{}", geoul_client::query_lang::LIMIT_MAX),
            );
        }
        if !(100..=600_000).contains(&self.local_read_window_ms) {
            return field("local_read_window_ms", "must be 100-600000".into());
        }
        if !(1..=100_000).contains(&self.watchers_max) {
            return field("watchers_max", "must be 1-100000".into());
        }
        if let Err(e) = self.table().validate() {
            return field("indexes", e.to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        assert_eq!(DirConfig::default().validate(), Ok(()));
        assert_eq!(
            DirConfig::default().table().options.replication,
            Replication::All
        );
        let c = DirConfig {
            indexes: vec!["nope".into()],
            ..DirConfig::default()
        };
        assert_eq!(c.validate().expect_err("unknown field").0, "dir.indexes");
        let c = DirConfig {
            copies: Some(0),
            ..DirConfig::default()
        };
        assert_eq!(c.validate().expect_err("zero").0, "dir.copies");
        let c = DirConfig {
            ttl_default_s: TTL_MAX_S + 1,
            ..DirConfig::default()
        };
        assert_eq!(c.validate().expect_err("long").0, "dir.ttl_default_s");
    }

    #[test]
    fn parses_from_toml_with_defaults_and_refuses_unknown_fields() {
        let c: DirConfig =
            toml::from_str("copies = 2\nindexes = [\"mode\", \"tag.skill\"]\n").expect("parses");
        assert_eq!(c.table().options.replication, Replication::Factor(2));
        assert_eq!(c.ttl_default_s, 30);
        assert_eq!(c.validate(), Ok(()));
        assert!(toml::from_str::<DirConfig>("copie = 2").is_err());
    }
}
