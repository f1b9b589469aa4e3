//! `json-map`: builds a new JSON object from selections of the event and the
//! previous output.
//!
//! The step's `config` is the shape of the output. Every string that starts
//! with `$` is a path, replaced by what it selects; everything else is copied
//! as written, and nested objects and arrays are mapped recursively:
//!
//! - `$.a.b[0]` selects from the event's payload (`$` alone is all of it);
//! - `$previous.a` selects from the previous step's output;
//! - `$request.method`, `$request.headers['user-agent']` select from the
//!   request metadata (`method`, `path`, `query`, `remote_addr`,
//!   `received_at_ms`, `headers` by lower-case name).
//!
//! Paths are RFC 9535 JSONPath (the `expr` crate, shared by the
//! first-party plugins): quoted names, filters and wildcards work; a path
//! that can select several values gives an array. A path that selects
//! nothing yields `null`. A string that must start with a literal `$` is
//! written `$$...`.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "step" });

use serde_json::{Value, json};

struct JsonMap;

impl Guest for JsonMap {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "json-map".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Builds a JSON object from $-paths into the event and previous output."
                .into(),
            config_schema: Some(json!({"type": "object"}).to_string()),
        }
    }

    fn run(input: StepInput) -> Result<StepOutput, StepError> {
        let config: Value = parse(&input.config, "config")?;
        if !config.is_object() {
            return Err(StepError::Permanent(
                "json-map: config must be a table of output fields".into(),
            ));
        }
        let output = expr::context_of!(input)
            .and_then(|c| c.map(&config))
            .map_err(|e| StepError::Permanent(format!("json-map: {}", e.0)))?;
        Ok(StepOutput {
            output: output.to_string(),
            halt: false,
            response: None,
        })
    }
}

fn parse(text: &str, what: &str) -> Result<Value, StepError> {
    serde_json::from_str(text)
        .map_err(|e| StepError::Permanent(format!("json-map: {what} is not JSON: {e}")))
}

export!(JsonMap);
