//! Webhook ingress: `/hooks/{path...}` (SPEC §5.1).
//!
//! In order: route by manifest path (404), method (405), credentials (401),
//! enabled (422), body size while streaming (413), JSON (400); then the
//! event and its `queued` execution commit durably, and only then does the
//! sender get its answer: 202 at once (async), or the result (sync).

pub mod auth;
pub mod error;
pub mod run;
pub mod signature;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::config::{Auth, InputField, Method, Mode, OnDuplicate};
use crate::execution::{Event, Execution, RequestMeta, ShapedResponse, Status, now_ms};
use crate::registry::Workflow;
use crate::runner::{Job, new_execution};
use crate::server::App;
use crate::store::{Claim, IdempotencyKey};
use error::FieldError;
pub use error::HttpError;

/// The handler behind `/hooks/{*path}`.
pub async fn hook(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    match handle(app, &parts, &mut body).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = e.into_response();
            // Refused before the body was read: read a small one to the end
            // so the connection can carry the next request; otherwise say
            // the connection closes, rather than let the client reuse it.
            if let Some(unread) = body
                && !drain_small(&parts.headers, unread).await
            {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// Bodies up to this size are read and dropped after an early refusal.
const DRAIN_MAX: u64 = 64 * 1024;

/// Reads and drops a body of at most [`DRAIN_MAX`] declared bytes, within a
/// second; whether the connection is clean afterwards.
async fn drain_small(headers: &HeaderMap, body: Body) -> bool {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        None if !headers.contains_key(header::TRANSFER_ENCODING) => true,
        Some(n) if n <= DRAIN_MAX => tokio::time::timeout(
            std::time::Duration::from_secs(1),
            Limited::new(body, DRAIN_MAX as usize).collect(),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
        _ => false,
    }
}

async fn handle(
    app: Arc<App>,
    parts: &axum::http::request::Parts,
    body: &mut Option<Body>,
) -> Result<Response, HttpError> {
    let _in_flight = in_flight(&app)?;
    let path = parts
        .uri
        .path()
        .strip_prefix("/hooks/")
        .unwrap_or_default()
        .to_string();
    let registry = app.registry.load();
    let found = match path.strip_prefix("t/") {
        Some(token) => registry.route_token(token),
        None => registry.route(&path),
    };
    let workflow = found.cloned().ok_or_else(|| {
        // Never echo a path token back.
        let shown = if path.starts_with("t/") {
            "t/…"
        } else {
            path.as_str()
        };
        HttpError::NotFound(format!("no workflow is served at /hooks/{shown}"))
    })?;
    drop(registry);
    let spec = &workflow.spec;
    let trigger = &spec.trigger;

    if !trigger
        .methods
        .iter()
        .any(|m| m.as_str() == parts.method.as_str())
    {
        return Err(HttpError::MethodNotAllowed {
            allow: trigger
                .methods
                .iter()
                .map(|m: &Method| m.as_str())
                .collect(),
        });
    }
    auth::check(&trigger.auth, &parts.headers)?;
    let signed = trigger.auth.needs_body();
    if !signed {
        admit(&app, &workflow)?;
    }

    let request = request_meta_for(&workflow, parts);
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // From here on the body is read, whatever happens.
    let unread = body.take().unwrap_or_default();
    let body = tokio::time::timeout(
        app.body_timeout,
        read_body(&parts.headers, unread, trigger.max_body),
    )
    .await
    .map_err(|_| HttpError::BodyTimeout(app.body_timeout))??;
    if signed {
        // Signatures cover the raw bytes: checked before anything parses them.
        auth::check_signed(&trigger.auth, &parts.headers, &body)?;
        admit(&app, &workflow)?;
    }
    let is_json = !body.is_empty() && is_json_type(content_type.as_deref());
    if is_json {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|e| HttpError::BadJson(e.to_string()))?;
    }
    let event = Arc::new(Event::new(request, content_type, body, is_json));
    let key = idempotency_key(&trigger.auth, &parts.headers, &event)?;
    accept(&app, workflow, event, key, "webhook", None).await
}

/// Records an admitted event as a new execution (unless its idempotency
/// key is held), starts it, and answers: 202 at once, or the result for a
/// sync workflow. Shared by webhooks and `POST /api/v1/run`.
pub(crate) async fn accept(
    app: &App,
    workflow: Arc<Workflow>,
    event: Arc<Event>,
    key: Option<String>,
    trigger_kind: &str,
    user: Option<String>,
) -> Result<Response, HttpError> {
    let spec = &workflow.spec;
    let trigger = &spec.trigger;
    if !spec.input.is_empty() {
        check_input(&spec.input, event.payload_text())?;
    }
    if let Some(schema) = &spec.input_schema {
        check_schema(schema, event.payload_text())?;
    }
    let key = key.map(|k| {
        let expires = now_ms().saturating_add(
            u64::try_from(trigger.idempotency_window.as_millis()).unwrap_or(u64::MAX),
        );
        IdempotencyKey::new(&spec.name, &k, expires)
    });
    let mut execution = new_execution(&workflow, &event, trigger_kind);
    execution.user = user;
    let claim = app
        .store
        .put_new(&execution, event.body.clone(), key)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, workflow = %spec.name, "cannot record event");
            HttpError::Unavailable("the event could not be stored; try again".into())
        })?;
    if let Claim::Duplicate(original) = claim {
        return duplicate(app, trigger, original).await;
    }

    let id = execution.id;
    let mode = trigger.mode;
    let sync_timeout = trigger.sync_timeout;
    let done = app.runner.start(Job {
        workflow,
        execution,
        event,
    });
    if mode == Mode::Async {
        return Ok(accepted(id));
    }
    match tokio::time::timeout(sync_timeout, done).await {
        Ok(Ok(finished)) => finished_response(finished),
        // Still running (or the server is stopping): the sender can follow it.
        Ok(Err(_)) | Err(_) => Ok(accepted(id)),
    }
}

/// A place among the requests in flight; none left sheds the request
/// (503) rather than queueing it without bound.
pub(crate) fn in_flight(app: &App) -> Result<tokio::sync::SemaphorePermit<'_>, HttpError> {
    app.in_flight.try_acquire().map_err(|_| {
        HttpError::Unavailable("the server is at its limit of requests in flight; try again".into())
    })
}

/// After the sender is authenticated: is the workflow enabled, within its
/// rate, and is there room for another execution?
pub(crate) fn admit(app: &App, workflow: &Workflow) -> Result<(), HttpError> {
    if !workflow.spec.enabled {
        return Err(HttpError::Inactive(workflow.spec.name.clone()));
    }
    if let Some(limiter) = &workflow.rate {
        limiter.check().map_err(|not_until| {
            use governor::clock::{Clock, DefaultClock};
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let rate = workflow.spec.limits.rate.map_or_else(String::new, |r| {
                format!("{} requests per {:?}", r.count, r.per)
            });
            HttpError::RateLimited {
                limit: rate,
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })?;
    }
    if app.runner.waiting() >= app.max_queued {
        return Err(HttpError::Unavailable(
            "too many executions are waiting to run; try again".into(),
        ));
    }
    Ok(())
}

/// Checks the payload against the typed input fields; reports every
/// problem at once.
fn check_input(fields: &[InputField], payload: &str) -> Result<(), HttpError> {
    let payload: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let Some(object) = payload.as_object() else {
        return Err(HttpError::InvalidInput(vec![FieldError {
            field: String::new(),
            message: "the payload must be a JSON object (or a form)".into(),
        }]));
    };
    let errors: Vec<FieldError> = fields
        .iter()
        .filter_map(|f| {
            let message = match object.get(&f.name) {
                None | Some(serde_json::Value::Null) if f.required => {
                    format!("`{}` is required ({})", f.name, f.kind.as_str())
                }
                None | Some(serde_json::Value::Null) => return None,
                Some(v) if f.kind.accepts(v) => return None,
                Some(v) => format!(
                    "`{}` must be {}, not {}",
                    f.name,
                    f.kind.as_str(),
                    json_kind(v)
                ),
            };
            Some(FieldError {
                field: f.name.clone(),
                message,
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(HttpError::InvalidInput(errors))
    }
}

/// Checks the payload against the workflow's JSON Schema; reports every
/// violation (capped at 50).
fn check_schema(schema: &jsonschema::Validator, payload: &str) -> Result<(), HttpError> {
    let payload: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let errors: Vec<FieldError> = schema
        .iter_errors(&payload)
        .take(50)
        .map(|e| FieldError {
            field: e.instance_path().to_string(),
            message: format!("{}: {e}", e.instance_path()),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(HttpError::InvalidInput(errors))
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The longest idempotency key accepted.
const MAX_KEY_LEN: usize = 255;

/// The delivery's idempotency key: `Idempotency-Key`, else the provider's
/// delivery id. Never derived from the body's bytes (a Stripe event id is
/// a field the sender set, not a hash).
pub(crate) fn idempotency_key(
    auth: &Auth,
    headers: &HeaderMap,
    event: &Event,
) -> Result<Option<String>, HttpError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let key = header("idempotency-key").or_else(|| match auth {
        Auth::StandardWebhooks { .. } => header("webhook-id"),
        Auth::Github { .. } => header("x-github-delivery"),
        Auth::Stripe { .. } if event.is_json => {
            #[derive(serde::Deserialize)]
            struct StripeEvent {
                id: Option<String>,
            }
            serde_json::from_slice::<StripeEvent>(&event.body)
                .ok()
                .and_then(|e| e.id)
        }
        _ => None,
    });
    match key {
        Some(k) if k.len() > MAX_KEY_LEN => Err(HttpError::BadRequest(format!(
            "the idempotency key is {} bytes; the limit is {MAX_KEY_LEN}",
            k.len()
        ))),
        other => Ok(other),
    }
}

/// The answer to a delivery whose key is already held by `original`.
async fn duplicate(
    app: &App,
    trigger: &crate::config::TriggerSpec,
    original: uuid::Uuid,
) -> Result<Response, HttpError> {
    if trigger.on_duplicate == OnDuplicate::Conflict {
        return Err(HttpError::Duplicate {
            execution_id: original,
        });
    }
    let execution = app.store.get(original).await.ok().flatten();
    let mut response = match execution {
        Some(e) if trigger.mode == Mode::Sync && e.status.is_finished() => {
            finished_response(e).unwrap_or_else(IntoResponse::into_response)
        }
        _ => accepted(original),
    };
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

fn status_url(id: uuid::Uuid) -> String {
    format!("/api/v1/executions/{id}")
}

/// 202 with where to follow the execution.
fn accepted(id: uuid::Uuid) -> Response {
    let url = status_url(id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({
            "execution_id": id,
            "status": Status::Queued.as_str(),
            "status_url": url,
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn finished_response(execution: Execution) -> Result<Response, HttpError> {
    if execution.status != Status::Succeeded {
        return Err(HttpError::WorkflowFailed {
            execution_id: execution.id,
            message: execution
                .error
                .unwrap_or_else(|| execution.status.as_str().to_string()),
        });
    }
    if let Some(shaped) = execution.response {
        return Ok(shaped_response(shaped));
    }
    Ok((
        StatusCode::OK,
        Json(json!({
            "execution_id": execution.id,
            "status": execution.status.as_str(),
            "output": execution.output,
        })),
    )
        .into_response())
}

/// The answer a step chose. Framing headers stay hookflow's.
fn shaped_response(shaped: ShapedResponse) -> Response {
    let status = StatusCode::from_u16(shaped.status).unwrap_or(StatusCode::OK);
    let mut response = Response::new(Body::from(shaped.body));
    *response.status_mut() = status;
    for (name, value) in shaped.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        if name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
            && name != header::CONNECTION
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Reads the body, failing with 413 as soon as it passes `limit`, whether
/// or not a Content-Length announced it.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
) -> Result<Bytes, HttpError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(HttpError::TooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(HttpError::TooLarge { limit })
        }
        Err(e) => Err(HttpError::BadRequest(format!(
            "the body could not be read: {e}"
        ))),
    }
}

/// JSON when the content type says so, or when there is none.
fn is_json_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

pub(crate) fn request_meta_for(
    workflow: &Workflow,
    req: &axum::http::request::Parts,
) -> RequestMeta {
    let remote_addr = req
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    // A path token is a credential: it is not kept, nor shown to a step.
    let path = if req.uri.path().starts_with("/hooks/t/") {
        "/hooks/t/{token}".to_string()
    } else {
        req.uri.path().to_string()
    };
    RequestMeta {
        method: req.method.as_str().to_string(),
        path,
        query: req.uri.query().unwrap_or_default().to_string(),
        headers: visible_headers(workflow, &req.headers),
        remote_addr,
        received_at_ms: now_ms(),
    }
}

/// Headers a plugin may see: everything but credentials.
fn visible_headers(workflow: &Workflow, headers: &HeaderMap) -> Vec<(String, String)> {
    let auth = &workflow.spec.trigger.auth;
    headers
        .iter()
        .filter(|(name, _)| !auth::is_credential(auth, name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_told_by_content_type() {
        assert!(is_json_type(None));
        assert!(is_json_type(Some("application/json; charset=utf-8")));
        assert!(is_json_type(Some("application/vnd.api+json")));
        assert!(!is_json_type(Some("text/plain")));
        assert!(!is_json_type(Some("application/x-www-form-urlencoded")));
    }
}
