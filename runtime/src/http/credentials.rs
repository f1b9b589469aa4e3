//! Token credentials, for webhooks and for the API alike: a bearer token
//! or a token in a named header, compared in constant time against every
//! active secret (so a secret can be rotated by listing old and new
//! together). Also which headers carry credentials, so that none is ever
//! shown to a plugin or stored.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::error::HttpError;
use crate::config::{Auth, Secret};

/// Headers that carry credentials or signatures for any auth kind.
const CREDENTIAL_HEADERS: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "webhook-signature",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
];

/// Whether header `name` (lower case) carries a credential under `auth`.
pub fn is_credential(auth: &Auth, name: &str) -> bool {
    CREDENTIAL_HEADERS.contains(&name)
        || matches!(auth, Auth::Header { header, .. } | Auth::HmacSha256 { header, .. } if header == name)
}

/// `Authorization: Bearer <token>` with any of `secrets`.
pub fn check_bearer(secrets: &[Secret], headers: &HeaderMap) -> Result<(), HttpError> {
    verify(secrets, bearer_token(headers)?.as_bytes(), true)
}

/// The token of `Authorization: Bearer <token>`, or 401.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, HttpError> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| HttpError::Unauthorized {
            message: "missing `Authorization: Bearer <token>` header".into(),
            bearer: true,
        })
}

/// A token in header `name` (lower case) with any of `secrets`.
pub fn check_header(name: &str, secrets: &[Secret], headers: &HeaderMap) -> Result<(), HttpError> {
    let token = headers.get(name).ok_or_else(|| HttpError::Unauthorized {
        message: format!("missing `{name}` header"),
        bearer: false,
    })?;
    verify(secrets, token.as_bytes(), false)
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

    use crate::http::test_headers as headers;

    #[test]
    fn bearer_accepts_any_active_secret_and_nothing_else() {
        let secrets = [Secret::new("old"), Secret::new("new")];
        let check = |pairs| check_bearer(&secrets, &headers(pairs));
        assert!(check(&[("authorization", "Bearer new")]).is_ok());
        assert!(check(&[("authorization", "bearer old")]).is_ok());
        assert!(check(&[("authorization", "Bearer ne")]).is_err());
        assert!(check(&[("authorization", "Basic new")]).is_err());
        assert!(check(&[("authorization", "Bearer")]).is_err());
        assert!(check(&[]).is_err());
        assert!(check_bearer(&[], &headers(&[("authorization", "Bearer x")])).is_err());
    }

    #[test]
    fn header_auth_reads_its_own_header() {
        let secrets = [Secret::new("t0k")];
        let auth = Auth::Header {
            header: "x-webhook-token".into(),
            secrets: secrets.to_vec(),
        };
        let check = |pairs| check_header("x-webhook-token", &secrets, &headers(pairs));
        assert!(check(&[("x-webhook-token", "t0k")]).is_ok());
        assert!(check(&[("authorization", "Bearer t0k")]).is_err());
        assert!(is_credential(&auth, "x-webhook-token"));
        assert!(is_credential(&auth, "cookie"));
        assert!(!is_credential(&auth, "content-type"));
    }
}
