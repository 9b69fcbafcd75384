//! Running a node as a server: data directory, node, admin HTTP, graceful
//! stop. What `geoul node` does, offered to programs that host services of
//! their own (see `examples/leaderboard`).
//!
//! Owns: [`serve`]. Does not own: configuration parsing (`config`), signals,
//! logging setup or exit codes (the program).

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use geoul_service::DynService;
use geoul_transport::{ClusterSecret, TokioNet};

use crate::config::NodeConfig;
use crate::data_dir::{DataDir, DataDirError};
use crate::node::{Node, NodeError, NodeParams};

/// Why a node could not be served.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The data directory could not be opened or locked.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The admin address could not be bound.
    #[error("admin: cannot bind {addr}: {source}")]
    Admin {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The node did not start.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Runs a node hosting `services` with `config` until `stop` resolves, then
/// leaves the cluster gracefully.
pub async fn serve(
    config: NodeConfig,
    secret: ClusterSecret,
    services: Vec<Arc<dyn DynService>>,
    stop: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let unix_seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let data_dir = DataDir::open(&config.data_dir, unix_seconds)?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin)
        .await
        .map_err(|source| DaemonError::Admin {
            addr: config.admin,
            source,
        })?;
    let params = NodeParams {
        name: config.name.clone(),
        bind: config.bind,
        advertise: config.advertise,
        admin: Some(config.admin),
        seeds: config.seeds.clone(),
        services,
        membership: config.membership.clone(),
        generation: data_dir.generation(),
        rng_seed: rand::random(),
        clock: Arc::new(geoul_store::SystemClock),
        tables_dir: Some(data_dir.path().join(geoul_storage::TABLES_DIR_NAME)),
        sync: config.sync,
        skew_margin: config.skew_margin,
        sync_config: config.sync_config.clone(),
        bootstrap_expect: config.bootstrap_expect,
    };
    let node = Arc::new(Node::start(TokioNet, secret, params).await?);
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(crate::admin::serve(
        admin_listener,
        node.clone(),
        async move {
            let _ = admin_stopped.await;
        },
    ));
    tracing::info!(admin = %config.admin, data_dir = %data_dir.path().display(), "serving");
    stop.await;
    tracing::info!("stop requested; leaving the cluster");
    let _ = stop_admin.send(());
    if let Ok(Err(e)) = admin_task.await {
        tracing::warn!(error = %e, "admin server error");
    }
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await,
        Err(_) => tracing::warn!("node still referenced at shutdown; exiting without leave"),
    }
    drop(data_dir);
    Ok(())
}
