//! What the webhook ingress and the API share about HTTP: the error type
//! and its JSON answers, token credentials, reading a request, and the
//! answer to an intake outcome. Nothing here knows about routes, the
//! server's state or the workflows loaded.

mod answer;
mod credentials;
mod error;
mod read_token;
mod request;
mod session;

pub use answer::{answer, answer_preferring};
pub use credentials::{bearer_token, check_bearer, check_header, is_credential};
pub use error::{Busy, HttpError};
pub use read_token::ReadTokens;
pub use request::{
    IDEMPOTENCY_KEY, content_type, drain_refused, header_text, query_param, read_body,
    request_meta, wait_preference,
};
pub use session::{COOKIE_NAME, LIFETIME as SESSION_LIFETIME};
pub use session::{Sessions, same_origin, set_cookie};

/// Headers from `(name, value)` pairs, for tests.
#[cfg(test)]
fn test_headers(pairs: &[(&'static str, &'static str)]) -> axum::http::HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
        .collect()
}
