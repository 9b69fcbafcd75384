//! The service host: a node's registry of services and the dispatch of calls.
//!
//! Owns: [`ServiceHost`] — finding the service, its limits (size, concurrency
//! with a bounded queue), the deadline, containing panics, session floors
//! (the node's clock moves past what the caller saw; reads honour the
//! per-entry floors), idempotency keys, metrics. Does not own: the wire
//! (the node's rpc), routing (the caller's `ServiceRef`) or replication.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use geoul_client::wire::{ApiResponse, Call, CallReply, Failure};
use geoul_client::Backend;
use geoul_store::TableSpec;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::context::{Caller, Context, Shared, StoreAccess, Trail};
use crate::idempotency::{self, Begin};
use crate::metrics::{CallLabels, ServiceLabels, ServiceMetrics};
use crate::service::{CallFault, DynService, HandlerError, Limits};

/// Longest service name: the dedup table `_idem.<name>` must fit the table
/// name bound (48).
pub const SERVICE_NAME_BYTES_MAX: usize = 42;

/// Why services could not be hosted.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Two services with one name.
    #[error("service {0:?} is registered twice")]
    Duplicate(String),
    /// A bad name.
    #[error("invalid service name {0:?}: use 1-42 of a-z 0-9 - _ .")]
    BadName(String),
    /// Two services declare the same table.
    #[error("table {table:?} is declared by both {first} and {second}")]
    SharedTable {
        /// Table.
        table: String,
        /// One service.
        first: String,
        /// The other.
        second: String,
    },
    /// Limits out of range.
    #[error("service {0}: concurrency and request size limits must be positive")]
    BadLimits(String),
    /// A conditional group not named `<service>.<name>`.
    #[error("service {service}: conditional group {group:?} must be named {service}.<1-32 of a-z 0-9 _ ->")]
    BadGroup {
        /// Service.
        service: String,
        /// Group.
        group: String,
    },
}

/// Every table a service needs: its own, then its dedup table.
pub fn table_specs(service: &dyn DynService) -> Vec<TableSpec> {
    let mut specs = service.tables();
    let routing = specs.first().map(|s| s.options.clone());
    if let Some(window) = service.limits().idempotency_window {
        specs.push(idempotency::table_spec(
            service.name(),
            routing.as_ref(),
            window,
        ));
    }
    specs
}

/// Checks a set of services before a node declares their tables.
pub fn validate(services: &[Arc<dyn DynService>]) -> Result<(), HostError> {
    let mut tables: HashMap<String, String> = HashMap::new();
    let mut names = Vec::new();
    for s in services {
        let name = s.name();
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        if name.is_empty() || name.len() > SERVICE_NAME_BYTES_MAX || !name.chars().all(ok) {
            return Err(HostError::BadName(name.to_string()));
        }
        if names.contains(&name) {
            return Err(HostError::Duplicate(name.to_string()));
        }
        names.push(name);
        let limits = s.limits();
        if limits.concurrency == 0 || limits.request_bytes_max == 0 {
            return Err(HostError::BadLimits(name.to_string()));
        }
        for group in s.conditional_groups() {
            if !crate::conditional::valid_group_name(name, &group) {
                return Err(HostError::BadGroup {
                    service: name.to_string(),
                    group,
                });
            }
        }
        for spec in table_specs(s.as_ref()) {
            if let Some(first) = tables.insert(spec.name.clone(), name.to_string()) {
                return Err(HostError::SharedTable {
                    table: spec.name,
                    first,
                    second: name.to_string(),
                });
            }
        }
    }
    Ok(())
}

struct Hosted {
    service: Arc<dyn DynService>,
    shared: Arc<Shared>,
    limits: Limits,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    idem_table: String,
}

/// The services of one node.
pub struct ServiceHost {
    node: String,
    services: HashMap<String, Hosted>,
    metrics: ServiceMetrics,
}

impl ServiceHost {
    /// Hosts `services` on node `node`, their tables reached through `store`,
    /// calls to other services through `refs`.
    pub fn new(
        node: &str,
        store: Arc<dyn StoreAccess>,
        cond: Arc<dyn crate::conditional::ConditionalAccess>,
        refs: Arc<dyn Backend>,
        services: Vec<Arc<dyn DynService>>,
        metrics: ServiceMetrics,
    ) -> Result<Self, HostError> {
        validate(&services)?;
        let mut hosted = HashMap::new();
        for service in services {
            let name = service.name().to_string();
            let tables = table_specs(service.as_ref())
                .into_iter()
                .map(|s| s.name)
                .collect();
            let limits = service.limits();
            hosted.insert(
                name.clone(),
                Hosted {
                    shared: Arc::new(Shared {
                        node: node.to_string(),
                        store: store.clone(),
                        cond: cond.clone(),
                        groups: service.conditional_groups(),
                        refs: refs.clone(),
                        service: name.clone(),
                        tables,
                    }),
                    permits: Arc::new(Semaphore::new(limits.concurrency)),
                    waiting: AtomicUsize::new(0),
                    idem_table: format!("{}{name}", idempotency::TABLE_PREFIX),
                    limits,
                    service,
                },
            );
        }
        Ok(Self {
            node: node.to_string(),
            services: hosted,
            metrics,
        })
    }

    /// Names of the hosted services.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.services.keys().cloned().collect();
        names.sort();
        names
    }

    /// The routing table of a hosted service (its first table).
    pub fn routing_table(&self, service: &str) -> Option<TableSpec> {
        self.services
            .get(service)
            .and_then(|h| h.service.tables().into_iter().next())
    }

    /// Serves one call.
    pub async fn handle(&self, call: Call, caller: Caller) -> ApiResponse {
        let started = Instant::now();
        let service = call.service.clone();
        let response = self.dispatch(call, caller).await;
        let outcome = match &response {
            ApiResponse::Reply(_) => "ok",
            ApiResponse::Failed(f) => failure_word(f),
            ApiResponse::Topology(_) | ApiResponse::Rows(_) => "ok",
        };
        if self.services.contains_key(&service) {
            self.metrics
                .calls
                .get_or_create(&CallLabels {
                    service: service.clone(),
                    outcome,
                })
                .inc();
            self.metrics
                .latency
                .get_or_create(&ServiceLabels { service })
                .observe(started.elapsed().as_secs_f64());
        }
        response
    }

    async fn dispatch(&self, call: Call, caller: Caller) -> ApiResponse {
        if let Err(reason) = call.validate() {
            return failed(Failure::BadRequest(reason));
        }
        let Some(hosted) = self.services.get(&call.service) else {
            return failed(Failure::NotHosted {
                service: call.service,
                node: self.node.clone(),
            });
        };
        if call.payload.len() > hosted.limits.request_bytes_max {
            return failed(Failure::BadRequest(format!(
                "request is {} bytes (at most {} for {})",
                call.payload.len(),
                hosted.limits.request_bytes_max,
                call.service
            )));
        }
        let deadline = Instant::now() + Duration::from_millis(u64::from(call.timeout_ms));
        let Some(_permit) = admit(hosted, deadline).await else {
            return failed(Failure::Overloaded(call.service));
        };
        let store = &hosted.shared.store;
        store.observe(call.session.hlc);
        let window = hosted.limits.idempotency_window;
        if call.idempotency_key.is_some() && window.is_none() {
            return failed(Failure::BadRequest(format!(
                "service {} does not deduplicate idempotency keys",
                call.service
            )));
        }
        if let Some(idem) = &call.idempotency_key {
            match idempotency::begin(store.as_ref(), &hosted.idem_table, idem, deadline).await {
                Ok(Begin::Replay(answer)) => return answer,
                Ok(Begin::Run) => {}
                Err(e) => return failed(Failure::Unavailable(e.to_string())),
            }
        }
        let idem = call.idempotency_key.clone();
        let response = self.run(hosted, call, caller, deadline).await;
        if let (Some(idem), Some(window)) = (idem, window) {
            // Definite answers are remembered; failures that a retry should
            // run again clear the mark.
            let keep = matches!(
                &response,
                ApiResponse::Reply(_) | ApiResponse::Failed(Failure::Rejected { .. })
            );
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(500));
            if let Err(e) = idempotency::finish(
                store.as_ref(),
                &hosted.idem_table,
                &idem,
                keep.then_some(&response),
                window,
                left,
            )
            .await
            {
                tracing::warn!(service = %hosted.service.name(), error = %e,
                    "could not record an idempotent call's answer; a retry may run it again");
            }
        }
        response
    }

    async fn run(
        &self,
        hosted: &Hosted,
        call: Call,
        caller: Caller,
        deadline: Instant,
    ) -> ApiResponse {
        let trail = Arc::new(Trail::default());
        let ctx = Context {
            shared: hosted.shared.clone(),
            deadline,
            caller,
            key: call.key,
            floors: call.session.floors,
            trail: trail.clone(),
        };
        let name = hosted.service.name().to_string();
        let future =
            AssertUnwindSafe(hosted.service.call(ctx, call.payload, call.json)).catch_unwind();
        match tokio::time::timeout_at(deadline, future).await {
            Err(_) => failed(Failure::DeadlineExceeded),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(service = %name, panic = %what, "handler panicked; the call failed, the node goes on");
                self.metrics
                    .panics
                    .get_or_create(&ServiceLabels {
                        service: name.clone(),
                    })
                    .inc();
                failed(Failure::Internal(name))
            }
            Ok(Ok(Ok(payload))) => ApiResponse::Reply(CallReply {
                payload,
                touched: trail.take(),
                hlc: hosted.shared.store.hlc_now(),
                node: self.node.clone(),
            }),
            Ok(Ok(Err(fault))) => failed(match fault {
                CallFault::Decode(e) => {
                    Failure::BadRequest(format!("not a request of service {name}: {e}"))
                }
                CallFault::Encode(e) => {
                    tracing::error!(service = %name, error = %e, "response encoding failed");
                    Failure::Internal(name)
                }
                CallFault::Handler(HandlerError::Rejected(reason)) => Failure::Rejected {
                    service: name,
                    reason,
                },
                CallFault::Handler(HandlerError::Unavailable(reason)) => {
                    Failure::Unavailable(reason)
                }
                // Behind promises the caller that nothing was applied.
                CallFault::Handler(HandlerError::Behind(reason)) if trail.wrote() => {
                    Failure::Unavailable(reason)
                }
                CallFault::Handler(HandlerError::Behind(reason)) => Failure::Behind(reason),
                CallFault::Handler(HandlerError::NotReady(reason)) if trail.wrote() => {
                    Failure::Unavailable(reason)
                }
                CallFault::Handler(HandlerError::NotReady(reason)) => Failure::NotReady(reason),
            }),
        }
    }
}

fn failed(f: Failure) -> ApiResponse {
    ApiResponse::Failed(f)
}

fn failure_word(f: &Failure) -> &'static str {
    match f {
        Failure::UnknownService(_) | Failure::NotHosted { .. } => "not_hosted",
        Failure::Rejected { .. } => "rejected",
        Failure::Overloaded(_) => "overloaded",
        Failure::DeadlineExceeded => "deadline",
        Failure::Unavailable(_) => "unavailable",
        Failure::Behind(_) => "behind",
        Failure::NotReady(_) => "not_ready",
        Failure::Internal(_) => "internal",
        Failure::BadRequest(_) => "bad_request",
    }
}

/// A permit to run, waiting in a bounded queue until `deadline`; `None` when
/// the queue is full or the deadline passes first.
async fn admit(hosted: &Hosted, deadline: Instant) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(permit) = hosted.permits.clone().try_acquire_owned() {
        return Some(permit);
    }
    if hosted.waiting.fetch_add(1, Ordering::AcqRel) >= hosted.limits.queue {
        hosted.waiting.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    let permit = tokio::time::timeout_at(deadline, hosted.permits.clone().acquire_owned()).await;
    hosted.waiting.fetch_sub(1, Ordering::AcqRel);
    permit.ok().and_then(Result::ok)
}
