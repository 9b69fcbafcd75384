//! One sender per peer that turns concurrent writes into batches.
//!
//! Owns: the per-peer queue (bounded: callers wait for room within their
//! deadline), batching (whatever queued while earlier batches were in flight goes
//! out together), and the bound on batches in flight per peer. Does not own: ack
//! counting (the write path waits on each entry's own completion).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use geoul_store::Change;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::messages::{ReplicaLink, ReplicateBatch, BATCH_BYTES_MAX, BATCH_ENTRIES_MAX};
use crate::metrics::ReplicationMetrics;

/// Entries queued per peer. A peer that falls this far behind makes writers wait
/// (and eventually miss their deadline) instead of growing memory.
pub const PEER_QUEUE_ENTRIES_MAX: usize = 8192;

/// Batches in flight per peer. Enough to keep a LAN link busy while the replica
/// applies the previous batch; more only queues inside the replica.
pub const INFLIGHT_BATCHES_PER_PEER: usize = 4;

/// How long one batch may take end to end before its entries count as not acked.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Outcome of one entry sent to one peer.
pub type EntryAck = Result<(), String>;

struct Pending {
    table: String,
    change: Change,
    done: oneshot::Sender<EntryAck>,
}

/// Handle to a peer's batching task.
#[derive(Clone)]
pub struct PeerBatcher {
    queue: mpsc::Sender<Pending>,
}

impl PeerBatcher {
    /// Starts the task that sends to `addr` through `link`.
    pub fn spawn<L: ReplicaLink>(
        addr: SocketAddr,
        link: Arc<L>,
        metrics: ReplicationMetrics,
    ) -> Self {
        let (queue, rx) = mpsc::channel(PEER_QUEUE_ENTRIES_MAX);
        tokio::spawn(run(addr, link, rx, metrics));
        Self { queue }
    }

    /// Queues `change`; the receiver completes when the peer applied it, refused
    /// it, or could not be reached. Waits for queue room until `deadline`.
    pub async fn submit(
        &self,
        table: &str,
        change: Change,
        deadline: Instant,
    ) -> oneshot::Receiver<EntryAck> {
        enqueue(&self.queue, table, change, deadline, "peer sender stopped").await
    }
}

/// Queues one entry, waiting for room until `deadline`. If the queue stays full
/// until then, the receiver reports a closed channel, which callers count as
/// not acked; if the task is gone, it reports `stopped`.
async fn enqueue(
    queue: &mpsc::Sender<Pending>,
    table: &str,
    change: Change,
    deadline: Instant,
    stopped: &str,
) -> oneshot::Receiver<EntryAck> {
    let (done, rx) = oneshot::channel();
    let pending = Pending {
        table: table.to_string(),
        change,
        done,
    };
    if let Ok(Err(mpsc::error::SendError(p))) =
        tokio::time::timeout_at(deadline, queue.send(pending)).await
    {
        let _ = p.done.send(Err(stopped.to_string()));
    }
    rx
}

async fn run<L: ReplicaLink>(
    addr: SocketAddr,
    link: Arc<L>,
    mut rx: mpsc::Receiver<Pending>,
    metrics: ReplicationMetrics,
) {
    let inflight = Arc::new(Semaphore::new(INFLIGHT_BATCHES_PER_PEER));
    while let Some(first) = rx.recv().await {
        let mut bytes = first.change.wire_bytes();
        let mut batch = vec![first];
        while batch.len() < BATCH_ENTRIES_MAX && bytes < BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.change.wire_bytes();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        metrics.batch_entries.observe(batch.len() as f64);
        let link = link.clone();
        tokio::spawn(async move {
            let (items, dones): (Vec<(String, Change)>, Vec<oneshot::Sender<EntryAck>>) = batch
                .into_iter()
                .map(|p| ((p.table, p.change), p.done))
                .unzip();
            let result = link
                .replicate(addr, ReplicateBatch { items }, BATCH_TIMEOUT)
                .await;
            drop(permit);
            match result {
                Ok(ack) => {
                    let mut refused: std::collections::HashMap<u32, String> =
                        ack.refused.into_iter().collect();
                    for (i, done) in dones.into_iter().enumerate() {
                        let outcome = match refused.remove(&(i as u32)) {
                            Some(reason) => Err(reason),
                            None => Ok(()),
                        };
                        let _ = done.send(outcome);
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %addr, error = %e, "replication batch failed");
                    for done in dones {
                        let _ = done.send(Err(e.to_string()));
                    }
                }
            }
        });
    }
}

/// Applies this node's own share of writes in batches, like a peer would: many
/// concurrent writes whose replica set includes this node cost one durable
/// commit instead of one each.
#[derive(Clone)]
pub struct LocalApplier {
    queue: mpsc::Sender<Pending>,
}

impl LocalApplier {
    /// Starts the task applying to `store`.
    pub fn spawn(store: Arc<crate::local::LocalStore>, metrics: ReplicationMetrics) -> Self {
        let (queue, mut rx) = mpsc::channel::<Pending>(PEER_QUEUE_ENTRIES_MAX);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH_ENTRIES_MAX {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                metrics.batch_entries.observe(batch.len() as f64);
                let (items, dones): (Vec<(String, Change)>, Vec<oneshot::Sender<EntryAck>>) = batch
                    .into_iter()
                    .map(|p| ((p.table, p.change), p.done))
                    .unzip();
                let results = store.apply_changes(items);
                for (result, done) in results.into_iter().zip(dones) {
                    let _ = done.send(result.map(|_| ()));
                }
            }
        });
        Self { queue }
    }

    /// Queues `change` for local apply; completes when applied (and persisted).
    pub async fn submit(
        &self,
        table: &str,
        change: Change,
        deadline: Instant,
    ) -> oneshot::Receiver<EntryAck> {
        enqueue(
            &self.queue,
            table,
            change,
            deadline,
            "local applier stopped",
        )
        .await
    }
}
