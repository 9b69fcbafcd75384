//! Admin HTTP: `GET /status` (JSON), `GET /metrics` (Prometheus text), `GET /healthz`.
//!
//! Owns: routes and response formats. Does not own: what the status says (the
//! node builds it). Only the edge knows HTTP: the node exposes plain methods.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::status::StatusReport;

/// What the admin endpoints read from a node.
pub trait AdminView: Send + Sync + 'static {
    /// The status document.
    fn status(&self) -> StatusReport;
    /// Prometheus text.
    fn metrics(&self) -> String;
    /// Whether internal tasks are running.
    fn healthy(&self) -> bool;
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
}

/// The admin router.
pub fn router(view: Arc<dyn AdminView>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
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
