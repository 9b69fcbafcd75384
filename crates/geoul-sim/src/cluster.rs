//! A whole geoul cluster in one process under turmoil: K real `Node`s (membership
//! and transport code unchanged) on a simulated network with simulated time.
//!
//! Owns: host set-up, fault injection (crash, restart, partition, heal, loss,
//! latency) and observation of every node's view and `watch()` events. Does not
//! own: the invariants (tests state them).

use geoul_node::status::TableStatus;
use geoul_replication::sync::SyncConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use geoul_client::wire::{ApiRequest, ApiResponse};
use geoul_membership::{MemberState, MembershipConfig, MembershipEvent, ServiceHealth, Snapshot};
use geoul_node::kv::{KvRequest, KvResponse};
use geoul_node::rpc::{PeerRequest, PeerResponse};
use geoul_node::{Node, NodeParams};
use geoul_store::Durability;
use geoul_transport::ClusterSecret;
use tokio::sync::mpsc;

use crate::net::{Loss, SimNet};

/// Cluster port every simulated node binds (each host has its own IP).
pub const SIM_PORT: u16 = 7000;

/// Events kept per node; older ones are dropped (tests look at recent history).
const EVENTS_KEPT_MAX: usize = 10_000;

/// Shape of a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Number of nodes, named `node-1` … `node-K`.
    pub nodes: usize,
    /// Detector settings of every node.
    pub membership: MembershipConfig,
    /// Simulated time per step. Timers resolve to this granularity.
    pub tick: Duration,
    /// Upper bound of one-way message latency (turmoil draws below it).
    pub max_latency: Duration,
    /// Durability of the `kv` table. `Disk` keeps each node's store in a real
    /// temporary directory that survives simulated crashes (like a disk survives
    /// `kill -9`); every batch is fsynced before it is acknowledged.
    pub kv_durability: Durability,
    /// Wall-clock offsets of some nodes, in ms (node index from 0, offset).
    pub clock_skews: Vec<(usize, i64)>,
    /// Sync and anti-entropy settings of every node.
    pub sync: SyncConfig,
    /// Options of the `kv` table (its durability comes from `kv_durability`).
    pub kv: geoul_store::TableOptions,
    /// Services beyond `kv` and the table-less `sim`.
    pub services: SimServices,
}

/// Optional services of a simulated node. Each table costs every node sync
/// and anti-entropy work, so tests host only what they exercise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimServices {
    /// `sim` keeps its counters table and deduplicates idempotency keys.
    pub counters: bool,
    /// The indexed `docs` service (queries).
    pub docs: bool,
    /// Host `docs` only on the first this many nodes (a service on a subset).
    pub docs_nodes: Option<usize>,
    /// The `auth` service ([`crate::auth_config`]); its consensus group needs
    /// `kv_durability: Disk` (a data directory).
    pub auth: bool,
    /// The instance directory ([`crate::dir_config`]).
    pub dir: bool,
    /// The directory's `copies` (`None`: every node holds every entry).
    pub dir_copies: Option<usize>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            nodes: 5,
            membership: MembershipConfig::default(),
            tick: Duration::from_millis(2),
            max_latency: Duration::from_millis(5),
            kv_durability: Durability::Memory,
            clock_skews: Vec::new(),
            sync: SyncConfig {
                anti_entropy_period: Duration::from_millis(500),
                bootstrap_wait: Duration::from_secs(1),
                ..SyncConfig::default()
            },
            kv: geoul_node::kv::default_options(),
            services: SimServices::default(),
        }
    }
}

/// Commands queued to one simulated node.
const HOST_COMMANDS_MAX: usize = 1024;

/// Something the test asks a running node to do.
#[derive(Debug)]
enum HostCommand {
    SetHealth(String, ServiceHealth),
    /// A request over the authenticated TCP transport to `to`.
    Call(SocketAddr, PeerRequest, Reply),
    /// A kv service call to `to`.
    Kv(SocketAddr, KvRequest, KvReply),
    /// A client request (service call, topology) to `to`.
    Api(SocketAddr, ApiRequest, ApiReply),
}

/// Where a simulated client request's answer goes.
pub type ApiReply = tokio::sync::oneshot::Sender<Result<ApiResponse, String>>;

/// Where a simulated kv call's answer goes.
pub type KvReply = tokio::sync::oneshot::Sender<Result<KvResponse, String>>;

/// Where a simulated request's answer goes.
pub type Reply = tokio::sync::oneshot::Sender<Result<PeerResponse, String>>;

/// How often each node reports its table status to the test.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// How long a simulated request may take before it counts as failed.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What the test can see of each node, and how it reaches them.
#[derive(Default)]
struct Observed {
    views: BTreeMap<String, Arc<Snapshot>>,
    events: BTreeMap<String, Vec<MembershipEvent>>,
    generations: BTreeMap<String, u64>,
    commands: BTreeMap<String, mpsc::Sender<HostCommand>>,
    tables: BTreeMap<String, BTreeMap<String, TableStatus>>,
}

type Shared = Arc<Mutex<Observed>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Observed> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A simulated cluster under one seed.
pub struct SimCluster<'a> {
    sim: turmoil::Sim<'a>,
    names: Vec<String>,
    running: BTreeSet<String>,
    observed: Shared,
    loss: Arc<Loss>,
    /// Node data directories (kept alive as long as the cluster).
    _dirs: Option<tempfile::TempDir>,
}

impl<'a> SimCluster<'a> {
    /// Builds the cluster; nodes start on the first step.
    pub fn new(seed: u64, options: SimOptions) -> Self {
        crate::init_logging();
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .tick_duration(options.tick)
            .simulation_duration(Duration::from_secs(24 * 3600))
            .min_message_latency(Duration::from_micros(100))
            .max_message_latency(options.max_latency)
            .build();
        let names: Vec<String> = (1..=options.nodes).map(|i| format!("node-{i}")).collect();
        let observed = Shared::default();
        let loss = Loss::new(seed ^ 0x9e37_79b9_7f4a_7c15);
        let secret = match ClusterSecret::from_bytes(b"simulation-cluster-secret-0123456789") {
            Ok(secret) => secret,
            Err(e) => panic!("literal secret is valid: {e}"),
        };
        // tmpfs when available: simulated crashes never lose the page cache, so
        // real fsync latency would only slow the simulation down.
        let shm = std::path::Path::new("/dev/shm");
        let dirs = match options.kv_durability {
            Durability::Disk => match if shm.is_dir() {
                tempfile::tempdir_in(shm)
            } else {
                tempfile::tempdir()
            } {
                Ok(dir) => Some(dir),
                Err(e) => panic!("simulation needs a temporary directory: {e}"),
            },
            Durability::Memory => None,
        };
        for (index, name) in names.iter().enumerate() {
            let skew_ms = options
                .clock_skews
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(0, |(_, ms)| *ms);
            let host = HostSpec {
                skew_ms,
                tables_dir: dirs.as_ref().map(|d| d.path().join(name)),
                kv_durability: options.kv_durability,
                sync: options.sync.clone(),
                kv: options.kv.clone(),
                services: options.services,
                index,
                name: name.clone(),
                peers: names.clone(),
                secret: secret.clone(),
                membership: options.membership.clone(),
                rng_seed: seed.wrapping_mul(31).wrapping_add(index as u64),
                observed: observed.clone(),
                loss: loss.clone(),
            };
            sim.host(name.as_str(), move || host.clone().run());
        }
        let running = names.iter().cloned().collect();
        Self {
            sim,
            names,
            running,
            observed,
            loss,
            _dirs: dirs,
        }
    }

    /// Node names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Simulated time since start.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Advances simulated time by `d`.
    pub fn run_for(&mut self, d: Duration) -> Result<(), String> {
        let until = self.sim.elapsed() + d;
        while self.sim.elapsed() < until {
            self.sim
                .step()
                .map_err(|e| format!("simulation failed: {e}"))?;
        }
        Ok(())
    }

    /// Advances until `pred` holds (checked every 10 ms of simulated time) or
    /// `limit` passes; returns how long it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Self) -> bool,
    ) -> Result<Duration, String> {
        let start = self.sim.elapsed();
        loop {
            if pred(self) {
                return Ok(self.sim.elapsed() - start);
            }
            if self.sim.elapsed() - start > limit {
                return Err(format!(
                    "timed out after {limit:?} waiting for: {what}\n{}",
                    self.describe()
                ));
            }
            self.run_for(Duration::from_millis(10))?;
        }
    }

    /// Kills a node (no leave, no flush: like `kill -9`).
    pub fn crash(&mut self, name: &str) {
        self.sim.crash(name);
        self.running.remove(name);
        let mut observed = lock(&self.observed);
        observed.views.remove(name);
        observed.commands.remove(name);
        observed.tables.remove(name);
    }

    /// Destroys a crashed node's durable data, as if its disk was replaced.
    pub fn wipe_data(&self, name: &str) -> Result<(), String> {
        if self.running.contains(name) {
            return Err(format!("{name} is running; crash it first"));
        }
        let Some(dirs) = &self._dirs else {
            return Ok(());
        };
        let dir = dirs.path().join(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("wiping {}: {e}", dir.display())),
        }
    }

    /// Starts a crashed node again, with a higher generation.
    pub fn restart(&mut self, name: &str) {
        self.sim.bounce(name);
        self.running.insert(name.to_string());
    }

    /// Cuts every link between the two groups.
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        for x in a {
            for y in b {
                self.sim.partition(*x, *y);
            }
        }
    }

    /// Restores every link between the two groups.
    pub fn heal(&self, a: &[&str], b: &[&str]) {
        for x in a {
            for y in b {
                self.sim.repair(*x, *y);
            }
        }
    }

    /// Drops each gossip datagram with probability `rate` from now on.
    pub fn set_loss(&self, rate: f64) {
        self.loss.set_rate(rate);
    }

    /// Names of running nodes.
    pub fn running(&self) -> Vec<String> {
        self.running.iter().cloned().collect()
    }

    /// How `observer` currently sees `member` (None if unknown or not running).
    pub fn state_seen_by(&self, observer: &str, member: &str) -> Option<MemberState> {
        let observed = lock(&self.observed);
        observed
            .views
            .get(observer)
            .and_then(|s| s.view.members.get(member))
            .map(|m| m.state)
    }

    /// The incarnation `observer` knows for `member`.
    pub fn incarnation_seen_by(&self, observer: &str, member: &str) -> Option<u64> {
        let observed = lock(&self.observed);
        observed
            .views
            .get(observer)
            .and_then(|s| s.view.members.get(member))
            .map(|m| m.incarnation)
    }

    /// Whether every running node other than `member` sees it in `state`.
    pub fn all_others_see(&self, member: &str, state: MemberState) -> bool {
        self.running
            .iter()
            .filter(|o| o.as_str() != member)
            .all(|o| self.state_seen_by(o, member) == Some(state))
    }

    /// The table status `node` last reported (slot states, progress, digest).
    pub fn tables_of(&self, node: &str) -> Option<BTreeMap<String, TableStatus>> {
        lock(&self.observed).tables.get(node).cloned()
    }

    /// Whether every running node reported every slot it holds synced.
    pub fn synced(&self) -> bool {
        let observed = lock(&self.observed);
        self.running.iter().all(|n| {
            observed
                .tables
                .get(n)
                .is_some_and(|t| !t.is_empty() && t.values().all(TableStatus::synced))
        })
    }

    /// Whether every running node sees exactly the running nodes alive.
    pub fn converged(&self) -> bool {
        self.running.iter().all(|o| {
            self.names.iter().all(|m| {
                let seen = self.state_seen_by(o, m);
                if self.running.contains(m) {
                    seen == Some(MemberState::Alive)
                } else {
                    seen != Some(MemberState::Alive) && seen != Some(MemberState::Suspect)
                }
            })
        })
    }

    /// Makes `node` report `health` for `service` (every node hosts "sim").
    pub fn set_service_health(
        &self,
        node: &str,
        service: &str,
        health: ServiceHealth,
    ) -> Result<(), String> {
        let observed = lock(&self.observed);
        let tx = observed
            .commands
            .get(node)
            .ok_or_else(|| format!("{node} is not running"))?;
        tx.try_send(HostCommand::SetHealth(service.to_string(), health))
            .map_err(|e| format!("{node} command queue: {e}"))
    }

    /// Queues a request from `from` to `to`; the receiver gets the answer as the
    /// simulation runs (call [`Self::run_for`]).
    pub fn submit(
        &self,
        from: &str,
        to: &str,
        request: PeerRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<PeerResponse, String>>, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let target = SocketAddr::new(self.sim.lookup(to), SIM_PORT);
        self.command(from, HostCommand::Call(target, request, tx))?;
        Ok(rx)
    }

    /// Queues `command` on node `from`.
    fn command(&self, from: &str, command: HostCommand) -> Result<(), String> {
        let observed = lock(&self.observed);
        let commands = observed
            .commands
            .get(from)
            .ok_or_else(|| format!("{from} is not running"))?;
        commands
            .try_send(command)
            .map_err(|e| format!("{from} command queue: {e}"))
    }

    /// Queues a kv call from `from` to `to` (served by `to`'s kv service).
    pub fn submit_kv(
        &self,
        from: &str,
        to: &str,
        request: KvRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<KvResponse, String>>, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let target = SocketAddr::new(self.sim.lookup(to), SIM_PORT);
        self.command(from, HostCommand::Kv(target, request, tx))?;
        Ok(rx)
    }

    /// A kv call, running the simulation until it is answered.
    pub fn call_kv(
        &mut self,
        from: &str,
        to: &str,
        request: KvRequest,
    ) -> Result<KvResponse, String> {
        let rx = self.submit_kv(from, to, request)?;
        self.wait_reply(rx)
    }

    /// Queues a client request from `from` to `to`.
    pub fn submit_api(
        &self,
        from: &str,
        to: &str,
        request: ApiRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<ApiResponse, String>>, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let target = SocketAddr::new(self.sim.lookup(to), SIM_PORT);
        self.command(from, HostCommand::Api(target, request, tx))?;
        Ok(rx)
    }

    /// A client request, running the simulation until it is answered.
    pub fn call_api(
        &mut self,
        from: &str,
        to: &str,
        request: ApiRequest,
    ) -> Result<ApiResponse, String> {
        let rx = self.submit_api(from, to, request)?;
        self.wait_reply(rx)
    }

    /// Runs the simulation until `rx` is answered (or twice the request
    /// timeout passed).
    pub fn wait_reply<T>(
        &mut self,
        mut rx: tokio::sync::oneshot::Receiver<Result<T, String>>,
    ) -> Result<T, String> {
        let limit = self.sim.elapsed() + PING_TIMEOUT * 2;
        while self.sim.elapsed() < limit {
            self.run_for(Duration::from_millis(5))?;
            match rx.try_recv() {
                Ok(result) => return result,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                Err(e) => return Err(format!("reply lost: {e}")),
            }
        }
        Err("request did not complete".to_string())
    }

    /// Sends a request and runs the simulation until it is answered.
    pub fn call(
        &mut self,
        from: &str,
        to: &str,
        request: PeerRequest,
    ) -> Result<PeerResponse, String> {
        let rx = self.submit(from, to, request)?;
        self.wait_reply(rx)
    }

    /// Sends a `Ping` from `from` to `to` over the transport and runs the
    /// simulation until it answers; returns the answering node's name.
    pub fn ping(&mut self, from: &str, to: &str) -> Result<String, String> {
        match self.call(from, to, PeerRequest::Ping)? {
            PeerResponse::Pong { name, .. } => Ok(name),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// The health of `service` on `member`, as gossiped to `observer`.
    pub fn service_health_seen_by(
        &self,
        observer: &str,
        member: &str,
        service: &str,
    ) -> Option<ServiceHealth> {
        let observed = lock(&self.observed);
        observed
            .views
            .get(observer)
            .and_then(|s| s.view.members.get(member))
            .and_then(|m| m.meta.as_ref())
            .and_then(|meta| meta.services.get(service).cloned())
    }

    /// Every (observer, member) pair where a running member is seen dead or left.
    pub fn false_deaths(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for o in &self.running {
            for m in &self.running {
                if matches!(
                    self.state_seen_by(o, m),
                    Some(MemberState::Dead | MemberState::Left)
                ) {
                    found.push((o.clone(), m.clone()));
                }
            }
        }
        found
    }

    /// Events `observer`'s `watch()` stream delivered (current life only).
    pub fn events(&self, observer: &str) -> Vec<MembershipEvent> {
        lock(&self.observed)
            .events
            .get(observer)
            .cloned()
            .unwrap_or_default()
    }

    /// Every node's view, one line per observer, for failure messages.
    pub fn describe(&self) -> String {
        let observed = lock(&self.observed);
        let mut out = format!("t={:?}\n", self.sim.elapsed());
        for (name, snap) in &observed.views {
            let states: Vec<String> = snap
                .view
                .members
                .values()
                .map(|m| format!("{}={}#{}", m.id.name, m.state, m.incarnation))
                .collect();
            out.push_str(&format!(
                "  {name} (health {}): {}\n",
                snap.local_health_score,
                states.join(" ")
            ));
        }
        out
    }
}

#[derive(Clone)]
struct HostSpec {
    name: String,
    skew_ms: i64,
    tables_dir: Option<std::path::PathBuf>,
    kv_durability: Durability,
    sync: SyncConfig,
    kv: geoul_store::TableOptions,
    services: SimServices,
    /// Position of this node (0-based).
    index: usize,
    peers: Vec<String>,
    secret: ClusterSecret,
    membership: MembershipConfig,
    rng_seed: u64,
    observed: Shared,
    loss: Arc<Loss>,
}

impl HostSpec {
    async fn run(self) -> Result<(), Box<dyn std::error::Error>> {
        let generation = {
            let mut observed = lock(&self.observed);
            let g = observed.generations.entry(self.name.clone()).or_insert(0);
            *g += 1;
            let g = *g;
            observed.events.insert(self.name.clone(), Vec::new());
            observed.tables.remove(&self.name);
            g
        };
        let addr_of = |name: &str| SocketAddr::new(turmoil::lookup(name), SIM_PORT);
        let advertise = addr_of(&self.name);
        let seeds = self
            .peers
            .iter()
            .filter(|p| **p != self.name)
            .map(|p| addr_of(p))
            .collect();
        let params = NodeParams {
            name: self.name.clone(),
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), SIM_PORT),
            advertise,
            admin: None,
            seeds,
            services: vec![
                geoul_service::hosted(crate::echo::EchoService {
                    counters: self.services.counters,
                }),
                geoul_service::hosted(
                    geoul_node::kv::KvService::new(geoul_store::TableOptions {
                        durability: self.kv_durability,
                        ..self.kv.clone()
                    })
                    .without_dedup(),
                ),
            ]
            .into_iter()
            .chain(
                (self.services.docs && self.services.docs_nodes.is_none_or(|n| self.index < n))
                    .then(|| geoul_service::hosted(crate::docs::DocsService)),
            )
            .chain(self.services.auth.then(|| {
                match geoul_auth::AuthService::new(crate::auth_config()) {
                    Ok(auth) => geoul_service::hosted(auth),
                    Err(e) => panic!("the simulation's auth config is valid: {e}"),
                }
            }))
            .chain(self.services.dir.then(|| {
                let config = geoul_dir::DirConfig {
                    copies: self.services.dir_copies,
                    ..crate::dir_config()
                };
                match geoul_dir::DirService::new(config) {
                    Ok(dir) => geoul_service::hosted(dir),
                    Err(e) => panic!("the simulation's directory config is valid: {e}"),
                }
            }))
            .collect(),
            membership: self.membership.clone(),
            generation,
            rng_seed: self.rng_seed.wrapping_add(generation << 32),
            clock: crate::clock::SimClock::new(self.skew_ms),
            tables_dir: self.tables_dir.clone(),
            sync: geoul_storage::SyncPolicy::EveryBatch,
            skew_margin: Duration::from_millis(200),
            sync_config: self.sync.clone(),
            bootstrap_expect: None,
        };
        let node = Node::start(SimNet::new(self.loss.clone()), self.secret.clone(), params).await?;
        let mut events = node.membership().watch();
        let mut snapshots = node.membership().snapshots();
        let (tx, mut commands) = mpsc::channel(HOST_COMMANDS_MAX);
        {
            let mut observed = lock(&self.observed);
            observed.commands.insert(self.name.clone(), tx);
            observed
                .views
                .insert(self.name.clone(), node.membership().snapshot());
        }
        let mut report = tokio::time::interval(STATUS_EVERY);
        loop {
            tokio::select! {
                _ = report.tick() => {
                    let tables = geoul_node::status::table_statuses(node.replicator().store());
                    lock(&self.observed).tables.insert(self.name.clone(), tables);
                }
                Some(command) = commands.recv() => match command {
                    HostCommand::SetHealth(service, health) => {
                        node.membership().set_service_health(&service, health).await?;
                    }
                    HostCommand::Call(to, request, reply) => {
                        let transport = node.transport().clone();
                        tokio::spawn(async move {
                            let result = match request.encode() {
                                Ok(payload) => transport
                                    .request(to, payload, PING_TIMEOUT)
                                    .await
                                    .map_err(|e| e.to_string())
                                    .and_then(|bytes| {
                                        PeerResponse::decode(&bytes).map_err(|e| e.to_string())
                                    }),
                                Err(e) => Err(e.to_string()),
                            };
                            let _ = reply.send(result);
                        });
                    }
                    HostCommand::Api(to, request, reply) => {
                        let transport = node.transport().clone();
                        tokio::spawn(async move {
                            let result = match geoul_client::wire::encode_request(&request) {
                                Ok(payload) => transport
                                    .request(to, payload, PING_TIMEOUT)
                                    .await
                                    .map_err(|e| e.to_string())
                                    .and_then(|bytes| {
                                        geoul_client::wire::decode_response(&bytes)
                                            .map_err(|e| e.to_string())
                                    }),
                                Err(e) => Err(e.to_string()),
                            };
                            let _ = reply.send(result);
                        });
                    }
                    HostCommand::Kv(to, request, reply) => {
                        let transport = node.transport().clone();
                        tokio::spawn(async move {
                            let result = match geoul_node::kv::encode_call(&request) {
                                Ok(payload) => transport
                                    .request(to, payload, PING_TIMEOUT)
                                    .await
                                    .map_err(|e| e.to_string())
                                    .and_then(|bytes| geoul_node::kv::decode_reply(&bytes)),
                                Err(e) => Err(e),
                            };
                            let _ = reply.send(result);
                        });
                    }
                },
                event = events.recv() => {
                    if let Ok(event) = event {
                        let mut observed = lock(&self.observed);
                        let log = observed.events.entry(self.name.clone()).or_default();
                        if log.len() < EVENTS_KEPT_MAX {
                            log.push(event);
                        }
                    }
                }
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let snap = snapshots.borrow_and_update().clone();
                    lock(&self.observed).views.insert(self.name.clone(), snap);
                }
            }
        }
    }
}
