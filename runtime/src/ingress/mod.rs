//! Webhook ingress: `/hooks/{path...}` (SPEC §5.1). Turns an HTTP request
//! into a [`Delivery`] for intake, and intake's outcome back into HTTP.
//!
//! In order: route by manifest path (404), method (405), credentials (401),
//! admission (422 disabled, 429 rate, 503 full; after the signature for
//! signed kinds), body size while streaming (413); then intake checks the
//! payload (400, 422), records the event durably and only then does the
//! sender get its answer: 202 at once (async), or the result (sync).

mod auth;
pub(crate) mod signature;

use std::sync::Arc;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::config::{Auth, Method};
use crate::execution::{Event, now_ms};
use crate::http::{self, HttpError};
use crate::intake::{Delivery, KeySource, Trigger};
use crate::state::AppState;
use crate::store::TriggerKind;

/// The handler behind `/hooks/{*path}`.
#[utoipa::path(method(get, post, put, patch, delete), path = "/hooks/{*path}", tag = "webhooks", params(("path" = String, Path, description = "the trigger path, `t/{token}` or `r/{trigger id}`")), request_body(content = Object, description = "the event, as the sender sends it", example = json!({"order": 42})), responses((status = 200, description = "a sync workflow finished"), (status = 202, description = "recorded; `status_url` and `stream_url` follow it"), (status = 401, description = "credentials or signature refused"), (status = 404, description = "no workflow served there"), (status = 413, description = "body too large"), (status = 422, description = "disabled, or invalid input"), (status = 429, description = "rate limit or quota"), (status = 503, description = "shedding load")))]
pub async fn hook(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    match handle(&state, &parts, &mut body).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = e.into_response();
            // Refused before the body was read: read a small one to the end
            // so the connection can carry the next request; otherwise say
            // the connection closes, rather than let the client reuse it.
            if let Some(unread) = body
                && !http::drain_refused(unread).await
            {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

async fn handle(
    state: &AppState,
    parts: &Parts,
    body: &mut Option<Body>,
) -> Result<Response, HttpError> {
    state.check_draining()?;
    // Routed by the decoded path: `orders%2Fpaid` is `orders/paid` (trigger
    // paths hold only unreserved characters, so decoding is unambiguous);
    // what does not decode to UTF-8 is served by no workflow.
    let sent = parts.uri.path().strip_prefix("/hooks/").unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(sent).decode_utf8();
    let path: &str = decoded.as_deref().unwrap_or(sent);
    // `r/{id}`: a trigger made through the API.
    let runtime = match path.strip_prefix("r/") {
        Some(id) => Some(
            state
                .triggers
                .get(id)
                .filter(|t| t.record.kind == TriggerKind::Webhook)
                .ok_or_else(|| {
                    HttpError::NotFound(format!("no trigger is served at /hooks/{path}"))
                })?,
        ),
        None => None,
    };
    let registry = state.registry.load();
    let found = match (&runtime, path.strip_prefix("t/")) {
        (Some(t), _) => registry.get(&t.record.workflow),
        (None, Some(token)) => registry.route_token(token),
        (None, None) => registry.route(path),
    };
    let workflow = found.cloned().ok_or_else(|| {
        // Never echo a path token back.
        let shown = if path.starts_with("t/") {
            "t/…"
        } else {
            path
        };
        HttpError::NotFound(format!("no workflow is served at /hooks/{shown}"))
    })?;
    drop(registry);
    // Which of the workflow's webhook triggers this is.
    let spec = &workflow.spec;
    let trigger = match (&runtime, path.strip_prefix("t/")) {
        (Some(_), _) => Some(&spec.trigger),
        (None, Some(token)) => spec.hook_for_token(token),
        (None, None) => spec.hook_at(path),
    }
    .unwrap_or(&spec.trigger);

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
    match &runtime {
        Some(t) => {
            let token = http::bearer_token(&parts.headers)?;
            if !crate::triggers::verify(&t.record, token.as_bytes(), now_ms()) {
                return Err(HttpError::Unauthorized {
                    message: "the bearer token is not this trigger's".into(),
                    bearer: true,
                });
            }
            if !t.record.enabled {
                return Err(HttpError::TriggerInactive(t.record.id.clone()));
            }
        }
        None => auth::check(&trigger.auth, &parts.headers)?,
    }
    // The workflow's rate limiter and receiving room, looked up once.
    let gate = state.intake.gate(&workflow);
    let signed = runtime.is_none() && trigger.auth.needs_body();
    if !signed {
        state.intake.admit(&workflow, &gate)?;
    }

    let request = http::request_meta(&trigger.auth, parts);
    let content_type = http::content_type(&parts.headers);
    // Room for the body in this workflow's and the server's receiving
    // room: the announced length, or `max_body` when none is announced. A
    // sender not yet verified holds this and nothing else (no place among
    // the requests in flight), so strangers cannot crowd out other
    // workflows.
    let announced = body
        .as_ref()
        .and_then(|b| b.size_hint().upper())
        .unwrap_or(trigger.max_body)
        .min(trigger.max_body);
    let receiving = state.receive(&gate, announced)?;
    // From here on the body is read, whatever happens.
    let unread = body.take().unwrap_or_default();
    let body = http::read_body(unread, trigger.max_body, state.body_timeout).await?;
    if signed {
        // Signatures cover the raw bytes: checked before anything parses them.
        auth::check_signed(&trigger.auth, &parts.headers, &body)?;
        state.intake.admit(&workflow, &gate)?;
    }
    drop(receiving);
    // Received and, for signed kinds, verified: now a place among the
    // requests in flight.
    let _in_flight = state.admit_request()?;
    let event = Event::new(request, content_type, body);
    let delivery = Delivery {
        unparsed_json: event.is_json,
        key: idempotency_key(&trigger.auth, &parts.headers, event.is_json),
        event,
        trigger: Trigger::Webhook,
        user: None,
        wait: http::wait_preference(&parts.headers),
        replay_of: None,
        environment: http::query_param(parts, "environment"),
    };
    state.deliver(workflow, delivery).await
}

/// Where the delivery's idempotency key comes from. For the kinds that sign
/// a delivery id, that id and nothing else: `webhook-id`
/// (standard-webhooks) and the event's `id` (stripe), so a captured
/// delivery resent with a new, unsigned `Idempotency-Key` is still a
/// duplicate. Otherwise `Idempotency-Key`, else GitHub's
/// `X-GitHub-Delivery` (GitHub signs neither). Never derived from the
/// body's bytes: a Stripe event id is a field the sender set, not a hash.
fn idempotency_key(auth: &Auth, headers: &HeaderMap, is_json: bool) -> KeySource {
    let given = |name| http::header_text(headers, name).map(KeySource::Given);
    let key = match auth {
        Auth::StandardWebhooks { .. } => given("webhook-id"),
        Auth::Stripe { .. } => is_json.then_some(KeySource::PayloadId),
        Auth::Github { .. } => given(http::IDEMPOTENCY_KEY).or_else(|| given("x-github-delivery")),
        _ => given(http::IDEMPOTENCY_KEY),
    };
    key.unwrap_or(KeySource::None)
}
