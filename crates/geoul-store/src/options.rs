//! What a service declares about each of its tables.
//!
//! Owns: [`TableSpec`], [`TableOptions`], [`Ack`], [`Durability`], their
//! validation and the compatibility rule between two declarations. Does not own:
//! placement (replica sets come from `geoul-placement`).

use std::time::Duration;

pub use geoul_placement::Replication;
use serde::{Deserialize, Serialize};

/// Longest table name. Names appear in gossip metadata, metrics labels and file
/// names, so they are short and plain.
pub const TABLE_NAME_BYTES_MAX: usize = 48;

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
}

impl TableOptions {
    /// A short, stable text form, gossiped so every node can compare
    /// declarations (e.g. `factor3/quorum/disk/ttl-/max-`).
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
        format!("{replication}/{ack}/{durability}/ttl{ttl}/max{max}")
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
        Ok(())
    }

    /// Refuses a declaration of the same table with other options: every node
    /// must compute the same placement and apply the same rules.
    pub fn check_compatible(&self, other: &TableSpec) -> Result<(), SpecError> {
        if self.name == other.name && self.options != other.options {
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
}
