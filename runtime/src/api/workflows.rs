//! Workflows, behind the admin token: what the last load of the watched
//! directory left serving, file by file, with the versions kept of each;
//! and rollback to the version before.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::require_admin;
use crate::config::Diagnostic;
use crate::http::HttpError;
use crate::registry::Workflow;
use crate::registry::watch::RollbackError;
use crate::state::AppState;

/// `GET /api/v1/workflows`: one entry per manifest file with its load
/// state (`loaded`, `stale`: an older version serves because the file's
/// current content has problems, `failed`: nothing serves), the version
/// serving (name, path, mode, version digest, plugin digests, when it was
/// loaded) and the problems, each with `file:line`.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", responses((status = 200, description = "every manifest file with its load state"), (status = 401, description = "no admin token")), security(("admin" = [])))]
pub async fn workflows(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let registry = state.registry.load_full();
    let mut files: Vec<Value> = Vec::new();
    for f in registry.files() {
        let mut entry = json!({
            "file": f.file.display().to_string(),
            "state": f.state,
            "rolled_back": f.rolled_back,
            "errors": f.problems.iter().map(problem).collect::<Vec<_>>(),
        });
        if let Some(w) = &f.workflow {
            serving(&mut entry, w);
            let history = state
                .store
                .history(&w.spec.name)
                .await
                .map_err(HttpError::store_read)?;
            entry["history"] = history
                .iter()
                .map(|k| {
                    json!({
                        "version": k.version,
                        "loaded_at_ms": k.loaded_at_ms,
                        "serving": k.version == w.version,
                    })
                })
                .collect();
        }
        files.push(entry);
    }
    let general: Vec<Value> = registry
        .problems()
        .iter()
        .filter(|p| !registry.files().iter().any(|f| f.file == p.file))
        .map(problem)
        .collect();
    Ok(Json(json!({
        "workflows": files,
        "errors": general,
        "reloaded_at_ms": registry.loaded_at_ms,
    })))
}

/// `POST /api/v1/workflows/{name}/rollback`: serves the version kept
/// before the one serving, until the workflow's files change; `200` with
/// the version now serving, `404` for a workflow not loaded, `409` when no
/// earlier version is kept or it cannot serve any more.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/rollback", tag = "workflows", params(("name" = String, Path, description = "the workflow name")), responses((status = 200, description = "the version now serving"), (status = 404, description = "no such workflow"), (status = 409, description = "no earlier version")), security(("admin" = [])))]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let from = state.registry.load().get(&name).map(|w| w.version.clone());
    match state.reloader.rollback(&name).await {
        Ok(version) => Ok(Json(json!({
            "name": name,
            "version": version,
            "rolled_back_from": from,
        }))),
        Err(e @ RollbackError::Unknown(_)) => Err(HttpError::NotFound(e.to_string())),
        Err(e @ (RollbackError::NoEarlier(_) | RollbackError::Unusable(_))) => {
            Err(HttpError::Conflict(e.to_string()))
        }
        Err(RollbackError::Store(e)) => Err(HttpError::store_read(e)),
    }
}

/// `POST /api/v1/workflows/{name}/enable`.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/enable", tag = "workflows", params(("name" = String, Path, description = "the workflow name")), responses((status = 200, description = "enabled"), (status = 404, description = "no such workflow")), security(("admin" = [])))]
pub async fn enable(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    switch(&state, &headers, name, true).await
}

/// `POST /api/v1/workflows/{name}/disable`.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/disable", tag = "workflows", params(("name" = String, Path, description = "the workflow name")), responses((status = 200, description = "disabled"), (status = 404, description = "no such workflow")), security(("admin" = [])))]
pub async fn disable(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    switch(&state, &headers, name, false).await
}

/// Enables or disables a loaded workflow, durably and over its manifest's
/// `enabled`, across restarts and reloads.
async fn switch(
    state: &AppState,
    headers: &HeaderMap,
    name: String,
    enabled: bool,
) -> Result<Json<Value>, HttpError> {
    require_admin(state, headers)?;
    match state.reloader.set_enabled(&name, enabled).await {
        Ok(true) => Ok(Json(json!({"name": name, "enabled": enabled}))),
        Ok(false) => Err(HttpError::NotFound(format!("no workflow `{name}`"))),
        Err(_) => Err(HttpError::Unavailable(
            "the change could not be stored; try again".into(),
        )),
    }
}

fn serving(entry: &mut Value, w: &Workflow) {
    let spec = &w.spec;
    entry["name"] = json!(spec.name);
    entry["enabled"] = json!(spec.enabled);
    entry["path"] = json!(spec.trigger.path);
    entry["mode"] = json!(spec.trigger.mode.as_str());
    entry["version"] = json!(w.version);
    entry["loaded_at_ms"] = json!(w.loaded_at_ms);
    let webhooks = spec
        .hooks()
        .map(|t| json!({"kind": "webhook", "path": t.path}));
    let crons = spec
        .crons
        .iter()
        .map(|c| json!({"kind": "cron", "schedule": c.pattern, "timezone": c.timezone.name()}));
    entry["triggers"] = webhooks.chain(crons).collect();
    entry["steps"] = spec
        .steps
        .iter()
        .zip(&w.plugins)
        .map(|(step, plugin)| {
            json!({
                "id": step.id,
                "plugin": step.plugin_name,
                "digest": plugin.digest,
            })
        })
        .collect();
}

fn problem(p: &Diagnostic) -> Value {
    json!({
        "file": p.file.display().to_string(),
        "line": p.line,
        "message": p.message,
        "text": p.to_string(),
    })
}
