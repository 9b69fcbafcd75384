//! geoul-sim: deterministic simulation of whole geoul clusters in one process.
//!
//! Real node code (membership, transport, wiring) runs on turmoil's simulated
//! network and clock. A seed fixes every random choice — turmoil's scheduling and
//! latencies, foca's probe order, injected datagram loss — so a failing seed
//! reproduces exactly: `GEOUL_SIM_SEED=<seed> cargo test -p geoul-sim`.
//! `GEOUL_SIM_SEEDS=<n>` sets how many seeds each test runs (soak runs use many).
//! `GEOUL_SIM_LOG=debug` prints node logs.

pub mod checks;
pub mod clock;
pub mod cluster;
pub mod docs;
pub mod echo;
pub mod net;

pub use cluster::{SimCluster, SimOptions, SimServices};

/// Seeds per test when `GEOUL_SIM_SEEDS` is unset: sized for CI on 2 cores.
pub const DEFAULT_SEEDS: u64 = 50;

/// The seeds a test should run: `GEOUL_SIM_SEED` alone if set, else
/// `GEOUL_SIM_SEEDS` (default `default_count`) consecutive seeds from 1.
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = std::env::var("GEOUL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let count = std::env::var("GEOUL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_count);
    (1..=count).collect()
}

/// Runs `scenario` for every seed; on failure panics with the seed and the command
/// that reproduces it.
pub fn check_seeds(test: &str, default_count: u64, scenario: impl Fn(u64) -> Result<(), String>) {
    for seed in seeds(default_count) {
        if let Err(e) = scenario(seed) {
            panic!(
                "{test} failed with seed {seed}: {e}\nreproduce: GEOUL_SIM_SEED={seed} cargo test -p geoul-sim {test}"
            );
        }
    }
}

/// Like [`check_seeds`], for the seeds of `seeds(default_count)` that fall in
/// `share` of `shares` (`seed % shares == share`): one scenario split over
/// several `#[test]`s, which the test harness runs on parallel threads.
pub fn check_seed_share(
    test: &str,
    default_count: u64,
    (share, shares): (u64, u64),
    scenario: impl Fn(u64) -> Result<(), String>,
) {
    let single = std::env::var("GEOUL_SIM_SEED").is_ok();
    for seed in seeds(default_count) {
        if !single && seed % shares.max(1) != share {
            continue;
        }
        if let Err(e) = scenario(seed) {
            panic!(
                "{test} failed with seed {seed}: {e}\nreproduce: GEOUL_SIM_SEED={seed} cargo test -p geoul-sim {test}"
            );
        }
    }
}

/// Installs a log subscriber once if `GEOUL_SIM_LOG` is set.
pub fn init_logging() {
    if let Ok(level) = std::env::var("GEOUL_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_test_writer()
            .try_init();
    }
}

/// The `auth` configuration of simulated nodes: argon2id at its floor (the
/// simulation checks behaviour, not hashing cost), no per-source limit (every
/// call comes from a simulated node), a validation window sized to the
/// simulation's 500 ms anti-entropy period.
pub fn auth_config() -> geoul_auth::AuthConfig {
    geoul_auth::AuthConfig {
        argon2: geoul_auth::HashParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        },
        hash_parallelism: 2,
        session_ttl_s: 30,
        source_limit: geoul_auth::limits::RateLimit {
            burst: 1_000_000,
            per_second: 1_000_000.0,
        },
        local_validation_window_ms: AUTH_WINDOW_MS,
        ..geoul_auth::AuthConfig::default()
    }
}

/// [`auth_config`]'s `local_validation_window_ms`.
pub const AUTH_WINDOW_MS: u64 = 1500;

/// The instance directory's configuration in simulation: a local-read
/// window sized to the simulation's 500 ms anti-entropy period.
pub fn dir_config() -> geoul_dir::DirConfig {
    geoul_dir::DirConfig {
        local_read_window_ms: DIR_WINDOW_MS,
        ..geoul_dir::DirConfig::default()
    }
}

/// [`dir_config`]'s `local_read_window_ms`.
pub const DIR_WINDOW_MS: u64 = 1500;
