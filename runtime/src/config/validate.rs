//! From a [`RawManifest`] to a [`WorkflowSpec`]: defaults filled in,
//! durations, sizes, routes and plugin paths checked, every problem
//! collected with its line rather than stopping at the first.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use toml::Spanned;

use super::MAX_PLUGIN_BYTES;
use super::allow::{ConfigEntry, ConfigValues, Grants, HostPattern, KvGrant, RawAllow};
use super::auth::resolve_secret;
use super::diagnostic::{Diagnostic, line_of};
use super::names::{check_route, default_step_id, is_slug};
use super::raw::{
    RawEnvironment, RawLimits, RawManifest, RawMoreTrigger, RawQuota, RawStep, RawTrigger,
};
use super::scan::{Unfit, confined_file, plugin_for_source};
use super::spec::{
    CronSpec, Environment, EnvironmentStep, Method, Quota, Retries, StepSpec, TriggerSpec,
    WorkflowLimits, WorkflowSpec,
};
use super::units::{parse_duration, parse_rate, parse_size};
use super::{Auth, raw::RawAuth};

/// The largest body a trigger may accept.
const MAX_BODY_CEILING: u64 = 100 << 20;
/// `limits.max_receiving` when the manifest does not say (or `max_body`,
/// if larger).
const DEFAULT_MAX_RECEIVING: u64 = 16 << 20;
/// The largest memory a step may be granted.
const MAX_STEP_MEMORY: u64 = 1 << 30;

/// Checks one manifest, collecting problems as it goes.
pub(super) struct Checker<'a> {
    pub file: &'a Path,
    pub source: &'a str,
    /// The canonical watched directory: no plugin or schema may live
    /// outside it.
    pub root: &'a Path,
    /// The manifest's directory: relative paths start here.
    pub dir: &'a Path,
    pub problems: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems
            .push(Diagnostic::at(self.file, self.source, span, message));
    }

    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.source, span.start)
    }

    pub fn manifest(&mut self, raw: RawManifest) -> WorkflowSpec {
        let (name, name_line) = self.name(raw.name);
        let trigger_span = raw.trigger.span();
        let path_line = self.line(
            raw.trigger
                .get_ref()
                .path
                .as_ref()
                .map_or(trigger_span.clone(), Spanned::span),
        );
        let trigger = self.trigger(raw.trigger.into_inner(), trigger_span);
        let mut crons = Vec::new();
        let mut webhooks: Vec<TriggerSpec> = Vec::new();
        for more in raw.triggers {
            let span = more.span();
            match more.into_inner() {
                RawMoreTrigger::Webhook {
                    path,
                    methods,
                    max_body,
                    auth,
                } => {
                    let at = |v| Spanned::new(span.clone(), v);
                    let raw = RawTrigger {
                        path: path.map(at),
                        methods: methods.map(|m| Spanned::new(span.clone(), m)),
                        mode: trigger.mode,
                        sync_timeout: None,
                        max_body: max_body.map(at),
                        auth: auth.map(|a| Spanned::new(span.clone(), a)),
                        on_duplicate: trigger.on_duplicate,
                        idempotency_window: None,
                    };
                    let mut hook = self.trigger(raw, span.clone());
                    hook.sync_timeout = trigger.sync_timeout;
                    hook.idempotency_window = trigger.idempotency_window;
                    let clash = !hook.path.is_empty()
                        && (hook.path == trigger.path
                            || webhooks.iter().any(|w| w.path == hook.path));
                    if clash {
                        self.error(
                            span,
                            format!(
                                "trigger path `{}` is served twice by this workflow",
                                hook.path
                            ),
                        );
                    }
                    webhooks.push(hook);
                }
                RawMoreTrigger::Cron {
                    schedule,
                    timezone,
                    missed,
                } => match CronSpec::parse(&schedule, &timezone, missed) {
                    Ok(cron) => crons.push(cron),
                    Err(e) => self.error(span, e),
                },
            }
        }
        let mut limits = self.limits(raw.limits.unwrap_or_default(), trigger.max_body);
        limits.quota = self.quota(raw.quota.unwrap_or_default());
        if raw.steps.is_empty() {
            self.problems.push(Diagnostic::file(
                self.file,
                "a workflow needs at least one [[steps]] entry",
            ));
        }
        let values = self.config_values(raw.settings, raw.secrets);
        let mut steps: Vec<StepSpec> = Vec::new();
        for (i, step) in raw.steps.into_iter().enumerate() {
            let span = step.span();
            let step = self.step(i, step.into_inner(), span.clone(), &name, &values);
            if steps.iter().any(|s| s.id == step.id) {
                self.error(
                    span,
                    format!("two steps have the id `{}`: give each an `id`", step.id),
                );
            }
            steps.push(step);
        }
        let environments = self.environments(raw.environments, &values, &steps);
        let default_environment = raw.default_environment.and_then(|d| {
            if environments.contains_key(d.get_ref()) {
                Some(d.into_inner())
            } else {
                self.error(
                    d.span(),
                    format!(
                        "default_environment `{}` is not one of the [environments.NAME] tables",
                        d.get_ref()
                    ),
                );
                None
            }
        });
        let input = self.input_rules(raw.input, raw.input_schema);
        WorkflowSpec {
            name,
            description: raw.description,
            enabled: raw.enabled,
            file: self.file.to_path_buf(),
            manifest_digest: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(self.source)),
            name_line,
            path_line,
            trigger,
            webhooks,
            crons,
            steps,
            limits,
            input,
            environments,
            default_environment,
        }
    }

    /// `name`, or the file stem when it is not set.
    fn name(&mut self, written: Option<Spanned<String>>) -> (String, usize) {
        let Some(n) = written else {
            let stem = self
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !is_slug(&stem) {
                self.problems.push(Diagnostic::file(
                    self.file,
                    format!("the file name `{stem}` is not a valid workflow name: set `name`"),
                ));
            }
            return (stem, 1);
        };
        let line = self.line(n.span());
        if !is_slug(n.get_ref()) {
            self.error(
                n.span(),
                format!(
                    "workflow name `{}` must be lower-case letters, digits, `-` or `_`",
                    n.get_ref()
                ),
            );
        }
        (n.into_inner(), line)
    }

    fn trigger(&mut self, raw: RawTrigger, span: Range<usize>) -> TriggerSpec {
        let path_token = matches!(
            raw.auth.as_ref().map(Spanned::get_ref),
            Some(RawAuth::PathToken { .. })
        );
        let path = match (&raw.path, path_token) {
            (Some(p), true) => {
                self.error(
                    p.span(),
                    "a path-token trigger is served at /hooks/t/{token}: remove `path`",
                );
                String::new()
            }
            (Some(p), false) => {
                if let Err(why) = check_route(p.get_ref()) {
                    self.error(p.span(), why);
                }
                p.get_ref().clone()
            }
            (None, true) => String::new(),
            (None, false) => {
                self.error(
                    span.clone(),
                    "trigger.path is missing: the webhook is served at /hooks/{path}",
                );
                String::new()
            }
        };
        let methods = match raw.methods {
            Some(m) if m.get_ref().is_empty() => {
                self.error(
                    m.span(),
                    "`methods` is empty: list at least one, e.g. [\"POST\"]",
                );
                Vec::new()
            }
            Some(m) => {
                let mut list = m.get_ref().clone();
                list.sort_by_key(|x| x.as_str());
                list.dedup();
                list
            }
            None => vec![Method::Post],
        };
        let sync_timeout = self.duration(raw.sync_timeout, Duration::from_secs(10));
        let max_body = match raw.max_body {
            Some(s) => match parse_size(s.get_ref()) {
                Ok(n) if n > MAX_BODY_CEILING => {
                    self.error(
                        s.span(),
                        format!("max_body may be at most {MAX_BODY_CEILING} bytes"),
                    );
                    n
                }
                Ok(n) => n,
                Err(e) => {
                    self.error(s.span(), e);
                    0
                }
            },
            None => 1 << 20,
        };
        let auth = match raw.auth {
            Some(a) => {
                let span = a.span();
                self.auth(a.into_inner(), span)
            }
            None => {
                self.error(
                    span,
                    "trigger.auth is missing: choose a kind, e.g. auth = { kind = \"bearer\", secrets = [\"env:HOOK_TOKEN\"] }, or write auth = { kind = \"none\" } to accept anyone",
                );
                Auth::None
            }
        };
        let idempotency_window =
            self.duration(raw.idempotency_window, Duration::from_secs(7 * 24 * 3600));
        TriggerSpec {
            path,
            methods,
            mode: raw.mode,
            sync_timeout,
            max_body,
            auth,
            on_duplicate: raw.on_duplicate,
            idempotency_window,
        }
    }

    fn step(
        &mut self,
        index: usize,
        raw: RawStep,
        span: Range<usize>,
        workflow: &str,
        values: &ConfigValues,
    ) -> StepSpec {
        let source = raw.source.as_ref().and_then(|s| {
            let dir = self.dir.join(s.get_ref());
            if super::scan::SourceKind::of(&dir).is_some() {
                Some(dir)
            } else {
                self.error(
                    s.span(),
                    format!(
                        "source `{}` is not a plugin source: no Cargo.toml (Rust), app.py or pyproject.toml (Python), or package.json or *.js (JavaScript) there",
                        s.get_ref()
                    ),
                );
                None
            }
        });
        let plugin_name = match (&raw.plugin, &source) {
            (Some(p), _) => p.get_ref().clone(),
            (None, Some(src)) => plugin_for_source(src).unwrap_or_else(|e| {
                self.error(span.clone(), e);
                String::new()
            }),
            (None, None) => {
                if raw.source.is_none() {
                    self.error(span.clone(), "a step needs `plugin = \"plugins/NAME.wasm\"` or `source = \"path/to/crate\"`");
                }
                String::new()
            }
        };
        let plugin_span = raw.plugin.as_ref().map_or(span, Spanned::span);
        let line = self.line(plugin_span.clone());
        let plugin = if plugin_name.is_empty() {
            PathBuf::new()
        } else {
            self.plugin_file(&plugin_name, source.is_some())
                .unwrap_or_else(|e| {
                    self.error(plugin_span, e);
                    PathBuf::new()
                })
        };
        let id = match raw.id {
            Some(id) => {
                if !is_slug(id.get_ref()) {
                    self.error(
                        id.span(),
                        format!(
                            "step id `{}` must be lower-case letters, digits, `-` or `_`",
                            id.get_ref()
                        ),
                    );
                }
                id.into_inner()
            }
            None => default_step_id(&plugin_name, index),
        };
        let config = match raw.config {
            Some(c) => serde_json::to_value(c).unwrap_or(Value::Null),
            None => Value::Object(Default::default()),
        };
        let timeout = self.duration(raw.timeout, Duration::from_secs(10));
        let mut retries = Retries {
            max: 0,
            backoff: Duration::from_millis(200),
        };
        if let Some(r) = raw.retries {
            if let Some(m) = r.max {
                if *m.get_ref() > 20 {
                    self.error(m.span(), "retries.max may be at most 20");
                }
                retries.max = *m.get_ref();
            }
            retries.backoff = self.duration(r.backoff, retries.backoff);
        }
        let grants = raw
            .allow
            .map(|a| self.grants(a.into_inner(), workflow, values))
            .unwrap_or_default();
        StepSpec {
            id,
            line,
            plugin_name,
            plugin,
            source,
            config,
            timeout,
            retries,
            grants,
        }
    }

    /// `[environments.NAME]`: each step's config (the environment's
    /// `steps.ID.config` merged over the step's, key by key) and grants
    /// (the environment's settings and secrets in place of the workflow's)
    /// resolved for each environment.
    fn environments(
        &mut self,
        raw: BTreeMap<String, Spanned<RawEnvironment>>,
        base: &ConfigValues,
        steps: &[StepSpec],
    ) -> BTreeMap<String, Environment> {
        let mut out = BTreeMap::new();
        for (name, env) in raw {
            let span = env.span();
            if !is_slug(&name) {
                self.error(
                    span.clone(),
                    format!("environment `{name}` must be lower-case letters, digits, `-` or `_`"),
                );
            }
            let env = env.into_inner();
            for (n, v) in env.settings.iter().chain(&env.secrets) {
                if !base.settings.contains_key(n) && !base.secrets.contains_key(n) {
                    self.error(
                        v.span(),
                        format!("environments.{name}: `{n}` is in neither the workflow's [settings] nor its [secrets]; declare it there first (the value outside any environment)"),
                    );
                }
            }
            let own = self.config_values(env.settings, env.secrets);
            let mut overrides = env.steps;
            let mut env_steps = Vec::with_capacity(steps.len());
            for step in steps {
                let mut config = step.config.clone();
                if let Some(table) = overrides
                    .remove(&step.id)
                    .and_then(|o| o.into_inner().config)
                {
                    match &mut config {
                        Value::Object(map) => {
                            for (k, v) in table {
                                map.insert(k, serde_json::to_value(v).unwrap_or(Value::Null));
                            }
                        }
                        other => *other = serde_json::to_value(table).unwrap_or(Value::Null),
                    }
                }
                let mut grants = step.grants.clone();
                for entry in &mut grants.config {
                    if let Some(v) = own.settings.get(&entry.name) {
                        entry.value = v.get_ref().clone();
                        entry.secret = false;
                    } else if let Some(Some(v)) = own.secrets.get(&entry.name) {
                        entry.value = v.clone();
                        entry.secret = true;
                    }
                }
                env_steps.push(EnvironmentStep { config, grants });
            }
            for (id, o) in overrides {
                self.error(
                    o.span(),
                    format!("environments.{name}.steps: no step `{id}`"),
                );
            }
            out.insert(name, Environment { steps: env_steps });
        }
        out
    }

    /// `[settings]` and `[secrets]`: names checked, secrets resolved.
    fn config_values(
        &mut self,
        settings: BTreeMap<String, Spanned<String>>,
        secrets: BTreeMap<String, Spanned<String>>,
    ) -> ConfigValues {
        let mut values = ConfigValues::default();
        for (name, value) in settings {
            if !is_config_name(&name) {
                self.error(value.span(), bad_config_name(&name));
            }
            values.settings.insert(name, value);
        }
        for (name, reference) in secrets {
            if !is_config_name(&name) {
                self.error(reference.span(), bad_config_name(&name));
            }
            if values.settings.contains_key(&name) {
                self.error(
                    reference.span(),
                    format!("`{name}` is in both [settings] and [secrets]: keep one"),
                );
            }
            let secret = resolve_secret(reference.get_ref(), self.dir, self.root)
                .and_then(|s| {
                    String::from_utf8(s.expose().to_vec())
                        .map_err(|_| format!("secret `{name}` is not UTF-8 text"))
                })
                .map_err(|e| self.error(reference.span(), e))
                .ok();
            values.secrets.insert(name, secret);
        }
        values
    }

    /// A step's `allow` table.
    fn grants(&mut self, raw: RawAllow, workflow: &str, values: &ConfigValues) -> Grants {
        let mut grants = Grants::default();
        let mut hosts = Vec::new();
        for host in raw.http {
            match HostPattern::parse(host.get_ref()) {
                Ok(p) => hosts.push(p),
                Err(e) => self.error(host.span(), format!("allow.http: {e}")),
            }
        }
        grants.http = hosts.into();
        grants.http_timeout = raw
            .http_timeout
            .map(|t| self.duration(Some(t), Duration::from_secs(10)));
        grants.http_max_response = raw.http_max_response.and_then(|m| {
            parse_size(m.get_ref())
                .map_err(|e| self.error(m.span(), format!("allow.http_max_response: {e}")))
                .ok()
        });
        if let Some(n) = raw.http_max_calls {
            if *n.get_ref() == 0 {
                self.error(
                    n.span(),
                    "allow.http_max_calls must be at least 1 (leave `http` out to allow none)",
                );
            }
            grants.http_max_calls = Some(*n.get_ref());
        }
        if let Some(kv) = raw.kv {
            grants.kv = match kv.get_ref() {
                toml::Value::Boolean(false) => None,
                toml::Value::Boolean(true) => Some(KvGrant {
                    bucket: workflow.to_string(),
                    namespace: format!("workflow/{workflow}"),
                }),
                toml::Value::String(name) if is_slug(name) => Some(KvGrant {
                    bucket: name.clone(),
                    namespace: format!("shared/{name}"),
                }),
                _ => {
                    self.error(
                        kv.span(),
                        "allow.kv must be `true` (the workflow's own bucket) or a bucket name shared by the workflows that name it (lower-case letters, digits, `-` or `_`)",
                    );
                    None
                }
            };
        }
        for name in raw.config {
            let n = name.get_ref();
            let entry = if let Some(value) = values.settings.get(n) {
                Some(ConfigEntry {
                    name: n.clone(),
                    value: value.get_ref().clone(),
                    secret: false,
                })
            } else if let Some(secret) = values.secrets.get(n) {
                // A secret that did not resolve is reported where it is
                // written.
                secret.as_ref().map(|value| ConfigEntry {
                    name: n.clone(),
                    value: value.clone(),
                    secret: true,
                })
            } else {
                self.error(
                    name.span(),
                    format!("allow.config: `{n}` is in neither [settings] nor [secrets]"),
                );
                None
            };
            grants.config.extend(entry);
        }
        grants
    }

    /// Resolves a plugin path and checks that it stays inside the watched
    /// directory (symlinks included), exists, and is not too large.
    fn plugin_file(&self, written: &str, has_source: bool) -> Result<PathBuf, String> {
        let rel = Path::new(written);
        if rel.is_absolute() {
            return Err(format!(
                "plugin `{written}` must be a path relative to the manifest"
            ));
        }
        confined_file(self.dir, self.root, rel, MAX_PLUGIN_BYTES).map_err(|unfit| match unfit {
            Unfit::Missing if has_source => format!(
                "plugin `{written}` is not built yet: run `hookflow build {}`",
                self.root.display()
            ),
            Unfit::Missing => format!("plugin `{written}` not found"),
            Unfit::Outside => format!(
                "plugin `{written}` resolves outside the workflow directory; copy it in instead"
            ),
            other => format!("plugin `{written}` {other}"),
        })
    }

    fn quota(&mut self, raw: RawQuota) -> Quota {
        let mut count = |field: Option<toml::Spanned<u64>>, name: &str| {
            let field = field?;
            if *field.get_ref() == 0 {
                self.error(
                    field.span(),
                    format!("quota.{name} must be at least 1 (leave it out for no quota)"),
                );
            }
            Some(*field.get_ref())
        };
        Quota {
            per_day: count(raw.per_day, "per_day"),
            per_month: count(raw.per_month, "per_month"),
            per_user_per_day: count(raw.per_user_per_day, "per_user_per_day"),
            per_user_per_month: count(raw.per_user_per_month, "per_user_per_month"),
        }
    }

    fn limits(&mut self, raw: RawLimits, max_body: u64) -> WorkflowLimits {
        let concurrency = match raw.concurrency {
            Some(c) if *c.get_ref() == 0 => {
                self.error(c.span(), "limits.concurrency must be at least 1");
                1
            }
            Some(c) => *c.get_ref() as usize,
            None => 16,
        };
        let rate = raw.rate.and_then(|r| {
            parse_rate(r.get_ref())
                .map_err(|e| self.error(r.span(), e))
                .ok()
        });
        let execution_timeout = self.duration(raw.execution_timeout, Duration::from_secs(300));
        let memory = match raw.memory {
            Some(m) => match parse_size(m.get_ref()) {
                Ok(n) if !(1 << 20..=MAX_STEP_MEMORY).contains(&n) => {
                    self.error(
                        m.span(),
                        format!(
                            "limits.memory must be between 1MiB and {}MiB",
                            MAX_STEP_MEMORY >> 20
                        ),
                    );
                    n
                }
                Ok(n) => n,
                Err(e) => {
                    self.error(m.span(), e);
                    0
                }
            },
            None => 64 << 20,
        };
        let max_receiving = match raw.max_receiving {
            Some(m) => match parse_size(m.get_ref()) {
                Ok(n) if n < max_body => {
                    self.error(
                        m.span(),
                        format!("limits.max_receiving must be at least max_body ({max_body} bytes), or no body could be received"),
                    );
                    n
                }
                Ok(n) => n,
                Err(e) => {
                    self.error(m.span(), e);
                    0
                }
            },
            None => DEFAULT_MAX_RECEIVING.max(max_body),
        };
        let fuel = raw.fuel.map(|f| {
            if *f.get_ref() == 0 {
                self.error(f.span(), "limits.fuel must be more than zero");
            }
            *f.get_ref()
        });
        WorkflowLimits {
            concurrency,
            rate,
            execution_timeout,
            memory,
            max_receiving,
            fuel,
            quota: Quota::default(),
        }
    }

    fn duration(&mut self, raw: Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(s) = raw else { return default };
        match parse_duration(s.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.error(s.span(), "a duration must be more than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error(s.span(), e);
                default
            }
        }
    }
}

/// Names in `[settings]` and `[secrets]`: what `wasi:config/store.get`
/// is asked for.
fn is_config_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn bad_config_name(name: &str) -> String {
    format!("config name `{name}` must be letters, digits, `_`, `-` or `.` (at most 128)")
}
