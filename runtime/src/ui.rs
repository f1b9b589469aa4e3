//! The dashboard, served at `/ui/`: hand-written HTML, CSS and ES modules
//! from `runtime/ui/`, embedded in the binary in every profile. Every page
//! URL under `/ui/` gets `index.html` (the page routes itself); files come
//! from `/ui/assets/`. Answers carry an ETag (so a reload asks `If-None-Match`
//! and gets `304`), are compressed when the browser accepts it, and carry a
//! strict Content-Security-Policy: the page loads nothing but its own
//! files and talks to nothing but this server's API.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::compression::CompressionLayer;

use crate::state::AppState;

#[derive(rust_embed::Embed)]
#[folder = "ui/"]
struct Assets;

/// What every dashboard answer may load and do.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `/ui`, `/ui/` and everything under it.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|headers: HeaderMap| async move { page(&headers) }),
        )
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                match path.strip_prefix("assets/") {
                    Some(_) => file(&path, &headers),
                    None => page(&headers),
                }
            }),
        )
        .layer(axum::middleware::map_response(secure))
        .layer(CompressionLayer::new())
}

/// The page shell, for any page URL.
fn page(headers: &HeaderMap) -> Response {
    file("index.html", headers)
}

/// Embedded file `path`, or 404; `304` when the browser has it already.
fn file(path: &str, headers: &HeaderMap) -> Response {
    let Some(found) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&found.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = found.metadata.mimetype();
        ([(CONTENT_TYPE, mime.to_string())], found.data.into_owned()).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, etag);
    }
    // Kept, but checked with the ETag on every use: a new binary's files
    // show at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The headers every dashboard answer carries.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
