//! The sans-IO membership core: foca plus geoul's metadata, left-vs-dead, seed
//! retries and local health. Fed datagrams, timers and commands; emits actions.
//!
//! Owns: every membership decision. Does not own: sockets, clocks, sealing or task
//! scheduling (the shell in `runtime` does those), so the same code runs in the
//! deterministic simulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Foca, Message, Notification, PostcardCodec, Runtime, State, Timer};
use rand_foca::rngs::StdRng;
use rand_foca::SeedableRng;

use crate::config::{ConfigError, MembershipConfig};
use crate::health::LocalHealth;
use crate::identity::NodeId;
use crate::meta::{MetaError, MetaStore, NodeMeta, ServiceHealth};
use crate::metrics::MembershipMetrics;
use crate::view::{MemberInfo, MemberState, MembershipEvent, View};

/// Known members announced to per retry while disconnected: enough to find the
/// other side of a partition, bounded so a disconnected node cannot flood.
const RECONNECT_ANNOUNCES_MAX: usize = 16;

/// How often a node re-disseminates its own metadata even if nothing changed, so a
/// member that missed every piggybacked copy still converges.
const META_REFRESH_PERIOD: Duration = Duration::from_secs(10);

/// Timers the core asks the shell to fire.
#[derive(Clone, Debug)]
pub enum CoreTimer {
    /// A foca timer.
    Foca(Timer<NodeId>),
    /// Re-announce to seeds (and dead members) while no peer is alive.
    SeedRetry,
    /// Re-disseminate own metadata.
    MetaRefresh,
}

/// What the core asks the shell to do.
#[derive(Clone, Debug)]
pub enum Action {
    /// Send a (plaintext) gossip packet; the shell seals it.
    Send {
        /// Destination address.
        to: SocketAddr,
        /// Packet.
        data: Vec<u8>,
    },
    /// Call [`MembershipCore::handle_timer`] with `timer` after `after`.
    Schedule {
        /// Delay.
        after: Duration,
        /// Which timer.
        timer: CoreTimer,
    },
}

/// Errors the core reports for one input; none of them is fatal.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// foca refused the packet or timer.
    #[error("gossip: {0}")]
    Foca(#[from] foca::Error),
    /// Metadata out of bounds.
    #[error("metadata: {0}")]
    Meta(#[from] MetaError),
    /// Config out of range.
    #[error("config: {0}")]
    Config(#[from] ConfigError),
}

/// Collects what foca asks for during one call.
#[derive(Default)]
struct Outbox {
    actions: Vec<Action>,
    notifications: Vec<foca::OwnedNotification<NodeId>>,
}

impl Runtime<NodeId> for Outbox {
    fn notify(&mut self, notification: Notification<'_, NodeId>) {
        self.notifications.push(notification.to_owned());
    }
    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.actions.push(Action::Send {
            to: to.addr,
            data: data.to_vec(),
        });
    }
    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.actions.push(Action::Schedule {
            after,
            timer: CoreTimer::Foca(event),
        });
    }
}

/// The membership state machine of one node.
pub struct MembershipCore {
    foca: Foca<NodeId, PostcardCodec, StdRng, MetaStore>,
    metas: MetaStore,
    config: MembershipConfig,
    packet_bytes_max: usize,
    seeds: Vec<SocketAddr>,
    meta: NodeMeta,
    own_incarnation: u16,
    left: bool,
    /// Whether foca considers itself part of the cluster. False at start, while
    /// alone, and right after a rejoin until someone answers the new identity.
    connected: bool,
    health: LocalHealth,
    view: View,
    outbox: Outbox,
    events: Vec<MembershipEvent>,
    /// Outstanding direct probes: (member addr, probe number) → sent at.
    probes_sent: BTreeMap<(SocketAddr, u8), Duration>,
    now: Duration,
    metrics: std::sync::Arc<MembershipMetrics>,
}

impl MembershipCore {
    /// A core for `meta.id` that will announce to `seeds`.
    ///
    /// `packet_bytes_max` is the largest plaintext packet (datagram size minus the
    /// sealing overhead); `rng_seed` makes every random choice reproducible.
    pub fn new(
        meta: NodeMeta,
        config: MembershipConfig,
        seeds: Vec<SocketAddr>,
        packet_bytes_max: usize,
        rng_seed: u64,
        metrics: std::sync::Arc<MembershipMetrics>,
    ) -> Result<Self, CoreError> {
        config.validate()?;
        meta.validate()?;
        let metas = MetaStore::default();
        let foca = Foca::with_custom_broadcast(
            meta.id.clone(),
            config.to_foca(1, packet_bytes_max),
            StdRng::seed_from_u64(rng_seed),
            PostcardCodec,
            metas.clone(),
        );
        let seeds = seeds.into_iter().filter(|s| *s != meta.id.addr).collect();
        let lag_threshold = config.probe_rtt / 2;
        let mut core = Self {
            foca,
            metas,
            health: LocalHealth::new(config.local_health_awareness, lag_threshold),
            config,
            packet_bytes_max,
            seeds,
            meta,
            own_incarnation: 0,
            left: false,
            connected: false,
            view: View::default(),
            outbox: Outbox::default(),
            events: Vec::new(),
            probes_sent: BTreeMap::new(),
            now: Duration::ZERO,
            metrics,
        };
        core.rebuild_view();
        core.events.clear();
        Ok(core)
    }

    /// Starts: announces to the seeds and arms the periodic timers.
    pub fn start(&mut self, now: Duration) -> Result<(), CoreError> {
        self.now = now;
        self.broadcast_meta()?;
        self.announce_to_seeds();
        self.outbox.actions.push(Action::Schedule {
            after: self.config.seed_retry_period,
            timer: CoreTimer::SeedRetry,
        });
        self.outbox.actions.push(Action::Schedule {
            after: META_REFRESH_PERIOD,
            timer: CoreTimer::MetaRefresh,
        });
        self.after_input()
    }

    /// A gossip packet (already authenticated and opened) arrived.
    pub fn handle_datagram(&mut self, now: Duration, data: &[u8]) -> Result<(), CoreError> {
        self.now = now;
        let result = self.foca.handle_data(data, &mut self.outbox);
        let after = self.after_input();
        result?;
        after
    }

    /// A timer fired `lateness` after it was due.
    pub fn handle_timer(
        &mut self,
        now: Duration,
        timer: CoreTimer,
        lateness: Duration,
    ) -> Result<(), CoreError> {
        self.now = now;
        if self.health.on_timer_lateness(lateness) {
            self.metrics.starved_timers.inc();
        }
        let result = match timer {
            CoreTimer::Foca(t) => self.foca.handle_timer(t, &mut self.outbox),
            CoreTimer::SeedRetry => {
                if !self.left && !self.connected {
                    self.announce_to_known();
                }
                self.outbox.actions.push(Action::Schedule {
                    after: self.config.seed_retry_period,
                    timer: CoreTimer::SeedRetry,
                });
                Ok(())
            }
            CoreTimer::MetaRefresh => {
                if !self.left {
                    self.broadcast_meta()?;
                }
                self.outbox.actions.push(Action::Schedule {
                    after: META_REFRESH_PERIOD,
                    timer: CoreTimer::MetaRefresh,
                });
                Ok(())
            }
        };
        let after = self.after_input();
        result?;
        after
    }

    /// Sets the health a hosted service reports; gossiped to every member.
    pub fn set_service_health(
        &mut self,
        service: &str,
        health: ServiceHealth,
    ) -> Result<(), CoreError> {
        let mut next = self.meta.clone();
        next.services.insert(service.to_string(), health);
        next.version += 1;
        next.validate()?;
        self.meta = next;
        self.broadcast_meta()?;
        self.after_input()
    }

    /// Advertises whether this node is still syncing some slot of `table`.
    pub fn set_table_syncing(&mut self, table: &str, syncing: bool) -> Result<(), CoreError> {
        let changed = if syncing {
            self.meta.syncing.insert(table.to_string())
        } else {
            self.meta.syncing.remove(table)
        };
        if changed {
            let mut next = self.meta.clone();
            next.version += 1;
            if let Err(e) = next.validate() {
                self.meta.syncing.remove(table);
                return Err(e.into());
            }
            self.meta = next;
            self.broadcast_meta()?;
        }
        self.after_input()
    }

    /// Stops advertising a service.
    pub fn remove_service(&mut self, service: &str) -> Result<(), CoreError> {
        if self.meta.services.remove(service).is_some() {
            self.meta.version += 1;
            self.broadcast_meta()?;
        }
        self.after_input()
    }

    /// Graceful leave: tells peers this node is leaving (so they record `left`,
    /// not `dead`) and that it is down, without waiting for suspicion.
    pub fn leave(&mut self) -> Result<(), CoreError> {
        if self.left {
            return Ok(());
        }
        self.meta.leaving = true;
        self.meta.version += 1;
        self.broadcast_meta()?;
        // One gossip round carrying the "leaving" metadata before the down update,
        // so receivers usually learn both in order.
        self.foca.gossip(&mut self.outbox)?;
        self.foca.leave_cluster(&mut self.outbox)?;
        self.left = true;
        self.after_input()
    }

    /// Actions produced since the last drain.
    pub fn drain_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.outbox.actions)
    }

    /// Events produced since the last drain.
    pub fn drain_events(&mut self) -> Vec<MembershipEvent> {
        std::mem::take(&mut self.events)
    }

    /// The current view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// This node's current identity (changes on rejoin).
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// The local health score (0 = healthy).
    pub fn local_health_score(&self) -> u32 {
        self.health.score()
    }

    fn broadcast_meta(&mut self) -> Result<(), CoreError> {
        let bytes = self.meta.encode()?;
        self.foca.add_broadcast(&bytes)?;
        Ok(())
    }

    fn announce_to_seeds(&mut self) {
        for seed in self.seeds.clone() {
            if let Err(e) = self
                .foca
                .announce(NodeId::placeholder(seed), &mut self.outbox)
            {
                tracing::debug!(%seed, error = %e, "announce to seed failed");
            }
        }
    }

    /// Not connected (alone, or just rejoined with a new identity): announce to
    /// the seeds and to every member we know of, whatever its state.
    ///
    /// Announces are the only messages foca accepts when addressed to an older
    /// identity of the receiver, so they work even when both sides renewed their
    /// identities at once (a healed partition makes every node do that, and then
    /// all ordinary messages are addressed to identities that no longer exist).
    fn announce_to_known(&mut self) {
        self.announce_to_seeds();
        let mut known: Vec<SocketAddr> = self
            .foca
            .iter_membership_state()
            .map(|m| m.id().addr)
            .filter(|a| !self.seeds.contains(a))
            .collect();
        known.sort_unstable();
        known.dedup();
        for addr in known.into_iter().take(RECONNECT_ANNOUNCES_MAX) {
            if let Err(e) = self
                .foca
                .announce(NodeId::placeholder(addr), &mut self.outbox)
            {
                tracing::debug!(peer = %addr, error = %e, "announce failed");
            }
        }
    }

    /// Reacts to what foca reported, then recomputes the view and its events.
    fn after_input(&mut self) -> Result<(), CoreError> {
        let notifications = std::mem::take(&mut self.outbox.notifications);
        let mut health_changed = false;
        let mut rebroadcast = false;
        let mut reannounce = false;
        for n in notifications {
            match n {
                foca::OwnedNotification::DataSent(header) => {
                    if header.src_incarnation > self.own_incarnation {
                        self.own_incarnation = header.src_incarnation;
                        self.metrics.refutations.inc();
                        health_changed |= self.health.on_refuted();
                    }
                    if let Message::Ping(probe) = header.message {
                        self.probes_sent.insert((header.dst.addr, probe), self.now);
                        // Bounded: probes that never got an ack are dropped oldest first.
                        while self.probes_sent.len() > 64 {
                            self.probes_sent.pop_first();
                        }
                    }
                }
                foca::OwnedNotification::DataReceived(header) => {
                    if let Message::Ack(probe) = header.message {
                        if let Some(sent) = self.probes_sent.remove(&(header.src.addr, probe)) {
                            self.metrics
                                .probe_rtt
                                .observe(self.now.saturating_sub(sent));
                            health_changed |= self.health.on_probe_acked();
                        }
                    }
                }
                foca::OwnedNotification::MemberUp(id) => {
                    tracing::info!(member = %id, "member up");
                    // A new member missed our earlier metadata broadcasts.
                    rebroadcast = true;
                }
                foca::OwnedNotification::MemberDown(id) => {
                    tracing::warn!(member = %id, "member down");
                }
                foca::OwnedNotification::Rename(old, new) => {
                    tracing::info!(%old, %new, "member restarted or rejoined");
                    rebroadcast = true;
                }
                foca::OwnedNotification::Rejoin(new) => {
                    tracing::warn!(identity = %new, "declared dead by the cluster; rejoined with a new identity");
                    self.metrics.rejoins.inc();
                    self.meta.id = new;
                    self.meta.version += 1;
                    self.own_incarnation = 0;
                    self.connected = false;
                    rebroadcast = true;
                    reannounce = true;
                }
                foca::OwnedNotification::Defunct => {
                    self.connected = false;
                    if !self.left {
                        tracing::warn!("this node is considered dead by the cluster");
                    }
                }
                foca::OwnedNotification::Idle => {
                    self.connected = false;
                    if !self.left {
                        tracing::warn!("no live peer; retrying seeds");
                    }
                }
                foca::OwnedNotification::Active => {
                    self.connected = true;
                    tracing::info!("joined the cluster");
                }
                foca::OwnedNotification::ProbeFailed(_, id) => {
                    tracing::debug!(member = %id, "probe failed");
                }
            }
        }
        if rebroadcast && !self.left {
            self.broadcast_meta()?;
        }
        if reannounce && !self.left {
            self.announce_to_known();
        }
        if health_changed {
            let multiplier = self.health.multiplier();
            self.metrics
                .local_health_score
                .set(i64::from(self.health.score()));
            tracing::info!(multiplier, "local health changed; detector timeouts scaled");
            self.foca
                .set_config(self.config.to_foca(multiplier, self.packet_bytes_max))?;
        }
        self.rebuild_view();
        Ok(())
    }

    fn rebuild_view(&mut self) {
        let mut next = View::default();
        for member in self.foca.iter_membership_state() {
            let id = member.id();
            let meta = self.metas.get(&id.addr).filter(|m| &m.id == id);
            let leaving = meta.as_ref().is_some_and(|m| m.leaving);
            let state = match member.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down if leaving => MemberState::Left,
                State::Down => MemberState::Dead,
            };
            next.offer(MemberInfo {
                id: id.clone(),
                state,
                incarnation: id.incarnation(member.incarnation()),
                meta,
                is_self: false,
            });
        }
        let me = self.foca.identity().clone();
        next.offer(MemberInfo {
            incarnation: me.incarnation(self.own_incarnation),
            id: me,
            state: if self.left {
                MemberState::Left
            } else {
                MemberState::Alive
            },
            meta: Some(self.meta.clone()),
            is_self: true,
        });
        self.events.extend(self.view.diff(&next));
        for state in MemberState::ALL {
            self.metrics.set_members(state, next.count(state) as u64);
        }
        self.view = next;
    }
}
