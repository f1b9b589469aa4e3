//! `/healthz`, `/readyz` and `/metrics`: no token, they hold no payloads.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::observe;
use crate::state::AppState;
use crate::store::DATABASE_BYTES;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: `200` while the server takes new events, `503` while it
/// shuts down or while its last database commit failed.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "ready"), (status = 503, description = "not ready")))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let reason = if state.draining.load(Ordering::Relaxed) {
        Some("shutting down")
    } else if !state.store.writable() {
        Some("the database cannot be written")
    } else {
        None
    };
    match reason {
        None => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": why })),
        ),
    }
}

/// `GET /metrics`: counters and gauges in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let size = state.store.file_size();
    metrics::gauge!(DATABASE_BYTES).set(size as f64);
    let (count, bytes) = state.intake.unfinished();
    metrics::gauge!(observe::QUEUE_DEPTH).set(count as f64);
    metrics::gauge!(observe::QUEUE_BYTES).set(bytes as f64);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
