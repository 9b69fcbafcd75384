//! Command-line grammar. Flags mirror the TOML keys (`--data-dir` = `data_dir`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster_client::{parse_timeout, parse_ttl};

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
    /// Benchmarks against a peer system started in the same run.
    Bench(BenchArgs),
    /// Read and write the replicated key-value store (the `kv` service).
    #[command(after_help = KV_EXIT_CODES)]
    Kv(KvArgs),
    /// Call any service by name; the request and the reply are JSON.
    #[command(after_help = CALL_HELP)]
    Call(CallArgs),
    /// Run a distributed query: 'TABLE [where FILTER] [order by F [asc|desc],…] [limit N]'.
    #[command(after_help = QUERY_HELP)]
    Query(QueryArgs),
    /// Accounts and sessions (the `auth` service).
    #[command(after_help = crate::auth_cmd::AUTH_HELP)]
    Auth(crate::auth_cmd::AuthArgs),
    /// Live game instances (the `instance-directory` service).
    #[command(after_help = crate::dir_cmd::DIR_HELP)]
    Dir(crate::dir_cmd::DirArgs),
    /// Load generators against a running cluster (bounded in count and time).
    Load(LoadArgs),
}

/// `geoul load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(subcommand)]
    pub command: LoadCommand,
}

/// What `geoul load` can simulate.
#[derive(Subcommand, Debug)]
pub enum LoadCommand {
    /// Player lifecycles against `auth`: login, a validation per server move,
    /// refresh, logout; a table of ops/s, p50/p99 and errors at the end.
    Auth(crate::load_auth::AuthLoadArgs),
    /// Game-server lifecycles against the instance directory (register,
    /// renew, state and count updates, remove) plus spectator searches; a
    /// table of ops/s, p50/p99 and errors at the end.
    Dir(crate::load_dir::DirLoadArgs),
}

/// What `geoul call --help` adds.
const CALL_HELP: &str = "Example: geoul call leaderboard --key season-1/ana \
'{\"Score\": {\"board\": \"season-1\", \"player\": \"ana\"}}'\n\
The JSON is the service's request type as serde writes it. Exit codes: 0 ok (the reply is \
printed), 1 runtime failure (e.g. rejected by the service, with its reason), 2 usage error.";

/// `geoul call`.
#[derive(Args, Debug)]
pub struct CallArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Service name.
    pub service: String,
    /// The request, as JSON.
    pub request: String,
    /// Routing key: the call goes to this key's replicas (else any host).
    #[arg(long)]
    pub key: Option<String>,
    /// Retries with this key are applied at most once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// The request is safe to apply twice: retry it on another node on any failure.
    #[arg(long)]
    pub idempotent: bool,
    /// Deadline (e.g. 500ms, 2s; at most 60s).
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// What `geoul query --help` adds.
const QUERY_HELP: &str = "Example: geoul query 'instances where mode = \"ranked\" and region = \"eu\" \
and spectators < 50 order by rating desc limit 20'\n\
Operators: = != < <= > >= in (..) not in (..), and, or, not, parentheses. Limit 1-10000 (default 100).\n\
Exit codes: 0 ok (also for zero rows; a partial answer says PARTIAL, or \"partial\": true), \
1 runtime failure, 2 usage error (a query that does not parse shows where).";

/// `geoul query`.
#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The query text.
    pub query: String,
    /// Continue after this cursor (printed as "next page" by the previous page).
    #[arg(long)]
    pub after: Option<String>,
    /// Deadline (e.g. 500ms, 2s; at most 60s); slots not answered by then are
    /// reported as partial.
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print JSON: {"entries": [...], "partial": bool, "missing_slots": [...], "next": ...}.
    #[arg(long)]
    pub json: bool,
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
    /// Built-in services every node hosts.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kv,auth,instance-directory"
    )]
    pub services: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Admin URL of any node.
    #[arg(long, env = "GEOUL_ADMIN", default_value = "http://127.0.0.1:8001")]
    pub admin: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Redraw the tables' sync progress every second until every slot is synced.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Crash detection: kill -9 nodes, time until every survivor reports them dead,
    /// then count false suspicions under a CPU hog; Redis Cluster side by side.
    Detect(DetectArgs),
    /// kv throughput and latency (SET at Quorum and One, GET) of a local 3-node
    /// cluster against Redis primary + replica (SET + WAIT 1), then memory per key.
    Kv(KvBenchArgs),
    /// Full sync of a loaded node's data to a new node against a Redis full
    /// resync to a new replica; then catch-up after a restart with 10 % new keys.
    Sync(SyncBenchArgs),
    /// ServiceRef overhead: kv SET (ack quorum) and GET of a local 3-node
    /// cluster through bare connections, ServiceRefs, and ServiceRefs without
    /// session guarantees.
    Call(CallBenchArgs),
    /// Distributed query latency: a local 5-node cluster loaded with indexed
    /// game-instance documents, then equality, range, search and top-k queries.
    Query(QueryBenchArgs),
    /// Instance directory of a running cluster: load live instances, then
    /// closed-loop renewals, updates and spectator searches
    /// (`scripts/bench-dir.sh` starts the cluster and PostgreSQL beside it).
    Dir(crate::bench::dir::DirBenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CallBenchArgs {
    /// Concurrent clients per driver, one request in flight each.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Requests per client in each timed phase (instead of --duration).
    #[arg(long, conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub requests_per_client: Option<u64>,
    /// Length of each timed phase, e.g. 15s [default: 15s].
    #[arg(long, value_parser = parse_phase_duration)]
    pub duration: Option<Duration>,
    /// Key space: every key is written once first, then keys are drawn
    /// uniformly from it.
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub value_bytes: u32,
    /// Times the raw / ref / ref-nosession sequence of each operation is
    /// repeated (interleaved, results merged), to even out a noisy machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Durability of the kv table.
    #[arg(long, value_enum, default_value_t = BenchDurability::Memory)]
    pub durability: BenchDurability,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (node logs) after a successful run.
    #[arg(long)]
    pub keep_logs: bool,
}

#[derive(Args, Debug, Clone)]
pub struct QueryBenchArgs {
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub nodes: u16,
    /// Documents loaded before the queries.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub docs: u64,
    /// Copies of each document: a number (at most --nodes) or `all`.
    #[arg(long, default_value = "3", value_parser = parse_replication)]
    pub replication: BenchReplication,
    /// Indexed document fields, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mode,region,state,spectators,rating"
    )]
    pub indexes: Vec<String>,
    /// Concurrent query clients, one query in flight each.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Concurrent clients loading the documents.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub load_clients: u32,
    /// Queries per client in each timed phase (instead of --duration).
    #[arg(long, conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub requests_per_client: Option<u64>,
    /// Length of each timed phase, e.g. 15s [default: 15s].
    #[arg(long, value_parser = parse_phase_duration)]
    pub duration: Option<Duration>,
    /// Deadline of one query (at most 60s): long enough that a slow plan shows
    /// as latency rather than as a partial answer.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Durability of the kv table.
    #[arg(long, value_enum, default_value_t = BenchDurability::Memory)]
    pub durability: BenchDurability,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (node logs) after a successful run.
    #[arg(long)]
    pub keep_logs: bool,
}

/// Copies of each entry in a benchmark cluster's kv table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchReplication {
    /// `[kv] replicate_to_all = true`.
    All,
    /// `[kv] replication_factor = N`.
    Factor(u8),
}

impl BenchReplication {
    /// The flag value, as typed.
    pub fn word(self) -> String {
        match self {
            BenchReplication::All => "all".to_string(),
            BenchReplication::Factor(n) => n.to_string(),
        }
    }
}

/// `all` or a copy count of 1..=64.
fn parse_replication(text: &str) -> Result<BenchReplication, String> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(BenchReplication::All);
    }
    match text.parse::<u8>() {
        Ok(n) if (1..=64).contains(&n) => Ok(BenchReplication::Factor(n)),
        _ => Err("expected `all` or a number of copies from 1 to 64".into()),
    }
}

#[derive(Args, Debug)]
pub struct SyncBenchArgs {
    /// Entries loaded before the new node (or replica) starts.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub value_bytes: u32,
    /// Concurrent clients loading the data.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Durability of the geoul kv table: `disk` (group commit every 100 ms;
    /// also measures the catch-up after a restart) or `memory` (like the Redis
    /// side, which has no persistence; no catch-up).
    #[arg(long, value_enum, default_value_t = BenchDurability::Disk)]
    pub durability: BenchDurability,
    /// Measure Redis too: auto (if installed), on, off.
    #[arg(long, value_enum, default_value_t = RedisMode::Auto)]
    pub redis: RedisMode,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory after a successful run.
    #[arg(long)]
    pub keep_logs: bool,
}

/// Whether `geoul bench detect` also measures Redis Cluster.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisMode {
    /// Only if `redis-server` and `redis-cli` are on PATH.
    Auto,
    /// Required: fail if Redis is not installed.
    On,
    /// Never.
    Off,
}

impl RedisMode {
    /// The flag value, as typed.
    pub fn word(self) -> &'static str {
        match self {
            RedisMode::Auto => "auto",
            RedisMode::On => "on",
            RedisMode::Off => "off",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DetectArgs {
    /// Nodes per cluster (Redis Cluster needs at least 3 masters).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(3..=64))]
    pub nodes: u16,
    /// Crashes (kill -9) to measure per system.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub kills: u32,
    /// Seconds of the CPU-hog phase per system (0 skips it).
    #[arg(long, default_value_t = 60)]
    pub hog_seconds: u64,
    /// First port: geoul nodes use P.., their admin P+1000.., Redis P+2000..
    /// (cluster bus P+12000..). Default: random free ports below 32768.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Measure Redis Cluster too: auto (if installed), on, off.
    #[arg(long, value_enum, default_value_t = RedisMode::Auto)]
    pub redis: RedisMode,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory (node logs, Redis logs) after a successful run.
    #[arg(long)]
    pub keep_logs: bool,
}

/// Where the geoul nodes of `geoul bench kv` keep the kv table.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchDurability {
    /// In memory only, like the Redis peer (started without RDB or AOF).
    Memory,
    /// Also on disk (redb, fsync of every batch before the ack).
    Disk,
}

impl BenchDurability {
    /// The flag value, as typed (also the `[kv] durability` value).
    pub fn word(self) -> &'static str {
        match self {
            BenchDurability::Memory => "memory",
            BenchDurability::Disk => "disk",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct KvBenchArgs {
    /// Concurrent clients per system, each with its own connection and one
    /// request in flight.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Requests per client in each timed phase (instead of --duration).
    #[arg(long, conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub requests_per_client: Option<u64>,
    /// Length of each timed phase, e.g. 20s [default: 20s].
    #[arg(long, value_parser = parse_phase_duration)]
    pub duration: Option<Duration>,
    /// Key space of the timed phases: every key is written once first, then
    /// keys are drawn uniformly from it.
    #[arg(long, default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub keys: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub value_bytes: u32,
    /// Measure Redis too: auto (if installed), on, off.
    #[arg(long, value_enum, default_value_t = RedisMode::Auto)]
    pub redis: RedisMode,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keys loaded into a fresh single instance of each system for the memory
    /// per key measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub memory_keys: u64,
    /// Durability of the geoul kv table in the throughput phases (the memory
    /// phase always uses `memory`).
    #[arg(long, value_enum, default_value_t = BenchDurability::Memory)]
    pub durability: BenchDurability,
    /// Keep the temporary directory (node logs, Redis logs) after a successful run.
    #[arg(long)]
    pub keep_logs: bool,
}

/// A `--duration` of `bench kv`: at least one second.
fn parse_phase_duration(text: &str) -> Result<Duration, String> {
    let d = crate::cluster_client::parse_duration(text)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
        return Err("must be between 1s and 24h".into());
    }
    Ok(d)
}

/// Where a client command finds the cluster and its secret.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Cluster addresses, HOST:PORT[,HOST:PORT...]; the first reachable one
    /// serves the request [default: 127.0.0.1:7001].
    #[arg(long, global = true, env = "GEOUL_CLUSTER", value_delimiter = ',')]
    pub cluster: Option<Vec<String>>,
    /// File holding the cluster secret; else GEOUL_CLUSTER_SECRET (the secret
    /// itself), else geoul-data/cluster.secret (written by `geoul up`).
    #[arg(long, global = true)]
    pub cluster_secret_file: Option<PathBuf>,
}

/// What `geoul kv --help` says about exit codes.
const KV_EXIT_CODES: &str = "Exit codes: 0 ok (also when `get` or `ttl` finds no key: they print \
`(nil)`, or `null` with --json), 1 runtime failure (one-line reason on stderr), 2 usage error.";

/// `geoul kv` and its flags shared by every subcommand.
#[derive(Args, Debug)]
pub struct KvArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print JSON (the API's field names) instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline of the request on the server (e.g. 500ms, 2s; at most 60s).
    #[arg(long, global = true, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: KvCommand,
}

/// Write acknowledgement level.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckArg {
    /// One replica applied it.
    One,
    /// A majority of the key's replicas applied it.
    Quorum,
    /// Every replica of the key applied it.
    All,
}

/// Read consistency.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsistencyArg {
    /// One replica's copy (this node's if it is one).
    One,
    /// The newest copy among a majority of replicas (repairs stale ones).
    Quorum,
}

#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Write VALUE under KEY; prints `OK (acked/replicas acks)`.
    Set {
        /// Key (at most 1024 bytes).
        key: String,
        /// Value.
        value: String,
        /// Expire after this long (e.g. 30s, 5m, 1h30m); default: the table's.
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Acknowledgement level; default: the table's (quorum for kv).
        #[arg(long, value_enum)]
        ack: Option<AckArg>,
    },
    /// Print the value of KEY, or `(nil)` (exit 0) if there is none.
    Get {
        /// Key.
        key: String,
        /// Read consistency.
        #[arg(long, value_enum, default_value_t = ConsistencyArg::Quorum)]
        consistency: ConsistencyArg,
    },
    /// Delete KEY (a versioned tombstone; deleting a missing key succeeds).
    Del {
        /// Key.
        key: String,
        /// Acknowledgement level; default: the table's (quorum for kv).
        #[arg(long, value_enum)]
        ack: Option<AckArg>,
    },
    /// Print the remaining lifetime of KEY: `12.3s`, `(no expiry)` or `(nil)`.
    Ttl {
        /// Key.
        key: String,
    },
    /// List keys starting with a prefix, in key order, with their values.
    Scan {
        /// Key prefix (empty: every key, still bounded by --limit).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Most entries returned (the server caps scans at 1000).
        #[arg(long, default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(geoul_replication::replicator::SCAN_LIMIT_MAX)))]
        limit: u32,
    },
}
