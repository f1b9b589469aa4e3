//! Acting on executions and workflows, behind the admin token (SPEC §5.3):
//! cancel an execution, replay its stored event, and run a workflow on a
//! test payload.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::require_admin;
use crate::execution::{Event, Execution, Status, now_ms};
use crate::http::{self, HttpError};
use crate::intake::{Delivery, KeySource, Trigger};
use crate::runner::progress::{Change, Notice};
use crate::state::AppState;

/// The largest test payload.
const MAX_TEST_BODY: u64 = 1 << 20;
/// How long a cancel waits for the run to stop before answering `202`.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

fn parse_id(id: &str) -> Result<Uuid, HttpError> {
    Uuid::parse_str(id).map_err(|_| HttpError::NotFound(format!("no execution `{id}`")))
}

async fn record(state: &AppState, id: Uuid) -> Result<Execution, HttpError> {
    state
        .store
        .get(id)
        .await
        .map_err(HttpError::store_read)?
        .ok_or_else(|| HttpError::NotFound(format!("no execution `{id}`")))
}

fn ended(execution: &Execution) -> Value {
    json!({
        "execution_id": execution.id,
        "status": execution.status.as_str(),
        "error": execution.error,
    })
}

/// `POST /api/v1/executions/{id}/cancel`: an unfinished execution ends
/// `cancelled`, its running step interrupted at its next epoch tick (or at
/// once inside a host call), the steps after it never run. `200` with the
/// final state once it has stopped; `202` if it has not within 10 s; `409`
/// when it had already ended.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions", params(("id" = String, Path, description = "the execution id")), responses((status = 200, description = "cancelled"), (status = 202, description = "not stopped within 10 s"), (status = 404, description = "no such execution"), (status = 409, description = "already ended")), security(("admin" = [])))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    require_admin(&state, &headers)?;
    let uuid = parse_id(&id)?;
    let mut notices = state.progress.subscribe();
    let mut execution = record(&state, uuid).await?;
    if execution.status.is_finished() {
        return Err(HttpError::Conflict(format!(
            "execution `{id}` already ended `{}`",
            execution.status.as_str()
        )));
    }
    if !state.intake.cancel(uuid) {
        // Recorded and not running here (its run ended between the read
        // and now, or it waits to be resumed): read it again, and end it
        // in the record if it is still open.
        execution = record(&state, uuid).await?;
        if !execution.status.is_finished() {
            execution.cancel();
            execution.finished_at_ms = Some(now_ms());
            state
                .store
                .put(&execution, None)
                .await
                .map_err(|_| HttpError::Unavailable("the cancel could not be stored".into()))?;
        }
    } else {
        let stopped = tokio::time::timeout(CANCEL_WAIT, async {
            loop {
                match notices.recv().await {
                    Ok(Notice {
                        id,
                        change: Change::Saved,
                    }) if id == uuid => {}
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
                if record(&state, uuid)
                    .await
                    .is_ok_and(|e| e.status.is_finished())
                {
                    return;
                }
            }
        })
        .await;
        execution = record(&state, uuid).await?;
        if stopped.is_err() && !execution.status.is_finished() {
            return Ok((axum::http::StatusCode::ACCEPTED, Json(ended(&execution))).into_response());
        }
    }
    if execution.status != Status::Cancelled {
        return Err(HttpError::Conflict(format!(
            "execution `{id}` ended `{}` before it could be cancelled",
            execution.status.as_str()
        )));
    }
    Ok(Json(ended(&execution)).into_response())
}

/// `POST /api/v1/executions/{id}/replay`: the stored event again, through
/// the workflow as loaded now, as a new execution (`trigger: "replay"`,
/// `replay_of` the original). Admission, typed input and `Prefer` apply as
/// for a webhook; no idempotency key does. The answers are a webhook's.
#[utoipa::path(post, path = "/api/v1/executions/{id}/replay", tag = "executions", params(("id" = String, Path, description = "the execution id")), responses((status = 200, description = "a sync workflow finished"), (status = 202, description = "recorded"), (status = 404, description = "no such execution or workflow")), security(("admin" = [])))]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    require_admin(&state, &headers)?;
    let _in_flight = state.admit_request()?;
    let uuid = parse_id(&id)?;
    let original = record(&state, uuid).await?;
    let body = state
        .store
        .body(uuid)
        .await
        .map_err(HttpError::store_read)?
        .ok_or_else(|| {
            HttpError::Conflict(format!("the event of execution `{id}` is no longer kept"))
        })?;
    let workflow = state
        .registry
        .load()
        .get(&original.workflow)
        .cloned()
        .ok_or_else(|| {
            HttpError::NotFound(format!("workflow `{}` is not loaded", original.workflow))
        })?;
    state
        .intake
        .admit(&workflow, &state.intake.gate(&workflow))?;
    let event = Event::new(original.request, original.content_type, body);
    let delivery = Delivery {
        environment: original.environment,
        unparsed_json: false,
        event,
        key: KeySource::None,
        trigger: Trigger::Replay,
        user: original.user,
        wait: http::wait_preference(&headers),
        replay_of: Some(uuid),
    };
    state.deliver(workflow, delivery).await
}

/// `POST /api/v1/workflows/{name}/test[?environment=NAME]`: runs the
/// workflow on the JSON body (ToolJet's "test JSON") as an execution with
/// `trigger: "test"`.
/// The webhook's auth does not apply (the admin token is the credential);
/// everything else does, and the answers are a webhook's.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/test", tag = "workflows", params(("name" = String, Path), ("environment" = Option<String>, Query)), request_body(content = Object, description = "the test payload", example = json!({"order": 42})), responses((status = 200, description = "a sync workflow finished"), (status = 202, description = "recorded"), (status = 400, description = "not JSON"), (status = 404, description = "no such workflow")), security(("admin" = [])))]
pub async fn test_run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, HttpError> {
    require_admin(&state, req.headers())?;
    let _in_flight = state.admit_request()?;
    let workflow = super::admitted(&state, &name)?;
    let (parts, body) = req.into_parts();
    let body = http::read_body(body, MAX_TEST_BODY, state.body_timeout).await?;
    let request = http::request_meta(&workflow.spec.trigger.auth, &parts);
    let event = Event::new(request, Some("application/json".into()), body);
    let delivery = Delivery {
        unparsed_json: event.is_json,
        event,
        key: KeySource::None,
        trigger: Trigger::Test,
        user: None,
        wait: http::wait_preference(&parts.headers),
        replay_of: None,
        environment: http::query_param(&parts, "environment"),
    };
    state.deliver(workflow, delivery).await
}
