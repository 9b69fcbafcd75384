//! Running a distributed query from a client: which node coordinates it, and
//! failing over (a query is read-only, so any failure may be retried).
//!
//! Owns: [`run_query`]. Does not own: the coordination itself (the node's
//! replicator) or the query language (geoul-query).

use std::time::Duration;

use geoul_query::Query;
use tokio::time::Instant;

use crate::routes::Target;
use crate::service_ref::{Backend, CallError};
use crate::wire::{
    decode_response, encode_request, ApiRequest, ApiResponse, Failure, QueryAnswer, QueryCall,
    CALL_TIMEOUT_MAX_MS,
};

/// How long past the query's deadline the caller waits for the coordinator's
/// answer (which reports missing slots rather than timing out).
const REPLY_GRACE: Duration = Duration::from_millis(250);

/// Asks `targets` in order to coordinate `query` until one answers.
pub async fn run_query(
    backend: &dyn Backend,
    targets: &[Target],
    query: &Query,
    timeout: Duration,
) -> Result<QueryAnswer, CallError> {
    query
        .validate()
        .map_err(|e| CallError::BadRequest(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let mut failures = Vec::new();
    for target in targets {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CallError::DeadlineExceeded(timeout));
        }
        let call = QueryCall {
            query: query.clone(),
            timeout_ms: u32::try_from(left.as_millis())
                .unwrap_or(u32::MAX)
                .clamp(1, CALL_TIMEOUT_MAX_MS),
        };
        let bytes = encode_request(&ApiRequest::Query(call))
            .map_err(|e| CallError::Codec(e.to_string()))?;
        match backend
            .request(target.addr, bytes, left + REPLY_GRACE)
            .await
        {
            Ok(reply) => match decode_response(&reply) {
                Ok(ApiResponse::Rows(answer)) => return Ok(answer),
                Ok(ApiResponse::Failed(Failure::BadRequest(reason))) => {
                    return Err(CallError::BadRequest(reason))
                }
                Ok(ApiResponse::Failed(f)) => failures.push(format!("{}: {f}", target.name)),
                Ok(other) => failures.push(format!("{}: unexpected {other:?}", target.name)),
                Err(e) => failures.push(format!("{}: unreadable answer: {e}", target.name)),
            },
            Err(e) => failures.push(format!("{}: {e}", target.name)),
        }
    }
    backend.stale();
    Err(CallError::NoLiveReplica {
        service: format!("table {}", query.table),
        detail: if failures.is_empty() {
            "no live node declares it".into()
        } else {
            failures.join("; ")
        },
    })
}
