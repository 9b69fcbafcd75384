//! `sim`: a small service every simulated node hosts, for tests of the service
//! framework itself (routing, contained panics, idempotency keys) and of
//! per-service health.
//!
//! Owns: [`EchoService`] and its request type. Does not own: anything the
//! tests assert.

use std::time::Duration;

use geoul_service::{Context, HandlerError, Limits, Service};
use geoul_store::{Ack, Document, Durability, Replication, TableOptions, TableSpec, Value};
use serde::{Deserialize, Serialize};

/// The service's name.
pub const SIM_SERVICE: &str = "sim";

/// What the echo service does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EchoRequest {
    /// Answers with the bytes.
    Echo(Vec<u8>),
    /// Refuses with the reason.
    Reject(String),
    /// Panics (the host must contain it).
    Panic,
    /// Reads counter `name`, waits `delay_ms`, writes it plus one and answers
    /// the new value: not idempotent, and slow enough to lose its reply.
    CountSlowly {
        /// Counter key.
        name: String,
        /// Pause between the read and the write.
        delay_ms: u64,
    },
    /// The counter's value.
    Read(String),
    /// Increments counter `seen/<serving node>/<tag>` (what `Broadcast` and
    /// `Send` deliver).
    Record(String),
    /// Broadcasts `Record(tag)` to every host of `sim`; answers how many
    /// queued it.
    Broadcast(String),
    /// Sends `Record(tag)` one-way to the replica of `key`.
    Send {
        /// Routing key.
        key: String,
        /// Tag.
        tag: String,
    },
}

/// The counters table.
pub const COUNTERS: &str = "sim.counters";

/// Echoes, refuses, panics and counts on request.
pub struct EchoService {
    /// Keep the counters table and deduplicate idempotency keys (tests of
    /// the framework); without it the service has no table at all, so tests
    /// that do not need it sync nothing for it.
    pub counters: bool,
}

impl Service for EchoService {
    type Request = EchoRequest;
    type Response = Vec<u8>;

    fn name(&self) -> &str {
        SIM_SERVICE
    }

    fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            idempotency_window: defaults.idempotency_window.filter(|_| self.counters),
            // Small, so tests can reach them: two calls at once, two queued.
            concurrency: 2,
            queue: 2,
            ..defaults
        }
    }

    fn tables(&self) -> Vec<TableSpec> {
        if !self.counters {
            return Vec::new();
        }
        vec![TableSpec {
            name: COUNTERS.into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
                indexes: Vec::new(),
            },
        }]
    }

    async fn handle(&self, ctx: Context, request: EchoRequest) -> Result<Vec<u8>, HandlerError> {
        match request {
            EchoRequest::Echo(bytes) => Ok(bytes),
            EchoRequest::Reject(reason) => Err(HandlerError::Rejected(reason)),
            EchoRequest::Panic => panic!("asked to panic"),
            EchoRequest::CountSlowly { name, delay_ms } => {
                let n = count(&ctx, &name).await?;
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let doc = Document::single("n", Value::Int(n + 1)).map_err(HandlerError::reject)?;
                ctx.put(COUNTERS, name.as_bytes(), doc).await?;
                Ok((n + 1).to_le_bytes().to_vec())
            }
            EchoRequest::Read(name) => Ok(count(&ctx, &name).await?.to_le_bytes().to_vec()),
            EchoRequest::Record(tag) => {
                let name = format!("seen/{}/{tag}", ctx.node_name());
                let n = count(&ctx, &name).await?;
                let doc = Document::single("n", Value::Int(n + 1)).map_err(HandlerError::reject)?;
                ctx.put(COUNTERS, name.as_bytes(), doc).await?;
                Ok(Vec::new())
            }
            EchoRequest::Broadcast(tag) => {
                let sent = ctx
                    .service(SIM_SERVICE)
                    .broadcast(&EchoRequest::Record(tag))
                    .await
                    .map_err(|e| HandlerError::Unavailable(e.to_string()))?;
                Ok((sent as i64).to_le_bytes().to_vec())
            }
            EchoRequest::Send { key, tag } => {
                ctx.service(SIM_SERVICE)
                    .send(key, &EchoRequest::Record(tag))
                    .await
                    .map_err(|e| HandlerError::Unavailable(e.to_string()))?;
                Ok(Vec::new())
            }
        }
    }
}

async fn count(ctx: &Context, name: &str) -> Result<i64, HandlerError> {
    let record = ctx
        .get_with(COUNTERS, name.as_bytes(), geoul_service::ReadLevel::Quorum)
        .await?;
    Ok(match record.as_ref().and_then(|r| r.doc.get("n")) {
        Some(Value::Int(n)) => *n,
        _ => 0,
    })
}
