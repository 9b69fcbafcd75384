//! The auth service's settings (`[auth]` in a node's config).
//!
//! Owns: [`AuthConfig`] with its defaults and validation. Does not own:
//! reading files (the node's config) or acting on the settings.

use std::time::Duration;

use geoul_store::Ack;
use serde::{Deserialize, Serialize};

use crate::limits::RateLimit;
use crate::password::HashParams;

/// Settings of the auth service on one node. Every node hosting `auth` must
/// agree on `session_ack` (it is part of the table declaration the cluster
/// checks); the rest may differ per node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// argon2id parameters of new password hashes.
    pub argon2: HashParams,
    /// Password hashes computed at once on this node (each uses one core
    /// and `argon2.memory_kib` of memory); more logins wait.
    pub hash_parallelism: usize,
    /// Hashes that may wait for a slot on this node; beyond, logins and
    /// registrations are refused at once as not ready (the client tries
    /// another node). Default 4 per hashing slot: a few hundred ms of queue
    /// at 25-50 ms per hash, so a login storm fails fast (well within a
    /// client's deadline) instead of holding the service's permits that
    /// validations need.
    pub hash_queue: usize,
    /// Lifetime of a session token, seconds.
    pub session_ttl_s: u64,
    /// Lifetime of a refresh token, seconds (each refresh issues a new one).
    pub refresh_ttl_s: u64,
    /// Acks a new session waits for before login answers (`all` replication:
    /// every auth node stores every session).
    pub session_ack: Ack,
    /// Login attempts per source address (every attempt counts).
    pub source_limit: RateLimit,
    /// Failed logins per account.
    pub account_limit: RateLimit,
    /// Buckets tracked per limiter (memory bound).
    pub limiter_keys: usize,
    /// Sessions one account may hold; the oldest are revoked past it.
    pub sessions_per_account: u32,
    /// A node validates from its own copy only if it completed an
    /// anti-entropy round with a majority of auth nodes within this many ms;
    /// else it refuses and the caller asks another node. With the
    /// default 1 s anti-entropy period this bounds how long a node can miss
    /// a revocation: this window plus one period.
    pub local_validation_window_ms: u64,
    /// Lifetime of a server ticket, seconds.
    pub ticket_ttl_s: u64,
}

/// Most sessions an account may be configured to hold.
pub const SESSIONS_PER_ACCOUNT_MAX: u32 = 1000;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            argon2: HashParams::default(),
            hash_parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            hash_queue: 4 * std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            session_ttl_s: 3600,
            refresh_ttl_s: 30 * 24 * 3600,
            session_ack: Ack::Quorum,
            source_limit: RateLimit {
                burst: 50,
                per_second: 20.0,
            },
            account_limit: RateLimit {
                burst: 5,
                per_second: 1.0 / 12.0,
            },
            limiter_keys: 100_000,
            sessions_per_account: 100,
            local_validation_window_ms: 3000,
            ticket_ttl_s: 30,
        }
    }
}

impl AuthConfig {
    /// The session lifetime.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_s)
    }

    /// The refresh-token lifetime.
    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_ttl_s)
    }

    /// See `local_validation_window_ms`.
    pub fn local_validation_window(&self) -> Duration {
        Duration::from_millis(self.local_validation_window_ms)
    }

    /// Checks every setting; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let field = |f: &str, why: String| Err((format!("auth.{f}"), why));
        if let Err(e) = self.argon2.validate() {
            return field("argon2", e.to_string());
        }
        if self.hash_parallelism == 0 || self.hash_parallelism > 1024 {
            return field("hash_parallelism", "must be 1-1024".into());
        }
        if self.hash_queue > 100_000 {
            return field("hash_queue", "must be at most 100000".into());
        }
        if self.session_ttl_s == 0 || self.session_ttl_s > 30 * 24 * 3600 {
            return field("session_ttl_s", "must be 1 s to 30 days".into());
        }
        if self.refresh_ttl_s < self.session_ttl_s || self.refresh_ttl_s > 365 * 24 * 3600 {
            return field(
                "refresh_ttl_s",
                "must be at least session_ttl_s and at most 365 days".into(),
            );
        }
        if let Err(e) = self.source_limit.validate() {
            return field("source_limit", e);
        }
        if let Err(e) = self.account_limit.validate() {
            return field("account_limit", e);
        }
        if self.limiter_keys == 0 || self.limiter_keys > 10_000_000 {
            return field("limiter_keys", "must be 1-10000000".into());
        }
        if self.sessions_per_account == 0 || self.sessions_per_account > SESSIONS_PER_ACCOUNT_MAX {
            return field(
                "sessions_per_account",
                format!("must be 1-{SESSIONS_PER_ACCOUNT_MAX}"),
            );
        }
        if !(1..=3600).contains(&self.ticket_ttl_s) {
            return field("ticket_ttl_s", "must be 1-3600".into());
        }
        if !(100..=600_000).contains(&self.local_validation_window_ms) {
            return field("local_validation_window_ms", "must be 100-600000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        assert_eq!(AuthConfig::default().validate(), Ok(()));
        let c = AuthConfig {
            refresh_ttl_s: 10,
            ..AuthConfig::default()
        };
        assert_eq!(c.validate().expect_err("short").0, "auth.refresh_ttl_s");
        let c = AuthConfig {
            argon2: HashParams {
                memory_kib: 1,
                ..HashParams::default()
            },
            ..AuthConfig::default()
        };
        assert_eq!(c.validate().expect_err("weak").0, "auth.argon2");
    }

    #[test]
    fn parses_from_toml_with_defaults_and_refuses_unknown_fields() {
        let c: AuthConfig = toml::from_str(
            "session_ttl_s = 60\n[argon2]\nmemory_kib = 8192\niterations = 1\nparallelism = 1\n",
        )
        .expect("parses");
        assert_eq!(c.session_ttl_s, 60);
        assert_eq!(c.argon2.memory_kib, 8192);
        assert_eq!(c.refresh_ttl_s, AuthConfig::default().refresh_ttl_s);
        assert!(toml::from_str::<AuthConfig>("sesion_ttl_s = 60").is_err());
    }
}
