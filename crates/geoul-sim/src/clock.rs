//! Wall time in simulation: a fixed epoch plus turmoil's simulated elapsed time
//! (shared by every host, and continuous across restarts), optionally skewed per
//! node, so versions and expiry are reproducible.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use geoul_store::Clock;

/// Unix ms at simulated time zero (2026-01-01): any fixed value works.
pub const SIM_EPOCH_MS: u64 = 1_767_225_600_000;

/// A node's wall clock in the simulator.
#[derive(Debug, Default)]
pub struct SimClock {
    skew_ms: AtomicI64,
}

impl SimClock {
    /// A clock `skew_ms` ahead of (or behind, if negative) simulated time.
    pub fn new(skew_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            skew_ms: AtomicI64::new(skew_ms),
        })
    }
}

impl Clock for SimClock {
    fn unix_ms(&self) -> u64 {
        let elapsed = turmoil::sim_elapsed()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        SIM_EPOCH_MS
            .saturating_add(elapsed)
            .saturating_add_signed(self.skew_ms.load(Ordering::Relaxed))
    }
}
