//! Command-line grammar. Flags mirror the TOML keys (`--data-dir` = `data_dir`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default first cluster port of `geoul up` (node-1 binds it, node-i binds +i-1).
pub const UP_BASE_PORT: u16 = 7001;
/// Admin ports sit this far above cluster ports (node-1: 8001).
pub const ADMIN_PORT_OFFSET: u16 = 1000;

/// geoul: replicated backend services for very large online games.
#[derive(Parser, Debug)]
#[command(name = "geoul", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one node in the foreground.
    Node(NodeArgs),
    /// Run a local cluster of N nodes on loopback (Ctrl-C stops it).
    Up(UpArgs),
    /// Show the members of a cluster as one node sees them.
    Status(StatusArgs),
}

#[derive(Args, Debug, Default)]
pub struct NodeArgs {
    /// TOML config file; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Node name, stable across restarts.
    #[arg(long)]
    pub name: Option<String>,
    /// Cluster/client address, TCP and UDP on one port (default 127.0.0.1:7001).
    #[arg(long)]
    pub bind: Option<String>,
    /// Address peers and clients use, when --bind is a wildcard.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Admin HTTP address (default 127.0.0.1:8001).
    #[arg(long)]
    pub admin: Option<String>,
    /// Seed nodes, host:port,host:port...
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// Data directory (default geoul-data/<name>).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// File holding the cluster secret (or set GEOUL_CLUSTER_SECRET).
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// Services to host, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub services: Option<Vec<String>>,
    /// Log format: human or json.
    #[arg(long, value_parser = ["human", "json"])]
    pub log_format: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// First cluster port; node i uses base+i-1, its admin base+1000+i-1.
    #[arg(long, default_value_t = UP_BASE_PORT)]
    pub base_port: u16,
    /// Directory for node data, logs and the generated cluster secret.
    #[arg(long, default_value = "geoul-data")]
    pub data_dir: PathBuf,
    /// Seconds to wait for the cluster to converge before giving up.
    #[arg(long, default_value_t = 60)]
    pub converge_timeout_s: u64,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Admin URL of any node.
    #[arg(long, env = "GEOUL_ADMIN", default_value = "http://127.0.0.1:8001")]
    pub admin: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
