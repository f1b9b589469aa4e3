//! `/api/v1/triggers`, behind the admin token: webhook and cron triggers
//! made, listed, enabled or disabled, deleted and their secrets rotated
//! while the server runs (see [`crate::triggers`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::require_admin;
use crate::config::{CronSpec, Missed};
use crate::execution::now_ms;
use crate::http::HttpError;
use crate::state::AppState;
use crate::store::{TriggerKind, TriggerRecord};
use crate::triggers::{Live, new_id, new_secret};

/// How long an old secret verifies after a rotation, unless told.
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest grace a rotation may give.
const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the API shows of a trigger: never a secret, only when each began
/// and, after a rotation, when it ends.
fn view(live: &Live) -> Value {
    let r = &live.record;
    let mut v = json!({
        "id": r.id,
        "workflow": r.workflow,
        "kind": r.kind,
        "enabled": r.enabled,
        "created_at_ms": r.created_at_ms,
    });
    match r.kind {
        TriggerKind::Webhook => {
            v["url"] = json!(format!("/hooks/r/{}", r.id));
            v["secrets"] = r
                .secrets
                .iter()
                .map(
                    |s| json!({"created_at_ms": s.created_at_ms, "expires_at_ms": s.expires_at_ms}),
                )
                .collect();
        }
        TriggerKind::Cron => {
            v["schedule"] = json!(r.schedule);
            v["timezone"] = json!(r.timezone);
            v["missed"] = json!(r.missed);
        }
    }
    v
}

/// Keeps `live` in the store, then serves it (the caller holds
/// `changing`).
async fn save(state: &AppState, live: &Live) -> Result<(), HttpError> {
    state
        .store
        .put_trigger(&live.record)
        .await
        .map_err(store_failed)?;
    state.triggers.put(live.clone());
    Ok(())
}

fn store_failed(_: crate::store::StoreError) -> HttpError {
    HttpError::Unavailable("the change could not be stored; try again".into())
}

fn not_found(id: &str) -> HttpError {
    HttpError::NotFound(format!("no trigger `{id}`"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workflow: Option<String>,
}

/// `GET /api/v1/triggers?workflow=`.
#[utoipa::path(get, path = "/api/v1/triggers", tag = "triggers", params(("workflow" = Option<String>, Query)), responses((status = 200, description = "the triggers")), security(("admin" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let Query(q) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let all = state.triggers.list(q.workflow.as_deref());
    Ok(Json(
        json!({"triggers": all.iter().map(view).collect::<Vec<_>>()}),
    ))
}

/// `GET /api/v1/triggers/{id}`.
#[utoipa::path(get, path = "/api/v1/triggers/{id}", tag = "triggers", params(("id" = String, Path, description = "the trigger id")), responses((status = 200, description = "the trigger"), (status = 404, description = "no such trigger")), security(("admin" = [])))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let live = state.triggers.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(view(&live)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTrigger {
    workflow: String,
    kind: TriggerKind,
    schedule: Option<String>,
    timezone: Option<String>,
    missed: Option<Missed>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

fn body<T: serde::de::DeserializeOwned>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, HttpError> {
    body.map(|Json(b)| b)
        .map_err(|e| HttpError::BadRequest(e.body_text()))
}

/// `POST /api/v1/triggers` `{workflow, kind: "webhook"}` or `{workflow,
/// kind: "cron", schedule, timezone?, missed?}`: `201` with the trigger;
/// a webhook trigger's `url` and `secret`, the secret this once.
#[utoipa::path(post, path = "/api/v1/triggers", tag = "triggers", request_body(content = Object, description = "`{workflow, kind: webhook}` or `{workflow, kind: cron, schedule, timezone?, missed?}`", example = json!({"workflow": "orders", "kind": "webhook"})), responses((status = 201, description = "made; a webhook trigger has its `url` and `secret` (shown once)"), (status = 400, description = "a bad trigger"), (status = 404, description = "no such workflow")), security(("admin" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    new: Result<Json<NewTrigger>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, HttpError> {
    require_admin(&state, &headers)?;
    let new = body(new)?;
    if state.registry.load().get(&new.workflow).is_none() {
        return Err(HttpError::NotFound(format!(
            "no workflow `{}`",
            new.workflow
        )));
    }
    let now = now_ms();
    let mut record = TriggerRecord {
        id: new_id(),
        workflow: new.workflow,
        kind: new.kind,
        enabled: new.enabled,
        created_at_ms: now,
        secrets: Vec::new(),
        schedule: None,
        timezone: None,
        missed: None,
    };
    let mut secret = None;
    match new.kind {
        TriggerKind::Webhook => {
            if new.schedule.is_some() || new.timezone.is_some() || new.missed.is_some() {
                return Err(HttpError::BadRequest(
                    "a webhook trigger takes no `schedule`, `timezone` or `missed`".into(),
                ));
            }
            let (plain, kept) = new_secret(now);
            record.secrets.push(kept);
            secret = Some(plain);
        }
        TriggerKind::Cron => {
            let schedule = new
                .schedule
                .ok_or_else(|| HttpError::BadRequest("a cron trigger needs a `schedule`".into()))?;
            let timezone = new.timezone.unwrap_or_else(|| "UTC".into());
            CronSpec::parse(&schedule, &timezone, new.missed.unwrap_or_default())
                .map_err(HttpError::BadRequest)?;
            record.schedule = Some(schedule);
            record.timezone = Some(timezone);
            record.missed = Some(new.missed.unwrap_or_default());
        }
    }
    let live = Live::new(record).map_err(HttpError::BadRequest)?;
    let _one = state.triggers.changing.lock().await;
    save(&state, &live).await?;
    let mut shown = view(&live);
    if let Some(secret) = secret {
        shown["secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    enabled: bool,
}

/// `PATCH /api/v1/triggers/{id}` `{enabled}`.
#[utoipa::path(patch, path = "/api/v1/triggers/{id}", tag = "triggers", params(("id" = String, Path, description = "the trigger id")), request_body(content = Object, description = "`{enabled}`", example = json!({"enabled": false})), responses((status = 200, description = "the trigger"), (status = 404, description = "no such trigger")), security(("admin" = [])))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    change: Result<Json<Change>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let change = body(change)?;
    let _one = state.triggers.changing.lock().await;
    let mut live = state.triggers.get(&id).ok_or_else(|| not_found(&id))?;
    live.record.enabled = change.enabled;
    save(&state, &live).await?;
    Ok(Json(view(&live)))
}

/// `DELETE /api/v1/triggers/{id}`: `204`.
#[utoipa::path(delete, path = "/api/v1/triggers/{id}", tag = "triggers", params(("id" = String, Path, description = "the trigger id")), responses((status = 204, description = "deleted"), (status = 404, description = "no such trigger")), security(("admin" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, HttpError> {
    require_admin(&state, &headers)?;
    let _one = state.triggers.changing.lock().await;
    if !state
        .store
        .delete_trigger(&id)
        .await
        .map_err(store_failed)?
    {
        return Err(not_found(&id));
    }
    state.triggers.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the secrets in force keep verifying (`"24h"`, `"10s"`).
    grace: Option<String>,
}

/// `POST /api/v1/triggers/{id}/rotate-secret` `{grace?}`: a new secret
/// (shown this once); the ones in force verify for `grace` more (default
/// 24 h), then stop.
#[utoipa::path(post, path = "/api/v1/triggers/{id}/rotate-secret", tag = "triggers", params(("id" = String, Path, description = "the trigger id")), request_body(content = Object, description = "`{grace?}`", example = json!({"grace": "24h"})), responses((status = 200, description = "the new secret (shown once)"), (status = 404, description = "no such trigger"), (status = 409, description = "not a webhook trigger")), security(("admin" = [])))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    rotate: Option<Json<Rotate>>,
) -> Result<Json<Value>, HttpError> {
    require_admin(&state, &headers)?;
    let rotate = rotate.map(|Json(r)| r).unwrap_or_default();
    let grace = match rotate.grace {
        Some(g) => humantime::parse_duration(&g)
            .map_err(|e| HttpError::BadRequest(format!("`grace`: {e}")))?,
        None => DEFAULT_GRACE,
    };
    if grace > MAX_GRACE {
        return Err(HttpError::BadRequest(
            "`grace` may be at most 30 days".into(),
        ));
    }
    let _one = state.triggers.changing.lock().await;
    let mut live = state.triggers.get(&id).ok_or_else(|| not_found(&id))?;
    if live.record.kind != TriggerKind::Webhook {
        return Err(HttpError::Conflict(
            "only a webhook trigger has a secret".into(),
        ));
    }
    let now = now_ms();
    let until = now.saturating_add(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
    // Secrets already past their grace are dropped; those in force end
    // at `until` (or sooner, if they were to end sooner).
    live.record
        .secrets
        .retain(|s| s.expires_at_ms.is_none_or(|t| t > now));
    for s in &mut live.record.secrets {
        s.expires_at_ms = Some(s.expires_at_ms.map_or(until, |t| t.min(until)));
    }
    let (plain, kept) = new_secret(now);
    live.record.secrets.push(kept);
    save(&state, &live).await?;
    let mut shown = view(&live);
    shown["secret"] = json!(plain);
    Ok(Json(shown))
}
