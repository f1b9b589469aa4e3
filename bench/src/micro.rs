//! Micro-benchmarks: one wasm step call (instantiate + call) and store
//! commits, as plain timed loops over the library's real types.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookflow::config::{Grants, HostPattern, KvGrant};
use hookflow::engine::{Engine, EnginePolicy, Plugin, StepCall, StepLimits};
use hookflow::execution::{Event, Execution, RequestMeta, StepRecord, StepStatus};
use hookflow::store::Store;

pub struct Timing {
    pub label: String,
    pub per_op: Duration,
    pub ops_per_sec: f64,
}

pub(crate) fn event(payload_len: usize) -> Event {
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

/// A step call as the runner makes it: `config` and `grants` for a step
/// of the workflow `bench`.
pub(crate) struct Call<'a> {
    pub config: &'a str,
    pub grants: &'a Grants,
}

pub(crate) async fn time_calls(
    engine: &Engine,
    plugin: &Plugin,
    event: &Event,
    budget: Duration,
    how: &Call<'_>,
) -> Duration {
    let limits = StepLimits {
        timeout: Duration::from_secs(5),
        memory: 64 << 20,
        fuel: None,
    };
    let call = |attempt| StepCall {
        execution_id: "bench".into(),
        workflow: "bench",
        step_id: "step",
        event,
        previous: event.payload_text(),
        config: how.config,
        attempt,
        idempotency_key: "bench:step".into(),
        grants: how.grants,
        cancel: None,
    };
    // Warm up: first calls touch fresh pool slots.
    for _ in 0..50 {
        let run = engine.run(plugin, call(1), limits).await;
        assert!(run.result.is_ok(), "the step failed: {:?}", run.result);
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
            let echo = Call {
                config: "{}",
                grants: &Grants::default(),
            };
            let per_op = time_calls(&engine, &plugin, &event(size), budget, &echo).await;
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

/// A step of the 0.2.0 world with nothing granted, the same step making
/// one outbound request to a sink on 127.0.0.1, and, as the baseline in
/// the same run, an HTTP client making that request on a new connection
/// (as the step does); then the step incrementing a key-value counter
/// (one durable write to a database in `dir`).
pub async fn capabilities(
    caps_wasm: &Path,
    dir: &Path,
    budget: Duration,
) -> anyhow::Result<Vec<Timing>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let sink = axum::Router::new().fallback(|| async { "ok" });
    let server = tokio::spawn(async move { axum::serve(listener, sink).await });

    let local = HostPattern::parse("127.0.0.1").map_err(anyhow::Error::msg)?;
    let mut policy = EnginePolicy::default();
    policy.http.ceiling = vec![local.clone()].into();
    let engine = Engine::new(policy)?;
    engine.set_kv_backend(std::sync::Arc::new(Store::open(&dir.join("kv.redb"))?));
    let plugin = engine.load(std::fs::read(caps_wasm)?).await?;
    let grants = Grants {
        http: vec![local].into(),
        ..Grants::default()
    };
    let url = format!("http://{addr}/hello");
    let config = format!(r#"{{"requests":[{{"url":"{url}"}}]}}"#);
    let event = event(0);
    let mut out = Vec::new();
    let mut row = |label: &str, per_op: Duration| {
        out.push(Timing {
            label: label.into(),
            per_op,
            ops_per_sec: 1.0 / per_op.as_secs_f64(),
        })
    };
    let nothing = Call {
        config: "{}",
        grants: &Grants::default(),
    };
    row(
        "caps (0.2.0) instantiate + call, nothing granted",
        time_calls(&engine, &plugin, &event, budget, &nothing).await,
    );
    let one = Call {
        config: &config,
        grants: &grants,
    };
    row(
        "caps step making one outbound request to 127.0.0.1",
        time_calls(&engine, &plugin, &event, budget, &one).await,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget || n == 0 {
        let body = client.get(&url).send().await?.bytes().await?;
        assert_eq!(&body[..], b"ok");
        n += 1;
    }
    row(
        "baseline: reqwest, the same request on a new connection",
        start.elapsed() / n,
    );
    let counting = Grants {
        kv: Some(KvGrant {
            bucket: "bench".into(),
            namespace: "workflow/bench".into(),
        }),
        ..Grants::default()
    };
    let increment = Call {
        config: r#"{"increment":"n"}"#,
        grants: &counting,
    };
    row(
        "caps step incrementing a key-value counter (durable write)",
        time_calls(&engine, &plugin, &event, budget, &increment).await,
    );
    server.abort();
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
                writers
                    .spawn(async move { store.put_new(&execution, body, None, Vec::new()).await });
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
