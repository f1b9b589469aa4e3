//! Workflows, behind the admin token: what the last load of the watched
//! directory left serving, file by file.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::require_admin;
use crate::config::Diagnostic;
use crate::http::HttpError;
use crate::registry::Workflow;
use crate::state::AppState;

/// `GET /api/v1/workflows`: one entry per manifest file with its load
/// state (`loaded`, `stale`: an older version serves because the file's
/// current content has problems, `failed`: nothing serves), the version
/// serving (name, path, mode, version digest, plugin digests, when it was
/// loaded) and the problems, each with `file:line`.
pub async fn workflows(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let registry = state.registry.load_full();
    let files: Vec<Value> = registry
        .files()
        .iter()
        .map(|f| {
            let mut entry = json!({
                "file": f.file.display().to_string(),
                "state": f.state,
                "errors": f.problems.iter().map(problem).collect::<Vec<_>>(),
            });
            if let Some(w) = &f.workflow {
                serving(&mut entry, w);
            }
            entry
        })
        .collect();
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

fn serving(entry: &mut Value, w: &Workflow) {
    let spec = &w.spec;
    entry["name"] = json!(spec.name);
    entry["enabled"] = json!(spec.enabled);
    entry["path"] = json!(spec.trigger.path);
    entry["mode"] = json!(spec.trigger.mode.as_str());
    entry["version"] = json!(w.version);
    entry["loaded_at_ms"] = json!(w.loaded_at_ms);
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
