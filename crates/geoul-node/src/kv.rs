//! The `kv` service: a key-value interface over one replicated table, built on
//! the public [`Service`] API like any user service.
//!
//! Owns: the `kv` table declaration, [`KvRequest`]/[`KvResponse`] and their
//! handling ([`KvService`]). Does not own: replication or dispatch (the
//! framework), or the wire (geoul-client).

use std::time::Duration;

use geoul_client::{CallError, CallOptions, ServiceRef};
use geoul_replication::ReadLevel;
use geoul_service::{Context, HandlerError, Limits, PutOptions, Service};
use geoul_store::{Ack, Document, Durability, Replication, TableOptions, TableSpec, Value};
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
        indexes: Vec::new(),
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Writes a document of typed fields under `key` (queryable with
    /// `geoul query 'kv where …'`, indexed per `[kv] indexes`).
    Put {
        /// Key bytes.
        key: Vec<u8>,
        /// The fields.
        fields: Vec<(String, Value)>,
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

fn timeout(ms: u64) -> Duration {
    Duration::from_millis(ms).min(KV_TIMEOUT_MAX)
}

/// The value shown for an entry: its `value` field, or for a document
/// written with `Put`, its fields as `name=value` pairs.
fn value_of(doc: &Document) -> Result<String, HandlerError> {
    match doc.get(VALUE_FIELD) {
        Some(Value::Str(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Ok(doc
            .fields()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(" ")),
    }
}

/// The kv service with its table options.
pub struct KvService {
    options: TableOptions,
    dedup: bool,
}

impl KvService {
    /// A kv service whose table has `options`, deduplicating idempotency keys.
    pub fn new(options: TableOptions) -> Self {
        Self {
            options,
            dedup: true,
        }
    }

    /// The same without the dedup table (calls with an idempotency key are
    /// refused): for clusters, such as simulations, that never retry writes.
    pub fn without_dedup(mut self) -> Self {
        self.dedup = false;
        self
    }
}

impl Service for KvService {
    type Request = KvRequest;
    type Response = KvResponse;

    fn name(&self) -> &str {
        KV
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![spec(self.options.clone())]
    }

    fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            idempotency_window: defaults.idempotency_window.filter(|_| self.dedup),
            ..defaults
        }
    }

    async fn handle(&self, ctx: Context, request: KvRequest) -> Result<KvResponse, HandlerError> {
        match request {
            KvRequest::Set {
                key,
                value,
                ttl_ms,
                ack,
                timeout_ms: _,
            } => {
                let doc = Document::single(VALUE_FIELD, Value::Str(value))
                    .map_err(HandlerError::reject)?;
                write(&ctx, &key, Some(doc), ttl_ms, ack).await
            }
            KvRequest::Put {
                key,
                fields,
                ttl_ms,
                ack,
                timeout_ms: _,
            } => {
                let doc = Document::from_fields(fields).map_err(HandlerError::reject)?;
                write(&ctx, &key, Some(doc), ttl_ms, ack).await
            }
            KvRequest::Del {
                key,
                ack,
                timeout_ms: _,
            } => write(&ctx, &key, None, None, ack).await,
            KvRequest::Get {
                key,
                level,
                timeout_ms: _,
            } => {
                let record = ctx.get_with(KV, &key, level).await?;
                let value = match record {
                    Some(r) => Some(KvValue {
                        value: value_of(&r.doc)?,
                        expires_at_ms: r.expires_at_ms,
                        version: r.version.ts,
                    }),
                    None => None,
                };
                Ok(KvResponse::Value(value))
            }
            KvRequest::Ttl { key, timeout_ms: _ } => {
                let record = ctx.get_with(KV, &key, ReadLevel::Quorum).await?;
                let now = ctx.now_ms();
                let margin = ctx.skew_margin_ms();
                Ok(KvResponse::Ttl(match record {
                    None => KvTtl::Missing,
                    Some(r) => match r.expires_at_ms {
                        None => KvTtl::Forever,
                        Some(at) => {
                            KvTtl::RemainingMs(at.saturating_sub(now.saturating_add(margin)))
                        }
                    },
                }))
            }
            KvRequest::Scan {
                prefix,
                limit,
                timeout_ms: _,
            } => {
                let result = ctx.scan(KV, prefix, limit).await?;
                let pairs = result
                    .records
                    .iter()
                    .map(|r| Ok((r.key.clone(), value_of(&r.doc)?)))
                    .collect::<Result<Vec<_>, HandlerError>>()?;
                Ok(KvResponse::Entries {
                    entries: pairs,
                    partial: result.partial,
                })
            }
        }
    }
}

async fn write(
    ctx: &Context,
    key: &[u8],
    value: Option<Document>,
    ttl_ms: Option<u64>,
    ack: Option<Ack>,
) -> Result<KvResponse, HandlerError> {
    if ttl_ms == Some(0) {
        return Err(HandlerError::reject("ttl must be positive"));
    }
    let options = PutOptions {
        ttl: ttl_ms.map(Duration::from_millis),
        ack,
    };
    let written = ctx.put_with(KV, key, value, options).await?;
    Ok(KvResponse::Written {
        version: written.version.ts,
        origin: written.version.origin,
        acked: u32::try_from(written.acked).unwrap_or(u32::MAX),
        replicas: u32::try_from(written.replicas).unwrap_or(u32::MAX),
    })
}

/// The deadline of a kv request (its own `timeout_ms`, capped).
pub fn deadline_of(request: &KvRequest) -> Duration {
    let ms = match request {
        KvRequest::Set { timeout_ms, .. }
        | KvRequest::Put { timeout_ms, .. }
        | KvRequest::Get { timeout_ms, .. }
        | KvRequest::Del { timeout_ms, .. }
        | KvRequest::Ttl { timeout_ms, .. }
        | KvRequest::Scan { timeout_ms, .. } => *timeout_ms,
    };
    timeout(ms)
}

/// The routing key of a kv request (`None` for scans, which go anywhere).
pub fn routing_key(request: &KvRequest) -> Option<&[u8]> {
    match request {
        KvRequest::Set { key, .. }
        | KvRequest::Put { key, .. }
        | KvRequest::Get { key, .. }
        | KvRequest::Del { key, .. }
        | KvRequest::Ttl { key, .. } => Some(key),
        KvRequest::Scan { .. } => None,
    }
}

/// Whether retrying `request` on another node is harmless: reads only. A
/// `Set` or `Del` applied twice could undo a newer write made in between, so
/// writes are retried only with an idempotency key.
pub fn idempotent(request: &KvRequest) -> bool {
    matches!(
        request,
        KvRequest::Get { .. } | KvRequest::Ttl { .. } | KvRequest::Scan { .. }
    )
}

/// Runs a kv request through a [`ServiceRef`] on the `kv` service, with its
/// deadline and retry policy.
pub async fn call(kv: &ServiceRef, request: &KvRequest) -> Result<KvResponse, CallError> {
    let options = CallOptions {
        timeout: Some(deadline_of(request)),
        idempotent: idempotent(request),
        idempotency_key: None,
    };
    kv.call_with(routing_key(request), request, options).await
}

/// A kv request as one raw client frame (for callers holding a bare transport
/// connection rather than a [`ServiceRef`]: tests, tools).
pub fn encode_call(request: &KvRequest) -> Result<bytes::Bytes, String> {
    let payload = postcard::to_stdvec(request).map_err(|e| e.to_string())?;
    let timeout_ms = u32::try_from(deadline_of(request).as_millis())
        .unwrap_or(u32::MAX)
        .clamp(1, geoul_client::wire::CALL_TIMEOUT_MAX_MS);
    let call = geoul_client::wire::Call {
        service: KV.to_string(),
        key: routing_key(request).map(<[u8]>::to_vec),
        payload,
        timeout_ms,
        idempotency_key: None,
        session: Default::default(),
        json: false,
    };
    geoul_client::wire::encode_request(&geoul_client::wire::ApiRequest::Call(call))
        .map_err(|e| e.to_string())
}

/// Decodes the answer to [`encode_call`]; a service failure becomes its
/// one-line reason.
pub fn decode_reply(bytes: &[u8]) -> Result<KvResponse, String> {
    use geoul_client::wire::ApiResponse;
    match geoul_client::wire::decode_response(bytes).map_err(|e| e.to_string())? {
        ApiResponse::Reply(reply) => {
            postcard::from_bytes(&reply.payload).map_err(|e| e.to_string())
        }
        ApiResponse::Failed(f) => Err(f.to_string()),
        ApiResponse::Topology(_) | ApiResponse::Rows(_) => Err("unexpected answer".into()),
    }
}
