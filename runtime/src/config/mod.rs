//! Configuration: workflow manifests (`DIR/*.toml`, SPEC §4) and the
//! diagnostics reported when they are wrong.
//!
//! A manifest is read into the strict serde types of [`raw`], then checked
//! into a [`WorkflowSpec`] whose every path, duration, size and secret is
//! resolved. Parsing is strict (`deny_unknown_fields`) and every problem
//! becomes a [`Diagnostic`] with its file and line, all of them reported
//! rather than only the first. Nothing here knows about HTTP or wasm.

mod allow;
mod auth;
mod diagnostic;
mod input;
mod names;
mod raw;
mod scan;
mod spec;
mod units;
mod validate;

pub use allow::{ConfigEntry, Grants, HostPattern, KvGrant, is_public};
pub use auth::{Auth, Encoding, Secret, decode_standard_secret};
pub use diagnostic::{Diagnostic, joined};
pub use input::{FieldError, FieldType, InputField, InputRules};
pub use scan::{
    SourceKind, js_entry, load_dir, load_file, manifest_files, npm_package, parse_manifest,
    plugin_for_source, py_project, toml_error,
};
pub use spec::{
    CronSpec, Environment, EnvironmentStep, Method, Missed, Mode, OnDuplicate, Quota, Rate,
    Retries, StepSpec, TriggerSpec, WorkflowLimits, WorkflowSpec,
};
pub use units::{parse_duration, parse_size};

/// The largest plugin file accepted, in bytes.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;
