//! The API under `/api/v1` (SPEC §5.2, §5.3): run a workflow by name, and
//! observe executions and workflows behind the admin token; plus `/healthz`, `/readyz` and
//! `/metrics`.

pub mod events;
pub mod executions;
pub mod health;
pub mod manage;
pub mod openapi;
pub mod run;
pub mod session;
pub mod stream;
pub mod triggers;
pub mod workflows;

use axum::http::HeaderMap;
use serde::Deserialize;
use uuid::Uuid;

use crate::http::{HttpError, check_bearer};
use crate::state::AppState;

/// `?token=`: an execution's read token.
#[derive(Deserialize)]
pub struct ReadQuery {
    token: Option<String>,
}

/// Execution `id`, when the caller may read it: with the admin token, or
/// with the execution's read token (`token`, from its `status_url`).
fn require_reader(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
    token: Option<&str>,
) -> Result<Uuid, HttpError> {
    let uuid = Uuid::parse_str(id).ok();
    if let (Some(uuid), Some(token)) = (uuid, token)
        && state.tokens.verify(uuid, token)
    {
        return Ok(uuid);
    }
    match require_admin(state, headers) {
        Ok(()) => uuid.ok_or_else(|| HttpError::NotFound(format!("no execution `{id}`"))),
        Err(_) if token.is_some() => Err(HttpError::Unauthorized {
            message: "this read token is not this execution's".into(),
            bearer: false,
        }),
        Err(e) => Err(e),
    }
}

/// Workflow `name` as served, once it admits another event (enabled,
/// within its rate, room in the queue).
fn admitted(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<crate::registry::Workflow>, HttpError> {
    let workflow = state
        .registry
        .load()
        .get(name)
        .cloned()
        .ok_or_else(|| HttpError::NotFound(format!("no workflow `{name}`")))?;
    state
        .intake
        .admit(&workflow, &state.intake.gate(&workflow))?;
    Ok(workflow)
}

/// The admin bearer token, or else the dashboard's session cookie (see
/// [`crate::http::Sessions`]); or 401 (also when the API is off). A request
/// with an `Authorization` header is judged by it alone.
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    if !headers.contains_key(axum::http::header::AUTHORIZATION)
        && state.sessions.check(headers).is_some()
    {
        return Ok(());
    }
    let Some(secret) = &state.admin_token else {
        return Err(api_off(true));
    };
    check_bearer(std::slice::from_ref(secret), headers)
}

/// The answer of every admin route, and of login, while the API is off.
fn api_off(bearer: bool) -> HttpError {
    HttpError::Unauthorized {
        message: "the API is off: start hookflow with HOOKFLOW_ADMIN_TOKEN set".into(),
        bearer,
    }
}
