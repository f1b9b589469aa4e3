//! `filter`: stops the workflow unless a condition holds.
//!
//! `config.when` is a condition over `payload`, `previous` and `request`
//! (a template expression, the `expr` crate): `payload.ref ==
//! "refs/heads/main"`. When it holds, the previous output passes on
//! unchanged; when not, the workflow stops there, successfully, with the
//! output `{"filtered": true, "when": ...}`.

use hookflow_plugin::{Error, Input, JsonSchema, Output, json};
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "hookflow_plugin::schemars")]
#[serde(deny_unknown_fields)]
struct Config {
    /// The condition that lets the workflow go on.
    when: String,
}

fn run(input: Input<Config>) -> Result<Output, Error> {
    let context = expr::Context::with_request(
        input.event.payload.clone(),
        input.previous.clone(),
        input.event.request(),
    );
    let when = &input.config.when;
    if context.test(when).map_err(Error::permanent)? {
        Ok(Output::new(input.previous))
    } else {
        hookflow_plugin::log::info(&format!("stopped: `{when}` does not hold"));
        Ok(Output::new(json!({"filtered": true, "when": when})).halt())
    }
}

hookflow_plugin::step!(Config, run);
