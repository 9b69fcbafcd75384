//! Consensus groups on a node: one `geoul-consensus` Raft group per
//! conditional group a hosted service declares, their messages over the
//! authenticated transport, and membership changes fed by the gossip view.
//!
//! Owns: [`Groups`] (opening groups under `<data-dir>/tables/consensus`, serving
//! peers' Raft messages, [`ConditionalAccess`] for handlers), the transport
//! [`RaftNet`], and the reconcile loop (every second: the live hosts of the
//! group's service are its desired members). Does not own: consensus
//! (`geoul-consensus`) or what services do with it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use geoul_consensus::{
    CondError, CondGroup, CondOp, CondOutcome, GroupConfig, RaftNet, RaftRequest, Reconciled,
};
use geoul_membership::{MemberState, Membership, ServiceHealth};
use geoul_service::{ConditionalAccess, StoreError};
use geoul_store::Clock;
use geoul_transport::{Net, Transport};

use crate::rpc::{PeerRequest, PeerResponse};

/// How often each group's membership is reconciled with the gossip view.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// How long after start a node leaves the gossip view to settle before it
/// reconciles at all. A node that just started may see only itself; if it
/// bootstrapped a group from that view while its peers formed one from
/// theirs, there would be two groups (the bootstrap rule needs a majority of
/// the *desired* members, and a one-node view is its own majority). On a LAN
/// SWIM joins within a few hundred ms; this is several times that.
const SETTLE: Duration = Duration::from_secs(3);

/// The groups of this node, by name, with the service each belongs to.
pub struct Groups {
    groups: HashMap<String, (String, CondGroup)>,
    clock: Arc<dyn Clock>,
}

/// Raft messages over the node transport (a `PeerRequest::Consensus`).
struct TransportRaftNet<N: Net> {
    transport: Transport<N>,
}

impl<N: Net> RaftNet for TransportRaftNet<N> {
    fn call(
        &self,
        addr: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> geoul_consensus::BoxFuture<'static, Result<Vec<u8>, String>> {
        let transport = self.transport.clone();
        let to: Result<SocketAddr, String> = addr.parse().map_err(|e| format!("{addr}: {e}"));
        Box::pin(async move {
            let to = to?;
            let payload = PeerRequest::Consensus(request)
                .encode()
                .map_err(|e| e.to_string())?;
            let bytes = transport
                .request(to, payload, timeout)
                .await
                .map_err(|e| format!("{to}: {e}"))?;
            match PeerResponse::decode(&bytes).map_err(|e| format!("{to}: bad reply: {e}"))? {
                PeerResponse::Consensus(reply) => Ok(reply),
                other => Err(format!("{to}: unexpected reply {other:?}")),
            }
        })
    }
}

impl Groups {
    /// Opens `wanted` (group name, service name) under `dir`, reachable at
    /// `self_addr`, talking over `transport`; a group is first formed only
    /// once `bootstrap_expect` hosts of its service are seen alive.
    pub async fn open<N: Net>(
        wanted: Vec<(String, String)>,
        dir: &Path,
        bootstrap_expect: usize,
        self_addr: SocketAddr,
        transport: Transport<N>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, CondError> {
        let net: Arc<dyn RaftNet> = Arc::new(TransportRaftNet { transport });
        let mut groups = HashMap::new();
        if !wanted.is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CondError::Storage(format!("{}: {e}", dir.display())))?;
        }
        for (group, service) in wanted {
            let g = CondGroup::open(
                GroupConfig {
                    bootstrap_expect,
                    ..GroupConfig::new(group.clone())
                },
                dir,
                self_addr.to_string(),
                net.clone(),
            )
            .await?;
            tracing::info!(group, node_id = g.node_id(), "consensus group open");
            groups.insert(group, (service, g));
        }
        Ok(Self { groups, clock })
    }

    /// No groups (a node without a data directory).
    pub fn none(clock: Arc<dyn Clock>) -> Self {
        Self {
            groups: HashMap::new(),
            clock,
        }
    }

    /// Serves a peer's Raft message (the reply bytes are the group's own).
    pub async fn serve(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let decoded = RaftRequest::decode(request).map_err(|e| e.to_string())?;
        let Some((_, group)) = self.groups.get(decoded.group()) else {
            return Err(format!("no consensus group {:?} here", decoded.group()));
        };
        group
            .handle(decoded)
            .await
            .encode()
            .map_err(|e| e.to_string())
    }

    /// Status of every group (for `/status`).
    pub async fn status(&self) -> Vec<geoul_consensus::GroupStatus> {
        let mut out = Vec::new();
        for (_, g) in self.groups.values() {
            out.push(g.status().await);
        }
        out
    }

    /// Stops every group (for every handle) and waits until its file is
    /// released.
    pub async fn shutdown(&self) {
        for (_, g) in self.groups.values() {
            g.clone().shutdown().await;
        }
    }
}

impl ConditionalAccess for Groups {
    fn submit(
        &self,
        group: &str,
        op: CondOp,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<CondOutcome, StoreError>> {
        let found = self.groups.get(group).map(|(_, g)| g.clone());
        let now = self.clock.unix_ms();
        let name = group.to_string();
        Box::pin(async move {
            let Some(g) = found else {
                return Err(StoreError::Unavailable(format!(
                    "conditional group {name:?} is not open on this node (it needs a data directory)"
                )));
            };
            g.submit_or_forward(op, now, timeout)
                .await
                .map_err(|e| match e {
                    CondError::TooLarge { .. } => StoreError::BadKey(e.to_string()),
                    // Nothing was proposed: the group has not formed yet.
                    CondError::NotInitialized => StoreError::NotReady(format!("{name}: {e}")),
                    other => StoreError::Unavailable(format!("{name}: {other}")),
                })
        })
    }
}

/// The health reason of a service whose group has not formed on this node
/// (within the 64 bytes membership metadata allows a reason; group names
/// are ASCII).
pub fn not_formed(group: &str) -> String {
    let mut reason = format!("consensus group {group} not formed yet");
    reason.truncate(geoul_membership::meta::HEALTH_REASON_BYTES_MAX);
    reason
}

/// Every `RECONCILE_EVERY`: the addresses of live members hosting each
/// group's service become the group's desired members; a service is
/// advertised degraded while one of its groups has not formed on this node.
pub async fn reconcile_forever(groups: Arc<Groups>, membership: Membership) {
    if groups.groups.is_empty() {
        return;
    }
    let mut advertised: HashMap<String, bool> = HashMap::new();
    tokio::time::sleep(SETTLE).await;
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: HashMap<String, String> = HashMap::new();
    loop {
        tick.tick().await;
        let snapshot = membership.snapshot();
        let view = &snapshot.view;
        // A member whose metadata has not arrived yet may host the service:
        // deciding membership without it is deciding on a partial view.
        if view.members.values().any(|m| {
            matches!(m.state, MemberState::Alive | MemberState::Suspect) && m.meta.is_none()
        }) {
            continue;
        }
        for (name, (service, group)) in &groups.groups {
            let mut desired: Vec<String> = view
                .members
                .values()
                .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
                .filter(|m| {
                    m.meta
                        .as_ref()
                        .is_some_and(|meta| meta.services.contains_key(service))
                })
                .map(|m| m.id.addr.to_string())
                .collect();
            desired.sort();
            let now = groups.clock.unix_ms();
            let outcome = match group.reconcile(&desired, now).await {
                Ok(r) => format!("{r:?}"),
                Err(e) => format!("error: {e}"),
            };
            // Log changes, not every idle tick.
            if last.get(name) != Some(&outcome) {
                if worth_logging(&outcome) {
                    tracing::info!(group = name, outcome, "consensus membership");
                } else {
                    tracing::debug!(group = name, outcome, "consensus membership");
                }
                last.insert(name.clone(), outcome);
            }
        }
        advertise_readiness(&groups, &membership, &mut advertised).await;
    }
}

/// Sets each service with groups healthy once all its groups are formed on
/// this node, degraded (with the first missing group) until then.
async fn advertise_readiness(
    groups: &Groups,
    membership: &Membership,
    advertised: &mut HashMap<String, bool>,
) {
    let mut missing: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (name, (service, group)) in &groups.groups {
        let entry = missing.entry(service.clone()).or_default();
        if entry.is_none() && !group.status().await.initialized {
            *entry = Some(name.clone());
        }
    }
    for (service, missing) in missing {
        let ready = missing.is_none();
        if advertised.get(&service) == Some(&ready) {
            continue;
        }
        let health = match &missing {
            None => ServiceHealth::Healthy,
            Some(group) => ServiceHealth::Degraded(not_formed(group)),
        };
        match membership.set_service_health(&service, health).await {
            Ok(()) => {
                advertised.insert(service, ready);
            }
            Err(e) => tracing::warn!(service, error = %e, "could not advertise readiness"),
        }
    }
}

/// Whether a reconcile outcome is worth an info line (a change, not idling).
fn worth_logging(outcome: &str) -> bool {
    ![Reconciled::Idle, Reconciled::NotLeader, Reconciled::Busy]
        .iter()
        .any(|r| format!("{r:?}") == outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_not_formed_reason_fits_membership_metadata() {
        let longest = "g".repeat(geoul_consensus::MAX_GROUP_NAME_BYTES);
        assert!(not_formed(&longest).len() <= geoul_membership::meta::HEALTH_REASON_BYTES_MAX);
        assert_eq!(
            not_formed("auth.tickets"),
            "consensus group auth.tickets not formed yet"
        );
    }
}
