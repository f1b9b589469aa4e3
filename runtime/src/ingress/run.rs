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

use super::{
    HttpError, accept, admit, auth, idempotency_key, in_flight, read_body, request_meta_for,
};
use crate::config::Auth;
use crate::execution::Event;
use crate::server::App;

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
    data: Option<Box<RawValue>>,
}

pub async fn run(State(app): State<Arc<App>>, req: Request) -> Response {
    match handle(app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(app: Arc<App>, req: Request) -> Result<Response, HttpError> {
    let _in_flight = in_flight(&app)?;
    let tokens = Auth::Bearer {
        secrets: app.api_tokens.clone(),
    };
    auth::check(&tokens, req.headers())?;

    let (parts, body) = req.into_parts();
    let body = tokio::time::timeout(
        app.body_timeout,
        read_body(&parts.headers, body, MAX_RUN_BODY),
    )
    .await
    .map_err(|_| HttpError::BodyTimeout(app.body_timeout))??;
    let run: RunBody =
        serde_json::from_slice(&body).map_err(|e| HttpError::BadJson(e.to_string()))?;
    let name = run.workflow.or(run.workflow_id).ok_or_else(|| {
        HttpError::BadRequest("name the workflow: `workflow` or `workflow_id`".into())
    })?;
    let workflow = app
        .registry
        .load()
        .get(&name)
        .cloned()
        .ok_or_else(|| HttpError::NotFound(format!("no workflow `{name}`")))?;
    admit(&app, &workflow)?;

    let data = run
        .data
        .map_or_else(|| "null".to_string(), |d| d.get().to_string());
    let request = request_meta_for(&workflow, &parts);
    let event = Arc::new(Event::new(
        request,
        Some("application/json".into()),
        data.into(),
        true,
    ));
    // Only `Idempotency-Key`: no provider delivery id applies here.
    let key = idempotency_key(&Auth::None, &parts.headers, &event)?;
    accept(&app, workflow, event, key, "api", run.user).await
}
