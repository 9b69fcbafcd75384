//! One geoul node: membership, transport and their wiring, generic over the
//! network so the simulator runs the same code as production.
//!
//! Owns: start-up order, graceful shutdown, the metrics registry. Does not own:
//! configuration parsing (`config`), HTTP (`admin`), process concerns such as
//! signals and logging (the binary).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use geoul_membership::{
    Membership, MembershipConfig, MembershipError, MembershipMetrics, MembershipOptions, NodeId,
    NodeMeta, ServiceHealth,
};
use geoul_transport::{
    ClusterSecret, DatagramSeal, Net, Transport, TransportConfig, TransportError,
};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::metrics::TransportCollector;
use crate::rpc::PeerHandler;
use crate::status::StatusReport;

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
    pub services: Vec<String>,
    /// Detector settings.
    pub membership: MembershipConfig,
    /// This life's generation (from the data directory).
    pub generation: u64,
    /// Seed of every random choice (reproducible simulations).
    pub rng_seed: u64,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Membership failed to start (bind, config).
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The transport failed to bind.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// A running node.
pub struct Node<N: Net> {
    membership: Membership,
    transport: Transport<N>,
    registry: Arc<Registry>,
    started: Instant,
    membership_task: tokio::task::JoinHandle<()>,
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
        for service in &params.services {
            meta.services
                .insert(service.clone(), ServiceHealth::Healthy);
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
        let transport = Transport::bind(
            net,
            params.bind,
            secret,
            transport_config,
            PeerHandler::new(membership.clone()),
        )
        .await?;
        let mut registry = Registry::default();
        membership_metrics.register(&mut registry);
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
            registry: Arc::new(registry),
            started: Instant::now(),
            membership_task,
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

    /// The `/status` document.
    pub fn status(&self) -> StatusReport {
        let uptime = Instant::now().saturating_duration_since(self.started);
        StatusReport::new(
            &self.membership.snapshot(),
            std::process::id(),
            uptime.as_secs(),
        )
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
        tracing::info!("node stopped");
    }
}
