//! The async shell around [`MembershipCore`]: one task that owns the gossip socket,
//! the timer queue and the core, and publishes the view.
//!
//! Owns: sealing/opening datagrams, timers, the public [`Membership`] handle
//! (`snapshot`, `watch`, `set_service_health`, `leave`). Does not own: any
//! membership decision (the core makes them all).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use geoul_transport::{Datagram, DatagramSeal, Net};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::config::{MembershipConfig, GOSSIP_DATAGRAM_BYTES_MAX};
use crate::core::{Action, CoreError, CoreTimer, MembershipCore};
use crate::identity::NodeId;
use crate::meta::{NodeMeta, ServiceHealth};
use crate::metrics::MembershipMetrics;
use crate::view::{MembershipEvent, View};

/// Events buffered per `watch()` subscriber. A subscriber that falls further behind
/// gets `Lagged` and should re-read [`Membership::snapshot`].
pub const WATCH_EVENTS_BUFFERED_MAX: usize = 1024;

/// Commands queued to the membership task. Callers wait for a slot (backpressure).
const COMMANDS_QUEUED_MAX: usize = 64;

/// Sources remembered for rate-limiting "wrong secret" logs.
const AUTH_LOG_SOURCES_MAX: usize = 1024;

/// One "wrong secret" log line per source per this period.
const AUTH_LOG_PERIOD: Duration = Duration::from_secs(60);

/// What the membership task publishes after every input.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// This node's current identity.
    pub identity: NodeId,
    /// Every known member, this node included.
    pub view: View,
    /// Lifeguard local health score.
    pub local_health_score: u32,
}

/// Why membership could not start or a command failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The gossip socket could not be bound.
    #[error("cannot bind gossip socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The core refused the input.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The membership task has stopped.
    #[error("membership task stopped")]
    Stopped,
}

enum Command {
    SetHealth(
        String,
        ServiceHealth,
        oneshot::Sender<Result<(), CoreError>>,
    ),
    Leave(oneshot::Sender<Result<(), CoreError>>),
    SetSyncing(String, bool, oneshot::Sender<Result<(), CoreError>>),
}

/// Handle to a running membership task. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    commands: mpsc::Sender<Command>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Sender<MembershipEvent>,
    metrics: MembershipMetrics,
}

/// Everything needed to start membership.
pub struct MembershipOptions {
    /// Gossip bind address (the node's cluster address; UDP on the same port as TCP).
    pub bind: SocketAddr,
    /// This node's metadata (its `id` is the identity).
    pub meta: NodeMeta,
    /// Detector settings.
    pub config: MembershipConfig,
    /// Addresses to announce to at start and while isolated.
    pub seeds: Vec<SocketAddr>,
    /// Seed for every random choice of the detector.
    pub rng_seed: u64,
}

impl Membership {
    /// Binds the gossip socket and spawns the membership task.
    pub async fn start<N: Net>(
        net: &N,
        seal: DatagramSeal,
        options: MembershipOptions,
        metrics: MembershipMetrics,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), MembershipError> {
        let socket =
            net.bind_datagram(options.bind)
                .await
                .map_err(|source| MembershipError::Bind {
                    addr: options.bind,
                    source,
                })?;
        let packet_bytes_max = GOSSIP_DATAGRAM_BYTES_MAX - geoul_transport::DATAGRAM_OVERHEAD;
        let mut core = MembershipCore::new(
            options.meta,
            options.config,
            options.seeds,
            packet_bytes_max,
            options.rng_seed,
            Arc::new(metrics.clone()),
        )?;
        let started = Instant::now();
        core.start(Duration::ZERO)?;
        let (snap_tx, snapshots) = watch::channel(Arc::new(snapshot_of(&core)));
        let (events, _) = broadcast::channel(WATCH_EVENTS_BUFFERED_MAX);
        let (commands, command_rx) = mpsc::channel(COMMANDS_QUEUED_MAX);
        let task = Task {
            core,
            socket,
            seal,
            timers: BTreeMap::new(),
            timer_seq: 0,
            started,
            snapshots: snap_tx,
            events: events.clone(),
            metrics: metrics.clone(),
            auth_log: HashMap::new(),
        };
        let handle = tokio::spawn(task.run(command_rx));
        Ok((
            Self {
                commands,
                snapshots,
                events,
                metrics,
            },
            handle,
        ))
    }

    /// The latest view.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// A stream of membership events from now on.
    pub fn watch(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// A receiver that always holds the latest snapshot (for "wait until" loops).
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// The metric handles.
    pub fn metrics(&self) -> &MembershipMetrics {
        &self.metrics
    }

    /// Sets the health of a hosted service; gossiped to every member.
    pub async fn set_service_health(
        &self,
        service: &str,
        health: ServiceHealth,
    ) -> Result<(), MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::SetHealth(service.to_string(), health, tx), rx)
            .await
    }

    /// Advertises whether this node is still syncing some slot of `table`.
    pub async fn set_table_syncing(
        &self,
        table: &str,
        syncing: bool,
    ) -> Result<(), MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::SetSyncing(table.to_string(), syncing, tx), rx)
            .await
    }

    /// Leaves gracefully: peers record this node as `left` without waiting for
    /// suspicion. The node should exit soon after.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Leave(tx), rx).await
    }

    async fn command(
        &self,
        command: Command,
        reply: oneshot::Receiver<Result<(), CoreError>>,
    ) -> Result<(), MembershipError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| MembershipError::Stopped)?;
        reply.await.map_err(|_| MembershipError::Stopped)??;
        Ok(())
    }
}

fn snapshot_of(core: &MembershipCore) -> Snapshot {
    Snapshot {
        identity: core.identity().clone(),
        view: core.view().clone(),
        local_health_score: core.local_health_score(),
    }
}

struct Task<D> {
    core: MembershipCore,
    socket: D,
    seal: DatagramSeal,
    /// (due, seq) → timer; seq keeps equal deadlines in submission order.
    timers: BTreeMap<(Instant, u64), CoreTimer>,
    timer_seq: u64,
    started: Instant,
    snapshots: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<MembershipEvent>,
    metrics: MembershipMetrics,
    auth_log: HashMap<SocketAddr, Instant>,
}

impl<D: Datagram> Task<D> {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 64 * 1024];
        self.flush().await;
        loop {
            let next_due = self.timers.first_key_value().map(|((due, _), _)| *due);
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                () = sleep_until_or_forever(next_due) => self.fire_due_timers(),
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.handle_datagram(&buf[..len], from),
                    Err(e) => tracing::debug!(error = %e, "gossip receive failed"),
                },
            }
            self.flush().await;
        }
        tracing::debug!("membership task stopped");
    }

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.started)
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::SetHealth(service, health, reply) => {
                let _ = reply.send(self.core.set_service_health(&service, health));
            }
            Command::Leave(reply) => {
                let _ = reply.send(self.core.leave());
            }
            Command::SetSyncing(table, syncing, reply) => {
                let _ = reply.send(self.core.set_table_syncing(&table, syncing));
            }
        }
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            let (due, _) = *entry.key();
            if due > now {
                break;
            }
            let timer = entry.remove();
            let lateness = now.saturating_duration_since(due);
            if let Err(e) = self.core.handle_timer(self.now(), timer, lateness) {
                tracing::debug!(error = %e, "timer rejected");
            }
        }
    }

    fn handle_datagram(&mut self, data: &[u8], from: SocketAddr) {
        self.metrics.datagrams_in.inc();
        self.metrics.bytes_in.inc_by(data.len() as u64);
        let plain = match self.seal.open(data) {
            Ok(plain) => plain,
            Err(e) => {
                self.metrics.auth_failures.inc();
                self.log_auth_failure(from, &e);
                return;
            }
        };
        if let Err(e) = self.core.handle_datagram(self.now(), &plain) {
            self.metrics.rejected_datagrams.inc();
            tracing::debug!(%from, error = %e, "gossip datagram rejected");
        }
    }

    fn log_auth_failure(&mut self, from: SocketAddr, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        if let Some(last) = self.auth_log.get(&from) {
            if now.saturating_duration_since(*last) < AUTH_LOG_PERIOD {
                return;
            }
        }
        if self.auth_log.len() >= AUTH_LOG_SOURCES_MAX {
            self.auth_log
                .retain(|_, last| now.saturating_duration_since(*last) < AUTH_LOG_PERIOD);
            if self.auth_log.len() >= AUTH_LOG_SOURCES_MAX {
                return;
            }
        }
        self.auth_log.insert(from, now);
        tracing::warn!(%from, %error, "refused gossip datagram: not sealed with this cluster's secret (logged once per source per minute)");
    }

    /// Performs the core's actions and publishes the view and events.
    async fn flush(&mut self) {
        for action in self.core.drain_actions() {
            match action {
                Action::Send { to, data } => {
                    let sealed = self.seal.seal(&data);
                    self.metrics.datagrams_out.inc();
                    self.metrics.bytes_out.inc_by(sealed.len() as u64);
                    if let Err(e) = self.socket.send_to(&sealed, to).await {
                        tracing::debug!(%to, error = %e, "gossip send failed");
                    }
                }
                Action::Schedule { after, timer } => {
                    self.timer_seq += 1;
                    self.timers
                        .insert((Instant::now() + after, self.timer_seq), timer);
                }
            }
        }
        let events = self.core.drain_events();
        if !events.is_empty() {
            for event in events {
                // No subscriber is fine: the view is still published below.
                let _ = self.events.send(event);
            }
            self.snapshots
                .send_replace(Arc::new(snapshot_of(&self.core)));
        }
    }
}

async fn sleep_until_or_forever(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}
