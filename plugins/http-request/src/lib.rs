//! `http-request`: calls a URL the step's `allow.http` grants.
//!
//! `config`: `url` (a template, the `expr` crate), `method` (default
//! `POST`), `headers` (a table of templates), and a body: `json` (a value
//! whose strings are templates, sent as JSON) or `body` (a text template);
//! `bearer` names a `wasi:config` secret sent as `Authorization: Bearer`;
//! `timeout_ms` bounds connecting and the answer's first byte (the step's
//! `allow.http_timeout` still applies). Every request carries
//! `Idempotency-Key` (the step's key, the same on every retry) unless
//! `headers` sets it.
//!
//! An answer of 2xx is the output `{"status": ..., "body": ...}` (the body
//! as JSON when it is JSON, else as text). 5xx, 429, a timeout or a failed
//! connection is a retryable error (the step's `retries` try again); any
//! other status, or a denied request, is permanent.

use std::collections::BTreeMap;

use hookflow_plugin::{Error, Input, JsonSchema, Output, Value, config, http, json};
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "hookflow_plugin::schemars")]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    json: Option<Value>,
    body: Option<String>,
    /// A config name (granted by `allow.config`) whose value is the
    /// bearer token.
    bearer: Option<String>,
    timeout_ms: Option<u64>,
}

fn post() -> String {
    "POST".into()
}

fn run(input: Input<Config>) -> Result<Output, Error> {
    let c = &input.config;
    let context = expr::Context::with_request(
        input.event.payload.clone(),
        input.previous.clone(),
        input.event.request(),
    );
    let render = |t: &str| context.render(t).map_err(Error::permanent);
    let mut request = http::request(&c.method, &render(&c.url)?);
    if !c
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("idempotency-key"))
    {
        request = request.header("idempotency-key", &input.idempotency_key);
    }
    for (name, value) in &c.headers {
        request = request.header(name, &render(value)?);
    }
    if let Some(name) = &c.bearer {
        request = request.bearer(&config::require(name)?);
    }
    if let Some(ms) = c.timeout_ms {
        request = request.timeout_ms(ms);
    }
    request = match (&c.json, &c.body) {
        (Some(shape), None) => {
            request.json(&context.render_json(shape).map_err(Error::permanent)?)?
        }
        (None, Some(text)) => request.body(render(text)?),
        (None, None) => request,
        (Some(_), Some(_)) => {
            return Err(Error::permanent(
                "http-request: give `json` or `body`, not both",
            ));
        }
    };
    let answer = request.send()?.error_for_status()?;
    let body = hookflow_plugin::serde_json::from_slice(&answer.body)
        .unwrap_or_else(|_| Value::String(answer.text()));
    Ok(Output::new(
        json!({ "status": answer.status, "body": body }),
    ))
}

hookflow_plugin::step!(Config, run);
