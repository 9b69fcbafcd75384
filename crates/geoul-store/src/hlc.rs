//! Hybrid logical clock: timestamps that follow wall time, never go backwards on
//! one node, and move past every timestamp the node has seen from others.
//!
//! Owns: [`Timestamp`] (48 bits of Unix milliseconds, 16 bits of logical counter),
//! the [`Clock`] seam (wall time is injected, so tests and the simulator control
//! it), and [`Hlc`] with its bound on how far ahead a peer may be.
//! Does not own: versions (see `version`), or persisting a ceiling across restarts.
//!
//! A remote timestamp more than `max_offset` ahead of the local wall clock is
//! refused and counted (DESIGN.md §13, "clocks"): accepting it would drag this
//! node's clock forward with it and let one fast clock make its writes and
//! tombstones win every conflict until real time catches up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Bits of the logical counter. 65 536 timestamps per millisecond per node before
/// the counter borrows from the physical part (which keeps order anyway).
const LOGICAL_BITS: u32 = 16;

/// Default tolerated clock offset between nodes: NTP keeps LAN clocks within a
/// few ms; 500 ms tolerates a badly synced host without letting it dominate.
pub const MAX_OFFSET_DEFAULT: Duration = Duration::from_millis(500);

/// A hybrid logical timestamp. Ordered; `Timestamp::ZERO` precedes every real one.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Before every real timestamp.
    pub const ZERO: Timestamp = Timestamp(0);

    /// From Unix milliseconds and a logical counter.
    pub fn from_parts(unix_ms: u64, logical: u16) -> Self {
        Self((unix_ms << LOGICAL_BITS) | u64::from(logical))
    }

    /// From the raw 64-bit form (wire, disk).
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit form.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The wall-clock part, Unix milliseconds.
    pub fn unix_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter.
    pub fn logical(self) -> u16 {
        (self.0 & ((1 << LOGICAL_BITS) - 1)) as u16
    }
}

/// Wall time, injected. Production uses [`SystemClock`]; tests use [`ManualClock`].
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn unix_ms(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `unix_ms`.
    pub fn new(unix_ms: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(unix_ms)))
    }

    /// Sets the reading.
    pub fn set(&self, unix_ms: u64) {
        self.0.store(unix_ms, Ordering::SeqCst);
    }

    /// Moves the reading forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn unix_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A remote timestamp this node refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("remote clock is {ahead_ms} ms ahead of ours (at most {max_ms} ms tolerated)")]
pub struct ClockSkewError {
    /// How far ahead of local wall time.
    pub ahead_ms: u64,
    /// The tolerated offset.
    pub max_ms: u64,
}

/// A hybrid logical clock. Thread-safe; cheap to share behind an `Arc`.
pub struct Hlc {
    clock: Arc<dyn Clock>,
    last: AtomicU64,
    max_offset_ms: u64,
    refused: AtomicU64,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hlc")
            .field("last", &Timestamp(self.last.load(Ordering::Relaxed)))
            .field("max_offset_ms", &self.max_offset_ms)
            .finish()
    }
}

impl Hlc {
    /// A clock over `clock` that refuses remote timestamps more than `max_offset`
    /// ahead and never issues a timestamp at or below `floor`.
    pub fn new(clock: Arc<dyn Clock>, max_offset: Duration, floor: Timestamp) -> Self {
        Self {
            clock,
            last: AtomicU64::new(floor.raw()),
            max_offset_ms: u64::try_from(max_offset.as_millis()).unwrap_or(u64::MAX),
            refused: AtomicU64::new(0),
        }
    }

    /// A new timestamp, strictly greater than every one issued or observed before.
    pub fn now(&self) -> Timestamp {
        let physical = Timestamp::from_parts(self.clock.unix_ms(), 0).raw();
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let next = physical.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Timestamp(next),
                Err(current) => last = current,
            }
        }
    }

    /// Takes a timestamp seen from another node into account, so the next local
    /// timestamp is greater. Refuses (and counts) one too far ahead of wall time.
    pub fn observe(&self, remote: Timestamp) -> Result<(), ClockSkewError> {
        self.check(remote)?;
        self.last.fetch_max(remote.raw(), Ordering::AcqRel);
        Ok(())
    }

    /// Whether `remote` is within the tolerated offset, without observing it.
    pub fn check(&self, remote: Timestamp) -> Result<(), ClockSkewError> {
        let wall = self.clock.unix_ms();
        let ahead_ms = remote.unix_ms().saturating_sub(wall);
        if ahead_ms > self.max_offset_ms {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ClockSkewError {
                ahead_ms,
                max_ms: self.max_offset_ms,
            });
        }
        Ok(())
    }

    /// Wall time now, Unix milliseconds (for expiry decisions).
    pub fn wall_ms(&self) -> u64 {
        self.clock.unix_ms()
    }

    /// Remote timestamps refused so far (a metric).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The tolerated offset.
    pub fn max_offset(&self) -> Duration {
        Duration::from_millis(self.max_offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hlc(clock: &Arc<ManualClock>) -> Hlc {
        Hlc::new(clock.clone(), MAX_OFFSET_DEFAULT, Timestamp::ZERO)
    }

    #[test]
    fn follows_wall_time_and_never_goes_back() {
        let clock = ManualClock::new(1_000);
        let h = hlc(&clock);
        let a = h.now();
        assert_eq!(a, Timestamp::from_parts(1_000, 0));
        let b = h.now();
        assert_eq!(b, Timestamp::from_parts(1_000, 1));
        clock.set(500); // wall clock jumps back
        let c = h.now();
        assert!(c > b);
        clock.set(2_000);
        assert_eq!(h.now(), Timestamp::from_parts(2_000, 0));
    }

    #[test]
    fn moves_past_observed_timestamps_within_the_bound() {
        let clock = ManualClock::new(10_000);
        let h = hlc(&clock);
        let remote = Timestamp::from_parts(10_400, 7);
        h.observe(remote).expect("400 ms ahead is tolerated");
        assert!(h.now() > remote);
    }

    #[test]
    fn refuses_absurdly_ahead_clocks_and_counts_them() {
        let clock = ManualClock::new(10_000);
        let h = hlc(&clock);
        let err = h
            .observe(Timestamp::from_parts(70_000, 0))
            .expect_err("a minute ahead");
        assert_eq!(err.ahead_ms, 60_000);
        assert_eq!(h.refused(), 1);
        assert!(h.now() < Timestamp::from_parts(10_001, 0));
    }

    #[test]
    fn floor_survives_a_restart_with_a_slow_clock() {
        let clock = ManualClock::new(1_000);
        let h = Hlc::new(clock, MAX_OFFSET_DEFAULT, Timestamp::from_parts(5_000, 3));
        assert!(h.now() > Timestamp::from_parts(5_000, 3));
    }

    #[test]
    fn concurrent_callers_get_unique_increasing_timestamps() {
        let clock = ManualClock::new(1_000);
        let h = Arc::new(hlc(&clock));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..1000).map(|_| h.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Timestamp> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("no panic"))
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
