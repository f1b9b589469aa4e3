//! Micro-benchmarks: one wasm step call (instantiate + call) and store
//! commits, as plain timed loops over the library's real types.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookflow::config::Grants;
use hookflow::engine::{Engine, EnginePolicy, Plugin, StepCall, StepLimits};
use hookflow::execution::{Event, Execution, RequestMeta, StepRecord, StepStatus};
use hookflow::store::Store;

pub struct Timing {
    pub label: String,
    pub per_op: Duration,
    pub ops_per_sec: f64,
}

fn event(payload_len: usize) -> Event {
    let body = if payload_len == 0 {
        Bytes::new()
    } else {
        let filler = "x".repeat(payload_len.saturating_sub(12));
        Bytes::from(format!("{{\"data\":\"{filler}\"}}"))
    };
    Event::new(
        RequestMeta {
            method: "POST".into(),
            path: "/hooks/bench".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            remote_addr: "127.0.0.1:1".into(),
            received_at_ms: 0,
        },
        Some("application/json".into()),
        body,
    )
}

async fn time_calls(engine: &Engine, plugin: &Plugin, event: &Event, budget: Duration) -> Duration {
    let limits = StepLimits {
        timeout: Duration::from_secs(5),
        memory: 64 << 20,
        fuel: None,
    };
    let grants = Grants::default();
    let call = |attempt| StepCall {
        execution_id: "bench".into(),
        workflow: "bench",
        step_id: "echo",
        event,
        previous: event.payload_text(),
        config: "{}",
        attempt,
        idempotency_key: "bench:echo".into(),
        grants: &grants,
    };
    // Warm up: first calls touch fresh pool slots.
    for _ in 0..50 {
        let run = engine.run(plugin, call(1), limits).await;
        assert!(run.result.is_ok(), "echo failed: {:?}", run.result);
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        for _ in 0..50 {
            let _ = engine.run(plugin, call(1), limits).await;
        }
        n += 50;
    }
    start.elapsed() / n
}

/// Instantiate + call of `echo`, pooling vs on-demand, then by payload size.
pub async fn wasm(echo_wasm: &Path, budget: Duration) -> anyhow::Result<Vec<Timing>> {
    let wasm = std::fs::read(echo_wasm)?;
    let mut out = Vec::new();
    for pooling in [true, false] {
        let engine = Engine::new(EnginePolicy {
            pooling,
            ..EnginePolicy::default()
        })?;
        let plugin = engine.load(wasm.clone()).await?;
        let sizes: &[usize] = if pooling { &[0, 1024, 64 * 1024] } else { &[0] };
        for &size in sizes {
            let per_op = time_calls(&engine, &plugin, &event(size), budget).await;
            out.push(Timing {
                label: format!(
                    "echo instantiate + call, {}, {} payload",
                    if pooling { "pooling" } else { "on-demand" },
                    human(size)
                ),
                per_op,
                ops_per_sec: 1.0 / per_op.as_secs_f64(),
            });
        }
    }
    Ok(out)
}

fn human(n: usize) -> String {
    match n {
        0 => "0 B".into(),
        n if n % 1024 == 0 => format!("{} KiB", n / 1024),
        n => format!("{n} B"),
    }
}

pub(crate) fn record(body_len: usize) -> (Execution, Bytes) {
    let event = event(body_len);
    let step = StepRecord {
        id: "echo".into(),
        plugin: "plugins/echo.wasm".into(),
        plugin_digest: "0".repeat(64),
        status: StepStatus::Pending,
        attempts: Vec::new(),
    };
    let execution = Execution::queued("bench", "webhook", &event, vec![step]);
    (execution, event.body)
}

/// Execution records per second with `Durability::Immediate`: one writer
/// at a time, then several at once, whose records the store's writer
/// thread commits together (group commit), as concurrent webhooks do.
pub async fn store(dir: &Path, budget: Duration) -> anyhow::Result<Vec<Timing>> {
    let store = Store::open(&dir.join("micro.redb"))?;
    let mut out = Vec::new();
    for batch in [1usize, 8, 64, 256] {
        // Only the commits are timed, not building the records.
        let mut elapsed = Duration::ZERO;
        let mut n = 0usize;
        while elapsed < budget || n == 0 {
            let records: Vec<_> = (0..batch).map(|_| record(1024)).collect();
            let t = Instant::now();
            let mut writers = tokio::task::JoinSet::new();
            for (execution, body) in records {
                let store = store.clone();
                writers.spawn(async move { store.put_new(&execution, body, None).await });
            }
            while let Some(done) = writers.join_next().await {
                done??;
            }
            elapsed += t.elapsed();
            n += batch;
        }
        out.push(Timing {
            label: format!(
                "store: {} concurrent writer{} (group commit, 1 KiB body)",
                batch,
                if batch == 1 { "" } else { "s" }
            ),
            per_op: elapsed / u32::try_from(n).unwrap_or(u32::MAX),
            ops_per_sec: n as f64 / elapsed.as_secs_f64(),
        });
    }
    Ok(out)
}

/// Median and worst of `rounds` 4 KiB write + fdatasync pairs in `dir`.
pub fn fsync_latency(dir: &Path, rounds: usize) -> anyhow::Result<(Duration, Duration)> {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("fsync.probe"))?;
    let block = [7u8; 4096];
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok((samples[rounds / 2], samples[rounds - 1]))
}
