//! `kv-counter`: counts events per key, in the step's key-value bucket
//! (`allow = { kv = true }`, or a bucket shared by name), across
//! executions and restarts.
//!
//! `config.key` is a template (the `expr` crate) naming what to count by,
//! e.g. `"{{ payload.customer }}"`; `config.by` is how much to add
//! (default 1). The output is `{"key": ..., "count": ...}`, the count
//! after this event.

use hookflow_plugin::{Error, Input, JsonSchema, Output, json, kv};
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "hookflow_plugin::schemars")]
#[serde(deny_unknown_fields)]
struct Config {
    /// A template naming the counter.
    key: String,
    /// How much each event adds.
    #[serde(default = "one")]
    by: u64,
}

fn one() -> u64 {
    1
}

fn run(input: Input<Config>) -> Result<Output, Error> {
    let context = expr::Context::with_request(
        input.event.payload.clone(),
        input.previous.clone(),
        input.event.request(),
    );
    let key = context
        .render(&input.config.key)
        .map_err(Error::permanent)?;
    if key.is_empty() {
        return Err(Error::permanent("kv-counter: the key renders empty"));
    }
    let count = kv::increment(&key, input.config.by)?;
    Ok(Output::new(json!({ "key": key, "count": count })))
}

hookflow_plugin::step!(Config, run);
