//! `caps`: a test fixture that uses each capability of the `step` world at
//! 0.2.0 through the plain WASI bindings, as its config says, and reports
//! what came back, errors included:
//!
//! - `requests`: `[{ url, method?, body?, follow? }]`, each sent through
//!   `wasi:http/outgoing-handler` (with `follow`, a redirect is followed
//!   once, as an HTTP client library would); the output has `status` and
//!   `body` (as text) or `error` per request;
//! - `bucket` (default `""`), with `increment` (a key, +1), `set`
//!   (`{ key, value }`), `get` (a key) or `list` (true), through
//!   `wasi:keyvalue`;
//! - `config`: names read through `wasi:config/store`, each value also
//!   logged (to show its redaction);
//! - `connect` (`host:port`): a TCP connection through Rust's standard
//!   library (`wasi:sockets`); `lookup` (`host:port`): a name lookup; the
//!   output has what each came to;
//! - `spin`: loop without end (for fuel limits).

wit_bindgen::generate!({ path: "../../wit", world: "step", generate_all });

use serde_json::{Map, Value, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;
use wasi::keyvalue::{atomics, store};

use hookflow::plugin::log::{Level, log};

struct Caps;

impl Guest for Caps {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "caps".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Uses outbound HTTP, key-value and config as told (a test fixture)."
                .into(),
            config_schema: None,
        }
    }

    fn run(input: StepInput) -> Result<StepOutput, StepError> {
        let config: Value = serde_json::from_str(&input.config)
            .map_err(|e| StepError::Permanent(format!("config: {e}")))?;
        let mut out = Map::new();
        if let Some(requests) = config.get("requests").and_then(Value::as_array) {
            let results: Vec<Value> = requests
                .iter()
                .map(|r| match send_following(r) {
                    Ok((status, body)) => json!({"status": status, "body": body}),
                    Err(e) => json!({"error": e}),
                })
                .collect();
            out.insert("requests".into(), Value::Array(results));
        }
        if let Some(kv) = kv(&config) {
            out.insert("kv".into(), kv);
        }
        if let Some(names) = config.get("config").and_then(Value::as_array) {
            let mut values = Map::new();
            for name in names.iter().filter_map(Value::as_str) {
                let value = match wasi::config::store::get(name) {
                    Ok(Some(v)) => {
                        log(Level::Info, &format!("{name} is {v}"));
                        Value::String(v)
                    }
                    Ok(None) => Value::Null,
                    Err(e) => json!({"error": format!("{e:?}")}),
                };
                values.insert(name.into(), value);
            }
            out.insert("config".into(), Value::Object(values));
        }
        if let Some(addr) = config.get("connect").and_then(Value::as_str) {
            let outcome = match std::net::TcpStream::connect(addr) {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("error: {e}"),
            };
            out.insert("connect".into(), Value::String(outcome));
        }
        if let Some(name) = config.get("lookup").and_then(Value::as_str) {
            use std::net::ToSocketAddrs;
            let outcome = match name.to_socket_addrs() {
                Ok(addrs) => format!("resolved: {}", addrs.count()),
                Err(e) => format!("error: {e}"),
            };
            out.insert("lookup".into(), Value::String(outcome));
        }
        if config.get("spin").and_then(Value::as_bool) == Some(true) {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Ok(StepOutput {
            output: Value::Object(out).to_string(),
            halt: false,
            response: None,
        })
    }
}

fn kv(config: &Value) -> Option<Value> {
    let op = ["increment", "set", "get", "list"]
        .into_iter()
        .find(|op| config.get(op).is_some())?;
    let bucket_name = config.get("bucket").and_then(Value::as_str).unwrap_or("");
    let bucket = match store::open(bucket_name) {
        Ok(b) => b,
        Err(e) => return Some(json!({"error": format!("{e:?}")})),
    };
    let text = |k: &str| config[op].get(k).and_then(Value::as_str).unwrap_or("");
    let result = match op {
        "increment" => {
            let key = config[op].as_str().unwrap_or("");
            atomics::increment(&bucket, key, 1).map(|n| json!(n))
        }
        "set" => bucket
            .set(text("key"), text("value").as_bytes())
            .map(|()| json!(true)),
        "get" => bucket.get(config[op].as_str().unwrap_or("")).map(|v| {
            v.map_or(Value::Null, |b| {
                Value::String(String::from_utf8_lossy(&b).into_owned())
            })
        }),
        _ => bucket.list_keys(None).map(|r| json!(r.keys)),
    };
    Some(result.unwrap_or_else(|e| json!({"error": format!("{e:?}")})))
}

/// A request, and with `follow`, the one its redirect asks for.
fn send_following(r: &Value) -> Result<(u16, String), String> {
    let (status, body, location) = send(r)?;
    match location {
        Some(to) if r.get("follow").and_then(Value::as_bool) == Some(true) => {
            let mut next = r.clone();
            next["url"] = Value::String(to);
            send(&next).map(|(status, body, _)| (status, body))
        }
        _ => Ok((status, body)),
    }
}

/// One request through `wasi:http/outgoing-handler`; `(status, body,
/// location)`.
fn send(r: &Value) -> Result<(u16, String, Option<String>), String> {
    let url = r["url"].as_str().ok_or("a request needs `url`")?;
    let (scheme, rest) = url.split_once("://").ok_or("`url` needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let method = match r.get("method").and_then(Value::as_str).unwrap_or("GET") {
        "POST" => Method::Post,
        "PUT" => Method::Put,
        _ => Method::Get,
    };
    let scheme = if scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request.set_method(&method).map_err(|()| "method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "path")?;
    let body = request.body().map_err(|()| "body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    // A refused request closes the body's stream: what went wrong is in
    // the response future, so write errors are told only if it has none.
    let written = write_body(body, r.get("body").and_then(Value::as_str).unwrap_or(""));
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    written?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|_| (300..400).contains(&status));
    let incoming = response.consume().map_err(|()| "consume")?;
    let stream = incoming.stream().map_err(|()| "stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!("reading the answer: {}", e.to_debug_string()));
            }
        }
    }
    Ok((
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        location,
    ))
}

fn write_body(body: OutgoingBody, text: &str) -> Result<(), String> {
    {
        let stream = body.write().map_err(|()| "body stream")?;
        for chunk in text.as_bytes().chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))
}

export!(Caps);
