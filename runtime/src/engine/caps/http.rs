//! Outbound HTTP for a step: `wasmtime-wasi-http` carries the guest's
//! requests, and [`HttpGate`], its hook, decides each one.
//!
//! A request goes out only if its host (and port) is in the step's grant
//! and in the operator's ceiling, the step has calls left, and the name
//! resolves to an address it may reach: a public one, or a loopback,
//! private or link-local one that the ceiling names itself (wildcards never
//! do). The connection goes to the address that was checked, so a second
//! lookup cannot answer differently. Each request a client makes to follow
//! a redirect comes through here too, and is checked the same way. Every
//! request, sent or refused, is written in the attempt's audit trail.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::{Audit, Entry, HttpPolicy, audited_text};
use crate::config::{HostPattern, is_public};
use crate::execution::HostCall;

/// The limits one step's requests run under: its grant, held to the
/// operator's policy.
#[derive(Clone)]
pub struct HttpLimits {
    pub grant: Arc<[HostPattern]>,
    pub ceiling: Arc<[HostPattern]>,
    pub timeout: Duration,
    pub max_response: u64,
    pub max_request_body: u64,
    pub max_calls: u32,
}

impl HttpLimits {
    pub fn new(grants: &crate::config::Grants, policy: &HttpPolicy) -> Self {
        Self {
            grant: grants.http.clone(),
            ceiling: policy.ceiling.clone(),
            timeout: grants
                .http_timeout
                .unwrap_or(policy.timeout)
                .min(policy.max_timeout),
            max_response: grants
                .http_max_response
                .unwrap_or(policy.max_response)
                .min(policy.max_max_response),
            max_request_body: policy.max_request_body,
            max_calls: grants
                .http_max_calls
                .unwrap_or(policy.max_calls)
                .min(policy.max_max_calls),
        }
    }

    /// Why `host:port` may not be called by this step at all, if so.
    fn refuse_host(&self, host: &str, port: u16) -> Option<String> {
        if !self.grant.iter().any(|p| p.matches(host, port)) {
            return Some(if self.grant.is_empty() {
                format!("{host}:{port}: this step has no outbound HTTP grant (allow.http)")
            } else {
                format!(
                    "{host}:{port} is not in this step's grant (allow.http = [{}])",
                    list(&self.grant)
                )
            });
        }
        if !self.ceiling.is_empty() && !self.ceiling.iter().any(|p| p.matches(host, port)) {
            return Some(format!(
                "{host}:{port} is not within the operator's ceiling (--allow-http {})",
                list(&self.ceiling)
            ));
        }
        None
    }

    /// The address to connect to: the first that `host` resolves to which
    /// this step may reach.
    async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, Refused> {
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| {
                    Refused::Failed(Error::DnsTimeout, format!("{host}: lookup timed out"))
                })?
                .map_err(|e| {
                    Refused::Failed(
                        Error::DnsError {
                            rcode: Some(e.to_string()),
                            info_code: None,
                        },
                        format!("{host}: lookup failed: {e}"),
                    )
                })?
                .collect(),
        };
        let reachable = |a: &SocketAddr| {
            is_public(a.ip())
                || self
                    .ceiling
                    .iter()
                    .any(|p| p.names_address(host, a.ip(), port))
        };
        match addrs.iter().find(|a| reachable(a)) {
            Some(a) => Ok(*a),
            None => Err(Refused::Denied(match addrs.first() {
                Some(a) => format!(
                    "{host} resolves to {}, a loopback, private or link-local address the operator's ceiling does not name (--allow-http)",
                    a.ip()
                ),
                None => format!("{host} resolves to no address"),
            })),
        }
    }
}

fn list(patterns: &[HostPattern]) -> String {
    patterns
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

enum Refused {
    /// Outside what the step may do: `denied` in the trail.
    Denied(String),
    /// It could not be done: `error` in the trail.
    Failed(Error, String),
}

/// The `wasi:http` hook of one step attempt.
pub struct HttpGate {
    limits: HttpLimits,
    tls: Arc<rustls::ClientConfig>,
    audit: Arc<Audit>,
    calls: u32,
}

impl HttpGate {
    pub fn new(limits: HttpLimits, tls: Arc<rustls::ClientConfig>, audit: Arc<Audit>) -> Self {
        Self {
            limits,
            tls,
            audit,
            calls: 0,
        }
    }
}

/// An answer, and the connection's remaining work.
type Answer = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);
type Sent = Result<Answer, Error>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let started = Instant::now();
        let uri = request.uri();
        let tls = uri.scheme() == Some(&Scheme::HTTPS);
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let mut call = HostCall::Http {
            method: request.method().to_string(),
            host: host.clone(),
            port,
            path: audited_text(uri.path()),
            status: None,
            bytes_out: 0,
            bytes_in: 0,
            duration_us: 0,
            denied: None,
            error: None,
        };
        let refused = self.limits.refuse_host(&host, port).or_else(|| {
            (self.calls >= self.limits.max_calls).then(|| {
                format!(
                    "more than {} outbound requests in one attempt (allow.http_max_calls)",
                    self.limits.max_calls
                )
            })
        });
        if let Some(why) = refused {
            if let HostCall::Http { denied, .. } = &mut call {
                *denied = Some(why);
            }
            self.audit.record(call);
            // The refusal is the answer, given once the body is read.
            let cap = self.limits.max_request_body;
            return Box::new(async move {
                drain(request.into_body(), cap).await;
                Err(Error::HttpRequestDenied)
            });
        }
        self.calls += 1;
        let entry = self.audit.record(call);
        let limits = self.limits.clone();
        let config = self.tls.clone();
        let audit = self.audit.clone();
        Box::new(async move {
            let mut pending = Some(request);
            let outcome = async {
                let addr = limits.resolve(&host, port).await?;
                let timeout = clamp(options, limits.timeout);
                send_pinned(
                    &mut pending,
                    Target {
                        addr,
                        host: &host,
                        tls: tls.then_some(config),
                    },
                    timeout,
                    &limits,
                    Progress {
                        audit: audit.clone(),
                        entry,
                        started,
                    },
                )
                .await
            }
            .await;
            match outcome {
                Ok(sent) => Ok(sent),
                Err(refused) => {
                    let (error, denied, failed) = match refused {
                        Refused::Denied(why) => (Error::HttpRequestDenied, Some(why), None),
                        Refused::Failed(e, why) => (e, None, Some(why)),
                    };
                    audit.update(entry, |c| {
                        if let HostCall::Http {
                            denied: d,
                            error: e,
                            duration_us,
                            ..
                        } = c
                        {
                            *d = denied;
                            *e = failed;
                            *duration_us = micros(started);
                        }
                    });
                    if let Some(request) = pending {
                        drain(request.into_body(), limits.max_request_body).await;
                    }
                    Err(error)
                }
            }
        })
    }

    fn p2_error_from_connect(&mut self, _err: &std::io::Error) -> ErrorCode {
        ErrorCode::ConnectionRefused
    }
}

/// The guest's timeouts, none longer than the step's.
fn clamp(options: Option<RequestOptions>, limit: Duration) -> Duration {
    [
        options.and_then(|o| o.connect_timeout),
        options.and_then(|o| o.first_byte_timeout),
    ]
    .into_iter()
    .flatten()
    .fold(limit, Duration::min)
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

struct Target<'a> {
    addr: SocketAddr,
    /// The name the certificate must be for.
    host: &'a str,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Where a request's progress is written.
#[derive(Clone)]
struct Progress {
    audit: Arc<Audit>,
    entry: Entry,
    started: Instant,
}

impl Progress {
    fn update(&self, f: impl FnOnce(&mut Option<u16>, &mut u64, &mut u64, &mut Option<String>)) {
        let started = self.started;
        self.audit.update(self.entry, |c| {
            if let HostCall::Http {
                status,
                bytes_out,
                bytes_in,
                error,
                duration_us,
                ..
            } = c
            {
                f(status, bytes_out, bytes_in, error);
                *duration_us = micros(started);
            }
        });
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Sends `request` over a new connection to the checked address, within
/// `timeout` for the connection and the answer's head, and the whole
/// answer within `timeout` from the request.
/// Reads a request body the host will not send to its end (or past
/// `cap` bytes), so that the guest writing it sees its request refused in
/// the answer, as from a server, not its body stream closed under it: some
/// runtimes (JavaScript's) abort on the latter.
async fn drain(mut body: WasiBody, cap: u64) {
    let mut read = 0u64;
    while read <= cap {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
}

/// Sends the request in `pending`, taking it only once a connection is
/// ready: a failure before then leaves it there, for [`drain`].
async fn send_pinned(
    pending: &mut Option<http::Request<WasiBody>>,
    target: Target<'_>,
    timeout: Duration,
    limits: &HttpLimits,
    progress: Progress,
) -> Result<Answer, Refused> {
    let failed = |e: Error, why: String| Refused::Failed(e, why);
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(target.addr))
        .await
        .map_err(|_| {
            failed(
                Error::ConnectionTimeout,
                format!("connecting to {} timed out", target.addr),
            )
        })?
        .map_err(|e| {
            failed(
                Error::Connect(e),
                format!("could not connect to {}", target.addr),
            )
        })?;
    let stream: Box<dyn Stream> = match target.tls {
        None => Box::new(tcp),
        Some(config) => {
            let name =
                rustls::pki_types::ServerName::try_from(target.host.to_string()).map_err(|_| {
                    failed(
                        Error::HttpRequestUriInvalid,
                        format!("{} is not a TLS server name", target.host),
                    )
                })?;
            let tls = tokio_rustls::TlsConnector::from(config);
            let stream = tokio::time::timeout_at(deadline, tls.connect(name, tcp))
                .await
                .map_err(|_| {
                    failed(
                        Error::ConnectionTimeout,
                        "the TLS handshake timed out".into(),
                    )
                })?
                .map_err(|e| failed(Error::Tls(e), "the TLS handshake failed".into()))?;
            Box::new(stream)
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(Error::from(e), "the HTTP handshake failed".into()))?;

    let Some(mut request) = pending.take() else {
        return Err(failed(
            Error::InternalError(None),
            "no request to send".into(),
        ));
    };
    // The request line carries the path only (not a proxy request).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| {
        failed(
            Error::HttpRequestUriInvalid,
            "the request's path is not valid".into(),
        )
    })?;
    let out = progress.clone();
    let request = request.map(|body| {
        Metered {
            inner: body,
            cap: limits.max_request_body,
            seen: 0,
            over: Error::HttpRequestBodySize,
            deadline: None,
            on_data: Box::new(move |n| out.update(|_, sent, _, _| *sent = n)),
        }
        .boxed_unsync()
    });

    let mut conn = Some(conn);
    let mut send = std::pin::pin!(sender.send_request(request));
    let head = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = send.as_mut().poll(cx) {
            return Poll::Ready(r.map_err(Error::from));
        }
        // Drive the connection until the answer's head is in.
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(r) = Pin::new(c).poll(cx)
        {
            conn = None;
            if let Err(e) = r {
                return Poll::Ready(Err(Error::from(e)));
            }
            return send.as_mut().poll(cx).map_err(Error::from);
        }
        Poll::Pending
    });
    let response = tokio::time::timeout_at(deadline, head)
        .await
        .map_err(|_| {
            failed(
                Error::ConnectionReadTimeout,
                format!("no answer within {timeout:?}"),
            )
        })?
        .map_err(|e| failed(e, "the request failed".into()))?;

    let status = response.status().as_u16();
    progress.update(|s, _, _, _| *s = Some(status));
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limits.max_response) {
        return Err(failed(
            Error::HttpResponseBodySize(Some(n)),
            format!(
                "the answer declares {n} bytes; this step's limit is {} (allow.http_max_response)",
                limits.max_response
            ),
        ));
    }
    let cap = limits.max_response;
    let body_progress = progress.clone();
    let response = response.map(|incoming| {
        Metered {
            inner: incoming.map_err(Error::from),
            cap,
            seen: 0,
            over: Error::HttpResponseBodySize,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            on_data: Box::new(move |n| {
                body_progress.update(|_, _, got, error| {
                    *got = n;
                    if n > cap {
                        *error = Some(format!(
                            "the answer went past this step's limit of {cap} bytes (allow.http_max_response)"
                        ));
                    }
                });
            }),
        }
        .boxed_unsync()
    });
    let io = async move {
        match conn {
            Some(conn) => conn.await.map_err(Error::from),
            None => Ok(()),
        }
    };
    Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
}

/// A body that counts its bytes, reports the total as it goes, fails past
/// `cap` bytes and, with a deadline, when the deadline passes.
struct Metered<B> {
    inner: B,
    cap: u64,
    seen: u64,
    over: fn(Option<u64>) -> Error,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    on_data: Box<dyn FnMut(u64) + Send>,
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if let Some(d) = this.deadline.as_mut() {
                    ready!(d.as_mut().poll(cx));
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                return Poll::Pending;
            }
        };
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            this.seen += data.len() as u64;
            (this.on_data)(this.seen);
            if this.seen > this.cap {
                return Poll::Ready(Some(Err((this.over)(Some(this.cap)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// TLS for outbound requests: the Mozilla roots `webpki-roots` carries.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            // The ring provider supports the default versions; this is
            // never reached, and a config with no roots refuses all TLS.
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 is supported by ring")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        });
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(grant: &[&str], ceiling: &[&str]) -> HttpLimits {
        let parse = |l: &[&str]| -> Arc<[HostPattern]> {
            l.iter().map(|p| HostPattern::parse(p).unwrap()).collect()
        };
        HttpLimits {
            grant: parse(grant),
            ceiling: parse(ceiling),
            timeout: Duration::from_secs(1),
            max_response: 10,
            max_request_body: 10,
            max_calls: 1,
        }
    }

    #[test]
    fn a_host_needs_the_grant_and_the_ceiling() {
        let l = limits(&["api.example.com", "*.slack.com:443"], &[]);
        assert_eq!(l.refuse_host("api.example.com", 443), None);
        assert_eq!(l.refuse_host("hooks.slack.com", 443), None);
        let why = l.refuse_host("evil.example", 443).unwrap();
        assert!(why.contains("evil.example:443 is not in this step's grant (allow.http = [\"api.example.com\", \"*.slack.com:443\"])"), "{why}");
        let l = limits(&["*"], &["*.example.com"]);
        let why = l.refuse_host("other.test", 80).unwrap();
        assert!(
            why.contains("operator's ceiling (--allow-http \"*.example.com\")"),
            "{why}"
        );
        let why = limits(&[], &[]).refuse_host("a.test", 80).unwrap();
        assert!(why.contains("no outbound HTTP grant"), "{why}");
    }

    #[tokio::test]
    async fn private_addresses_need_the_ceiling_to_name_them() {
        let open = limits(&["*"], &[]);
        match open.resolve("127.0.0.1", 80).await {
            Err(Refused::Denied(why)) => assert!(why.contains("127.0.0.1"), "{why}"),
            _ => panic!("loopback reached without the ceiling naming it"),
        }
        let named = limits(&["*"], &["127.0.0.1"]);
        assert!(named.resolve("127.0.0.1", 80).await.is_ok());
        let wildcard = limits(&["*"], &["*"]);
        assert!(matches!(
            wildcard.resolve("169.254.169.254", 80).await,
            Err(Refused::Denied(_))
        ));
    }
}
