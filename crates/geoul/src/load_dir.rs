//! `geoul load dir`: game-server lifecycles and spectator searches against a
//! running cluster's instance directory — bounded in instances and time,
//! with a progress line and a final table of ops/s, p50/p99 per operation
//! and errors by kind.
//!
//! Owns: the lifecycle model ([`DirLoadArgs`]) and the spectators' queries.
//! Does not own: the directory or reaching the cluster (`cluster_client`);
//! the tallies and the table are `load`'s.
//!
//! Each simulated game server is one task: it registers its instance in
//! `lobby`, renews it every third of its TTL, moves it to `playing` after
//! a tenth of its lifetime and to `ending` near the end, changes its player
//! and spectator counts at `--updates-per-min`, then removes it and
//! registers a new instance (a new id). Instances' lifetimes are
//! exponential with mean `--lifetime`; their starts are spread over
//! `--ramp`. Spectators search at `--searches-per-s` in total, each search
//! one of the spectator queries below with a random mode and region.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use geoul_dir::{DirClient, DirError, InstanceSpec, InstanceState, InstanceUpdate, DIR};
use rand::{Rng, SeedableRng};

use crate::cli::ClusterArgs;
use crate::cluster_client::{connect_client, load_secret, parse_duration, targets};
use crate::load::{call_kind, exp_delay, progress, render, Recorder};
use crate::Failure;

/// Most game servers one run simulates.
pub const INSTANCES_MAX: u32 = 1_000_000;
/// Longest run.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Most searches per second one run sends.
pub const SEARCHES_MAX: f64 = 100_000.0;
/// Game servers sharing one `ServiceRef`.
const SERVERS_PER_REF: u32 = 64;
/// Tasks sending the spectators' searches.
const SEARCHERS: u32 = 32;

const MODES: [&str; 3] = ["ranked", "casual", "coop"];
const REGIONS: [&str; 4] = ["eu", "na", "asia", "sa"];

/// `geoul load dir`.
#[derive(Args, Debug)]
pub struct DirLoadArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Simulated game servers, each with one live instance at a time.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=i64::from(INSTANCES_MAX)))]
    pub instances: u32,
    /// Length of the run, e.g. 30s, 5m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// TTL of each instance; renewed every third of it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Player/spectator count changes per instance per minute.
    #[arg(long, default_value_t = 6.0)]
    pub updates_per_min: f64,
    /// Mean lifetime of an instance (lobby → playing → ending → removed).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub lifetime: Duration,
    /// Spectator searches per second, in total.
    #[arg(long, default_value_t = 50.0)]
    pub searches_per_s: f64,
    /// Instances' first registrations are spread over this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Instance id prefix; default: a random one, so runs never collide.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Deadline per call.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn kind(e: &DirError) -> String {
    match e {
        DirError::Denied(d) => d.kind().into(),
        DirError::Call(c) => call_kind(&c.to_string()),
        DirError::Unexpected(_) => "unexpected".into(),
    }
}

struct Model {
    ttl: Duration,
    update_every: Duration,
    lifetime: Duration,
    ramp: Duration,
}

fn spec(rng: &mut impl Rng, server: u32) -> InstanceSpec {
    let max_players = [2, 4, 8, 10, 16][rng.random_range(0..5)];
    InstanceSpec {
        addr: format!(
            "10.{}.{}.{}:7777",
            server >> 16,
            (server >> 8) & 255,
            server & 255
        ),
        mode: MODES[rng.random_range(0..MODES.len())].into(),
        region: REGIONS[rng.random_range(0..REGIONS.len())].into(),
        map: Some(format!("map-{}", rng.random_range(0..12))),
        players: rng.random_range(0..=max_players / 2),
        max_players,
        spectators: 0,
        state: InstanceState::Lobby,
        rating: Some(f64::from(rng.random_range(800..2400u32))),
        started_at: None,
        tags: Default::default(),
    }
}

/// One game server: instance after instance until the run stops.
async fn game_server(
    run: Arc<Recorder>,
    dir: DirClient,
    prefix: String,
    server: u32,
    m: Arc<Model>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(server));
    tokio::time::sleep(m.ramp.mul_f64(rng.random_range(0.0..1.0))).await;
    let mut generation = 0u32;
    while !run.stopping() {
        generation += 1;
        let id = format!("{prefix}-{server:07}-{generation}");
        let s = spec(&mut rng, server);
        let max = s.max_players;
        let registered = run
            .timed("register", kind, dir.register(&id, s, Some(m.ttl)))
            .await;
        if registered.is_none() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let born = Instant::now();
        let life = exp_delay(&mut rng, m.lifetime);
        let mut renew_at = born + m.ttl / 3;
        let mut update_at = born + exp_delay(&mut rng, m.update_every);
        let mut state = InstanceState::Lobby;
        while !run.stopping() && born.elapsed() < life {
            let next = renew_at.min(update_at);
            tokio::time::sleep_until(next.into()).await;
            if run.stopping() {
                return;
            }
            let now = Instant::now();
            if now >= renew_at {
                renew_at = now + m.ttl / 3;
                run.timed("renew", kind, dir.renew(&id)).await;
            }
            if now >= update_at {
                update_at = now + exp_delay(&mut rng, m.update_every);
                let age = born.elapsed().as_secs_f64() / life.as_secs_f64().max(1e-9);
                let want = if age < 0.1 {
                    InstanceState::Lobby
                } else if age < 0.9 {
                    InstanceState::Playing
                } else {
                    InstanceState::Ending
                };
                let changes = InstanceUpdate {
                    players: Some(rng.random_range(0..=max)),
                    spectators: Some(rng.random_range(0..200)),
                    state: (want != state).then_some(want),
                    ..InstanceUpdate::default()
                };
                state = want;
                run.timed("update", kind, dir.update(&id, changes)).await;
            }
        }
        run.timed("remove", kind, dir.remove(&id)).await;
    }
}

/// Spectators: searches at `every` on average, each a random one of the
/// spectator queries.
async fn spectator(run: Arc<Recorder>, dir: DirClient, seed: u64, every: Duration) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while !run.stopping() {
        tokio::time::sleep(exp_delay(&mut rng, every)).await;
        let mode = MODES[rng.random_range(0..MODES.len())];
        let region = REGIONS[rng.random_range(0..REGIONS.len())];
        let (op, query) = if rng.random_bool(0.8) {
            (
                "search",
                format!(
                    "mode = \"{mode}\" and region = \"{region}\" and state = \"playing\" \
                     and spectators < 50 order by rating desc limit 20"
                ),
            )
        } else {
            let lo = rng.random_range(800..2200);
            (
                "search_rng",
                format!(
                    "rating >= {lo} and rating < {} order by rating desc limit 20",
                    lo + 200
                ),
            )
        };
        run.timed(op, kind, dir.search(&query, None)).await;
    }
}

fn check(args: &DirLoadArgs) -> Result<(), Failure> {
    let usage = |m: &str| Err(Failure::Usage(m.into()));
    if args.duration.is_zero() || args.duration > DURATION_MAX {
        return usage("--duration: must be between 1s and 1h");
    }
    if args.ttl < Duration::from_secs(1) || args.ttl > Duration::from_secs(3600) {
        return usage("--ttl: must be between 1s and 1h");
    }
    if !(args.updates_per_min > 0.0 && args.updates_per_min <= 6000.0) {
        return usage("--updates-per-min: must be in (0, 6000]");
    }
    if !(args.searches_per_s >= 0.0 && args.searches_per_s <= SEARCHES_MAX) {
        return usage("--searches-per-s: must be in [0, 100000]");
    }
    if args.lifetime < Duration::from_secs(1) {
        return usage("--lifetime: at least 1s");
    }
    if args
        .prefix
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > 40)
    {
        return usage("--prefix: 1-40 characters");
    }
    Ok(())
}

pub fn run(args: DirLoadArgs) -> Result<(), Failure> {
    check(&args)?;
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("load{:06x}", rand::rng().random_range(0..0xff_ffff)));
    let targets = targets(&args.cluster)?;
    let secret = load_secret(&args.cluster)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (tally, elapsed) = runtime.block_on(async {
        let client = connect_client(&targets, &secret).await?;
        let refs: Vec<DirClient> = (0..args.instances.div_ceil(SERVERS_PER_REF))
            .map(|_| DirClient::new(client.service(DIR)).with_timeout(args.timeout))
            .collect();
        let run = Arc::new(Recorder::default());
        let model = Arc::new(Model {
            ttl: args.ttl,
            update_every: Duration::from_secs_f64(60.0 / args.updates_per_min),
            lifetime: args.lifetime,
            ramp: args.ramp.min(args.duration),
        });
        let mut tasks = tokio::task::JoinSet::new();
        for server in 0..args.instances {
            let dir = refs[(server / SERVERS_PER_REF) as usize].clone();
            tasks.spawn(game_server(
                run.clone(),
                dir,
                prefix.clone(),
                server,
                model.clone(),
            ));
        }
        if args.searches_per_s > 0.0 {
            let every = Duration::from_secs_f64(f64::from(SEARCHERS) / args.searches_per_s);
            for s in 0..SEARCHERS {
                let dir = DirClient::new(client.service(DIR)).with_timeout(args.timeout);
                tasks.spawn(spectator(run.clone(), dir, u64::from(s) + 1_000_000, every));
            }
        }
        let started = Instant::now();
        while started.elapsed() < args.duration {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let f = started.elapsed().as_secs_f64() / args.duration.as_secs_f64();
            progress("instances", &run, started, f);
        }
        run.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let drain = tokio::time::timeout(args.timeout * 2, async {
            while tasks.join_next().await.is_some() {}
        });
        let _ = drain.await;
        tasks.abort_all();
        eprintln!();
        Ok::<_, Failure>((run.take(), started.elapsed()))
    })?;
    let title = format!(
        "geoul load dir: {} game servers ({prefix}-*), {:.0} s, ttl {:?}, {} updates/min each, {} searches/s",
        args.instances,
        elapsed.as_secs_f64(),
        args.ttl,
        args.updates_per_min,
        args.searches_per_s
    );
    println!("{}", render(&title, &tally, elapsed, &[]));
    Ok(())
}
