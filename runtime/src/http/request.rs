//! Reading a request: its body within a size and a time limit, and what is
//! kept of its head (the request metadata a plugin sees and the record
//! keeps, credentials removed).
//!
//! Body lengths come from hyper, which has already parsed and checked
//! `Content-Length` (`size_hint`); media types are parsed by `mime`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use super::credentials::is_credential;
use super::error::HttpError;
use crate::config::Auth;
use crate::execution::{RequestMeta, now_ms};
use crate::intake::Wait;

/// Bodies up to this size are read and dropped after an early refusal.
const DRAIN_MAX: u64 = 64 * 1024;

/// Reads the body within `timeout`, failing with 413 as soon as it passes
/// `limit`, whether or not its `Content-Length` announced it.
pub async fn read_body(body: Body, limit: u64, timeout: Duration) -> Result<Bytes, HttpError> {
    tokio::time::timeout(timeout, read_limited(body, limit))
        .await
        .map_err(|_| HttpError::BodyTimeout(timeout))?
}

async fn read_limited(mut body: Body, limit: u64) -> Result<Bytes, HttpError> {
    // Past the limit the rest is read and dropped while the 413 goes out
    // ([`linger`]), so a sender still writing reads its answer.
    if body.size_hint().lower() > limit {
        linger(body);
        return Err(HttpError::TooLarge { limit });
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| HttpError::BadRequest(format!("the body could not be read: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total += data.len() as u64;
        if total > limit {
            linger(body);
            return Err(HttpError::TooLarge { limit });
        }
        chunks.push(data);
    }
    // One chunk, the usual case, is kept as it came: no copy.
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    })
}

/// Reads and drops a refused body: one of at most [`DRAIN_MAX`] announced
/// bytes within a second, so the connection can carry the next request; a
/// larger one in the background while the answer goes out ([`linger`]).
/// Whether the connection is clean afterwards.
pub async fn drain_refused(body: Body) -> bool {
    match body.size_hint().upper() {
        Some(0) => true,
        Some(n) if n <= DRAIN_MAX => tokio::time::timeout(
            Duration::from_secs(1),
            Limited::new(body, DRAIN_MAX as usize).collect(),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
        _ => {
            linger(body);
            false
        }
    }
}

/// A refused body too big to read before answering is read and dropped
/// after the answer, up to this many bytes within [`LINGER_TIME`]: a sender
/// still writing it then reads its answer instead of a connection reset
/// (what servers call a lingering close). The answer says `Connection:
/// close`, so the connection ends afterwards either way.
const LINGER_MAX: usize = 8 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads and drops `body` in the background, within [`LINGER_MAX`] and
/// [`LINGER_TIME`], while the answer is sent.
/// Nothing is kept: each chunk is dropped as it arrives.
fn linger(mut body: Body) {
    tokio::spawn(async move {
        let discard = async {
            let mut read = 0;
            while read < LINGER_MAX
                && let Some(Ok(frame)) = body.frame().await
            {
                read += frame.data_ref().map_or(0, Bytes::len);
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, discard).await;
    });
}

/// The header a sender names its idempotency key in.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Header `name`'s value, trimmed, when it is non-empty text.
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// What the sender's `Prefer` headers (RFC 7240) ask of the answer:
/// `respond-async`, or `wait=N` (seconds; with or without
/// `respond-async`, which then says what to do when the wait is over).
/// Preferences are case-insensitive and may share a header, separated by
/// commas; any other, and a malformed `wait`, is ignored, as the RFC says.
pub fn wait_preference(headers: &HeaderMap) -> Wait {
    let mut wait = Wait::AsManifest;
    let prefs = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for pref in prefs {
        // Parameters after `;` do not change these two preferences.
        let token = pref.split(';').next().unwrap_or_default().trim();
        let (name, value) = token.split_once('=').unwrap_or((token, ""));
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("respond-async") {
            if wait == Wait::AsManifest {
                wait = Wait::NoWait;
            }
        } else if name.trim().eq_ignore_ascii_case("wait")
            && let Ok(seconds) = value.parse::<u64>()
        {
            wait = Wait::UpTo(Duration::from_secs(seconds));
        }
    }
    wait
}

/// The request's `Content-Type`, as sent (when it is text).
pub fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What is kept of a request: method, path, query, headers less those that
/// carry credentials under `auth`, the peer's address and the time.
pub fn request_meta(auth: &Auth, parts: &Parts) -> RequestMeta {
    let remote_addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    // A path token is a credential: it is not kept, nor shown to a step.
    let path = if parts.uri.path().starts_with("/hooks/t/") {
        "/hooks/t/{token}".to_string()
    } else {
        parts.uri.path().to_string()
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !is_credential(auth, name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    RequestMeta {
        method: parts.method.as_str().to_string(),
        path,
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        remote_addr,
        received_at_ms: now_ms(),
    }
}

/// The first value of query parameter `name`, decoded.
pub fn query_param(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> Wait {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("prefer", v.parse().unwrap());
        }
        wait_preference(&headers)
    }

    #[test]
    fn prefer_headers_are_read_as_rfc_7240_says() {
        assert_eq!(prefer(&[]), Wait::AsManifest);
        assert_eq!(prefer(&["respond-async"]), Wait::NoWait);
        assert_eq!(prefer(&["Respond-Async; x=1"]), Wait::NoWait);
        assert_eq!(prefer(&["wait=5"]), Wait::UpTo(Duration::from_secs(5)));
        assert_eq!(
            prefer(&["respond-async, wait=\"7\""]),
            Wait::UpTo(Duration::from_secs(7))
        );
        assert_eq!(
            prefer(&["wait=3", "respond-async"]),
            Wait::UpTo(Duration::from_secs(3))
        );
        assert_eq!(prefer(&["wait=soon", "return=minimal"]), Wait::AsManifest);
    }
}
