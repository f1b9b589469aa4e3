//! Checks a webhook's sender against its trigger's `auth`: tokens before
//! the body is read, signatures over the raw body once it is.

use axum::http::HeaderMap;

use super::signature;
use crate::config::Auth;
use crate::http::{HttpError, check_bearer, check_header};

/// Checks what can be checked before the body is read. Signature kinds
/// pass here and are verified by [`check_signed`]; a path token was
/// checked by routing.
pub fn check(auth: &Auth, headers: &HeaderMap) -> Result<(), HttpError> {
    match auth {
        Auth::Bearer { secrets } => check_bearer(secrets, headers),
        Auth::Header { header, secrets } => check_header(header, secrets, headers),
        Auth::None
        | Auth::PathToken { .. }
        | Auth::StandardWebhooks { .. }
        | Auth::Github { .. }
        | Auth::Stripe { .. }
        | Auth::HmacSha256 { .. } => Ok(()),
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
        Auth::None | Auth::Bearer { .. } | Auth::Header { .. } | Auth::PathToken { .. } => Ok(()),
    };
    result.map_err(|message| HttpError::Unauthorized {
        message,
        bearer: false,
    })
}
