//! `geoul bench dir`: the instance directory of a running cluster under the
//! load DESIGN.md §1 names — many live instances, renewals and updates,
//! spectator searches — measured closed-loop; `scripts/bench-dir.sh` starts
//! the cluster (with `All` and with `Factor(2)`) and runs the same data and
//! queries on PostgreSQL in the same run.
//!
//! Owns: the deterministic instance set (also written as CSV for the peer),
//! the load phase, the wait until every copy is in place, the timed phases
//! and the report. Does not own: the nodes or the peer (the script).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use geoul_dir::{DirClient, InstanceSpec, InstanceState, InstanceUpdate, DIR};

use super::kv_hist::Histogram;
use crate::cli::ClusterArgs;
use crate::cluster_client::{connect_client, load_secret, parse_duration, targets};
use crate::Failure;

/// Modes, regions and states of the generated instances: the spectator
/// search below matches about 1 in 144.
const MODES: [&str; 3] = ["ranked", "casual", "coop"];
const REGIONS: [&str; 4] = ["eu", "na", "asia", "sa"];
const STATES: [InstanceState; 3] = [
    InstanceState::Lobby,
    InstanceState::Playing,
    InstanceState::Ending,
];

/// The spectator search of the issue, and a range query.
pub const SPECTATOR_QUERY: &str = "mode = \"ranked\" and region = \"eu\" and state = \"playing\" \
and spectators < 50 order by rating desc limit 20";
pub const RANGE_QUERY: &str = "rating >= 1500 and rating < 1510 order by rating desc limit 20";

/// Registrations in flight during the load.
const LOAD_CONCURRENCY: usize = 256;
/// Bound on the wait for every copy after the load.
const PLACED_TIMEOUT: Duration = Duration::from_secs(600);

/// `geoul bench dir`.
#[derive(Args, Debug)]
pub struct DirBenchArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Live instances to register.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=20_000_000))]
    pub instances: u64,
    /// Concurrent clients in each timed phase, one request in flight each.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Length of each timed phase.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Admin URLs of every node (comma-separated): the load waits until
    /// their tables hold every copy.
    #[arg(long, value_delimiter = ',', required = true)]
    pub admins: Vec<String>,
    /// Copies of each entry the cluster keeps in all (nodes for `All`).
    #[arg(long, default_value_t = 3)]
    pub copies: u64,
    /// Write the instance set as CSV here (for the peer) and exit.
    #[arg(long)]
    pub emit_csv: Option<std::path::PathBuf>,
    /// Skip these phases (comma-separated: renew, update, search).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
}

/// SplitMix64: the instance set is a pure function of the index.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn id(i: u64) -> String {
    format!("inst-{i:07}")
}

/// Instance `i` (the same for geoul and the peer's CSV).
pub fn instance(i: u64, now_ms: u64) -> InstanceSpec {
    let h = mix(i);
    InstanceSpec {
        addr: format!("10.{}.{}.{}:7777", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        mode: MODES[(h % 3) as usize].into(),
        region: REGIONS[((h >> 4) % 4) as usize].into(),
        map: Some(format!("map-{}", (h >> 8) % 12)),
        players: ((h >> 12) % 11) as u32,
        max_players: 10,
        spectators: ((h >> 16) % 200) as u32,
        state: STATES[((h >> 24) % 3) as usize],
        rating: Some(800.0 + ((h >> 28) % 1600) as f64),
        started_at: Some(now_ms.saturating_sub((h >> 40) % 3_600_000)),
        tags: Default::default(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn emit_csv(path: &std::path::Path, n: u64) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let now = now_ms();
    // Expiry an hour ahead, like the registrations.
    let expires = now + 3_600_000;
    for i in 0..n {
        let s = instance(i, now);
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            id(i),
            s.addr,
            s.mode,
            s.region,
            s.map.unwrap_or_default(),
            s.players,
            s.max_players,
            s.spectators,
            s.state.as_str(),
            s.rating.unwrap_or(0.0),
            s.started_at.unwrap_or(0),
            expires
        )?;
    }
    out.flush()?;
    Ok(())
}

/// One timed phase's numbers.
#[derive(Default)]
struct Phase {
    hist: Histogram,
    errors: u64,
    first_error: Option<String>,
}

fn record(phase: &Mutex<Phase>, started: Instant, result: Result<(), String>) {
    let took = started.elapsed();
    let mut p = phase.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(()) => p.hist.record(took),
        Err(e) => {
            p.errors += 1;
            p.first_error.get_or_insert(e);
        }
    }
}

/// Scalar samples of the node processes' metrics.
fn table_values(http: &ureq::Agent, admin: &str) -> Option<u64> {
    let text = http
        .get(&format!("{admin}/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("geoul_table_values{") && l.contains("table=\"dir.instances\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

async fn closed_loop(
    clients: &[DirClient],
    duration: Duration,
    n: u64,
    op: &'static str,
) -> (Phase, Duration) {
    let phase = Arc::new(Mutex::new(Phase::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, dir) in clients.iter().enumerate() {
        let (dir, phase, stop) = (dir.clone(), phase.clone(), stop.clone());
        tasks.spawn(async move {
            let mut k = mix(c as u64 + 17);
            while !stop.load(Ordering::Relaxed) {
                k = mix(k);
                let i = k % n;
                let t = Instant::now();
                let r = match op {
                    "renew" => dir.renew(&id(i)).await.map(|_| ()),
                    "update" => {
                        let changes = InstanceUpdate {
                            players: Some(((k >> 8) % 11) as u32),
                            spectators: Some(((k >> 16) % 200) as u32),
                            ..InstanceUpdate::default()
                        };
                        dir.update(&id(i), changes).await.map(|_| ())
                    }
                    "search" => dir.search(SPECTATOR_QUERY, None).await.and_then(|p| {
                        if p.partial {
                            Err(geoul_dir::DirError::Unexpected("partial"))
                        } else {
                            Ok(())
                        }
                    }),
                    _ => dir.search(RANGE_QUERY, None).await.map(|_| ()),
                };
                record(&phase, t, r.map_err(|e| e.to_string()));
            }
        });
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let p = std::mem::take(&mut *phase.lock().unwrap_or_else(|e| e.into_inner()));
    (p, elapsed)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2}", d.as_secs_f64() * 1000.0),
    )
}

pub fn run(args: DirBenchArgs) -> Result<(), Failure> {
    if let Some(path) = &args.emit_csv {
        return emit_csv(path, args.instances).map_err(|e| Failure::Runtime(format!("{e:#}")));
    }
    let targets = targets(&args.cluster)?;
    let secret = load_secret(&args.cluster)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("runtime: {e}")))?;
    runtime
        .block_on(bench(&args, &targets, &secret))
        .map_err(|e| Failure::Runtime(format!("{e:#}")))
}

async fn bench(
    args: &DirBenchArgs,
    targets: &[String],
    secret: &geoul_transport::ClusterSecret,
) -> anyhow::Result<()> {
    let client = connect_client(targets, secret)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let n = args.instances;
    let dirs: Vec<DirClient> = (0..args.clients.max(LOAD_CONCURRENCY as u32))
        .map(|_| {
            DirClient::new(client.service(DIR).without_session())
                .with_timeout(Duration::from_secs(10))
        })
        .collect();
    // Load.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let now = now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for dir in &dirs[..LOAD_CONCURRENCY.min(dirs.len())] {
        let (dir, next, failed) = (dir.clone(), next.clone(), failed.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let ttl = Some(Duration::from_secs(3600));
                if dir.register(&id(i), instance(i, now), ttl).await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                eprint!("\rload: {} of {n} registered", next.load(Ordering::Relaxed).min(n));
                let _ = std::io::stderr().flush();
            }
        }
    }
    let load_time = started.elapsed();
    eprintln!();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} registrations failed");
    }
    // Every copy in place.
    let http = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let want = n * args.copies;
    let placed_since = Instant::now();
    loop {
        let held: u64 = args
            .admins
            .iter()
            .map(|a| table_values(&http, a).unwrap_or(0))
            .sum();
        if held >= want {
            break;
        }
        if placed_since.elapsed() > PLACED_TIMEOUT {
            bail!("only {held} of {want} copies after {PLACED_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "load: {n} instances in {:.1} s ({:.0} registrations/s), every copy placed {:.1} s later",
        load_time.as_secs_f64(),
        n as f64 / load_time.as_secs_f64(),
        placed_since.elapsed().as_secs_f64()
    );
    println!(
        "{:<14} {:>10} {:>10} {:>9} {:>9} {:>9}  ERRORS",
        "PHASE", "OK", "OPS/S", "P50 MS", "P99 MS", "MAX MS"
    );
    let clients: Vec<DirClient> = dirs.iter().take(args.clients as usize).cloned().collect();
    for op in ["renew", "update", "search", "search_range"] {
        let skipped = args.skip.iter().any(|s| op.starts_with(s.as_str()));
        if skipped {
            continue;
        }
        let (p, elapsed) = closed_loop(&clients, args.duration, n, op).await;
        println!(
            "{:<14} {:>10} {:>10.0} {:>9} {:>9} {:>9}  {}{}",
            op,
            p.hist.count(),
            p.hist.count() as f64 / elapsed.as_secs_f64(),
            ms(p.hist.percentile(50.0)),
            ms(p.hist.percentile(99.0)),
            ms(p.hist.max()),
            p.errors,
            p.first_error
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
