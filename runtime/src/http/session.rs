//! Dashboard sessions: the login form trades the admin token for a random
//! session cookie (HttpOnly, SameSite=Strict, Secure behind TLS), so that
//! the page's scripts and its event streams never hold the token.
//!
//! Only SHA-256 of the admin token and the cookie's value together is kept
//! (in memory, and in the store so that a restart does not log anyone
//! out): a leaked database holds no usable cookie, and a new admin token
//! ends every session. A session lasts [`LIFETIME`]; logging out ends it.
//!
//! A cookie is sent by the browser whoever made the page that asks, so an
//! unsafe request that relies on one must come from this origin:
//! [`same_origin`] refuses it otherwise (bearer-token calls are unchanged).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::error::HttpError;
use crate::config::Secret;
use crate::execution::now_ms;
use crate::store::{Store, StoreError};

/// The cookie's name.
pub const COOKIE_NAME: &str = "hookflow_session";
/// How long a session lasts from login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; logging in past it ends the one closest to
/// expiring.
const MAX_SESSIONS: usize = 1024;
/// Logins each address may try: a burst of this many, then one more every
/// six seconds. Enough for an operator who mistypes, too few to guess.
const LOGINS_PER_MINUTE: u32 = 10;
/// Addresses remembered for the login limit before the ones whose limit
/// has refilled are forgotten.
const LOGIN_ADDRESSES: usize = 4096;

pub struct Sessions {
    /// SHA-256 of the admin token: what binds sessions to it. `None` when
    /// the API is off (no session can start).
    binding: Option<[u8; 32]>,
    /// Digest -> expiry (ms since the epoch).
    live: Mutex<HashMap<[u8; 32], u64>>,
    store: Store,
    /// Login attempts by address (an IPv6 address by its /64).
    logins: governor::DefaultKeyedRateLimiter<IpAddr>,
}

impl Sessions {
    /// The sessions kept in `store` for `admin` (the admin token).
    pub async fn load(store: Store, admin: Option<&Secret>) -> Result<Self, StoreError> {
        let live = store.sessions(now_ms()).await?.into_iter().collect();
        let per_minute = NonZeroU32::new(LOGINS_PER_MINUTE).expect("a positive rate");
        Ok(Self {
            binding: admin.map(|a| Sha256::digest(a.expose()).into()),
            live: Mutex::new(live),
            store,
            logins: governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute)),
        })
    }

    /// Counts a login attempt from `peer`: `Err(seconds)` to wait when it
    /// has tried too often.
    pub fn attempt_login(&self, peer: IpAddr) -> Result<(), u64> {
        let key = match peer {
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
            v4 => v4,
        };
        if self.logins.len() > LOGIN_ADDRESSES {
            self.logins.retain_recent();
        }
        self.logins.check_key(&key).map_err(|not_until| {
            use governor::clock::Clock as _;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs() + 1
        })
    }

    fn digest(binding: &[u8; 32], cookie: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(b"hookflow session\0");
        hash.update(binding);
        hash.update(cookie.as_bytes());
        hash.finalize().into()
    }

    /// Starts a session: the cookie's value and when it expires; `None`
    /// when the API is off.
    pub async fn start(&self) -> Result<Option<(String, u64)>, StoreError> {
        let Some(binding) = &self.binding else {
            return Ok(None);
        };
        let cookie = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let key = Self::digest(binding, &cookie);
        let now = now_ms();
        let expires = now + LIFETIME.as_millis() as u64;
        let evicted = {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            live.retain(|_, e| *e > now);
            let oldest = (live.len() >= MAX_SESSIONS)
                .then(|| live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k))
                .flatten();
            if let Some(k) = oldest {
                live.remove(&k);
            }
            oldest
        };
        if let Some(k) = evicted {
            self.store.end_sessions(vec![k]).await?;
        }
        self.store.start_session(key, expires).await?;
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, expires);
        Ok(Some((cookie, expires)))
    }

    /// When the session of the request's cookie expires, if it has a live
    /// one.
    pub fn check(&self, headers: &HeaderMap) -> Option<u64> {
        let binding = self.binding.as_ref()?;
        let key = Self::digest(binding, cookie_value(headers)?);
        let expires = *self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)?;
        (expires > now_ms()).then_some(expires)
    }

    /// Ends the session of the request's cookie, if any.
    pub async fn end(&self, headers: &HeaderMap) -> Result<(), StoreError> {
        let (Some(binding), Some(cookie)) = (&self.binding, cookie_value(headers)) else {
            return Ok(());
        };
        let key = Self::digest(binding, cookie);
        let known = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key)
            .is_some();
        if known {
            self.store.end_sessions(vec![key]).await?;
        }
        Ok(())
    }
}

/// The session cookie's value, among the request's cookies.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME).then_some(value.trim())
        })
}

/// Whether the request reached the proxy in front over TLS (hookflow
/// itself serves plain HTTP): the cookie is then marked `Secure`.
fn behind_tls(headers: &HeaderMap) -> bool {
    let forwarded_https = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("https"))
    };
    forwarded_https("x-forwarded-proto") || forwarded_https("forwarded")
}

/// `Set-Cookie` for session `value`, for `max_age` (zero clears it).
pub fn set_cookie(headers: &HeaderMap, value: &str, max_age: Duration) -> HeaderValue {
    let secure = if behind_tls(headers) { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE_NAME}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age.as_secs()
    );
    // Invariant: the value is base64url and the rest is ASCII.
    HeaderValue::from_str(&text).expect("a cookie of ASCII")
}

/// Whether a browser says the request comes from a page of this origin:
/// `Sec-Fetch-Site: same-origin`, or else an `Origin` whose host is the
/// `Host` asked for.
fn from_this_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let origin_host = headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Middleware for the API's routes: an unsafe request (not GET, HEAD or
/// OPTIONS) that carries the session cookie and no `Authorization` header,
/// or that logs in or out, is refused with 403 unless it comes from this
/// origin.
pub async fn same_origin(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let by_cookie =
        !headers.contains_key(axum::http::header::AUTHORIZATION) && cookie_value(headers).is_some();
    let session_route = request.uri().path() == "/api/v1/session"
        && matches!(*request.method(), Method::POST | Method::DELETE);
    if !safe && (by_cookie || session_route) && !from_this_origin(headers) {
        return HttpError::Forbidden(
            "a request made with the session cookie must come from this origin's pages".into(),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http::test_headers as headers;

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; hookflow_session=abc ; b=2")]);
        assert_eq!(cookie_value(&h), Some("abc"));
        assert_eq!(
            cookie_value(&headers(&[("cookie", "hookflow_sessionx=1")])),
            None
        );
        assert_eq!(cookie_value(&headers(&[])), None);
    }

    #[test]
    fn origin_checks() {
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(from_this_origin(&same));
        let other = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!from_this_origin(&other));
        let port = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:9090"),
        ]);
        assert!(!from_this_origin(&port));
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(!from_this_origin(&null));
        assert!(!from_this_origin(&headers(&[("host", "127.0.0.1:8080")])));
        let fetch = headers(&[("sec-fetch-site", "same-origin")]);
        assert!(from_this_origin(&fetch));
        // A browser's own word wins over a matching Origin.
        let cross = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(!from_this_origin(&cross));
    }

    #[test]
    fn cookies_are_secure_behind_tls_only() {
        let plain = set_cookie(&headers(&[]), "v", LIFETIME);
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let tls = set_cookie(&headers(&[("x-forwarded-proto", "https")]), "v", LIFETIME);
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
    }
}
