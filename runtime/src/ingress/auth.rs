//! Checks a webhook's credentials against its trigger's `auth`.
//!
//! Tokens are compared in constant time against every active secret (so
//! secrets can be rotated by listing old and new together).

use axum::http::HeaderMap;

use super::error::HttpError;
use super::signature;
use crate::config::{Auth, Secret};

/// Headers that carry credentials or signatures for any auth kind; never
/// shown to a plugin nor stored.
const CREDENTIAL_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "webhook-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
];

/// Whether `name` (lower case) carries a credential under `auth`.
pub fn is_credential(auth: &Auth, name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name)
        || matches!(auth, Auth::Header { header, .. } | Auth::HmacSha256 { header, .. } if header == name)
}

/// Checks what can be checked before the body is read. Signature kinds
/// pass here and are verified by [`check_signed`]; a path token was
/// checked by routing.
pub fn check(auth: &Auth, headers: &HeaderMap) -> Result<(), HttpError> {
    match auth {
        Auth::None
        | Auth::PathToken { .. }
        | Auth::StandardWebhooks { .. }
        | Auth::Github { .. }
        | Auth::Stripe { .. }
        | Auth::HmacSha256 { .. } => Ok(()),
        Auth::Bearer { secrets } => {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, token) = v.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .ok_or_else(|| HttpError::Unauthorized {
                    message: "missing `Authorization: Bearer <token>` header".into(),
                    bearer: true,
                })?;
            verify(secrets, token.as_bytes(), true)
        }
        Auth::Header { header, secrets } => {
            let token = headers
                .get(header.as_str())
                .ok_or_else(|| HttpError::Unauthorized {
                    message: format!("missing `{header}` header"),
                    bearer: false,
                })?;
            verify(secrets, token.as_bytes(), false)
        }
    }
}

/// Verifies a signature kind over the raw body (other kinds pass).
pub fn check_signed(auth: &Auth, headers: &HeaderMap, body: &[u8]) -> Result<(), HttpError> {
    let now = std::time::SystemTime::now();
    let result = match auth {
        Auth::StandardWebhooks { secrets, tolerance } => {
            signature::standard_webhooks(secrets, *tolerance, headers, body, now)
        }
        Auth::Github { secrets } => signature::github(secrets, headers, body),
        Auth::Stripe { secrets, tolerance } => {
            signature::stripe(secrets, *tolerance, headers, body, now)
        }
        Auth::HmacSha256 {
            header,
            prefix,
            encoding,
            secrets,
        } => signature::hmac_sha256(secrets, header, prefix, *encoding, headers, body),
        _ => Ok(()),
    };
    result.map_err(|message| HttpError::Unauthorized {
        message,
        bearer: false,
    })
}

/// Compares against every secret without stopping early.
fn verify(secrets: &[Secret], token: &[u8], bearer: bool) -> Result<(), HttpError> {
    let matched = secrets
        .iter()
        .fold(false, |found, secret| secret.matches(token) | found);
    if matched {
        Ok(())
    } else {
        Err(HttpError::Unauthorized {
            message: "the token does not match".into(),
            bearer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn bearer_accepts_any_active_secret_and_nothing_else() {
        let auth = Auth::Bearer {
            secrets: vec![Secret::new("old"), Secret::new("new")],
        };
        assert!(check(&auth, &headers(&[("authorization", "Bearer new")])).is_ok());
        assert!(check(&auth, &headers(&[("authorization", "bearer old")])).is_ok());
        assert!(check(&auth, &headers(&[("authorization", "Bearer ne")])).is_err());
        assert!(check(&auth, &headers(&[("authorization", "Basic new")])).is_err());
        assert!(check(&auth, &headers(&[("authorization", "Bearer")])).is_err());
        assert!(check(&auth, &headers(&[])).is_err());
    }

    #[test]
    fn header_auth_reads_its_own_header() {
        let auth = Auth::Header {
            header: "x-webhook-token".into(),
            secrets: vec![Secret::new("t0k")],
        };
        assert!(check(&auth, &headers(&[("x-webhook-token", "t0k")])).is_ok());
        assert!(check(&auth, &headers(&[("authorization", "Bearer t0k")])).is_err());
        assert!(is_credential(&auth, "x-webhook-token"));
        assert!(is_credential(&auth, "cookie"));
        assert!(!is_credential(&auth, "content-type"));
    }
}
