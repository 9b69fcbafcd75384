//! Node metadata gossiped alongside membership: admin address, hosted services and
//! their health, and whether the node is leaving.
//!
//! Owns: [`NodeMeta`], its size bounds, its wire form, and the foca broadcast
//! handler that keeps the newest metadata per node. Does not own: liveness (that is
//! foca's member state) — a node can be alive while one of its services is unhealthy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::identity::{NodeId, NODE_NAME_BYTES_MAX};

/// Services one node may advertise. Bounded so metadata always fits one datagram.
pub const SERVICES_PER_NODE_MAX: usize = 16;
/// Longest service name, in bytes.
pub const SERVICE_NAME_BYTES_MAX: usize = 48;
/// Longest health reason, in bytes: enough for "disk full" or "syncing 40 %",
/// not for a stack trace.
pub const HEALTH_REASON_BYTES_MAX: usize = 64;
/// Tables one node may declare in its metadata.
pub const TABLES_PER_NODE_MAX: usize = 16;
/// Longest table options summary, in bytes.
pub const TABLE_SUMMARY_BYTES_MAX: usize = 64;

/// Largest encoded metadata item. With the foca header and a few member updates it
/// must stay inside the 1400-byte gossip datagram.
pub const META_BYTES_MAX: usize = 900;

/// Health of one service on one node, as reported by the service itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceHealth {
    /// Serving normally.
    Healthy,
    /// Serving, but degraded (e.g. still syncing, slow disk).
    Degraded(String),
    /// Not serving; routing must skip this node for this service.
    Unhealthy(String),
}

impl ServiceHealth {
    /// The status word used in JSON and tables.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded(_) => "degraded",
            Self::Unhealthy(_) => "unhealthy",
        }
    }

    /// The reason, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Healthy => None,
            Self::Degraded(r) | Self::Unhealthy(r) => Some(r),
        }
    }
}

/// Metadata of one node life. `version` orders updates within one life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// The life this metadata belongs to.
    pub id: NodeId,
    /// Grows with every change made by the owning node.
    pub version: u64,
    /// Admin HTTP address, if the node serves one.
    pub admin: Option<SocketAddr>,
    /// Hosted services and their health.
    pub services: BTreeMap<String, ServiceHealth>,
    /// Set just before a graceful leave, so peers record `left`, not `dead`.
    pub leaving: bool,
    /// Tables this node declares: name → options summary. Nodes compare them so
    /// that a conflicting declaration is refused instead of splitting placement.
    pub tables: BTreeMap<String, String>,
    /// Declared tables of which this node is still syncing some slot: readers
    /// try its replicas last, and keep asking a slot's previous owners.
    pub syncing: std::collections::BTreeSet<String>,
    /// Per hosted service, the table whose replicas serve a key's calls, so
    /// clients route a call to where its data is.
    pub routes: BTreeMap<String, String>,
}

/// Why metadata was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaError {
    /// Too many services.
    #[error("too many services: {count} (at most {SERVICES_PER_NODE_MAX})")]
    TooManyServices {
        /// How many were given.
        count: usize,
    },
    /// A name or reason out of bounds.
    #[error("{what} is {len} bytes (at most {max})")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A service name that is empty or has characters other than `[a-z0-9-_.]`.
    #[error("invalid service name {0:?}: use 1-48 of a-z 0-9 - _ .")]
    BadServiceName(String),
    /// The encoded form is too large or could not be decoded.
    #[error("metadata encoding: {0}")]
    Encoding(String),
}

/// Checks a service name: lowercase ASCII letters, digits, `-`, `_`, `.`.
pub fn validate_service_name(name: &str) -> Result<(), MetaError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if name.is_empty() || name.len() > SERVICE_NAME_BYTES_MAX || !name.chars().all(ok_char) {
        return Err(MetaError::BadServiceName(name.to_string()));
    }
    Ok(())
}

impl NodeMeta {
    /// Metadata for a new life with no services.
    pub fn new(id: NodeId, admin: Option<SocketAddr>) -> Self {
        Self {
            id,
            version: 0,
            admin,
            services: BTreeMap::new(),
            leaving: false,
            tables: BTreeMap::new(),
            syncing: std::collections::BTreeSet::new(),
            routes: BTreeMap::new(),
        }
    }

    /// Checks every bound.
    pub fn validate(&self) -> Result<(), MetaError> {
        if self.id.name.len() > NODE_NAME_BYTES_MAX {
            return Err(MetaError::TooLong {
                what: "node name",
                len: self.id.name.len(),
                max: NODE_NAME_BYTES_MAX,
            });
        }
        if self.services.len() > SERVICES_PER_NODE_MAX {
            return Err(MetaError::TooManyServices {
                count: self.services.len(),
            });
        }
        if self.tables.len() > TABLES_PER_NODE_MAX {
            return Err(MetaError::TooLong {
                what: "table list",
                len: self.tables.len(),
                max: TABLES_PER_NODE_MAX,
            });
        }
        if let Some(unknown) = self.syncing.iter().find(|t| !self.tables.contains_key(*t)) {
            return Err(MetaError::BadServiceName(unknown.clone()));
        }
        if let Some((service, _)) = self
            .routes
            .iter()
            .find(|(s, t)| !self.services.contains_key(*s) || !self.tables.contains_key(*t))
        {
            return Err(MetaError::BadServiceName(service.clone()));
        }
        for (name, summary) in &self.tables {
            validate_service_name(name)?;
            if summary.len() > TABLE_SUMMARY_BYTES_MAX {
                return Err(MetaError::TooLong {
                    what: "table options summary",
                    len: summary.len(),
                    max: TABLE_SUMMARY_BYTES_MAX,
                });
            }
        }
        for (name, health) in &self.services {
            validate_service_name(name)?;
            let reason_len = health.reason().map_or(0, str::len);
            if reason_len > HEALTH_REASON_BYTES_MAX {
                return Err(MetaError::TooLong {
                    what: "health reason",
                    len: reason_len,
                    max: HEALTH_REASON_BYTES_MAX,
                });
            }
        }
        Ok(())
    }

    /// Encodes for gossip.
    pub fn encode(&self) -> Result<Vec<u8>, MetaError> {
        self.validate()?;
        let bytes = postcard::to_stdvec(self).map_err(|e| MetaError::Encoding(e.to_string()))?;
        if bytes.len() > META_BYTES_MAX {
            return Err(MetaError::TooLong {
                what: "encoded metadata",
                len: bytes.len(),
                max: META_BYTES_MAX,
            });
        }
        Ok(bytes)
    }

    /// Decodes gossip from a peer, re-checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaError> {
        if bytes.len() > META_BYTES_MAX {
            return Err(MetaError::TooLong {
                what: "encoded metadata",
                len: bytes.len(),
                max: META_BYTES_MAX,
            });
        }
        let meta: Self =
            postcard::from_bytes(bytes).map_err(|e| MetaError::Encoding(e.to_string()))?;
        meta.validate()?;
        Ok(meta)
    }

    /// Ordering key: newer life first, then newer version.
    pub fn order(&self) -> (u64, u16, u64) {
        (self.id.generation, self.id.rejoin, self.version)
    }
}

/// Broadcast key: which node, and how new.
#[derive(Debug, Clone)]
pub struct MetaKey {
    addr: SocketAddr,
    order: (u64, u16, u64),
}

impl foca::Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && self.order >= other.order
    }
}

/// Keeps the newest metadata per node address and tells foca which items are new
/// (and so worth re-disseminating).
///
/// A cheap handle: foca owns one copy as its broadcast handler and the core keeps
/// another to read from, because foca offers no accessor to its handler.
#[derive(Debug, Default, Clone)]
pub struct MetaStore {
    inner: Arc<Mutex<MetaMap>>,
}

#[derive(Debug, Default)]
struct MetaMap {
    by_addr: BTreeMap<SocketAddr, NodeMeta>,
    rejected: u64,
}

impl MetaStore {
    fn lock(&self) -> MutexGuard<'_, MetaMap> {
        // The map stays consistent even if a holder panicked: every write is a
        // single insert or remove.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest metadata known for a node address.
    pub fn get(&self, addr: &SocketAddr) -> Option<NodeMeta> {
        self.lock().by_addr.get(addr).cloned()
    }

    /// Items refused because they failed validation (a metric).
    pub fn rejected(&self) -> u64 {
        self.lock().rejected
    }

    /// Stores `meta` if newer; returns whether it was.
    pub fn offer(&self, meta: NodeMeta) -> bool {
        let mut map = self.lock();
        match map.by_addr.get(&meta.id.addr) {
            Some(known) if known.order() >= meta.order() => false,
            _ => {
                map.by_addr.insert(meta.id.addr, meta);
                true
            }
        }
    }
}

impl foca::BroadcastHandler<NodeId> for MetaStore {
    type Key = MetaKey;
    type Error = MetaError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<Self::Key>, Self::Error> {
        let meta = match NodeMeta::decode(data) {
            Ok(meta) => meta,
            Err(e) => {
                self.lock().rejected += 1;
                return Err(e);
            }
        };
        let key = MetaKey {
            addr: meta.id.addr,
            order: meta.order(),
        };
        // Local adds (sender None) are always (re-)disseminated: that is how a node
        // re-announces its metadata to members that joined after the last change.
        let newer = self.offer(meta);
        Ok((newer || sender.is_none()).then_some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(version: u64) -> NodeMeta {
        let id = NodeId::new("n1", "127.0.0.1:7000".parse().expect("literal"), 5);
        let mut m = NodeMeta::new(id, None);
        m.version = version;
        m.services
            .insert("kv".into(), ServiceHealth::Unhealthy("disk full".into()));
        m
    }

    #[test]
    fn round_trips_and_keeps_only_newer() {
        let m = meta(3);
        let decoded = NodeMeta::decode(&m.encode().expect("encodes")).expect("decodes");
        assert_eq!(decoded, m);
        let store = MetaStore::default();
        assert!(store.offer(meta(3)));
        assert!(!store.offer(meta(2)));
        assert!(!store.offer(meta(3)));
        assert!(store.offer(meta(4)));
    }

    #[test]
    fn rejects_out_of_bounds_metadata() {
        let mut m = meta(1);
        m.services.insert("Bad Name".into(), ServiceHealth::Healthy);
        assert!(matches!(m.encode(), Err(MetaError::BadServiceName(_))));
        let mut m = meta(1);
        m.services.insert(
            "kv".into(),
            ServiceHealth::Degraded("x".repeat(HEALTH_REASON_BYTES_MAX + 1)),
        );
        assert!(matches!(m.encode(), Err(MetaError::TooLong { .. })));
        assert!(NodeMeta::decode(&[0xff; 40]).is_err());
    }
}
