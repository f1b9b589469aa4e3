//! The API under `/api/v1` (SPEC §5.2, §5.3): run a workflow by name, and
//! observe executions and workflows behind the admin token; plus `/healthz`, `/readyz` and
//! `/metrics`.

mod executions;
mod health;
mod run;
mod workflows;

pub use executions::{execution, executions};
pub use health::{healthz, metrics, readyz};
pub use run::run;
pub use workflows::{rollback, workflows};

use axum::http::HeaderMap;

use crate::http::{HttpError, check_bearer};
use crate::state::AppState;

/// The admin bearer token, or 401 (also when the API is off).
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(secret) = &state.admin_token else {
        return Err(HttpError::Unauthorized {
            message: "the API is off: start hookflow with HOOKFLOW_ADMIN_TOKEN set".into(),
            bearer: true,
        });
    };
    check_bearer(std::slice::from_ref(secret), headers)
}
