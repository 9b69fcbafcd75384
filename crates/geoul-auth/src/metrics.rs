//! The auth service's Prometheus metrics (`geoul_auth_*`).
//!
//! Owns: [`AuthMetrics`] and its outcome labels. Does not own: the registry
//! (the node's) or request-level call metrics (`geoul_service_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// One outcome of one operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `register | login | validate | refresh | revoke | revoke_all |
    /// sessions | change_password | set_disabled`.
    pub op: &'static str,
    /// `ok`, or the reason it failed: `invalid_credentials | disabled |
    /// rate_limited | invalid_token | refresh_reused | taken | no_account |
    /// bad_input | error`.
    pub outcome: &'static str,
}

/// Handles to the auth metrics; clones share values.
#[derive(Clone, Debug, Default)]
pub struct AuthMetrics {
    /// Operations by outcome (logins/s, validations/s and failures by
    /// reason are rates of this counter).
    pub ops: Family<Outcome, Counter>,
    /// Sessions issued (logins and refreshes).
    pub sessions_issued: Counter,
    /// Sessions revoked (single, all, family, password change, disable).
    pub sessions_revoked: Counter,
}

impl AuthMetrics {
    /// Counts one operation.
    pub fn count(&self, op: &'static str, outcome: &'static str) {
        self.ops.get_or_create(&Outcome { op, outcome }).inc();
    }

    /// Registers under `geoul_auth_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("geoul_auth");
        r.register(
            "ops",
            "Auth operations by operation and outcome (failures by reason)",
            self.ops.clone(),
        );
        r.register(
            "sessions_issued",
            "Sessions issued by logins and refreshes on this node",
            self.sessions_issued.clone(),
        );
        r.register(
            "sessions_revoked",
            "Sessions revoked through this node",
            self.sessions_revoked.clone(),
        );
    }
}
