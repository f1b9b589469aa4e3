//! Write a hookflow step in Rust: a function from the step's input to its
//! output, with typed config, and helpers for what a step may be granted
//! (outbound HTTP, a key-value bucket, config and secrets) over the
//! standard WASI interfaces of `hookflow:plugin@0.2.0`.
//!
//! ```ignore
//! use hookflow_plugin::{Error, Input, Output, http, serde_json::json};
//!
//! #[derive(serde::Deserialize, hookflow_plugin::JsonSchema)]
//! #[schemars(crate = "hookflow_plugin::schemars")]
//! struct Config { url: String }
//!
//! fn run(input: Input<Config>) -> Result<Output, Error> {
//!     let answer = http::post(&input.config.url).json(&input.previous)?.send()?;
//!     Ok(Output::new(json!({ "status": answer.status })))
//! }
//!
//! hookflow_plugin::step!(Config, run);
//! ```
//!
//! `step!` exports `describe` (the crate's name, version and description,
//! and the JSON Schema of `Config`, which hookflow checks each manifest's
//! `config` against when it loads) and `run` (the config parsed into
//! `Config`, then your function). Anything a step may not do fails with an
//! error saying so, which `?` passes on.

// The bindings name this crate by its path, as the crates using it do.
extern crate self as hookflow_plugin;

pub mod config;
pub mod http;
pub mod kv;
pub mod log;

pub use schemars::{self, JsonSchema};
pub use serde_json::{self, Value, json};
#[doc(hidden)]
pub use wit_bindgen;

/// The generated bindings of the `step` world.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "step",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_step_world",
        default_bindings_module: "hookflow_plugin::bindings",
        runtime_path: "hookflow_plugin::wit_bindgen::rt",
    });
}

use bindings::hookflow::plugin::types::HttpResponse;
use bindings::{PluginInfo, StepError, StepInput, StepOutput};

/// Everything a step gets for one attempt, its config typed.
#[derive(Debug)]
pub struct Input<C> {
    /// The step's `config` from the manifest.
    pub config: C,
    /// The event that started the execution.
    pub event: Event,
    /// The previous step's output; for the first step, the payload.
    pub previous: Value,
    pub execution_id: String,
    pub workflow: String,
    pub step_id: String,
    /// 1, then 2, 3, ... on retries.
    pub attempt: u32,
    /// The same for every attempt of this step in this execution: give it
    /// to any system that deduplicates.
    pub idempotency_key: String,
}

/// The webhook that started the execution.
#[derive(Debug)]
pub struct Event {
    /// The body as JSON (`null` when it was not JSON).
    pub payload: Value,
    /// The body as received.
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names; credentials removed.
    pub headers: Vec<(String, String)>,
    /// The sender's address, `ip:port`.
    pub remote_addr: String,
    pub received_at_ms: u64,
}

impl Event {
    /// The request's fields as one object: `method`, `path`, `query`,
    /// `remote_addr`, `received_at_ms`, `headers` (by lower-case name; a
    /// repeated header's last value).
    pub fn request(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
            .collect();
        json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "remote_addr": self.remote_addr,
            "received_at_ms": self.received_at_ms,
            "headers": headers,
        })
    }

    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A step's result: its output, and optionally a stop or an HTTP answer
/// for a sync webhook.
#[derive(Debug, Clone)]
pub struct Output {
    pub output: Value,
    pub halt: bool,
    pub response: Option<Response>,
}

/// An HTTP answer a step chooses for a sync webhook.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Output {
    /// Carries `output` on to the next step.
    pub fn new(output: impl Into<Value>) -> Self {
        Self {
            output: output.into(),
            halt: false,
            response: None,
        }
    }

    /// Any serializable value as the output.
    pub fn json(output: &impl serde::Serialize) -> Result<Self, Error> {
        Ok(Self::new(
            serde_json::to_value(output).map_err(Error::permanent)?,
        ))
    }

    /// Stops the workflow here; the execution succeeds with this output.
    pub fn halt(mut self) -> Self {
        self.halt = true;
        self
    }

    /// Answers a sync webhook with this instead of the default JSON body.
    pub fn respond(
        mut self,
        status: u16,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Self {
        self.response = Some(Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        });
        self
    }
}

/// Why a step failed: retryable (hookflow tries again, as the step's
/// `retries` allow) or permanent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Retryable(String),
    Permanent(String),
}

impl Error {
    pub fn retryable(why: impl std::fmt::Display) -> Self {
        Self::Retryable(why.to_string())
    }

    pub fn permanent(why: impl std::fmt::Display) -> Self {
        Self::Permanent(why.to_string())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retryable(m) => write!(f, "retryable: {m}"),
            Error::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::permanent(e)
    }
}

/// `describe`, from the crate's metadata and the config type.
#[doc(hidden)]
pub fn describe<C: JsonSchema>(name: &str, version: &str, description: &str) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: version.into(),
        description: description.into(),
        config_schema: Some(schemars::schema_for!(C).to_value().to_string()),
    }
}

/// `run`: the input typed, `f` called, its result as the world wants it.
#[doc(hidden)]
pub fn run<C, F>(input: StepInput, f: F) -> Result<StepOutput, StepError>
where
    C: serde::de::DeserializeOwned,
    F: FnOnce(Input<C>) -> Result<Output, Error>,
{
    let wrong = |what: &str, e: serde_json::Error| StepError::Permanent(format!("{what}: {e}"));
    let config: C = serde_json::from_str(&input.config).map_err(|e| wrong("config", e))?;
    let request = input.event.request;
    let typed = Input {
        config,
        event: Event {
            payload: serde_json::from_str(&input.event.payload).unwrap_or(Value::Null),
            body: input.event.body,
            content_type: input.event.content_type,
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            remote_addr: request.remote_addr,
            received_at_ms: request.received_at_ms,
        },
        previous: serde_json::from_str(&input.previous).map_err(|e| wrong("previous", e))?,
        execution_id: input.execution_id,
        workflow: input.workflow,
        step_id: input.step_id,
        attempt: input.attempt,
        idempotency_key: input.idempotency_key,
    };
    match f(typed) {
        Ok(out) => Ok(StepOutput {
            output: out.output.to_string(),
            halt: out.halt,
            response: out.response.map(|r| HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
        }),
        Err(Error::Retryable(m)) => Err(StepError::Retryable(m)),
        Err(Error::Permanent(m)) => Err(StepError::Permanent(m)),
    }
}

/// Exports a step: `step!(Config, run)` where `Config` is the step's
/// config type (`serde::Deserialize` and [`JsonSchema`]) and `run` a
/// `fn(Input<Config>) -> Result<Output, Error>`. The crate's name, version
/// and description describe it.
#[macro_export]
macro_rules! step {
    ($config:ty, $run:path) => {
        struct HookflowStep;

        impl $crate::bindings::Guest for HookflowStep {
            fn describe() -> $crate::bindings::PluginInfo {
                $crate::describe::<$config>(
                    env!("CARGO_PKG_NAME"),
                    env!("CARGO_PKG_VERSION"),
                    env!("CARGO_PKG_DESCRIPTION"),
                )
            }

            fn run(
                input: $crate::bindings::StepInput,
            ) -> ::core::result::Result<$crate::bindings::StepOutput, $crate::bindings::StepError>
            {
                $crate::run::<$config, _>(input, $run)
            }
        }

        $crate::bindings::export_step_world!(HookflowStep with_types_in $crate::bindings);
    };
}
