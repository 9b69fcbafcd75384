//! The CPU hog (busy threads in the bench process) and the false-alarm counter.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Ctx;

/// Poll interval of every node during the CPU hog.
const HOG_POLL: Duration = Duration::from_millis(50);

/// Busy-looping threads, stopped and joined on drop.
pub struct CpuHog {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// One hog thread per core the process may use.
pub fn threads_per_core() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl CpuHog {
    /// Starts `threads` threads that spin until the hog is dropped.
    pub fn start(threads: usize) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut hog = CpuHog {
            stop: stop.clone(),
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let stop = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!("cpu-hog-{i}"))
                .spawn(move || spin(&stop))
                .context("starting a CPU hog thread")?;
            hog.threads.push(handle);
        }
        Ok(hog)
    }
}

/// Runs a CPU hog (one busy thread per core) for `--hog-seconds` and calls
/// `round` about every 50 ms meanwhile. Returns the number of hog threads.
pub fn with_hog(ctx: &Ctx, mut round: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<usize> {
    let threads = threads_per_core();
    let _hog = CpuHog::start(threads)?;
    let end = Instant::now() + Duration::from_secs(ctx.args.hog_seconds);
    while Instant::now() < end {
        ctx.check_stop()?;
        let tick = Instant::now();
        round()?;
        std::thread::sleep(HOG_POLL.saturating_sub(tick.elapsed()));
    }
    Ok(threads)
}

fn spin(stop: &AtomicBool) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.rotate_left(5) ^ x.wrapping_mul(31));
        }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Counts episodes of a condition per subject: a subject seen (by anyone) in a
/// poll round after a round in which nobody saw it starts a new episode.
#[derive(Debug, Default)]
pub struct Episodes {
    active: HashSet<String>,
    count: u64,
    subjects: BTreeSet<String>,
}

impl Episodes {
    /// Feeds the subjects seen in one poll round.
    pub fn observe(&mut self, seen: HashSet<String>) {
        for s in seen.difference(&self.active) {
            self.count += 1;
            self.subjects.insert(s.clone());
        }
        self.active = seen;
    }

    /// Episodes so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Every subject that had at least one episode.
    pub fn subjects(&self) -> Vec<String> {
        self.subjects.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_condition_lasting_several_rounds_is_one_episode() {
        let mut e = Episodes::default();
        e.observe(set(&["a"]));
        e.observe(set(&["a"]));
        e.observe(set(&["a", "b"]));
        assert_eq!(e.count(), 2);
        assert_eq!(e.subjects(), vec!["a", "b"]);
    }

    #[test]
    fn a_condition_that_clears_and_returns_is_two_episodes() {
        let mut e = Episodes::default();
        e.observe(set(&["a"]));
        e.observe(set(&[]));
        e.observe(set(&["a"]));
        assert_eq!(e.count(), 2);
        assert_eq!(e.subjects(), vec!["a"]);
    }

    #[test]
    fn nothing_seen_is_no_episode() {
        let mut e = Episodes::default();
        e.observe(set(&[]));
        assert_eq!(e.count(), 0);
        assert!(e.subjects().is_empty());
    }

    #[test]
    fn hog_threads_stop_on_drop() {
        let hog = CpuHog::start(2).expect("threads start");
        drop(hog);
        assert!(threads_per_core() >= 1);
    }
}
