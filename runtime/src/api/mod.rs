//! Observation API under `/api/v1` (SPEC §5.3), behind the admin bearer
//! token, plus `/healthz`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::execution::{Event, Execution, Status};
use crate::ingress::HttpError;
use crate::server::App;
use crate::store::ListFilter;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

pub async fn healthz() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /metrics`: execution counters in the Prometheus text format. No
/// token: it holds counts only.
pub async fn metrics(State(app): State<Arc<App>>) -> impl axum::response::IntoResponse {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let c = app.runner.counters();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP hookflow_executions_started_total Executions handed to the runner (accepted or resumed).\n\
         # TYPE hookflow_executions_started_total counter\n\
         hookflow_executions_started_total {}",
        c.started.load(Relaxed)
    );
    let _ = writeln!(
        text,
        "# HELP hookflow_executions_finished_total Executions that ended, by status.\n\
         # TYPE hookflow_executions_finished_total counter"
    );
    for (status, n) in [
        ("succeeded", &c.succeeded),
        ("failed", &c.failed),
        ("timed_out", &c.timed_out),
    ] {
        let _ = writeln!(
            text,
            "hookflow_executions_finished_total{{status=\"{status}\"}} {}",
            n.load(Relaxed)
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

fn require_admin(app: &App, headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(secret) = &app.admin_token else {
        return Err(HttpError::Unauthorized {
            message: "the API is off: start hookflow with HOOKFLOW_ADMIN_TOKEN set".into(),
            bearer: true,
        });
    };
    crate::ingress::auth::check(
        &crate::config::Auth::Bearer {
            secrets: vec![secret.clone()],
        },
        headers,
    )
}

/// `GET /api/v1/executions/{id}`: the whole record, with the payload.
pub async fn execution(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    require_admin(&app, &headers)?;
    let not_found = || HttpError::NotFound(format!("no execution `{id}`"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let execution = app
        .store
        .get(uuid)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    let body = app.store.body(uuid).await.map_err(unavailable)?;
    let payload = body.map_or(Value::Null, |body| {
        let event = Event::new(
            execution.request.clone(),
            execution.content_type.clone(),
            body,
            execution.body_is_json,
        );
        serde_json::from_str(event.payload_text()).unwrap_or(Value::Null)
    });
    let mut value = serde_json::to_value(&execution).map_err(|e| unavailable(e.to_string()))?;
    value["payload"] = payload;
    Ok(Json(value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct Summary {
    id: Uuid,
    workflow: String,
    status: Status,
    trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Execution> for Summary {
    fn from(e: Execution) -> Self {
        Self {
            id: e.id,
            workflow: e.workflow,
            status: e.status,
            trigger: e.trigger,
            user: e.user,
            created_at_ms: e.created_at_ms,
            finished_at_ms: e.finished_at_ms,
            error: e.error,
        }
    }
}

#[derive(Serialize)]
pub struct Page {
    executions: Vec<Summary>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Uuid>,
}

/// `GET /api/v1/executions?workflow=&status=&limit=&cursor=`, newest first.
pub async fn executions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, HttpError> {
    require_admin(&app, &headers)?;
    let Query(q) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let status = q
        .status
        .map(|s| s.parse::<Status>())
        .transpose()
        .map_err(HttpError::BadRequest)?;
    let before = q
        .cursor
        .map(|c| Uuid::parse_str(&c))
        .transpose()
        .map_err(|_| HttpError::BadRequest("`cursor` must be an execution id".into()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let found = app
        .store
        .list(ListFilter {
            workflow: q.workflow,
            status,
            limit,
            before,
        })
        .await
        .map_err(unavailable)?;
    let next_cursor = (found.len() == limit)
        .then(|| found.last().map(|e| e.id))
        .flatten();
    Ok(Json(Page {
        executions: found.into_iter().map(Summary::from).collect(),
        next_cursor,
    }))
}

fn unavailable(e: impl std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "store read failed");
    HttpError::Unavailable("the store could not be read; try again".into())
}
