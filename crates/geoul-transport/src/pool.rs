//! Outbound connections: one per peer address, shared by every caller.
//!
//! Owns: dial-on-demand (concurrent callers share one dial), reuse of live
//! connections, and backoff after failed dials. While an address is in backoff,
//! requests to it fail at once with `Unreachable`, so callers fail over instead of
//! queueing behind a dead peer. Backoff grows exponentially with full jitter between
//! `backoff_min` and `backoff_max`; one successful dial resets it, and news that
//! the peer is alive (`end_backoff`, from the failure detector) ends the current
//! wait, so a peer back from a crash or partition is dialled at once rather than
//! after a backoff grown while it was away. The jitter RNG is
//! seeded from `TransportConfig::rng_seed` so simulations reproduce.
//!
//! A dial runs in its own task: a caller whose deadline passes stops waiting, but the
//! dial completes and its outcome (connection or backoff) is recorded for the next
//! caller.
//!
//! Does not own: the connection itself (`connection`) or inbound connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{timeout_at, Instant};

use crate::config::TransportConfig;
use crate::connection::Connection;
use crate::error::RequestError;
use crate::metrics::{incr, TransportMetrics};
use crate::net::Net;
use crate::secret::ClusterSecret;

/// Peer addresses remembered (live, dialling or backing off). Far above any
/// cluster's size; it bounds memory if a caller sprays requests at many addresses.
/// When full, dead and expired entries are pruned; if none, new addresses get
/// `Overloaded`.
pub(crate) const POOL_PEERS_MAX: usize = 4096;

/// Doublings of the backoff ceiling: 2^16 × backoff_min exceeds any sane
/// backoff_max, and the cap keeps the arithmetic from overflowing.
const BACKOFF_DOUBLINGS_MAX: u32 = 16;

type Dial = Shared<BoxFuture<'static, Result<Arc<Connection>, RequestError>>>;

enum Slot {
    Ready(Arc<Connection>),
    Dialing(Dial),
    Backoff { until: Instant, reason: String },
}

struct Peer {
    slot: Slot,
    /// Consecutive failed dials; sets the backoff ceiling.
    failures: u32,
}

#[derive(Default)]
struct State {
    peers: HashMap<SocketAddr, Peer>,
    shutting_down: bool,
}

enum Lookup {
    Ready(Arc<Connection>),
    Wait(Dial),
}

/// The outbound connection pool of one transport.
pub(crate) struct Pool<N: Net> {
    net: N,
    secret: ClusterSecret,
    config: TransportConfig,
    metrics: Arc<TransportMetrics>,
    state: Mutex<State>,
    rng: Mutex<StdRng>,
}

impl<N: Net> Pool<N> {
    pub(crate) fn new(
        net: N,
        secret: ClusterSecret,
        config: TransportConfig,
        metrics: Arc<TransportMetrics>,
    ) -> Arc<Self> {
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Arc::new(Self {
            net,
            secret,
            config,
            metrics,
            state: Mutex::new(State::default()),
            rng: Mutex::new(rng),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this lock; recover rather than cascade if one did.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A live connection to `addr`, dialling one if needed, waiting until `deadline`.
    pub(crate) async fn get(
        self: &Arc<Self>,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Result<Arc<Connection>, RequestError> {
        match self.lookup(addr)? {
            Lookup::Ready(connection) => Ok(connection),
            Lookup::Wait(dial) => match timeout_at(deadline, dial).await {
                Ok(result) => result,
                Err(_) => {
                    incr(&self.metrics.requests_timed_out);
                    Err(RequestError::Timeout)
                }
            },
        }
    }

    fn lookup(self: &Arc<Self>, addr: SocketAddr) -> Result<Lookup, RequestError> {
        let mut state = self.lock();
        if state.shutting_down {
            return Err(RequestError::ShuttingDown);
        }
        let now = Instant::now();
        match state.peers.get(&addr).map(|peer| &peer.slot) {
            Some(Slot::Ready(connection)) if !connection.is_closed() => {
                return Ok(Lookup::Ready(Arc::clone(connection)))
            }
            // A finished dial has already replaced its slot, unless its task died
            // (panic, runtime shutdown); then dial again rather than stick forever.
            Some(Slot::Dialing(dial)) if dial.peek().is_none() => {
                return Ok(Lookup::Wait(dial.clone()))
            }
            Some(Slot::Backoff { until, reason }) if now < *until => {
                return Err(RequestError::Unreachable {
                    addr,
                    reason: format!("in backoff for another {:?} after: {reason}", *until - now),
                });
            }
            Some(_) => {}
            None if state.peers.len() >= POOL_PEERS_MAX => {
                prune(&mut state.peers, now);
                if state.peers.len() >= POOL_PEERS_MAX {
                    return Err(RequestError::Overloaded);
                }
            }
            None => {}
        }
        let dial = self.start_dial(addr);
        let peer = state.peers.entry(addr).or_insert(Peer {
            slot: Slot::Dialing(dial.clone()),
            failures: 0,
        });
        peer.slot = Slot::Dialing(dial.clone());
        Ok(Lookup::Wait(dial))
    }

    fn start_dial(self: &Arc<Self>, addr: SocketAddr) -> Dial {
        let pool = Arc::clone(self);
        let task = tokio::spawn(async move { pool.dial(addr).await });
        async move {
            task.await.unwrap_or_else(|err| {
                Err(RequestError::Unreachable {
                    addr,
                    reason: format!("dial task failed: {err}"),
                })
            })
        }
        .boxed()
        .shared()
    }

    async fn dial(self: Arc<Self>, addr: SocketAddr) -> Result<Arc<Connection>, RequestError> {
        let result =
            Connection::establish(&self.net, addr, &self.secret, &self.config, &self.metrics)
                .await
                .map(Arc::new);
        let mut state = self.lock();
        if state.shutting_down {
            if let Ok(connection) = &result {
                connection.close(RequestError::ShuttingDown);
            }
            state.peers.remove(&addr);
            return Err(RequestError::ShuttingDown);
        }
        let peer = state.peers.entry(addr).or_insert(Peer {
            slot: Slot::Backoff {
                until: Instant::now(),
                reason: String::new(),
            },
            failures: 0,
        });
        match &result {
            Ok(connection) => {
                if peer.failures > 0 {
                    tracing::info!(peer = %addr, "peer reachable again");
                }
                peer.failures = 0;
                peer.slot = Slot::Ready(Arc::clone(connection));
            }
            Err(err) => {
                peer.failures = peer.failures.saturating_add(1);
                let delay = self.backoff(peer.failures);
                if peer.failures == 1 {
                    tracing::warn!(peer = %addr, error = %err, backoff = ?delay, "dial failed; backing off");
                } else {
                    tracing::debug!(peer = %addr, error = %err, backoff = ?delay, failures = peer.failures, "dial failed again");
                }
                peer.slot = Slot::Backoff {
                    until: Instant::now() + delay,
                    reason: err.to_string(),
                };
            }
        }
        result
    }

    /// Backoff after `failures` consecutive failed dials: uniform in
    /// `[backoff_min, min(backoff_max, backoff_min × 2^(failures-1))]`.
    fn backoff(&self, failures: u32) -> Duration {
        let (min, max) = (self.config.backoff_min, self.config.backoff_max);
        let doublings = failures.saturating_sub(1).min(BACKOFF_DOUBLINGS_MAX);
        let ceiling = min.saturating_mul(1 << doublings).min(max);
        if ceiling <= min {
            return min;
        }
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        rng.random_range(min..=ceiling)
    }

    /// Ends a backoff on `addr` now, keeping its failure count (a peer that
    /// answers probes but refuses connections still backs off longer each time).
    /// Returns whether `addr` was backing off.
    pub(crate) fn end_backoff(&self, addr: SocketAddr) -> bool {
        let mut state = self.lock();
        match state.peers.get_mut(&addr) {
            Some(Peer {
                slot: Slot::Backoff { until, .. },
                ..
            }) => {
                let now = Instant::now();
                let was = *until > now;
                *until = now;
                was
            }
            _ => false,
        }
    }

    /// Closes every connection (pending requests fail with `ShuttingDown`) and refuses
    /// new requests.
    pub(crate) fn shutdown(&self) {
        let peers = {
            let mut state = self.lock();
            state.shutting_down = true;
            std::mem::take(&mut state.peers)
        };
        for peer in peers.into_values() {
            if let Slot::Ready(connection) = peer.slot {
                connection.close(RequestError::ShuttingDown);
            }
        }
    }
}

/// Drops entries that hold nothing worth keeping: dead connections, expired backoffs.
fn prune(peers: &mut HashMap<SocketAddr, Peer>, now: Instant) {
    peers.retain(|_, peer| match &peer.slot {
        Slot::Ready(connection) => !connection.is_closed(),
        Slot::Dialing(_) => true,
        Slot::Backoff { until, .. } => now < *until,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::TokioNet;

    fn pool(seed: u64, min_ms: u64, max_ms: u64) -> Arc<Pool<TokioNet>> {
        let config = TransportConfig {
            backoff_min: Duration::from_millis(min_ms),
            backoff_max: Duration::from_millis(max_ms),
            rng_seed: Some(seed),
            ..TransportConfig::default()
        };
        let secret = ClusterSecret::from_bytes(b"pool-test-cluster-secret").expect("long enough");
        Pool::new(TokioNet, secret, config, Arc::default())
    }

    #[test]
    fn backoff_grows_within_bounds_and_reproduces() {
        let (a, b) = (pool(7, 100, 10_000), pool(7, 100, 10_000));
        for failures in 1..40 {
            let delay = a.backoff(failures);
            assert_eq!(delay, b.backoff(failures), "same seed, same jitter");
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1 << (failures - 1).min(BACKOFF_DOUBLINGS_MAX))
                .min(Duration::from_millis(10_000));
            assert!(
                delay >= Duration::from_millis(100) && delay <= ceiling,
                "{failures}: {delay:?}"
            );
        }
        assert_eq!(a.backoff(1), Duration::from_millis(100));
    }
}
