//! The HTTP server for probes and metrics: `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{Error, Metrics, Readiness, metrics};

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Exposed on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Answered on `/readyz`.
    pub readiness: Readiness,
}

/// The routes of the server.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` is cancelled, then finishes the
/// requests in flight and returns.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Http)
}

/// Liveness: the process runs and serves HTTP.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 200 once the API server answered, 503 with the reason otherwise.
async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    let ready = state.readiness.get();
    let status = if ready.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, ready.reason())
}

/// The metrics in the Prometheus text format.
async fn metrics_text(State(state): State<HttpState>) -> Response {
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            warn!(error = %e, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response()
        }
    }
}
