//! Shared fixtures: build the plugins once per test run, lay out a workflow
//! directory, start and stop the server, talk to it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// How far past its deadline a stopped step may be recorded as ending on
/// a loaded two-core machine: the deadline is checked on epoch ticks, and
/// a guest that yields waits for a worker that other guests may be using.
/// A bound, not a speed: a timeout that was not enforced runs until the
/// test's own wait gives up, far beyond it.
pub const SCHEDULING_SLACK_US: u64 = 10_000_000;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the runtime crate sits in the repository root")
        .to_path_buf()
}

/// Builds `plugins/` once per test process (cargo's own lock serialises
/// concurrent test processes) and returns the folder holding the `.wasm`
/// files.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        hookflow::plugin_build::ensure_target(&mut std::io::stderr()).expect("wasm target");
        hookflow_testkit::build_plugins(&repo_root()).expect("build plugins/")
    })
}

/// The compiled-code cache the test run's servers share.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("compiled-cache")
}

/// `hookflow build DIR` with the test run's cache (toolchains installed
/// once per run); fails the test with the build's output.
pub fn build_sources(dir: &Path) {
    let built = hookflow()
        .arg("build")
        .arg(dir)
        .env("HOOKFLOW_CACHE_DIR", shared_cache())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
}

/// A temporary workflow directory with the built plugins copied in.
pub struct Workdir {
    pub tmp: tempfile::TempDir,
}

impl Workdir {
    /// A plugin source folder `name` in the workflow directory.
    pub fn source(&self, name: &str, files: &[(&str, &str)]) {
        let dir = self.dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
    }

    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let plugins = tmp.path().join("workflows/plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for name in [
            "caps",
            "echo",
            "fail",
            "filter",
            "http_request",
            "json_map",
            "kv_counter",
            "respond",
            "stall",
            "template",
        ] {
            std::fs::copy(
                plugin_dir().join(format!("{name}.wasm")),
                plugins.join(format!("{name}.wasm")),
            )
            .unwrap_or_else(|e| panic!("copy {name}.wasm: {e}"));
        }
        Self { tmp }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("workflows")
    }

    pub fn db(&self) -> PathBuf {
        self.tmp.path().join("hookflow.redb")
    }

    pub fn manifest(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.dir().join(format!("{name}.toml")), text).unwrap();
        self
    }

    pub fn file(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.dir().join(name), text).unwrap();
        self
    }

    pub fn start(&self) -> Server {
        Server::start_with(&self.dir(), &self.db(), &[])
    }

    /// Starts the server with extra environment variables.
    pub fn start_env(&self, env: &[(&str, &str)]) -> Server {
        Server::start_with(&self.dir(), &self.db(), env)
    }

    /// Starts the server with its log (stderr) appended to `log`, a file.
    pub fn start_logging_to(&self, log: &Path) -> Server {
        self.start_env_logging_to(&[], log)
    }

    /// The same, with extra environment variables.
    pub fn start_env_logging_to(&self, env: &[(&str, &str)], log: &Path) -> Server {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the log file opens");
        Server::spawn(&self.dir(), &self.db(), env, Some(file))
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

/// The line hookflow prints once it listens, before its address.
pub const BANNER: &str = "hookflow listening on ";

pub fn hookflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
}

impl Server {
    pub fn start_with(dir: &Path, db: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(dir, db, env, None)
    }

    fn spawn(dir: &Path, db: &Path, env: &[(&str, &str)], log: Option<std::fs::File>) -> Self {
        let mut cmd = hookflow();
        if let Some(log) = log {
            cmd.stderr(log);
        }
        // The test's own environment may set another admin token.
        cmd.env("HOOKFLOW_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--dir")
            .arg(dir)
            .arg("--db")
            .arg(db)
            .args(["--listen", "127.0.0.1:0"])
            .env("HOOKFLOW_LOG", "warn");
        // One compiled-code cache for every server of the test run: each
        // plugin is compiled once, not once per server (a test's own
        // environment may point elsewhere).
        if !env.iter().any(|(k, _)| *k == "HOOKFLOW_CACHE_DIR") {
            cmd.env("HOOKFLOW_CACHE_DIR", shared_cache());
        }
        let started = hookflow_testkit::spawn(&mut cmd, BANNER, Duration::from_secs(120))
            .expect("hookflow starts listening");
        Self {
            child: started.child,
            base: started.listening,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post(path).json(body).go().await
    }

    /// `GET /api/v1/...` with the admin token; the status and JSON body.
    pub async fn api(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("api request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls an execution until it is finished; panics after `within`.
    pub async fn wait_finished(&self, id: &str, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (status, body) = self.api(&format!("/api/v1/executions/{id}")).await;
            assert_eq!(status, 200, "{body}");
            let state = body["status"].as_str().unwrap_or_default();
            if !matches!(state, "queued" | "running") {
                return body;
            }
            assert!(start.elapsed() < within, "execution {id} still {state}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET path` without a token; the status.
    pub async fn status_of(&self, path: &str) -> u16 {
        let r = self.client.get(self.url(path)).send().await;
        r.expect("request").status().as_u16()
    }

    /// The server's resident memory now and at its peak (`VmRSS`,
    /// `VmHWM`), in bytes.
    pub fn resident(&self) -> (u64, u64) {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        };
        (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
    }

    /// Ends the server abruptly (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, as an operator stopping it does, and returns at once.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// Stops the server the way an operator does (SIGTERM) and waits.
    pub fn stop(self) {
        self.terminate();
        self.wait_exit();
    }

    /// Waits for the server to exit after [`Server::terminate`].
    pub fn wait_exit(mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("hookflow did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a request; a transport error fails the test.
pub trait Go {
    fn go(self) -> impl Future<Output = reqwest::Response>;
}

impl Go for reqwest::RequestBuilder {
    async fn go(self) -> reqwest::Response {
        self.send().await.expect("request")
    }
}

/// Asserts the error body shape of SPEC §5.1 and returns the body.
pub async fn error_body(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    body
}

/// The ids of a page of `GET /api/v1/executions`, in order.
pub fn execution_ids(page: &Value) -> Vec<String> {
    page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// A manifest for one step of `plugin` with `config` (a TOML inline table).
pub fn one_step(path: &str, mode: &str, auth: &str, plugin: &str, config: &str) -> String {
    Manifest::new(path, auth)
        .trigger("mode", &format!("\"{mode}\""))
        .step(plugin, config)
        .to_string()
}

/// A workflow manifest, written field by field: the trigger's path and
/// auth, more trigger fields, whole sections (`[input]`, `[limits]`) and
/// steps.
pub struct Manifest {
    /// Written in order, `auth` last.
    trigger: Vec<(String, String)>,
    auth: String,
    sections: Vec<String>,
    steps: Vec<String>,
}

impl Manifest {
    /// `auth` is a TOML inline table, e.g. `{ kind = "none" }`.
    pub fn new(path: &str, auth: &str) -> Self {
        Self {
            trigger: vec![("path".into(), format!("\"{path}\""))],
            auth: auth.into(),
            sections: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// `[trigger] key = value`, the value written as TOML.
    pub fn trigger(mut self, key: &str, value: &str) -> Self {
        self.trigger.push((key.into(), value.into()));
        self
    }

    /// A section with its header, e.g. `"[limits]\nmemory = \"16MiB\""`.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.trim().into());
        self
    }

    /// A step of `plugins/{plugin}.wasm` with `config` (a TOML inline
    /// table) and any further `key = value` lines.
    pub fn step_with(mut self, plugin: &str, config: &str, lines: &[&str]) -> Self {
        let mut step = format!("plugin = \"plugins/{plugin}.wasm\"\nconfig = {config}");
        for line in lines {
            step.push('\n');
            step.push_str(line);
        }
        self.steps.push(step);
        self
    }

    pub fn step(self, plugin: &str, config: &str) -> Self {
        self.step_with(plugin, config, &[])
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n[trigger]")?;
        for (key, value) in &self.trigger {
            writeln!(f, "{key} = {value}")?;
        }
        writeln!(f, "auth = {}", self.auth)?;
        for section in &self.sections {
            writeln!(f, "\n{section}")?;
        }
        for step in &self.steps {
            writeln!(f, "\n[[steps]]\n{step}")?;
        }
        Ok(())
    }
}
