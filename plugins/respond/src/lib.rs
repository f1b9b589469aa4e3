//! `respond`: answers a synchronous webhook with an HTTP response of its
//! choosing, e.g. a provider's URL-verification handshake.
//!
//! `config`:
//! - `status` (default 200);
//! - `headers`: a table of header values;
//! - `body`: a shape as in `json-map` (JSONPath paths such as
//!   `$.challenge` or `$previous.x`, literals, nested tables); a string
//!   result is sent as is, anything else as JSON;
//! - `content_type` (default `text/plain` for a string body,
//!   `application/json` otherwise).
//!
//! The step's output is the body value, and the workflow stops here.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "step" });

use hookflow::plugin::types::HttpResponse;
use serde_json::{Value, json};

struct Respond;

impl Guest for Respond {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "respond".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Answers a sync webhook with a chosen status, headers and body.".into(),
            config_schema: Some(
                json!({"type": "object", "properties": {
                    "status": {"type": "integer"},
                    "headers": {"type": "object"},
                    "content_type": {"type": "string"},
                    "body": {}
                }})
                .to_string(),
            ),
        }
    }

    fn run(input: StepInput) -> Result<StepOutput, StepError> {
        let fail = |m: String| StepError::Permanent(format!("respond: {m}"));
        let config: Value = serde_json::from_str(&input.config).map_err(|e| fail(e.to_string()))?;
        let status = match config.get("status") {
            None => 200,
            Some(s) => s
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (200..600).contains(s))
                .ok_or_else(|| fail("status must be an HTTP status from 200 to 599".into()))?,
        };
        let context = expr::context_of!(input).map_err(|e| fail(e.0))?;
        let body = context
            .map(config.get("body").unwrap_or(&Value::Null))
            .map_err(|e| fail(e.0))?;
        let (bytes, default_type) = match &body {
            Value::String(s) => (s.clone().into_bytes(), "text/plain; charset=utf-8"),
            other => (other.to_string().into_bytes(), "application/json"),
        };
        let content_type = config
            .get("content_type")
            .and_then(Value::as_str)
            .unwrap_or(default_type);
        let mut headers = vec![("content-type".to_string(), content_type.to_string())];
        if let Some(table) = config.get("headers").and_then(Value::as_object) {
            for (k, v) in table {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                headers.push((k.to_ascii_lowercase(), v));
            }
        }
        Ok(StepOutput {
            output: body.to_string(),
            halt: true,
            response: Some(HttpResponse {
                status,
                headers,
                body: bytes,
            }),
        })
    }
}

export!(Respond);
