//! The routing view clients and services route by, derived from membership.
//!
//! Owns: building a [`Topology`] from a membership view (the answer to a
//! client's `Topology` request) and [`NodeBackend`] — how `ServiceRef`s inside
//! this node reach other nodes. Does not own: how a call is routed (geoul-
//! client's `Routes`) or membership itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use geoul_client::wire::{MemberRoute, ServiceRoute, Topology};
use geoul_client::{Backend, Routes};
use geoul_membership::{MemberState, ServiceHealth, View};
use geoul_store::Replication;
use geoul_transport::{Net, RequestError, Transport};
use tokio::sync::watch;

/// The replication named in a table's options summary (its first field, see
/// `TableOptions::summary`: `all` or `factorN`).
pub fn replication_of_summary(summary: &str) -> Option<Replication> {
    let first = summary.split('/').next()?;
    if first == "all" {
        return Some(Replication::All);
    }
    first
        .strip_prefix("factor")?
        .parse()
        .ok()
        .map(Replication::Factor)
}

/// The routing view of `view`: alive and suspect members with their services,
/// and each service's routing table as its hosts declare it.
pub fn topology(view: &View) -> Topology {
    let mut members = Vec::new();
    let mut services: BTreeMap<String, ServiceRoute> = BTreeMap::new();
    for m in view.members.values() {
        if !matches!(m.state, MemberState::Alive | MemberState::Suspect) {
            continue;
        }
        let Some(meta) = &m.meta else { continue };
        members.push(MemberRoute {
            name: m.id.name.clone(),
            addr: m.id.addr,
            suspect: m.state == MemberState::Suspect,
            services: meta
                .services
                .iter()
                .map(|(s, h)| (s.clone(), !matches!(h, ServiceHealth::Unhealthy(_))))
                .collect(),
            syncing: meta.syncing.iter().cloned().collect(),
            tables: meta.tables.keys().cloned().collect(),
        });
        for service in meta.services.keys() {
            let table = meta.routes.get(service);
            let replication = table
                .and_then(|t| meta.tables.get(t))
                .and_then(|summary| replication_of_summary(summary));
            let route = ServiceRoute {
                name: service.clone(),
                table: table.filter(|_| replication.is_some()).cloned(),
                replication: replication.unwrap_or(Replication::All),
            };
            services.entry(service.clone()).or_insert(route);
        }
    }
    Topology {
        members,
        services: services.into_values().collect(),
    }
}

/// How a node's services reach other nodes: its transport, and routes kept
/// current from its own membership view (no polling).
pub struct NodeBackend<N: Net> {
    transport: Transport<N>,
    routes: watch::Receiver<Arc<Routes>>,
}

impl<N: Net> NodeBackend<N> {
    /// A backend over `transport`, routing by `routes`.
    pub fn new(transport: Transport<N>, routes: watch::Receiver<Arc<Routes>>) -> Self {
        Self { transport, routes }
    }
}

impl<N: Net> Backend for NodeBackend<N> {
    fn request(
        &self,
        to: SocketAddr,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, RequestError>> {
        let transport = self.transport.clone();
        Box::pin(async move { transport.request(to, payload, timeout).await })
    }

    fn send_oneway(
        &self,
        to: SocketAddr,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), RequestError>> {
        let transport = self.transport.clone();
        Box::pin(async move { transport.send_oneway(to, payload).await })
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_store::{Ack, Durability, TableOptions};

    #[test]
    fn replication_is_read_back_from_the_summary() {
        for replication in [
            Replication::All,
            Replication::Factor(1),
            Replication::Factor(5),
        ] {
            let options = TableOptions {
                replication,
                write_ack: Ack::Quorum,
                durability: Durability::Disk,
                default_ttl: None,
                max_entries: Some(10),
                indexes: Vec::new(),
            };
            assert_eq!(
                replication_of_summary(&options.summary()),
                Some(replication)
            );
        }
        assert_eq!(replication_of_summary("factorx/one"), None);
    }

    // A summary the store produces must fit node metadata: checked when
    // the crate compiles.
    const _: () =
        assert!(geoul_store::SUMMARY_BYTES_MAX <= geoul_membership::meta::TABLE_SUMMARY_BYTES_MAX);
}
