//! Outbound HTTP through `wasi:http/outgoing-handler`, blocking, as a
//! step's `run` is. The host sends a request only to a host the step's
//! `allow.http` grants; anything else fails with [`HttpError::Denied`].
//! Redirects are not followed (a 3xx is an answer like any other).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The step may not call this host (see the attempt's audit trail).
    Denied,
    /// No answer in time.
    Timeout,
    /// The URL, a header or the body could not be sent as given.
    Invalid(String),
    /// The connection or the answer failed.
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Denied => f.write_str(
                "the request was denied: the host is not in this step's allow.http grant",
            ),
            HttpError::Timeout => f.write_str("the request timed out"),
            HttpError::Invalid(m) => write!(f, "the request is not valid: {m}"),
            HttpError::Failed(m) => write!(f, "the request failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A denied or invalid request cannot succeed on a retry; a timeout or a
/// failed connection may.
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied | HttpError::Invalid(_) => Error::permanent(e),
            HttpError::Timeout | HttpError::Failed(_) => Error::retryable(e),
        }
    }
}

fn from_code(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => HttpError::Timeout,
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
            HttpError::Invalid(format!("{code:?}"))
        }
        other => HttpError::Failed(format!("{other:?}")),
    }
}

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout_ms: Option<u64>,
}

pub fn get(url: &str) -> Request {
    request("GET", url)
}

pub fn post(url: &str) -> Request {
    request("POST", url)
}

pub fn put(url: &str) -> Request {
    request("PUT", url)
}

pub fn delete(url: &str) -> Request {
    request("DELETE", url)
}

/// A request with any method.
pub fn request(method: &str, url: &str) -> Request {
    Request {
        method: method.to_ascii_uppercase(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        timeout_ms: None,
    }
}

impl Request {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `Authorization: Bearer TOKEN`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body, with its content type.
    pub fn json(self, value: &impl Serialize) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// A timeout for connecting and for the answer's first byte (the
    /// step's own `http_timeout` still applies, and wins if shorter).
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// Sends the request and reads the whole answer.
    pub fn send(self) -> Result<Answer, HttpError> {
        let invalid = |what: &str| HttpError::Invalid(what.to_string());
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| invalid("the URL needs http:// or https://"))?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid("the URL needs http:// or https://")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let headers = Fields::new();
        // A body of known length says so: some servers read no body without
        // it (the alternative is chunked transfer).
        let has_length = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
        if !self.body.is_empty() && !has_length {
            headers
                .append("content-length", self.body.len().to_string().as_bytes())
                .map_err(|e| invalid(&format!("header `content-length`: {e:?}")))?;
        }
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| invalid(&format!("header `{name}`: {e:?}")))?;
        }
        let request = OutgoingRequest::new(headers);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        request
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| invalid("host"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| invalid("path"))?;
        let options = self.timeout_ms.map(|ms| {
            let o = RequestOptions::new();
            let ns = ms.saturating_mul(1_000_000);
            let _ = o.set_connect_timeout(Some(ns));
            let _ = o.set_first_byte_timeout(Some(ns));
            o
        });
        let body = request.body().map_err(|()| invalid("body"))?;
        let pending = outgoing_handler::handle(request, options).map_err(from_code)?;
        // A refused request closes the body's stream; the reason is in the
        // answer, so a write error counts only when the answer has none.
        let written = write_all(body, &self.body);
        pending.subscribe().block();
        let answer = pending
            .get()
            .ok_or_else(|| HttpError::Failed("no answer".into()))?
            .map_err(|()| HttpError::Failed("the answer was taken twice".into()))?
            .map_err(from_code)?;
        written?;
        let status = answer.status();
        let headers = answer
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = answer
            .consume()
            .map_err(|()| HttpError::Failed("the body was taken twice".into()))?;
        let stream = incoming
            .stream()
            .map_err(|()| HttpError::Failed("the body's stream was taken twice".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend(chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(HttpError::Failed(e.to_debug_string()));
                }
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

fn write_all(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    let failed = |e: String| HttpError::Failed(format!("sending the body: {e}"));
    {
        let stream = body.write().map_err(|()| failed("no stream".into()))?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| failed(format!("{e:?}")))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| failed(format!("{e:?}")))
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The answer if its status is 2xx; else an error, retryable for 5xx
    /// and 429 (worth trying again), permanent for the rest.
    pub fn error_for_status(self) -> Result<Self, Error> {
        if self.is_success() {
            return Ok(self);
        }
        let why = format!(
            "the answer was {}: {}",
            self.status,
            crate::log::clip(&self.text(), 200)
        );
        if self.status >= 500 || self.status == 429 {
            Err(Error::retryable(why))
        } else {
            Err(Error::permanent(why))
        }
    }
}
