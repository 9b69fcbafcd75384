//! Where a call goes: the routing view computed from a [`Topology`].
//!
//! Owns: [`Routes`] — per service, its healthy hosts and the placement map of
//! its routing table — and the order in which a call tries nodes. Does not own:
//! learning the topology (`client`, or the node's membership) or sending.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use geoul_placement::{slot_of, PlacementMap, Replication};
use rand::Rng;

use crate::wire::Topology;

/// A node a call may be sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Node name (shared: routing hands out targets on every call).
    pub name: Arc<str>,
    /// Its address.
    pub addr: SocketAddr,
}

struct ServiceRoutes {
    /// Hosts: (name, addr, preferred = alive, healthy and not syncing).
    hosts: Vec<(Arc<str>, SocketAddr, bool)>,
    map: Option<PlacementMap>,
}

/// Why a service cannot be routed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No member hosts or declares the service.
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// The service exists but no host is alive.
    #[error("no live replica of service {0:?}")]
    NoLiveReplica(String),
}

/// The routing view.
#[derive(Default)]
pub struct Routes {
    services: HashMap<String, ServiceRoutes>,
    members: Vec<Target>,
    /// Per table, members declaring it and not syncing it first.
    tables: HashMap<String, Vec<(Target, bool)>>,
}

impl Routes {
    /// Computes routes from `topology`. Every caller computes the same
    /// placement from the same view (rendezvous hashing, like the nodes do).
    pub fn new(topology: &Topology) -> Self {
        let mut services = HashMap::new();
        for service in &topology.services {
            let mut hosts: Vec<(Arc<str>, SocketAddr, bool)> = Vec::new();
            let mut names = Vec::new();
            for m in &topology.members {
                let Some((_, healthy)) = m.services.iter().find(|(s, _)| *s == service.name) else {
                    continue;
                };
                if !healthy {
                    continue;
                }
                let syncing = service
                    .table
                    .as_ref()
                    .is_some_and(|t| m.syncing.iter().any(|s| s == t));
                names.push(m.name.clone());
                hosts.push((Arc::from(m.name.as_str()), m.addr, !m.suspect && !syncing));
            }
            // Without a routing table, calls spread over all hosts by key.
            let replication = match service.table {
                Some(_) => service.replication,
                None => Replication::All,
            };
            let map = PlacementMap::compute(&names, replication).ok();
            services.insert(service.name.clone(), ServiceRoutes { hosts, map });
        }
        let members = topology
            .members
            .iter()
            .map(|m| Target {
                name: Arc::from(m.name.as_str()),
                addr: m.addr,
            })
            .collect();
        let mut tables: HashMap<String, Vec<(Target, bool)>> = HashMap::new();
        for m in &topology.members {
            for t in &m.tables {
                let ready = !m.suspect && !m.syncing.contains(t);
                let target = Target {
                    name: Arc::from(m.name.as_str()),
                    addr: m.addr,
                };
                tables.entry(t.clone()).or_default().push((target, ready));
            }
        }
        Self {
            services,
            members,
            tables,
        }
    }

    /// Members that can coordinate a query on `table`, ready ones first, in
    /// random order within each group.
    pub fn table_hosts(&self, table: &str, rng: &mut impl Rng) -> Vec<Target> {
        let mut hosts: Vec<&(Target, bool)> = self
            .tables
            .get(table)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        for i in (1..hosts.len()).rev() {
            let j = rng.random_range(0..=i);
            hosts.swap(i, j);
        }
        hosts.sort_by_key(|(_, ready)| !ready);
        hosts.into_iter().map(|(t, _)| t.clone()).collect()
    }

    /// Every member (for topology refreshes).
    pub fn members(&self) -> &[Target] {
        &self.members
    }

    /// Whether the service is known.
    pub fn knows(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    /// The nodes to try for a call to `service` with routing `key`, in order:
    /// the key's replicas (preferred ones first, by rendezvous preference),
    /// then every other host (any host can serve a call; a non-replica reads
    /// and writes through the replicas). Without a key: every host, preferred
    /// ones first, in random order (spreads load).
    pub fn order(
        &self,
        service: &str,
        key: Option<&[u8]>,
        rng: &mut impl Rng,
    ) -> Result<Vec<Target>, RouteError> {
        let routes = self
            .services
            .get(service)
            .ok_or_else(|| RouteError::UnknownService(service.to_string()))?;
        if routes.hosts.is_empty() {
            return Err(RouteError::NoLiveReplica(service.to_string()));
        }
        let target = |(name, addr, _): &(Arc<str>, SocketAddr, bool)| Target {
            name: name.clone(),
            addr: *addr,
        };
        let preferred = |name: &str| {
            routes
                .hosts
                .iter()
                .find(|(n, _, _)| &**n == name)
                .is_some_and(|(_, _, p)| *p)
        };
        let mut out: Vec<Target> = Vec::with_capacity(routes.hosts.len());
        match (key, &routes.map) {
            (Some(key), Some(map)) => {
                let slot = slot_of(key);
                let mut replicas: Vec<&str> = map.replicas(slot).collect();
                replicas.sort_by_key(|n| !preferred(n));
                for name in replicas {
                    if let Some(h) = routes.hosts.iter().find(|(n, _, _)| &**n == name) {
                        out.push(target(h));
                    }
                }
                let mut rest: Vec<&(Arc<str>, SocketAddr, bool)> = routes
                    .hosts
                    .iter()
                    .filter(|(n, _, _)| !out.iter().any(|t| t.name == *n))
                    .collect();
                rest.sort_by_key(|(_, _, p)| !p);
                out.extend(rest.into_iter().map(target));
            }
            _ => {
                let mut all: Vec<&(Arc<str>, SocketAddr, bool)> = routes.hosts.iter().collect();
                // Fisher-Yates, then a stable sort keeps the shuffle within groups.
                for i in (1..all.len()).rev() {
                    let j = rng.random_range(0..=i);
                    all.swap(i, j);
                }
                all.sort_by_key(|(_, _, p)| !p);
                out.extend(all.into_iter().map(target));
            }
        }
        Ok(out)
    }

    /// Every healthy host of `service` (for broadcasts).
    pub fn hosts(&self, service: &str) -> Result<Vec<Target>, RouteError> {
        let routes = self
            .services
            .get(service)
            .ok_or_else(|| RouteError::UnknownService(service.to_string()))?;
        Ok(routes
            .hosts
            .iter()
            .map(|(name, addr, _)| Target {
                name: name.clone(),
                addr: *addr,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MemberRoute, ServiceRoute};
    use rand::SeedableRng;

    fn topology(suspect: &str) -> Topology {
        let members = (1..=5)
            .map(|i| MemberRoute {
                name: format!("n{i}"),
                addr: SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
                suspect: format!("n{i}") == suspect,
                services: vec![("kv".into(), true), ("other".into(), i != 2)],
                syncing: Vec::new(),
                tables: vec!["kv".into()],
            })
            .collect();
        Topology {
            members,
            services: vec![
                ServiceRoute {
                    name: "kv".into(),
                    table: Some("kv".into()),
                    replication: Replication::Factor(3),
                },
                ServiceRoute {
                    name: "other".into(),
                    table: None,
                    replication: Replication::All,
                },
            ],
        }
    }

    #[test]
    fn a_key_goes_to_its_replicas_first_then_the_other_hosts() {
        let routes = Routes::new(&topology(""));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let order = routes.order("kv", Some(b"key"), &mut rng).expect("routes");
        assert_eq!(order.len(), 5);
        let names: Vec<&str> = order.iter().map(|t| &*t.name).collect();
        let map = PlacementMap::compute(&["n1", "n2", "n3", "n4", "n5"], Replication::Factor(3))
            .expect("map");
        let replicas: Vec<&str> = map.replicas(slot_of(b"key")).collect();
        assert_eq!(&names[..3], &replicas[..]);
    }

    #[test]
    fn suspect_replicas_are_tried_after_live_ones() {
        let map = PlacementMap::compute(&["n1", "n2", "n3", "n4", "n5"], Replication::Factor(3))
            .expect("map");
        let first = map.replicas(slot_of(b"key")).next().expect("a replica");
        let routes = Routes::new(&topology(first));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let order = routes.order("kv", Some(b"key"), &mut rng).expect("routes");
        assert_eq!(&*order[2].name, first);
    }

    #[test]
    fn unhealthy_hosts_and_unknown_services_are_not_routed() {
        let routes = Routes::new(&topology(""));
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let order = routes.order("other", None, &mut rng).expect("routes");
        assert_eq!(order.len(), 4);
        assert!(order.iter().all(|t| &*t.name != "n2"));
        assert_eq!(
            routes.order("nope", None, &mut rng),
            Err(RouteError::UnknownService("nope".into()))
        );
    }
}
