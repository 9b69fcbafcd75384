//! Local health awareness (Lifeguard, as in memberlist's "awareness"): a node that
//! sees evidence that *it* is the slow one stretches its own timeouts, so that a
//! starved process accuses its peers later instead of declaring healthy nodes dead.
//!
//! Owns: the score and the events that move it. Does not own: applying the
//! multiplier to the detector (the core does that when the score changes).
//!
//! Evidence that raises the score (each +1, capped at [`LOCAL_HEALTH_SCORE_MAX`]):
//! * this node had to refute a suspicion about itself (its acks were late);
//! * a timer fired much later than asked (the event loop is starved of CPU).
//!
//! Evidence that lowers it (−1): a direct probe answered in time.
//! Failed probes are deliberately *not* evidence: without nacks (foca has none) a
//! failed probe more often means the peer died, and penalising it would slow the
//! detection of real crashes.

use std::time::Duration;

use crate::config::LOCAL_HEALTH_SCORE_MAX;

/// The local health score.
#[derive(Debug, Clone)]
pub struct LocalHealth {
    score: u32,
    enabled: bool,
    lag_threshold: Duration,
}

impl LocalHealth {
    /// A healthy node. `lag_threshold` is how late a timer may fire before it
    /// counts as starvation.
    pub fn new(enabled: bool, lag_threshold: Duration) -> Self {
        Self {
            score: 0,
            enabled,
            lag_threshold,
        }
    }

    /// Current score, 0 = healthy.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// Timeout multiplier to apply: `1 + score`.
    pub fn multiplier(&self) -> u32 {
        1 + self.score
    }

    /// This node refuted a suspicion about itself. Returns whether the score changed.
    pub fn on_refuted(&mut self) -> bool {
        self.raise()
    }

    /// A timer fired `lateness` after its deadline. Returns whether the score changed.
    pub fn on_timer_lateness(&mut self, lateness: Duration) -> bool {
        lateness > self.lag_threshold && self.raise()
    }

    /// A direct probe was answered. Returns whether the score changed.
    pub fn on_probe_acked(&mut self) -> bool {
        if self.score == 0 {
            return false;
        }
        self.score -= 1;
        true
    }

    fn raise(&mut self) -> bool {
        if !self.enabled || self.score >= LOCAL_HEALTH_SCORE_MAX {
            return false;
        }
        self.score += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starvation_raises_and_acks_lower_within_bounds() {
        let mut h = LocalHealth::new(true, Duration::from_millis(40));
        assert!(!h.on_timer_lateness(Duration::from_millis(10)));
        assert!(h.on_timer_lateness(Duration::from_millis(100)));
        assert_eq!(h.multiplier(), 2);
        for _ in 0..20 {
            h.on_refuted();
        }
        assert_eq!(h.score(), LOCAL_HEALTH_SCORE_MAX);
        for _ in 0..20 {
            h.on_probe_acked();
        }
        assert_eq!(h.score(), 0);
    }

    #[test]
    fn disabled_never_stretches() {
        let mut h = LocalHealth::new(false, Duration::from_millis(40));
        assert!(!h.on_refuted());
        assert_eq!(h.multiplier(), 1);
    }
}
