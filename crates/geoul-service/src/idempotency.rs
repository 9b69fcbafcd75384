//! At-most-once application of calls that carry an idempotency key.
//!
//! Owns: the per-service dedup table (`_idem.<service>`), its records
//! (`pending` while a call runs, then the encoded answer) and their lifetimes.
//! Does not own: running the call (the host).
//!
//! A retry that arrives after the first attempt finished gets the recorded
//! answer without running again, on any node: the record is replicated at
//! `Quorum` like any table. A retry that arrives while the first attempt is
//! still running waits for its answer. Known limit: two attempts that start at
//! the same instant on two nodes can both see no record (last-writer-wins has
//! no create-if-absent); the conditional-write primitive closes that window.

use std::time::Duration;

use geoul_client::wire::ApiResponse;
use geoul_replication::ReadLevel;
use geoul_store::{Ack, Document, Durability, Key, Replication, TableOptions, TableSpec, Value};
use tokio::time::Instant;

use crate::context::{StoreAccess, StoreError, WriteOp};

/// Prefix of dedup tables.
pub const TABLE_PREFIX: &str = "_idem.";
const STATE: &str = "state";
const ANSWER: &str = "answer";
/// How often a retry checks whether the first attempt has finished.
const POLL: Duration = Duration::from_millis(20);
/// How long a `pending` record outlives its call's deadline: a crashed
/// attempt frees the key shortly after the caller gave up on it.
const PENDING_SLACK: Duration = Duration::from_secs(1);

/// The dedup table of `service`, replicated like the service's routing table.
pub fn table_spec(service: &str, routing: Option<&TableOptions>, window: Duration) -> TableSpec {
    TableSpec {
        name: format!("{TABLE_PREFIX}{service}"),
        options: TableOptions {
            replication: routing.map_or(Replication::Factor(3), |o| o.replication),
            write_ack: Ack::Quorum,
            durability: routing.map_or(Durability::Memory, |o| o.durability),
            default_ttl: Some(window),
            max_entries: None,
            indexes: Vec::new(),
        },
    }
}

/// What to do with a keyed call.
pub enum Begin {
    /// Run it (a `pending` record is in place).
    Run,
    /// Already answered: return this.
    Replay(ApiResponse),
}

fn key(bytes: &[u8]) -> Result<Key, StoreError> {
    Key::new(bytes).map_err(|e| StoreError::BadKey(e.to_string()))
}

/// Looks the key up; waits while another attempt runs; marks it pending.
pub async fn begin(
    store: &dyn StoreAccess,
    table: &str,
    idem: &[u8],
    deadline: Instant,
) -> Result<Begin, StoreError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let entry = store
            .read(table, key(idem)?, ReadLevel::Quorum, None, left)
            .await?;
        let (now, margin) = (store.now_ms(), store.skew_margin_ms());
        let live = entry.as_ref().filter(|e| e.visible_at(now, margin));
        let doc = match live.and_then(|e| e.value.as_ref()) {
            Some(v) => v
                .decode()
                .map_err(|e| StoreError::BadDocument(e.to_string()))?,
            None => break,
        };
        match (doc.get(STATE), doc.get(ANSWER)) {
            (Some(Value::Str(s)), Some(Value::Bytes(answer))) if s == "done" => {
                let response = postcard::from_bytes(answer)
                    .map_err(|e| StoreError::BadDocument(e.to_string()))?;
                return Ok(Begin::Replay(response));
            }
            _ if Instant::now() + POLL < deadline => tokio::time::sleep(POLL).await,
            _ => {
                return Err(StoreError::Unavailable(
                    "an earlier attempt with this idempotency key is still running".into(),
                ))
            }
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let pending = Document::single(STATE, Value::Str("pending".into()))
        .map_err(|e| StoreError::BadDocument(e.to_string()))?;
    store
        .write(WriteOp {
            table: table.to_string(),
            key: key(idem)?,
            value: Some(pending),
            ttl: Some(left + PENDING_SLACK),
            ack: None,
            timeout: left,
        })
        .await?;
    Ok(Begin::Run)
}

/// Records the answer of a finished attempt (or clears the pending mark when
/// the attempt failed in a way a retry should run again).
pub async fn finish(
    store: &dyn StoreAccess,
    table: &str,
    idem: &[u8],
    answer: Option<&ApiResponse>,
    window: Duration,
    timeout: Duration,
) -> Result<(), StoreError> {
    let value = match answer {
        Some(answer) => {
            let bytes =
                postcard::to_stdvec(answer).map_err(|e| StoreError::BadDocument(e.to_string()))?;
            Some(
                Document::from_fields([
                    (STATE.to_string(), Value::Str("done".into())),
                    (ANSWER.to_string(), Value::Bytes(bytes.into())),
                ])
                .map_err(|e| StoreError::BadDocument(e.to_string()))?,
            )
        }
        None => None,
    };
    store
        .write(WriteOp {
            table: table.to_string(),
            key: key(idem)?,
            value,
            ttl: Some(window),
            ack: None,
            timeout,
        })
        .await
        .map(|_| ())
}
