//! Workflow manifests: one `DIR/*.toml` file per workflow (SPEC §4).
//!
//! A file is read into the `Raw*` types (strict serde, with spans), then
//! validated into a [`WorkflowSpec`] whose every path, duration, size and
//! secret is resolved. Every problem becomes a [`Diagnostic`] with a line.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;
use toml::Spanned;

use super::units::{parse_duration, parse_size};
use super::{Diagnostic, MAX_PLUGIN_BYTES};

/// The largest body a trigger may accept.
const MAX_BODY_CEILING: u64 = 100 << 20;
/// The largest memory a step may be granted.
pub const MAX_STEP_MEMORY: u64 = 1 << 30;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    #[serde(default = "default_true")]
    enabled: bool,
    trigger: Spanned<RawTrigger>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    limits: Option<RawLimits>,
    input: Option<Spanned<toml::Table>>,
    input_schema: Option<Spanned<String>>,
}

/// The type of a typed input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "a string",
            FieldType::Number => "a number",
            FieldType::Integer => "an integer",
            FieldType::Boolean => "a boolean",
            FieldType::Object => "an object",
            FieldType::Array => "an array",
        }
    }

    pub fn accepts(self, v: &serde_json::Value) -> bool {
        match self {
            FieldType::String => v.is_string(),
            FieldType::Number => v.is_number(),
            FieldType::Integer => v.is_i64() || v.is_u64(),
            FieldType::Boolean => v.is_boolean(),
            FieldType::Object => v.is_object(),
            FieldType::Array => v.is_array(),
        }
    }
}

/// A typed input field (`[input]`): the payload must carry it, with this
/// type, unless it is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputField {
    pub name: String,
    pub kind: FieldType,
    pub required: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    path: Option<Spanned<String>>,
    methods: Option<Spanned<Vec<Method>>>,
    #[serde(default)]
    mode: Mode,
    sync_timeout: Option<Spanned<String>>,
    max_body: Option<Spanned<String>>,
    auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    on_duplicate: OnDuplicate,
    idempotency_window: Option<Spanned<String>>,
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

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum RawAuth {
    // Spans are lost inside internally tagged enums: problems point at the
    // `auth` table.
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

/// How a generic signature header encodes its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Option<Spanned<String>>,
    plugin: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    config: Option<toml::Value>,
    timeout: Option<Spanned<String>>,
    retries: Option<RawRetries>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetries {
    max: Option<Spanned<u32>>,
    backoff: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    concurrency: Option<Spanned<u32>>,
    rate: Option<Spanned<String>>,
    execution_timeout: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
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

/// A secret value (a token). Never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// Constant-time comparison (the length is not secret).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.len() == candidate.len() && bool::from(self.0.ct_eq(candidate))
    }

    /// The secret's bytes, for a MAC key or a digest.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// A Standard Webhooks secret: `whsec_` (optional) then base64.
pub fn decode_standard_secret(text: &str) -> Result<Secret, String> {
    use base64::Engine as _;
    let b64 = text.strip_prefix("whsec_").unwrap_or(text);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Secret::new)
        .map_err(|_| "a standard-webhooks secret is `whsec_` followed by base64".to_string())
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How a trigger checks its sender.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Anyone may call; only when the manifest says so.
    None,
    /// `Authorization: Bearer <token>`, any of `secrets`.
    Bearer { secrets: Vec<Secret> },
    /// A header carrying the token, e.g. `X-Webhook-Token`.
    Header {
        /// Lower case.
        header: String,
        secrets: Vec<Secret>,
    },
    /// The token is the URL: `/hooks/t/{token}`.
    PathToken { secrets: Vec<Secret> },
    /// Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`). Secrets are the decoded key bytes.
    StandardWebhooks {
        secrets: Vec<Secret>,
        tolerance: Duration,
    },
    /// GitHub's `X-Hub-Signature-256`.
    Github { secrets: Vec<Secret> },
    /// Stripe's `Stripe-Signature`.
    Stripe {
        secrets: Vec<Secret>,
        tolerance: Duration,
    },
    /// HMAC-SHA256 of the body in any header.
    HmacSha256 {
        /// Lower case.
        header: String,
        prefix: String,
        encoding: Encoding,
        secrets: Vec<Secret>,
    },
}

impl Auth {
    /// Signature kinds need the raw body; the others are checked first.
    pub fn needs_body(&self) -> bool {
        matches!(
            self,
            Auth::StandardWebhooks { .. }
                | Auth::Github { .. }
                | Auth::Stripe { .. }
                | Auth::HmacSha256 { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct TriggerSpec {
    /// Served at `/hooks/{path}`; no leading or trailing slash.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Attempts after the first.
    pub max: u32,
    /// Delay before the first retry; doubled for each next one, with jitter.
    pub backoff: Duration,
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
}

#[derive(Debug, Clone, Copy)]
pub struct WorkflowLimits {
    pub concurrency: usize,
    /// Accepted requests per window, at most (`rate = "100/min"`).
    pub rate: Option<Rate>,
    pub execution_timeout: Duration,
    pub memory: u64,
}

/// A validated workflow manifest.
#[derive(Debug, Clone)]
pub struct WorkflowSpec {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub file: PathBuf,
    /// Lines of `name` and `trigger.path`, for cross-file diagnostics.
    pub name_line: usize,
    pub path_line: usize,
    pub trigger: TriggerSpec,
    pub steps: Vec<StepSpec>,
    pub limits: WorkflowLimits,
    /// Typed input fields; empty when the payload is not checked.
    pub input: Vec<InputField>,
    /// A JSON Schema the payload must satisfy (`input_schema`).
    pub input_schema: Option<Arc<jsonschema::Validator>>,
}

/// Reads every `*.toml` in `dir`. Returns the valid workflows and every
/// problem found; a file with problems yields no workflow.
pub fn load_dir(dir: &Path) -> (Vec<WorkflowSpec>, Vec<Diagnostic>) {
    let mut problems = Vec::new();
    let root = match dir.canonicalize() {
        Ok(root) if root.is_dir() => root,
        _ => {
            let msg = "not a directory: create it, or point --dir / HOOKFLOW_DIR at the workflows";
            return (Vec::new(), vec![Diagnostic::file(dir, msg)]);
        }
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => return (Vec::new(), vec![Diagnostic::file(dir, e.to_string())]),
    };
    files.sort();

    let mut specs: Vec<WorkflowSpec> = Vec::new();
    for file in files {
        match load_file(&file, &root) {
            Ok(spec) => specs.push(spec),
            Err(mut found) => problems.append(&mut found),
        }
    }

    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut paths: HashMap<String, PathBuf> = HashMap::new();
    specs.retain(|spec| {
        if let Some(first) = names.get(&spec.name) {
            problems.push(Diagnostic {
                file: spec.file.clone(),
                line: Some(spec.name_line),
                message: format!(
                    "workflow name `{}` is already used by {}",
                    spec.name,
                    first.display()
                ),
            });
            return false;
        }
        if let Some(first) = paths
            .get(&spec.trigger.path)
            .filter(|_| !spec.trigger.path.is_empty())
        {
            problems.push(Diagnostic {
                file: spec.file.clone(),
                line: Some(spec.path_line),
                message: format!(
                    "trigger path `{}` is already served by {}",
                    spec.trigger.path,
                    first.display()
                ),
            });
            return false;
        }
        names.insert(spec.name.clone(), spec.file.clone());
        paths.insert(spec.trigger.path.clone(), spec.file.clone());
        true
    });
    (specs, problems)
}

/// Reads and validates one manifest. `root` is the canonical watched
/// directory: no plugin may live outside it.
pub fn load_file(file: &Path, root: &Path) -> Result<WorkflowSpec, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| vec![Diagnostic::file(file, format!("cannot read: {e}"))])?;
    let raw: RawManifest = toml::from_str(&source).map_err(|e| {
        let message = e.message().trim_end().to_string();
        vec![match e.span() {
            Some(span) => Diagnostic::at(file, &source, span, message),
            None => Diagnostic::file(file, message),
        }]
    })?;
    let mut v = Validator {
        file,
        source: &source,
        root,
        dir: file.parent().unwrap_or(root),
        problems: Vec::new(),
    };
    let spec = v.manifest(raw);
    if v.problems.is_empty() {
        Ok(spec)
    } else {
        Err(v.problems)
    }
}

struct Validator<'a> {
    file: &'a Path,
    source: &'a str,
    root: &'a Path,
    /// The manifest's directory: relative paths start here.
    dir: &'a Path,
    problems: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems
            .push(Diagnostic::at(self.file, self.source, span, message));
    }

    fn line(&self, span: Range<usize>) -> usize {
        super::diagnostic::line_of(self.source, span.start)
    }

    fn manifest(&mut self, raw: RawManifest) -> WorkflowSpec {
        let stem = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (name, name_line) = match raw.name {
            Some(n) => {
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
            None => {
                if !is_slug(&stem) {
                    self.problems.push(Diagnostic::file(
                        self.file,
                        format!("the file name `{stem}` is not a valid workflow name: set `name`"),
                    ));
                }
                (stem, 1)
            }
        };
        let trigger_span = raw.trigger.span();
        let path_line = self.line(
            raw.trigger
                .get_ref()
                .path
                .as_ref()
                .map_or(trigger_span.clone(), Spanned::span),
        );
        let trigger = self.trigger(raw.trigger.into_inner(), trigger_span);
        let limits = self.limits(raw.limits);
        if raw.steps.is_empty() {
            self.problems.push(Diagnostic::file(
                self.file,
                "a workflow needs at least one [[steps]] entry",
            ));
        }
        let mut steps: Vec<StepSpec> = Vec::new();
        for (i, step) in raw.steps.into_iter().enumerate() {
            let span = step.span();
            let step = self.step(i, step.into_inner(), span.clone());
            if steps.iter().any(|s| s.id == step.id) {
                self.error(
                    span,
                    format!("two steps have the id `{}`: give each an `id`", step.id),
                );
            }
            steps.push(step);
        }
        if let (Some(_), Some(schema)) = (&raw.input, &raw.input_schema) {
            self.error(
                schema.span(),
                "use either [input] or input_schema, not both",
            );
        }
        let input = raw.input.map(|t| self.input(t)).unwrap_or_default();
        let input_schema = raw.input_schema.and_then(|p| {
            let span = p.span();
            self.schema(p.get_ref())
                .map_err(|e| self.error(span, e))
                .ok()
        });
        WorkflowSpec {
            input,
            input_schema,
            name,
            description: raw.description,
            enabled: raw.enabled,
            file: self.file.to_path_buf(),
            name_line,
            path_line,
            trigger,
            steps,
            limits,
        }
    }

    /// `input_schema = "schemas/x.json"`: a JSON Schema file inside the
    /// workflow directory. Remote and file references are not resolved.
    fn schema(&self, written: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let path = self.dir.join(written);
        let real = path
            .canonicalize()
            .map_err(|_| format!("input_schema `{written}` not found"))?;
        if !real.starts_with(self.root) {
            return Err(format!(
                "input_schema `{written}` resolves outside the workflow directory"
            ));
        }
        let text =
            std::fs::read_to_string(&real).map_err(|e| format!("input_schema `{written}`: {e}"))?;
        let schema: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("input_schema `{written}` is not JSON: {e}"))?;
        jsonschema::validator_for(&schema)
            .map(Arc::new)
            .map_err(|e| format!("input_schema `{written}` is not a valid JSON Schema: {e}"))
    }

    /// `[input]`: `name = "string"`, or `name = { type = "string", required = false }`.
    fn input(&mut self, table: Spanned<toml::Table>) -> Vec<InputField> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(rename = "type")]
            kind: FieldType,
            #[serde(default = "default_true")]
            required: bool,
        }
        let span = table.span();
        let mut fields = Vec::new();
        for (name, value) in table.into_inner() {
            let parsed = match value {
                toml::Value::String(t) => FieldType::deserialize(toml::Value::String(t))
                    .map(|kind| Full {
                        kind,
                        required: true,
                    })
                    .map_err(|e| e.to_string()),
                other => Full::deserialize(other).map_err(|e| e.to_string()),
            };
            match parsed {
                Ok(f) => fields.push(InputField {
                    name,
                    kind: f.kind,
                    required: f.required,
                }),
                Err(e) => self.error(
                    span.clone(),
                    format!(
                        "input `{name}`: {}; write \"string\", \"number\", \"integer\", \"boolean\", \"object\" or \"array\", or {{ type = \"...\", required = false }}",
                        e.trim()
                    ),
                ),
            }
        }
        fields
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

    fn auth(&mut self, raw: RawAuth, span: Range<usize>) -> Auth {
        let tolerance = |v: &mut Self, t: Option<String>| match t {
            None => Duration::from_secs(300),
            Some(t) => match parse_duration(&t) {
                Ok(d) => d,
                Err(e) => {
                    v.error(span.clone(), e);
                    Duration::from_secs(300)
                }
            },
        };
        match raw {
            RawAuth::None {} => Auth::None,
            RawAuth::PathToken { secrets } => {
                let secrets = self.secrets(secrets, span.clone());
                if secrets.iter().any(|s| !is_url_token(s.expose())) {
                    self.error(span, "a path token may hold only letters, digits, `-` and `_`, at least 16 of them");
                }
                Auth::PathToken { secrets }
            }
            RawAuth::StandardWebhooks {
                secrets,
                tolerance: t,
            } => {
                let raw = self.secrets(secrets, span.clone());
                let mut secrets = Vec::new();
                for s in raw {
                    match std::str::from_utf8(s.expose())
                        .map_err(|e| e.to_string())
                        .and_then(decode_standard_secret)
                    {
                        Ok(k) => secrets.push(k),
                        Err(e) => self.error(span.clone(), e),
                    }
                }
                Auth::StandardWebhooks {
                    secrets,
                    tolerance: tolerance(self, t),
                }
            }
            RawAuth::Github { secrets } => Auth::Github {
                secrets: self.secrets(secrets, span),
            },
            RawAuth::Stripe {
                secrets,
                tolerance: t,
            } => Auth::Stripe {
                secrets: self.secrets(secrets, span.clone()),
                tolerance: tolerance(self, t),
            },
            RawAuth::HmacSha256 {
                header,
                encoding,
                prefix,
                secrets,
            } => Auth::HmacSha256 {
                header: self.header_name(&header, span.clone()),
                prefix,
                encoding,
                secrets: self.secrets(secrets, span),
            },
            RawAuth::Bearer { secrets } => Auth::Bearer {
                secrets: self.secrets(secrets, span),
            },
            RawAuth::Header { header, secrets } => Auth::Header {
                header: self.header_name(&header, span.clone()),
                secrets: self.secrets(secrets, span),
            },
        }
    }

    /// A header that can carry a credential, lower-cased.
    fn header_name(&mut self, header: &str, span: Range<usize>) -> String {
        let name = header.to_ascii_lowercase();
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            self.error(span, format!("`{header}` is not a valid header name"));
        } else if matches!(
            name.as_str(),
            "content-length" | "content-type" | "host" | "transfer-encoding" | "connection"
        ) {
            self.error(span, format!("`{name}` cannot carry a token"));
        }
        name
    }

    fn secrets(&mut self, refs: Vec<String>, span: Range<usize>) -> Vec<Secret> {
        if refs.is_empty() {
            self.error(
                span.clone(),
                "`secrets` is empty: list at least one, e.g. [\"env:HOOK_TOKEN\"]",
            );
        }
        let mut out = Vec::new();
        for r in refs {
            match resolve_secret(&r, self.dir) {
                Ok(s) => out.push(s),
                Err(e) => self.error(span.clone(), e),
            }
        }
        out
    }

    fn step(&mut self, index: usize, raw: RawStep, span: Range<usize>) -> StepSpec {
        let source = raw.source.as_ref().and_then(|s| {
            let dir = self.dir.join(s.get_ref());
            if dir.join("Cargo.toml").is_file() {
                Some(dir)
            } else {
                self.error(
                    s.span(),
                    format!(
                        "source `{}` is not a crate (no Cargo.toml there)",
                        s.get_ref()
                    ),
                );
                None
            }
        });
        let plugin_name = match (&raw.plugin, &source) {
            (Some(p), _) => p.get_ref().clone(),
            (None, Some(src)) => match package_name(src) {
                Ok(name) => format!("plugins/{}.wasm", name.replace('-', "_")),
                Err(e) => {
                    self.error(span.clone(), e);
                    String::new()
                }
            },
            (None, None) => {
                if raw.source.is_none() {
                    self.error(span.clone(), "a step needs `plugin = \"plugins/NAME.wasm\"` or `source = \"path/to/crate\"`");
                }
                String::new()
            }
        };
        let plugin_span = raw.plugin.as_ref().map_or(span.clone(), Spanned::span);
        let plugin_line_span = plugin_span.clone();
        let plugin = if plugin_name.is_empty() {
            PathBuf::new()
        } else {
            match self.plugin_file(&plugin_name, source.is_some()) {
                Ok(p) => p,
                Err(e) => {
                    self.error(plugin_span, e);
                    PathBuf::new()
                }
            }
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
            None => Path::new(&plugin_name)
                .file_stem()
                .map(|s| s.to_string_lossy().replace('_', "-"))
                .filter(|s| is_slug(s))
                .unwrap_or_else(|| format!("step-{}", index + 1)),
        };
        let config = match raw.config {
            Some(c) => serde_json::to_value(c).unwrap_or(Value::Null),
            None => Value::Object(Default::default()),
        };
        let timeout = self.duration(raw.timeout, Duration::from_secs(10));
        let retries = match raw.retries {
            Some(r) => {
                let max = r.max.as_ref().map_or(0, |m| *m.get_ref());
                if let Some(m) = r.max.as_ref().filter(|_| max > 20) {
                    self.error(m.span(), "retries.max may be at most 20");
                }
                Retries {
                    max,
                    backoff: self.duration(r.backoff, Duration::from_millis(200)),
                }
            }
            None => Retries {
                max: 0,
                backoff: Duration::from_millis(200),
            },
        };
        StepSpec {
            id,
            line: self.line(plugin_line_span),
            plugin_name,
            plugin,
            source,
            config,
            timeout,
            retries,
        }
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
        let path = self.dir.join(rel);
        let real = match path.canonicalize() {
            Ok(real) => real,
            Err(_) if has_source => {
                return Err(format!(
                    "plugin `{written}` is not built yet: run `hookflow build {}`",
                    self.root.display()
                ));
            }
            Err(_) => return Err(format!("plugin `{written}` not found")),
        };
        if !real.starts_with(self.root) {
            return Err(format!(
                "plugin `{written}` resolves outside the workflow directory; copy it in instead"
            ));
        }
        let meta = std::fs::metadata(&real).map_err(|e| format!("plugin `{written}`: {e}"))?;
        if !meta.is_file() {
            return Err(format!("plugin `{written}` is not a file"));
        }
        if meta.len() > MAX_PLUGIN_BYTES {
            return Err(format!(
                "plugin `{written}` is {} bytes; the limit is {MAX_PLUGIN_BYTES}",
                meta.len()
            ));
        }
        Ok(real)
    }

    fn limits(&mut self, raw: Option<RawLimits>) -> WorkflowLimits {
        let raw = raw.unwrap_or(RawLimits {
            concurrency: None,
            rate: None,
            execution_timeout: None,
            memory: None,
        });
        let concurrency = match raw.concurrency {
            Some(c) if *c.get_ref() == 0 => {
                self.error(c.span(), "limits.concurrency must be at least 1");
                1
            }
            Some(c) => *c.get_ref() as usize,
            None => 16,
        };
        let rate = raw.rate.and_then(|r| match parse_rate(r.get_ref()) {
            Ok(rate) => Some(rate),
            Err(e) => {
                self.error(r.span(), e);
                None
            }
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
        WorkflowLimits {
            concurrency,
            rate,
            execution_timeout,
            memory,
        }
    }

    fn duration(&mut self, raw: Option<Spanned<String>>, default: Duration) -> Duration {
        match raw {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) if d.is_zero() => {
                    self.error(s.span(), "a duration must be more than zero");
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    self.error(s.span(), e);
                    default
                }
            },
        }
    }
}

/// A request rate: `count` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// `"100/min"`, `"5/s"`, `"1000/hour"`, `"10/30s"`.
fn parse_rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("`{text}` is not a rate: write e.g. \"100/min\", \"5/s\", \"1000/hour\"");
    let (count, per) = text.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86400),
        other => parse_duration(other).map_err(|_| bad())?,
    };
    if count == 0 || per.is_zero() {
        return Err(bad());
    }
    Ok(Rate { count, per })
}

fn is_url_token(s: &[u8]) -> bool {
    s.len() >= 16
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(b))
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A trigger path: `/`-separated segments of unreserved URL characters.
fn check_route(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        return Err(format!(
            "trigger path `{path}` must be non-empty with no leading or trailing `/` (it is served under /hooks/)"
        ));
    }
    for seg in path.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return Err(format!(
                "trigger path `{path}`: segment `{seg}` may hold only letters, digits, `-`, `.`, `_`, `~`"
            ));
        }
    }
    if path == "t" || path.starts_with("t/") {
        return Err("trigger paths under `t/` are reserved for path-token triggers".into());
    }
    Ok(())
}

/// `env:NAME` or `file:PATH` (relative to the manifest).
fn resolve_secret(reference: &str, dir: &Path) -> Result<Secret, String> {
    let value = if let Some(var) = reference.strip_prefix("env:") {
        std::env::var(var)
            .map_err(|_| format!("secret `{reference}`: environment variable `{var}` is not set"))?
    } else if let Some(path) = reference.strip_prefix("file:") {
        let text = std::fs::read_to_string(dir.join(path))
            .map_err(|e| format!("secret `{reference}`: cannot read: {e}"))?;
        text.trim_end_matches(['\r', '\n']).to_string()
    } else {
        return Err(format!(
            "secret `{reference}` must be `env:NAME` or `file:PATH`: secrets are not written in manifests"
        ));
    };
    if value.is_empty() {
        return Err(format!("secret `{reference}` is empty"));
    }
    Ok(Secret::new(value.into_bytes()))
}

/// The `[package] name` of the crate at `dir`.
pub fn package_name(dir: &Path) -> Result<String, String> {
    #[derive(Deserialize)]
    struct CargoToml {
        package: Package,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str::<CargoToml>(&text)
        .map(|c| c.package.name)
        .map_err(|e| format!("{}: no [package] name: {}", path.display(), e.message()))
}

/// A plugin crate that `hookflow build` compiles, and where its wasm goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildTarget {
    /// The crate's directory.
    pub source: PathBuf,
    /// The `.wasm` file the step loads.
    pub output: PathBuf,
}

/// Every `source` named by the manifests in `dir`, once each. Reads only the
/// `[[steps]]` of each manifest, so it works before the plugins exist.
pub fn build_targets(dir: &Path) -> Result<Vec<BuildTarget>, Vec<Diagnostic>> {
    #[derive(Deserialize)]
    struct Steps {
        #[serde(default)]
        steps: Vec<StepPaths>,
    }
    #[derive(Deserialize)]
    struct StepPaths {
        plugin: Option<String>,
        source: Option<Spanned<String>>,
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| vec![Diagnostic::file(dir, e.to_string())])?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut targets: Vec<BuildTarget> = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Diagnostic::file(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        let steps = match toml::from_str::<Steps>(&text) {
            Ok(s) => s.steps,
            Err(e) => {
                let d = match e.span() {
                    Some(span) => Diagnostic::at(&file, &text, span, e.message()),
                    None => Diagnostic::file(&file, e.message()),
                };
                problems.push(d);
                continue;
            }
        };
        let base = file.parent().unwrap_or(dir);
        for step in steps {
            let Some(source) = step.source else { continue };
            let crate_dir = base.join(source.get_ref());
            let output = match (&step.plugin, package_name(&crate_dir)) {
                (Some(p), _) => base.join(p),
                (None, Ok(name)) => base.join(format!("plugins/{}.wasm", name.replace('-', "_"))),
                (None, Err(e)) => {
                    problems.push(Diagnostic::at(&file, &text, source.span(), e));
                    continue;
                }
            };
            let target = BuildTarget {
                source: crate_dir,
                output,
            };
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    fn load(text: &str) -> Result<WorkflowSpec, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "plugins/echo.wasm", "not really wasm");
        let file = write(dir.path(), "w.toml", text);
        let root = dir.path().canonicalize().unwrap();
        load_file(&file, &root)
    }

    const GOOD: &str = r#"
[trigger]
path = "a/b"
auth = { kind = "none" }

[[steps]]
plugin = "plugins/echo.wasm"
config = { x = 1 }
"#;

    #[test]
    fn a_minimal_manifest_gets_defaults() {
        let spec = load(GOOD).unwrap();
        assert_eq!(spec.name, "w");
        assert_eq!(spec.trigger.methods, vec![Method::Post]);
        assert_eq!(spec.trigger.mode, Mode::Async);
        assert_eq!(spec.trigger.max_body, 1 << 20);
        assert_eq!(spec.steps[0].id, "echo");
        assert_eq!(spec.steps[0].config["x"], 1);
        assert_eq!(spec.limits.memory, 64 << 20);
    }

    #[test]
    fn unknown_fields_are_reported_with_their_line() {
        let errs = load(&GOOD.replace("path = \"a/b\"", "path = \"a/b\"\npaht = 1")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(4), "{}", errs[0]);
        assert!(errs[0].message.contains("paht"), "{}", errs[0]);
    }

    #[test]
    fn every_validation_problem_is_reported() {
        let text = r#"
name = "Bad Name"
[trigger]
path = "/x"
sync_timeout = "soon"
auth = { kind = "bearer", secrets = ["env:HOOKFLOW_TEST_SURELY_UNSET"] }

[[steps]]
plugin = "../outside.wasm"
"#;
        let errs = load(text).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|d| d.line).collect();
        assert_eq!(
            lines,
            vec![Some(2), Some(4), Some(5), Some(6), Some(9)],
            "{errs:?}"
        );
        assert!(errs[3].message.contains("HOOKFLOW_TEST_SURELY_UNSET"));
    }

    #[test]
    fn missing_auth_is_an_error_not_open_access() {
        let errs = load(&GOOD.replace("auth = { kind = \"none\" }", "")).unwrap_err();
        assert!(errs[0].message.contains("kind = \"none\""), "{errs:?}");
    }

    #[test]
    fn unknown_auth_kind_and_fields_are_refused() {
        let errs = load(&GOOD.replace("kind = \"none\"", "kind = \"magic\"")).unwrap_err();
        assert!(errs[0].message.contains("magic"), "{errs:?}");
        let errs =
            load(&GOOD.replace("kind = \"none\"", "kind = \"none\", secrets = []")).unwrap_err();
        assert!(errs[0].message.contains("secrets"), "{errs:?}");
    }

    #[test]
    fn secrets_come_from_files_and_compare_exactly() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "tok", "s3cret\n");
        let s = resolve_secret("file:tok", dir.path()).unwrap();
        assert!(s.matches(b"s3cret"));
        assert!(!s.matches(b"s3cre"));
        assert!(!s.matches(b"s3cret2"));
        assert!(resolve_secret("s3cret", dir.path()).is_err());
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("100/min"),
            Ok(Rate {
                count: 100,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse_rate("10/30s"),
            Ok(Rate {
                count: 10,
                per: Duration::from_secs(30)
            })
        );
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn routes_are_checked() {
        assert!(check_route("leads/new").is_ok());
        assert!(check_route("a//b").is_err());
        assert!(check_route("a/../b").is_err());
        assert!(check_route("t/abc").is_err());
        assert!(check_route("a b").is_err());
    }

    #[test]
    fn duplicate_paths_across_files_name_both() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "plugins/echo.wasm", "x");
        write(dir.path(), "a.toml", GOOD);
        write(dir.path(), "b.toml", GOOD);
        let (specs, errs) = load_dir(dir.path());
        assert_eq!(specs.len(), 1);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .contains("b.toml:3: trigger path `a/b` is already served by"),
            "{}",
            errs[0]
        );
    }
}
