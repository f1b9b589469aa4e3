//! A manifest as written: strict serde types with spans, before any
//! validation. Unknown fields are errors, reported with their line.

use serde::Deserialize;
use toml::Spanned;

use std::collections::BTreeMap;

use super::allow::RawAllow;
use super::auth::Encoding;
use super::spec::{Method, Missed, Mode, OnDuplicate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub trigger: Spanned<RawTrigger>,
    /// More triggers: cron schedules.
    #[serde(default)]
    pub triggers: Vec<Spanned<RawMoreTrigger>>,
    #[serde(default)]
    pub steps: Vec<Spanned<RawStep>>,
    pub limits: Option<RawLimits>,
    pub quota: Option<RawQuota>,
    pub input: Option<Spanned<toml::Table>>,
    pub input_schema: Option<Spanned<String>>,
    /// Values `allow.config` may name, written as they are.
    #[serde(default)]
    pub settings: BTreeMap<String, Spanned<String>>,
    /// Values `allow.config` may name, as `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<String>>,
    /// Per-environment settings, secrets and step config.
    #[serde(default)]
    pub environments: BTreeMap<String, Spanned<RawEnvironment>>,
    /// The environment of a request that names none.
    pub default_environment: Option<Spanned<String>>,
}

/// `[environments.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironment {
    #[serde(default)]
    pub settings: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<String>>,
    /// By step id: config merged over the step's own.
    #[serde(default)]
    pub steps: BTreeMap<String, Spanned<RawEnvironmentStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironmentStep {
    pub config: Option<toml::Table>,
}

pub(super) fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    pub path: Option<Spanned<String>>,
    pub methods: Option<Spanned<Vec<Method>>>,
    #[serde(default)]
    pub mode: Mode,
    pub sync_timeout: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub on_duplicate: OnDuplicate,
    pub idempotency_window: Option<Spanned<String>>,
}

/// A `[[triggers]]` entry.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawMoreTrigger {
    /// Another webhook: its own path, methods, body limit and auth; the
    /// rest is the `[trigger]`'s.
    Webhook {
        path: Option<String>,
        methods: Option<Vec<Method>>,
        max_body: Option<String>,
        auth: Option<RawAuth>,
    },
    Cron {
        schedule: String,
        #[serde(default = "utc")]
        timezone: String,
        #[serde(default)]
        missed: Missed,
    },
}

fn utc() -> String {
    "UTC".into()
}

/// `auth = { kind = "...", ... }`. Spans are lost inside internally tagged
/// enums: problems point at the `auth` table.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(super) enum RawAuth {
    None {},
    Bearer {
        secrets: Vec<String>,
    },
    Header {
        header: String,
        secrets: Vec<String>,
    },
    PathToken {
        secrets: Vec<String>,
    },
    StandardWebhooks {
        secrets: Vec<String>,
        tolerance: Option<String>,
    },
    Github {
        secrets: Vec<String>,
    },
    Stripe {
        secrets: Vec<String>,
        tolerance: Option<String>,
    },
    HmacSha256 {
        header: String,
        #[serde(default)]
        encoding: Encoding,
        #[serde(default)]
        prefix: String,
        secrets: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub id: Option<Spanned<String>>,
    pub plugin: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub config: Option<toml::Value>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<RawRetries>,
    pub allow: Option<Spanned<RawAllow>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetries {
    pub max: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuota {
    pub per_day: Option<Spanned<u64>>,
    pub per_month: Option<Spanned<u64>>,
    pub per_user_per_day: Option<Spanned<u64>>,
    pub per_user_per_month: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub concurrency: Option<Spanned<u32>>,
    pub rate: Option<Spanned<String>>,
    pub execution_timeout: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
    pub max_receiving: Option<Spanned<String>>,
    pub fuel: Option<Spanned<u64>>,
}
