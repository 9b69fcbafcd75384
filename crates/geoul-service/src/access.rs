//! [`StoreAccess`] over a node's [`Replicator`].
//!
//! Owns: mapping replication errors to [`StoreError`]s. Does not own: the
//! read and write paths themselves.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use geoul_client::wire::Stamp;
use geoul_replication::query::QueryError;
use geoul_replication::{
    ReadError, ReadLevel, ReplicaLink, Replicator, TouchRequest, WriteError, WriteRequest,
};
use geoul_store::{Entry, Key, Timestamp, Version};

use crate::context::{StoreAccess, StoreError, TouchOp, WriteOp, Written};

/// The replicated store of a node, for handlers.
pub struct ReplicatorAccess<L: ReplicaLink>(pub Arc<Replicator<L>>);

fn read_error(e: ReadError) -> StoreError {
    match e {
        ReadError::UnknownTable(t) => StoreError::UnknownTable(t),
        ReadError::Behind { .. } => StoreError::Behind(e.to_string()),
        ReadError::NoLiveReplica(_) | ReadError::NotEnoughReplicas { .. } => {
            StoreError::Unavailable(e.to_string())
        }
    }
}

fn write_error(e: WriteError) -> StoreError {
    match e {
        WriteError::UnknownTable(t) => StoreError::UnknownTable(t),
        WriteError::Doc(d) => StoreError::BadDocument(d.to_string()),
        WriteError::TableFull { .. } => StoreError::TableFull(e.to_string()),
        WriteError::NoLiveReplica(_) | WriteError::AckNotReached { .. } => {
            StoreError::Unavailable(e.to_string())
        }
    }
}

impl<L: ReplicaLink> StoreAccess for ReplicatorAccess<L> {
    fn read(
        &self,
        table: &str,
        key: Key,
        level: ReadLevel,
        floor: Option<Version>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<Entry>, StoreError>> {
        let replicator = self.0.clone();
        let table = table.to_string();
        Box::pin(async move {
            replicator
                .read_stored_at_least(&table, key, level, floor, timeout)
                .await
                .map_err(read_error)
        })
    }

    fn write(&self, op: WriteOp) -> BoxFuture<'static, Result<Written, StoreError>> {
        let replicator = self.0.clone();
        Box::pin(async move {
            let outcome = replicator
                .write(WriteRequest {
                    table: op.table,
                    key: op.key,
                    value: op.value,
                    ttl: op.ttl,
                    ack: op.ack,
                    timeout: op.timeout,
                })
                .await
                .map_err(write_error)?;
            Ok(Written {
                version: Stamp {
                    ts: outcome.version.ts.raw(),
                    origin: outcome.version.origin.raw(),
                },
                acked: outcome.acked,
                replicas: outcome.replicas,
            })
        })
    }

    fn touch(&self, op: TouchOp) -> BoxFuture<'static, Result<Written, StoreError>> {
        let replicator = self.0.clone();
        Box::pin(async move {
            let outcome = replicator
                .touch(TouchRequest {
                    table: op.table,
                    key: op.key,
                    version: op.version,
                    ttl: op.ttl,
                    ack: op.ack,
                    timeout: op.timeout,
                })
                .await
                .map_err(write_error)?;
            Ok(Written {
                version: Stamp {
                    ts: outcome.version.ts.raw(),
                    origin: outcome.version.origin.raw(),
                },
                acked: outcome.acked,
                replicas: outcome.replicas,
            })
        })
    }

    fn subscribe(
        &self,
        table: &str,
    ) -> Option<tokio::sync::broadcast::Receiver<Arc<geoul_store::Change>>> {
        self.0.store().table(table).map(|h| h.subscribe())
    }

    fn observe(&self, ts: u64) {
        if ts == 0 {
            return;
        }
        // A session floor from a clock too far ahead is refused (and counted)
        // by the HLC, like any remote timestamp.
        let _ = self.0.store().hlc().observe(Timestamp::from_raw(ts));
    }

    fn now_ms(&self) -> u64 {
        self.0.store().hlc().wall_ms()
    }

    fn hlc_now(&self) -> u64 {
        self.0.store().hlc().now().raw()
    }

    fn query(
        &self,
        query: geoul_query::Query,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<geoul_client::QueryAnswer, StoreError>> {
        let replicator = self.0.clone();
        Box::pin(async move {
            let me = replicator.placement_me();
            match replicator.query(&query, timeout).await {
                Ok(result) => Ok(crate::query::answer(result, me)),
                Err(QueryError::UnknownTable(t)) => Err(StoreError::UnknownTable(t)),
                Err(e) => Err(StoreError::BadQuery(e.to_string())),
            }
        })
    }

    fn skew_margin_ms(&self) -> u64 {
        self.0.store().skew_margin_ms()
    }

    fn hosts_seen(&self, table: &str) -> (usize, usize) {
        self.0.hosts_seen(table)
    }

    fn majority_contact_ms(&self, table: &str) -> Option<u64> {
        self.0.store().table(table)?.sync().majority_contact_ms()
    }

    fn scan(
        &self,
        table: &str,
        prefix: Vec<u8>,
        limit: u32,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<(Vec<Entry>, bool), StoreError>> {
        let replicator = self.0.clone();
        let table = table.to_string();
        Box::pin(async move {
            let result = replicator
                .scan(&table, prefix, limit, timeout)
                .await
                .map_err(read_error)?;
            Ok((result.entries, result.partial))
        })
    }
}
