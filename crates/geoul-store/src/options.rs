//! What a service declares about each of its tables.
//!
//! Owns: [`TableSpec`], [`TableOptions`], [`Ack`], [`Durability`], their
//! validation and the compatibility rule between two declarations. Does not own:
//! placement (replica sets come from `geoul-placement`) or index maintenance
//! (`index`, driven by `table`).

use std::time::Duration;

pub use geoul_placement::Replication;
use serde::{Deserialize, Serialize};

use crate::value::valid_field_name;

/// Longest table name. Names appear in gossip metadata, metrics labels and file
/// names, so they are short and plain.
pub const TABLE_NAME_BYTES_MAX: usize = 48;

/// Most indexed fields per table. Every index costs memory per entry (an
/// ordered-set element holding the value and a copy of the key) and work per
/// write (reading the field from the old and the new document, a removal and an
/// insertion), so a table indexes what its queries filter or sort on, not
/// every field.
pub const INDEXES_MAX: usize = 16;

/// How many replicas must acknowledge a write before the client is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ack {
    /// The handling node alone (if it is a replica) or the first replica to answer.
    One,
    /// A majority of the slot's replicas.
    Quorum,
    /// Every replica of the slot.
    All,
}

impl Ack {
    /// Acks needed out of `replicas`.
    pub fn required(self, replicas: usize) -> usize {
        match self {
            Self::One => replicas.min(1),
            Self::Quorum => replicas / 2 + 1,
            Self::All => replicas,
        }
    }
}

/// Where a replica keeps its copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Memory only: a restarted replica starts empty and is refilled by sync.
    Memory,
    /// Memory plus the node's data dir: a restarted replica reloads its copy.
    Disk,
}

/// A table's options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableOptions {
    /// How many nodes keep each slot.
    pub replication: Replication,
    /// Default ack level of writes (a write may ask for another).
    pub write_ack: Ack,
    /// Memory or disk.
    pub durability: Durability,
    /// Expiry applied to writes that do not give one.
    pub default_ttl: Option<Duration>,
    /// Most live entries; writes of new keys beyond it are refused.
    pub max_entries: Option<u64>,
    /// Document fields with a secondary index, each at most once (order does
    /// not matter). Absent from older declarations, hence the default.
    #[serde(default)]
    pub indexes: Vec<String>,
}

/// Longest [`TableOptions::summary`]: it is gossiped in node metadata, whose
/// bound (`geoul_membership::TABLE_SUMMARY_BYTES_MAX`) it must not exceed.
pub const SUMMARY_BYTES_MAX: usize = 64;

impl TableOptions {
    /// A short, stable text form, gossiped so every node can compare
    /// declarations (e.g. `factor3/quorum/disk/ttl-/max-`, then
    /// `/idx:a,b` with the indexed fields sorted when there are any, so that
    /// tables without indexes keep the summary they always had).
    pub fn summary(&self) -> String {
        let replication = match self.replication {
            Replication::All => "all".to_string(),
            Replication::Factor(n) => format!("factor{n}"),
        };
        let ack = match self.write_ack {
            Ack::One => "one",
            Ack::Quorum => "quorum",
            Ack::All => "all",
        };
        let durability = match self.durability {
            Durability::Memory => "memory",
            Durability::Disk => "disk",
        };
        let ttl = self
            .default_ttl
            .map_or("-".to_string(), |t| format!("{}ms", t.as_millis()));
        let max = self.max_entries.map_or("-".to_string(), |m| m.to_string());
        let head = format!("{replication}/{ack}/{durability}");
        let mut summary = format!("{head}/ttl{ttl}/max{max}");
        if !self.indexes.is_empty() {
            summary.push_str("/idx:");
            summary.push_str(&self.sorted_indexes().join(","));
        }
        if summary.len() > SUMMARY_BYTES_MAX {
            // Long index lists (or huge limits) would not fit the gossiped
            // metadata: keep the readable head, which routing parses, and a
            // hash of the rest, which still tells declarations apart.
            let hash = xxhash_rust::xxh3::xxh3_64(summary.as_bytes());
            summary = format!("{head}/h:{hash:016x}");
        }
        summary
    }

    fn sorted_indexes(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self.indexes.iter().map(String::as_str).collect();
        fields.sort_unstable();
        fields
    }

    /// Whether two declarations mean the same: equal options, with the indexed
    /// fields compared as a set (declaration order does not change a table).
    fn same_as(&self, other: &TableOptions) -> bool {
        let Self {
            replication,
            write_ack,
            durability,
            default_ttl,
            max_entries,
            indexes: _,
        } = self;
        // Destructured so that a new option cannot be left out of the check.
        *replication == other.replication
            && *write_ack == other.write_ack
            && *durability == other.durability
            && *default_ttl == other.default_ttl
            && *max_entries == other.max_entries
            && self.sorted_indexes() == other.sorted_indexes()
    }
}

/// A table name plus its options, as a service declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Table name, `[a-z0-9_.-]`, unique in the cluster.
    pub name: String,
    /// Options.
    pub options: TableOptions,
}

/// Why a declaration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Bad name.
    #[error("invalid table name {0:?}: use 1-48 of a-z 0-9 _ . -")]
    BadName(String),
    /// `Factor(0)`.
    #[error("table {0}: replication factor must be at least 1")]
    ZeroFactor(String),
    /// Zero default TTL.
    #[error("table {0}: default_ttl must be positive")]
    ZeroTtl(String),
    /// An indexed field that is not a valid document field name.
    #[error("table {table}: invalid index field {field:?}: use 1-64 of A-Z a-z 0-9 _ . -")]
    BadIndexField {
        /// Table.
        table: String,
        /// The field as declared.
        field: String,
    },
    /// The same field indexed twice.
    #[error("table {table}: field {field:?} is indexed twice")]
    DuplicateIndex {
        /// Table.
        table: String,
        /// The field.
        field: String,
    },
    /// More than [`INDEXES_MAX`] indexes.
    #[error("table {table}: {count} indexes (at most {INDEXES_MAX})")]
    TooManyIndexes {
        /// Table.
        table: String,
        /// Declared.
        count: usize,
    },
    /// Two nodes declare the same table differently.
    #[error("table {name} is declared differently elsewhere in the cluster: ours {ours}, theirs {theirs}")]
    Conflict {
        /// Table.
        name: String,
        /// Our options.
        ours: String,
        /// The other node's.
        theirs: String,
    },
}

impl TableSpec {
    /// Checks the name and options.
    pub fn validate(&self) -> Result<(), SpecError> {
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c);
        if self.name.is_empty()
            || self.name.len() > TABLE_NAME_BYTES_MAX
            || !self.name.chars().all(ok)
        {
            return Err(SpecError::BadName(self.name.clone()));
        }
        if self.options.replication == Replication::Factor(0) {
            return Err(SpecError::ZeroFactor(self.name.clone()));
        }
        if self.options.default_ttl == Some(Duration::ZERO) {
            return Err(SpecError::ZeroTtl(self.name.clone()));
        }
        self.validate_indexes()
    }

    fn validate_indexes(&self) -> Result<(), SpecError> {
        let indexes = &self.options.indexes;
        if indexes.len() > INDEXES_MAX {
            return Err(SpecError::TooManyIndexes {
                table: self.name.clone(),
                count: indexes.len(),
            });
        }
        for (i, field) in indexes.iter().enumerate() {
            if !valid_field_name(field) {
                return Err(SpecError::BadIndexField {
                    table: self.name.clone(),
                    field: field.clone(),
                });
            }
            // Quadratic, but over at most INDEXES_MAX names.
            if indexes[..i].contains(field) {
                return Err(SpecError::DuplicateIndex {
                    table: self.name.clone(),
                    field: field.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a declaration of the same table with other options: every node
    /// must compute the same placement and apply the same rules.
    pub fn check_compatible(&self, other: &TableSpec) -> Result<(), SpecError> {
        if self.name == other.name && !self.options.same_as(&other.options) {
            return Err(SpecError::Conflict {
                name: self.name.clone(),
                ours: format!("{:?}", self.options),
                theirs: format!("{:?}", other.options),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> TableSpec {
        TableSpec {
            name: name.into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Disk,
                default_ttl: None,
                max_entries: None,
                indexes: Vec::new(),
            },
        }
    }

    #[test]
    fn ack_levels_count_replicas() {
        assert_eq!(Ack::One.required(3), 1);
        assert_eq!(Ack::Quorum.required(3), 2);
        assert_eq!(Ack::Quorum.required(2), 2);
        assert_eq!(Ack::Quorum.required(5), 3);
        assert_eq!(Ack::All.required(3), 3);
        assert_eq!(Ack::One.required(0), 0);
    }

    #[test]
    fn validation_and_conflicts_are_explained() {
        assert!(spec("kv").validate().is_ok());
        assert!(matches!(spec("Bad").validate(), Err(SpecError::BadName(_))));
        let mut zero = spec("kv");
        zero.options.replication = Replication::Factor(0);
        assert!(matches!(zero.validate(), Err(SpecError::ZeroFactor(_))));
        let mut other = spec("kv");
        other.options.write_ack = Ack::One;
        let err = spec("kv").check_compatible(&other).expect_err("conflict");
        assert!(err.to_string().contains("declared differently"), "{err}");
        assert!(spec("kv").check_compatible(&spec("kv")).is_ok());
    }

    fn indexed(fields: &[&str]) -> TableSpec {
        let mut s = spec("kv");
        s.options.indexes = fields.iter().map(|f| f.to_string()).collect();
        s
    }

    #[test]
    fn indexes_are_valid_field_names_at_most_once_and_bounded() {
        assert!(indexed(&["region", "players", "a.b-c_D9"])
            .validate()
            .is_ok());
        for bad in ["", "has space", "ü", &"x".repeat(65)] {
            assert!(
                matches!(
                    indexed(&[bad]).validate(),
                    Err(SpecError::BadIndexField { ref field, .. }) if field == bad
                ),
                "{bad:?}"
            );
        }
        assert!(indexed(&[&"x".repeat(64)]).validate().is_ok());
        assert_eq!(
            indexed(&["a", "b", "a"]).validate(),
            Err(SpecError::DuplicateIndex {
                table: "kv".into(),
                field: "a".into()
            })
        );
        let names: Vec<String> = (0..=INDEXES_MAX).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(indexed(&refs[..INDEXES_MAX]).validate().is_ok());
        assert_eq!(
            indexed(&refs).validate(),
            Err(SpecError::TooManyIndexes {
                table: "kv".into(),
                count: INDEXES_MAX + 1
            })
        );
    }

    #[test]
    fn summaries_name_indexes_sorted_and_only_when_there_are_some() {
        // The summary without indexes is what nodes gossiped before indexes
        // existed: a mixed-version cluster must not see a conflict.
        assert_eq!(
            spec("kv").options.summary(),
            "factor3/quorum/disk/ttl-/max-"
        );
        assert_eq!(
            indexed(&["region", "mode"]).options.summary(),
            "factor3/quorum/disk/ttl-/max-/idx:mode,region"
        );
    }

    #[test]
    fn long_summaries_are_hashed_to_fit_the_gossip_bound() {
        let many = indexed(&["mode", "region", "state", "spectators", "rating", "players"]);
        let summary = many.options.summary();
        assert!(summary.len() <= SUMMARY_BYTES_MAX, "{summary}");
        assert!(summary.starts_with("factor3/quorum/disk/h:"), "{summary}");
        let other = indexed(&["mode", "region", "state", "spectators", "rating", "map"]);
        assert_ne!(summary, other.options.summary());
        let mut huge = spec("kv").options;
        huge.max_entries = Some(u64::MAX);
        huge.default_ttl = Some(std::time::Duration::from_millis(u64::MAX));
        assert!(huge.summary().len() <= SUMMARY_BYTES_MAX);
    }

    #[test]
    fn index_order_does_not_make_declarations_differ() {
        let ab = indexed(&["a", "b"]);
        assert!(ab.check_compatible(&indexed(&["b", "a"])).is_ok());
        assert!(ab.check_compatible(&indexed(&["a"])).is_err());
        assert!(ab.check_compatible(&spec("kv")).is_err());
    }

    #[test]
    fn declarations_without_indexes_still_parse() {
        // A declaration written before `indexes` existed, in a self-describing
        // format (config files): the missing field means "no indexes".
        #[derive(Serialize)]
        struct Old {
            replication: Replication,
            write_ack: Ack,
            durability: Durability,
            default_ttl: Option<Duration>,
            max_entries: Option<u64>,
        }
        let o = spec("kv").options;
        let old = Old {
            replication: o.replication,
            write_ack: o.write_ack,
            durability: o.durability,
            default_ttl: o.default_ttl,
            max_entries: o.max_entries,
        };
        let json = serde_json::to_string(&old).expect("encodes");
        let back: TableOptions = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, o);
    }
}
