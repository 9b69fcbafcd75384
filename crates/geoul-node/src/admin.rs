//! Admin HTTP: `GET /status` (JSON), `GET /metrics` (Prometheus text),
//! `GET /healthz`, `POST /query` (body: a query in text form, e.g.
//! `kv where value = "x" limit 5`; `?after=CURSOR&timeout_ms=N`; answer as
//! `geoul query --json` prints it; a query that does not parse is a 400 with
//! the message and its line and column).
//!
//! Owns: routes and response formats. Does not own: what the status says (the
//! node builds it). Only the edge knows HTTP: the node exposes plain methods.

use std::sync::Arc;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query as UrlQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use geoul_client::wire::QueryAnswer;

use crate::status::StatusReport;

/// What the admin endpoints read from a node.
pub trait AdminView: Send + Sync + 'static {
    /// The status document.
    fn status(&self) -> StatusReport;
    /// Prometheus text.
    fn metrics(&self) -> String;
    /// Whether internal tasks are running.
    fn healthy(&self) -> bool;
    /// Runs a distributed query coordinated by this node.
    fn query(
        &self,
        query: geoul_query::Query,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<QueryAnswer, String>>;
}

impl<N: geoul_transport::Net> AdminView for crate::node::Node<N> {
    fn status(&self) -> StatusReport {
        crate::node::Node::status(self)
    }
    fn metrics(&self) -> String {
        self.render_metrics()
    }
    fn healthy(&self) -> bool {
        crate::node::Node::healthy(self)
    }
    fn query(
        &self,
        query: geoul_query::Query,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<QueryAnswer, String>> {
        let replicator = self.replicator().clone();
        let me = self.membership().snapshot().identity.name.clone();
        Box::pin(async move {
            replicator
                .query(&query, timeout)
                .await
                .map(|r| geoul_service::query::answer(r, me))
                .map_err(|e| e.to_string())
        })
    }
}

/// Longest deadline `POST /query` accepts.
const QUERY_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// Deadline of `POST /query` without `timeout_ms`.
const QUERY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// The admin router.
pub fn router(view: Arc<dyn AdminView>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/query", post(query))
        .with_state(view)
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: Arc<dyn AdminView>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(view))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn status(State(view): State<Arc<dyn AdminView>>) -> Json<StatusReport> {
    Json(view.status())
}

async fn metrics(State(view): State<Arc<dyn AdminView>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        view.metrics(),
    )
        .into_response()
}

async fn healthz(State(view): State<Arc<dyn AdminView>>) -> Response {
    if view.healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n").into_response()
    }
}

fn bad_request(error: String, position: Option<(usize, usize, usize)>) -> Response {
    let body = match position {
        Some((line, column, offset)) => serde_json::json!({
            "error": error,
            "line": line,
            "column": column,
            "offset": offset,
        }),
        None => serde_json::json!({ "error": error }),
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

async fn query(
    State(view): State<Arc<dyn AdminView>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
    body: String,
) -> Response {
    let mut query = match geoul_query::parse_query(&body) {
        Ok(q) => q,
        Err(e) => return bad_request(e.to_string(), Some((e.line, e.column, e.offset))),
    };
    if let Some(after) = params.get("after") {
        match geoul_query::Cursor::decode(after) {
            Ok(c) => query.after = Some(c),
            Err(e) => return bad_request(format!("after: {e}"), None),
        }
    }
    let timeout = match params.get("timeout_ms").map(|t| t.parse::<u64>()) {
        None => QUERY_TIMEOUT_DEFAULT,
        Some(Ok(ms)) if ms > 0 => Duration::from_millis(ms).min(QUERY_TIMEOUT_MAX),
        Some(_) => return bad_request("timeout_ms: expected a positive integer".into(), None),
    };
    if let Err(e) = query.validate() {
        return bad_request(e.to_string(), None);
    }
    match view.query(query, timeout).await {
        Ok(answer) => Json(crate::query_json::answer_json(&answer)).into_response(),
        Err(e) => bad_request(e, None),
    }
}
