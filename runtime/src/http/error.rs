//! Every error an HTTP caller can get, and how it is answered: a status
//! code and a JSON body `{code, title, message}`. 5xx bodies never carry
//! internals; those go to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use crate::config::FieldError;
use crate::execution::Status;
use crate::intake::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    NotFound(String),
    #[error("this endpoint accepts {}", allow.join(", "))]
    MethodNotAllowed { allow: Vec<&'static str> },
    #[error("{message}")]
    Unauthorized {
        message: String,
        /// Ask for a bearer token (`WWW-Authenticate: Bearer`).
        bearer: bool,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("workflow `{0}` is disabled; enable it to accept events")]
    Inactive(String),
    #[error("trigger `{0}` is disabled; enable it to accept events")]
    TriggerInactive(String),
    #[error("the body is larger than this endpoint's limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the server is shutting down; try again shortly")]
    Draining,
    /// `limit` says who accepts what: "this workflow accepts at most 5
    /// events per 1s".
    #[error("{limit}; try again in {retry_after} s")]
    RateLimited { limit: String, retry_after: u64 },
    #[error("the quota of {quota} is used up; it resets in {retry_after} s")]
    QuotaExceeded { quota: String, retry_after: u64 },
    #[error("the workflow ended `{}`; its execution record holds the error", status.as_str())]
    WorkflowFailed { execution_id: Uuid, status: Status },
    #[error("this idempotency key was already used by execution {execution_id}")]
    Duplicate { execution_id: Uuid },
    #[error("the input is not valid: {}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    InvalidInput(Vec<FieldError>),
}

impl HttpError {
    /// The answer when the store cannot be read; the cause goes to the log.
    pub fn store_read(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "store read failed");
        HttpError::Unavailable("the store could not be read; try again".into())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            HttpError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            HttpError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            HttpError::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            HttpError::Unauthorized { .. } => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            }
            HttpError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            HttpError::Inactive(_) | HttpError::TriggerInactive(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "workflow-inactive",
                "Workflow inactive",
            ),
            HttpError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            HttpError::BodyTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
            ),
            HttpError::BadJson(_) => (StatusCode::BAD_REQUEST, "invalid-json", "Invalid JSON"),
            HttpError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            HttpError::Unavailable(_) | HttpError::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            HttpError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
            ),
            HttpError::QuotaExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "quota-exceeded",
                "Quota exceeded",
            ),
            HttpError::WorkflowFailed { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "workflow-failed",
                "Workflow failed",
            ),
            HttpError::Duplicate { .. } => (StatusCode::CONFLICT, "duplicate", "Duplicate"),
            HttpError::InvalidInput(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-input",
                "Invalid input",
            ),
        }
    }
}

/// Why a request got no place among those in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Shutdown has begun.
    Draining,
    /// Every place is taken.
    Full,
    /// The workflow is receiving its `limits.max_receiving` of bodies.
    Receiving,
    /// The server is receiving its `--max-receiving` of bodies.
    ReceivingAll,
}

impl From<Busy> for HttpError {
    fn from(busy: Busy) -> Self {
        match busy {
            Busy::Draining => HttpError::Draining,
            Busy::Full => HttpError::Unavailable(
                "the server is at its limit of requests in flight; try again".into(),
            ),
            Busy::Receiving => HttpError::Unavailable(
                "this workflow is receiving its limit of request bodies at once; try again".into(),
            ),
            Busy::ReceivingAll => HttpError::Unavailable(
                "the server is receiving its limit of request bodies at once; try again".into(),
            ),
        }
    }
}

impl From<Refusal> for HttpError {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::Inactive(name) => HttpError::Inactive(name),
            Refusal::RateLimited { limit, retry_after } => HttpError::RateLimited {
                limit: format!("this workflow accepts at most {limit}"),
                retry_after,
            },
            Refusal::QuotaExceeded { quota, retry_after } => {
                HttpError::QuotaExceeded { quota, retry_after }
            }
            Refusal::QueueFull | Refusal::QueueBytesFull | Refusal::StoreFailed => {
                HttpError::Unavailable(message)
            }
            Refusal::BadJson(e) => HttpError::BadJson(e),
            Refusal::KeyTooLong(_) | Refusal::UnknownEnvironment(_) => {
                HttpError::BadRequest(message)
            }
            Refusal::InvalidInput(errors) => HttpError::InvalidInput(errors),
            Refusal::Duplicate(execution_id) => HttpError::Duplicate { execution_id },
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        let mut body = json!({ "code": code, "title": title, "message": self.to_string() });
        if let HttpError::WorkflowFailed { execution_id, .. }
        | HttpError::Duplicate { execution_id } = &self
        {
            body["execution_id"] = json!(execution_id);
        }
        if let HttpError::InvalidInput(errors) = &self {
            body["errors"] = json!(errors);
        }
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            HttpError::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                    headers.insert(header::ALLOW, v);
                }
            }
            HttpError::Unauthorized { bearer: true, .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            HttpError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            // Another instance, or this one restarted, will answer.
            HttpError::Draining => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            // The rest of the body may still be on its way: end the
            // connection rather than read it.
            HttpError::TooLarge { .. } | HttpError::BodyTimeout(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            HttpError::RateLimited { retry_after, .. }
            | HttpError::QuotaExceeded { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}
