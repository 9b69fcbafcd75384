//! Login rate limits: token buckets per account and per source, bounded.
//!
//! Owns: [`RateLimit`] (a bucket's shape), [`Limiter`] (buckets by key,
//! memory bounded by `max_keys`). Does not own: which attempts are charged
//! (the service charges every attempt to its source and failed ones to the
//! account).
//!
//! Buckets live on the node that handles the login: with logins spread over
//! N nodes an attacker who controls where requests land gets at most N times
//! the limit. Accounts are never locked: a lock lets anyone lock any player
//! out, so failures are throttled instead (OWASP's advice).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The shape of one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Attempts allowed at once.
    pub burst: u32,
    /// Attempts regained per second.
    pub per_second: f64,
}

impl RateLimit {
    /// Checks the shape.
    pub fn validate(&self) -> Result<(), String> {
        if self.burst == 0 || !(self.per_second > 0.0 && self.per_second.is_finite()) {
            return Err("burst must be at least 1 and per_second a positive number".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    max_keys: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Buckets of shape `limit`, at most `max_keys` of them tracked.
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() * self.limit.per_second;
        (b.tokens + gained).min(f64::from(self.limit.burst))
    }

    /// `Err(retry_after)` when `key` has no attempt left, without charging.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get(key) {
            Some(b) if self.refilled(*b, now) < 1.0 => Err(self.wait(self.refilled(*b, now))),
            _ => Ok(()),
        }
    }

    /// Takes one attempt from `key`'s bucket; `Err(retry_after)` when none
    /// is left (nothing is taken then).
    pub fn charge(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            self.evict(&mut buckets, now);
        }
        let full = f64::from(self.limit.burst);
        let entry = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: full,
            at: now,
        });
        let tokens = self.refilled(*entry, now);
        if tokens < 1.0 {
            return Err(self.wait(tokens));
        }
        *entry = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        Ok(())
    }

    fn wait(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - tokens) / self.limit.per_second).max(0.001))
    }

    /// Frees room: first every bucket that has refilled (forgetting it
    /// changes nothing), then, if an attacker keeps them all busy, the
    /// emptiest half's opposite — the fullest buckets, which are closest to
    /// being forgotten anyway.
    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let full = f64::from(self.limit.burst);
        buckets.retain(|_, b| self.refilled(*b, now) < full);
        if buckets.len() >= self.max_keys {
            let mut levels: Vec<f64> = buckets.values().map(|b| self.refilled(*b, now)).collect();
            levels.sort_by(f64::total_cmp);
            let cut = levels[levels.len() / 2];
            buckets.retain(|_, b| self.refilled(*b, now) < cut);
        }
    }

    /// Buckets tracked.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no bucket is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(burst: u32, per_second: f64) -> RateLimit {
        RateLimit { burst, per_second }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let l = Limiter::new(limit(3, 0.5), 100);
        for _ in 0..3 {
            assert_eq!(l.charge("ana"), Ok(()));
        }
        let wait = l.charge("ana").expect_err("empty");
        assert!(
            wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        assert_eq!(l.check("ana"), Err(wait));
        // Other keys are unaffected.
        assert_eq!(l.charge("bob"), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.check("ana"), Ok(()));
        assert_eq!(l.charge("ana"), Ok(()));
        assert!(l.charge("ana").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_under_many_keys() {
        let l = Limiter::new(limit(2, 1.0), 64);
        for i in 0..10_000 {
            let _ = l.charge(&format!("k{i}"));
            assert!(l.len() <= 64);
        }
        // A key being throttled right now survives a flood of new keys that
        // refill (eviction takes full buckets first).
        let l = Limiter::new(limit(2, 1.0), 8);
        let _ = l.charge("victim");
        let _ = l.charge("victim");
        tokio::time::advance(Duration::from_secs(5)).await;
        let _ = l.charge("attacker");
        let _ = l.charge("attacker");
        for i in 0..7 {
            let _ = l.charge(&format!("k{i}"));
        }
        assert!(l.check("attacker").is_err(), "the hot bucket was forgotten");
    }

    #[test]
    fn shapes_are_validated() {
        assert!(limit(0, 1.0).validate().is_err());
        assert!(limit(1, 0.0).validate().is_err());
        assert!(limit(1, f64::NAN).validate().is_err());
        assert!(limit(5, 0.1).validate().is_ok());
    }
}
