//! Who holds which slot right now: placement maps computed from the membership
//! view, plus how to reach each node.
//!
//! Owns: [`Placement`], rebuilt on every membership change, and the refusal of
//! conflicting table declarations. Does not own: the hashing (`geoul-placement`)
//! or liveness decisions (membership).
//!
//! Placement candidates are members that host the table's service and are alive
//! *or suspect*: slots move only when a node is declared dead (DESIGN.md §6), so
//! a brief suspicion does not reshuffle data. Routing is stricter: requests
//! prefer replicas that are alive and healthy. A member that declares the table
//! with other options is left out (and reported): every replica must apply the
//! same rules, and two placements of one table would split it.

use std::collections::HashMap;
use std::net::SocketAddr;

use geoul_membership::{MemberState, ServiceHealth, View};
use geoul_placement::{PlacementMap, Replication, Slot};

/// A table as this node declares it, for placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableUse {
    /// Table name.
    pub table: String,
    /// Service hosting it.
    pub service: String,
    /// Its replication.
    pub replication: Replication,
    /// Its options summary (compared with other nodes' declarations).
    pub summary: String,
}

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
    /// It advertises that it is still syncing some slot of the table.
    pub syncing: bool,
}

/// A member left out of a table's placement because it declares it differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Table.
    pub table: String,
    /// The member.
    pub node: String,
    /// Our declaration.
    pub ours: String,
    /// Theirs.
    pub theirs: String,
}

/// Placement of every table in use, from one membership view.
#[derive(Debug, Default)]
pub struct Placement {
    me: String,
    maps: HashMap<String, PlacementMap>,
    routes: HashMap<(String, String), Route>,
    conflicts: Vec<Conflict>,
    declared: HashMap<String, usize>,
    /// Per table, the map before the last change, kept while a handoff may be
    /// under way (some host still syncing) so reads can reach previous owners.
    previous: HashMap<String, PlacementMap>,
    /// Live members whose metadata is not known yet.
    unknown: usize,
}

impl Placement {
    /// Computes placement for each table in `uses` from `view`; `prior` is the
    /// placement this one replaces (to remember previous owners).
    ///
    /// A live member whose metadata has not arrived is left out and makes the
    /// placement incomplete (see [`Placement::complete`]).
    pub fn compute(view: &View, me: &str, uses: &[TableUse], prior: Option<&Placement>) -> Self {
        let mut maps = HashMap::new();
        let mut routes = HashMap::new();
        let mut conflicts = Vec::new();
        let mut declared = HashMap::new();
        let mut previous = HashMap::new();
        let unknown = view
            .members
            .values()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
            .filter(|m| m.meta.is_none())
            .count();
        for table_use in uses {
            let mut hosts: Vec<(String, Route)> = Vec::new();
            // Members whose metadata has not arrived yet may host the table:
            // they count as hosts until we know better.
            let known = view
                .members
                .values()
                .filter(|m| m.state != MemberState::Left)
                .filter(|m| {
                    m.meta
                        .as_ref()
                        .is_none_or(|meta| meta.services.contains_key(&table_use.service))
                })
                .count();
            declared.insert(table_use.table.clone(), known);
            for m in view.members.values() {
                if !matches!(m.state, MemberState::Alive | MemberState::Suspect) {
                    continue;
                }
                let Some(meta) = m.meta.as_ref() else {
                    continue;
                };
                let Some(health) = meta.services.get(&table_use.service) else {
                    continue;
                };
                if let Some(theirs) = meta.tables.get(&table_use.table) {
                    if *theirs != table_use.summary {
                        conflicts.push(Conflict {
                            table: table_use.table.clone(),
                            node: m.id.name.clone(),
                            ours: table_use.summary.clone(),
                            theirs: theirs.clone(),
                        });
                        continue;
                    }
                }
                let route = Route {
                    name: m.id.name.clone(),
                    addr: m.id.addr,
                    alive: m.state == MemberState::Alive,
                    healthy: !matches!(health, ServiceHealth::Unhealthy(_)),
                    syncing: meta.syncing.contains(&table_use.table),
                };
                hosts.push((m.id.name.clone(), route));
            }
            let names: Vec<&str> = hosts.iter().map(|(n, _)| n.as_str()).collect();
            match PlacementMap::compute(&names, table_use.replication) {
                Ok(map) => {
                    maps.insert(table_use.table.clone(), map);
                }
                Err(e) => tracing::error!(table = %table_use.table, error = %e, "placement failed"),
            }
            let handoff = hosts.iter().any(|(_, r)| r.syncing);
            for (name, route) in hosts {
                routes.insert((table_use.table.clone(), name), route);
            }
            if let Some(prior) = prior {
                let table = &table_use.table;
                // A fresh change always keeps the old map (the new owners'
                // "syncing" may not have been gossiped yet); an older one only
                // while some host is still syncing.
                let before = match (prior.maps.get(table), maps.get(table)) {
                    (Some(old), Some(new)) if old != new => Some(old.clone()),
                    _ => prior.previous.get(table).filter(|_| handoff).cloned(),
                };
                if let Some(before) = before {
                    previous.insert(table.clone(), before);
                }
            }
        }
        Self {
            me: me.to_string(),
            maps,
            routes,
            conflicts,
            declared,
            previous,
            unknown,
        }
    }

    /// Whether every live member's metadata is known. Until then placement may
    /// leave out hosts, so sync decisions (which copies to merge, whether to
    /// bootstrap) wait.
    pub fn complete(&self) -> bool {
        self.unknown == 0
    }

    /// Replicas of `slot` under the previous placement that are no longer
    /// replicas, while a handoff may be under way: they may still serve the
    /// slot (leaving), so `One` reads fall back to them and writes reach them.
    pub fn previous_only(&self, table: &str, slot: Slot) -> Vec<Route> {
        let Some(before) = self.previous.get(table) else {
            return Vec::new();
        };
        let now = self.maps.get(table);
        before
            .replicas(slot)
            .filter(|name| now.is_none_or(|m| !m.holds(slot, name)))
            .filter_map(|name| {
                self.routes
                    .get(&(table.to_string(), name.to_string()))
                    .cloned()
            })
            .collect()
    }

    /// Members hosting `table`'s service that are not known to have left, dead
    /// ones included: the cluster's size as far as this node knows.
    pub fn declared_hosts(&self, table: &str) -> usize {
        self.declared.get(table).copied().unwrap_or(0)
    }

    /// Whether this node holds `slot` of `table` under this placement.
    pub fn holds(&self, table: &str, slot: Slot) -> bool {
        self.is_replica(table, slot, &self.me)
    }

    /// Whether `node` is a replica of `slot` of `table` (no allocation: the
    /// anti-entropy loop asks this for every slot and peer).
    pub fn is_replica(&self, table: &str, slot: Slot, node: &str) -> bool {
        self.maps.get(table).is_some_and(|m| m.holds(slot, node))
    }

    /// Whether placement of `table` is known (some host, this node included).
    pub fn knows(&self, table: &str) -> bool {
        self.maps.contains_key(table)
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Members left out because they declare a table differently.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }

    /// The replicas of `slot` of `table`, preferred first.
    pub fn replicas(&self, table: &str, slot: Slot) -> Vec<Route> {
        let Some(map) = self.maps.get(table) else {
            return Vec::new();
        };
        map.replicas(slot)
            .filter_map(|name| {
                self.routes
                    .get(&(table.to_string(), name.to_string()))
                    .cloned()
            })
            .collect()
    }

    /// Names of `slot`'s replicas of `table` in rendezvous preference order,
    /// without copying (for callers that go over many slots).
    pub fn replica_names(&self, table: &str, slot: Slot) -> impl Iterator<Item = &str> + '_ {
        self.maps
            .get(table)
            .into_iter()
            .flat_map(move |map| map.replicas(slot))
    }

    /// Every node holding part of `table` (for scans that cover all slots).
    pub fn hosts(&self, table: &str) -> Vec<Route> {
        let mut hosts: Vec<Route> = self
            .routes
            .iter()
            .filter(|((t, _), _)| t == table)
            .map(|(_, r)| r.clone())
            .collect();
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        hosts
    }

    /// The replicas of `slot` in routing order: replicas still syncing the
    /// table last; before them this node first if it is one, then alive and
    /// healthy ones, then the rest, each group by preference.
    pub fn routing_order(&self, table: &str, slot: Slot) -> Vec<Route> {
        let mut replicas = self.replicas(table, slot);
        // A stable sort keeps the rendezvous preference inside each group.
        replicas.sort_by_key(|r| (r.syncing, r.name != self.me, !(r.alive && r.healthy)));
        replicas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_membership::{MemberInfo, NodeId, NodeMeta};

    fn member(name: &str, port: u16, kv: Option<&str>, state: MemberState) -> MemberInfo {
        let id = NodeId::new(name, SocketAddr::from(([127, 0, 0, 1], port)), 1);
        let mut meta = NodeMeta::new(id.clone(), None);
        meta.services.insert("kv".into(), ServiceHealth::Healthy);
        if let Some(summary) = kv {
            meta.tables.insert("kv".into(), summary.into());
        }
        MemberInfo {
            incarnation: id.incarnation(0),
            id,
            state,
            meta: Some(meta),
            is_self: false,
        }
    }

    fn uses() -> Vec<TableUse> {
        vec![TableUse {
            table: "kv".into(),
            service: "kv".into(),
            replication: Replication::Factor(3),
            summary: "factor3/quorum/disk/ttl-/max-".into(),
        }]
    }

    #[test]
    fn conflicting_declarations_and_dead_nodes_are_left_out() {
        let mut view = View::default();
        view.offer(member(
            "a",
            1,
            Some("factor3/quorum/disk/ttl-/max-"),
            MemberState::Alive,
        ));
        view.offer(member(
            "b",
            2,
            Some("factor3/quorum/disk/ttl-/max-"),
            MemberState::Suspect,
        ));
        view.offer(member(
            "c",
            3,
            Some("factor2/one/memory/ttl-/max-"),
            MemberState::Alive,
        ));
        view.offer(member("d", 4, None, MemberState::Dead));
        let p = Placement::compute(&view, "a", &uses(), None);
        assert_eq!(p.conflicts().len(), 1);
        assert_eq!(p.conflicts()[0].node, "c");
        let hosts: Vec<String> = p.hosts("kv").into_iter().map(|r| r.name).collect();
        assert_eq!(hosts, vec!["a", "b"]);
        for slot in Slot::all().take(50) {
            let order = p.routing_order("kv", slot);
            assert_eq!(order.len(), 2);
            assert_eq!(order[0].name, "a", "this node first");
            assert!(
                !order[1].alive,
                "suspect b is kept for placement but marked"
            );
        }
    }
}
