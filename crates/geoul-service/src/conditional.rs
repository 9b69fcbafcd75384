//! Conditional writes from handlers: create-if-absent, compare-and-set and
//! take (single use) on a consensus group the service declares — the
//! primitive last-writer-wins tables cannot express (DESIGN.md §10).
//!
//! Owns: the [`ConditionalAccess`] seam the node fills in (over its
//! `geoul-consensus` groups) and the group-name rule. Does not own: the
//! groups themselves (the node opens one per declared name) or consensus.
//!
//! A service declares its groups with [`Service::conditional_groups`]
//! (`<service>.<name>`), and a handler runs an operation with
//! [`Context::conditional`](crate::Context::conditional): it is decided by
//! the group's Raft leader and acknowledged once a majority of the group's
//! members (the service's hosts) logged it, so two nodes racing on the same
//! key get one winner, also across crashes and partitions.
//!
//! [`Service::conditional_groups`]: crate::Service::conditional_groups

use std::time::Duration;

use futures::future::BoxFuture;
pub use geoul_consensus::{CondOp, CondOutcome, Entry as CondEntry};

use crate::context::StoreError;

/// Conditional operations as handlers reach them.
pub trait ConditionalAccess: Send + Sync + 'static {
    /// Runs `op` on `group`, within `timeout`. A timeout is indeterminate:
    /// the operation may still be applied.
    fn submit(
        &self,
        group: &str,
        op: CondOp,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<CondOutcome, StoreError>>;
}

/// A node without consensus groups (tests, tools): every operation fails.
pub struct NoGroups;

impl ConditionalAccess for NoGroups {
    fn submit(
        &self,
        group: &str,
        _op: CondOp,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<CondOutcome, StoreError>> {
        let err = StoreError::Unavailable(format!(
            "conditional group {group:?} is not open on this node"
        ));
        Box::pin(async move { Err(err) })
    }
}

/// Whether `group` is a valid group name of `service`: `<service>.<name>`,
/// `name` 1-32 of `a-z 0-9 _ -`.
pub fn valid_group_name(service: &str, group: &str) -> bool {
    let Some(rest) = group
        .strip_prefix(service)
        .and_then(|r| r.strip_prefix('.'))
    else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 32
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_belong_to_their_service() {
        assert!(valid_group_name("auth", "auth.tickets"));
        assert!(!valid_group_name("auth", "authx.tickets"));
        assert!(!valid_group_name("auth", "auth."));
        assert!(!valid_group_name("auth", "kv.tickets"));
        assert!(!valid_group_name("auth", "auth.Tickets"));
        assert!(!valid_group_name(
            "auth",
            &format!("auth.{}", "a".repeat(33))
        ));
    }
}
