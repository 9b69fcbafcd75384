//! The instance directory's requests and answers, and [`DirClient`], the
//! typed way to call it through a `ServiceRef`.
//!
//! Owns: [`DirRequest`], [`DirResponse`], [`DirDenied`], [`SearchPage`],
//! [`DirError`] and the routing/retry rule of each request. Does not own:
//! what the requests do (`service`).
//!
//! Routing: requests about one instance go by its id's slot (with `All`
//! every directory node holds it, so the nearest node answers); searches go
//! to a random directory node, which answers from its own copy where it is
//! synced and asks other nodes for the rest. Every request but `reserve` is
//! idempotent (absolute values, not increments), so the ref retries them on
//! another node after a timeout; `reserve` carries an idempotency key, so
//! its retries are answered once. Times are Unix milliseconds.

use std::time::Duration;

use geoul_client::{CallError, CallOptions, ServiceRef};
use serde::{Deserialize, Serialize};

use crate::instance::{Instance, InstanceSpec, InstanceUpdate};
pub use crate::watch::{LeaveReason, WatchEvent};

/// The service's name.
pub const DIR: &str = "instance-directory";

/// Deadline of a directory call unless the client sets one.
pub const DIR_TIMEOUT: Duration = Duration::from_secs(5);

/// A request to the directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DirRequest {
    /// Publishes an instance (or replaces what was published under its id).
    Register {
        /// The instance id.
        id: String,
        /// What to publish.
        instance: InstanceSpec,
        /// Lifetime between renewals, ms (the directory's default if absent).
        ttl_ms: Option<u64>,
    },
    /// Changes some fields of a live instance (and renews it).
    Update {
        /// The instance id.
        id: String,
        /// The changes.
        changes: InstanceUpdate,
    },
    /// Renews a live instance for another TTL (a heartbeat: only the id,
    /// its version and the new expiry travel to the replicas).
    Renew {
        /// The instance id.
        id: String,
    },
    /// Removes an instance.
    Remove {
        /// The instance id.
        id: String,
    },
    /// One live instance.
    Get {
        /// The instance id.
        id: String,
    },
    /// Takes `slots` seats of a live instance: raises its `players` only
    /// while it stays within `max_players`, exactly once cluster-wide however
    /// many race (not idempotent: `DirClient` sends an idempotency key).
    Reserve {
        /// The instance id.
        id: String,
        /// Seats to take (1 or more).
        slots: u32,
    },
    /// Starts a watch of a filter on the node that gets it: a snapshot of the
    /// matching instances now, then events through `watch_poll` on that node
    /// (use [`DirClient::watch`]).
    Watch {
        /// A filter (no `order by` or `limit`); empty: every instance.
        query: String,
    },
    /// The events of a watch from sequence `after` on, waiting up to
    /// `wait_ms` for some; `resync` when the watch is gone or fell behind.
    WatchPoll {
        /// The watch.
        watch: u64,
        /// The first sequence number not yet received.
        after: u64,
        /// Longest wait for an event, ms.
        wait_ms: u32,
    },
    /// Live instances matching a query, in its order, one page.
    Search {
        /// `[FILTER] [order by F [asc|desc], …] [limit N]`.
        query: String,
        /// The `next` cursor of the previous page.
        after: Option<String>,
    },
}

/// A page of search results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    /// Matching live instances, in the query's order.
    pub entries: Vec<Instance>,
    /// Some slots could not be answered: entries may be missing (never
    /// silently).
    pub partial: bool,
    /// Cursor of the next page, when this one is full.
    pub next: Option<String>,
    /// The node that answered.
    pub node: String,
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirResponse {
    /// Registered, updated or renewed: live until `expires_at`.
    Live {
        /// The instance id.
        id: String,
        /// When it disappears unless renewed.
        expires_at: u64,
    },
    /// Removed (`existed`: it was live).
    Removed {
        /// Whether a live instance was removed.
        existed: bool,
    },
    /// One instance.
    Instance(Instance),
    /// A page of search results.
    Found(SearchPage),
    /// A watch started on `node`.
    Watching {
        /// Its id (poll it on `node`).
        watch: u64,
        /// The node that serves it.
        node: String,
        /// The instances matching now.
        snapshot: Vec<Instance>,
    },
    /// A watch's events, in order; poll again from `next`.
    Events {
        /// The events.
        events: Vec<WatchEvent>,
        /// The sequence number to poll from next.
        next: u64,
    },
    /// Seats taken: the instance now counts `players` of `max_players`.
    Reserved {
        /// The instance id.
        id: String,
        /// Players counted, the new seats included.
        players: u32,
        /// Its capacity.
        max_players: u32,
    },
    /// Refused, with the reason.
    Denied(DirDenied),
}

/// Why the directory refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum DirDenied {
    /// No live instance has this id (never registered, removed, or expired:
    /// a game server whose renewal gets this registers again).
    #[error("no live instance {0:?}")]
    NotFound(String),
    /// A field or the query broke a rule (the message names it).
    #[error("{0}")]
    BadInput(String),
    /// The directory is at its `max_entries`.
    #[error("{0}")]
    Full(String),
    /// A watch must start over with a fresh snapshot (its node restarted,
    /// or it fell behind); [`Watch`] does it by itself.
    #[error("watch must resync: {0}")]
    Resync(String),
    /// Not enough free seats for a reservation.
    #[error("instance {id:?} has {free} free seat(s), asked for {asked}")]
    NoRoom {
        /// The instance.
        id: String,
        /// Seats still free.
        free: u32,
        /// Seats asked for.
        asked: u32,
    },
}

impl DirDenied {
    /// The metric label of the denial.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::BadInput(_) => "bad_input",
            Self::Full(_) => "full",
            Self::NoRoom { .. } => "no_room",
            Self::Resync(_) => "resync",
        }
    }
}

/// Why a directory call failed.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory refused it.
    #[error(transparent)]
    Denied(#[from] DirDenied),
    /// The call did not complete (no replica, deadline, …).
    #[error(transparent)]
    Call(#[from] CallError),
    /// An answer of the wrong kind (a version mismatch).
    #[error("unexpected answer from the directory: {0}")]
    Unexpected(&'static str),
}

impl DirRequest {
    /// The routing key: the instance id, or none (any node) for searches.
    pub fn routing_key(&self) -> Option<&[u8]> {
        match self {
            Self::Register { id, .. }
            | Self::Update { id, .. }
            | Self::Renew { id }
            | Self::Remove { id }
            | Self::Get { id }
            | Self::Reserve { id, .. } => Some(id.as_bytes()),
            Self::Search { .. } | Self::Watch { .. } | Self::WatchPoll { .. } => None,
        }
    }

    /// Whether a retry after a lost reply is harmless (every request but
    /// `reserve` sets absolute values).
    pub fn idempotent(&self) -> bool {
        !matches!(self, Self::Reserve { .. })
    }
}

fn unexpected(r: &DirResponse) -> DirError {
    DirError::Unexpected(match r {
        DirResponse::Live { .. } => "live",
        DirResponse::Removed { .. } => "removed",
        DirResponse::Instance(_) => "instance",
        DirResponse::Found(_) => "found",
        DirResponse::Reserved { .. } => "reserved",
        DirResponse::Watching { .. } => "watching",
        DirResponse::Events { .. } => "events",
        DirResponse::Denied(_) => "denied",
    })
}

/// Typed calls to the directory over a `ServiceRef`.
#[derive(Clone)]
pub struct DirClient {
    service: ServiceRef,
    timeout: Duration,
}

impl DirClient {
    /// A client over `service` (a ref to [`DIR`]).
    pub fn new(service: ServiceRef) -> Self {
        Self {
            service,
            timeout: DIR_TIMEOUT,
        }
    }

    /// Sets the deadline of each call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends any request.
    pub async fn request(&self, request: &DirRequest) -> Result<DirResponse, DirError> {
        // A reservation retried after a lost reply must not take its seats
        // twice: the node remembers the key's answer.
        let idempotency_key = (!request.idempotent()).then(|| rand::random::<[u8; 16]>().to_vec());
        let options = CallOptions {
            timeout: Some(self.timeout),
            idempotent: request.idempotent(),
            idempotency_key,
        };
        let response: DirResponse = self
            .service
            .call_with(request.routing_key(), request, options)
            .await?;
        match response {
            DirResponse::Denied(d) => Err(DirError::Denied(d)),
            other => Ok(other),
        }
    }

    async fn live(&self, request: DirRequest) -> Result<u64, DirError> {
        match self.request(&request).await? {
            DirResponse::Live { expires_at, .. } => Ok(expires_at),
            other => Err(unexpected(&other)),
        }
    }

    /// Publishes `instance` under `id`; returns when it expires.
    pub async fn register(
        &self,
        id: &str,
        instance: InstanceSpec,
        ttl: Option<Duration>,
    ) -> Result<u64, DirError> {
        self.live(DirRequest::Register {
            id: id.into(),
            instance,
            ttl_ms: ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        })
        .await
    }

    /// Changes fields of `id` (and renews it); returns when it expires.
    pub async fn update(&self, id: &str, changes: InstanceUpdate) -> Result<u64, DirError> {
        self.live(DirRequest::Update {
            id: id.into(),
            changes,
        })
        .await
    }

    /// Renews `id`; returns when it expires.
    pub async fn renew(&self, id: &str) -> Result<u64, DirError> {
        self.live(DirRequest::Renew { id: id.into() }).await
    }

    /// Removes `id`; whether it was live.
    pub async fn remove(&self, id: &str) -> Result<bool, DirError> {
        match self.request(&DirRequest::Remove { id: id.into() }).await? {
            DirResponse::Removed { existed } => Ok(existed),
            other => Err(unexpected(&other)),
        }
    }

    /// The live instance `id`.
    pub async fn get(&self, id: &str) -> Result<Instance, DirError> {
        match self.request(&DirRequest::Get { id: id.into() }).await? {
            DirResponse::Instance(i) => Ok(i),
            other => Err(unexpected(&other)),
        }
    }

    /// Takes `slots` seats of `id`; the players counted and the capacity.
    pub async fn reserve(&self, id: &str, slots: u32) -> Result<(u32, u32), DirError> {
        let request = DirRequest::Reserve {
            id: id.into(),
            slots,
        };
        match self.request(&request).await? {
            DirResponse::Reserved {
                players,
                max_players,
                ..
            } => Ok((players, max_players)),
            other => Err(unexpected(&other)),
        }
    }

    /// One page of a search.
    pub async fn search(&self, query: &str, after: Option<&str>) -> Result<SearchPage, DirError> {
        let request = DirRequest::Search {
            query: query.into(),
            after: after.map(Into::into),
        };
        match self.request(&request).await? {
            DirResponse::Found(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }
}

/// What a [`Watch`] yields.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchUpdate {
    /// The instances matching when the watch started.
    Snapshot(Vec<Instance>),
    /// A change of the result.
    Event(WatchEvent),
    /// The watch started over (its node died, or it fell behind): forget
    /// what you had; these are the instances matching now.
    Resync {
        /// Why.
        reason: String,
        /// The instances matching now.
        snapshot: Vec<Instance>,
    },
}

/// A subscription to a filter: entries entering, changing and leaving its
/// result, in order per instance, with a resync (never silence) when its
/// node dies or it falls behind.
pub struct Watch {
    dir: DirClient,
    query: String,
    watch: u64,
    node: String,
    next: u64,
    pending: std::collections::VecDeque<WatchUpdate>,
}

/// How long one poll waits for events.
const WATCH_POLL_WAIT: Duration = Duration::from_secs(5);

impl DirClient {
    async fn start_watch(&self, query: &str) -> Result<(u64, String, Vec<Instance>), DirError> {
        let request = DirRequest::Watch {
            query: query.into(),
        };
        match self.request(&request).await? {
            DirResponse::Watching {
                watch,
                node,
                snapshot,
            } => Ok((watch, node, snapshot)),
            other => Err(unexpected(&other)),
        }
    }

    /// Watches `query` (a filter): the first update is the snapshot.
    pub async fn watch(&self, query: &str) -> Result<Watch, DirError> {
        let (watch, node, snapshot) = self.start_watch(query).await?;
        Ok(Watch {
            dir: self.clone(),
            query: query.into(),
            watch,
            node,
            next: 0,
            pending: [WatchUpdate::Snapshot(snapshot)].into(),
        })
    }
}

impl Watch {
    /// The node serving the watch now.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The next update (waits for one).
    pub async fn next(&mut self) -> Result<WatchUpdate, DirError> {
        loop {
            if let Some(u) = self.pending.pop_front() {
                return Ok(u);
            }
            let poll = DirRequest::WatchPoll {
                watch: self.watch,
                after: self.next,
                wait_ms: u32::try_from(WATCH_POLL_WAIT.as_millis()).unwrap_or(u32::MAX),
            };
            let answer: Result<DirResponse, geoul_client::CallError> = self
                .dir
                .service
                .call_on(&self.node, &poll, WATCH_POLL_WAIT + Duration::from_secs(2))
                .await;
            let reason = match answer {
                Ok(DirResponse::Events { events, next }) => {
                    self.next = next;
                    self.pending
                        .extend(events.into_iter().map(WatchUpdate::Event));
                    continue;
                }
                Ok(DirResponse::Denied(DirDenied::Resync(why))) => why,
                Ok(other) => return Err(unexpected(&other)),
                Err(e) => format!("{} is unreachable: {e}", self.node),
            };
            // Start over, on whichever node takes it.
            let (watch, node, snapshot) = self.dir.start_watch(&self.query).await?;
            self.watch = watch;
            self.node = node;
            self.next = 0;
            return Ok(WatchUpdate::Resync { reason, snapshot });
        }
    }
}
