//! `echo`: returns what it got.
//!
//! By default the output is the step's `previous` value unchanged (for the
//! first step, the event's payload), so `echo` can sit anywhere in a chain.
//! With `config = { full = true }` the output is the whole input instead:
//! event, request metadata, config, attempt and idempotency key. Every call
//! logs one line through the `log` import and one through stdout, so it also
//! shows how a step's logs are kept.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "step" });

use hookflow::plugin::log::{Level, log};

use serde_json::{Value, json};

struct Echo;

impl Guest for Echo {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "echo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Returns its input: the previous output, or everything with full = true."
                .into(),
            config_schema: Some(
                json!({"type": "object", "properties": {"full": {"type": "boolean"}}}).to_string(),
            ),
        }
    }

    fn run(input: StepInput) -> Result<StepOutput, StepError> {
        let config: Value = parse(&input.config, "config")?;
        log(
            Level::Info,
            &format!("echo: {} bytes of previous output", input.previous.len()),
        );
        println!("echo {} attempt {}", input.step_id, input.attempt);
        let output = if config.get("full").and_then(Value::as_bool) == Some(true) {
            let request = &input.event.request;
            json!({
                "execution_id": input.execution_id,
                "workflow": input.workflow,
                "step_id": input.step_id,
                "attempt": input.attempt,
                "idempotency_key": input.idempotency_key,
                "config": config,
                "previous": parse(&input.previous, "previous")?,
                "payload": parse(&input.event.payload, "payload")?,
                "body_len": input.event.body.len(),
                "content_type": input.event.content_type,
                "request": {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "headers": request.headers,
                    "remote_addr": request.remote_addr,
                    "received_at_ms": request.received_at_ms,
                },
            })
            .to_string()
        } else {
            input.previous
        };
        Ok(StepOutput {
            output,
            halt: false,
            response: None,
        })
    }
}

fn parse(text: &str, what: &str) -> Result<Value, StepError> {
    serde_json::from_str(text)
        .map_err(|e| StepError::Permanent(format!("echo: {what} is not JSON: {e}")))
}

export!(Echo);
