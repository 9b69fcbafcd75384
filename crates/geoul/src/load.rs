//! What the load generators share: per-operation latency histograms and
//! error tallies, the timed call, the progress line, memoryless delays and
//! the final table.
//!
//! Owns: [`Recorder`], [`Tally`], [`progress`], [`exp_delay`], [`render`],
//! [`call_kind`]. Does not own: any lifecycle (`load_auth`, `load_dir`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::bench::kv_hist::Histogram;

/// What one operation measured.
#[derive(Default)]
pub struct OpStats {
    pub hist: Histogram,
    pub errors: BTreeMap<String, u64>,
}

/// Every operation's numbers.
#[derive(Default)]
pub struct Tally {
    pub ops: BTreeMap<&'static str, OpStats>,
}

impl Tally {
    fn ok(&mut self, op: &'static str, took: Duration) {
        self.ops.entry(op).or_default().hist.record(took);
    }

    fn err(&mut self, op: &'static str, kind: String) {
        *self
            .ops
            .entry(op)
            .or_default()
            .errors
            .entry(kind)
            .or_default() += 1;
    }
}

/// A short name for a call failure (the table's error columns): the text
/// before its first `:` or `(`, words joined by `_`.
pub fn call_kind(text: &str) -> String {
    let head: String = text
        .split([':', '('])
        .next()
        .unwrap_or("call")
        .trim()
        .into();
    head.replace(' ', "_")
}

/// Counts and times the calls of a run; tells tasks when to stop.
#[derive(Default)]
pub struct Recorder {
    tally: Mutex<Tally>,
    pub done: AtomicU64,
    pub stop: AtomicBool,
}

impl Recorder {
    /// Runs `call`, recording its latency under `op` or its error under
    /// `kind(error)`.
    pub async fn timed<T, E>(
        &self,
        op: &'static str,
        kind: impl Fn(&E) -> String,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        self.done.fetch_add(1, Ordering::Relaxed);
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(v) => {
                tally.ok(op, took);
                Some(v)
            }
            Err(e) => {
                tally.err(op, kind(&e));
                None
            }
        }
    }

    /// Whether tasks should stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The numbers so far (and a fresh start).
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.tally.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Exponential delay with the given mean (memoryless arrivals), capped at
/// 20 means.
pub fn exp_delay(rng: &mut impl Rng, mean: Duration) -> Duration {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    mean.mul_f64(-u.ln()).min(mean * 20)
}

/// Rewrites the progress line on stderr.
pub fn progress(label: &str, run: &Recorder, started: Instant, fraction: f64) {
    let elapsed = started.elapsed().as_secs_f64();
    let done = run.done.load(Ordering::Relaxed);
    let filled = ((fraction.clamp(0.0, 1.0) * 24.0).round() as usize).min(24);
    let rate = if elapsed > 0.0 {
        done as f64 / elapsed
    } else {
        0.0
    };
    eprint!(
        "\r{label}: [{}{}] {done} ops in {elapsed:.0} s, {rate:.0} ops/s   ",
        "#".repeat(filled),
        "-".repeat(24 - filled)
    );
    let _ = std::io::stderr().flush();
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.2}", d.as_secs_f64() * 1000.0),
    )
}

/// The final table: ops, ops/s over `elapsed` (not for `untimed` ops, which
/// ran before the timed phase), p50/p99/max and errors by kind.
pub fn render(title: &str, tally: &Tally, elapsed: Duration, untimed: &[&str]) -> String {
    let mut out = format!("{title}\n");
    out.push_str(&format!(
        "{:<10} {:>10} {:>10} {:>9} {:>9} {:>9}  ERRORS\n",
        "OP", "OK", "OPS/S", "P50 MS", "P99 MS", "MAX MS"
    ));
    for (op, s) in &tally.ops {
        let rate = if untimed.contains(op) {
            "-".into()
        } else {
            format!(
                "{:.0}",
                s.hist.count() as f64 / elapsed.as_secs_f64().max(1e-9)
            )
        };
        let errors: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k}={n}")).collect();
        out.push_str(&format!(
            "{:<10} {:>10} {:>10} {:>9} {:>9} {:>9}  {}\n",
            op,
            s.hist.count(),
            rate,
            ms(s.hist.percentile(50.0)),
            ms(s.hist.percentile(99.0)),
            ms(s.hist.max()),
            if errors.is_empty() {
                "-".into()
            } else {
                errors.join(" ")
            }
        ));
    }
    out.trim_end().to_string()
}
