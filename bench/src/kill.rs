//! The kill test: signed webhooks to the real binary while it is killed
//! (SIGKILL) at random moments and restarted on the same database file.
//! Afterwards every acknowledged event must have exactly one execution,
//! every execution must be finished, none may be missing; steps that
//! started more than once (cut off by a kill, run again on resume) are
//! counted from the server's own step log.
//!
//! `cargo run --release -p hookflow-bench -- --kill` runs it at full size
//! (10,000 webhooks, 20 kills); `.ci/run` runs a smaller one.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::{Rng, SeedableRng};
use sha2::Sha256;
use tokio::sync::Mutex;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub webhooks: usize,
    pub kills: usize,
    pub seed: u64,
}

/// The webhooks' signing secret (Standard Webhooks, 32 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Senders at once.
const SENDERS: usize = 32;
/// Every send gives up after this, and the run fails.
const PATIENCE: Duration = Duration::from_secs(900);

/// One signed delivery: the event it carries and the workflow it goes to.
#[derive(Clone)]
struct Delivery {
    event: usize,
    path: &'static str,
}

fn workflows(dir: &Path, root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("plugins"))?;
    for name in ["echo", "fail"] {
        std::fs::copy(
            root.join(format!("plugins/target/wasm32-wasip2/release/{name}.wasm")),
            dir.join(format!("plugins/{name}.wasm")),
        )
        .with_context(|| format!("copy the {name} plugin"))?;
    }
    std::fs::write(dir.join("secret"), SECRET)?;
    let auth = r#"auth = { kind = "standard-webhooks", secrets = ["file:secret"] }"#;
    // Three steps, one of them slow enough that kills land inside steps.
    let steps = r#"
[[steps]]
id = "first"
plugin = "plugins/echo.wasm"
[[steps]]
id = "wait"
plugin = "plugins/fail.wasm"
config = { mode = "sleep", ms = 20 }
[[steps]]
id = "last"
plugin = "plugins/echo.wasm"
[limits]
concurrency = 64
"#;
    std::fs::write(
        dir.join("kill-async.toml"),
        format!("[trigger]\npath = \"kill-async\"\n{auth}\n{steps}"),
    )?;
    std::fs::write(
        dir.join("kill-sync.toml"),
        format!("[trigger]\npath = \"kill-sync\"\nmode = \"sync\"\n{auth}\n{steps}"),
    )?;
    Ok(())
}

/// The server under test, restarted on the same port, directory and file.
struct Target {
    bin: PathBuf,
    dir: PathBuf,
    db: PathBuf,
    logs: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: usize,
    start_time: Duration,
}

impl Target {
    fn start(&mut self) -> anyhow::Result<()> {
        let log = File::create(self.logs.join(format!("run-{}.log", self.starts)))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--db")
            .arg(&self.db)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            // Resumed as often as it is killed: the test is about loss and
            // duplication, not about giving up on crash loops.
            .args(["--max-resumes", "1000"])
            .env("HOOKFLOW_ADMIN_TOKEN", "kill-admin")
            .env("HOOKFLOW_LOG", "warn,hookflow::steps=debug")
            .env("NO_COLOR", "1")
            .stderr(Stdio::from(log));
        let began = Instant::now();
        let started =
            hookflow_testkit::spawn(&mut cmd, "hookflow listening on ", Duration::from_secs(300))
                .context("start hookflow")?;
        self.start_time += began.elapsed();
        self.child = Some(started.child);
        self.starts += 1;
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the senders saw.
#[derive(Default)]
struct Acks {
    /// Event -> the execution ids its acknowledgements named.
    executions: HashMap<usize, HashSet<String>>,
    /// Sends answered 2xx, and sends that were not (refused, cut off, or
    /// sent while the server was down) and so tried again.
    acknowledged: usize,
    retried: usize,
}

pub async fn run(bins: &Path, root: &Path, work: &Path, size: Size) -> anyhow::Result<()> {
    let dir = work.join("kill-workflows");
    workflows(&dir, root)?;
    let logs = work.join("kill-logs");
    std::fs::create_dir_all(&logs)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut target = Target {
        bin: bins.join("hookflow"),
        dir,
        db: work.join("kill.redb"),
        logs: logs.clone(),
        port,
        child: None,
        starts: 0,
        start_time: Duration::ZERO,
    };
    target.start()?;
    let base = format!("http://127.0.0.1:{port}");

    // The sends: distinct events, then 10% of them again, shuffled in
    // among the rest; every fifth event goes to the sync workflow.
    let mut rng = rand::rngs::StdRng::seed_from_u64(size.seed);
    let distinct = size.webhooks - size.webhooks / 10;
    let mut sends: Vec<Delivery> = (0..distinct)
        .map(|event| Delivery {
            event,
            path: if event % 5 == 0 {
                "kill-sync"
            } else {
                "kill-async"
            },
        })
        .collect();
    for _ in distinct..size.webhooks {
        let again = rng.random_range(0..distinct);
        let at = rng.random_range(again + 1..=sends.len());
        let repeat = sends[again].clone();
        sends.insert(at, repeat);
    }
    // Kill after these many acknowledgements, spread over the run.
    let mut kill_at: Vec<usize> = (0..size.kills)
        .map(|_| rng.random_range(1..size.webhooks))
        .collect();
    kill_at.sort_unstable();

    let began = Instant::now();
    let queue = Arc::new(Mutex::new(sends.into_iter().rev().collect::<Vec<_>>()));
    let acks = Arc::new(Mutex::new(Acks::default()));
    let acked = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (queue, acks, acked) = (queue.clone(), acks.clone(), acked.clone());
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                loop {
                    let Some(delivery) = queue.lock().await.pop() else {
                        return Ok::<(), anyhow::Error>(());
                    };
                    deliver(&client, &base, &delivery, &acks).await?;
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut kills = Vec::new();
    for at in kill_at {
        while acked.load(Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A moment within the next stretch of work, not on a boundary.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        target.kill();
        kills.push(acked.load(Ordering::Relaxed));
        target.start()?;
    }
    for s in senders {
        s.await??;
    }
    let sent_in = began.elapsed();

    let admin = Admin {
        client: &client,
        base: &base,
    };
    admin.wait_all_finished(Duration::from_secs(600)).await?;
    let listed = admin.all_executions().await?;
    target.kill();

    let acks = acks.lock().await;
    let report = check(&acks, &listed, &logs, distinct)?;
    println!(
        "kill test: {} webhooks ({} distinct events, {} repeats), {} kills, seed {}",
        size.webhooks,
        distinct,
        size.webhooks - distinct,
        kills.len(),
        size.seed
    );
    println!("  killed after {kills:?} acknowledgements");
    println!(
        "  {} acknowledged, {} sends tried again (refused, cut off or server down), in {:.1} s; {} starts took {:.1} s in all",
        acks.acknowledged,
        acks.retried,
        sent_in.as_secs_f64(),
        target.starts,
        target.start_time.as_secs_f64()
    );
    println!("{report}");
    if !report.problems.is_empty() {
        bail!("the kill test found {} problem(s)", report.problems.len());
    }
    Ok(())
}

/// Sends one delivery until it is acknowledged (2xx), as a provider that
/// retries would, signing each try afresh.
async fn deliver(
    client: &reqwest::Client,
    base: &str,
    delivery: &Delivery,
    acks: &Mutex<Acks>,
) -> anyhow::Result<()> {
    let key = B64.decode(SECRET.trim_start_matches("whsec_"))?;
    let id = format!("msg_kill_{}", delivery.event);
    let body = format!(
        r#"{{"event":{},"data":"{}"}}"#,
        delivery.event,
        "x".repeat(200)
    );
    let give_up = Instant::now() + PATIENCE;
    loop {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)?
            .as_secs()
            .to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
        mac.update(format!("{id}.{ts}.{body}").as_bytes());
        let signature = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
        let sent = client
            .post(format!("{base}/hooks/{}", delivery.path))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &ts)
            .header("webhook-signature", signature)
            .body(body.clone())
            .send()
            .await;
        let answer = match sent {
            Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
            Ok(r) if r.status().is_server_error() => None,
            Ok(r) => bail!(
                "event {} got {}: {}",
                delivery.event,
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(_) => None,
        };
        if let Some(execution) = answer.as_ref().and_then(|a| a["execution_id"].as_str()) {
            let mut acks = acks.lock().await;
            acks.acknowledged += 1;
            acks.executions
                .entry(delivery.event)
                .or_default()
                .insert(execution.to_string());
            return Ok(());
        }
        acks.lock().await.retried += 1;
        if Instant::now() > give_up {
            bail!("event {} was never acknowledged", delivery.event);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Admin<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
}

impl Admin<'_> {
    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth("kill-admin")
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json().await?)
    }

    async fn wait_all_finished(&self, within: Duration) -> anyhow::Result<()> {
        let give_up = Instant::now() + within;
        loop {
            let mut open = 0;
            for status in ["queued", "running"] {
                let page = self
                    .get(&format!("/api/v1/executions?status={status}&limit=500"))
                    .await?;
                open += page["executions"].as_array().map_or(0, Vec::len);
            }
            if open == 0 {
                return Ok(());
            }
            if Instant::now() > give_up {
                bail!("{open} executions never finished");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every execution: id -> status.
    async fn all_executions(&self) -> anyhow::Result<HashMap<String, String>> {
        let mut all = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/executions?limit=500&cursor={c}"),
                None => "/api/v1/executions?limit=500".to_string(),
            };
            let page = self.get(&path).await?;
            for e in page["executions"].as_array().into_iter().flatten() {
                let id = e["id"].as_str().unwrap_or_default().to_string();
                let status = e["status"].as_str().unwrap_or_default().to_string();
                all.insert(id, status);
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(all),
            }
        }
    }
}

struct Report {
    executions: usize,
    by_status: HashMap<String, usize>,
    step_starts: usize,
    steps_twice: usize,
    problems: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut statuses: Vec<_> = self.by_status.iter().collect();
        statuses.sort();
        writeln!(
            f,
            "  {} executions, by status: {statuses:?}",
            self.executions
        )?;
        writeln!(
            f,
            "  {} step starts; {} steps started more than once (cut off by a kill, run again on resume)",
            self.step_starts, self.steps_twice
        )?;
        if self.problems.is_empty() {
            write!(
                f,
                "  ok: every acknowledged event has exactly one execution, all finished, none missing"
            )
        } else {
            for p in self.problems.iter().take(20) {
                writeln!(f, "  PROBLEM: {p}")?;
            }
            write!(f, "  {} problem(s)", self.problems.len())
        }
    }
}

fn check(
    acks: &Acks,
    listed: &HashMap<String, String>,
    logs: &Path,
    distinct: usize,
) -> anyhow::Result<Report> {
    let mut problems = Vec::new();
    if acks.executions.len() != distinct {
        problems.push(format!(
            "{} of {distinct} events were acknowledged",
            acks.executions.len()
        ));
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (event, ids) in &acks.executions {
        if ids.len() != 1 {
            problems.push(format!(
                "event {event} was acknowledged as executions {ids:?}"
            ));
        }
        for id in ids {
            if let Some(other) = owner.insert(id, *event) {
                problems.push(format!(
                    "execution {id} acknowledged for events {other} and {event}"
                ));
            }
            match listed.get(id) {
                None => problems.push(format!("execution {id} (event {event}) is missing")),
                Some(s) if s != "succeeded" => {
                    problems.push(format!("execution {id} (event {event}) ended {s}"));
                }
                Some(_) => {}
            }
        }
    }
    for id in listed.keys() {
        if !owner.contains_key(id.as_str()) {
            problems.push(format!("execution {id} belongs to no acknowledged event"));
        }
    }
    let mut by_status = HashMap::new();
    for s in listed.values() {
        *by_status.entry(s.clone()).or_insert(0) += 1;
    }
    let (step_starts, steps_twice) = step_starts(logs)?;
    Ok(Report {
        executions: listed.len(),
        by_status,
        step_starts,
        steps_twice,
        problems,
    })
}

/// From the servers' logs: how many steps started, and how many (an
/// execution's step) started more than once.
fn step_starts(logs: &Path) -> anyhow::Result<(usize, usize)> {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut total = 0;
    for entry in std::fs::read_dir(logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines().filter(|l| l.contains("step starting")) {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .map(str::to_string)
            };
            if let (Some(execution), Some(step)) = (field("execution="), field("step=")) {
                total += 1;
                *seen.entry((execution, step)).or_insert(0) += 1;
            }
        }
    }
    Ok((total, seen.values().filter(|&&n| n > 1).count()))
}
