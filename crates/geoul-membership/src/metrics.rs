//! Membership metrics, registered into the node's Prometheus registry.
//!
//! Owns: the metric handles the core and shell update. Does not own: rendering
//! (the node's admin endpoint encodes the registry).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::view::MemberState;

/// Label set `state="alive|suspect|dead|left"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The member state word.
    pub state: &'static str,
}

/// Probe round-trip buckets, seconds: 100 µs (loopback) to 1 s (a stalled peer).
const PROBE_RTT_BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Handles to every membership metric. Cloning shares the underlying values.
#[derive(Clone, Debug)]
pub struct MembershipMetrics {
    /// Members by state, as this node sees them.
    pub members: Family<StateLabel, Gauge>,
    /// Direct probe round-trip time.
    pub probe_rtt: RttHistogram,
    /// Suspicions about this node that it refuted.
    pub refutations: Counter,
    /// Times this node was declared dead and rejoined.
    pub rejoins: Counter,
    /// Timers that fired late enough to count as CPU starvation.
    pub starved_timers: Counter,
    /// Local health score (0 healthy .. 8).
    pub local_health_score: Gauge,
    /// Gossip datagrams received / sent.
    pub datagrams_in: Counter,
    /// Gossip datagrams sent.
    pub datagrams_out: Counter,
    /// Gossip bytes received.
    pub bytes_in: Counter,
    /// Gossip bytes sent.
    pub bytes_out: Counter,
    /// Datagrams refused because they were not sealed with our cluster secret.
    pub auth_failures: Counter,
    /// Authenticated datagrams the detector refused (malformed, stale, oversized).
    pub rejected_datagrams: Counter,
}

/// A histogram of durations in seconds.
#[derive(Clone, Debug)]
pub struct RttHistogram(pub Histogram);

impl RttHistogram {
    /// Records one round trip.
    pub fn observe(&self, rtt: Duration) {
        self.0.observe(rtt.as_secs_f64());
    }
}

impl Default for MembershipMetrics {
    fn default() -> Self {
        Self {
            members: Family::default(),
            probe_rtt: RttHistogram(Histogram::new(PROBE_RTT_BUCKETS_S)),
            refutations: Counter::default(),
            rejoins: Counter::default(),
            starved_timers: Counter::default(),
            local_health_score: Gauge::default(),
            datagrams_in: Counter::default(),
            datagrams_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            auth_failures: Counter::default(),
            rejected_datagrams: Counter::default(),
        }
    }
}

impl MembershipMetrics {
    /// Sets the member count of one state.
    pub fn set_members(&self, state: MemberState, count: u64) {
        self.members
            .get_or_create(&StateLabel {
                state: state.word(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Registers every metric under `geoul_membership_*`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("geoul_membership");
        r.register(
            "members",
            "Members by state as seen by this node",
            self.members.clone(),
        );
        r.register(
            "probe_rtt_seconds",
            "Direct probe round-trip time",
            self.probe_rtt.0.clone(),
        );
        r.register(
            "refutations",
            "Suspicions about this node that it refuted",
            self.refutations.clone(),
        );
        r.register(
            "rejoins",
            "Times this node was declared dead and rejoined",
            self.rejoins.clone(),
        );
        r.register(
            "starved_timers",
            "Timers that fired late (CPU starvation)",
            self.starved_timers.clone(),
        );
        r.register(
            "local_health_score",
            "Lifeguard local health score; detector timeouts are multiplied by 1 + score",
            self.local_health_score.clone(),
        );
        r.register(
            "datagrams_in",
            "Gossip datagrams received",
            self.datagrams_in.clone(),
        );
        r.register(
            "datagrams_out",
            "Gossip datagrams sent",
            self.datagrams_out.clone(),
        );
        r.register("bytes_in", "Gossip bytes received", self.bytes_in.clone());
        r.register("bytes_out", "Gossip bytes sent", self.bytes_out.clone());
        r.register(
            "auth_failures",
            "Gossip datagrams refused: not sealed with this cluster's secret",
            self.auth_failures.clone(),
        );
        r.register(
            "rejected_datagrams",
            "Authenticated gossip the detector refused (malformed, stale, oversized)",
            self.rejected_datagrams.clone(),
        );
    }
}
