//! hookflow's benchmark harness: one command that builds what it needs,
//! starts servers on 127.0.0.1, runs every scenario and prints a table.
//!
//! `cargo run --release -p hookflow-bench` (add `-- --quick` for a short
//! run). See BENCHMARKS.md for the scenarios and the latest figures.

mod goals;
mod growth;
mod kill;
mod languages;
mod load;
mod micro;
mod reload;
mod report;
mod servers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use load::{Connections, Outcome, Target};

// The micro-benchmarks run hookflow's engine and store in this process:
// with the allocator the `hookflow` binary uses, so that they measure what
// the server does. (The baseline is its own binary, on the system
// allocator.)
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use report::out;
use servers::{Server, metrics_totals};

#[derive(Parser)]
#[command(about = "Run hookflow's benchmarks and print the figures")]
struct Args {
    /// A short run (about a minute) that exercises every scenario.
    #[arg(long)]
    quick: bool,
    /// Seconds per measured run (closed loop and open loop each).
    #[arg(long)]
    seconds: Option<f64>,
    /// Open-loop rate as a fraction of the closed-loop maximum.
    #[arg(long, default_value_t = 0.75)]
    open_fraction: f64,
    /// Run only the HTTP scenarios, or only the micro-benchmarks.
    /// `growth` runs only the cost-as-the-database-grows scenario, which
    /// the full run leaves out (it writes gigabytes).
    /// `reload` times hot reloads (also part of `--report`).
    /// `languages` builds the same step in Rust, Python and JavaScript and
    /// times loading and calling each.
    #[arg(long, value_parser = ["http", "micro", "languages", "growth", "reload"])]
    only: Option<String>,
    /// Growth: finished executions to fill the database with.
    #[arg(long, default_value_t = 1_000_000)]
    executions: usize,
    /// Growth: unfinished executions among them, resumed on restart.
    #[arg(long, default_value_t = 100_000)]
    unfinished: usize,
    /// Run only the HTTP scenarios whose name contains this text (the
    /// baseline always runs).
    #[arg(long)]
    filter: Option<String>,
    /// Also measure this hookflow binary (an earlier build, say) in the
    /// same run: each scenario on both builds back to back, which one goes
    /// first alternating, its rows marked `[compared]`.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Run the kill test instead of the benchmarks: signed webhooks while
    /// the server is killed (SIGKILL) and restarted, then a check that
    /// nothing acknowledged was lost or run twice as an execution.
    #[arg(long)]
    kill: bool,
    /// Kill test: webhooks to send, a tenth of them repeats.
    #[arg(long, default_value_t = 10_000)]
    webhooks: usize,
    /// Kill test: how many times to kill the server.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Kill test: the seed of its random choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Run everything (HTTP, micro, growth at `--executions` and
    /// `--unfinished`), print the goals of the performance issue, and write
    /// the figures into this Markdown file between its marker lines (see
    /// BENCHMARKS.md).
    #[arg(long)]
    report: Option<PathBuf>,
}

const MODES: [Connections; 5] = [
    Connections::KeepAlive(1),
    Connections::KeepAlive(16),
    Connections::KeepAlive(64),
    Connections::KeepAlive(256),
    Connections::NewEach(64),
];

pub(crate) struct Row {
    scenario: String,
    conns: Connections,
    max_rate: f64,
    open_rate: f64,
    open: Outcome,
    errors: u64,
    extra: String,
    /// Async rows: executions that reached `succeeded` per second, from the
    /// start of the closed-loop run until the queue drained, and how many
    /// requests of that run were shed (the rate counts only when none were).
    pub(crate) sustained: Option<(f64, u64)>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 4.0 });
    let run_for = Duration::from_secs_f64(seconds);
    let micro_budget = Duration::from_secs_f64(seconds / 2.0);
    let started = Instant::now();

    let root = repo_root();
    let bins = std::env::current_exe()?
        .parent()
        .context("the harness binary has a directory")?
        .to_path_buf();
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    servers::build(&root, profile)?;
    // Under the target directory (whatever CARGO_TARGET_DIR says): on the
    // project's disk, so the fsync figures are that disk's.
    let target_dir = bins.parent().unwrap_or(&bins);
    let work = tempfile::tempdir_in(target_dir).context("work dir in the target directory")?;

    print_machine(&root, work.path(), profile)?;

    if args.kill {
        let seed = args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        let size = kill::Size {
            webhooks: args.webhooks.max(10),
            kills: args.kills,
            seed,
        };
        kill::run(&bins, &root, work.path(), size).await?;
        println!("\nwhole run: {:.0} s", started.elapsed().as_secs_f64());
        return Ok(());
    }

    let everything = args.report.is_some();
    let only = |what: &str| args.only.as_deref().is_none_or(|o| o == what);
    let mut http_run = None;
    if only("http") {
        let run = http(&args, &bins, &root, work.path(), run_for).await?;
        print_http(&run.rows);
        http_run = Some(run);
    }
    let mut timings = Vec::new();
    if only("micro") {
        // 5-6. Micro.
        let echo_wasm = root.join("plugins/target/wasm32-wasip2/release/echo.wasm");
        timings = micro::wasm(&echo_wasm, micro_budget).await?;
        let caps_wasm = root.join("plugins/target/wasm32-wasip2/release/caps.wasm");
        timings.extend(micro::capabilities(&caps_wasm, work.path(), micro_budget).await?);
        timings.extend(micro::store(work.path(), micro_budget).await?);
        print_micro(&timings);
    }
    if only("languages") {
        let figures = languages::run(
            &bins.join("hookflow"),
            &root,
            work.path(),
            &target_dir.join("tmp/compiled-cache"),
            micro_budget,
        )
        .await?;
        languages::print(&figures);
    }
    if args.only.as_deref() == Some("reload") || everything {
        let timings = reload::run(&bins.join("hookflow"), &root, work.path(), 20).await?;
        let restart = reload::restart(&bins.join("hookflow"), &root, work.path(), 20).await?;
        reload::print(&timings, &restart);
    }
    let mut grown = None;
    if args.only.as_deref() == Some("growth") || everything {
        let dir = servers::workflows(&work.path().join("growth"), &root)?;
        let fill = growth::Fill {
            executions: args.executions,
            unfinished: args.unfinished,
        };
        let g = growth::run(
            &bins.join("hookflow"),
            &dir,
            work.path(),
            fill,
            Some(run_for),
        )
        .await?;
        growth::print(&g);
        grown = Some(g);
    }
    if everything {
        goals::print(&goals::Measured {
            http: http_run.as_ref(),
            timings: &timings,
            growth: grown.as_ref(),
        });
    }
    out!("\nwhole run: {:.0} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.report {
        report::write(path)?;
    }
    Ok(())
}

/// What the HTTP scenarios measured.
pub(crate) struct HttpRun {
    rows: Vec<Row>,
    /// Peak resident memory of each hookflow build under the run, by label
    /// (`""` for this build).
    peaks: Vec<(&'static str, Option<u64>)>,
}

/// Scenarios 1-4: the baseline, then hookflow, each at every connection mode.
async fn http(
    args: &Args,
    bins: &Path,
    root: &Path,
    work: &Path,
    run_for: Duration,
) -> anyhow::Result<HttpRun> {
    let mut rows: Vec<Row> = Vec::new();
    let mut peaks = Vec::new();
    // 1. Baseline: bare axum.
    {
        let server = Server::baseline(&bins.join("baseline"))?;
        let addr = server.addr;
        let body = vec![b'x'; 1024];
        let hello = Target::new(addr, "GET", "/", &[], b"", 200);
        let echo = Target::new(addr, "POST", "/echo", &[], &body, 200);
        for conns in MODES {
            rows.push(
                measure(
                    "baseline: hello".into(),
                    &hello,
                    conns,
                    run_for,
                    args.open_fraction,
                    None,
                )
                .await,
            );
            rows.push(
                measure(
                    "baseline: read 1 KiB body".into(),
                    &echo,
                    conns,
                    run_for,
                    args.open_fraction,
                    None,
                )
                .await,
            );
        }
    }
    // 2-4. hookflow: this build, and the one to compare with, if any.
    {
        let mut binaries = vec![(bins.join("hookflow"), "")];
        if let Some(other) = &args.compare {
            binaries.push((other.clone(), " [compared]"));
        }
        let mut servers = Vec::new();
        for (i, (binary, label)) in binaries.into_iter().enumerate() {
            let work = work.join(format!("hookflow-{i}"));
            let dir = servers::workflows(&work, root)?;
            let server = Server::hookflow(&binary, &dir, &work.join("bench.redb"))?;
            servers.push((server, label));
        }
        let payload = servers::payload_1k();
        let json = [("content-type", "application/json")];
        let big = vec![b' '; 2048];
        let scenarios: [(&str, &str, &[u8], u16, bool); 4] = [
            (
                "ingress: 401 bad token",
                "/hooks/auth",
                &payload,
                401,
                false,
            ),
            (
                "ingress: 413 over max_body",
                "/hooks/limit",
                &big,
                413,
                false,
            ),
            (
                "async: 1-step echo, 1 KiB (ack)",
                "/hooks/async",
                &payload,
                202,
                true,
            ),
            (
                "sync: json-map > echo > json-map",
                "/hooks/sync",
                &payload,
                200,
                false,
            ),
        ];
        // Which build goes first alternates from one measured point to the
        // next: the second of two back-to-back runs tends to be faster (a
        // run of the same binary against itself showed +3% to +15%).
        let mut point = 0usize;
        for conns in MODES {
            for (name, path, body, status, counts_executions) in scenarios {
                if args.filter.as_deref().is_some_and(|f| !name.contains(f)) {
                    continue;
                }
                point += 1;
                let mut order: Vec<_> = servers.iter().collect();
                if point.is_multiple_of(2) {
                    order.reverse();
                }
                for (server, label) in order {
                    let addr = server.addr;
                    let target = Target::new(addr, "POST", path, &json, body, status);
                    rows.push(
                        measure(
                            format!("{name}{label}"),
                            &target,
                            conns,
                            run_for,
                            args.open_fraction,
                            counts_executions.then_some(addr),
                        )
                        .await,
                    );
                }
            }
        }
        for (server, label) in servers {
            peaks.push((label, server.peak_resident()));
            server.stop();
        }
    }
    Ok(HttpRun { rows, peaks })
}

/// Closed loop for the highest rate, then open loop at a fraction of it for
/// latencies free of coordinated omission. For async rows, also waits for
/// the executions to finish and reports how fast they did.
pub(crate) async fn measure(
    scenario: String,
    target: &Target,
    conns: Connections,
    run_for: Duration,
    fraction: f64,
    executions_of: Option<std::net::SocketAddr>,
) -> Row {
    let before = match executions_of {
        Some(addr) => metrics_totals(addr).await.ok(),
        None => None,
    };
    let t0 = Instant::now();
    let closed = load::run(target, conns, run_for, None).await;
    let mut extra = String::new();
    let mut sustained = None;
    if let (Some(addr), Some(before)) = (executions_of, before) {
        match servers::wait_drained(addr, Duration::from_secs(120)).await {
            Ok(after) => {
                let done = after.succeeded - before.succeeded;
                let rate = done as f64 / t0.elapsed().as_secs_f64();
                extra = format!("{done} succeeded at {rate:.0}/s");
                sustained = Some((rate, closed.errors));
            }
            Err(e) => extra = format!("not drained: {e}"),
        }
    }
    // At most one request per connection every 2 ms: the timer wheel ticks
    // in milliseconds, and a finer schedule would measure the client.
    let rate = (closed.rate() * fraction).min(conns.count() as f64 * 500.0);
    let open = load::run(target, conns, run_for, Some(rate)).await;
    if let Some(addr) = executions_of {
        let _ = servers::wait_drained(addr, Duration::from_secs(120)).await;
    }
    Row {
        scenario,
        conns,
        open_rate: rate,
        max_rate: closed.rate(),
        errors: closed.errors + open.errors,
        open,
        extra,
        sustained,
    }
}

fn conns_label(c: Connections) -> String {
    match c {
        Connections::KeepAlive(n) => format!("{n}"),
        Connections::NewEach(n) => format!("{n} new"),
    }
}

/// Baseline hello's closed-loop rate at `conns`: what every row is
/// compared with.
pub(crate) fn baseline_rate(rows: &[Row], conns: Connections) -> f64 {
    rows.iter()
        .find(|b| b.scenario == "baseline: hello" && b.conns == conns)
        .map_or(f64::NAN, |b| b.max_rate)
}

fn print_http(rows: &[Row]) {
    out!("\n## HTTP scenarios\n");
    out!(
        "req/s: closed-loop maximum; vs baseline: over baseline hello at the same connections. Latencies: an open-loop run at `open req/s` (the given fraction of the maximum, at most 500/s per connection), counted from the scheduled send time whenever the server was behind (no coordinated omission).\n"
    );
    out!(
        "| scenario | conns | req/s | vs baseline | open req/s | p50 ms | p99 ms | p99.9 ms | errors | executions |"
    );
    out!("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let base = baseline_rate(rows, r.conns);
        out!(
            "| {} | {} | {:.0} | {:.1}% | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.scenario,
            conns_label(r.conns),
            r.max_rate,
            100.0 * r.max_rate / base,
            r.open_rate,
            r.open.percentile_ms(0.50),
            r.open.percentile_ms(0.99),
            r.open.percentile_ms(0.999),
            r.errors,
            r.extra
        );
    }
    // The figure the throughput goal is judged by.
    let sustained: Vec<_> = rows
        .iter()
        .filter_map(|r| r.sustained.map(|s| (r, s)))
        .collect();
    if !sustained.is_empty() {
        out!(
            "\nSustained: executions reaching `succeeded` per second from the start of the closed-loop run until the queue drained, over baseline hello at the same connections; it counts only with nothing shed.\n"
        );
        out!("| scenario | conns | sustained/s | vs baseline | shed |");
        out!("|---|---|---:|---:|---:|");
        for (r, (rate, shed)) in sustained {
            let base = baseline_rate(rows, r.conns);
            out!(
                "| {} | {} | {rate:.0} | {:.1}% | {shed} |",
                r.scenario,
                conns_label(r.conns),
                100.0 * rate / base
            );
        }
    }
}

fn print_micro(timings: &[micro::Timing]) {
    out!("\n## Micro-benchmarks\n");
    out!("| what | per op | ops/s |");
    out!("|---|---:|---:|");
    for t in timings {
        out!(
            "| {} | {:.1} us | {:.0} |",
            t.label,
            t.per_op.as_secs_f64() * 1e6,
            t.ops_per_sec
        );
    }
    if let (Some(one), Some(best)) = (
        timings
            .iter()
            .find(|t| t.label.starts_with("store: 1 concurrent writer ")),
        timings
            .iter()
            .filter(|t| t.label.starts_with("store:"))
            .map(|t| t.ops_per_sec)
            .reduce(f64::max),
    ) {
        out!(
            "\nstore: group commit at best is {:.1}x one writer at a time",
            best / one.ops_per_sec
        );
    }
}

fn print_machine(root: &Path, work: &Path, profile: &str) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let (fsync_p50, fsync_max) = micro::fsync_latency(work, 200)?;
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let version = |name: &str| {
        let marker = format!("name = \"{name}\"\nversion = \"");
        lock.split(&marker)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?")
            .to_string()
    };
    out!("# hookflow benchmarks\n");
    out!("- machine: {cores} cores, {cpu}");
    out!(
        "- disk: 4 KiB write + fdatasync p50 {:.2} ms, max {:.2} ms (200 rounds)",
        fsync_p50.as_secs_f64() * 1e3,
        fsync_max.as_secs_f64() * 1e3
    );
    out!(
        "- build: {profile} profile; {rustc}; wasmtime {}, axum {}, hyper {}, tokio {}, redb {}",
        version("wasmtime"),
        version("axum"),
        version("hyper"),
        version("tokio"),
        version("redb")
    );
    if profile != "release" {
        out!("- note: not a release build; figures are for checking the harness only");
    }
    Ok(())
}
