//! `geoul bench query`: latency of distributed queries on a local cluster
//! loaded with game-instance documents (DESIGN.md §14: "spectator search on
//! 1M directory entries (filter + order + limit 20): p99 ≤ 10 ms").
//!
//! `--nodes` nodes (default 5) host `kv` with indexes on `mode`, `region`,
//! `state`, `spectators` and `rating` and `--replication` copies (default 3).
//! `--docs` documents (`query_docs`) are written through `--load-clients`
//! ServiceRefs; once every node reports every table synced and every copy is
//! in place, each query shape runs as a timed phase on `--clients` clients
//! with one query in flight each (`Client::query`, any node coordinates).
//! A partial answer counts as an error.
//!
//! Owns: the query shapes, the phases, the report. Does not own: the
//! documents (`query_docs`), the cluster and query clients
//! (`query_cluster`), or the load loop (`kv_load`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use geoul_query::{parse_query, Query};
use serde::Serialize;

use super::kv::duration_flag;
use super::kv::{KvCtx, REQUEST_DEADLINE};
use super::kv_geoul::{rss_bytes, wait_placed};
use super::kv_load::{key_name, Op, Outcome, Phase, Work};
use super::kv_render::table;
use super::kv_report::PhaseStats;
use super::make_run_dir;
use super::query_cluster::{connect_queriers, start, wait_loaded, IndexedKv, QueryTally};
use super::query_docs::{connect_loaders, doc_fields};
use crate::cli::{BenchReplication, KvBenchArgs, QueryBenchArgs, RedisMode};
use crate::local_cluster::install_stop_flag;
use crate::Failure;

/// Phase length without `--duration` or `--requests-per-client`.
const DEFAULT_DURATION: Duration = Duration::from_secs(15);
/// §14: p99 of the spectator search on 1M entries.
pub const TARGET_SEARCH_P99_MS: f64 = 10.0;
/// The phase the target applies to.
const TARGET_PHASE: &str = "search";
/// Queries per client before the phases (not measured): every client's
/// connections to the coordinators are set up.
const WARM_UP_PER_CLIENT: u64 = 3;

/// The query shapes, in order: name and text.
pub const SHAPES: [(&str, &str); 4] = [
    (
        "eq",
        "kv where mode = \"ranked\" and region = \"eu\" limit 20",
    ),
    ("range", "kv where spectators < 3 limit 20"),
    (
        "search",
        "kv where mode = \"ranked\" and region = \"eu\" and state = \"playing\" \
         and spectators < 50 order by rating desc limit 20",
    ),
    ("top", "kv order by rating desc limit 20"),
];

/// One query shape's phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryPhase {
    pub name: &'static str,
    pub query: &'static str,
    /// Documents the filter matches (counted from the generator).
    pub matching_docs: u64,
    pub queries: u64,
    /// Failed queries, partial answers included.
    pub errors: u64,
    pub partial: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub ops_per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Per complete answer.
    pub mean_rows: f64,
    /// Entries examined on all nodes, per complete answer.
    pub mean_examined: f64,
    /// Nodes that answered a part, per complete answer.
    pub mean_nodes: f64,
}

/// The load of the documents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadStats {
    pub docs: u64,
    pub seconds: f64,
    pub docs_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// From the end of the load until every node was synced with every copy.
    pub settle_seconds: f64,
}

/// One node's resident memory after the phases.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeRss {
    pub node: String,
    pub rss_bytes: u64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryReport {
    /// The command that reproduces this run.
    pub command: String,
    pub settings: String,
    pub nodes: u16,
    /// `all` or the copy count asked for.
    pub replication: String,
    pub copies: u32,
    pub clients: u32,
    pub work: String,
    pub timeout_ms: u64,
    pub load: LoadStats,
    pub phases: Vec<QueryPhase>,
    pub rss: Vec<NodeRss>,
    pub target_search_p99_ms: f64,
    /// Whether the search phase met the target (judged only at ≥ 1M docs).
    pub target_met: Option<bool>,
}

fn kv_args(args: &QueryBenchArgs) -> KvBenchArgs {
    KvBenchArgs {
        clients: args.load_clients,
        requests_per_client: args.requests_per_client,
        duration: Some(args.duration.unwrap_or(DEFAULT_DURATION)),
        keys: args.docs,
        value_bytes: 0,
        redis: RedisMode::Off,
        json: args.json,
        memory_keys: 0,
        durability: args.durability,
        keep_logs: args.keep_logs,
    }
}

pub fn run(args: QueryBenchArgs) -> Result<(), Failure> {
    if let BenchReplication::Factor(n) = args.replication {
        if u16::from(n) > args.nodes {
            return Err(Failure::Usage(format!(
                "--replication {n} needs at least {n} nodes (--nodes {})",
                args.nodes
            )));
        }
    }
    indexed_kv(&args).check().map_err(Failure::Usage)?;
    let shapes = parse_shapes().map_err(|e| Failure::Runtime(format!("{e:#}")))?;
    let stop = install_stop_flag()?;
    let dir = make_run_dir()?;
    let ctx = KvCtx::new(kv_args(&args), dir, stop);
    ctx.progress(&format!("bench query: working in {}", ctx.dir.display()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("starting the async runtime: {e}")))?;
    let report = measure(&ctx, &rt, &args, &shapes).map_err(|e| ctx.failure(e))?;
    super::kv::finish_report(&ctx, args.keep_logs, args.json, &report, render)
}

/// The kv table `args` ask for.
fn indexed_kv(args: &QueryBenchArgs) -> IndexedKv {
    IndexedKv {
        replication: args.replication,
        durability: args.durability.word(),
        indexes: args.indexes.clone(),
    }
}

/// Every shape, parsed.
fn parse_shapes() -> anyhow::Result<Vec<Arc<Query>>> {
    SHAPES
        .iter()
        .map(|(name, text)| {
            parse_query(text)
                .map(Arc::new)
                .map_err(|e| anyhow!("query {name} does not parse: {e}"))
        })
        .collect()
}

/// How many of the first `docs` documents each query's filter matches.
fn count_matches(shapes: &[Arc<Query>], docs: u64) -> anyhow::Result<Vec<u64>> {
    let mut counts = vec![0; shapes.len()];
    let mut key = String::with_capacity(24);
    for i in 0..docs {
        key_name(&mut key, i);
        let doc = geoul_store::Document::from_fields(doc_fields(key.as_bytes()))
            .map_err(|e| anyhow!("document {key}: {e}"))?;
        for (count, q) in counts.iter_mut().zip(shapes) {
            *count += u64::from(q.filter.as_ref().is_none_or(|f| f.matches(&doc)));
        }
    }
    Ok(counts)
}

fn work(args: &QueryBenchArgs) -> Work {
    match args.requests_per_client {
        Some(n) => Work::PerClient(n),
        None => Work::Timed(args.duration.unwrap_or(DEFAULT_DURATION)),
    }
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| (d.as_secs_f64() * 1e6).round() / 1e3)
}

fn measure(
    ctx: &KvCtx,
    rt: &tokio::runtime::Runtime,
    args: &QueryBenchArgs,
    shapes: &[Arc<Query>],
) -> anyhow::Result<QueryReport> {
    let kv = indexed_kv(args);
    let copies = kv.copies(args.nodes);
    let mut cluster = start(ctx, &ctx.dir.join("geoul"), args.nodes, &kv)?;
    ctx.progress(&format!(
        "geoul: {} nodes ready ({})",
        args.nodes,
        cluster.pids()
    ));
    let nodes: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.planned.cluster).collect();
    let secret = cluster.secret.clone();
    let load = rt.block_on(async {
        let value: Arc<str> = Arc::from("probe");
        let probes = cluster.connect_clients(1, &value, REQUEST_DEADLINE).await?;
        wait_placed(ctx, &probes, copies).await?;
        drop(probes);
        let loaders = connect_loaders(&nodes, &secret, args.load_clients as usize).await?;
        let phase = Phase {
            label: format!("load {} docs", args.docs),
            op: Op::SetReplicated,
            work: Work::LoadAll(args.docs),
            keys: args.docs,
        };
        let (_, outcome) = ctx.load(loaders, &phase).await?;
        anyhow::Ok(outcome)
    })?;
    if load.errors > 0 {
        bail!(
            "load: {} of {} writes failed: {}",
            load.errors,
            args.docs,
            load.first_error.as_deref().unwrap_or("?")
        );
    }
    let settle_started = Instant::now();
    wait_loaded(ctx, &mut cluster, args.docs * u64::from(copies))?;
    let settle = settle_started.elapsed();
    ctx.progress(&format!(
        "every node synced with {} copies of {} docs after {:.1} s more",
        copies,
        args.docs,
        settle.as_secs_f64()
    ));
    let matching = count_matches(shapes, args.docs)?;
    let outcomes = rt.block_on(async {
        let first = shapes.first().ok_or_else(|| anyhow!("no query shape"))?;
        let mut drivers =
            connect_queriers(&nodes, &secret, args.clients as usize, first, args.timeout).await?;
        let warm = Phase {
            label: "warm-up".to_string(),
            op: Op::Get,
            work: Work::PerClient(WARM_UP_PER_CLIENT),
            keys: 1,
        };
        drivers = ctx.load(drivers, &warm).await?.0;
        let mut outcomes = Vec::new();
        for ((name, _), query) in SHAPES.iter().zip(shapes) {
            for d in &mut drivers {
                d.begin(query.clone());
            }
            let phase = Phase {
                label: format!("query {name}"),
                op: Op::Get,
                work: work(args),
                keys: 1,
            };
            let (back, outcome) = ctx.load(drivers, &phase).await?;
            drivers = back;
            let mut tally = QueryTally::default();
            for d in &drivers {
                tally.add(&d.tally);
            }
            outcomes.push((outcome, tally));
        }
        anyhow::Ok(outcomes)
    })?;
    let mut rss = Vec::new();
    for node in &cluster.nodes {
        rss.push(NodeRss {
            node: node.planned.name.clone(),
            rss_bytes: rss_bytes(node.child.id())?,
        });
    }
    cluster.check_children()?;
    let phases: Vec<QueryPhase> = (SHAPES.iter().zip(&outcomes).zip(&matching))
        .map(|(((name, text), (outcome, tally)), matching)| {
            query_phase(name, text, *matching, outcome, tally)
        })
        .collect();
    let target_met = (args.docs >= 1_000_000)
        .then(|| phases.iter().find(|p| p.name == TARGET_PHASE))
        .flatten()
        .map(|p| p.errors == 0 && p.p99_ms <= TARGET_SEARCH_P99_MS);
    let load_stats = PhaseStats::new(Op::SetReplicated, "PUT", &load);
    Ok(QueryReport {
        command: command(args),
        settings: format!(
            "{} local nodes, [kv] {} copies, write_ack = quorum, durability = {}, indexes on \
             {}; documents written by {} ServiceRefs; each query client has its own Client \
             (a random node coordinates each query)",
            args.nodes,
            args.replication.word(),
            args.durability.word(),
            args.indexes.join(", "),
            args.load_clients
        ),
        nodes: args.nodes,
        replication: args.replication.word(),
        copies,
        clients: args.clients,
        work: match work(args) {
            Work::PerClient(n) => format!("{n} queries per client per phase"),
            _ => format!(
                "{} per phase",
                duration_flag(args.duration.unwrap_or(DEFAULT_DURATION))
            ),
        },
        timeout_ms: u64::try_from(args.timeout.as_millis()).unwrap_or(u64::MAX),
        load: LoadStats {
            docs: load.ok,
            seconds: load_stats.seconds,
            docs_per_s: load_stats.ops_per_s,
            p50_ms: load_stats.p50_ms,
            p99_ms: load_stats.p99_ms,
            settle_seconds: (settle.as_secs_f64() * 1000.0).round() / 1000.0,
        },
        phases,
        rss,
        target_search_p99_ms: TARGET_SEARCH_P99_MS,
        target_met,
    })
}

fn per_answer(total: u64, answers: u64) -> f64 {
    if answers == 0 {
        0.0
    } else {
        (total as f64 / answers as f64 * 10.0).round() / 10.0
    }
}

fn query_phase(
    name: &'static str,
    query: &'static str,
    matching_docs: u64,
    o: &Outcome,
    t: &QueryTally,
) -> QueryPhase {
    QueryPhase {
        name,
        query,
        matching_docs,
        queries: o.ok,
        errors: o.errors,
        partial: t.partial,
        first_error: o.first_error.clone(),
        seconds: (o.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        ops_per_s: (o.ops_per_s() * 10.0).round() / 10.0,
        mean_ms: ms(o.hist.mean()),
        p50_ms: ms(o.hist.percentile(50.0)),
        p99_ms: ms(o.hist.percentile(99.0)),
        p999_ms: ms(o.hist.percentile(99.9)),
        max_ms: ms(o.hist.max()),
        mean_rows: per_answer(t.rows, t.answers),
        mean_examined: per_answer(t.examined, t.answers),
        mean_nodes: per_answer(t.nodes, t.answers),
    }
}

/// `exe bench query` with every setting that shapes the result spelled out.
pub fn command(args: &QueryBenchArgs) -> String {
    let exe = std::env::args()
        .next()
        .unwrap_or_else(|| "geoul".to_string());
    let work = match args.requests_per_client {
        Some(n) => format!("--requests-per-client {n}"),
        None => format!(
            "--duration {}",
            duration_flag(args.duration.unwrap_or(DEFAULT_DURATION))
        ),
    };
    format!(
        "{exe} bench query --nodes {} --docs {} --replication {} --clients {} \
         --load-clients {} {work} --timeout {} --durability {} --indexes {}",
        args.nodes,
        args.docs,
        args.replication.word(),
        args.clients,
        args.load_clients,
        duration_flag(args.timeout),
        args.durability.word(),
        args.indexes.join(",")
    )
}

const HEADER: [&str; 12] = [
    "query",
    "matching docs",
    "queries",
    "ops/s",
    "mean ms",
    "p50 ms",
    "p99 ms",
    "max ms",
    "rows",
    "examined",
    "nodes",
    "errors",
];

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

/// The human report.
pub fn render(r: &QueryReport) -> String {
    let mut out = format!(
        "bench query: {} docs on {} nodes ({} copies); {} query clients, one query in \
         flight each; {}; query deadline {} ms\n{}\n",
        r.load.docs, r.nodes, r.copies, r.clients, r.work, r.timeout_ms, r.settings
    );
    out.push_str(&format!(
        "load: {} docs in {:.1} s = {:.0} docs/s (PUT p50 {:.3} ms, p99 {:.3} ms); every \
         copy in place and every node synced {:.1} s later\n\n",
        r.load.docs,
        r.load.seconds,
        r.load.docs_per_s,
        r.load.p50_ms,
        r.load.p99_ms,
        r.load.settle_seconds
    ));
    let rows: Vec<Vec<String>> = (r.phases.iter())
        .map(|p| {
            let mut errors = p.errors.to_string();
            if p.partial > 0 {
                errors.push_str(&format!(" ({} partial)", p.partial));
            }
            vec![
                p.name.to_string(),
                p.matching_docs.to_string(),
                p.queries.to_string(),
                format!("{:.1}", p.ops_per_s),
                format!("{:.3}", p.mean_ms),
                format!("{:.3}", p.p50_ms),
                format!("{:.3}", p.p99_ms),
                format!("{:.3}", p.max_ms),
                format!("{:.1}", p.mean_rows),
                format!("{:.0}", p.mean_examined),
                format!("{:.1}", p.mean_nodes),
                errors,
            ]
        })
        .collect();
    out.push_str(&table(&HEADER, &rows));
    out.push_str("(rows, examined and nodes: mean per complete answer; examined: entries read on all nodes)\n");
    for p in &r.phases {
        out.push_str(&format!("  {:<7} {}\n", p.name, p.query));
    }
    for p in r.phases.iter().filter(|p| p.errors > 0) {
        let why = p.first_error.as_deref().unwrap_or("?");
        out.push_str(&format!("{}: first error: {why}\n", p.name));
    }
    let total: u64 = r.rss.iter().map(|n| n.rss_bytes).sum();
    let each: Vec<String> = (r.rss.iter())
        .map(|n| format!("{} {}", n.node, mib(n.rss_bytes)))
        .collect();
    out.push_str(&format!(
        "\nnode RSS (MiB) after the phases: {}; total {}\n",
        each.join(", "),
        mib(total)
    ));
    let search = r.phases.iter().find(|p| p.name == TARGET_PHASE);
    let verdict = match (r.target_met, search) {
        (Some(true), _) => "met".to_string(),
        (Some(false), _) => "MISSED".to_string(),
        (None, _) => "not judged (fewer than 1M docs)".to_string(),
    };
    out.push_str(&format!(
        "\ntarget (DESIGN.md §14): search p99 <= {:.0} ms on 1M entries: p99 {:.3} ms: {verdict}\n",
        r.target_search_p99_ms,
        search.map_or(0.0, |p| p.p99_ms)
    ));
    out.push_str(&format!("\nreproduce: {}\n", r.command));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_parses_and_filters_documents() {
        let shapes = parse_shapes().expect("shapes parse");
        assert_eq!(shapes.len(), SHAPES.len());
        let counts = count_matches(&shapes, 2000).expect("counts");
        // eq ≈ 12 %, range ≈ 35 %, search ≈ 5.5 %, top: every document.
        assert!((150..=330).contains(&counts[0]), "{counts:?}");
        assert!((600..=800).contains(&counts[1]), "{counts:?}");
        assert!((60..=170).contains(&counts[2]), "{counts:?}");
        assert_eq!(counts[3], 2000);
    }

    #[test]
    fn the_report_names_the_target_and_the_command() {
        let mut o = Outcome {
            ok: 0,
            found: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(2),
            hist: super::super::kv_hist::Histogram::new(),
        };
        for ms in 1..=100 {
            o.ok += 1;
            o.hist.record(Duration::from_millis(ms));
        }
        let tally = QueryTally {
            answers: 100,
            rows: 2000,
            examined: 50_000,
            nodes: 300,
            partial: 0,
        };
        let phase = query_phase("search", "kv where x = 1", 42, &o, &tally);
        assert_eq!(phase.mean_rows, 20.0);
        assert_eq!(phase.mean_examined, 500.0);
        assert_eq!(phase.mean_nodes, 3.0);
        assert_eq!(phase.ops_per_s, 50.0);
        let report = QueryReport {
            command: "geoul bench query --docs 20000".into(),
            settings: "s".into(),
            nodes: 5,
            replication: "3".into(),
            copies: 3,
            clients: 8,
            work: "15s per phase".into(),
            timeout_ms: 10_000,
            load: LoadStats {
                docs: 20_000,
                seconds: 1.0,
                docs_per_s: 20_000.0,
                p50_ms: 1.0,
                p99_ms: 2.0,
                settle_seconds: 0.1,
            },
            phases: vec![phase],
            rss: vec![NodeRss {
                node: "node-1".into(),
                rss_bytes: 10 << 20,
            }],
            target_search_p99_ms: TARGET_SEARCH_P99_MS,
            target_met: None,
        };
        let text = render(&report);
        assert!(text.contains("not judged"), "{text}");
        assert!(text.contains("node-1 10.0"), "{text}");
        assert!(
            text.contains("reproduce: geoul bench query --docs 20000"),
            "{text}"
        );
    }
}
