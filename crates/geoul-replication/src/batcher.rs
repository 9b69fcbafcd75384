//! One sender per peer that turns concurrent writes into batches.
//!
//! Owns: the per-peer queue (bounded: callers wait for room within their
//! deadline), batching (whatever queued while earlier batches were in flight goes
//! out together), the bound on batches in flight per peer, and per-key order:
//! a change of a key whose earlier change is in a batch still in flight waits
//! for that batch (and the changes queued after it wait too), so a replica applies each key's changes in the order they
//! were written although several batches are in flight (what a node applies
//! is what its change-feed readers — watches — see). Does not own: ack
//! counting (the write path waits on each entry's own completion).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use geoul_store::Change;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
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

/// The keys of the batches in flight to one peer (as hashes of table and
/// key: a collision only makes a change wait needlessly).
struct InFlight {
    keys: Mutex<HashMap<u64, u32>>,
    done: Notify,
    hasher: RandomState,
}

impl InFlight {
    fn new() -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
            done: Notify::new(),
            hasher: RandomState::new(),
        }
    }

    fn hash(&self, p: &Pending) -> u64 {
        self.hasher
            .hash_one((p.table.as_str(), p.change.key().as_bytes()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u32>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no batch in flight holds `h` (each ends within
    /// [`BATCH_TIMEOUT`]).
    async fn wait_clear(&self, h: u64) {
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.lock().contains_key(&h) {
                return;
            }
            done.await;
        }
    }

    fn remove(&self, hashes: &[u64]) {
        {
            let mut keys = self.lock();
            for h in hashes {
                if let Some(n) = keys.get_mut(h) {
                    *n -= 1;
                    if *n == 0 {
                        keys.remove(h);
                    }
                }
            }
        }
        self.done.notify_waiters();
    }
}

async fn run<L: ReplicaLink>(
    addr: SocketAddr,
    link: Arc<L>,
    mut rx: mpsc::Receiver<Pending>,
    metrics: ReplicationMetrics,
) {
    let inflight = Arc::new(Semaphore::new(INFLIGHT_BATCHES_PER_PEER));
    let keys = Arc::new(InFlight::new());
    // A change that must wait for an earlier batch of its key: it starts
    // the next batch (queue order is kept).
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        let h = keys.hash(&first);
        keys.wait_clear(h).await;
        let mut hashes = vec![h];
        let mut bytes = first.change.wire_bytes();
        let mut batch = vec![first];
        {
            // One lock for the whole batch: this loop runs per entry.
            let mut in_flight = keys.lock();
            while batch.len() < BATCH_ENTRIES_MAX && bytes < BATCH_BYTES_MAX {
                let Ok(p) = rx.try_recv() else { break };
                let h = keys.hash(&p);
                if in_flight.contains_key(&h) {
                    carried = Some(p);
                    break;
                }
                hashes.push(h);
                bytes += p.change.wire_bytes();
                batch.push(p);
            }
            for h in &hashes {
                *in_flight.entry(*h).or_insert(0) += 1;
            }
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        metrics.batch_entries.observe(batch.len() as f64);
        let link = link.clone();
        let keys = keys.clone();
        tokio::spawn(async move {
            let (items, dones): (Vec<(String, Change)>, Vec<oneshot::Sender<EntryAck>>) = batch
                .into_iter()
                .map(|p| ((p.table, p.change), p.done))
                .unzip();
            let result = link
                .replicate(addr, ReplicateBatch { items }, BATCH_TIMEOUT)
                .await;
            keys.remove(&hashes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{BatchAck, LinkError};
    use futures::future::BoxFuture;
    use geoul_store::{Entry, Key};

    fn unused<T>() -> BoxFuture<'static, Result<T, LinkError>> {
        Box::pin(async { Err(LinkError("not used by the batcher".into())) })
    }

    /// (key, version ms) of each item of each batch sent.
    type Sent = Arc<Mutex<Vec<Vec<(String, u64)>>>>;

    /// Records the (key, ms) of every batch when it is sent; the first batch
    /// is held until `release` is notified.
    struct HeldLink {
        sent: Sent,
        release: Arc<Notify>,
    }

    impl ReplicaLink for HeldLink {
        fn replicate(
            &self,
            _to: SocketAddr,
            batch: ReplicateBatch,
            _timeout: Duration,
        ) -> BoxFuture<'static, Result<BatchAck, LinkError>> {
            let items: Vec<(String, u64)> = batch
                .items
                .iter()
                .map(|(_, c)| match c {
                    Change::Put(e) => (
                        String::from_utf8_lossy(e.key.as_bytes()).into_owned(),
                        e.version.ts.unix_ms(),
                    ),
                    Change::Touch(t) => (String::from_utf8_lossy(t.key.as_bytes()).into_owned(), 0),
                })
                .collect();
            let first = {
                let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
                sent.push(items);
                sent.len() == 1
            };
            let release = self.release.clone();
            Box::pin(async move {
                if first {
                    release.notified().await;
                }
                Ok(BatchAck {
                    refused: Vec::new(),
                })
            })
        }

        fn read(
            &self,
            _: SocketAddr,
            _: String,
            _: Key,
            _: Duration,
        ) -> BoxFuture<'static, Result<Option<Entry>, LinkError>> {
            unused()
        }

        fn scan(
            &self,
            _: SocketAddr,
            _: String,
            _: Vec<u8>,
            _: u32,
            _: Duration,
        ) -> BoxFuture<'static, Result<crate::scan::ScanPage, LinkError>> {
            unused()
        }

        fn sync(
            &self,
            _: SocketAddr,
            _: crate::sync::SyncRequest,
            _: Duration,
        ) -> BoxFuture<'static, Result<crate::sync::SyncResponse, LinkError>> {
            unused()
        }

        fn query(
            &self,
            _: SocketAddr,
            _: geoul_query::Query,
            _: crate::query::SlotSet,
            _: Duration,
        ) -> BoxFuture<'static, Result<crate::query::QueryPage, LinkError>> {
            unused()
        }
    }

    fn put(key: &str, ms: u64) -> Change {
        Change::Put(crate::local::tests::entry(key, ms, 1))
    }

    #[tokio::test]
    async fn a_keys_second_change_waits_for_the_batch_holding_its_first() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let link = Arc::new(HeldLink {
            sent: sent.clone(),
            release: release.clone(),
        });
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let peer = PeerBatcher::spawn(addr, link, ReplicationMetrics::default());
        let deadline = Instant::now() + Duration::from_secs(10);
        let sent_now = || sent.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let first = peer.submit("t", put("a", 1), deadline).await;
        while sent_now().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // "a" is in flight: a later "a" waits; "b" before it goes out.
        let other = peer.submit("t", put("b", 2), deadline).await;
        let second = peer.submit("t", put("a", 3), deadline).await;
        assert_eq!(other.await, Ok(Ok(())), "another key is not held up");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            sent_now(),
            vec![vec![("a".to_string(), 1)], vec![("b".to_string(), 2)]],
            "the second change of a is held while its first is in flight"
        );
        release.notify_one();
        assert_eq!(first.await, Ok(Ok(())));
        assert_eq!(second.await, Ok(Ok(())));
        assert_eq!(sent_now().last(), Some(&vec![("a".to_string(), 3)]));
    }
}
