//! Executions, behind the admin token: one record with its payload, and
//! the list, newest first, with a cursor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{ReadQuery, require_admin, require_reader};
use crate::execution::{Event, Execution, Status};
use crate::http::HttpError;
use crate::state::AppState;
use crate::store::ListFilter;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

/// `GET /api/v1/executions/{id}`: the whole record, with the payload; with
/// the admin token or the execution's read token (`?token=`).
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions", params(("id" = String, Path), ("token" = Option<String>, Query, description = "the read token of the execution, instead of the admin token")), responses((status = 200, description = "the record"), (status = 401, description = "no token for it"), (status = 404, description = "no such execution")), security(("admin" = [])))]
pub async fn execution(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Json<Value>, HttpError> {
    let uuid = require_reader(&state, &headers, &id, q.token.as_deref())?;
    let not_found = || HttpError::NotFound(format!("no execution `{id}`"));
    let execution = state
        .store
        .get(uuid)
        .await
        .map_err(HttpError::store_read)?
        .ok_or_else(not_found)?;
    let body = state
        .store
        .body(uuid)
        .await
        .map_err(HttpError::store_read)?;
    let payload = body.map_or(Value::Null, |body| {
        let event = Event::new(
            execution.request.clone(),
            execution.content_type.clone(),
            body,
        );
        serde_json::from_str(event.payload_text()).unwrap_or(Value::Null)
    });
    let mut value = serde_json::to_value(&execution).map_err(HttpError::store_read)?;
    value["payload"] = payload;
    Ok(Json(value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    user: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    q: Option<String>,
}

/// A time bound: milliseconds since the epoch, or an RFC 3339 time.
fn time_bound(name: &str, value: Option<String>) -> Result<Option<u64>, HttpError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(Some(ms));
    }
    humantime::parse_rfc3339_weak(&value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        .ok_or_else(|| {
            HttpError::BadRequest(format!(
                "`{name}` must be milliseconds since the epoch or an RFC 3339 time (2026-12-01T10:00:00Z)"
            ))
        })
}

/// An execution as the list (and `/api/v1/stream`) gives it: no payload,
/// outputs or logs; its steps as counts.
#[derive(Serialize)]
pub struct Summary {
    id: Uuid,
    workflow: String,
    status: Status,
    trigger: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_of: Option<Uuid>,
    created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Steps in the workflow.
    steps: usize,
    /// Attempts made, over all steps.
    attempts: usize,
    /// The largest peak memory of any attempt, in bytes.
    peak_memory_bytes: u64,
}

impl From<&Execution> for Summary {
    fn from(e: &Execution) -> Self {
        let attempts = e.steps.iter().flat_map(|s| &s.attempts);
        Self {
            id: e.id,
            workflow: e.workflow.clone(),
            status: e.status,
            trigger: e.trigger.clone(),
            user: e.user.clone(),
            environment: e.environment.clone(),
            replay_of: e.replay_of,
            created_at_ms: e.created_at_ms,
            started_at_ms: e.started_at_ms,
            finished_at_ms: e.finished_at_ms,
            error: e.error.clone(),
            steps: e.steps.len(),
            attempts: attempts.clone().count(),
            peak_memory_bytes: attempts.map(|a| a.peak_memory_bytes).max().unwrap_or(0),
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

/// `GET /api/v1/executions?workflow=&status=&trigger=&user=&since=&until=&q=&limit=&cursor=`,
/// newest first. Paging walks back from the cursor, so executions that
/// arrive meanwhile (newer) neither repeat nor hide older ones. `status`
/// takes several, comma-separated. `q` is an execution id, or text to find
/// in the event bodies: such a search looks at a bounded number of
/// executions per call, so a page may hold fewer than `limit` and still
/// have a `next_cursor` to go on from.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", params(("workflow" = Option<String>, Query), ("status" = Option<String>, Query, description = "one or more of queued, running, succeeded, failed, timed_out, cancelled, comma-separated"), ("q" = Option<String>, Query, description = "an execution id, or text the event body holds (ASCII letters in any case)"), ("trigger" = Option<String>, Query), ("user" = Option<String>, Query), ("since" = Option<String>, Query, description = "ms since the epoch or RFC 3339"), ("until" = Option<String>, Query), ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before")), responses((status = 200, description = "a page, newest first"), (status = 400, description = "a bad filter"), (status = 401, description = "no admin token")), security(("admin" = [])))]
pub async fn executions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, HttpError> {
    require_admin(&state, &headers)?;
    let Query(q) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let statuses = q
        .status
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<Status>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(HttpError::BadRequest)?;
    let text = q.q.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if let Some(id) = text.as_deref().and_then(|t| Uuid::parse_str(t).ok()) {
        let found = state.store.get(id).await.map_err(HttpError::store_read)?;
        return Ok(Json(Page {
            executions: found.as_ref().map(Summary::from).into_iter().collect(),
            next_cursor: None,
        }));
    }
    let before = q
        .cursor
        .map(|c| Uuid::parse_str(&c))
        .transpose()
        .map_err(|_| HttpError::BadRequest("`cursor` must be an execution id".into()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let found = state
        .store
        .list_page(ListFilter {
            workflow: q.workflow,
            statuses,
            text,
            trigger: q.trigger,
            user: q.user,
            since_ms: time_bound("since", q.since)?,
            until_ms: time_bound("until", q.until)?,
            limit,
            before,
        })
        .await
        .map_err(HttpError::store_read)?;
    let next_cursor = (found.executions.len() == limit)
        .then(|| found.executions.last().map(|e| e.id))
        .flatten()
        .or(found.stopped_at);
    Ok(Json(Page {
        executions: found.executions.iter().map(Summary::from).collect(),
        next_cursor,
    }))
}

/// `GET /api/v1/executions/{id}/body`: the event body as it arrived, as a
/// download (`application/octet-stream`, never shown as a page), with the
/// admin token or the execution's read token.
#[utoipa::path(get, path = "/api/v1/executions/{id}/body", tag = "executions", params(("id" = String, Path), ("token" = Option<String>, Query, description = "the read token of the execution, instead of the admin token")), responses((status = 200, description = "the body's bytes"), (status = 401, description = "no token for it"), (status = 404, description = "no such execution, or its body is no longer kept")), security(("admin" = [])))]
pub async fn body(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<axum::response::Response, HttpError> {
    use axum::http::header::{CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
    use axum::response::IntoResponse as _;
    let uuid = require_reader(&state, &headers, &id, q.token.as_deref())?;
    let body = state
        .store
        .body(uuid)
        .await
        .map_err(HttpError::store_read)?
        .ok_or_else(|| HttpError::NotFound(format!("no event body kept for `{id}`")))?;
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{uuid}.body\""),
            ),
            (CONTENT_SECURITY_POLICY, "sandbox".to_string()),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                "nosniff".to_string(),
            ),
        ],
        body,
    )
        .into_response())
}
