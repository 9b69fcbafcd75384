//! Rate limiting of warnings about unauthenticated peers.
//!
//! Owns: the decision "log this pre-authentication failure now, or count it
//! silently". A peer with a stale secret reconnects in a loop; without a limit it
//! would flood the log, and an attacker could use that to bury other messages.
//!
//! Does not own: the log lines themselves (the server writes them) or metrics
//! (every failure is counted whether or not it is logged).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// At most one warning per key per this interval: often enough to notice a
/// misconfigured node within a minute, rarely enough that a reconnect loop is one line.
pub(crate) const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Keys remembered; when full the least recently logged is evicted. 1024 covers any
/// real cluster's misconfigured peers while bounding what an attacker cycling hello
/// strings can make us store.
pub(crate) const FAILURE_LOG_KEYS_MAX: usize = 1024;

/// Longest hello kept as part of a key (hellos are bounded by the preamble anyway).
const KEY_HELLO_MAX_BYTES: usize = geoul_proto::HELLO_MAX_BYTES;

#[derive(Debug)]
struct Entry {
    logged_at: Instant,
    suppressed: u64,
}

/// Per-(peer IP, hello) warning limiter.
#[derive(Debug, Default)]
pub(crate) struct FailureLogLimiter {
    entries: Mutex<HashMap<(IpAddr, String), Entry>>,
}

impl FailureLogLimiter {
    /// `Some(n)` if a warning should be logged now, `n` being how many were
    /// suppressed for this key since the last one; `None` to stay quiet.
    pub(crate) fn check(&self, ip: IpAddr, hello: &str, now: Instant) -> Option<u64> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let hello = truncate(hello);
        if let Some(entry) = entries.get_mut(&(ip, hello.to_owned())) {
            if now.saturating_duration_since(entry.logged_at) < FAILURE_LOG_INTERVAL {
                entry.suppressed += 1;
                return None;
            }
            let suppressed = entry.suppressed;
            *entry = Entry {
                logged_at: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if entries.len() >= FAILURE_LOG_KEYS_MAX {
            // Linear scan: only on a new key with a full map, over ≤ 1024 entries,
            // and each call follows a failed handshake that cost far more.
            let oldest = entries
                .iter()
                .min_by_key(|(_, e)| e.logged_at)
                .map(|(k, _)| k.clone());
            if let Some(key) = oldest {
                entries.remove(&key);
            }
        }
        entries.insert(
            (ip, hello.to_owned()),
            Entry {
                logged_at: now,
                suppressed: 0,
            },
        );
        debug_assert!(entries.len() <= FAILURE_LOG_KEYS_MAX);
        Some(0)
    }
}

fn truncate(hello: &str) -> &str {
    if hello.len() <= KEY_HELLO_MAX_BYTES {
        return hello;
    }
    let mut cut = KEY_HELLO_MAX_BYTES;
    while !hello.is_char_boundary(cut) {
        cut -= 1;
    }
    &hello[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[tokio::test]
    async fn once_per_interval_per_key() {
        let limiter = FailureLogLimiter::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip, "node-1", t0), Some(0));
        assert_eq!(
            limiter.check(ip, "node-1", t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            limiter.check(ip, "node-1", t0 + Duration::from_secs(2)),
            None
        );
        assert_eq!(limiter.check(ip, "node-2", t0), Some(0));
        assert_eq!(
            limiter.check(ip, "node-1", t0 + FAILURE_LOG_INTERVAL),
            Some(2)
        );
    }

    #[tokio::test]
    async fn bounded_with_oldest_evicted() {
        let limiter = FailureLogLimiter::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let t0 = Instant::now();
        for i in 0..FAILURE_LOG_KEYS_MAX + 10 {
            let at = t0 + Duration::from_millis(i as u64);
            assert_eq!(limiter.check(ip, &format!("peer-{i}"), at), Some(0));
        }
        let len = limiter.entries.lock().expect("not poisoned").len();
        assert_eq!(len, FAILURE_LOG_KEYS_MAX);
        // The first keys were evicted, so they log again at once.
        assert_eq!(
            limiter.check(ip, "peer-0", t0 + Duration::from_secs(2)),
            Some(0)
        );
    }
}
