//! Failure-detector tuning: the knobs an operator may turn and their LAN defaults.
//!
//! Owns: [`MembershipConfig`], its validation, and its translation to foca's config
//! under a local-health multiplier. Does not own: when the multiplier changes (that
//! is `health`).
//!
//! The trade-off, in one place: a crashed node is declared dead after roughly
//! `probe_period` (until someone probes it) + `probe_period` (the failed probe
//! round) + `suspicion_timeout` + one gossip hop. Shorter values detect faster but a
//! node that stalls (GC-like pause, saturated CPU, SIGSTOP) for longer than
//! `probe_period + suspicion_timeout` is declared dead falsely. Local health
//! awareness stretches every timeout on a node that sees itself falling behind, so
//! a saturated machine slows its own accusations instead of killing its peers.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// Largest gossip datagram on the wire, before sealing overhead is subtracted.
/// Below the 1500-byte Ethernet MTU with room for IP/UDP headers (RFC 8085).
pub const GOSSIP_DATAGRAM_BYTES_MAX: usize = 1400;

/// Highest local-health score; the timeout multiplier is `1 + score`. Lifeguard
/// and memberlist use 8: a node can slow its own probes by up to 9×, no more, so
/// a permanently sick node still detects real failures eventually.
pub const LOCAL_HEALTH_SCORE_MAX: u32 = 8;

/// Failure-detector and gossip settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipConfig {
    /// How often each node probes one member.
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly.
    pub indirect_probes: usize,
    /// How long a suspect has to refute before it is declared dead.
    pub suspicion_timeout: Duration,
    /// How often updates are pushed to random members besides probe piggybacking.
    pub gossip_period: Duration,
    /// Members gossiped to each `gossip_period`.
    pub gossip_fanout: usize,
    /// How often a node asks a random member for its member list.
    pub announce_period: Duration,
    /// How often a node announces itself to members it believes dead, so that a
    /// healed partition merges back without operator action.
    pub announce_to_dead_period: Duration,
    /// How often a node with no live peer re-announces itself to its seeds.
    pub seed_retry_period: Duration,
    /// How long a dead member is remembered (shown in status, refused if it comes
    /// back with the same identity).
    pub remember_dead_for: Duration,
    /// Times each update is piggybacked before it is dropped from the backlog.
    pub max_transmissions: u8,
    /// Whether local health awareness may stretch timeouts.
    pub local_health_awareness: bool,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(100),
            probe_rtt: Duration::from_millis(40),
            indirect_probes: 3,
            suspicion_timeout: Duration::from_millis(500),
            gossip_period: Duration::from_millis(100),
            gossip_fanout: 3,
            announce_period: Duration::from_secs(5),
            announce_to_dead_period: Duration::from_secs(1),
            seed_retry_period: Duration::from_secs(1),
            remember_dead_for: Duration::from_secs(3600),
            max_transmissions: 10,
            local_health_awareness: true,
        }
    }
}

/// A setting out of range, named by its config key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The config key.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

impl MembershipConfig {
    /// Checks every relation foca and our own timers rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ms = Duration::from_millis;
        if self.probe_period < ms(10) || self.probe_period > Duration::from_secs(60) {
            return Err(err("probe_period", "must be between 10ms and 60s"));
        }
        if self.probe_rtt.is_zero() || self.probe_rtt >= self.probe_period {
            return Err(err(
                "probe_rtt",
                "must be greater than zero and less than probe_period",
            ));
        }
        if !(1..=16).contains(&self.indirect_probes) {
            return Err(err("indirect_probes", "must be between 1 and 16"));
        }
        if self.suspicion_timeout < self.probe_period {
            return Err(err("suspicion_timeout", "must be at least probe_period"));
        }
        if self.gossip_period < ms(10) {
            return Err(err("gossip_period", "must be at least 10ms"));
        }
        if !(1..=16).contains(&self.gossip_fanout) {
            return Err(err("gossip_fanout", "must be between 1 and 16"));
        }
        for (field, value) in [
            ("announce_period", self.announce_period),
            ("announce_to_dead_period", self.announce_to_dead_period),
            ("seed_retry_period", self.seed_retry_period),
        ] {
            if value < ms(100) {
                return Err(err(field, "must be at least 100ms"));
            }
        }
        if self.remember_dead_for < self.suspicion_timeout {
            return Err(err(
                "remember_dead_for",
                "must be at least suspicion_timeout",
            ));
        }
        if self.max_transmissions == 0 {
            return Err(err("max_transmissions", "must be at least 1"));
        }
        Ok(())
    }

    /// foca's config with every timeout stretched by `multiplier` (local health).
    pub fn to_foca(&self, multiplier: u32, packet_bytes_max: usize) -> foca::Config {
        let m = multiplier.max(1);
        let nz = |n: usize| NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN);
        foca::Config {
            probe_period: self.probe_period * m,
            probe_rtt: self.probe_rtt * m,
            num_indirect_probes: nz(self.indirect_probes),
            max_transmissions: NonZeroU8::new(self.max_transmissions).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: self.suspicion_timeout * m,
            remove_down_after: Some(self.remember_dead_for),
            max_packet_size: nz(packet_bytes_max),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.announce_period,
                num_members: nz(1),
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.announce_to_dead_period,
                num_members: nz(2),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_period,
                num_members: nz(self.gossip_fanout),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_value_names_its_field() {
        assert_eq!(MembershipConfig::default().validate(), Ok(()));
        let bad = MembershipConfig {
            probe_rtt: Duration::from_millis(300),
            ..Default::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("probe_rtt"));
        let bad = MembershipConfig {
            suspicion_timeout: Duration::from_millis(50),
            ..Default::default()
        };
        assert_eq!(
            bad.validate().map_err(|e| e.field),
            Err("suspicion_timeout")
        );
        let bad = MembershipConfig {
            indirect_probes: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.field), Err("indirect_probes"));
    }

    #[test]
    fn multiplier_stretches_detection_timeouts() {
        let c = MembershipConfig::default();
        let f = c.to_foca(3, 1300);
        assert_eq!(f.probe_period, c.probe_period * 3);
        assert_eq!(f.suspect_to_down_after, c.suspicion_timeout * 3);
        assert_eq!(f.max_packet_size.get(), 1300);
    }
}
