//! The validated workflow: what a manifest says once every path, duration,
//! size and secret in it is resolved. Immutable once loaded; runtime state
//! (rate limiters, concurrency slots) lives with the runner, keyed by name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::allow::Grants;
use super::auth::Auth;
use super::input::InputRules;

/// A validated workflow manifest.
#[derive(Debug, Clone)]
pub struct WorkflowSpec {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub file: PathBuf,
    /// SHA-256 of the manifest's text, hex.
    pub manifest_digest: String,
    /// Lines of `name` and `trigger.path`, for cross-file diagnostics.
    pub name_line: usize,
    pub path_line: usize,
    pub trigger: TriggerSpec,
    /// More webhook triggers (`[[triggers]] kind = "webhook"`), each with
    /// the `[trigger]`'s mode, `sync_timeout`, `on_duplicate` and
    /// `idempotency_window`.
    pub webhooks: Vec<TriggerSpec>,
    /// Cron triggers (`[[triggers]] kind = "cron"`).
    pub crons: Vec<CronSpec>,
    pub steps: Vec<StepSpec>,
    pub limits: WorkflowLimits,
    /// What the payload must look like (`[input]` or `input_schema`).
    pub input: InputRules,
    /// Named environments (`[environments.NAME]`), each with every step's
    /// config and grants resolved for it.
    pub environments: BTreeMap<String, Environment>,
    /// The environment of a request that names none; `None`: the steps as
    /// written.
    pub default_environment: Option<String>,
}

/// A step's config and grants in one environment.
#[derive(Debug, Clone)]
pub struct EnvironmentStep {
    pub config: Value,
    pub grants: Grants,
}

/// One environment: its version of each step, in step order.
#[derive(Debug, Clone)]
pub struct Environment {
    pub steps: Vec<EnvironmentStep>,
}

impl WorkflowSpec {
    /// Every webhook trigger: `[trigger]`, then `[[triggers]]` of kind
    /// `webhook`.
    pub fn hooks(&self) -> impl Iterator<Item = &TriggerSpec> {
        std::iter::once(&self.trigger).chain(&self.webhooks)
    }

    /// The webhook trigger served at `/hooks/{path}`.
    pub fn hook_at(&self, path: &str) -> Option<&TriggerSpec> {
        self.hooks().find(|t| !t.path.is_empty() && t.path == path)
    }

    /// The path-token trigger whose token is `token` (compared with every
    /// token, each in constant time).
    pub fn hook_for_token(&self, token: &str) -> Option<&TriggerSpec> {
        let mut found = None;
        for t in self.hooks() {
            if let Auth::PathToken { secrets } = &t.auth {
                let matched = secrets
                    .iter()
                    .fold(false, |m, s| s.matches(token.as_bytes()) | m);
                if matched && found.is_none() {
                    found = Some(t);
                }
            }
        }
        found
    }

    /// The environment a request asking for `asked` runs in: that one, or
    /// the default. `Err` names the environments there are.
    pub fn environment(&self, asked: Option<&str>) -> Result<Option<String>, String> {
        match asked {
            None => Ok(self.default_environment.clone()),
            Some(name) if self.environments.contains_key(name) => Ok(Some(name.to_string())),
            Some(name) if self.environments.is_empty() => Err(format!(
                "workflow `{}` has no environments (asked for `{name}`); leave `environment` out",
                self.name
            )),
            Some(name) => Err(format!(
                "workflow `{}` has no environment `{name}`: it has {}",
                self.name,
                self.environments
                    .keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Step `index`'s config and grants in `environment` (as written when
    /// `None` or unknown).
    pub fn step_setup(&self, environment: Option<&str>, index: usize) -> (&Value, &Grants) {
        let step = &self.steps[index];
        match environment
            .and_then(|e| self.environments.get(e))
            .and_then(|e| e.steps.get(index))
        {
            Some(s) => (&s.config, &s.grants),
            None => (&step.config, &step.grants),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TriggerSpec {
    /// Served at `/hooks/{path}`; no leading or trailing slash. Empty for a
    /// path-token trigger.
    pub path: String,
    pub methods: Vec<Method>,
    pub mode: Mode,
    pub sync_timeout: Duration,
    pub max_body: u64,
    pub auth: Auth,
    pub on_duplicate: OnDuplicate,
    /// How long an idempotency key is remembered.
    pub idempotency_window: Duration,
}

#[derive(Debug, Clone)]
pub struct StepSpec {
    pub id: String,
    /// The line of the step's `plugin` (or of the step), for diagnostics.
    pub line: usize,
    /// The plugin as written in the manifest (or derived from `source`).
    pub plugin_name: String,
    /// The plugin file, resolved.
    pub plugin: PathBuf,
    /// The crate `hookflow build` compiles into `plugin`, resolved.
    pub source: Option<PathBuf>,
    pub config: Value,
    pub timeout: Duration,
    pub retries: Retries,
    /// What it may do beyond computing (`allow`).
    pub grants: Grants,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Attempts after the first.
    pub max: u32,
    /// Delay before the first retry; doubled for each next one, with jitter.
    pub backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowLimits {
    /// Executions of the workflow running at once.
    pub concurrency: usize,
    /// Accepted requests per window, at most (`rate = "100/min"`).
    pub rate: Option<Rate>,
    pub execution_timeout: Duration,
    /// Linear memory per step instance, in bytes.
    pub memory: u64,
    /// Bytes of request bodies the workflow may be receiving at once, not
    /// yet verified or recorded: strangers trickling bodies to it hold at
    /// most this, and no other workflow's room.
    pub max_receiving: u64,
    /// Fuel each step attempt may consume (wasm instructions, roughly);
    /// `None`: unlimited (time and memory still are).
    pub fuel: Option<u64>,
    /// Executions per calendar day and month (`[quota]`).
    pub quota: Quota,
}

/// Executions a workflow takes per UTC calendar day and month, in all and
/// per `user` (`POST /api/v1/run`); `None`: no quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
    pub per_user_per_day: Option<u64>,
    pub per_user_per_month: Option<u64>,
}

/// A request rate: `count` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests per {:?}", self.count, self.per)
    }
}

/// An HTTP method a trigger accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// `async`: answer 202 once the event is recorded. `sync`: wait for the
/// result, up to `sync_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Async,
    Sync,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
        }
    }
}

/// What a repeated idempotency key gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDuplicate {
    /// The original answer again, with `Idempotent-Replayed: true`.
    #[default]
    Replay,
    /// `409 duplicate` with the original execution id.
    Conflict,
}

/// What a cron trigger does at start about the slots missed while the
/// server was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Nothing: the next slot is the next one due.
    #[default]
    Skip,
    /// The latest missed slot runs once.
    RunOnce,
}

/// A cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    /// As written: five fields (minute hour day-of-month month
    /// day-of-week), or six with seconds first.
    pub pattern: String,
    pub schedule: croner::Cron,
    pub timezone: chrono_tz::Tz,
    pub missed: Missed,
}

impl CronSpec {
    /// Parses a schedule and an IANA time zone name.
    pub fn parse(pattern: &str, timezone: &str, missed: Missed) -> Result<Self, String> {
        let schedule = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| format!("`{pattern}` is not a cron schedule: {e}"))?;
        let timezone = timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            format!(
                "`{timezone}` is not a time zone: use an IANA name such as `Europe/Paris` or `UTC`"
            )
        })?;
        Ok(Self {
            pattern: pattern.to_string(),
            schedule,
            timezone,
            missed,
        })
    }
}
