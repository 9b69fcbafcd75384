//! Watches: a spectator client subscribes to a filter and is told which
//! instances enter, change and leave its result, instead of polling.
//!
//! Owns: [`Watchers`] (the watches one node serves), each watch's member
//! set, event buffer and task, and the `watch` / `watch_poll` requests.
//! Does not own: the client's side (`api::Watch`) or where changes come
//! from (the framework's change feed of the node's table).
//!
//! A watch lives on the node that started it. It subscribes to the changes
//! that node applies to the instance table (its own writes, replication,
//! sync — every write reaches every node with `All`), takes a snapshot of
//! the matching instances, then turns each change into an event: `enter`,
//! `change` (a newer version), or `leave` (removed, expired, or no longer
//! matching). A change of a key is only ever newer than the previous one,
//! so events of one instance come in version order; replication delivers
//! each key's changes to a peer in write order, so every version gets its
//! event. Only a version this node never received (it was cut off, and
//! repair ships only the latest) has none — the latest always does.
//! Renewals extend a
//! member's expiry silently; expiry itself is noticed by a timer. The
//! client long-polls for events with a sequence number; events are kept
//! until acknowledged, at most [`WATCH_BUFFER`] — past that, or when the
//! node's change feed overflowed, the next poll answers `resync` (never
//! silence), as does a poll to a node that no longer knows the watch (it
//! restarted). The client then starts over with a fresh snapshot, on any
//! node. A watch nobody polls for [`WATCH_IDLE`] is dropped.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use geoul_client::query_lang::{Expr, Query};
use geoul_service::{ChangeFeed, Context, FeedEvent, HandlerError};
use geoul_store::{Change, Document};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::{DirDenied, DirResponse};
use crate::config::INSTANCES;
use crate::instance::{from_doc, Instance};

/// Events one watch holds for its client; one more and it must resync.
pub const WATCH_BUFFER: usize = 1024;
/// Events one poll returns.
pub const POLL_EVENTS_MAX: usize = 256;
/// A watch not polled for this long is dropped.
pub const WATCH_IDLE: Duration = Duration::from_secs(30);
/// Longest a poll waits for events.
pub const POLL_WAIT_MAX: Duration = Duration::from_secs(10);
/// Most instances a watch's snapshot holds; a broader filter is refused.
pub const SNAPSHOT_MAX: u32 = 10_000;

/// Why an instance left a watch's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It was removed.
    Removed,
    /// Its TTL ran out (its game server stopped renewing).
    Expired,
    /// It changed and no longer matches the filter.
    NoLongerMatches,
}

/// One change of a watch's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchEvent {
    /// An instance now matches.
    Enter(Instance),
    /// A matching instance changed (a newer version).
    Change(Instance),
    /// An instance left the result.
    Leave {
        /// The instance id.
        id: String,
        /// Why.
        reason: LeaveReason,
    },
}

/// (HLC timestamp, origin): the order of an entry's versions.
type Ver = (u64, u64);

struct Member {
    version: Ver,
    expires_at: Option<u64>,
}

#[derive(Default)]
struct State {
    events: VecDeque<(u64, WatchEvent)>,
    next_seq: u64,
    resync: Option<String>,
    members: HashMap<String, Member>,
    expiries: BTreeSet<(u64, String)>,
}

impl State {
    fn push(&mut self, event: WatchEvent) {
        if self.resync.is_some() {
            return;
        }
        if self.events.len() >= WATCH_BUFFER {
            self.fail(format!(
                "the watch fell {WATCH_BUFFER} events behind its client"
            ));
            return;
        }
        self.events.push_back((self.next_seq, event));
        self.next_seq += 1;
    }

    fn fail(&mut self, why: String) {
        if self.resync.is_none() {
            self.resync = Some(why);
            self.events.clear();
        }
    }

    fn insert(&mut self, id: String, version: Ver, expires_at: Option<u64>) {
        self.forget(&id);
        if let Some(at) = expires_at {
            self.expiries.insert((at, id.clone()));
        }
        self.members.insert(
            id,
            Member {
                version,
                expires_at,
            },
        );
    }

    fn forget(&mut self, id: &str) -> bool {
        match self.members.remove(id) {
            Some(m) => {
                if let Some(at) = m.expires_at {
                    self.expiries.remove(&(at, id.to_string()));
                }
                true
            }
            None => false,
        }
    }
}

/// One watch.
struct Watcher {
    state: Mutex<State>,
    notify: Notify,
    last_poll: Mutex<Instant>,
}

impl Watcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn polled(&self) {
        *self
            .last_poll
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn idle(&self) -> bool {
        self.last_poll
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            > WATCH_IDLE
    }

    /// Turns one applied change into events.
    fn apply(&self, change: &Change, filter: Option<&Expr>, now: u64, margin: u64) {
        let mut st = self.lock();
        match change {
            Change::Touch(t) => {
                let Ok(id) = std::str::from_utf8(t.key.as_bytes()) else {
                    return;
                };
                let ver = (t.version.ts.raw(), t.version.origin.raw());
                if st.members.get(id).is_some_and(|m| m.version == ver) {
                    st.insert(id.to_string(), ver, Some(t.expires_at_ms));
                }
            }
            Change::Put(entry) => {
                let Ok(id) = std::str::from_utf8(entry.key.as_bytes()) else {
                    return;
                };
                let id = id.to_string();
                let ver = (entry.version.ts.raw(), entry.version.origin.raw());
                let known = st.members.get(&id).map(|m| m.version);
                if known.is_some_and(|v| v >= ver) {
                    return;
                }
                let doc: Option<Document> = entry
                    .visible_at(now, margin)
                    .then(|| entry.value.as_ref().and_then(|v| v.decode().ok()))
                    .flatten();
                let matching = doc.as_ref().filter(|d| filter.is_none_or(|f| f.matches(d)));
                match (matching, known.is_some()) {
                    (Some(doc), was) => {
                        let at = entry.expires_at_ms.unwrap_or(u64::MAX);
                        let Ok(instance) = from_doc(&id, doc, at) else {
                            return;
                        };
                        st.insert(id, ver, entry.expires_at_ms);
                        st.push(if was {
                            WatchEvent::Change(instance)
                        } else {
                            WatchEvent::Enter(instance)
                        });
                    }
                    (None, true) => {
                        let reason = if entry.is_tombstone() {
                            LeaveReason::Removed
                        } else if doc.is_none() {
                            LeaveReason::Expired
                        } else {
                            LeaveReason::NoLongerMatches
                        };
                        st.forget(&id);
                        st.push(WatchEvent::Leave { id, reason });
                    }
                    (None, false) => {}
                }
            }
        }
        drop(st);
        self.notify.notify_waiters();
    }

    /// Members whose expiry (minus the margin) passed leave; returns when
    /// the next one will.
    fn expire(&self, now: u64, margin: u64) -> Option<u64> {
        let mut st = self.lock();
        let mut left = false;
        while let Some((at, id)) = st.expiries.first().cloned() {
            if now.saturating_add(margin) < at {
                drop(st);
                if left {
                    self.notify.notify_waiters();
                }
                return Some(at.saturating_sub(margin));
            }
            st.forget(&id);
            st.push(WatchEvent::Leave {
                id,
                reason: LeaveReason::Expired,
            });
            left = true;
        }
        drop(st);
        if left {
            self.notify.notify_waiters();
        }
        None
    }

    fn fail(&self, why: String) {
        self.lock().fail(why);
        self.notify.notify_waiters();
    }
}

/// The watches one node serves.
pub(crate) struct Watchers {
    map: Mutex<HashMap<u64, Arc<Watcher>>>,
    next: AtomicU64,
    max: usize,
}

impl Watchers {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            // Ids differ across restarts of the node (a poll of an old id
            // must not find a new watch).
            next: AtomicU64::new(rand::random::<u64>() >> 16),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Watcher>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: u64) -> Option<Arc<Watcher>> {
        self.lock().get(&id).cloned()
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Watches served now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Starts a watch of `filter` on this node: subscribes, snapshots, spawns
/// its task.
pub(crate) async fn start(
    watchers: &Arc<Watchers>,
    ctx: &Context,
    filter: Option<Expr>,
) -> Result<DirResponse, HandlerError> {
    if watchers.len() >= watchers.max {
        return Err(HandlerError::NotReady(format!(
            "this node serves its most watches ({}); ask another",
            watchers.max
        )));
    }
    // Subscribe before the snapshot: nothing between the two is missed
    // (what both saw is deduplicated by version).
    let feed = ctx.changes(INSTANCES)?;
    let query = Query {
        table: INSTANCES.into(),
        filter: filter.clone(),
        order: Vec::new(),
        limit: SNAPSHOT_MAX,
        after: None,
    };
    let answer = ctx.query(&query).await?;
    if answer.partial {
        return Err(HandlerError::NotReady(
            "some slots could not be read for the watch's snapshot; retry".into(),
        ));
    }
    if answer.rows.len() >= SNAPSHOT_MAX as usize {
        return Ok(DirResponse::Denied(DirDenied::BadInput(format!(
            "{SNAPSHOT_MAX} or more instances match; narrow the watch's filter"
        ))));
    }
    let mut state = State::default();
    let mut snapshot = Vec::with_capacity(answer.rows.len());
    for row in answer.rows {
        let Ok(id) = String::from_utf8(row.key) else {
            continue;
        };
        let at = row.expires_at_ms.unwrap_or(u64::MAX);
        let Ok(instance) = from_doc(&id, &row.doc, at) else {
            continue;
        };
        state.insert(id, (row.version.ts, row.version.origin), row.expires_at_ms);
        snapshot.push(instance);
    }
    let watcher = Arc::new(Watcher {
        state: Mutex::new(state),
        notify: Notify::new(),
        last_poll: Mutex::new(Instant::now()),
    });
    let id = watchers.next.fetch_add(1, Ordering::Relaxed);
    watchers.lock().insert(id, watcher.clone());
    tokio::spawn(run(watchers.clone(), id, watcher, feed, filter));
    Ok(DirResponse::Watching {
        watch: id,
        node: ctx.node_name().to_string(),
        snapshot,
    })
}

/// A watch's task: changes and expiries into events, until it fails, idles
/// out or the table closes.
async fn run(
    watchers: Arc<Watchers>,
    id: u64,
    watcher: Arc<Watcher>,
    mut feed: ChangeFeed,
    filter: Option<Expr>,
) {
    let margin = feed.skew_margin_ms();
    loop {
        let next_expiry = watcher.expire(feed.now_ms(), margin);
        let wake = next_expiry
            .map(|at| Duration::from_millis(at.saturating_sub(feed.now_ms()).max(1)))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            event = feed.recv() => match event {
                FeedEvent::Change(change) => {
                    watcher.apply(&change, filter.as_ref(), feed.now_ms(), margin);
                }
                FeedEvent::Lagged(n) => {
                    watcher.fail(format!("the node's change feed overflowed ({n} changes missed)"));
                }
                FeedEvent::Closed => watcher.fail("the node closed the table".into()),
            },
            _ = tokio::time::sleep(wake) => {}
        }
        if watcher.idle() {
            watchers.remove(id);
            return;
        }
        if watcher.lock().resync.is_some() {
            // Kept until its client polls (and learns) or it idles out.
            while !watcher.idle() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            watchers.remove(id);
            return;
        }
    }
}

/// Events of watch `id` from sequence `after` on, waiting up to `wait`.
pub(crate) async fn poll(
    watchers: &Watchers,
    ctx: &Context,
    id: u64,
    after: u64,
    wait: Duration,
) -> Result<DirResponse, HandlerError> {
    let Some(watcher) = watchers.get(id) else {
        return Ok(DirResponse::Denied(DirDenied::Resync(
            "this node does not know the watch (it restarted, or the watch idled out)".into(),
        )));
    };
    watcher.polled();
    let wait = wait
        .min(POLL_WAIT_MAX)
        .min(ctx.remaining().saturating_sub(Duration::from_millis(250)));
    let until = Instant::now() + wait;
    loop {
        let notified = watcher.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = watcher.lock();
            if let Some(why) = st.resync.clone() {
                drop(st);
                watchers.remove(id);
                return Ok(DirResponse::Denied(DirDenied::Resync(why)));
            }
            while st.events.front().is_some_and(|(seq, _)| *seq < after) {
                st.events.pop_front();
            }
            if !st.events.is_empty() || Instant::now() >= until {
                let events: Vec<WatchEvent> = st
                    .events
                    .iter()
                    .take(POLL_EVENTS_MAX)
                    .map(|(_, e)| e.clone())
                    .collect();
                let next = st
                    .events
                    .get(events.len().saturating_sub(1))
                    .map_or(after, |(seq, _)| seq + 1)
                    .max(after);
                return Ok(DirResponse::Events { events, next });
            }
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            // One more look, then answer (empty).
            continue;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_turns_into_a_resync_not_a_silent_drop() {
        let mut st = State::default();
        for i in 0..WATCH_BUFFER {
            st.push(WatchEvent::Leave {
                id: format!("i-{i}"),
                reason: LeaveReason::Removed,
            });
        }
        assert!(st.resync.is_none());
        assert_eq!(st.events.len(), WATCH_BUFFER);
        st.push(WatchEvent::Leave {
            id: "one-more".into(),
            reason: LeaveReason::Expired,
        });
        assert!(st.resync.as_deref().is_some_and(|r| r.contains("fell")));
        assert!(st.events.is_empty(), "a resync replaces the buffer");
    }

    #[test]
    fn members_expire_in_order_of_their_expiry() {
        let w = Watcher {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            last_poll: Mutex::new(Instant::now()),
        };
        {
            let mut st = w.lock();
            st.insert("late".into(), (1, 1), Some(5_000));
            st.insert("early".into(), (1, 1), Some(2_000));
            st.insert("never".into(), (1, 1), None);
        }
        // 100 ms margin: "early" is gone from 1 900 ms on.
        assert_eq!(w.expire(1_000, 100), Some(1_900));
        assert_eq!(w.expire(1_900, 100), Some(4_900));
        let st = w.lock();
        assert_eq!(
            st.events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
            vec![WatchEvent::Leave {
                id: "early".into(),
                reason: LeaveReason::Expired
            }]
        );
        assert_eq!(st.members.len(), 2);
    }
}
