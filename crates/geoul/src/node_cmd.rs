//! `geoul node`: validate config, open the data dir, run until SIGTERM/SIGINT, leave.

use anyhow::Context;
use geoul_node::config::{LogFormat, SecretSource, SECRET_ENV};
use geoul_node::{NodeConfig, RawConfig};
use geoul_transport::ClusterSecret;

use crate::cli::NodeArgs;
use crate::Failure;

fn flags(args: &NodeArgs) -> Result<RawConfig, Failure> {
    let log_format = match args.log_format.as_deref() {
        None => None,
        Some("json") => Some(LogFormat::Json),
        Some(_) => Some(LogFormat::Human),
    };
    Ok(RawConfig {
        name: args.name.clone(),
        bind: args.bind.clone(),
        advertise: args.advertise.clone(),
        admin: args.admin.clone(),
        seeds: args.seeds.clone(),
        data_dir: args.data_dir.clone(),
        cluster_secret_file: args.cluster_secret_file.clone(),
        services: args.services.clone(),
        log_format,
        membership: None,
        kv: None,
        auth: None,
        dir: None,
        fsync_period_ms: None,
        skew_margin_ms: None,
        sync: None,
        bootstrap_expect: None,
    })
}

/// Validated config and secret, or a usage failure naming the field.
fn load(args: &NodeArgs) -> Result<(NodeConfig, ClusterSecret), Failure> {
    let usage = |e: geoul_node::ConfigError| Failure::Usage(e.to_string());
    let file = match &args.config {
        Some(path) => RawConfig::from_file(path).map_err(usage)?,
        None => RawConfig::default(),
    };
    let raw = file.overlay(flags(args)?);
    let env_secret = std::env::var(SECRET_ENV).ok();
    let config = NodeConfig::resolve(raw, env_secret.is_some()).map_err(usage)?;
    let secret = match &config.secret_source {
        SecretSource::File(path) => ClusterSecret::load_file(path)
            .map_err(|e| Failure::Usage(format!("invalid config: cluster_secret_file: {e}")))?,
        SecretSource::Env => {
            ClusterSecret::from_bytes(env_secret.unwrap_or_default().as_bytes())
                .map_err(|e| Failure::Usage(format!("invalid config: {SECRET_ENV}: {e}")))?
        }
    };
    Ok((config, secret))
}

pub fn run(args: NodeArgs) -> Result<(), Failure> {
    let (config, secret) = load(&args)?;
    crate::logging::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, secret))?;
    Ok(())
}

async fn serve(config: NodeConfig, secret: ClusterSecret) -> anyhow::Result<()> {
    let services = geoul_node::builtin::services(&config)?;
    let (stopped, stop) = tokio::sync::oneshot::channel::<()>();
    let signals = tokio::spawn(async move {
        let outcome = wait_for_stop_signal().await;
        let _ = stopped.send(());
        outcome
    });
    geoul_node::daemon::serve(config, secret, services, async move {
        let _ = stop.await;
    })
    .await?;
    signals.abort();
    Ok(())
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}
