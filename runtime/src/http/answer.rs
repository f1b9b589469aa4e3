//! What an accepted delivery's sender hears (SPEC §5.1): `202` with where
//! to follow the execution, the finished result of a sync workflow (or the
//! answer a step shaped), `500` when it failed, and the original answer
//! again, marked `Idempotent-Replayed`, for a repeated idempotency key.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use super::error::HttpError;
use super::read_token::ReadTokens;
use crate::config::Mode;
use crate::execution::{Execution, ShapedResponse, Status};
use crate::intake::{Outcome, Wait};

/// The HTTP answer to an intake outcome; a `202` says where the sender
/// can follow the execution with its read token.
pub fn answer(outcome: Outcome, tokens: &ReadTokens) -> Response {
    match outcome {
        Outcome::Accepted(id) => accepted(id, tokens),
        Outcome::Finished(execution) => finished(execution),
        Outcome::Replayed { original, finished } => {
            let mut response = finished.map_or_else(|| accepted(original, tokens), self::finished);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    }
}

/// [`answer`], saying `Preference-Applied: respond-async` (RFC 7240)
/// when the sender asked a sync workflow for the answer at once and got
/// it.
pub fn answer_preferring(
    outcome: Outcome,
    wait: Wait,
    mode: Mode,
    tokens: &ReadTokens,
) -> Response {
    let mut response = answer(outcome, tokens);
    if wait == Wait::NoWait && mode == Mode::Sync && response.status() == StatusCode::ACCEPTED {
        response.headers_mut().insert(
            HeaderName::from_static("preference-applied"),
            HeaderValue::from_static("respond-async"),
        );
    }
    response
}

/// 202 with where to follow the execution: its record (`status_url`,
/// also the `Location`) and its events (`stream_url`).
fn accepted(id: Uuid, tokens: &ReadTokens) -> Response {
    let url = tokens.status_url(id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({
            "execution_id": id,
            "status": Status::Queued.as_str(),
            "status_url": url,
            "stream_url": tokens.stream_url(id),
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// A finished sync execution: its output, the answer a step shaped, or
/// 500 when it did not succeed.
fn finished(execution: Execution) -> Response {
    if execution.status != Status::Succeeded {
        // What went wrong is in the record, behind the admin token: a
        // step's error text is the plugin's to write and never reaches the
        // sender.
        return HttpError::WorkflowFailed {
            execution_id: execution.id,
            status: execution.status,
        }
        .into_response();
    }
    if let Some(shaped) = execution.response {
        return shaped_response(shaped);
    }
    (
        StatusCode::OK,
        Json(json!({
            "execution_id": execution.id,
            "status": execution.status.as_str(),
            "output": execution.output,
        })),
    )
        .into_response()
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
