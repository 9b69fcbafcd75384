//! One geoul node: membership, transport and their wiring, generic over the
//! network so the simulator runs the same code as production.
//!
//! Owns: start-up order, graceful shutdown, the metrics registry. Does not own:
//! configuration parsing (`config`), HTTP (`admin`), process concerns such as
//! signals and logging (the binary).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use geoul_client::Routes;
use geoul_membership::{
    MemberState, Membership, MembershipConfig, MembershipError, MembershipMetrics,
    MembershipOptions, NodeId, NodeMeta, ServiceHealth,
};
use geoul_replication::sync::{SyncConfig, SyncManager, SyncMetrics, SyncServer};
use geoul_replication::{LocalStore, Placement, ReplicationMetrics, Replicator, StoreError};
use geoul_service::{DynService, HostError, ReplicatorAccess, ServiceHost, ServiceMetrics};
use geoul_storage::{DiskStore, StorageError, StorageOptions, SyncPolicy};
use geoul_store::{Clock, Hlc, Origin, Timestamp};
use geoul_transport::{
    ClusterSecret, DatagramSeal, Net, Transport, TransportConfig, TransportError,
};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::consensus::Groups;
use crate::link::TransportLink;
use crate::metrics::TransportCollector;
use crate::rpc::{GroupsCell, HostCell, PeerHandler, ReplicatorCell};
use crate::status::StatusReport;
use crate::topology::NodeBackend;

/// How long a leaving node keeps gossiping its "left" notice before it stops:
/// a few gossip periods, so most peers hear it directly rather than by suspicion.
const LEAVE_LINGER: Duration = Duration::from_millis(300);

/// Everything a node needs besides the network and the secret.
#[derive(Clone, Debug)]
pub struct NodeParams {
    /// Node name.
    pub name: String,
    /// Address to bind (TCP and UDP, same port).
    pub bind: SocketAddr,
    /// Address advertised to peers and clients.
    pub advertise: SocketAddr,
    /// Admin HTTP address advertised in metadata (served by the binary).
    pub admin: Option<SocketAddr>,
    /// Seeds.
    pub seeds: Vec<SocketAddr>,
    /// Services hosted (advertised healthy until a service reports otherwise).
    pub services: Vec<Arc<dyn DynService>>,
    /// Detector settings.
    pub membership: MembershipConfig,
    /// This life's generation (from the data directory).
    pub generation: u64,
    /// Seed of every random choice (reproducible simulations).
    pub rng_seed: u64,
    /// Wall clock for versions and expiry (simulated time in the simulator).
    pub clock: Arc<dyn Clock>,
    /// Directory of the durable store; `None` keeps every table in memory only
    /// (a `Disk` table then refuses to start).
    pub tables_dir: Option<std::path::PathBuf>,
    /// fsync policy of the durable store.
    pub sync: SyncPolicy,
    /// Clock-skew allowance for expiry and the most a peer's clock may lead ours.
    pub skew_margin: Duration,
    /// Sync, anti-entropy and tombstone GC settings.
    pub sync_config: SyncConfig,
    /// Nodes a conditional group must see hosting its service before it is
    /// first formed; `None`: a majority of the seeds and this node
    /// ([`default_bootstrap_expect`]).
    pub bootstrap_expect: Option<usize>,
}

/// A majority of the distinct addresses among `seeds` and `me`: with the usual
/// configuration (every node seeded with the others) any two views that large
/// overlap, so two sides of a partition at startup cannot each form a group.
pub fn default_bootstrap_expect(seeds: &[SocketAddr], me: SocketAddr) -> usize {
    let distinct: std::collections::BTreeSet<SocketAddr> =
        seeds.iter().copied().chain([me]).collect();
    distinct.len() / 2 + 1
}

/// How often the expiry sweeper runs, and how many entries it examines per run:
/// 100 runs/s × 20k entries bounds its work to a few ms per second per table.
const SWEEP_PERIOD: Duration = Duration::from_millis(100);
/// Entries examined per sweep run.
const SWEEP_BUDGET: u64 = 20_000;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Membership failed to start (bind, config).
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The transport failed to bind.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The durable store could not be opened (corrupt, unreadable, in use).
    #[error("durable store: {0}")]
    Storage(#[from] StorageError),
    /// A table could not be declared or loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The services cannot be hosted together.
    #[error(transparent)]
    Services(#[from] HostError),
    /// A consensus group could not be opened.
    #[error("consensus group: {0}")]
    Consensus(#[from] geoul_consensus::CondError),
}

/// Where consensus groups keep their files, inside the tables directory
/// (`<data-dir>/tables/consensus`): wiping a node's tables wipes them too.
pub const CONSENSUS_DIR: &str = "consensus";

/// A running node.
pub struct Node<N: Net> {
    membership: Membership,
    transport: Transport<N>,
    replicator: Arc<Replicator<TransportLink<N>>>,
    sync: SyncManager,
    groups: Arc<Groups>,
    background: Vec<tokio::task::JoinHandle<()>>,
    registry: Arc<Registry>,
    started: Instant,
    membership_task: tokio::task::JoinHandle<()>,
    refs: Arc<dyn geoul_client::Backend>,
}

impl<N: Net> Node<N> {
    /// Starts membership and the transport on `params.bind`.
    pub async fn start(
        net: N,
        secret: ClusterSecret,
        params: NodeParams,
    ) -> Result<Self, NodeError> {
        let id = NodeId::new(params.name.clone(), params.advertise, params.generation);
        let mut meta = NodeMeta::new(id, params.admin);
        geoul_service::host::validate(&params.services)?;
        for service in &params.services {
            let name = service.name().to_string();
            if let Some(table) = service.tables().first() {
                meta.routes.insert(name.clone(), table.name.clone());
            }
            // Degraded until its consensus groups form (`consensus::reconcile_forever`
            // reports it healthy then): it serves, but conditional writes wait.
            let health = match service.conditional_groups().first() {
                Some(group) if params.tables_dir.is_some() => {
                    ServiceHealth::Degraded(crate::consensus::not_formed(group))
                }
                _ => ServiceHealth::Healthy,
            };
            meta.services.insert(name, health);
        }
        let store = Arc::new(open_store(&params)?);
        let uses = store.table_uses();
        for u in &uses {
            meta.tables.insert(u.table.clone(), u.summary.clone());
            // Nothing is synced before the first sync: say so from the start.
            meta.syncing.insert(u.table.clone());
        }
        let membership_metrics = MembershipMetrics::default();
        let options = MembershipOptions {
            bind: params.bind,
            meta,
            config: params.membership.clone(),
            seeds: params.seeds.clone(),
            rng_seed: params.rng_seed,
        };
        let (membership, membership_task) = Membership::start(
            &net,
            DatagramSeal::new(&secret),
            options,
            membership_metrics.clone(),
        )
        .await?;
        let transport_config = TransportConfig {
            hello: format!("{} {}", params.name, params.advertise),
            rng_seed: Some(params.rng_seed),
            ..TransportConfig::default()
        };
        let cell: ReplicatorCell<N> = Arc::default();
        let host_cell: HostCell = Arc::default();
        let groups_cell: GroupsCell = Arc::default();
        let sync_server = SyncServer::new(store.clone(), params.sync_config.serve_concurrency);
        let transport = Transport::bind(
            net,
            params.bind,
            secret,
            transport_config,
            PeerHandler::new(
                membership.clone(),
                cell.clone(),
                host_cell.clone(),
                groups_cell.clone(),
                sync_server,
            ),
        )
        .await?;
        let (placement_tx, placement_rx) =
            tokio::sync::watch::channel(Arc::new(Placement::default()));
        let (routes_tx, routes_rx) = tokio::sync::watch::channel(Arc::new(Routes::default()));
        let placement_task = tokio::spawn(follow_placement(
            membership.clone(),
            params.name.clone(),
            uses,
            placement_tx,
            routes_tx,
        ));
        let replication_metrics = ReplicationMetrics::default();
        let replicator = Arc::new(Replicator::new(
            store.clone(),
            Origin::new(&params.name, params.generation),
            Arc::new(TransportLink::new(transport.clone())),
            placement_rx.clone(),
            replication_metrics.clone(),
        ));
        // The cell is fresh and set exactly once, here.
        let _ = cell.set(replicator.clone());
        let wanted: Vec<(String, String)> = params
            .services
            .iter()
            .flat_map(|s| {
                let service = s.name().to_string();
                s.conditional_groups()
                    .into_iter()
                    .map(move |g| (g, service.clone()))
            })
            .collect();
        let groups = Arc::new(match &params.tables_dir {
            Some(tables) if !wanted.is_empty() => {
                Groups::open(
                    wanted,
                    &tables.join(CONSENSUS_DIR),
                    params.bootstrap_expect.unwrap_or_else(|| {
                        default_bootstrap_expect(&params.seeds, params.advertise)
                    }),
                    params.advertise,
                    transport.clone(),
                    params.clock.clone(),
                )
                .await?
            }
            _ => Groups::none(params.clock.clone()),
        });
        let _ = groups_cell.set(groups.clone());
        let service_metrics = ServiceMetrics::default();
        let refs: Arc<dyn geoul_client::Backend> =
            Arc::new(NodeBackend::new(transport.clone(), routes_rx));
        let host = ServiceHost::new(
            &params.name,
            Arc::new(ReplicatorAccess(replicator.clone())),
            groups.clone(),
            refs.clone(),
            params.services.clone(),
            service_metrics.clone(),
        )?;
        let _ = host_cell.set(Arc::new(host));
        let sync_metrics = SyncMetrics::default();
        let sync = SyncManager::spawn(
            store.clone(),
            Arc::new(TransportLink::new(transport.clone())),
            placement_rx,
            params.sync_config.clone(),
            sync_metrics.clone(),
            advertise_syncing(membership.clone()),
            away_too_long(&params),
        );
        let mut background = Vec::new();
        if let Some(dir) = &params.tables_dir {
            background.push(tokio::spawn(crate::contact::save_forever(
                dir.clone(),
                sync.last_contact_fn(),
            )));
        }
        background.push(tokio::spawn(end_backoffs_of_live_peers(
            membership.clone(),
            transport.clone(),
        )));
        background.push(tokio::spawn(crate::consensus::reconcile_forever(
            groups.clone(),
            membership.clone(),
        )));
        let sweep = Arc::new(crate::metrics::SweepCounters::default());
        let sweeper = tokio::spawn(sweep_forever(store.clone(), sweep.clone()));
        let mut registry = Registry::default();
        membership_metrics.register(&mut registry);
        replication_metrics.register(&mut registry);
        sync_metrics.register(&mut registry);
        service_metrics.register(&mut registry);
        for service in &params.services {
            service.register_metrics(&mut registry);
        }
        registry.register_collector(Box::new(crate::metrics::StoreCollector { store, sweep }));
        registry.register_collector(Box::new(TransportCollector(transport.metrics())));
        tracing::info!(
            name = %params.name,
            addr = %params.advertise,
            generation = params.generation,
            seeds = params.seeds.len(),
            "node started"
        );
        Ok(Self {
            membership,
            transport,
            replicator,
            sync,
            groups,
            background: {
                background.extend([placement_task, sweeper]);
                background
            },
            registry: Arc::new(registry),
            started: Instant::now(),
            membership_task,
            refs,
        })
    }

    /// The membership handle (view, watch, service health).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The transport (requests to other nodes).
    pub fn transport(&self) -> &Transport<N> {
        &self.transport
    }

    /// A ref to a service by name, as the node's own services call others
    /// (for the admin API and programs hosting the node).
    pub fn service_ref(&self, name: &str) -> geoul_client::ServiceRef {
        geoul_client::ServiceRef::new(self.refs.clone(), name)
    }

    /// The replicated write and read paths.
    pub fn replicator(&self) -> &Arc<Replicator<TransportLink<N>>> {
        &self.replicator
    }

    /// The `/status` document.
    pub fn status(&self) -> StatusReport {
        let uptime = Instant::now().saturating_duration_since(self.started);
        let mut report = StatusReport::new(
            &self.membership.snapshot(),
            std::process::id(),
            uptime.as_secs(),
        );
        report.tables = crate::status::table_statuses(self.replicator.store());
        report
    }

    /// When a peer last answered anti-entropy for every table (Unix ms): the
    /// binary persists it so a restart after the tombstone grace wipes the data.
    pub fn last_contact_ms(&self) -> Option<u64> {
        self.sync.last_contact_ms()
    }

    /// Prometheus/OpenMetrics text of every metric.
    pub fn render_metrics(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        text
    }

    /// Whether the node's internal tasks are running.
    pub fn healthy(&self) -> bool {
        !self.membership_task.is_finished()
    }

    /// Graceful stop: announce `left`, let the notice spread, close connections.
    pub async fn shutdown(self) {
        if let Err(e) = self.membership.leave().await {
            tracing::warn!(error = %e, "leave failed; peers will detect the stop by suspicion");
        }
        tokio::time::sleep(LEAVE_LINGER).await;
        self.transport.shutdown().await;
        self.membership_task.abort();
        drop(self.sync);
        for task in &self.background {
            task.abort();
        }
        self.groups.shutdown().await;
        tracing::info!("node stopped");
    }
}

fn open_store(params: &NodeParams) -> Result<LocalStore, NodeError> {
    let disk = match &params.tables_dir {
        Some(dir) => Some(Arc::new(DiskStore::open(
            dir,
            StorageOptions::with_sync(params.sync),
        )?)),
        None => None,
    };
    let hlc = Arc::new(Hlc::new(
        params.clock.clone(),
        params.skew_margin,
        Timestamp::ZERO,
    ));
    let store = LocalStore::new(hlc, params.skew_margin, disk)
        .with_tombstone_grace(params.sync_config.tombstone_grace);
    for service in &params.services {
        for spec in geoul_service::table_specs(service.as_ref()) {
            let table = spec.name.clone();
            let loaded = store.declare(service.name(), spec)?;
            tracing::info!(
                service = service.name(),
                table,
                entries = loaded,
                "table ready"
            );
        }
    }
    Ok(store)
}

/// Whether this node was out of touch for longer than the tombstone grace
/// allows before this start (its tables then start quarantined).
fn away_too_long(params: &NodeParams) -> bool {
    let Some(dir) = &params.tables_dir else {
        return false;
    };
    let limit = params.sync_config.wipe_after();
    match crate::contact::away_too_long(dir, params.clock.unix_ms(), limit) {
        Some(away_ms) => {
            tracing::warn!(
                away_s = away_ms / 1000,
                "away longer than the tombstone grace allows: tables are kept but not served \
                 until they are wiped and re-synced at the first contact with a peer"
            );
            true
        }
        None => false,
    }
}

/// Gossips whether this node is still syncing a table (readers try it last).
fn advertise_syncing(membership: Membership) -> geoul_replication::sync::manager::SyncingSink {
    Arc::new(move |table: &str, syncing: bool| {
        let membership = membership.clone();
        let table = table.to_string();
        tokio::spawn(async move {
            if let Err(e) = membership.set_table_syncing(&table, syncing).await {
                tracing::warn!(table, error = %e, "could not advertise the sync state");
            }
        });
    })
}

/// Recomputes placement on every membership change.
async fn follow_placement(
    membership: Membership,
    me: String,
    uses: Vec<geoul_replication::TableUse>,
    placement: tokio::sync::watch::Sender<Arc<Placement>>,
    routes: tokio::sync::watch::Sender<Arc<Routes>>,
) {
    let mut snapshots = membership.snapshots();
    let mut reported: Vec<geoul_replication::Conflict> = Vec::new();
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let prior = placement.borrow().clone();
        let next = Placement::compute(&snapshot.view, &me, &uses, Some(&prior));
        for c in next.conflicts() {
            if !reported.contains(c) {
                tracing::error!(
                    table = %c.table,
                    node = %c.node,
                    ours = %c.ours,
                    theirs = %c.theirs,
                    "refusing a conflicting table declaration: that node is left out of this table's placement"
                );
            }
        }
        reported = next.conflicts().to_vec();
        placement.send_replace(Arc::new(next));
        let topology = crate::topology::topology(&snapshot.view);
        routes.send_replace(Arc::new(Routes::new(&topology)));
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// Ends the dial backoff of every peer the failure detector sees come alive
/// (back from a crash, a partition, or a new life): the detector's word
/// that it answers is fresher than a backoff that grew while it was away,
/// which would otherwise keep requests to it failing for up to
/// `backoff_max` after it returned.
async fn end_backoffs_of_live_peers<N: Net>(membership: Membership, transport: Transport<N>) {
    let mut snapshots = membership.snapshots();
    let mut alive: HashMap<String, u64> = HashMap::new();
    loop {
        let view = snapshots.borrow_and_update().view.clone();
        let mut now_alive = HashMap::new();
        for m in view.members.values() {
            if m.is_self || m.state != MemberState::Alive {
                continue;
            }
            if alive.get(&m.id.name) != Some(&m.incarnation) && transport.peer_alive(m.id.addr) {
                tracing::debug!(peer = %m.id, "peer alive again; dialling it at once");
            }
            now_alive.insert(m.id.name.clone(), m.incarnation);
        }
        alive = now_alive;
        if snapshots.changed().await.is_err() {
            return;
        }
    }
}

/// Drops expired values in bounded passes, forever.
async fn sweep_forever(store: Arc<LocalStore>, counters: Arc<crate::metrics::SweepCounters>) {
    use std::sync::atomic::Ordering;
    let mut tick = tokio::time::interval(SWEEP_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = store.hlc().wall_ms();
        for table in store.tables() {
            let stats = table.lock().sweep(now, SWEEP_BUDGET);
            counters
                .examined
                .fetch_add(stats.examined, Ordering::Relaxed);
            counters.expired.fetch_add(stats.expired, Ordering::Relaxed);
            let gc = table
                .lock()
                .collect_garbage(store.gc_horizon_ms(), SWEEP_BUDGET);
            if !gc.collected.is_empty() {
                counters
                    .collected
                    .fetch_add(gc.collected.len() as u64, Ordering::Relaxed);
                if let Err(e) = store.forget(&table, &gc.collected) {
                    tracing::warn!(error = %e, "removing collected deletes from disk failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bootstrap_expect_is_a_majority_of_seeds_and_self() {
        let a: SocketAddr = "10.0.0.1:7000".parse().expect("addr");
        let b: SocketAddr = "10.0.0.2:7000".parse().expect("addr");
        let c: SocketAddr = "10.0.0.3:7000".parse().expect("addr");
        assert_eq!(default_bootstrap_expect(&[], a), 1, "a cluster of one");
        assert_eq!(default_bootstrap_expect(&[b, c], a), 2);
        // Seeding a node with itself (one list for every node) counts it once.
        assert_eq!(default_bootstrap_expect(&[a, b, c], a), 2);
        assert_eq!(default_bootstrap_expect(&[a, b, c, b], c), 2);
    }
}
