//! The closed-loop load generator of `bench kv`, shared by both systems: N client
//! tasks, each with its own connection and exactly one request in flight, keys
//! `key:%012d` drawn uniformly from the key space (or each key once, for the
//! memory load), every request's latency in a [`Histogram`], a progress line.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

use super::kv_hist::Histogram;

/// A client stops after this many failed requests (its connection is likely
/// gone); the phase reports the errors.
const MAX_CLIENT_ERRORS: u64 = 100;
/// How often the progress line is refreshed.
const TICK: Duration = Duration::from_secs(1);
/// Width of the progress bar in characters.
const BAR: usize = 24;

/// What each request of a phase does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A write acknowledged by two copies: geoul `Ack::Quorum` with 2 replicas,
    /// Redis `SET` + `WAIT 1`.
    SetReplicated,
    /// A write acknowledged by one copy: geoul `Ack::One`, Redis plain `SET`.
    SetOne,
    /// A read of one copy.
    Get,
}

/// One connection of one system.
pub trait Driver: Send + 'static {
    /// Sends one request for `key` and waits for its answer: `Ok(true)` when a
    /// write was acknowledged or a read found the key, `Ok(false)` for a miss.
    fn call(&mut self, op: Op, key: &str) -> impl Future<Output = anyhow::Result<bool>> + Send;
}

/// How much a phase does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Every client sends requests until this much time has passed.
    Timed(Duration),
    /// Every client sends this many requests.
    PerClient(u64),
    /// Keys `0..n` are written once each, shared among the clients.
    LoadAll(u64),
    /// Keys `from..to` are written once each, shared among the clients.
    LoadRange(u64, u64),
}

/// One measured phase.
#[derive(Clone, Debug)]
pub struct Phase {
    /// Shown in the progress line, e.g. `geoul SET ack=quorum`.
    pub label: String,
    pub op: Op,
    pub work: Work,
    /// Keys of the timed phases are drawn from `0..keys`.
    pub keys: u64,
}

/// What a phase measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Requests answered successfully (their latencies are in `hist`).
    pub ok: u64,
    /// Successful reads that found their key (writes count as found).
    pub found: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    pub hist: Histogram,
}

impl Outcome {
    pub fn ops_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

/// The key of index `i`, as both systems store it (16 bytes, like
/// `redis-benchmark`'s `key:__rand_int__`).
pub fn key_name(out: &mut String, i: u64) {
    out.clear();
    // Writing to a String cannot fail.
    let _ = write!(out, "key:{i:012}");
}

/// One progress line: label, bar (when the end is known), requests, rate.
pub fn progress_line(label: &str, done: u64, elapsed: Duration, fraction: Option<f64>) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let bar = match fraction {
        Some(f) => {
            let f = f.clamp(0.0, 1.0);
            let filled = ((f * BAR as f64).round() as usize).min(BAR);
            format!(
                "[{}{}] {:>3.0}% ",
                "#".repeat(filled),
                "-".repeat(BAR - filled),
                f * 100.0
            )
        }
        None => String::new(),
    };
    format!("{label}: {bar}{done} requests in {secs:.1} s, {rate:.0} ops/s")
}

struct Shared {
    op: Op,
    work: Work,
    keys: u64,
    start: Instant,
    done: AtomicU64,
    next_key: AtomicU64,
    stop: Arc<AtomicBool>,
}

/// What one client counted.
struct Tally {
    ok: u64,
    found: u64,
    errors: u64,
    first_error: Option<String>,
    hist: Histogram,
    finished: Instant,
}

async fn client<D: Driver>(mut driver: D, shared: Arc<Shared>, seed: u64) -> (D, Tally) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut tally = Tally {
        ok: 0,
        found: 0,
        errors: 0,
        first_error: None,
        hist: Histogram::new(),
        finished: shared.start,
    };
    let mut key = String::with_capacity(24);
    let mut sent = 0;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let index = match shared.work {
            Work::Timed(d) if shared.start.elapsed() >= d => break,
            Work::PerClient(n) if sent >= n => break,
            Work::Timed(_) | Work::PerClient(_) => rng.random_range(0..shared.keys),
            Work::LoadAll(total) | Work::LoadRange(_, total) => {
                match shared.next_key.fetch_add(1, Ordering::Relaxed) {
                    i if i >= total => break,
                    i => i,
                }
            }
        };
        key_name(&mut key, index);
        sent += 1;
        let began = Instant::now();
        let result = driver.call(shared.op, &key).await;
        let took = began.elapsed();
        shared.done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(found) => {
                tally.hist.record(took);
                tally.ok += 1;
                tally.found += u64::from(found);
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("{e:#}"));
                if tally.errors >= MAX_CLIENT_ERRORS {
                    break;
                }
            }
        }
    }
    tally.finished = Instant::now();
    (driver, tally)
}

fn fraction(shared: &Shared, clients: usize, done: u64) -> Option<f64> {
    match shared.work {
        Work::Timed(d) => Some(shared.start.elapsed().as_secs_f64() / d.as_secs_f64()),
        Work::PerClient(n) => Some(done as f64 / (n as f64 * clients as f64)),
        Work::LoadAll(total) => Some(done as f64 / total.max(1) as f64),
        Work::LoadRange(from, to) => Some(done as f64 / to.saturating_sub(from).max(1) as f64),
    }
}

fn show(line: &str, tty: bool) {
    let mut err = std::io::stderr().lock();
    // Progress is best effort: a closed stderr must not end the benchmark.
    let _ = if tty {
        write!(err, "\r{line}\x1b[K")
    } else {
        writeln!(err, "{line}")
    };
    let _ = err.flush();
}

/// Runs `phase` on `drivers` (one task each) and gives the drivers back for the
/// next phase. Fails if interrupted or if no request succeeded.
pub async fn run<D: Driver>(
    drivers: Vec<D>,
    phase: &Phase,
    stop: &Arc<AtomicBool>,
    tty: bool,
) -> anyhow::Result<(Vec<D>, Outcome)> {
    let clients = drivers.len();
    let shared = Arc::new(Shared {
        op: phase.op,
        work: phase.work,
        keys: phase.keys.max(1),
        start: Instant::now(),
        done: AtomicU64::new(0),
        next_key: AtomicU64::new(match phase.work {
            Work::LoadRange(from, _) => from,
            _ => 0,
        }),
        stop: stop.clone(),
    });
    let mut set = JoinSet::new();
    for driver in drivers {
        set.spawn(client(driver, shared.clone(), rand::random()));
    }
    let mut back = Vec::with_capacity(clients);
    let mut outcome = Outcome {
        ok: 0,
        found: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        hist: Histogram::new(),
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    loop {
        tokio::select! {
            joined = set.join_next() => match joined {
                Some(Ok((driver, tally))) => {
                    back.push(driver);
                    outcome.ok += tally.ok;
                    outcome.found += tally.found;
                    outcome.errors += tally.errors;
                    if outcome.first_error.is_none() {
                        outcome.first_error = tally.first_error;
                    }
                    outcome.hist.merge(&tally.hist);
                    let ran = tally.finished.saturating_duration_since(shared.start);
                    outcome.elapsed = outcome.elapsed.max(ran);
                }
                Some(Err(e)) => bail!("{}: a client task failed: {e}", phase.label),
                None => break,
            },
            _ = ticker.tick() => {
                let done = shared.done.load(Ordering::Relaxed);
                let f = fraction(&shared, clients, done);
                show(&progress_line(&phase.label, done, shared.start.elapsed(), f), tty);
            }
        }
    }
    if tty {
        let done = shared.done.load(Ordering::Relaxed);
        let line = progress_line(&phase.label, done, outcome.elapsed, Some(1.0));
        show(&line, true);
        show("", false);
    }
    if stop.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    if outcome.ok == 0 {
        let why = outcome
            .first_error
            .as_deref()
            .unwrap_or("no request was sent");
        bail!("{}: no request succeeded: {why}", phase.label);
    }
    Ok((back, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_redis_benchmark_keys() {
        let mut k = String::new();
        key_name(&mut k, 42);
        assert_eq!(k, "key:000000000042");
        key_name(&mut k, 999_999);
        assert_eq!(k, "key:000000999999");
        assert_eq!(k.len(), 16);
    }

    #[test]
    fn progress_lines() {
        let line = progress_line("geoul SET", 5000, Duration::from_secs(2), Some(0.5));
        assert_eq!(
            line,
            "geoul SET: [############------------]  50% 5000 requests in 2.0 s, 2500 ops/s"
        );
        let line = progress_line("x", 0, Duration::ZERO, None);
        assert_eq!(line, "x: 0 requests in 0.0 s, 0 ops/s");
        let over = progress_line("x", 1, Duration::from_secs(1), Some(1.7));
        assert!(over.contains("[########################] 100%"), "{over}");
    }

    #[derive(Debug)]
    struct Fake {
        calls: u64,
        fail_every: u64,
    }

    impl Driver for Fake {
        fn call(&mut self, op: Op, key: &str) -> impl Future<Output = anyhow::Result<bool>> + Send {
            self.calls += 1;
            let fail = self.fail_every > 0 && self.calls.is_multiple_of(self.fail_every);
            let found = op != Op::Get || key.ends_with('0');
            async move {
                if fail {
                    bail!("fake failure");
                }
                Ok(found)
            }
        }
    }

    #[tokio::test]
    async fn per_client_work_counts_every_request() {
        let drivers: Vec<Fake> = (0..4)
            .map(|_| Fake {
                calls: 0,
                fail_every: 5,
            })
            .collect();
        let phase = Phase {
            label: "test".into(),
            op: Op::SetOne,
            work: Work::PerClient(10),
            keys: 100,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (back, out) = run(drivers, &phase, &stop, false).await.expect("runs");
        assert_eq!(back.len(), 4);
        assert_eq!(back.iter().map(|d| d.calls).sum::<u64>(), 40);
        assert_eq!((out.ok, out.errors, out.found), (32, 8, 32));
        assert_eq!(out.hist.count(), 32);
        assert_eq!(out.first_error.as_deref(), Some("fake failure"));
    }

    #[tokio::test]
    async fn load_all_writes_each_key_once() {
        let drivers: Vec<Fake> = (0..3)
            .map(|_| Fake {
                calls: 0,
                fail_every: 0,
            })
            .collect();
        let phase = Phase {
            label: "load".into(),
            op: Op::Get,
            work: Work::LoadAll(1000),
            keys: 1,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (_, out) = run(drivers, &phase, &stop, false).await.expect("runs");
        assert_eq!(out.ok, 1000);
        assert_eq!(out.found, 100, "keys ending in 0");
    }

    #[tokio::test]
    async fn a_stopped_phase_is_an_error() {
        let drivers = vec![Fake {
            calls: 0,
            fail_every: 0,
        }];
        let phase = Phase {
            label: "stopped".into(),
            op: Op::SetOne,
            work: Work::Timed(Duration::from_secs(60)),
            keys: 10,
        };
        let stop = Arc::new(AtomicBool::new(true));
        let err = run(drivers, &phase, &stop, false)
            .await
            .expect_err("stopped");
        assert!(err.to_string().contains("interrupted"), "{err}");
    }
}
