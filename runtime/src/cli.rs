//! The command line (SPEC §3).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Webhooks in, sandboxed WebAssembly workflows out.
#[derive(Debug, Parser)]
#[command(name = "hookflow", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the workflows in a directory.
    Serve(Box<ServeArgs>),
    /// Build every plugin source (a Rust crate, or a Python module
    /// `app.py`) the manifests in DIR name as `source`.
    Build {
        /// The workflow directory.
        dir: PathBuf,
        /// A directory outside DIR whose crates may be built as sources
        /// (building runs a crate's build script); repeatable.
        #[arg(long = "source-root")]
        source_roots: Vec<PathBuf>,
        /// Where the toolchains of other languages are installed on first
        /// use (`toolchains/` inside it): the server's compiled-code cache.
        #[arg(long, env = "HOOKFLOW_CACHE_DIR", default_value = "hookflow.cache")]
        cache_dir: PathBuf,
    },
    /// Load and validate everything in DIR without serving; exit 1 on any
    /// problem.
    Check {
        /// The workflow directory.
        dir: PathBuf,
    },
    /// Start something new: `hookflow new plugin NAME`.
    New {
        #[command(subcommand)]
        what: New,
    },
    /// Run one step locally: print its output, logs and audit trail.
    RunStep(Box<RunStepArgs>),
    /// Send a webhook to a running server, signed as the workflow's
    /// trigger expects (its secrets read from DIR), and print the answer;
    /// exit 1 unless it is 2xx.
    Send(SendArgs),
    /// Executions of a running server, through its API (the admin token
    /// from `HOOKFLOW_ADMIN_TOKEN`): a table for people, `--json` for
    /// scripts.
    Runs {
        #[command(subcommand)]
        what: Runs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Triggers made at runtime, through the API (the admin token from
    /// `HOOKFLOW_ADMIN_TOKEN`).
    Triggers {
        #[command(subcommand)]
        what: Triggers,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Where the server of `runs` and `triggers` is, and how to ask it.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The server's address.
    #[arg(
        long,
        global = true,
        env = "HOOKFLOW_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The admin token.
    #[arg(
        long,
        global = true,
        env = "HOOKFLOW_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Token>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Triggers {
    /// Every trigger made through the API (of one workflow).
    List {
        #[arg(long)]
        workflow: Option<String>,
    },
    /// A webhook trigger (its URL and secret are printed, the secret this
    /// once), or with `--cron`, a cron trigger.
    Create {
        workflow: String,
        /// A cron schedule: five fields, or six with seconds first.
        #[arg(long)]
        cron: Option<String>,
        /// The schedule's IANA time zone (default UTC).
        #[arg(long, requires = "cron")]
        timezone: Option<String>,
        /// `skip` or `run-once`: the slots missed while the server was down.
        #[arg(long, requires = "cron")]
        missed: Option<String>,
        /// Make it disabled.
        #[arg(long)]
        disabled: bool,
    },
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
    Delete {
        id: String,
    },
    /// A new secret (printed this once); the old one verifies for
    /// `--grace` more (default 24h).
    Rotate {
        id: String,
        #[arg(long)]
        grace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Runs {
    /// The newest executions, with filters.
    List {
        #[arg(long)]
        workflow: Option<String>,
        /// `queued`, `running`, `succeeded`, `failed`, `timed_out` or
        /// `cancelled`.
        #[arg(long)]
        status: Option<String>,
        /// `webhook`, `api`, `replay`, `test` or `cron`.
        #[arg(long)]
        trigger: Option<String>,
        #[arg(long)]
        user: Option<String>,
        /// Recorded at or after: ms since the epoch or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One execution: its state, steps and error.
    Show { id: String },
    /// Follow one execution's events until it ends.
    Tail { id: String },
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The workflow's name.
    pub workflow: String,
    /// The body: a file, or `-` for standard input (default `{}`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The workflow directory its manifest and secrets are read from.
    #[arg(long, env = "HOOKFLOW_DIR", default_value = "./workflows")]
    pub dir: PathBuf,
    /// The server's address.
    #[arg(long, env = "HOOKFLOW_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The body's content type.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Which of the workflow's webhook triggers to send to, by its path
    /// (`[[triggers]]`); default its `[trigger]`.
    #[arg(long)]
    pub path: Option<String>,
    /// The delivery id (`webhook-id`, `X-GitHub-Delivery`); default a new
    /// one. The same id twice is the same delivery (idempotency).
    #[arg(long)]
    pub id: Option<String>,
    /// Another header, `NAME: VALUE` (`Prefer: respond-async`, say);
    /// repeatable.
    #[arg(long = "header", short = 'H', value_parser = header_line)]
    pub headers: Vec<(String, String)>,
}

fn header_line(text: &str) -> Result<(String, String), String> {
    text.split_once(':')
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("`{text}` is not `NAME: VALUE`"))
}

#[derive(Debug, Subcommand)]
pub enum New {
    /// Write a step DIR/NAME in Rust, Python or JavaScript (which builds
    /// and passes its own test as written) and a workflow
    /// DIR/workflows/NAME.toml that uses it; for Rust, also the guest
    /// helper crate DIR/hookflow-plugin (unless there).
    Plugin {
        /// The step's name: lower-case letters, digits and `-`.
        name: String,
        /// Where to write it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The language to write it in.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
    },
}

/// A language `hookflow new plugin` writes a step in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    #[value(alias = "javascript")]
    Js,
}

#[derive(Debug, clap::Args)]
pub struct RunStepArgs {
    /// The plugin: a `.wasm` component.
    pub plugin: PathBuf,
    /// The event's body: a JSON file (also the step's `previous`).
    #[arg(long)]
    pub event: PathBuf,
    /// The step's `config`: a JSON file (default `{}`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A host the step may call (granted, and the ceiling); repeatable.
    /// Loopback and private addresses only when named (`127.0.0.1`).
    #[arg(long = "allow-http", value_delimiter = ',', value_parser = crate::config::HostPattern::parse)]
    pub allow_http: Vec<crate::config::HostPattern>,
    /// A `wasi:config` setting, `NAME=VALUE`; repeatable.
    #[arg(long = "setting", value_parser = name_value)]
    pub settings: Vec<(String, String)>,
    /// A `wasi:config` secret, `NAME=VALUE` (redacted in what is printed);
    /// repeatable.
    #[arg(long = "secret", value_parser = name_value)]
    pub secrets: Vec<(String, String)>,
    /// Grant a key-value bucket, in a temporary database unless `--db`.
    #[arg(long)]
    pub kv: bool,
    /// Keep the key-value bucket in this database file (grants it).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The step's timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// The fuel the step may consume (and print what it used).
    #[arg(long)]
    pub fuel: Option<u64>,
}

fn name_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The workflow directory: one `*.toml` manifest per workflow.
    #[arg(long, env = "HOOKFLOW_DIR", default_value = "./workflows")]
    pub dir: PathBuf,
    /// The database file (created if missing).
    #[arg(long, env = "HOOKFLOW_DB", default_value = "./hookflow.redb")]
    pub db: PathBuf,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, env = "HOOKFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Bearer token for /api/v1 (the API answers 401 without one).
    #[arg(long, env = "HOOKFLOW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Token>,
    /// Bearer tokens for `POST /api/v1/run` (comma-separated in the
    /// environment); the admin token works too.
    #[arg(
        long = "api-token",
        env = "HOOKFLOW_API_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_tokens: Vec<Token>,
    /// Build plugin sources first (as `hookflow build DIR`).
    #[arg(long)]
    pub build: bool,
    /// With `--build`: keep watching the plugin sources and build again
    /// when one changes; the new plugin is reloaded without a restart.
    #[arg(long, requires = "build")]
    pub watch: bool,
    /// With `--build`: a directory outside DIR whose crates may be built
    /// as sources; repeatable.
    #[arg(long = "source-root")]
    pub source_roots: Vec<PathBuf>,
    /// Webhook requests handled at once; more are shed with 503.
    #[arg(long, env = "HOOKFLOW_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Executions accepted and not finished; past it webhooks get 503.
    #[arg(long, env = "HOOKFLOW_MAX_QUEUED", default_value_t = 10_000)]
    pub max_queued: u64,
    /// The same in bytes of those executions' event bodies (a size such as
    /// `1GiB`): waiting work is bounded by memory, not only by count.
    #[arg(long, env = "HOOKFLOW_MAX_QUEUED_BYTES", default_value = "1GiB", value_parser = crate::config::parse_size)]
    pub max_queued_bytes: u64,
    /// Bytes of request bodies being received at once across the server
    /// (each workflow also has `limits.max_receiving`); past it, 503.
    #[arg(long, env = "HOOKFLOW_MAX_RECEIVING", default_value = "256MiB", value_parser = crate::config::parse_size)]
    pub max_receiving: u64,
    /// Page cache of the database file.
    #[arg(long, env = "HOOKFLOW_DB_CACHE", default_value = "64MiB", value_parser = crate::config::parse_size)]
    pub db_cache: u64,
    /// Connections open at once; past it, new ones wait to be accepted.
    #[arg(long, env = "HOOKFLOW_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Time a client has from connecting to the end of its request head.
    #[arg(long, env = "HOOKFLOW_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: std::time::Duration,
    /// Time a client has to send a request body.
    #[arg(long, env = "HOOKFLOW_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: std::time::Duration,
    /// On SIGTERM or Ctrl-C: how long requests in flight may take to
    /// finish (new ones get 503) and then running executions; the rest
    /// resume on the next start.
    #[arg(long, env = "HOOKFLOW_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// Times an unfinished execution is resumed at start; one resumed that
    /// often without finishing ends `failed` instead (no crash loop).
    #[arg(long, env = "HOOKFLOW_MAX_RESUMES", default_value_t = 3)]
    pub max_resumes: u32,
    /// Where compiled plugins are kept between starts and reloads: native
    /// code, so a private directory (created owner-only), never inside DIR.
    /// Default: beside the database, its name with the extension `cache`.
    #[arg(long, env = "HOOKFLOW_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Look for changes in DIR by scanning it at this interval instead of
    /// through filesystem events (for filesystems that deliver none, such
    /// as some network mounts). SIGHUP reloads at any time.
    #[arg(long, env = "HOOKFLOW_POLL_INTERVAL", value_parser = humantime::parse_duration)]
    pub poll_interval: Option<std::time::Duration>,
    /// How long finished executions (and their bodies) are kept; older ones
    /// are deleted in the background.
    #[arg(long, env = "HOOKFLOW_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub retention: std::time::Duration,
    /// Export the tracing spans (a span per request and per step attempt)
    /// over OTLP/HTTP to this collector, e.g. `http://127.0.0.1:4318`
    /// (they go to `/v1/traces` under it). Off unless given.
    #[arg(long, env = "HOOKFLOW_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub caps: CapsArgs,
}

/// The operator's ceiling on what steps may be granted (SPEC §7).
#[derive(Debug, Clone, clap::Args)]
pub struct CapsArgs {
    /// A host steps may be granted outbound HTTP to (`api.example.com`,
    /// `*.slack.com:443`, `127.0.0.1:9000`, `10.0.0.0/8`; repeat or
    /// comma-separate). Without it, any public host. Loopback, private and
    /// link-local addresses are reachable only when named here, by address,
    /// network or exact name; `*` does not name them.
    #[arg(long = "allow-http", env = "HOOKFLOW_ALLOW_HTTP", value_delimiter = ',', value_parser = crate::config::HostPattern::parse)]
    pub allow_http: Vec<crate::config::HostPattern>,
    /// The longest `allow.http_timeout` a step may have (and the timeout
    /// of a step that sets none is 10s or this, if shorter).
    #[arg(long, env = "HOOKFLOW_HTTP_MAX_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub http_max_timeout: std::time::Duration,
    /// The largest `allow.http_max_response` a step may have.
    #[arg(long, env = "HOOKFLOW_HTTP_MAX_RESPONSE", default_value = "16MiB", value_parser = crate::config::parse_size)]
    pub http_max_response: u64,
    /// The largest `allow.http_max_calls` a step may have.
    #[arg(long, env = "HOOKFLOW_HTTP_MAX_CALLS", default_value_t = 256)]
    pub http_max_calls: u32,
    /// The largest value a step may write to a key-value bucket.
    #[arg(long, env = "HOOKFLOW_KV_MAX_VALUE", default_value = "1MiB", value_parser = crate::config::parse_size)]
    pub kv_max_value: u64,
    /// Bytes of keys and values one bucket may hold.
    #[arg(long, env = "HOOKFLOW_KV_MAX_BUCKET", default_value = "64MiB", value_parser = crate::config::parse_size)]
    pub kv_max_bucket: u64,
}

impl CapsArgs {
    /// The engine's policy with these limits.
    pub fn apply(&self, policy: &mut crate::engine::EnginePolicy) {
        let http = &mut policy.http;
        http.ceiling = self.allow_http.clone().into();
        http.max_timeout = self.http_max_timeout;
        http.timeout = http.timeout.min(self.http_max_timeout);
        http.max_max_response = self.http_max_response;
        http.max_response = http.max_response.min(self.http_max_response);
        http.max_max_calls = self.http_max_calls;
        http.max_calls = http.max_calls.min(self.http_max_calls);
        policy.kv.max_value = self.kv_max_value;
        policy.kv.max_namespace = self.kv_max_bucket;
    }
}

/// A token given on the command line or in the environment. Its text is
/// there to use ([`Token::expose`]); `Debug` prints `<redacted>`, so no
/// settings dump or log line ever shows it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl From<&str> for Token {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 9 of the fault issue: tokens never reach `Debug` output.
    #[test]
    fn tokens_are_not_printed() {
        let cli = Cli::parse_from([
            "hookflow",
            "serve",
            "--admin-token",
            "admin-s3cret",
            "--api-token",
            "api-s3cret",
        ]);
        let shown = format!("{cli:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
