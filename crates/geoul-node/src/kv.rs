//! The `kv` service: a thin key-value interface over one replicated table.
//!
//! Owns: the `kv` table declaration, [`KvRequest`]/[`KvResponse`] and their
//! handling. Does not own: replication (the replicator), or the wire (rpc). The
//! next issue moves it onto the public `Service` API.

use std::time::Duration;

use geoul_replication::{ReadLevel, ReplicaLink, Replicator, WriteRequest};
use geoul_store::{Ack, Document, Durability, Key, Replication, TableOptions, TableSpec, Value};
use serde::{Deserialize, Serialize};

/// The service name and its table's name.
pub const KV: &str = "kv";

/// The field a kv document stores its value in.
pub const VALUE_FIELD: &str = "value";

/// Longest deadline a client may ask for: long enough for any write, short
/// enough that a forgotten request cannot hold server resources for long.
pub const KV_TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// Default `kv` table options: three copies, majority acks, on disk.
pub fn default_options() -> TableOptions {
    TableOptions {
        replication: Replication::Factor(3),
        write_ack: Ack::Quorum,
        durability: Durability::Disk,
        default_ttl: None,
        max_entries: None,
    }
}

/// The `kv` table declaration with `options`.
pub fn spec(options: TableOptions) -> TableSpec {
    TableSpec {
        name: KV.to_string(),
        options,
    }
}

/// A request to the kv service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// Writes `value` under `key`.
    Set {
        /// Key bytes.
        key: Vec<u8>,
        /// Value.
        value: String,
        /// Expiry from now.
        ttl_ms: Option<u64>,
        /// Ack level (table default if absent).
        ack: Option<Ack>,
        /// Deadline.
        timeout_ms: u64,
    },
    /// Reads `key`.
    Get {
        /// Key bytes.
        key: Vec<u8>,
        /// Consistency.
        level: ReadLevel,
        /// Deadline.
        timeout_ms: u64,
    },
    /// Deletes `key`.
    Del {
        /// Key bytes.
        key: Vec<u8>,
        /// Ack level.
        ack: Option<Ack>,
        /// Deadline.
        timeout_ms: u64,
    },
    /// Remaining lifetime of `key`.
    Ttl {
        /// Key bytes.
        key: Vec<u8>,
        /// Deadline.
        timeout_ms: u64,
    },
    /// Keys with a prefix.
    Scan {
        /// Prefix bytes.
        prefix: Vec<u8>,
        /// Most results.
        limit: u32,
        /// Deadline.
        timeout_ms: u64,
    },
}

/// A kv answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// A write reached its ack level.
    Written {
        /// The write's version timestamp (raw HLC).
        version: u64,
        /// The write's version origin (node name hash and generation); with
        /// `version` it identifies the write uniquely.
        origin: u64,
        /// Acks received.
        acked: u32,
        /// Replicas of the slot.
        replicas: u32,
    },
    /// A read's result.
    Value(Option<KvValue>),
    /// Remaining lifetime.
    Ttl(KvTtl),
    /// Scan results in key order.
    Entries {
        /// (key, value) pairs.
        entries: Vec<(Vec<u8>, String)>,
        /// Some node did not answer: keys only it holds may be missing.
        partial: bool,
    },
}

/// A value read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvValue {
    /// The value.
    pub value: String,
    /// Its expiry, Unix ms.
    pub expires_at_ms: Option<u64>,
    /// Its version timestamp (raw HLC).
    pub version: u64,
}

/// Remaining lifetime of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvTtl {
    /// No such key.
    Missing,
    /// Never expires.
    Forever,
    /// Milliseconds left (net of the skew margin).
    RemainingMs(u64),
}

fn key(bytes: &[u8]) -> Result<Key, String> {
    Key::new(bytes).map_err(|e| e.to_string())
}

fn timeout(ms: u64) -> Duration {
    Duration::from_millis(ms).min(KV_TIMEOUT_MAX)
}

fn value_of(entry: &geoul_store::Entry) -> Result<String, String> {
    let doc = entry
        .value
        .as_ref()
        .ok_or("no value")?
        .decode()
        .map_err(|e| e.to_string())?;
    match doc.get(VALUE_FIELD) {
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err("kv entry has no value field".into()),
    }
}

/// Serves one kv request through `replicator`.
pub async fn handle<L: ReplicaLink>(
    replicator: &Replicator<L>,
    request: KvRequest,
) -> Result<KvResponse, String> {
    match request {
        KvRequest::Set {
            key: k,
            value,
            ttl_ms,
            ack,
            timeout_ms,
        } => {
            let doc =
                Document::single(VALUE_FIELD, Value::Str(value)).map_err(|e| e.to_string())?;
            write(replicator, key(&k)?, Some(doc), ttl_ms, ack, timeout_ms).await
        }
        KvRequest::Del {
            key: k,
            ack,
            timeout_ms,
        } => write(replicator, key(&k)?, None, None, ack, timeout_ms).await,
        KvRequest::Get {
            key: k,
            level,
            timeout_ms,
        } => {
            let entry = replicator
                .read(KV, key(&k)?, level, timeout(timeout_ms))
                .await
                .map_err(|e| e.to_string())?;
            let value = match entry {
                Some(e) => Some(KvValue {
                    value: value_of(&e)?,
                    expires_at_ms: e.expires_at_ms,
                    version: e.version.ts.raw(),
                }),
                None => None,
            };
            Ok(KvResponse::Value(value))
        }
        KvRequest::Ttl { key: k, timeout_ms } => {
            let entry = replicator
                .read(KV, key(&k)?, ReadLevel::Quorum, timeout(timeout_ms))
                .await
                .map_err(|e| e.to_string())?;
            let now = replicator.store().hlc().wall_ms();
            let margin = replicator.store().skew_margin_ms();
            Ok(KvResponse::Ttl(match entry {
                None => KvTtl::Missing,
                Some(e) => match e.expires_at_ms {
                    None => KvTtl::Forever,
                    Some(at) => KvTtl::RemainingMs(at.saturating_sub(now.saturating_add(margin))),
                },
            }))
        }
        KvRequest::Scan {
            prefix,
            limit,
            timeout_ms,
        } => {
            let result = replicator
                .scan(KV, prefix, limit, timeout(timeout_ms))
                .await
                .map_err(|e| e.to_string())?;
            let pairs = result
                .entries
                .iter()
                .map(|e| Ok((e.key.as_bytes().to_vec(), value_of(e)?)))
                .collect::<Result<Vec<_>, String>>()?;
            Ok(KvResponse::Entries {
                entries: pairs,
                partial: result.partial,
            })
        }
    }
}

async fn write<L: ReplicaLink>(
    replicator: &Replicator<L>,
    key: Key,
    value: Option<Document>,
    ttl_ms: Option<u64>,
    ack: Option<Ack>,
    timeout_ms: u64,
) -> Result<KvResponse, String> {
    if ttl_ms == Some(0) {
        return Err("ttl must be positive".into());
    }
    let outcome = replicator
        .write(WriteRequest {
            table: KV.to_string(),
            key,
            value,
            ttl: ttl_ms.map(Duration::from_millis),
            ack,
            timeout: timeout(timeout_ms),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(KvResponse::Written {
        version: outcome.version.ts.raw(),
        origin: outcome.version.origin.raw(),
        acked: u32::try_from(outcome.acked).unwrap_or(u32::MAX),
        replicas: u32::try_from(outcome.replicas).unwrap_or(u32::MAX),
    })
}
