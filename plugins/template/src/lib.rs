//! `template`: renders text or JSON from the event.
//!
//! `config.text` is a template (Jinja syntax, the `expr` crate) over
//! `payload`, `previous` and `request`; the output is `{"text": ...}`.
//! Or `config.json` is any TOML/JSON value whose strings are templates;
//! the output is that value, rendered. A variable that does not exist is an
//! error, not empty text.

use hookflow_plugin::{Error, Input, JsonSchema, Output, Value, json};
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "hookflow_plugin::schemars")]
#[serde(deny_unknown_fields)]
struct Config {
    /// A text template: the output is `{"text": "..."}`.
    text: Option<String>,
    /// A value whose strings are templates: the output is it, rendered.
    json: Option<Value>,
}

fn run(input: Input<Config>) -> Result<Output, Error> {
    let context = expr::Context::with_request(
        input.event.payload.clone(),
        input.previous.clone(),
        input.event.request(),
    );
    let output = match (&input.config.text, &input.config.json) {
        (Some(text), None) => json!({ "text": context.render(text).map_err(Error::permanent)? }),
        (None, Some(shape)) => context.render_json(shape).map_err(Error::permanent)?,
        _ => {
            return Err(Error::permanent(
                "template: give exactly one of `text` and `json`",
            ));
        }
    };
    Ok(Output::new(output))
}

hookflow_plugin::step!(Config, run);
