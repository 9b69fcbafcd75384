//! Who holds which slot right now: placement maps computed from the membership
//! view, plus how to reach each node.
//!
//! Owns: [`Placement`], rebuilt on every membership change. Does not own: the
//! hashing (`geoul-placement`) or liveness decisions (membership).
//!
//! Placement candidates are members that host the table's service and are alive
//! *or suspect*: slots move only when a node is declared dead (DESIGN.md §6), so
//! a brief suspicion does not reshuffle data. Routing is stricter: requests
//! prefer replicas that are alive and healthy.

use std::collections::HashMap;
use std::net::SocketAddr;

use geoul_membership::{MemberState, ServiceHealth, View};
use geoul_placement::{PlacementMap, Replication, Slot};

/// How to reach one node, and whether to prefer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Node name.
    pub name: String,
    /// Cluster address.
    pub addr: SocketAddr,
    /// Alive (not suspect).
    pub alive: bool,
    /// Its service reports itself healthy (or degraded).
    pub healthy: bool,
}

/// Placement of every (service, replication) in use, from one membership view.
#[derive(Debug, Default)]
pub struct Placement {
    me: String,
    maps: HashMap<(String, Replication), PlacementMap>,
    routes: HashMap<(String, String), Route>,
}

impl Placement {
    /// Computes placement for each `(service, replication)` from `view`.
    pub fn compute(view: &View, me: &str, uses: &[(String, Replication)]) -> Self {
        let mut maps = HashMap::new();
        let mut routes = HashMap::new();
        for (service, replication) in uses {
            let hosts: Vec<(String, Route)> = view
                .members
                .values()
                .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
                .filter_map(|m| {
                    let health = m.meta.as_ref()?.services.get(service)?;
                    let route = Route {
                        name: m.id.name.clone(),
                        addr: m.id.addr,
                        alive: m.state == MemberState::Alive,
                        healthy: !matches!(health, ServiceHealth::Unhealthy(_)),
                    };
                    Some((m.id.name.clone(), route))
                })
                .collect();
            let names: Vec<&str> = hosts.iter().map(|(n, _)| n.as_str()).collect();
            match PlacementMap::compute(&names, *replication) {
                Ok(map) => {
                    maps.insert((service.clone(), *replication), map);
                }
                Err(e) => tracing::error!(%service, error = %e, "placement failed"),
            }
            for (name, route) in hosts {
                routes.insert((service.clone(), name), route);
            }
        }
        Self {
            me: me.to_string(),
            maps,
            routes,
        }
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The replicas of `slot`, preferred first.
    pub fn replicas(&self, service: &str, replication: Replication, slot: Slot) -> Vec<Route> {
        let Some(map) = self.maps.get(&(service.to_string(), replication)) else {
            return Vec::new();
        };
        map.replicas(slot)
            .filter_map(|name| {
                self.routes
                    .get(&(service.to_string(), name.to_string()))
                    .cloned()
            })
            .collect()
    }

    /// Every node hosting `service` (for scans that cover all slots).
    pub fn hosts(&self, service: &str) -> Vec<Route> {
        let mut hosts: Vec<Route> = self
            .routes
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|(_, r)| r.clone())
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        hosts
    }

    /// The replicas of `slot` in routing order: this node first if it is one,
    /// then alive and healthy ones, then the rest, each group by preference.
    pub fn routing_order(&self, service: &str, replication: Replication, slot: Slot) -> Vec<Route> {
        let mut replicas = self.replicas(service, replication, slot);
        // A stable sort keeps the rendezvous preference inside each group.
        replicas.sort_by_key(|r| (r.name != self.me, !(r.alive && r.healthy)));
        replicas
    }
}
