//! Admin HTTP: `GET /status` (JSON), `GET /metrics` (Prometheus text),
//! `GET /healthz`, `POST /query` (body: a query in text form, e.g.
//! `kv where value = "x" limit 5`; `?after=CURSOR&timeout_ms=N`; answer as
//! `geoul query --json` prints it; a query that does not parse is a 400 with
//! the message and its line and column), `GET /dir/search?q=QUERY` (a
//! spectator search of the instance directory; `&after=CURSOR&timeout_ms=N`;
//! answer as `geoul dir search --json` prints it: `{"entries": [...],
//! "partial": bool, "next": …}`; a refused query is a 400 with the message).
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
    /// A ref to a service by name, routed like the node's own calls.
    fn service(&self, name: &str) -> geoul_client::ServiceRef;
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
    fn service(&self, name: &str) -> geoul_client::ServiceRef {
        self.service_ref(name)
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
        .route("/dir/search", get(dir_search))
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
    let timeout = match timeout_param(&params) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if let Err(e) = query.validate() {
        return bad_request(e.to_string(), None);
    }
    match view.query(query, timeout).await {
        Ok(answer) => Json(crate::query_json::answer_json(&answer)).into_response(),
        Err(e) => bad_request(e, None),
    }
}

/// `timeout_ms` of a request, or the 400 that explains it.
fn timeout_param(params: &HashMap<String, String>) -> Result<Duration, Box<Response>> {
    match params.get("timeout_ms").map(|t| t.parse::<u64>()) {
        None => Ok(QUERY_TIMEOUT_DEFAULT),
        Some(Ok(ms)) if ms > 0 => Ok(Duration::from_millis(ms).min(QUERY_TIMEOUT_MAX)),
        Some(_) => Err(Box::new(bad_request(
            "timeout_ms: expected a positive integer".into(),
            None,
        ))),
    }
}

async fn dir_search(
    State(view): State<Arc<dyn AdminView>>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    let Some(text) = params.get("q") else {
        return bad_request(
            "q: the search text is missing (e.g. ?q=mode = \"ranked\")".into(),
            None,
        );
    };
    let timeout = match timeout_param(&params) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let dir = geoul_dir::DirClient::new(view.service(geoul_dir::DIR)).with_timeout(timeout);
    match dir
        .search(text, params.get("after").map(String::as_str))
        .await
    {
        Ok(page) => Json(serde_json::json!({
            "entries": page.entries,
            "partial": page.partial,
            "next": page.next,
        }))
        .into_response(),
        Err(geoul_dir::DirError::Denied(d)) => bad_request(d.to_string(), None),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
