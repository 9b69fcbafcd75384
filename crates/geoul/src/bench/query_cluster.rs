//! The cluster and the query clients of `bench query`: local nodes whose `kv`
//! table indexes the document fields, the wait until every copy of every
//! document is in place, and the client that runs one query shape in a loop.
//!
//! Owns: the `[kv]` config with `indexes` and `replicate_to_all`, the wait for
//! a loaded and synced cluster, and [`QueryDriver`]. Does not own: node
//! processes (`kv_geoul::GeoulCluster`, reused as is: its config file is
//! replaced before any node starts — see [`start`]) or the load loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use geoul_node::kv::KV;
use geoul_query::Query;
use geoul_store::{Durability, Replication};
use geoul_transport::ClusterSecret;

use super::admin::{agent, status};
use super::call_drivers::connect_client;
use super::kv::{wait_until, KvCtx};
use super::kv_geoul::{GeoulCluster, KvSettings};
use super::kv_load::{Driver, Op};
use crate::cli::BenchReplication;

/// Bound on the wait for every node to see every member alive with `kv`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the wait for every copy of every document after the load (the
/// last copies of a Quorum write are in flight; sync repairs any gap).
const LOADED_TIMEOUT: Duration = Duration::from_secs(600);
/// Timeout of one admin HTTP request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The `[kv]` table of a query cluster.
#[derive(Clone, Debug)]
pub struct IndexedKv {
    pub replication: BenchReplication,
    pub durability: &'static str,
    /// Indexed document fields.
    pub indexes: Vec<String>,
}

impl IndexedKv {
    /// The node config file.
    pub fn toml(&self) -> String {
        let copies = match self.replication {
            BenchReplication::All => "replicate_to_all = true".to_string(),
            BenchReplication::Factor(n) => format!("replication_factor = {n}"),
        };
        let indexes: Vec<String> = self.indexes.iter().map(|f| format!("\"{f}\"")).collect();
        format!(
            "fsync_period_ms = 0\n[kv]\n{copies}\nwrite_ack = \"quorum\"\ndurability = \"{}\"\n\
             indexes = [{}]\n",
            self.durability,
            indexes.join(", ")
        )
    }

    /// Refuses what a node would refuse at start: a table declaration that
    /// does not validate (bad, repeated or too many index fields).
    pub fn check(&self) -> Result<(), String> {
        let mut options = geoul_node::kv::default_options();
        options.replication = match self.replication {
            BenchReplication::All => Replication::All,
            BenchReplication::Factor(n) => Replication::Factor(n),
        };
        options.durability = match self.durability {
            "disk" => Durability::Disk,
            _ => Durability::Memory,
        };
        options.indexes = self.indexes.clone();
        geoul_node::kv::spec(options)
            .validate()
            .map_err(|e| format!("--indexes: {e}"))?;
        Ok(())
    }

    /// Copies of each document on a cluster of `nodes`.
    pub fn copies(&self, nodes: u16) -> u32 {
        match self.replication {
            BenchReplication::All => u32::from(nodes),
            BenchReplication::Factor(n) => u32::from(n).min(u32::from(nodes)),
        }
    }
}

/// Starts `nodes` nodes with `kv`'s config and waits until each sees every
/// member alive and hosting `kv`.
///
/// `GeoulCluster` writes `[kv]` settings without indexes; it is asked to plan
/// the nodes without starting any, its config file is replaced (after
/// checking it is the one it wrote, so that a change there fails here
/// instead of silently measuring a table without indexes), then the nodes
/// are started one by one.
pub fn start(ctx: &KvCtx, dir: &Path, nodes: u16, kv: &IndexedKv) -> anyhow::Result<GeoulCluster> {
    let base = KvSettings {
        replication_factor: 1,
        write_ack: "quorum",
        durability: kv.durability,
        fsync_period_ms: 0,
    };
    let mut cluster = GeoulCluster::start_some(ctx, dir, nodes, 0, base)?;
    let config = dir.join("node.toml");
    let written = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    if written != base.toml() {
        bail!(
            "{} is not the config GeoulCluster wrote; bench query cannot add its indexes",
            config.display()
        );
    }
    std::fs::write(&config, kv.toml()).with_context(|| format!("writing {}", config.display()))?;
    for _ in 0..nodes {
        cluster.start_next()?;
    }
    let http = agent(ADMIN_TIMEOUT);
    let n = cluster.nodes.len();
    let what = format!("every geoul node to see {n} members alive and hosting {KV}");
    wait_until(ctx, &what, READY_TIMEOUT, || {
        cluster.check_children()?;
        Ok(cluster.nodes.iter().all(|node| {
            status(&http, node.planned.admin).is_ok_and(|s| {
                s.count("alive") == n && s.members.iter().all(|m| m.services.contains_key(KV))
            })
        }))
    })?;
    Ok(cluster)
}

/// Waits until every node reports every table synced and the nodes hold
/// `entries` copies of `kv` entries between them; returns the time waited.
pub fn wait_loaded(
    ctx: &KvCtx,
    cluster: &mut GeoulCluster,
    entries: u64,
) -> anyhow::Result<Duration> {
    let http = agent(ADMIN_TIMEOUT);
    let what = format!("every node synced, {entries} kv entries in all");
    wait_until(ctx, &what, LOADED_TIMEOUT, || {
        cluster.check_children()?;
        let mut held = 0;
        for node in &cluster.nodes {
            let Ok(s) = status(&http, node.planned.admin) else {
                return Ok(false);
            };
            if !s.synced() {
                return Ok(false);
            }
            held += s.tables.get(KV).map_or(0, |t| t.entries);
        }
        Ok(held >= entries)
    })
}

/// What one query client counted in one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryTally {
    /// Complete answers.
    pub answers: u64,
    pub rows: u64,
    pub examined: u64,
    pub nodes: u64,
    /// Partial answers (also counted as errors by the load loop).
    pub partial: u64,
}

impl QueryTally {
    pub fn add(&mut self, other: &QueryTally) {
        self.answers += other.answers;
        self.rows += other.rows;
        self.examined += other.examined;
        self.nodes += other.nodes;
        self.partial += other.partial;
    }
}

/// One query client: its own `geoul_client::Client`, running the current
/// query shape (the load loop's operation and key are ignored).
pub struct QueryDriver {
    client: geoul_client::Client,
    query: Arc<Query>,
    timeout: Duration,
    pub tally: QueryTally,
}

impl QueryDriver {
    /// Runs `query` from now on, with a fresh tally.
    pub fn begin(&mut self, query: Arc<Query>) {
        self.query = query;
        self.tally = QueryTally::default();
    }
}

impl Driver for QueryDriver {
    /// `Ok(true)` for a complete answer with rows; a partial answer is an
    /// error (it must not happen on a healthy cluster).
    async fn call(&mut self, _op: Op, _key: &str) -> anyhow::Result<bool> {
        let answer = self
            .client
            .query(&self.query, self.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("query: {e}"))?;
        if answer.partial {
            self.tally.partial += 1;
            bail!(
                "partial answer from {}: {} slots missing",
                answer.node,
                answer.missing_slots.len()
            );
        }
        self.tally.answers += 1;
        self.tally.rows += answer.rows.len() as u64;
        self.tally.examined += answer.examined;
        self.tally.nodes += u64::from(answer.nodes);
        Ok(!answer.rows.is_empty())
    }
}

/// `n` query clients seeded round-robin over `nodes`, each running `query`.
pub async fn connect_queriers(
    nodes: &[SocketAddr],
    secret: &ClusterSecret,
    n: usize,
    query: &Arc<Query>,
    timeout: Duration,
) -> anyhow::Result<Vec<QueryDriver>> {
    let mut drivers = Vec::with_capacity(n);
    for i in 0..n {
        drivers.push(QueryDriver {
            client: connect_client(nodes, i, secret).await?,
            query: query.clone(),
            timeout,
            tally: QueryTally::default(),
        });
    }
    Ok(drivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(replication: BenchReplication, durability: &'static str, fields: &[&str]) -> IndexedKv {
        IndexedKv {
            replication,
            durability,
            indexes: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    const FOUR: [&str; 4] = ["mode", "state", "spectators", "rating"];

    #[test]
    fn config_files() {
        let three = kv(BenchReplication::Factor(3), "memory", &FOUR);
        assert_eq!(
            three.toml(),
            "fsync_period_ms = 0\n[kv]\nreplication_factor = 3\nwrite_ack = \"quorum\"\n\
             durability = \"memory\"\n\
             indexes = [\"mode\", \"state\", \"spectators\", \"rating\"]\n"
        );
        assert_eq!(three.copies(5), 3);
        assert_eq!(three.copies(2), 2);
        let all = kv(BenchReplication::All, "disk", &FOUR);
        assert!(all.toml().contains("replicate_to_all = true\n"));
        assert_eq!(all.copies(5), 5);
    }

    #[test]
    fn config_files_parse_as_node_configs() {
        let all = kv(BenchReplication::All, "memory", &FOUR);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.toml");
        std::fs::write(&path, all.toml()).expect("write");
        let raw = geoul_node::config::RawConfig::from_file(&path).expect("parses");
        let indexes = raw.kv.and_then(|k| k.indexes).expect("indexes");
        assert_eq!(indexes, FOUR.map(String::from).to_vec());
    }

    #[test]
    fn declarations_nodes_would_refuse_are_refused_first() {
        kv(BenchReplication::Factor(3), "memory", &FOUR)
            .check()
            .expect("the default fits");
        let five = ["mode", "region", "state", "spectators", "rating"];
        kv(BenchReplication::Factor(3), "memory", &five)
            .check()
            .expect("long index lists fit: the gossiped summary hashes them");
        let err = kv(BenchReplication::Factor(3), "memory", &["mode", "mode"])
            .check()
            .expect_err("a field twice");
        assert!(err.starts_with("--indexes"), "{err}");
    }
}
