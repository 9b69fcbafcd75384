//! [`Client`]: how a program outside the cluster reaches it.
//!
//! Owns: connecting through a seed list, learning the routing view
//! ([`Topology`]) from any live node and refreshing it (periodically, and soon
//! after a routing failure), and handing out [`ServiceRef`]s. Does not own:
//! what a call does (the ref) or the connections (the transport's pool).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use geoul_transport::{ClusterSecret, Net, Outbound, RequestError, TokioNet, TransportConfig};
use tokio::sync::Notify;

use crate::routes::Routes;
use crate::service_ref::{Backend, ServiceRef};
use crate::wire::{decode_response, encode_request, ApiRequest, ApiResponse, Topology};

/// How often the routing view is refreshed when nothing fails: membership
/// changes reach the client within this period even if it never errs.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(1);
/// Shortest gap between two refreshes (a burst of failures asks once).
const REFRESH_GAP_MIN: Duration = Duration::from_millis(50);
/// Deadline of one topology request.
const TOPOLOGY_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a client could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No seed was given.
    #[error("no cluster address given")]
    NoSeeds,
    /// The transport configuration is out of range.
    #[error(transparent)]
    Transport(#[from] RequestError),
    /// No seed answered; the reason of each.
    #[error("cannot reach the cluster: {0}")]
    Unreachable(String),
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Transport settings (timeouts, frame size, hello).
    pub transport: TransportConfig,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transport: TransportConfig {
                hello: "client".into(),
                connect_timeout: Duration::from_secs(1),
                handshake_timeout: Duration::from_secs(2),
                ..TransportConfig::default()
            },
        }
    }
}

struct Inner<N: Net> {
    outbound: Outbound<N>,
    seeds: Vec<SocketAddr>,
    routes: RwLock<Arc<Routes>>,
    topology: RwLock<Arc<Topology>>,
    wake: Notify,
}

impl<N: Net> Backend for Inner<N> {
    fn request(
        &self,
        to: SocketAddr,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, RequestError>> {
        let outbound = self.outbound.clone();
        Box::pin(async move { outbound.request(to, payload, timeout).await })
    }

    fn send_oneway(
        &self,
        to: SocketAddr,
        payload: Bytes,
    ) -> BoxFuture<'static, Result<(), RequestError>> {
        let outbound = self.outbound.clone();
        Box::pin(async move { outbound.send_oneway(to, payload).await })
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn stale(&self) {
        self.wake.notify_one();
    }
}

impl<N: Net> Inner<N> {
    /// Asks members (known ones first, then seeds) for the topology; the first
    /// answer wins. Returns each failure when none answers.
    async fn refresh(&self) -> Result<(), String> {
        let mut candidates: Vec<SocketAddr> =
            self.routes().members().iter().map(|t| t.addr).collect();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(*seed);
            }
        }
        let request = encode_request(&ApiRequest::Topology).map_err(|e| e.to_string())?;
        let mut failures = Vec::new();
        for addr in candidates {
            match self
                .outbound
                .request(addr, request.clone(), TOPOLOGY_TIMEOUT)
                .await
            {
                Ok(bytes) => match decode_response(&bytes) {
                    Ok(ApiResponse::Topology(topology)) => {
                        let routes = Arc::new(Routes::new(&topology));
                        *self
                            .routes
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = routes;
                        *self
                            .topology
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Arc::new(topology);
                        return Ok(());
                    }
                    Ok(other) => failures.push(format!("{addr}: unexpected answer {other:?}")),
                    Err(e) => failures.push(format!("{addr}: unreadable answer: {e}")),
                },
                Err(RequestError::Auth) => failures.push(format!(
                    "{addr} refused our cluster secret (is it another cluster's?)"
                )),
                Err(e) => failures.push(format!("{addr}: {e}")),
            }
        }
        Err(failures.join("; "))
    }
}

/// A connection to a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    backend: Arc<dyn Backend>,
    topology: Arc<dyn Fn() -> Arc<Topology> + Send + Sync>,
    _refresher: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// Connects to the cluster through `seeds` (any live node will do) on the
    /// real network.
    pub async fn connect(
        seeds: &[SocketAddr],
        secret: &ClusterSecret,
        options: ClientOptions,
    ) -> Result<Self, ConnectError> {
        Self::connect_with(TokioNet, seeds, secret, options).await
    }

    /// Connects over `net` (a simulated network in tests).
    pub async fn connect_with<N: Net>(
        net: N,
        seeds: &[SocketAddr],
        secret: &ClusterSecret,
        options: ClientOptions,
    ) -> Result<Self, ConnectError> {
        if seeds.is_empty() {
            return Err(ConnectError::NoSeeds);
        }
        let outbound = Outbound::new(net, secret.clone(), options.transport)?;
        let inner = Arc::new(Inner {
            outbound,
            seeds: seeds.to_vec(),
            routes: RwLock::new(Arc::new(Routes::default())),
            topology: RwLock::new(Arc::new(Topology::default())),
            wake: Notify::new(),
        });
        inner.refresh().await.map_err(ConnectError::Unreachable)?;
        let refresher = tokio::spawn(refresh_forever(Arc::downgrade(&inner)));
        let view = inner.clone();
        Ok(Self {
            backend: inner,
            topology: Arc::new(move || {
                view.topology
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            }),
            _refresher: Arc::new(AbortOnDrop(refresher)),
        })
    }

    /// A handle on `service` with its own session.
    pub fn service(&self, name: &str) -> ServiceRef {
        ServiceRef::new(self.backend.clone(), name)
    }

    /// Runs a distributed query on any table, coordinated by a node that
    /// declares it.
    pub async fn query(
        &self,
        query: &geoul_query::Query,
        timeout: Duration,
    ) -> Result<crate::wire::QueryAnswer, crate::CallError> {
        let routes = self.backend.routes();
        let targets = routes.table_hosts(&query.table, &mut rand::rng());
        crate::query::run_query(self.backend.as_ref(), &targets, query, timeout).await
    }

    /// The routing view as last learned.
    pub fn topology(&self) -> Arc<Topology> {
        (self.topology)()
    }
}

async fn refresh_forever<N: Net>(inner: std::sync::Weak<Inner<N>>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let woken = tokio::time::timeout(REFRESH_PERIOD, strong.wake.notified()).await;
        if woken.is_ok() {
            tokio::time::sleep(REFRESH_GAP_MIN).await;
        }
        if let Err(e) = strong.refresh().await {
            tracing::debug!(error = %e, "topology refresh failed; keeping the last view");
        }
    }
}
