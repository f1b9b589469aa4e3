//! How a trigger checks its sender: the auth kinds, their secrets, and how
//! a manifest's `auth = { ... }` table becomes an [`Auth`].
//!
//! Secrets are never written in manifests: each is `env:NAME` or
//! `file:PATH`, resolved at load. Several may be active at once, so a
//! secret can be rotated by listing old and new together.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::raw::RawAuth;
use super::scan::read_confined;
use super::units::parse_duration;
use super::validate::Checker;

/// How long a signed timestamp stays acceptable, either way, by default.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// A secret value (a token or a MAC key). Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// Constant-time comparison (the length is not secret).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.len() == candidate.len() && bool::from(self.0.ct_eq(candidate))
    }

    /// The secret's bytes, for a MAC key or a digest.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The shortest Standard Webhooks key accepted, in bytes (the
/// specification asks for 24 to 64).
const MIN_STANDARD_KEY: usize = 24;

/// A Standard Webhooks secret: `whsec_` (optional) then the base64 of at
/// least 24 bytes.
pub fn decode_standard_secret(text: &str) -> Result<Secret, String> {
    use base64::Engine as _;
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "a standard-webhooks secret is `whsec_` followed by base64".to_string())?;
    if key.len() < MIN_STANDARD_KEY {
        return Err(format!(
            "a standard-webhooks secret must decode to at least {MIN_STANDARD_KEY} bytes, not {}",
            key.len()
        ));
    }
    Ok(Secret::new(key))
}

/// How a generic signature header encodes its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

/// How a trigger checks its sender.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anyone may call; only when the manifest says so.
    None,
    /// `Authorization: Bearer <token>`, any of `secrets`.
    Bearer { secrets: Vec<Secret> },
    /// A header carrying the token, e.g. `X-Webhook-Token`.
    Header {
        /// Lower case.
        header: String,
        secrets: Vec<Secret>,
    },
    /// The token is the URL: `/hooks/t/{token}`.
    PathToken { secrets: Vec<Secret> },
    /// Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`). Secrets are the decoded key bytes.
    StandardWebhooks {
        secrets: Vec<Secret>,
        tolerance: Duration,
    },
    /// GitHub's `X-Hub-Signature-256`.
    Github { secrets: Vec<Secret> },
    /// Stripe's `Stripe-Signature`.
    Stripe {
        secrets: Vec<Secret>,
        tolerance: Duration,
    },
    /// HMAC-SHA256 of the body in any header.
    HmacSha256 {
        /// Lower case.
        header: String,
        prefix: String,
        encoding: Encoding,
        secrets: Vec<Secret>,
    },
}

impl Auth {
    /// Signature kinds need the raw body; the others are checked first.
    pub fn needs_body(&self) -> bool {
        matches!(
            self,
            Auth::StandardWebhooks { .. }
                | Auth::Github { .. }
                | Auth::Stripe { .. }
                | Auth::HmacSha256 { .. }
        )
    }
}

impl Checker<'_> {
    pub(super) fn auth(&mut self, raw: RawAuth, span: Range<usize>) -> Auth {
        match raw {
            RawAuth::None {} => Auth::None,
            RawAuth::PathToken { secrets } => {
                let secrets = self.secrets(secrets, span.clone());
                if secrets.iter().any(|s| !is_url_token(s.expose())) {
                    self.error(span, "a path token may hold only letters, digits, `-` and `_`, at least 16 of them");
                }
                Auth::PathToken { secrets }
            }
            RawAuth::StandardWebhooks { secrets, tolerance } => {
                let raw = self.secrets(secrets, span.clone());
                let mut secrets = Vec::new();
                for s in raw {
                    match std::str::from_utf8(s.expose())
                        .map_err(|e| e.to_string())
                        .and_then(decode_standard_secret)
                    {
                        Ok(k) => secrets.push(k),
                        Err(e) => self.error(span.clone(), e),
                    }
                }
                Auth::StandardWebhooks {
                    secrets,
                    tolerance: self.tolerance(tolerance, span),
                }
            }
            RawAuth::Github { secrets } => Auth::Github {
                secrets: self.secrets(secrets, span),
            },
            RawAuth::Stripe { secrets, tolerance } => Auth::Stripe {
                secrets: self.secrets(secrets, span.clone()),
                tolerance: self.tolerance(tolerance, span),
            },
            RawAuth::HmacSha256 {
                header,
                encoding,
                prefix,
                secrets,
            } => Auth::HmacSha256 {
                header: self.header_name(&header, span.clone()),
                prefix,
                encoding,
                secrets: self.secrets(secrets, span),
            },
            RawAuth::Bearer { secrets } => Auth::Bearer {
                secrets: self.secrets(secrets, span),
            },
            RawAuth::Header { header, secrets } => Auth::Header {
                header: self.header_name(&header, span.clone()),
                secrets: self.secrets(secrets, span),
            },
        }
    }

    fn tolerance(&mut self, written: Option<String>, span: Range<usize>) -> Duration {
        match written.as_deref().map(parse_duration) {
            None => DEFAULT_TOLERANCE,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.error(span, e);
                DEFAULT_TOLERANCE
            }
        }
    }

    /// A header that can carry a credential, lower-cased.
    fn header_name(&mut self, header: &str, span: Range<usize>) -> String {
        let name = header.to_ascii_lowercase();
        if ::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.error(span, format!("`{header}` is not a valid header name"));
        } else if matches!(
            name.as_str(),
            "content-length" | "content-type" | "host" | "transfer-encoding" | "connection"
        ) {
            self.error(span, format!("`{name}` cannot carry a token"));
        }
        name
    }

    fn secrets(&mut self, refs: Vec<String>, span: Range<usize>) -> Vec<Secret> {
        if refs.is_empty() {
            self.error(
                span.clone(),
                "`secrets` is empty: list at least one, e.g. [\"env:HOOK_TOKEN\"]",
            );
        }
        let mut out = Vec::new();
        for r in refs {
            match resolve_secret(&r, self.dir, self.root) {
                Ok(s) => out.push(s),
                Err(e) => self.error(span.clone(), e),
            }
        }
        out
    }
}

fn is_url_token(s: &[u8]) -> bool {
    s.len() >= 16
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(b))
}

/// The largest secret file read.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// `env:NAME`, or `file:PATH`: a regular file inside the workflow
/// directory (`root`), relative to the manifest's folder (`dir`).
pub(super) fn resolve_secret(reference: &str, dir: &Path, root: &Path) -> Result<Secret, String> {
    let value = if let Some(var) = reference.strip_prefix("env:") {
        std::env::var(var)
            .map_err(|_| format!("secret `{reference}`: environment variable `{var}` is not set"))?
    } else if let Some(path) = reference.strip_prefix("file:") {
        let bytes = read_confined(dir, root, Path::new(path), MAX_SECRET_BYTES)
            .map_err(|e| format!("secret `{reference}`: the file {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("secret `{reference}`: the file is not UTF-8 text"))?;
        text.trim_end_matches(['\r', '\n']).to_string()
    } else {
        return Err(format!(
            "secret `{reference}` must be `env:NAME` or `file:PATH`: secrets are not written in manifests"
        ));
    };
    if value.is_empty() {
        return Err(format!("secret `{reference}` is empty"));
    }
    Ok(Secret::new(value.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_compare_exactly() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        let root = dir.path().canonicalize().unwrap();
        let s = resolve_secret("file:tok", &root, &root).unwrap();
        assert!(s.matches(b"s3cret"));
        assert!(!s.matches(b"s3cre"));
        assert!(!s.matches(b"s3cret2"));
        assert!(resolve_secret("s3cret", &root, &root).is_err());
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }

    /// Finding 9 of the fault issue: a short Standard Webhooks key is
    /// refused at load.
    #[test]
    fn a_short_standard_webhooks_secret_is_refused() {
        use base64::Engine as _;
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        assert!(decode_standard_secret(&format!("whsec_{}", b64(24))).is_ok());
        let err = decode_standard_secret(&format!("whsec_{}", b64(23))).unwrap_err();
        assert!(err.contains("at least 24 bytes"), "{err}");
    }
}
