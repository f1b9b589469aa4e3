//! `/api/v1/session`: the dashboard's login and logout. `POST` trades the
//! admin token for the session cookie, `GET` tells whether the cookie's
//! session is live, `DELETE` ends it. See [`crate::http::Sessions`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::api_off;
use crate::http::{HttpError, SESSION_LIFETIME, set_cookie};
use crate::state::AppState;

/// A login is a small JSON object; more is refused unread.
const MAX_LOGIN_BYTES: usize = 4096;

#[derive(Deserialize)]
struct Login {
    token: String,
}

/// `POST /api/v1/session` with `{"token": "<admin token>"}`: `204` and the
/// session cookie, or `401`.
#[utoipa::path(post, path = "/api/v1/session", tag = "session", request_body(content = Object, description = "`{\"token\": \"<admin token>\"}`"), responses((status = 204, description = "logged in: the session cookie is set"), (status = 401, description = "not the admin token"), (status = 429, description = "too many logins from this address"), (status = 403, description = "not from this origin's pages")))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, HttpError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    state
        .sessions
        .attempt_login(peer)
        .map_err(|retry_after| HttpError::RateLimited {
            limit: "at most 10 logins a minute are tried from one address".into(),
            retry_after,
        })?;
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), MAX_LOGIN_BYTES)
        .await
        .map_err(|_| HttpError::TooLarge {
            limit: MAX_LOGIN_BYTES as u64,
        })?;
    let login: Login = serde_json::from_slice(&body)
        .map_err(|e| HttpError::BadRequest(format!("expected {{\"token\": \"...\"}}: {e}")))?;
    let Some(admin) = &state.admin_token else {
        return Err(api_off(false));
    };
    if !admin.matches(login.token.trim().as_bytes()) {
        return Err(HttpError::Unauthorized {
            message: "that is not the admin token".into(),
            bearer: false,
        });
    }
    let (cookie, _) = state
        .sessions
        .start()
        .await
        .map_err(|_| HttpError::Unavailable("the session could not be stored; try again".into()))?
        .ok_or_else(|| api_off(false))?;
    Ok((
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, set_cookie(&headers, &cookie, SESSION_LIFETIME))],
    )
        .into_response())
}

/// `GET /api/v1/session`: `200` with when the cookie's session expires, or
/// `401`.
#[utoipa::path(get, path = "/api/v1/session", tag = "session", responses((status = 200, description = "`{\"expires_at_ms\": N}`"), (status = 401, description = "no live session")))]
pub async fn current(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, HttpError> {
    let expires = state
        .sessions
        .check(&headers)
        .ok_or_else(|| HttpError::Unauthorized {
            message: "not logged in".into(),
            bearer: false,
        })?;
    Ok(Json(json!({ "expires_at_ms": expires })))
}

/// `DELETE /api/v1/session`: ends the cookie's session (its cookie no
/// longer works anywhere) and clears the cookie; `204`.
#[utoipa::path(delete, path = "/api/v1/session", tag = "session", responses((status = 204, description = "logged out"), (status = 403, description = "not from this origin's pages")))]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    state
        .sessions
        .end(&headers)
        .await
        .map_err(|_| HttpError::Unavailable("the logout could not be stored; try again".into()))?;
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(SET_COOKIE, set_cookie(&headers, "", Duration::ZERO));
    Ok(response)
}
