//! Cost as the database grows: a file filled with many executions through
//! the store's real writer, then the reads an operator makes (one by id,
//! the newest of a workflow, by status), bytes on disk per execution, and
//! the time a restart with many unfinished executions takes to be ready.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookflow::execution::{Attempt, Execution, Status, StepStatus};
use hookflow::store::{ListFilter, Store};
use tokio::sync::Semaphore;

use crate::load::{Connections, Target};
use crate::micro::record;
use crate::report::out;
use crate::servers::{Server, metrics_totals, payload_1k, wait_drained};

/// How many executions to fill in, and how many of them stay unfinished.
pub struct Fill {
    pub executions: usize,
    pub unfinished: usize,
}

pub struct Growth {
    pub executions: usize,
    pub unfinished: usize,
    pub fill_time: Duration,
    pub file_bytes: u64,
    /// (what, median, worst) of the timed reads.
    pub reads: Vec<(String, Duration, Duration)>,
    pub ready_empty: Duration,
    pub ready_full: Duration,
    /// Sustained async executions per second at 64 connections on an
    /// empty database and on the filled one (`None` when not measured).
    pub rate_empty: Option<f64>,
    pub rate_full: Option<f64>,
}

/// Sustained async rate of `server` at 64 connections, over `run_for`;
/// `None` when not asked for (no `run_for`), when the queue did not drain,
/// or when requests were shed.
async fn async_rate(server: &Server, run_for: Option<Duration>, backlog: u64) -> Option<f64> {
    let run_for = run_for?;
    let payload = payload_1k();
    let json = [("content-type", "application/json")];
    let target = Target::new(server.addr, "POST", "/hooks/async", &json, &payload, 202);
    // The backlog resumes in the background: wait until all of it has
    // started, then until it has run.
    let deadline = Instant::now() + Duration::from_secs(600);
    while metrics_totals(server.addr).await.ok()?.started < backlog {
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_drained(server.addr, Duration::from_secs(600))
        .await
        .ok()?;
    let row = crate::measure(
        "async".into(),
        &target,
        Connections::KeepAlive(64),
        run_for,
        0.75,
        Some(server.addr),
    )
    .await;
    row.sustained
        .and_then(|(rate, shed)| (shed == 0).then_some(rate))
}

/// Workflows the filled executions belong to; `async` is the one the
/// benchmark serves, so its unfinished executions resume on restart.
const WORKFLOWS: [&str; 4] = ["async", "orders", "billing", "signup"];

/// One finished (or, for `open`, queued) execution of workflow `i % 4`, a
/// 1 KiB body and a 1 KiB output, as a one-step echo leaves it; one in 50
/// failed.
fn filled(i: usize, open: bool) -> (Execution, bytes::Bytes) {
    let (mut execution, body) = record(1024);
    execution.workflow = WORKFLOWS[i % WORKFLOWS.len()].into();
    if open {
        execution.workflow = "async".into();
        return (execution, body);
    }
    let output: Box<serde_json::value::RawValue> =
        serde_json::value::RawValue::from_string(String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_else(|_| serde_json::value::RawValue::from_string("null".into()).unwrap());
    let failed = i.is_multiple_of(50);
    execution.status = if failed {
        Status::Failed
    } else {
        Status::Succeeded
    };
    execution.started_at_ms = Some(execution.created_at_ms);
    execution.finished_at_ms = Some(execution.created_at_ms + 1);
    let step = &mut execution.steps[0];
    step.status = if failed {
        StepStatus::Failed
    } else {
        StepStatus::Succeeded
    };
    step.attempts.push(Attempt {
        number: 1,
        started_at_ms: execution.created_at_ms,
        wall_time_us: 25,
        peak_memory_bytes: 1 << 20,
        output: (!failed).then(|| output.clone()),
        error: None,
        logs: Vec::new(),
        logs_dropped_bytes: 0,
        ..Default::default()
    });
    if failed {
        execution.error = Some("step `echo`: failing as configured".into());
    } else {
        execution.output = Some(output);
    }
    (execution, body)
}

/// Median and worst of `rounds` runs of `f`.
async fn time<F, Fut>(rounds: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        f(i).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

/// Fills a database, times the reads and a restart; with `rate_for`, also
/// the sustained async rate on an empty database and on the filled one.
pub async fn run(
    bin: &Path,
    workflows: &Path,
    work: &Path,
    fill: Fill,
    rate_for: Option<Duration>,
) -> anyhow::Result<Growth> {
    // Ready time of an empty database, for scale.
    let began = Instant::now();
    let empty = Server::hookflow(bin, workflows, &work.join("empty.redb"))?;
    let ready_empty = began.elapsed();
    let rate_empty = async_rate(&empty, rate_for, 0).await;
    empty.stop();

    let path = work.join("growth.redb");
    let store = Store::open(&path)?;
    let total = fill.executions + fill.unfinished;
    let began = Instant::now();
    let writers = Arc::new(Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    let mut ids = Vec::new();
    for i in 0..total {
        let open = i >= fill.executions;
        let (execution, body) = filled(i, open);
        if i.is_multiple_of(97) {
            ids.push(execution.id);
        }
        let store = store.clone();
        let place = writers.clone().acquire_owned().await?;
        tasks.spawn(async move {
            let _place = place;
            store.put_new(&execution, body, None, Vec::new()).await
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let fill_time = began.elapsed();
    let file_bytes = store.file_size();

    let mut reads = Vec::new();
    let (median, worst) = time(200, |i| {
        let (store, id) = (store.clone(), ids[i * 7 % ids.len()]);
        async move {
            let _ = store.get(id).await;
        }
    })
    .await;
    reads.push(("get one by id".into(), median, worst));
    let newest = |workflow: Option<&str>, status: Option<Status>| ListFilter {
        workflow: workflow.map(String::from),
        statuses: status.into_iter().collect(),
        limit: 50,
        ..ListFilter::default()
    };
    let filters: [(&str, ListFilter); 4] = [
        ("newest 50 of one workflow", newest(Some("orders"), None)),
        (
            "newest 50 failed (status, 2% of all)",
            newest(None, Some(Status::Failed)),
        ),
        (
            "newest 50 succeeded (status)",
            newest(None, Some(Status::Succeeded)),
        ),
        (
            "newest 50 queued (status)",
            newest(None, Some(Status::Queued)),
        ),
    ];
    for (what, filter) in filters {
        let (median, worst) = time(50, |_| {
            let (store, filter) = (store.clone(), filter.clone());
            async move {
                let _ = store.list(filter).await;
            }
        })
        .await;
        reads.push((what.into(), median, worst));
    }
    drop(store);

    // The writer thread lets go of the file as it ends: try until it has.
    let began = Instant::now();
    let mut full = None;
    for _ in 0..20 {
        match Server::hookflow(bin, workflows, &path) {
            Ok(server) => {
                full = Some(server);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    let ready_full = began.elapsed();
    let full =
        full.ok_or_else(|| anyhow::anyhow!("hookflow did not start on the filled database"))?;
    // Once the resumed executions have run.
    let rate_full = async_rate(&full, rate_for, fill.unfinished as u64).await;
    full.stop();

    Ok(Growth {
        executions: fill.executions,
        unfinished: fill.unfinished,
        fill_time,
        file_bytes,
        reads,
        ready_empty,
        ready_full,
        rate_empty,
        rate_full,
    })
}

pub fn print(g: &Growth) {
    out!("\n## Cost as the database grows\n");
    let total = g.executions + g.unfinished;
    out!(
        "{} executions ({} finished, 1 KiB body and 1 KiB output each, in 4 workflows, 2% failed; {} queued) written through the store's writer in {:.1} s ({:.0}/s); file {:.1} MiB, {:.0} bytes per execution.\n",
        total,
        g.executions,
        g.unfinished,
        g.fill_time.as_secs_f64(),
        total as f64 / g.fill_time.as_secs_f64(),
        g.file_bytes as f64 / (1 << 20) as f64,
        bytes_per_execution(g),
    );
    out!("| read | median | worst |");
    out!("|---|---:|---:|");
    for (what, median, worst) in &g.reads {
        out!(
            "| {what} | {:.2} ms | {:.2} ms |",
            median.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3
        );
    }
    out!(
        "\nstart to ready (`serve` printing its address): {:.2} s with an empty database, {:.2} s with this one ({} unfinished resumed).",
        g.ready_empty.as_secs_f64(),
        g.ready_full.as_secs_f64(),
        g.unfinished
    );
    if let (Some(empty), Some(full)) = (g.rate_empty, g.rate_full) {
        out!(
            "\nasync at 64 connections, sustained: {empty:.0}/s on an empty database, {full:.0}/s on this one ({:.0}%).",
            100.0 * full / empty
        );
    }
}

/// Bytes on disk per execution.
pub fn bytes_per_execution(g: &Growth) -> f64 {
    g.file_bytes as f64 / (g.executions + g.unfinished) as f64
}
