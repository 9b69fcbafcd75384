//! The `[sync]` section of the node config: sync, anti-entropy and tombstone GC.
//!
//! Owns: parsing and bounds of those knobs. Does not own: what they do
//! (`geoul_replication::sync`).

use std::time::Duration;

use geoul_replication::sync::SyncConfig;
use serde::Deserialize;

use crate::config::ConfigError;

/// `[sync]` as it appears in the file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// Slots synced at once by this node.
    pub concurrency: Option<usize>,
    /// Slot transfers served at once by this node.
    pub serve_concurrency: Option<usize>,
    /// Anti-entropy period in ms.
    pub anti_entropy_period_ms: Option<u64>,
    /// Most slots repaired per period per table.
    pub anti_entropy_slots: Option<usize>,
    /// Most bytes moved by repair per period per table.
    pub anti_entropy_bytes: Option<u64>,
    /// Wait after start before a bootstrap merge is allowed, in ms.
    pub bootstrap_wait_ms: Option<u64>,
    /// Tombstone grace period in seconds.
    pub tombstone_grace_s: Option<u64>,
}

fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    field: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if v < min || v > max => Err(ConfigError {
            field: format!("sync.{field}"),
            reason: format!("must be between {min} and {max}"),
        }),
        Some(v) => Ok(v),
    }
}

/// Validates `[sync]`.
pub fn sync_config(raw: Option<RawSync>) -> Result<SyncConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let d = SyncConfig::default();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(SyncConfig {
        concurrency: bounded("concurrency", raw.concurrency, d.concurrency, 1, 256)?,
        serve_concurrency: bounded(
            "serve_concurrency",
            raw.serve_concurrency,
            d.serve_concurrency,
            1,
            256,
        )?,
        anti_entropy_period: Duration::from_millis(bounded(
            "anti_entropy_period_ms",
            raw.anti_entropy_period_ms,
            ms(d.anti_entropy_period),
            50,
            3_600_000,
        )?),
        anti_entropy_slots: bounded(
            "anti_entropy_slots",
            raw.anti_entropy_slots,
            d.anti_entropy_slots,
            1,
            4096,
        )?,
        anti_entropy_bytes: bounded(
            "anti_entropy_bytes",
            raw.anti_entropy_bytes,
            d.anti_entropy_bytes,
            64 * 1024,
            1 << 34,
        )?,
        bootstrap_wait: Duration::from_millis(bounded(
            "bootstrap_wait_ms",
            raw.bootstrap_wait_ms,
            ms(d.bootstrap_wait),
            0,
            600_000,
        )?),
        request_timeout: d.request_timeout,
        tombstone_grace: Duration::from_secs(bounded(
            "tombstone_grace_s",
            raw.tombstone_grace_s,
            d.tombstone_grace.as_secs(),
            1,
            365 * 24 * 3600,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(sync_config(None).expect("defaults"), SyncConfig::default());
        let err = sync_config(Some(RawSync {
            anti_entropy_period_ms: Some(1),
            ..RawSync::default()
        }))
        .expect_err("too short");
        assert_eq!(err.field, "sync.anti_entropy_period_ms");
        let c = sync_config(Some(RawSync {
            tombstone_grace_s: Some(60),
            ..RawSync::default()
        }))
        .expect("valid");
        assert_eq!(c.tombstone_grace, Duration::from_secs(60));
    }
}
