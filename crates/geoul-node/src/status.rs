//! The `/status` document: what this node is and how it sees every member.
//!
//! Owns: the JSON shape (field names are a public contract: `name`, `addr`,
//! `state`, `incarnation`, `services`). Does not own: HTTP (see `admin`).

use std::collections::BTreeMap;

use geoul_membership::{MemberInfo, Snapshot};
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
        }
    }

    /// Members in `state`.
    pub fn count(&self, state: &str) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }
}
