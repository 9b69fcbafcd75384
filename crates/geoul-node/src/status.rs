//! The `/status` document: what this node is and how it sees every member.
//!
//! Owns: the JSON shape (field names are a public contract: `name`, `addr`,
//! `state`, `incarnation`, `services`). Does not own: HTTP (see `admin`).

use std::collections::BTreeMap;

use geoul_membership::{MemberInfo, Snapshot};
use geoul_replication::sync::{StateCounts, SyncProgress};
use geoul_replication::LocalStore;
use serde::{Deserialize, Serialize};

/// One service's health as reported in status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// `healthy | degraded | unhealthy`.
    pub health: String,
    /// Why, when not healthy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node name.
    pub name: String,
    /// Cluster address clients and peers use.
    pub addr: String,
    /// `alive | suspect | dead | left`.
    pub state: String,
    /// Grows with every restart, rejoin and refutation.
    pub incarnation: u64,
    /// Process generation (restarts).
    pub generation: u64,
    /// Admin HTTP address, once gossiped.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub admin: Option<String>,
    /// Hosted services and their health.
    pub services: BTreeMap<String, ServiceStatus>,
}

/// The whole `/status` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// This node's name.
    pub node: String,
    /// This node's cluster address.
    pub addr: String,
    /// OS process id.
    pub pid: u32,
    /// This node's incarnation.
    pub incarnation: u64,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Lifeguard local health score (0 = healthy; timeouts × (1 + score)).
    pub local_health_score: u32,
    /// Every known member, this node included, sorted by name.
    pub members: Vec<MemberStatus>,
    /// This node's tables: slot states and sync progress.
    #[serde(default)]
    pub tables: BTreeMap<String, TableStatus>,
}

/// One table on this node: how many slots are in each state, and the progress
/// of the current (or last) sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStatus {
    /// Slot counts: `synced`, `syncing`, `leaving`, `stale`, `absent`.
    pub slots: StateCounts,
    /// Sync progress.
    pub sync: SyncProgress,
    /// Entries held (values and markers).
    pub entries: u64,
    /// Digest of every slot this node serves, combined (equal on two nodes that
    /// serve the same slots with the same contents).
    pub digest: String,
    /// The node's clock when the status was taken (Unix ms), to turn the
    /// progress times into a rate and an ETA.
    #[serde(default)]
    pub now_ms: u64,
}

impl TableStatus {
    /// Whether the node holds slots of the table (placement is known) and all
    /// of them are synced.
    pub fn synced(&self) -> bool {
        self.slots.syncing == 0 && self.slots.synced > 0
    }
}

/// The status of every table in `store`.
pub fn table_statuses(store: &LocalStore) -> BTreeMap<String, TableStatus> {
    store
        .tables()
        .iter()
        .map(|t| {
            let (entries, digest) = {
                let table = t.lock();
                let stats = table.stats();
                let mut digest = 0u64;
                for slot in geoul_placement::Slot::all() {
                    if t.sync().serves(slot) {
                        digest = digest
                            .rotate_left(7)
                            .wrapping_add(table.slot_digest(slot) ^ u64::from(slot.get()));
                    }
                }
                (stats.values + stats.markers, digest)
            };
            let status = TableStatus {
                slots: t.sync().counts(),
                sync: t.sync().progress(),
                entries,
                digest: format!("{digest:016x}"),
                now_ms: store.hlc().wall_ms(),
            };
            (t.spec().name.clone(), status)
        })
        .collect()
}

fn member_status(m: &MemberInfo) -> MemberStatus {
    let services = m
        .meta
        .as_ref()
        .map(|meta| {
            meta.services
                .iter()
                .map(|(name, h)| {
                    let status = ServiceStatus {
                        health: h.word().to_string(),
                        reason: h.reason().map(str::to_string),
                    };
                    (name.clone(), status)
                })
                .collect()
        })
        .unwrap_or_default();
    MemberStatus {
        name: m.id.name.clone(),
        addr: m.id.addr.to_string(),
        state: m.state.word().to_string(),
        incarnation: m.incarnation,
        generation: m.id.generation,
        admin: m
            .meta
            .as_ref()
            .and_then(|meta| meta.admin)
            .map(|a| a.to_string()),
        services,
    }
}

impl StatusReport {
    /// Builds the report from a membership snapshot.
    pub fn new(snapshot: &Snapshot, pid: u32, uptime_s: u64) -> Self {
        let me = snapshot.view.members.get(&snapshot.identity.name);
        Self {
            node: snapshot.identity.name.clone(),
            addr: snapshot.identity.addr.to_string(),
            pid,
            incarnation: me.map_or(0, |m| m.incarnation),
            uptime_s,
            local_health_score: snapshot.local_health_score,
            members: snapshot.view.members.values().map(member_status).collect(),
            tables: BTreeMap::new(),
        }
    }

    /// Whether every slot this node holds is synced (it answers reads for
    /// all of them).
    pub fn synced(&self) -> bool {
        self.tables.values().all(TableStatus::synced)
    }

    /// Whether every alive member reports every service it hosts healthy
    /// (not degraded, e.g. waiting for a consensus group to form).
    pub fn services_healthy(&self) -> bool {
        self.members
            .iter()
            .filter(|m| m.state == "alive")
            .all(|m| m.services.values().all(|s| s.health == "healthy"))
    }

    /// Members in `state`.
    pub fn count(&self, state: &str) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }
}
