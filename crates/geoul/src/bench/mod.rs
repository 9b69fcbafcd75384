//! `geoul bench`: benchmarks that start their peer system in the same run.
//!
//! `detect` measures crash detection of a local geoul cluster (kill -9 until every
//! survivor reports the node dead; false alarms under a CPU hog) and the same for
//! Redis Cluster, and prints both side by side. Every child process is killed when
//! the benchmark ends, fails, panics or is interrupted (and with the benchmark
//! process itself, via `PR_SET_PDEATHSIG`); everything binds loopback only.
//!
//! `sync` measures full sync to a new node against a Redis full resync, and
//! catch-up after a restart (see `sync.rs`).
//!
//! `kv` measures kv throughput and latency of a local 3-node cluster against a
//! Redis primary with one replica, and memory per key of both (see `kv.rs`).
//!
//! `call` measures what a `ServiceRef` and its session guarantees cost over a
//! raw kv call on the same cluster (see `call.rs`); `query` measures
//! distributed query latency on a cluster loaded with indexed documents (see
//! `query.rs`). Neither has a peer system: their ratios are within geoul.
//!
//! `dir` measures the instance directory of a running cluster (load, memory,
//! renewals, updates, spectator searches); `scripts/bench-dir.sh` runs it
//! with `All` and `Factor(2)` and the same data and queries on PostgreSQL.

mod admin;
mod call;
mod call_drivers;
mod detect;
pub(crate) mod dir;
mod hog;
mod kv;
mod kv_geoul;
pub(crate) mod kv_hist;
mod kv_load;
mod kv_memory;
mod kv_redis;
mod kv_render;
mod kv_report;
mod kv_resp;
mod query;
mod query_cluster;
mod query_docs;
mod redis;
mod redis_detect;
mod report;
mod resp;
mod stats;
mod sync;
mod watch;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::cli::{BenchArgs, BenchCommand, DetectArgs};
use crate::local_cluster::install_stop_flag;
use crate::Failure;

use self::redis::Peer;
use self::report::{PeerOutcome, Report};

/// How often bounded waits re-check their condition.
const WAIT_POLL: Duration = Duration::from_millis(50);

pub fn run(args: BenchArgs) -> Result<(), Failure> {
    match args.command {
        BenchCommand::Detect(args) => run_detect(args),
        BenchCommand::Kv(args) => kv::run(args),
        BenchCommand::Sync(args) => sync::run(args),
        BenchCommand::Call(args) => call::run(args),
        BenchCommand::Query(args) => query::run(args),
        BenchCommand::Dir(args) => dir::run(args),
    }
}

/// What every phase of one benchmark run shares; `A` is the benchmark's
/// arguments (`detect` by default, `kv` in `bench::kv`).
pub struct Ctx<A = DetectArgs> {
    pub args: A,
    /// The run's temporary directory (logs, data, configs).
    pub dir: PathBuf,
    stop: Arc<AtomicBool>,
    /// Whether stderr is a terminal (progress bars instead of lines).
    tty: bool,
}

impl<A> Ctx<A> {
    /// A context for one run.
    pub fn new(args: A, dir: PathBuf, stop: Arc<AtomicBool>) -> Self {
        use std::io::IsTerminal;
        Self {
            args,
            dir,
            stop,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A failed run as the user sees it: the reason (or "interrupted") and
    /// where the logs were kept.
    pub fn failure(&self, e: anyhow::Error) -> Failure {
        let why = if self.stopped() {
            "interrupted".to_string()
        } else {
            format!("{e:#}")
        };
        Failure::Runtime(format!("{why}; logs kept in {}", self.dir.display()))
    }

    /// The flag SIGINT/SIGTERM raise.
    pub fn stop_flag(&self) -> &Arc<AtomicBool> {
        &self.stop
    }

    /// Whether stderr is a terminal.
    pub fn tty(&self) -> bool {
        self.tty
    }

    /// Fails once SIGINT or SIGTERM has arrived.
    pub fn check_stop(&self) -> anyhow::Result<()> {
        if self.stopped() {
            bail!("interrupted");
        }
        Ok(())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One progress line (stderr, so that `--json` output stays clean).
    pub fn progress(&self, line: &str) {
        eprintln!("{line}");
    }
}

fn run_detect(args: DetectArgs) -> Result<(), Failure> {
    let peer = redis::resolve(&args)?;
    let planned = detect::plan_ports(&args)?;
    let stop = install_stop_flag()?;
    let dir = make_run_dir()?;
    let ctx = Ctx::new(args, dir, stop);
    ctx.progress(&format!("bench detect: working in {}", ctx.dir.display()));
    let report = measure(&ctx, planned, peer).map_err(|e| ctx.failure(e))?;
    let peer_failed = matches!(report.redis, PeerOutcome::Failed { .. });
    let keep = ctx.args.keep_logs || peer_failed;
    if !keep {
        if let Err(e) = std::fs::remove_dir_all(&ctx.dir) {
            ctx.progress(&format!("could not remove {}: {e}", ctx.dir.display()));
        }
    }
    print_report(&ctx, &report, keep)?;
    if peer_failed {
        return Err(Failure::Runtime(format!(
            "the Redis Cluster side failed; logs kept in {}",
            ctx.dir.display()
        )));
    }
    Ok(())
}

fn measure(
    ctx: &Ctx,
    planned: Vec<crate::local_cluster::Planned>,
    peer: Peer,
) -> anyhow::Result<Report> {
    let geoul = detect::run(ctx, planned)?;
    let redis = match peer {
        Peer::Skipped(reason) => PeerOutcome::Skipped { reason },
        Peer::Available(bins) => match redis_detect::run(ctx, &bins) {
            Ok(result) => PeerOutcome::Measured(Box::new(result)),
            Err(e) if ctx.stopped() => return Err(e),
            Err(e) => {
                ctx.progress(&format!("redis: failed: {e:#}"));
                PeerOutcome::Failed {
                    error: format!("{e:#}"),
                }
            }
        },
    };
    Ok(Report::new(&ctx.args, geoul, redis))
}

fn print_report(ctx: &Ctx, report: &Report, kept: bool) -> Result<(), Failure> {
    if ctx.args.json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", report::render(report));
        let what = if kept { "kept" } else { "removed" };
        println!("logs: {} ({what})", ctx.dir.display());
    }
    Ok(())
}

fn make_run_dir() -> Result<PathBuf, Failure> {
    let name = format!(
        "geoul-bench-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir(&dir)
        .map_err(|e| Failure::Runtime(format!("creating {}: {e}", dir.display())))?;
    Ok(dir)
}

/// A `Failure` from shared code, as an error of this module.
pub fn failure(f: Failure) -> anyhow::Error {
    match f {
        Failure::Usage(m) | Failure::Runtime(m) => anyhow!(m),
    }
}

/// Waits until `ready` is true, at most `timeout`; an error from `ready` ends the
/// wait at once. Returns how long it took.
pub fn wait_until<A>(
    ctx: &Ctx<A>,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        ctx.check_stop()?;
        if ready()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Makes the child get SIGKILL when the benchmark exits, even by SIGKILL.
pub fn die_with_parent(cmd: &mut Command) {
    crate::local_cluster::signal_on_parent_death(cmd, libc::SIGKILL);
}

/// A child process killed (SIGKILL) and reaped on drop if still running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
