//! `POST /api/v1/run`: run a workflow by name for a user (SPEC §5.2, the
//! Alloy seed), with the same answers as a webhook.
//!
//! Body `{workflow | workflow_id, user?, data}` (Alloy's `workflowName`,
//! `workflowId`, `userId` are accepted too); `data` becomes the payload.
//! Authorised by an API token (`--api-token`) or the admin token; the
//! webhook's own auth does not apply. `x-api-version` is accepted and not
//! required. `Idempotency-Key` works as for webhooks.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::execution::Event;
use crate::http::{self, HttpError};
use crate::intake::{Delivery, KeySource, Trigger};
use crate::state::AppState;

/// The largest run request body.
const MAX_RUN_BODY: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(alias = "workflowName")]
    workflow: Option<String>,
    #[serde(alias = "workflowId")]
    workflow_id: Option<String>,
    #[serde(alias = "userId")]
    user: Option<String>,
    /// The environment to run in (`[environments.NAME]`).
    environment: Option<String>,
    data: Option<Box<RawValue>>,
}

#[utoipa::path(post, path = "/api/v1/run", tag = "run", request_body(content = Object, description = "`{workflow | workflow_id, user?, environment?, data}`", example = json!({"workflow": "orders", "user": "u1", "data": {"order": 42}})), responses((status = 200, description = "a sync workflow finished"), (status = 202, description = "recorded"), (status = 401, description = "no API token"), (status = 404, description = "no such workflow")), security(("api" = [])))]
pub async fn run(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match handle(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, req: Request) -> Result<Response, HttpError> {
    let _in_flight = state.admit_request()?;
    http::check_bearer(&state.run_tokens, req.headers())?;

    let (parts, body) = req.into_parts();
    let body = http::read_body(body, MAX_RUN_BODY, state.body_timeout).await?;
    // The one parse of the request: `data` is validated here and kept as
    // the text it came as.
    let run: RunBody =
        serde_json::from_slice(&body).map_err(|e| HttpError::BadJson(e.to_string()))?;
    let name = run.workflow.or(run.workflow_id).ok_or_else(|| {
        HttpError::BadRequest("name the workflow: `workflow` or `workflow_id`".into())
    })?;
    let workflow = super::admitted(state, &name)?;

    let data = run
        .data
        .map_or_else(|| "null".to_string(), |d| d.get().to_string());
    // The workflow's own auth does not apply here, but a header it treats
    // as a credential is still kept out of the record.
    let request = http::request_meta(&workflow.spec.trigger.auth, &parts);
    let event = Event::new(request, Some("application/json".into()), data.into());
    // Only `Idempotency-Key`: no provider delivery id applies here.
    let key = http::header_text(&parts.headers, http::IDEMPOTENCY_KEY)
        .map_or(KeySource::None, KeySource::Given);
    let delivery = Delivery {
        event,
        unparsed_json: false,
        key,
        trigger: Trigger::Api,
        user: run.user,
        wait: http::wait_preference(&parts.headers),
        replay_of: None,
        environment: run
            .environment
            .or_else(|| http::query_param(&parts, "environment")),
    };
    state.deliver(workflow, delivery).await
}
