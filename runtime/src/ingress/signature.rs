//! Webhook signature schemes, verified over the raw body before anything
//! parses it.
//!
//! Every MAC is decoded to bytes, its length checked, and compared in
//! constant time (`Mac::verify_slice`) against every active secret, so
//! secrets can rotate. Timestamps are checked in both directions. At most
//! [`MAX_SIGNATURES`] candidate signatures are tried per request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Encoding, Secret};

type HmacSha256 = Hmac<Sha256>;

/// Candidate signatures checked per request, at most.
pub const MAX_SIGNATURES: usize = 8;
const MAC_LEN: usize = 32;

/// Why a signature did not verify; becomes the 401 message.
pub type Failure = String;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Failure> {
    headers
        .get(name)
        .ok_or_else(|| format!("missing `{name}` header"))?
        .to_str()
        .map_err(|_| format!("`{name}` is not text"))
}

/// Whether `mac` is the HMAC-SHA256 of `parts` under any of `secrets`.
fn matches_any(secrets: &[Secret], parts: &[&[u8]], mac: &[u8]) -> bool {
    if mac.len() != MAC_LEN {
        return false;
    }
    // No early exit: every secret is tried.
    secrets.iter().fold(false, |found, secret| {
        let Ok(mut m) = HmacSha256::new_from_slice(secret.expose()) else {
            return found;
        };
        for p in parts {
            m.update(p);
        }
        m.verify_slice(mac).is_ok() | found
    })
}

fn check_timestamp(ts: &str, tolerance: Duration, now: SystemTime) -> Result<(), Failure> {
    let ts: u64 = ts
        .trim()
        .parse()
        .map_err(|_| "the timestamp is not a number of seconds".to_string())?;
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let skew = now.abs_diff(ts);
    if skew > tolerance.as_secs() {
        let when = if ts < now { "old" } else { "far in the future" };
        return Err(format!(
            "the timestamp is {skew} s {when}; the tolerance is {} s",
            tolerance.as_secs()
        ));
    }
    Ok(())
}

/// Standard Webhooks: `webhook-id`, `webhook-timestamp`, and
/// `webhook-signature: v1,<base64> [v1,<base64> ...]` over
/// `id.timestamp.body`.
pub fn standard_webhooks(
    secrets: &[Secret],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Failure> {
    let id = header(headers, "webhook-id")?;
    let ts = header(headers, "webhook-timestamp")?;
    let signatures = header(headers, "webhook-signature")?;
    check_timestamp(ts, tolerance, now)?;
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts.as_bytes(), b".", body];
    let verified = standard_signatures(signatures).any(|mac| matches_any(secrets, &parts, &mac));
    if verified {
        Ok(())
    } else {
        Err("no `v1` signature in `webhook-signature` matches".into())
    }
}

/// The decoded `v1` signatures of a `webhook-signature` header, at most
/// [`MAX_SIGNATURES`] of them; other versions and undecodable entries are
/// skipped.
pub fn standard_signatures(value: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    value
        .split(' ')
        .filter(|s| !s.is_empty())
        .take(MAX_SIGNATURES)
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| BASE64.decode(b64).ok())
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
pub fn github(secrets: &[Secret], headers: &HeaderMap, body: &[u8]) -> Result<(), Failure> {
    let value = header(headers, "x-hub-signature-256")?;
    let mac = value
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| "`x-hub-signature-256` is not `sha256=<hex>`".to_string())?;
    if matches_any(secrets, &[body], &mac) {
        Ok(())
    } else {
        Err("`x-hub-signature-256` does not match".into())
    }
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StripeHeader<'a> {
    pub timestamp: Option<&'a str>,
    pub v1: Vec<Vec<u8>>,
}

/// Parses `t=<seconds>,v1=<hex>,v1=<hex>,v0=...`; keeps at most
/// [`MAX_SIGNATURES`] decodable `v1` values.
pub fn parse_stripe(value: &str) -> StripeHeader<'_> {
    let mut out = StripeHeader::default();
    for item in value.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => out.timestamp = Some(v),
            "v1" if out.v1.len() < MAX_SIGNATURES => {
                if let Ok(mac) = hex::decode(v) {
                    out.v1.push(mac);
                }
            }
            _ => {}
        }
    }
    out
}

/// Stripe: `Stripe-Signature: t=...,v1=...` over `t.body`.
pub fn stripe(
    secrets: &[Secret],
    tolerance: Duration,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Failure> {
    let parsed = parse_stripe(header(headers, "stripe-signature")?);
    let ts = parsed
        .timestamp
        .ok_or_else(|| "`stripe-signature` has no `t=`".to_string())?;
    check_timestamp(ts, tolerance, now)?;
    let parts: [&[u8]; 3] = [ts.as_bytes(), b".", body];
    if parsed
        .v1
        .iter()
        .any(|mac| matches_any(secrets, &parts, mac))
    {
        Ok(())
    } else {
        Err("no `v1` signature in `stripe-signature` matches".into())
    }
}

/// Decodes a generic signature header value.
pub fn decode_generic(value: &str, prefix: &str, encoding: Encoding) -> Option<Vec<u8>> {
    let raw = value.trim().strip_prefix(prefix)?;
    match encoding {
        Encoding::Hex => hex::decode(raw).ok(),
        Encoding::Base64 => BASE64.decode(raw).ok(),
    }
}

/// Generic HMAC-SHA256 of the body in a header of your choice.
pub fn hmac_sha256(
    secrets: &[Secret],
    name: &str,
    prefix: &str,
    encoding: Encoding,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Failure> {
    let value = header(headers, name)?;
    let mac = decode_generic(value, prefix, encoding)
        .ok_or_else(|| format!("`{name}` is not `{prefix}<{encoding:?}>`"))?;
    if matches_any(secrets, &[body], &mac) {
        Ok(())
    } else {
        Err(format!("`{name}` does not match"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn the_standard_webhooks_example_verifies() {
        // The example of the Standard Webhooks specification.
        let secret =
            crate::config::decode_standard_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap();
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_webhooks(
                std::slice::from_ref(&secret),
                FIVE_MIN,
                &h,
                body,
                at(1614265330)
            ),
            Ok(())
        );
        assert!(
            standard_webhooks(
                &[secret],
                FIVE_MIN,
                &h,
                br#"{"test": 2432232315}"#,
                at(1614265330)
            )
            .is_err()
        );
    }

    #[test]
    fn the_github_example_verifies() {
        // The example of GitHub's "Validating webhook deliveries".
        let secret = Secret::new("It's a Secret to Everybody");
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let h = headers(&[("x-hub-signature-256", good)]);
        assert_eq!(
            github(std::slice::from_ref(&secret), &h, b"Hello, World!"),
            Ok(())
        );
        assert!(github(std::slice::from_ref(&secret), &h, b"Hello, World?").is_err());
        let h = headers(&[("x-hub-signature-256", &good[..good.len() - 2])]);
        assert!(github(&[secret], &h, b"Hello, World!").is_err());
    }

    #[test]
    fn timestamps_are_checked_both_ways() {
        assert!(check_timestamp("1000", FIVE_MIN, at(1300)).is_ok());
        assert!(check_timestamp("1000", FIVE_MIN, at(700)).is_ok());
        assert!(
            check_timestamp("1000", FIVE_MIN, at(1301))
                .unwrap_err()
                .contains("old")
        );
        assert!(
            check_timestamp("1000", FIVE_MIN, at(699))
                .unwrap_err()
                .contains("future")
        );
        assert!(check_timestamp("soon", FIVE_MIN, at(699)).is_err());
    }

    #[test]
    fn stripe_headers_parse_and_stop_at_the_cap() {
        let p = parse_stripe("t=12,v1=00ff,v0=ab,v1=zz,junk");
        assert_eq!(p.timestamp, Some("12"));
        assert_eq!(p.v1, vec![vec![0, 255]]);
        let many = std::iter::repeat_n("v1=00", 50)
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_stripe(&many).v1.len(), MAX_SIGNATURES);
    }

    #[test]
    fn empty_and_short_signatures_never_verify() {
        let secret = Secret::new("k");
        assert!(!matches_any(std::slice::from_ref(&secret), &[b"x"], &[]));
        assert!(!matches_any(&[secret], &[b"x"], &[0; 16]));
        // `v1,` decodes to nothing, which then fails the length check.
        let found: Vec<_> = standard_signatures("v1, v1,AAAA v2,abc").collect();
        assert_eq!(found, vec![vec![], vec![0, 0, 0]]);
    }

    proptest! {
        #[test]
        fn header_parsers_never_panic(value in ".{0,300}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_stripe(&value);
            let _ = standard_signatures(&value).count();
            let _ = decode_generic(&value, "sha256=", Encoding::Hex);
            let _ = decode_generic(&value, "", Encoding::Base64);
            let _ = check_timestamp(&value, FIVE_MIN, at(1_700_000_000));
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                let mut h = HeaderMap::new();
                for name in ["webhook-id", "webhook-timestamp", "webhook-signature", "stripe-signature", "x-hub-signature-256", "x-sig"] {
                    h.insert(name, v.clone());
                }
                let s = [Secret::new("k")];
                let _ = standard_webhooks(&s, FIVE_MIN, &h, &body, at(1_700_000_000));
                let _ = stripe(&s, FIVE_MIN, &h, &body, at(1_700_000_000));
                let _ = github(&s, &h, &body);
                let _ = hmac_sha256(&s, "x-sig", "", Encoding::Hex, &h, &body);
            }
        }
    }
}
