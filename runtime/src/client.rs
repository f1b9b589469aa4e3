//! The commands that talk to a running server over plain HTTP/1.1:
//! `hookflow send`, a test delivery signed as the workflow's trigger
//! expects (its manifest and secrets read from the workflow directory,
//! signed with the first secret the trigger lists), so that testing a
//! webhook needs no hand-made HMAC; and `hookflow runs`, the executions
//! API for people (tables) and scripts (`--json`).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt as _, Full};
use sha2::Sha256;

use crate::config::{Auth, Encoding, Secret, TriggerSpec};

/// Where a delivery goes and what it carries beyond the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Under `/hooks/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

fn mac(secret: &Secret, parts: &[&[u8]]) -> Vec<u8> {
    // Invariant: HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn first(secrets: &[Secret]) -> anyhow::Result<&Secret> {
    secrets.first().context("the trigger lists no secret")
}

fn text(secret: &Secret) -> anyhow::Result<String> {
    String::from_utf8(secret.expose().to_vec()).context("the token is not text")
}

/// The path and headers that deliver `body` to `trigger` at `now`, with
/// delivery id `id` (`webhook-id`, `X-GitHub-Delivery`).
pub fn sign(
    trigger: &TriggerSpec,
    body: &[u8],
    now: SystemTime,
    id: &str,
) -> anyhow::Result<Signed> {
    let ts = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let mut path = trigger.path.clone();
    let headers = match &trigger.auth {
        Auth::None => vec![],
        Auth::Bearer { secrets } => vec![(
            "authorization".into(),
            format!("Bearer {}", text(first(secrets)?)?),
        )],
        Auth::Header { header, secrets } => vec![(header.clone(), text(first(secrets)?)?)],
        Auth::PathToken { secrets } => {
            path = format!("t/{}", text(first(secrets)?)?);
            vec![]
        }
        Auth::StandardWebhooks { secrets, .. } => {
            let sig = mac(
                first(secrets)?,
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
            );
            vec![
                ("webhook-id".into(), id.to_string()),
                ("webhook-timestamp".into(), ts),
                (
                    "webhook-signature".into(),
                    format!("v1,{}", BASE64.encode(sig)),
                ),
            ]
        }
        Auth::Github { secrets } => vec![
            (
                "x-hub-signature-256".into(),
                format!("sha256={}", hex::encode(mac(first(secrets)?, &[body]))),
            ),
            ("x-github-delivery".into(), id.to_string()),
            ("x-github-event".into(), "ping".into()),
        ],
        Auth::Stripe { secrets, .. } => {
            let sig = mac(first(secrets)?, &[ts.as_bytes(), b".", body]);
            vec![(
                "stripe-signature".into(),
                format!("t={ts},v1={}", hex::encode(sig)),
            )]
        }
        Auth::HmacSha256 {
            header,
            prefix,
            encoding,
            secrets,
        } => {
            let sig = mac(first(secrets)?, &[body]);
            let encoded = match encoding {
                Encoding::Hex => hex::encode(sig),
                Encoding::Base64 => BASE64.encode(sig),
            };
            vec![(header.clone(), format!("{prefix}{encoded}"))]
        }
    };
    Ok(Signed { path, headers })
}

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A connection to the server at `base` (`http://host:port[/prefix]`):
/// the request sender, the `Host` and the path prefix.
async fn connect(
    base: &str,
) -> anyhow::Result<(
    hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>,
    String,
    String,
)> {
    let uri: http::Uri = base.parse().context("--url is not a URL")?;
    if uri.scheme_str() != Some("http") {
        bail!("--url must be an http:// address (plain HTTP)");
    }
    let authority = uri.authority().context("--url has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let prefix = uri.path().trim_end_matches('/').to_string();
    Ok((sender, authority.to_string(), prefix))
}

/// Sends `method path` with `headers` and `body` to `base`; the answer's
/// head, and its body to read.
async fn send(
    base: &str,
    method: http::Method,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    let (mut sender, host, prefix) = connect(base).await?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{prefix}{path}"))
        .header(http::header::HOST, host);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Full::new(bytes::Bytes::from(body)))?;
    Ok(sender.send_request(request).await?)
}

/// Sends a request and reads the whole answer.
pub async fn call(
    base: &str,
    method: http::Method,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let response = send(base, method, path, headers, body).await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// POSTs `body` to `/hooks/...` of `base` as `signed` says.
pub async fn post(
    base: &str,
    signed: &Signed,
    content_type: &str,
    extra: &[(String, String)],
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    headers.extend(signed.headers.iter().cloned());
    headers.extend(extra.iter().cloned());
    let path = format!("/hooks/{}", signed.path);
    call(base, http::Method::POST, &path, &headers, body).await
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    pub id: String,
    pub event: String,
    pub data: String,
}

/// GETs a Server-Sent Events stream and calls `each` with every event
/// until the stream ends. `Err` when the answer is not `200`.
pub async fn follow(
    base: &str,
    path: &str,
    headers: &[(String, String)],
    mut each: impl FnMut(StreamEvent),
) -> anyhow::Result<()> {
    let response = send(base, http::Method::GET, path, headers, Vec::new()).await?;
    let status = response.status();
    let mut body = response.into_body();
    if status != http::StatusCode::OK {
        let text = body.collect().await?.to_bytes();
        bail!(
            "HTTP {}: {}",
            status.as_u16(),
            String::from_utf8_lossy(&text)
        );
    }
    let mut buf = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = StreamEvent {
                id: String::new(),
                event: "message".into(),
                data: String::new(),
            };
            for line in block.lines() {
                match line.split_once(':') {
                    Some(("id", v)) => event.id = v.trim().to_string(),
                    Some(("event", v)) => event.event = v.trim().to_string(),
                    Some(("data", v)) => event.data.push_str(v.strip_prefix(' ').unwrap_or(v)),
                    _ => {}
                }
            }
            if !event.id.is_empty() || !event.data.is_empty() {
                each(event);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;
    use crate::config::{Method, Mode, OnDuplicate};
    use crate::ingress::signature;

    fn trigger(auth: Auth) -> TriggerSpec {
        TriggerSpec {
            path: "p".into(),
            methods: vec![Method::Post],
            mode: Mode::Async,
            sync_timeout: Duration::from_secs(1),
            max_body: 1 << 20,
            auth,
            on_duplicate: OnDuplicate::default(),
            idempotency_window: Duration::from_secs(1),
        }
    }

    fn headers(signed: &Signed) -> HeaderMap {
        signed
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    /// What `send` signs, hookflow's own verifiers accept, with the first
    /// secret and not with another.
    #[test]
    fn each_signature_kind_verifies_with_the_ingress_checks() {
        let now = SystemTime::now();
        let body = br#"{"n":1}"#;
        let key = || vec![Secret::new("s3cret-key-0123456789abcd")];
        let other = [Secret::new("another-key-0123456789abc")];
        let tolerance = Duration::from_secs(300);

        let sw = sign(
            &trigger(Auth::StandardWebhooks {
                secrets: key(),
                tolerance,
            }),
            body,
            now,
            "msg_1",
        )
        .unwrap();
        let h = headers(&sw);
        assert!(signature::standard_webhooks(&key(), tolerance, &h, body, now).is_ok());
        assert!(signature::standard_webhooks(&other, tolerance, &h, body, now).is_err());

        let gh = sign(&trigger(Auth::Github { secrets: key() }), body, now, "d1").unwrap();
        assert!(signature::github(&key(), &headers(&gh), body).is_ok());
        assert!(signature::github(&other, &headers(&gh), body).is_err());

        let st = sign(
            &trigger(Auth::Stripe {
                secrets: key(),
                tolerance,
            }),
            body,
            now,
            "x",
        )
        .unwrap();
        assert!(signature::stripe(&key(), tolerance, &headers(&st), body, now).is_ok());
        assert!(signature::stripe(&other, tolerance, &headers(&st), body, now).is_err());

        for encoding in [Encoding::Hex, Encoding::Base64] {
            let auth = Auth::HmacSha256 {
                header: "x-signature".into(),
                prefix: "v=".into(),
                encoding,
                secrets: key(),
            };
            let hm = sign(&trigger(auth), body, now, "x").unwrap();
            let h = headers(&hm);
            assert!(
                signature::hmac_sha256(&key(), "x-signature", "v=", encoding, &h, body).is_ok()
            );
            assert!(
                signature::hmac_sha256(&other, "x-signature", "v=", encoding, &h, body).is_err()
            );
        }

        let pt = sign(&trigger(Auth::PathToken { secrets: key() }), body, now, "x").unwrap();
        assert_eq!(pt.path, "t/s3cret-key-0123456789abcd");
        let bearer = sign(&trigger(Auth::Bearer { secrets: key() }), body, now, "x").unwrap();
        assert_eq!(
            bearer.headers,
            [(
                "authorization".to_string(),
                "Bearer s3cret-key-0123456789abcd".to_string()
            )]
        );
    }
}
