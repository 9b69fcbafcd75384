//! `geoul load auth`: player lifecycles against a running cluster's `auth`
//! service — register, log in, validate on every server move, refresh, log
//! out, log in again — bounded in players and time, with a progress line
//! and a final table of ops/s, p50/p99 per operation and errors by kind.
//!
//! Owns: the lifecycle model ([`AuthLoadArgs`]), per-operation latency and
//! error tallies, rendering. Does not own: the auth service or reaching the
//! cluster (`cluster_client`).
//!
//! Each simulated player is one task: it waits a random part of `--ramp`
//! (so first logins are spread), logs in, then moves between game
//! servers (one `validate` per move, moves spaced by an exponential delay
//! with mean `60 s / --moves-per-min`), refreshes its session every
//! `--refresh-every`, and after about `--session-length` logs out (revoke)
//! and logs in again. Players register first (argon2id costs the same as a
//! login; those calls are reported as `register`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use geoul_auth::{AuthClient, AuthError, AUTH};
use rand::{Rng, SeedableRng};

use crate::cli::ClusterArgs;
use crate::cluster_client::{connect_client, load_secret, parse_duration, targets};
use crate::load::{call_kind, exp_delay, progress, render, Recorder, Tally};
use crate::Failure;

/// Most players one run simulates.
pub const PLAYERS_MAX: u32 = 1_000_000;
/// Longest run.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 64;
/// Players sharing one `ServiceRef` (a game server's ref serves many).
const PLAYERS_PER_REF: u32 = 64;

/// `geoul load auth`.
#[derive(Args, Debug)]
pub struct AuthLoadArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Simulated players, all live at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=i64::from(PLAYERS_MAX)))]
    pub players: u32,
    /// Length of the lifecycle phase (after registration), e.g. 30s, 5m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Server moves (validations) per player per minute.
    #[arg(long, default_value_t = 60.0)]
    pub moves_per_min: f64,
    /// Refresh each session this often.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub refresh_every: Duration,
    /// Mean time between a login and its logout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub session_length: Duration,
    /// Players' first logins are spread evenly over this long (players do
    /// not all arrive in the same instant); 0s starts them all at once.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ramp: Duration,
    /// Username prefix (players are PREFIX-0000001…); default: a random one,
    /// so runs never collide.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Deadline per call.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// A short name for an error kind (the table's columns).
fn kind(e: &AuthError) -> String {
    match e {
        AuthError::Denied(d) => d.kind().into(),
        AuthError::Call(c) => call_kind(&c.to_string()),
        AuthError::Unexpected(_) => "unexpected".into(),
    }
}

type Run = Recorder;

/// `Recorder::timed` with auth's error kinds.
async fn timed<T>(
    run: &Run,
    op: &'static str,
    call: impl std::future::Future<Output = Result<T, AuthError>>,
) -> Option<T> {
    run.timed(op, kind, call).await
}

fn password(i: u32) -> String {
    format!("load-password-{i}-correct-horse")
}

async fn player(run: Arc<Run>, auth: AuthClient, name: String, i: u32, args: Arc<Lifecycle>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(i));
    let pw = password(i);
    tokio::time::sleep(args.ramp.mul_f64(rng.random_range(0.0..1.0))).await;
    while !run.stop.load(Ordering::Relaxed) {
        let Some(mut tokens) = timed(&run, "login", auth.login(&name, &pw, None)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let logout_at = Instant::now() + exp_delay(&mut rng, args.session_length);
        let mut refresh_at = Instant::now() + args.refresh_every;
        while !run.stop.load(Ordering::Relaxed) && Instant::now() < logout_at {
            tokio::time::sleep(exp_delay(&mut rng, args.move_every)).await;
            if run.stop.load(Ordering::Relaxed) {
                return;
            }
            timed(&run, "validate", auth.validate(&tokens.token)).await;
            if Instant::now() >= refresh_at {
                refresh_at = Instant::now() + args.refresh_every;
                if let Some(next) =
                    timed(&run, "refresh", auth.refresh(&tokens.refresh_token)).await
                {
                    tokens = next;
                }
            }
        }
        timed(&run, "logout", auth.revoke(&tokens.token)).await;
    }
}

struct Lifecycle {
    ramp: Duration,
    move_every: Duration,
    refresh_every: Duration,
    session_length: Duration,
}

pub fn run(args: AuthLoadArgs) -> Result<(), Failure> {
    if args.duration.is_zero() || args.duration > DURATION_MAX {
        return Err(Failure::Usage(
            "--duration: must be between 1s and 1h".into(),
        ));
    }
    if !(args.moves_per_min > 0.0 && args.moves_per_min <= 60_000.0) {
        return Err(Failure::Usage(
            "--moves-per-min: must be in (0, 60000]".into(),
        ));
    }
    let prefix = match &args.prefix {
        Some(p) if p.is_empty() || p.len() > 20 => {
            return Err(Failure::Usage("--prefix: 1-20 characters".into()))
        }
        Some(p) => p.clone(),
        None => format!("load{:06x}", rand::rng().random_range(0..0xff_ffff)),
    };
    let targets = targets(&args.cluster)?;
    let secret = load_secret(&args.cluster)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let tally = runtime.block_on(async {
        let client = connect_client(&targets, &secret).await?;
        let refs: Vec<AuthClient> = (0..args.players.div_ceil(PLAYERS_PER_REF))
            .map(|_| AuthClient::new(client.service(AUTH)).with_timeout(args.timeout))
            .collect();
        let auth_of = |i: u32| refs[(i / PLAYERS_PER_REF) as usize].clone();
        let name = |i: u32| format!("{prefix}-{i:07}");
        let run = Arc::new(Run::default());
        // Registration, bounded concurrency.
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        // Players whose registration failed have no account: they sit out
        // (their logins would only measure "invalid credentials").
        let registered: Arc<Vec<AtomicBool>> =
            Arc::new((0..args.players).map(|_| AtomicBool::new(false)).collect());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..REGISTER_CONCURRENCY.min(args.players as usize) {
            let (run, next, refs) = (run.clone(), next.clone(), refs.clone());
            let registered = registered.clone();
            let prefix = prefix.clone();
            let players = args.players;
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Ok(i) = u32::try_from(i) else { return };
                    if i >= players {
                        return;
                    }
                    let auth = &refs[(i / PLAYERS_PER_REF) as usize];
                    let name = format!("{prefix}-{i:07}");
                    if timed(&run, "register", auth.register(&name, &password(i)))
                        .await
                        .is_some()
                    {
                        registered[i as usize].store(true, Ordering::Relaxed);
                    }
                }
            });
        }
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let f = next.load(Ordering::Relaxed) as f64 / f64::from(args.players);
                    progress("register", &run, started, f);
                }
            }
        }
        progress("register", &run, started, 1.0);
        eprintln!();
        // Lifecycles.
        let lifecycle = Arc::new(Lifecycle {
            ramp: args.ramp.min(args.duration),
            move_every: Duration::from_secs_f64(60.0 / args.moves_per_min),
            refresh_every: args.refresh_every,
            session_length: args.session_length,
        });
        run.done.store(0, Ordering::Relaxed);
        let started = Instant::now();
        for i in (0..args.players).filter(|i| registered[*i as usize].load(Ordering::Relaxed)) {
            tasks.spawn(player(
                run.clone(),
                auth_of(i),
                name(i),
                i,
                lifecycle.clone(),
            ));
        }
        while started.elapsed() < args.duration {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let f = started.elapsed().as_secs_f64() / args.duration.as_secs_f64();
            progress("players", &run, started, f);
        }
        run.stop.store(true, Ordering::Relaxed);
        // Calls in flight finish within their deadline; then stop waiting.
        let drain = tokio::time::timeout(args.timeout * 2, async {
            while tasks.join_next().await.is_some() {}
        });
        let _ = drain.await;
        tasks.abort_all();
        eprintln!();
        let elapsed = started.elapsed();
        let tally = run.take();
        Ok::<_, Failure>((tally, elapsed))
    })?;
    println!("{}", render_auth(&tally.0, tally.1, &args, &prefix));
    Ok(())
}

fn render_auth(tally: &Tally, elapsed: Duration, args: &AuthLoadArgs, prefix: &str) -> String {
    let title = format!(
        "geoul load auth: {} players ({prefix}-*), {:.0} s, {} moves/min per player",
        args.players,
        elapsed.as_secs_f64(),
        args.moves_per_min
    );
    render(&title, tally, elapsed, &["register"])
}
