//! Configuration: workflow manifests (`DIR/*.toml`) and the diagnostics
//! reported when they are wrong.
//!
//! Parsing is strict (`deny_unknown_fields`) and validation collects every
//! problem with its file and line instead of stopping at the first.

mod diagnostic;
mod manifest;
mod units;

pub use diagnostic::Diagnostic;
pub use manifest::{
    Auth, BuildTarget, Encoding, FieldType, InputField, Method, Mode, OnDuplicate, Rate, Retries,
    Secret, StepSpec, TriggerSpec, WorkflowLimits, WorkflowSpec, build_targets,
    decode_standard_secret, load_dir, load_file, package_name,
};
pub use units::{parse_duration, parse_size};

/// The largest plugin file accepted, in bytes.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;
