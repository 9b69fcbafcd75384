//! `leaderboard-node`: a geoul node that hosts `kv` and the leaderboard
//! service — what a game team's own server binary looks like.
//!
//! Flags are those of `geoul node` that a test or a deployment needs; the
//! node is configured, validated and run by geoul-node's public API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use geoul_node::config::{SecretSource, SECRET_ENV};
use geoul_node::{NodeConfig, RawConfig};
use geoul_transport::ClusterSecret;

/// A geoul node hosting the leaderboard service.
#[derive(Parser, Debug)]
#[command(name = "leaderboard-node")]
struct Args {
    /// Node name, stable across restarts.
    #[arg(long)]
    name: String,
    /// Cluster address (TCP and UDP).
    #[arg(long)]
    bind: String,
    /// Admin HTTP address.
    #[arg(long)]
    admin: String,
    /// Seed nodes, host:port,... (none for the first node).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// File holding the cluster secret (or set GEOUL_CLUSTER_SECRET).
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
}

fn load(args: Args) -> Result<(NodeConfig, ClusterSecret), String> {
    let raw = RawConfig {
        name: Some(args.name),
        bind: Some(args.bind),
        admin: Some(args.admin),
        seeds: Some(args.seeds),
        data_dir: Some(args.data_dir),
        cluster_secret_file: args.cluster_secret_file,
        ..RawConfig::default()
    };
    let env_secret = std::env::var(SECRET_ENV).ok();
    let config = NodeConfig::resolve(raw, env_secret.is_some()).map_err(|e| e.to_string())?;
    let secret = match &config.secret_source {
        SecretSource::File(path) => ClusterSecret::load_file(path).map_err(|e| e.to_string())?,
        SecretSource::Env => ClusterSecret::from_bytes(env_secret.unwrap_or_default().as_bytes())
            .map_err(|e| e.to_string())?,
    };
    Ok((config, secret))
}

fn main() -> ExitCode {
    let (config, secret) = match load(Args::parse()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("leaderboard-node: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("leaderboard-node: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut services = match geoul_node::builtin::services(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("leaderboard-node: {e}");
            return ExitCode::from(1);
        }
    };
    services.push(geoul_service::hosted(leaderboard::Leaderboard));
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match runtime.block_on(geoul_node::daemon::serve(config, secret, services, stop)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leaderboard-node: {e}");
            ExitCode::from(1)
        }
    }
}
