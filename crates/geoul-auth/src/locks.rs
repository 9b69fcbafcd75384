//! Exactly-once decisions of the auth service: create-if-absent locks in
//! its consensus group (registrations, spent refresh tokens), and the group's
//! name.
//!
//! Owns: [`LOCKS`], the lock key layout, taking and releasing a lock. Does
//! not own: consensus (the framework's `Context::conditional`) or what a
//! lock protects (`service`, `tickets`).

use std::time::Duration;

use geoul_service::{CondOp, CondOutcome, Context, HandlerError};

use crate::service::AuthService;

/// The consensus group of the service's exactly-once decisions: server
/// tickets, registration and refresh locks.
pub const LOCKS: &str = "auth.tickets";
/// How long a registration holds its name's lock (covers the account write).
pub(crate) const REGISTER_LOCK: Duration = Duration::from_secs(30);
/// How long a spent refresh token's lock lives (the `used` flag, written at
/// Quorum meanwhile, covers the time after).
pub(crate) const REFRESH_LOCK: Duration = Duration::from_secs(120);

/// A key in the locks group: a tag byte and the subject.
pub(crate) fn lock_key(tag: u8, subject: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + subject.len());
    k.push(tag);
    k.extend_from_slice(subject);
    k
}

impl AuthService {
    /// Takes `key` in the locks group for `ttl`: `true` for exactly one
    /// caller until it expires.
    pub(crate) async fn lock(
        &self,
        ctx: &Context,
        key: &[u8],
        ttl: Duration,
    ) -> Result<bool, HandlerError> {
        Ok(self.lock_version(ctx, key, ttl).await?.is_some())
    }

    /// [`Self::lock`] that returns the lock's version when taken (to release
    /// it with [`Self::unlock`]).
    pub(crate) async fn lock_version(
        &self,
        ctx: &Context,
        key: &[u8],
        ttl: Duration,
    ) -> Result<Option<u64>, HandlerError> {
        let op = CondOp::CreateIfAbsent {
            key: key.to_vec(),
            value: ctx.node_name().as_bytes().to_vec(),
            ttl_ms: Some(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        match ctx.conditional(LOCKS, op).await? {
            CondOutcome::Done { version, .. } => Ok(Some(version)),
            CondOutcome::Conflict { .. } => Ok(None),
            CondOutcome::Full => Err(HandlerError::Unavailable(
                "too many pending exactly-once decisions; retry later".into(),
            )),
            other => Err(HandlerError::Unavailable(format!(
                "unexpected lock outcome {other:?}"
            ))),
        }
    }

    /// Releases a lock taken at `version` (best effort: it expires anyway).
    pub(crate) async fn unlock(&self, ctx: &Context, key: &[u8], version: u64) {
        let op = CondOp::CompareAndSet {
            key: key.to_vec(),
            expected: Some(version),
            value: None,
            ttl_ms: None,
        };
        if let Err(e) = ctx.conditional(LOCKS, op).await {
            tracing::debug!(error = %e, "lock not released; it expires");
        }
    }
}
