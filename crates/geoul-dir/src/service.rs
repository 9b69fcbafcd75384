//! The instance directory: what each request does, on the public `Service`
//! API.
//!
//! Owns: [`DirService`]. Does not own: the entry's fields and document
//! (`instance`), the query checks (`search`) or the settings (`config`).
//!
//! Results, not requests, are replicated: a registration is checked on the
//! node that takes it and only the entry travels, to every directory node
//! (`All`) or to its `copies`. A renewal is a touch (the version it renews
//! and the new expiry, no document), so it can never undo an update that
//! raced it. Searches are the framework's distributed query: a node answers
//! for the slots it has synced and asks other nodes for the rest, expired
//! entries are never returned (expiry minus the skew margin), and a result
//! that lacks a slot says `partial`.

use std::time::{Duration, Instant};

use geoul_service::{
    Context, HandlerError, Limits, PutOptions, ReadLevel, Record, Service, StoreError,
};
use geoul_store::TableSpec;
use prometheus_client::registry::Registry;

use crate::api::{DirDenied, DirRequest, DirResponse, SearchPage, DIR};
use crate::config::{DirConfig, INSTANCES};
use crate::instance::{check_id, from_doc, Instance, InstanceSpec, InstanceUpdate, Meta};
use crate::metrics::DirMetrics;
use crate::search::parse_search;
use crate::seats::SEATS;

/// The instance directory service.
pub struct DirService {
    config: DirConfig,
    metrics: DirMetrics,
    watchers: std::sync::Arc<crate::watch::Watchers>,
}

impl DirService {
    /// A service with `config` (validated).
    pub fn new(config: DirConfig) -> Result<Self, String> {
        config
            .validate()
            .map_err(|(f, why)| format!("{f}: {why}"))?;
        Ok(Self {
            watchers: std::sync::Arc::new(crate::watch::Watchers::new(config.watchers_max)),
            config,
            metrics: DirMetrics::default(),
        })
    }

    /// Its metrics (shared handles).
    pub fn metrics(&self) -> DirMetrics {
        self.metrics.clone()
    }
}

fn op_name(r: &DirRequest) -> &'static str {
    match r {
        DirRequest::Register { .. } => "register",
        DirRequest::Update { .. } => "update",
        DirRequest::Renew { .. } => "renew",
        DirRequest::Remove { .. } => "remove",
        DirRequest::Get { .. } => "get",
        DirRequest::Search { .. } => "search",
        DirRequest::Reserve { .. } => "reserve",
        DirRequest::Watch { .. } => "watch",
        DirRequest::WatchPoll { .. } => "watch_poll",
    }
}

fn outcome(r: &Result<DirResponse, HandlerError>) -> &'static str {
    match r {
        Ok(DirResponse::Denied(d)) => d.kind(),
        Ok(_) => "ok",
        Err(_) => "error",
    }
}

/// `Ok(Denied(..))` from inside a handler step.
macro_rules! deny {
    ($d:expr) => {
        return Ok(DirResponse::Denied($d))
    };
}

fn bad(e: impl std::fmt::Display) -> DirDenied {
    DirDenied::BadInput(e.to_string())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A write's failure: a full table is the caller's business, the rest the
/// store's.
fn write_failed(e: StoreError) -> Result<DirResponse, HandlerError> {
    match e {
        StoreError::TableFull(why) => Ok(DirResponse::Denied(DirDenied::Full(why))),
        other => Err(other.into()),
    }
}

impl Service for DirService {
    type Request = DirRequest;
    type Response = DirResponse;

    fn name(&self) -> &str {
        DIR
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![self.config.table()]
    }

    fn limits(&self) -> Limits {
        Limits {
            // Only `reserve` needs it (the client sends a key with each).
            idempotency_window: Some(Duration::from_secs(600)),
            request_bytes_max: 64 * 1024,
            ..Limits::default()
        }
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    fn conditional_groups(&self) -> Vec<String> {
        vec![SEATS.to_string()]
    }

    async fn handle(&self, ctx: Context, request: DirRequest) -> Result<DirResponse, HandlerError> {
        let op = op_name(&request);
        let result = match request {
            DirRequest::Register {
                id,
                instance,
                ttl_ms,
            } => self.register(&ctx, &id, instance, ttl_ms).await,
            DirRequest::Update { id, changes } => self.update(&ctx, &id, &changes).await,
            DirRequest::Renew { id } => self.renew(&ctx, &id).await,
            DirRequest::Remove { id } => self.remove(&ctx, &id).await,
            DirRequest::Get { id } => self.get(&ctx, &id).await,
            DirRequest::Reserve { id, slots } => self.reserve(&ctx, &id, slots).await,
            DirRequest::Watch { query } => self.watch(&ctx, &query).await,
            DirRequest::WatchPoll {
                watch,
                after,
                wait_ms,
            } => {
                let wait = Duration::from_millis(u64::from(wait_ms));
                crate::watch::poll(&self.watchers, &ctx, watch, after, wait).await
            }
            DirRequest::Search { query, after } => {
                self.search(&ctx, &query, after.as_deref()).await
            }
        };
        self.metrics.count(op, outcome(&result));
        result
    }
}

impl DirService {
    /// The TTL a registration asks for, checked against the bounds and the
    /// skew margin (an entry hidden a margin before it expires must live
    /// longer than that to be searchable at all).
    fn ttl(&self, ctx: &Context, ttl_ms: Option<u64>) -> Result<Duration, DirDenied> {
        let ttl = ttl_ms.map_or(self.config.ttl_default(), Duration::from_millis);
        let max = Duration::from_secs(self.config.ttl_max_s);
        let floor = Duration::from_millis(ctx.skew_margin_ms().saturating_mul(2).max(1000));
        if ttl < floor || ttl > max {
            return Err(bad(format!(
                "ttl: must be {} ms to {} s (at least 1 s and twice the clock-skew margin), got {} ms",
                ms(floor),
                max.as_secs(),
                ms(ttl)
            )));
        }
        Ok(ttl)
    }

    /// Whether this node may answer from its own copy: it heard from a
    /// majority of directory nodes recently (a node cut off from them could
    /// otherwise show a removed instance for as long as the cut lasts).
    fn in_touch(&self, ctx: &Context) -> bool {
        ctx.in_touch(INSTANCES, self.config.local_read_window())
    }

    /// The live record of `id`: from the nearest serving replica while this
    /// node is in touch with a majority, else at `Quorum`.
    pub(crate) async fn live(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<(Record, Instance)>, HandlerError> {
        let level = if self.in_touch(ctx) {
            ReadLevel::One
        } else {
            ReadLevel::Quorum
        };
        let Some(record) = ctx.get_with(INSTANCES, id.as_bytes(), level).await? else {
            return Ok(None);
        };
        let expires_at = record.expires_at_ms.unwrap_or(u64::MAX);
        let instance = from_doc(id, &record.doc, expires_at)
            .map_err(|e| HandlerError::Unavailable(e.to_string()))?;
        Ok(Some((record, instance)))
    }

    /// Writes the entry of `id`; its TTL restarts (`meta.ttl_ms`).
    pub(crate) async fn write(
        &self,
        ctx: &Context,
        id: &str,
        spec: &InstanceSpec,
        meta: &Meta,
    ) -> Result<DirResponse, HandlerError> {
        let now = meta.updated_at;
        let ttl = Duration::from_millis(meta.ttl_ms);
        let doc = match spec.to_doc(meta) {
            Ok(d) => d,
            Err(e) => deny!(bad(e)),
        };
        let options = PutOptions {
            ttl: Some(ttl),
            ack: None,
        };
        match ctx
            .put_with(INSTANCES, id.as_bytes(), Some(doc), options)
            .await
        {
            Ok(_) => Ok(DirResponse::Live {
                id: id.to_string(),
                expires_at: now.saturating_add(ms(ttl)),
            }),
            Err(e) => write_failed(e),
        }
    }

    async fn register(
        &self,
        ctx: &Context,
        id: &str,
        spec: InstanceSpec,
        ttl_ms: Option<u64>,
    ) -> Result<DirResponse, HandlerError> {
        if let Err(e) = check_id(id) {
            deny!(bad(e));
        }
        if let Err(e) = spec.validate() {
            deny!(bad(e));
        }
        let ttl = match self.ttl(ctx, ttl_ms) {
            Ok(t) => t,
            Err(d) => deny!(d),
        };
        let now = ctx.now_ms();
        let meta = Meta {
            started_at: spec.started_at.unwrap_or(now),
            updated_at: now,
            ttl_ms: ms(ttl),
            registered_at: now,
            seats: false,
        };
        self.write(ctx, id, &spec, &meta).await
    }

    async fn update(
        &self,
        ctx: &Context,
        id: &str,
        changes: &InstanceUpdate,
    ) -> Result<DirResponse, HandlerError> {
        if let Err(e) = check_id(id) {
            deny!(bad(e));
        }
        let Some((_, current)) = self.live(ctx, id).await? else {
            deny!(DirDenied::NotFound(id.to_string()));
        };
        let mut spec = changes.apply_to(current.spec());
        if let Err(e) = spec.validate() {
            deny!(bad(e));
        }
        if current.seats {
            // Reserved seats: the counter decides the player count.
            if changes.players.is_some() || changes.max_players.is_some() {
                self.set_seats(ctx, &current, spec.players, spec.max_players)
                    .await?;
            } else if let (Some(count), _) = self.seat_count(ctx, &current).await? {
                spec.players = count.players;
            }
        }
        let meta = current.meta(ctx.now_ms());
        self.write(ctx, id, &spec, &meta).await
    }

    async fn renew(&self, ctx: &Context, id: &str) -> Result<DirResponse, HandlerError> {
        if let Err(e) = check_id(id) {
            deny!(bad(e));
        }
        let Some((record, current)) = self.live(ctx, id).await? else {
            deny!(DirDenied::NotFound(id.to_string()));
        };
        let ttl = Duration::from_millis(current.ttl_ms);
        let now = ctx.now_ms();
        ctx.touch(
            INSTANCES,
            id.as_bytes(),
            record.version,
            ttl,
            PutOptions::default(),
        )
        .await?;
        Ok(DirResponse::Live {
            id: id.to_string(),
            expires_at: now.saturating_add(ms(ttl)),
        })
    }

    async fn remove(&self, ctx: &Context, id: &str) -> Result<DirResponse, HandlerError> {
        if let Err(e) = check_id(id) {
            deny!(bad(e));
        }
        let existed = ctx.get(INSTANCES, id.as_bytes()).await?.is_some();
        ctx.delete(INSTANCES, id.as_bytes()).await?;
        Ok(DirResponse::Removed { existed })
    }

    async fn get(&self, ctx: &Context, id: &str) -> Result<DirResponse, HandlerError> {
        if let Err(e) = check_id(id) {
            deny!(bad(e));
        }
        match self.live(ctx, id).await? {
            Some((_, instance)) => Ok(DirResponse::Instance(instance)),
            None => Ok(DirResponse::Denied(DirDenied::NotFound(id.to_string()))),
        }
    }

    async fn watch(&self, ctx: &Context, text: &str) -> Result<DirResponse, HandlerError> {
        if self.config.copies.is_some() {
            deny!(bad(
                "watch needs every directory node to hold every entry (leave [dir] copies unset)"
            ));
        }
        let query = match parse_search(text, None, self.config.search_limit_max) {
            Ok(q) => q,
            Err(e) => deny!(bad(e)),
        };
        if !query.order.is_empty() || crate::search::has_limit(text) {
            deny!(bad("a watch takes a filter only (no order by, no limit)"));
        }
        if !self.in_touch(ctx) {
            return Err(HandlerError::NotReady(
                "this node has not heard from a majority of directory nodes lately; \
                 it does not start watches"
                    .into(),
            ));
        }
        crate::watch::start(&self.watchers, ctx, query.filter).await
    }

    async fn search(
        &self,
        ctx: &Context,
        text: &str,
        after: Option<&str>,
    ) -> Result<DirResponse, HandlerError> {
        let query = match parse_search(text, after, self.config.search_limit_max) {
            Ok(q) => q,
            Err(e) => deny!(bad(e)),
        };
        if !self.in_touch(ctx) {
            // Nothing done: the ref asks the next directory node.
            return Err(HandlerError::NotReady(format!(
                "this node has not heard from a majority of directory nodes within {} ms; \
                 it does not answer searches from its own copy",
                self.config.local_read_window_ms
            )));
        }
        let started = Instant::now();
        let answer = ctx.query(&query).await?;
        self.metrics
            .search_seconds
            .observe(started.elapsed().as_secs_f64());
        let mut entries = Vec::with_capacity(answer.rows.len());
        for row in answer.rows {
            let Ok(id) = String::from_utf8(row.key) else {
                continue;
            };
            let expires_at = row.expires_at_ms.unwrap_or(u64::MAX);
            match from_doc(&id, &row.doc, expires_at) {
                Ok(i) => entries.push(i),
                Err(e) => tracing::warn!(id = %id, error = %e, "skipping a malformed instance"),
            }
        }
        self.metrics.search_rows.inc_by(entries.len() as u64);
        if answer.partial {
            self.metrics.search_partial.inc();
        }
        Ok(DirResponse::Found(SearchPage {
            entries,
            partial: answer.partial,
            next: answer.next,
            node: answer.node,
        }))
    }
}
