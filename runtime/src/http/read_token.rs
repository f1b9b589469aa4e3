//! Per-execution read tokens (SPEC §5.3): what lets a sender follow its
//! own run through `status_url` and `stream_url` without the admin token.
//!
//! A token is HMAC-SHA256 of the execution id under a key the database
//! keeps, base64url: unguessable, good for that execution only, and never
//! stored (it is computed again to answer a repeated delivery, and to
//! check one). Replacing the key revokes every token at once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Makes and checks read tokens.
#[derive(Clone)]
pub struct ReadTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for ReadTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadTokens(<redacted>)")
    }
}

impl ReadTokens {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, id: Uuid) -> Hmac<Sha256> {
        // Invariant: HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(b"hookflow read token\0");
        mac.update(id.as_bytes());
        mac
    }

    /// The read token of execution `id`.
    pub fn token(&self, id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(id).finalize().into_bytes())
    }

    /// Whether `token` is execution `id`'s, compared in constant time.
    pub fn verify(&self, id: Uuid, token: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(token.trim())
            .is_ok_and(|tag| self.mac(id).verify_slice(&tag).is_ok())
    }

    /// Where execution `id` can be read with its token.
    pub fn status_url(&self, id: Uuid) -> String {
        format!("/api/v1/executions/{id}?token={}", self.token(id))
    }

    /// Where execution `id`'s events stream with its token.
    pub fn stream_url(&self, id: Uuid) -> String {
        format!("/api/v1/executions/{id}/events?token={}", self.token(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_its_execution_and_no_other() {
        let tokens = ReadTokens::new([7; 32]);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let token = tokens.token(a);
        assert_eq!(token.len(), 43, "{token}");
        assert!(tokens.verify(a, &token));
        assert!(!tokens.verify(b, &token));
        assert!(!tokens.verify(a, &tokens.token(b)));
        assert!(!tokens.verify(a, ""));
        assert!(!tokens.verify(a, "not base64!"));
        assert!(!tokens.verify(a, &token[..42]));
        // Another database's key makes other tokens.
        assert!(!ReadTokens::new([8; 32]).verify(a, &token));
        assert!(!format!("{tokens:?}").contains('7'));
    }
}
