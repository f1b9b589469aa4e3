//! Starting and stopping the servers under test, and reading hookflow's
//! execution counters.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Builds the hookflow and baseline binaries (same profile as this
/// harness) and the plugins.
pub fn build(root: &Path, profile: &str) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building hookflow ({profile}) and plugins ...");
    let status = Command::new(&cargo)
        .args(["build", "--quiet", "--profile", profile])
        .args(["-p", "hookflow", "--bin", "hookflow"])
        .args(["-p", "hookflow-bench", "--bin", "baseline"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("building hookflow failed");
    }
    hookflow::plugin_build::ensure_target(&mut std::io::stderr())?;
    hookflow_testkit::build_plugins(root)?;
    Ok(())
}

/// The benchmark workflows, with the plugins copied in.
pub fn workflows(work: &Path, root: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("workflows");
    std::fs::create_dir_all(dir.join("plugins"))?;
    for name in ["echo", "json_map"] {
        std::fs::copy(
            root.join(format!("plugins/target/wasm32-wasip2/release/{name}.wasm")),
            dir.join(format!("plugins/{name}.wasm")),
        )?;
    }
    std::fs::write(dir.join("token"), "bench-token")?;
    let files = [
        (
            "auth",
            r#"[trigger]
path = "auth"
auth = { kind = "bearer", secrets = ["file:token"] }
[[steps]]
plugin = "plugins/echo.wasm"
"#,
        ),
        (
            "limit",
            r#"[trigger]
path = "limit"
max_body = "1KiB"
auth = { kind = "none" }
[[steps]]
plugin = "plugins/echo.wasm"
"#,
        ),
        (
            "async",
            r#"[trigger]
path = "async"
auth = { kind = "none" }
[[steps]]
plugin = "plugins/echo.wasm"
[limits]
concurrency = 256
"#,
        ),
        (
            "sync",
            r#"[trigger]
path = "sync"
mode = "sync"
auth = { kind = "none" }
[[steps]]
id = "pick"
plugin = "plugins/json_map.wasm"
config = { id = "$.id", email = "$.customer.email", data = "$.data" }
[[steps]]
plugin = "plugins/echo.wasm"
[[steps]]
id = "shape"
plugin = "plugins/json_map.wasm"
config = { id = "$previous.id", to = "$previous.email" }
[limits]
concurrency = 256
"#,
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(format!("{name}.toml")), text)?;
    }
    Ok(dir)
}

/// A 1 KiB JSON document.
pub fn payload_1k() -> Vec<u8> {
    let head = r#"{"id":1001,"customer":{"email":"ada@example.com"},"data":""#;
    let tail = r#""}"#;
    let mut body = head.as_bytes().to_vec();
    body.resize(1024 - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn baseline(bin: &Path) -> anyhow::Result<Self> {
        Self::spawn(
            Command::new(bin).arg("127.0.0.1:0"),
            "baseline listening on http://",
        )
    }

    pub fn hookflow(bin: &Path, dir: &Path, db: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--dir")
            .arg(dir)
            .arg("--db")
            .arg(db)
            .args(["--listen", "127.0.0.1:0"])
            .env("HOOKFLOW_LOG", "error");
        Self::spawn(&mut cmd, "hookflow listening on http://")
    }

    fn spawn(cmd: &mut Command, banner: &str) -> anyhow::Result<Self> {
        let started = hookflow_testkit::spawn(cmd, banner, Duration::from_secs(120))
            .context("start server")?;
        let addr = started.listening.parse()?;
        Ok(Self {
            child: started.child,
            addr,
        })
    }

    /// The process's peak resident memory (`VmHWM`), in bytes.
    pub fn peak_resident(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub started: u64,
    pub succeeded: u64,
    pub finished: u64,
}

/// hookflow's execution counters, from `/metrics`.
pub async fn metrics_totals(addr: SocketAddr) -> anyhow::Result<Totals> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    let mut t = Totals::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(n) = value.parse::<u64>() else {
            continue;
        };
        if name == "hookflow_executions_started_total" {
            t.started = n;
        } else if name.starts_with("hookflow_executions_finished_total") {
            t.finished += n;
            if name.contains("succeeded") {
                t.succeeded = n;
            }
        }
    }
    Ok(t)
}

/// Waits until every execution handed to the runner has finished.
pub async fn wait_drained(addr: SocketAddr, within: Duration) -> anyhow::Result<Totals> {
    let deadline = Instant::now() + within;
    loop {
        let t = metrics_totals(addr).await?;
        if t.finished >= t.started {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} executions still running",
                t.started - t.finished,
                t.started
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
