//! Node configuration: a TOML file and/or command-line flags, merged and validated
//! into a [`NodeConfig`] before anything starts.
//!
//! Owns: the file format, precedence (flag > file > default), and every validation
//! message. Does not own: parsing the command line (the binary does that and hands
//! over a [`RawConfig`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use geoul_membership::identity::NODE_NAME_BYTES_MAX;
use geoul_membership::meta::validate_service_name;
use geoul_membership::MembershipConfig;
use geoul_storage::SyncPolicy;
use geoul_store::{Ack, Durability, Replication, TableOptions};
use serde::Deserialize;

/// Environment variable holding the cluster secret itself (alternative to a file).
pub const SECRET_ENV: &str = "GEOUL_CLUSTER_SECRET";

/// Seeds accepted: more than enough for any bootstrap list.
pub const SEEDS_MAX: usize = 64;

/// An invalid setting: the field and why. Printed as one line, exit code 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid config: {field}: {reason}")]
pub struct ConfigError {
    /// The config key (same spelling in the file and, with dashes, as a flag).
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Detector knobs as they appear in the file (`[membership]`), in milliseconds.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMembership {
    /// See [`MembershipConfig::probe_period`].
    pub probe_period_ms: Option<u64>,
    /// See [`MembershipConfig::probe_rtt`].
    pub probe_rtt_ms: Option<u64>,
    /// See [`MembershipConfig::suspicion_timeout`].
    pub suspicion_timeout_ms: Option<u64>,
    /// See [`MembershipConfig::indirect_probes`].
    pub indirect_probes: Option<usize>,
    /// See [`MembershipConfig::gossip_period`].
    pub gossip_period_ms: Option<u64>,
    /// See [`MembershipConfig::local_health_awareness`].
    pub local_health_awareness: Option<bool>,
}

/// `kv` table options as they appear in the file (`[kv]`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawKv {
    /// Copies of each key; `0` is refused. Ignored when `replicate_to_all`.
    pub replication_factor: Option<u8>,
    /// Keep every key on every node hosting `kv`.
    pub replicate_to_all: Option<bool>,
    /// Default ack level: `one`, `quorum` or `all`.
    pub write_ack: Option<Ack>,
    /// `memory` or `disk`.
    pub durability: Option<Durability>,
    /// Document fields to index (for `geoul query 'kv where …'`).
    pub indexes: Option<Vec<String>>,
}

/// Unvalidated settings, from a file or flags; every field optional.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Node name, stable across restarts.
    pub name: Option<String>,
    /// Cluster/client address (TCP and UDP, same port).
    pub bind: Option<String>,
    /// Address peers and clients use, when `bind` is a wildcard.
    pub advertise: Option<String>,
    /// Admin HTTP address.
    pub admin: Option<String>,
    /// Seed addresses, `host:port`.
    pub seeds: Option<Vec<String>>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// File holding the cluster secret.
    pub cluster_secret_file: Option<PathBuf>,
    /// Services to host.
    pub services: Option<Vec<String>>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Detector knobs.
    pub membership: Option<RawMembership>,
    /// `kv` table options.
    pub kv: Option<RawKv>,
    /// Auth service settings (`[auth]`).
    pub auth: Option<geoul_auth::AuthConfig>,
    /// Instance directory settings (`[dir]`).
    pub dir: Option<geoul_dir::DirConfig>,
    /// fsync period of the durable store in ms; 0 = fsync every batch.
    pub fsync_period_ms: Option<u64>,
    /// Clock-skew allowance in ms (expiry margin, most a peer clock may lead).
    pub skew_margin_ms: Option<u64>,
    /// Sync, anti-entropy and tombstone GC (`[sync]`).
    pub sync: Option<crate::config_sync::RawSync>,
    /// Hosts a conditional group must see before it is first formed.
    pub bootstrap_expect: Option<usize>,
}

impl RawConfig {
    /// Reads a TOML file; the error names the file and the bad field.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("config", format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            invalid(
                "config",
                format!("{}: {}", path.display(), e.message().trim()),
            )
        })
    }

    /// `self` with every field that `flags` sets replaced (flags win over the file).
    pub fn overlay(mut self, flags: RawConfig) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if flags.$f.is_some() { self.$f = flags.$f; } )* };
        }
        take!(
            name,
            bind,
            advertise,
            admin,
            seeds,
            data_dir,
            cluster_secret_file,
            services,
            log_format,
            membership,
            kv,
            auth,
            dir,
            fsync_period_ms,
            skew_margin_ms,
            sync,
            bootstrap_expect
        );
        self
    }
}

/// Validated node configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// Bound cluster address.
    pub bind: SocketAddr,
    /// Address advertised to peers and clients.
    pub advertise: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// Resolved seeds.
    pub seeds: Vec<SocketAddr>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where the secret comes from.
    pub secret_source: SecretSource,
    /// Hosted services.
    pub services: Vec<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Detector settings.
    pub membership: MembershipConfig,
    /// `kv` table options.
    pub kv: TableOptions,
    /// Auth service settings.
    pub auth: geoul_auth::AuthConfig,
    /// Instance directory settings.
    pub dir: geoul_dir::DirConfig,
    /// Durable store fsync policy.
    pub sync: SyncPolicy,
    /// Clock-skew allowance.
    pub skew_margin: Duration,
    /// Sync, anti-entropy and tombstone GC.
    pub sync_config: geoul_replication::sync::SyncConfig,
    /// Hosts a conditional group must see before it is first formed; `None`:
    /// a majority of the seeds and this node.
    pub bootstrap_expect: Option<usize>,
}

/// Largest `bootstrap_expect`: the most members a consensus group has.
pub const BOOTSTRAP_EXPECT_MAX: usize = 64;

/// Default clock-skew allowance: NTP keeps LAN clocks within a few ms; 500 ms
/// covers a badly synced host.
pub const SKEW_MARGIN_DEFAULT_MS: u64 = 500;

/// Longest fsync period accepted (the most acknowledged writes a crash of the
/// node may lose from its own disk).
pub const FSYNC_PERIOD_MAX_MS: u64 = 60_000;

fn kv_options(raw: Option<RawKv>) -> Result<TableOptions, ConfigError> {
    let raw = raw.unwrap_or_default();
    let mut options = crate::kv::default_options();
    if raw.replicate_to_all == Some(true) {
        options.replication = Replication::All;
    } else if let Some(factor) = raw.replication_factor {
        if factor == 0 {
            return Err(invalid("kv.replication_factor", "must be at least 1"));
        }
        options.replication = Replication::Factor(factor);
    }
    if let Some(ack) = raw.write_ack {
        options.write_ack = ack;
    }
    if let Some(d) = raw.durability {
        options.durability = d;
    }
    if let Some(indexes) = raw.indexes {
        options.indexes = indexes;
    }
    crate::kv::spec(options.clone())
        .validate()
        .map_err(|e| invalid("kv.indexes", e.to_string()))?;
    Ok(options)
}

/// Where the cluster secret is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A file.
    File(PathBuf),
    /// The environment variable [`SECRET_ENV`].
    Env,
}

fn parse_addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let mut addrs = value
        .to_socket_addrs()
        .map_err(|e| invalid(field, format!("{value:?} is not a host:port address ({e})")))?;
    addrs
        .next()
        .ok_or_else(|| invalid(field, format!("{value:?} resolves to no address")))
}

fn validate_name(name: &str) -> Result<(), ConfigError> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if name.is_empty() || name.len() > NODE_NAME_BYTES_MAX || !name.chars().all(ok) {
        return Err(invalid(
            "name",
            format!("{name:?} must be 1-{NODE_NAME_BYTES_MAX} characters of A-Z a-z 0-9 - _ ."),
        ));
    }
    Ok(())
}

fn membership_config(raw: Option<RawMembership>) -> Result<MembershipConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let mut c = MembershipConfig::default();
    let ms = Duration::from_millis;
    if let Some(v) = raw.probe_period_ms {
        c.probe_period = ms(v);
    }
    if let Some(v) = raw.probe_rtt_ms {
        c.probe_rtt = ms(v);
    }
    if let Some(v) = raw.suspicion_timeout_ms {
        c.suspicion_timeout = ms(v);
    }
    if let Some(v) = raw.indirect_probes {
        c.indirect_probes = v;
    }
    if let Some(v) = raw.gossip_period_ms {
        c.gossip_period = ms(v);
    }
    if let Some(v) = raw.local_health_awareness {
        c.local_health_awareness = v;
    }
    c.validate().map_err(|e| {
        let field = match e.field {
            "probe_period" | "probe_rtt" | "suspicion_timeout" | "gossip_period" => {
                format!("membership.{}_ms", e.field)
            }
            other => format!("membership.{other}"),
        };
        invalid(&field, e.reason)
    })?;
    Ok(c)
}

impl NodeConfig {
    /// Validates `raw`. `secret_env_set` says whether [`SECRET_ENV`] is present
    /// (passed in so that validation itself reads no environment).
    pub fn resolve(raw: RawConfig, secret_env_set: bool) -> Result<Self, ConfigError> {
        let name = raw.name.ok_or_else(|| invalid("name", "missing"))?;
        validate_name(&name)?;
        let bind = parse_addr("bind", raw.bind.as_deref().unwrap_or("127.0.0.1:7001"))?;
        if bind.port() == 0 {
            return Err(invalid(
                "bind",
                "port 0 is not supported: TCP and UDP gossip share one fixed port",
            ));
        }
        let advertise = match raw.advertise.as_deref() {
            Some(a) => parse_addr("advertise", a)?,
            None if bind.ip().is_unspecified() => {
                return Err(invalid(
                    "advertise",
                    "required when bind is a wildcard address",
                ))
            }
            None => bind,
        };
        if advertise.port() == 0 {
            return Err(invalid("advertise", "port 0 cannot be advertised"));
        }
        let admin = parse_addr("admin", raw.admin.as_deref().unwrap_or("127.0.0.1:8001"))?;
        if admin == bind {
            return Err(invalid("admin", "must differ from bind"));
        }
        let seeds_raw = raw.seeds.unwrap_or_default();
        if seeds_raw.len() > SEEDS_MAX {
            return Err(invalid("seeds", format!("at most {SEEDS_MAX}")));
        }
        let seeds = seeds_raw
            .iter()
            .map(|s| parse_addr("seeds", s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("geoul-data/{name}")));
        let secret_source = match (raw.cluster_secret_file, secret_env_set) {
            (Some(path), _) => SecretSource::File(path),
            (None, true) => SecretSource::Env,
            (None, false) => {
                return Err(invalid(
                    "cluster_secret_file",
                    format!("missing: pass --cluster-secret-file or set {SECRET_ENV}"),
                ))
            }
        };
        let services = raw
            .services
            .unwrap_or_else(|| vec![crate::kv::KV.to_string()]);
        for s in &services {
            validate_service_name(s).map_err(|e| invalid("services", e.to_string()))?;
            if !crate::builtin::BUILTIN.contains(&s.as_str()) {
                return Err(invalid(
                    "services",
                    format!(
                        "no built-in service {s:?} (built in: {}; services of your own are hosted by a program built on geoul-node)",
                        crate::builtin::BUILTIN.join(", ")
                    ),
                ));
            }
        }
        Ok(Self {
            name,
            bind,
            advertise,
            admin,
            seeds,
            data_dir,
            secret_source,
            services,
            log_format: raw.log_format.unwrap_or_default(),
            membership: membership_config(raw.membership)?,
            kv: kv_options(raw.kv)?,
            auth: {
                let auth = raw.auth.unwrap_or_default();
                auth.validate()
                    .map_err(|(field, reason)| invalid(&field, reason))?;
                auth
            },
            dir: {
                let dir = raw.dir.unwrap_or_default();
                dir.validate()
                    .map_err(|(field, reason)| invalid(&field, reason))?;
                dir
            },
            sync: match raw.fsync_period_ms {
                None | Some(0) => SyncPolicy::EveryBatch,
                Some(ms) if ms > FSYNC_PERIOD_MAX_MS => {
                    return Err(invalid(
                        "fsync_period_ms",
                        format!("at most {FSYNC_PERIOD_MAX_MS} (0 = fsync every batch)"),
                    ))
                }
                Some(ms) => SyncPolicy::Periodic(Duration::from_millis(ms)),
            },
            skew_margin: Duration::from_millis(
                raw.skew_margin_ms.unwrap_or(SKEW_MARGIN_DEFAULT_MS),
            ),
            sync_config: crate::config_sync::sync_config(raw.sync)?,
            bootstrap_expect: match raw.bootstrap_expect {
                Some(n) if n == 0 || n > BOOTSTRAP_EXPECT_MAX => {
                    return Err(invalid(
                        "bootstrap_expect",
                        format!("must be in 1..={BOOTSTRAP_EXPECT_MAX}"),
                    ))
                }
                other => other,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawConfig {
        RawConfig {
            name: Some("n1".into()),
            cluster_secret_file: Some("s".into()),
            ..Default::default()
        }
    }

    fn field_of(raw: RawConfig) -> String {
        NodeConfig::resolve(raw, false)
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e.field)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = NodeConfig::resolve(raw(), false).expect("valid");
        assert_eq!(c.bind, c.advertise);
        assert_eq!(c.data_dir, PathBuf::from("geoul-data/n1"));
        assert_eq!(c.membership, MembershipConfig::default());
    }

    #[test]
    fn each_invalid_field_is_named() {
        assert_eq!(
            field_of(RawConfig {
                name: None,
                ..raw()
            }),
            "name"
        );
        assert_eq!(
            field_of(RawConfig {
                name: Some("a b".into()),
                ..raw()
            }),
            "name"
        );
        assert_eq!(
            field_of(RawConfig {
                bind: Some("nope".into()),
                ..raw()
            }),
            "bind"
        );
        assert_eq!(
            field_of(RawConfig {
                bind: Some("127.0.0.1:0".into()),
                ..raw()
            }),
            "bind"
        );
        assert_eq!(
            field_of(RawConfig {
                bind: Some("0.0.0.0:7001".into()),
                ..raw()
            }),
            "advertise"
        );
        assert_eq!(
            field_of(RawConfig {
                admin: Some("127.0.0.1:7001".into()),
                ..raw()
            }),
            "admin"
        );
        assert_eq!(
            field_of(RawConfig {
                seeds: Some(vec!["x:y".into()]),
                ..raw()
            }),
            "seeds"
        );
        assert_eq!(
            field_of(RawConfig {
                cluster_secret_file: None,
                ..raw()
            }),
            "cluster_secret_file"
        );
        for n in [0, BOOTSTRAP_EXPECT_MAX + 1] {
            assert_eq!(
                field_of(RawConfig {
                    bootstrap_expect: Some(n),
                    ..raw()
                }),
                "bootstrap_expect"
            );
        }
        assert_eq!(
            field_of(RawConfig {
                services: Some(vec!["Bad!".into()]),
                ..raw()
            }),
            "services"
        );
        let m = RawMembership {
            probe_rtt_ms: Some(500),
            ..Default::default()
        };
        assert_eq!(
            field_of(RawConfig {
                membership: Some(m),
                ..raw()
            }),
            "membership.probe_rtt_ms"
        );
    }

    #[test]
    fn storage_and_kv_settings_are_validated() {
        let kv = RawKv {
            replication_factor: Some(0),
            ..Default::default()
        };
        assert_eq!(
            field_of(RawConfig {
                kv: Some(kv),
                ..raw()
            }),
            "kv.replication_factor"
        );
        assert_eq!(
            field_of(RawConfig {
                fsync_period_ms: Some(FSYNC_PERIOD_MAX_MS + 1),
                ..raw()
            }),
            "fsync_period_ms"
        );
        let c = NodeConfig::resolve(
            RawConfig {
                fsync_period_ms: Some(10),
                kv: Some(RawKv {
                    replicate_to_all: Some(true),
                    write_ack: Some(Ack::One),
                    ..Default::default()
                }),
                ..raw()
            },
            false,
        )
        .expect("valid");
        assert_eq!(c.sync, SyncPolicy::Periodic(Duration::from_millis(10)));
        assert_eq!(c.kv.replication, Replication::All);
        assert_eq!(c.kv.write_ack, Ack::One);
        assert_eq!(c.services, vec!["kv".to_string()]);
    }

    #[test]
    fn error_line_reads_well() {
        let e = NodeConfig::resolve(
            RawConfig {
                bind: Some("nope".into()),
                ..raw()
            },
            false,
        )
        .expect_err("invalid");
        assert!(e
            .to_string()
            .starts_with("invalid config: bind: \"nope\" is not a host:port"));
    }

    #[test]
    fn secret_from_env_is_accepted() {
        let c = NodeConfig::resolve(
            RawConfig {
                cluster_secret_file: None,
                ..raw()
            },
            true,
        )
        .expect("valid");
        assert_eq!(c.secret_source, SecretSource::Env);
    }

    #[test]
    fn file_parse_errors_name_the_field_and_flags_override() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "name = \"n1\"\nnmae = \"typo\"\n").expect("write");
        let e = RawConfig::from_file(&path).expect_err("unknown field");
        assert!(e.reason.contains("nmae"), "{e}");
        std::fs::write(&path, "name = \"n1\"\nbind = \"127.0.0.1:7005\"\n").expect("write");
        let file = RawConfig::from_file(&path).expect("parses");
        let merged = file.overlay(RawConfig {
            bind: Some("127.0.0.1:7009".into()),
            ..Default::default()
        });
        assert_eq!(merged.name.as_deref(), Some("n1"));
        assert_eq!(merged.bind.as_deref(), Some("127.0.0.1:7009"));
    }
}
