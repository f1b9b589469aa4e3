//! `/healthz` and `/metrics`: no token, they hold no payloads.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::Value;

use crate::state::AppState;
use crate::store::DATABASE_BYTES;

pub async fn healthz() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /metrics`: counters and gauges in the Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let size = state.store.file_size();
    metrics::gauge!(DATABASE_BYTES).set(size as f64);
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
