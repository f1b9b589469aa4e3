//! What the fault issue found, each tested for what a sender sees: nothing
//! acknowledged or recorded is lost, stuck or run twice.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Server, Workdir, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

/// Executions of `workflow` listed by the API, with their states.
async fn states(server: &Server, workflow: &str) -> Vec<String> {
    let (_, page) = server
        .api(&format!("/api/v1/executions?workflow={workflow}&limit=500"))
        .await;
    page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_string())
        .collect()
}

/// Finding 1: a sender that hangs up while its event commits must not
/// leave a recorded execution that never runs.
#[tokio::test]
async fn orphaned_executions_run_after_the_sender_hangs_up() {
    let work = Workdir::new();
    work.manifest("gone", &one_step("gone", "async", NONE, "echo", "{}"));
    let server = work.start();
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = r#"{"n":1}"#;
    let request = format!(
        "POST /hooks/gone HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Each sender writes a whole request and hangs up before the answer
    // (which comes only after the commit): some at once, which the server
    // may see before it reads the event (nothing is recorded then), the
    // rest after a pause of up to a quarter second, while or after the
    // event commits, so that a slow or a fast machine records some.
    let pauses = [0, 1, 5, 20, 100, 250];
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let (addr, request) = (addr.clone(), request.clone());
            std::thread::spawn(move || {
                for n in 0..40 {
                    let mut s = TcpStream::connect(&addr).unwrap();
                    s.write_all(request.as_bytes()).unwrap();
                    let pause = pauses[(sender + n) % pauses.len()];
                    std::thread::sleep(Duration::from_millis(pause));
                    drop(s);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    // Whatever was recorded must run to the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states = states(&server, "gone").await;
        let open = states
            .iter()
            .filter(|s| *s == "queued" || *s == "running")
            .count();
        // Recording may still be under way when the senders are done:
        // wait until something is recorded and nothing is open.
        if open == 0 && !states.is_empty() {
            assert!(states.iter().all(|s| s == "succeeded"), "{states:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} recorded executions never finished (none recorded: every sender hung up before its event was read)",
            states.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finding 10: a redelivery of a delivery whose execution failed starts a
/// new execution, linked to the failed one, instead of replaying the
/// failure for the whole idempotency window.
#[tokio::test]
async fn failed_sync_deliveries_are_retried_not_replayed() {
    let work = Workdir::new();
    let failing = r#"{ mode = "error", message = "upstream down" }"#;
    work.manifest("flaky", &one_step("flaky", "sync", NONE, "fail", failing))
        .manifest("fine", &one_step("fine", "sync", NONE, "echo", "{}"));
    let server = work.start();
    let deliver = |path: &'static str| {
        server
            .post(path)
            .header("idempotency-key", "delivery-1")
            .json(&serde_json::json!({"n": 1}))
            .send()
    };
    let mut previous: Option<String> = None;
    for _ in 0..3 {
        let r = deliver("/hooks/flaky").await.unwrap();
        assert_eq!(r.status(), 500);
        assert!(r.headers().get("idempotent-replayed").is_none());
        let body: serde_json::Value = r.json().await.unwrap();
        let id = body["execution_id"].as_str().unwrap().to_string();
        let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
        assert_eq!(record["status"], "failed");
        match &previous {
            None => assert!(record.get("retry_of").is_none(), "{record}"),
            Some(p) => {
                assert_ne!(&id, p, "a failed delivery was replayed");
                assert_eq!(record["retry_of"], p.as_str(), "{record}");
            }
        }
        previous = Some(id);
    }
    assert_eq!(states(&server, "flaky").await.len(), 3);

    // A delivery that succeeded is still answered from the record.
    let first = deliver("/hooks/fine").await.unwrap();
    assert_eq!(first.status(), 200);
    let again = deliver("/hooks/fine").await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(states(&server, "fine").await.len(), 1);
}

/// Finding 6: whatever a step returns is capped by bytes: a huge answer
/// body, thousands of headers, a bad status or a huge error text fail the
/// step (or are cut, for error text) with an error naming the limit, and
/// a plugin's error text never reaches the sender.
#[tokio::test]
async fn unbounded_guest_data_is_capped() {
    let work = Workdir::new();
    let hostile = |path: &str, config: &str| {
        crate::support::Manifest::new(path, NONE)
            .trigger("mode", r#""sync""#)
            .section("[limits]\nmemory = \"128MiB\"")
            .step("fail", config)
            .to_string()
    };
    for (name, config) in [
        ("body", r#"{ mode = "big-response", bytes = 8388608 }"#),
        ("headers", r#"{ mode = "big-response", headers = 10000 }"#),
        ("status", r#"{ mode = "big-response", status = 1000 }"#),
        ("error", r#"{ mode = "big-error", bytes = 8388608 }"#),
        (
            "fine",
            r#"{ mode = "big-response", bytes = 1000, headers = 3 }"#,
        ),
    ] {
        work.manifest(name, &hostile(name, config));
    }
    let server = work.start();
    for (path, limit) in [
        ("/hooks/body", "response body"),
        ("/hooks/headers", "response headers"),
        ("/hooks/status", "status"),
    ] {
        let r = server.post_json(path, &serde_json::json!({})).await;
        let body = crate::support::error_body(r, 500, "workflow-failed").await;
        let id = body["execution_id"].as_str().unwrap();
        let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
        let error = &record["steps"][0]["attempts"][0]["error"];
        assert_eq!(error["kind"], "permanent", "{path}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(limit),
            "{path}: {error}"
        );
    }

    let r = server
        .post_json("/hooks/error", &serde_json::json!({}))
        .await;
    let text = r.text().await.unwrap();
    assert!(text.len() < 1024, "the 500 carries {} bytes", text.len());
    assert!(
        !text.contains("eeee"),
        "plugin text reached the sender: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = body["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    let message = record["steps"][0]["attempts"][0]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.starts_with("eeee"), "the record keeps the text");
    assert!(
        message.len() <= 8 * 1024,
        "kept {} bytes of error text",
        message.len()
    );
    assert!(
        message.contains("bytes cut"),
        "{}",
        &message[message.len() - 60..]
    );

    // Within the caps, the answer is the step's.
    let r = server
        .post_json("/hooks/fine", &serde_json::json!({}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-h2"], "v");
    assert_eq!(r.bytes().await.unwrap().len(), 1000);
}

/// Finding 8: an execution that never finishes across restarts (as if it
/// crashed the server each time) is resumed `--max-resumes` times, then
/// ends `failed` with an error that says why, instead of crash-looping.
#[tokio::test]
async fn a_crash_looping_execution_fails_after_its_resumes() {
    let work = Workdir::new();
    let sleepy = crate::support::Manifest::new("sleepy", NONE)
        .step_with(
            "fail",
            r#"{ mode = "sleep", ms = 5000 }"#,
            &[r#"timeout = "10s""#],
        )
        .to_string();
    work.manifest("sleepy", &sleepy);
    let env = [("HOOKFLOW_MAX_RESUMES", "1")];
    let server = work.start_env(&env);
    let r = server
        .post_json("/hooks/sleepy", &serde_json::json!({}))
        .await;
    assert_eq!(r.status(), 202);
    let ack: serde_json::Value = r.json().await.unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    // Killed mid-step, twice: the first restart resumes it, the second
    // gives up on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let server = work.start_env(&env);
    // Resuming runs in the background once the server listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
        if record["resumes"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never resumed: {record}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    let server = work.start_env(&env);
    let done = server.wait_finished(&id, Duration::from_secs(5)).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("resumed 1 time(s)"), "{error}");
    // The server goes on serving.
    let r = server
        .post_json("/hooks/sleepy", &serde_json::json!({}))
        .await;
    assert_eq!(r.status(), 202);
}

/// Finding 11: the database's size is in `/metrics` (the retention itself
/// is the store's `the_disk_does_not_fill_old_executions_are_pruned`).
#[tokio::test]
async fn the_disk_does_not_fill_database_size_is_in_metrics() {
    let work = Workdir::new();
    work.manifest("w", &one_step("w", "async", NONE, "echo", "{}"));
    let server = work.start_env(&[("HOOKFLOW_RETENTION", "1h")]);
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let size: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hookflow_database_bytes "))
        .unwrap_or_else(|| panic!("no database size in:\n{text}"))
        .parse()
        .unwrap();
    let on_disk = std::fs::metadata(work.db()).unwrap().len() as f64;
    assert_eq!(size, on_disk);
}

/// Finding 11: a server started with a short `--retention` deletes the
/// finished executions older than it, in the background, at start.
#[tokio::test]
async fn the_disk_does_not_fill_executions_past_the_retention_go() {
    let work = Workdir::new();
    work.manifest("w", &one_step("w", "sync", NONE, "echo", "{}"));
    let server = work.start();
    let r = server.post_json("/hooks/w", &serde_json::json!({})).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["execution_id"].as_str().unwrap().to_string();
    server.stop();

    tokio::time::sleep(Duration::from_millis(20)).await;
    let server = work.start_env(&[("HOOKFLOW_RETENTION", "10ms")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = server.api(&format!("/api/v1/executions/{id}")).await;
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "execution {id} still kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finding 7: a plugin whose `describe()` blocks inside a host call (where
/// epoch interruption cannot reach) is refused at load after a timeout,
/// instead of hanging `check` and `serve`.
#[test]
fn one_plugin_draining_the_pool_never_describing_itself_is_refused_at_load() {
    let work = Workdir::new();
    work.manifest("stall", &one_step("stall", "async", NONE, "stall", "{}"))
        .manifest("fine", &one_step("fine", "async", NONE, "echo", "{}"));
    let started = Instant::now();
    let out = crate::support::hookflow()
        .arg("check")
        .arg(work.dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("plugin `plugins/stall.wasm`: the plugin failed when asked to describe itself: it did not answer within 5s"),
        "{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "check took {:?}",
        started.elapsed()
    );
}

/// Graceful shutdown: once SIGTERM arrives, a new webhook gets `503` with
/// `Retry-After` while the request already in flight finishes with its
/// answer, and then the process exits.
#[tokio::test]
async fn graceful_shutdown_answers_503_while_requests_in_flight_finish() {
    let work = Workdir::new();
    let slow = crate::support::Manifest::new("slow", NONE)
        .trigger("mode", r#""sync""#)
        .step("fail", r#"{ mode = "sleep", ms = 1500 }"#)
        .to_string();
    work.manifest("slow", &slow)
        .manifest("quick", &one_step("quick", "sync", NONE, "echo", "{}"));
    let server = work.start();
    let ready = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.unwrap().status().as_u16()
    };
    assert_eq!(
        ready(reqwest::Client::new(), server.url("/readyz")).await,
        200
    );
    let in_flight = tokio::spawn(
        server
            .client
            .post(server.url("/hooks/slow"))
            .json(&serde_json::json!({"n": 1}))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new connection, as a new sender's would be.
    let r = reqwest::Client::new()
        .post(server.url("/hooks/quick"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "5");
    crate::support::error_body(r, 503, "unavailable").await;
    // Readiness goes, so a balancer stops sending; liveness stays.
    assert_eq!(
        ready(reqwest::Client::new(), server.url("/readyz")).await,
        503
    );
    assert_eq!(
        ready(reqwest::Client::new(), server.url("/healthz")).await,
        200
    );
    let done = in_flight.await.unwrap().unwrap();
    assert_eq!(done.status(), 200, "the request in flight finished");
    server.wait_exit();
}

/// Finding 5: admission counts the bytes of waiting work, not only
/// executions: past `--max-queued-bytes` of unfinished bodies, new events
/// get `503` until work drains.
#[tokio::test]
async fn waiting_work_is_bounded_by_bytes() {
    let work = Workdir::new();
    let slow = crate::support::Manifest::new("slow", NONE)
        .trigger("max_body", r#""2MiB""#)
        .step("fail", r#"{ mode = "sleep", ms = 1000 }"#)
        .section("[limits]\nconcurrency = 1")
        .to_string();
    work.manifest("slow", &slow);
    let server = work.start_env(&[("HOOKFLOW_MAX_QUEUED_BYTES", "2MiB")]);
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(1 << 20));
    let send = || {
        server
            .post("/hooks/slow")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    let statuses = [
        send().await.unwrap().status().as_u16(),
        send().await.unwrap().status().as_u16(),
        send().await.unwrap().status().as_u16(),
    ];
    assert_eq!(statuses, [202, 202, 503], "two 1 MiB bodies fill 2 MiB");
    let r = send().await.unwrap();
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.status(), 503);
    // Once the waiting work has run, there is room again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = send().await.unwrap().status().as_u16();
        if status == 202 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no room came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets the largest file the server's process may write (its soft
/// `RLIMIT_FSIZE`, what `ulimit -f` sets): past it a write fails with
/// `EFBIG`, as it would on a full disk.
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: `limit` is a valid `rlimit`; the old value is not asked for.
    let rc = unsafe {
        libc::prlimit(
            pid,
            libc::RLIMIT_FSIZE,
            &raw const limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Finding 3 and the storage faults: once writes fail (the running
/// server's file-size limit set below its database's size, so every commit
/// fails as on a full disk), webhooks get `503` and `/readyz` says so while
/// `/healthz` stays ok; an execution running then loses none of its
/// results; once writes work again the same process reopens its store and
/// accepts and finishes work, without a restart.
#[tokio::test]
async fn a_store_that_never_heals_reopens_once_writes_work() {
    let work = Workdir::new();
    let slow = crate::support::Manifest::new("slow", NONE)
        .trigger("max_body", r#""2MiB""#)
        .step("fail", r#"{ mode = "sleep", ms = 1500 }"#)
        .to_string();
    let slow_sync = crate::support::Manifest::new("slow-sync", NONE)
        .trigger("mode", "\"sync\"")
        .step("fail", r#"{ mode = "sleep", ms = 1500 }"#)
        .to_string();
    work.manifest("slow", &slow)
        .manifest("slow-sync", &slow_sync)
        .manifest("quick", &one_step("quick", "sync", NONE, "echo", "{}"));
    // The log is a file on the same failing disk, already past the limit:
    // a log line that cannot be written must not stop anything.
    let log = work.dir().join("server.log");
    std::fs::write(&log, vec![b'.'; 8192]).unwrap();
    let server = work.start_logging_to(&log);
    let before = server
        .post_json("/hooks/quick", &serde_json::json!({"n": 0}))
        .await;
    assert_eq!(before.status(), 200);
    let running = server
        .post_json("/hooks/slow", &serde_json::json!({"n": 1}))
        .await;
    assert_eq!(running.status(), 202);
    let running: serde_json::Value = running.json().await.unwrap();
    let running = running["execution_id"].as_str().unwrap().to_string();
    // A sync sender waiting when the disk fails: answered only once its
    // final record is committed, after the outage.
    let waiting = tokio::spawn(
        server
            .post("/hooks/slow-sync")
            .json(&serde_json::json!({"n": 9}))
            .send(),
    );
    // Only once it is recorded does the disk fail.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = server.api("/api/v1/executions?workflow=slow-sync").await;
        if page["executions"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sync event was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    limit_file_size(server.pid(), Some(4096));
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(1 << 20));
    let refused = server
        .post("/hooks/slow")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        server.status_of("/readyz").await,
        503,
        "/readyz while writes fail"
    );
    assert_eq!(
        server.status_of("/healthz").await,
        200,
        "/healthz is liveness only"
    );
    let small = server
        .post_json("/hooks/quick", &serde_json::json!({"n": 2}))
        .await;
    assert_eq!(
        small.status(),
        503,
        "no event is acknowledged while writes fail"
    );
    // The running execution's step ends during the outage; its results
    // wait for the store instead of being dropped.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        server.status_of("/readyz").await,
        503,
        "still failing: not ready"
    );
    assert!(
        !waiting.is_finished(),
        "a sync sender was answered during the outage"
    );

    limit_file_size(server.pid(), None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.status_of("/readyz").await != 200 {
        assert!(Instant::now() < deadline, "the store never reopened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished = server
        .wait_finished(&running, Duration::from_secs(20))
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["steps"][0]["status"], "succeeded", "{finished}");
    let answer = waiting.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    let id = answer["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(
        record["status"], "succeeded",
        "answered 200 before the record: {record}"
    );
    let after = server
        .post_json("/hooks/quick", &serde_json::json!({"n": 3}))
        .await;
    assert_eq!(after.status(), 200);
    let big = server
        .post("/hooks/slow")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 202);
    let big: serde_json::Value = big.json().await.unwrap();
    let big = server
        .wait_finished(
            big["execution_id"].as_str().unwrap(),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(big["status"], "succeeded", "{big}");
    assert_eq!(states(&server, "quick").await, ["succeeded", "succeeded"]);
    assert_eq!(states(&server, "slow").await.len(), 2);
}

/// Opens a connection to `addr` and sends a request head for `path`
/// announcing `length` body bytes, then `sent` of them, and holds it.
async fn trickle(addr: &str, path: &str, length: usize, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\nx-hub-signature-256: sha256=00\r\ncontent-length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; sent]).await.unwrap();
    s
}

/// The status line's code of whatever `stream` has been sent, if anything
/// arrives within `within`.
async fn answered(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => std::str::from_utf8(&buf[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

/// Finding 4: strangers trickling bodies to a signed workflow hold that
/// workflow's receiving room (`limits.max_receiving`) and nothing else: past
/// it they get `503` at once, and authenticated senders to other workflows,
/// signed or not, are served, even with every place among the requests in
/// flight that the strangers could have taken.
#[tokio::test]
async fn strangers_holding_every_slot_deny_only_their_own_workflow() {
    use hmac::{Hmac, Mac};
    let secret = "It's a Secret to Everybody";
    let work = Workdir::new();
    let signed = |path: &str| {
        crate::support::Manifest::new(path, r#"{ kind = "github", secrets = ["file:gh"] }"#)
            .trigger("mode", "\"sync\"")
            .trigger("max_body", r#""1MiB""#)
            .step("echo", "{}")
            .section("[limits]\nmax_receiving = \"4MiB\"")
            .to_string()
    };
    work.file("gh", secret)
        .manifest("target", &signed("target"))
        .manifest("other", &signed("other"))
        .manifest(
            "open",
            &one_step(
                "open",
                "sync",
                r#"{ kind = "bearer", secrets = ["file:gh"] }"#,
                "echo",
                "{}",
            ),
        );
    let server = work.start_env(&[("HOOKFLOW_MAX_IN_FLIGHT", "4")]);
    let addr = server.base.trim_start_matches("http://").to_string();

    // Twelve strangers announce 1 MiB each and trickle: four fit the
    // target's 4 MiB of room and are held; the rest are refused at once.
    let mut strangers = Vec::new();
    for _ in 0..12 {
        strangers.push(trickle(&addr, "/hooks/target", 1 << 20, 10).await);
    }
    let mut refused = 0;
    let mut held = 0;
    for s in &mut strangers {
        match answered(s, Duration::from_millis(500)).await {
            Some(503) => refused += 1,
            None => held += 1,
            Some(other) => panic!("a stranger got {other}"),
        }
    }
    assert_eq!((held, refused), (4, 8));

    // Others are served: a signed delivery to another workflow, and a
    // bearer one, several at once (more than the four in-flight places
    // the strangers would have held before).
    let body = r#"{"n":1}"#;
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
    let sends = (0..3).map(|_| {
        server
            .post("/hooks/other")
            .header("x-hub-signature-256", &signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
    });
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(
            r.unwrap().status(),
            200,
            "a signed sender to another workflow"
        );
    }
    let r = server
        .post("/hooks/open")
        .bearer_auth(secret)
        .json(&serde_json::json!({"n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a bearer sender to another workflow");
    // The target itself is full until the strangers go (a limit of
    // signatures: a stranger is known only once its body is read).
    let r = server
        .post("/hooks/target")
        .header("x-hub-signature-256", &signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    drop(strangers);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server
            .post("/hooks/target")
            .header("x-hub-signature-256", &signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the room never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finding 4: connections are capped. Past `--max-connections`, a new
/// connection waits unanswered until one closes, then is served.
#[tokio::test]
async fn strangers_holding_every_slot_are_capped_by_connections() {
    let work = Workdir::new();
    work.manifest("quick", &one_step("quick", "sync", NONE, "echo", "{}"));
    let server = work.start_env(&[("HOOKFLOW_MAX_CONNECTIONS", "4")]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(trickle(&addr, "/hooks/quick", 100, 1).await);
    }
    let mut waiting = tokio::net::TcpStream::connect(&addr).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let request = format!(
            "POST /hooks/quick HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        waiting.write_all(request.as_bytes()).await.unwrap();
    }
    assert_eq!(
        answered(&mut waiting, Duration::from_millis(500)).await,
        None,
        "served past the connection cap"
    );
    drop(holders.pop());
    assert_eq!(
        answered(&mut waiting, Duration::from_secs(10)).await,
        Some(200)
    );
}

/// Finding 5: executions waiting for a running place keep their bodies in
/// the store, not in memory. 250 accepted 1 MiB events wait behind a slow
/// step (`concurrency = 1`); the server's resident memory grows by no more
/// than the database's page cache (`--db-cache`, 64 MiB by default) and a
/// margin of 64 MiB, not by their bodies (it grew by about 3.5 MB per
/// waiting execution before), and each reads its body back when it runs.
/// After a restart, resuming them does not load their bodies either.
#[tokio::test]
async fn waiting_work_held_in_memory_stays_in_the_store() {
    let work = Workdir::new();
    let slow = crate::support::Manifest::new("slow", NONE)
        .trigger("max_body", r#""2MiB""#)
        .step("fail", r#"{ mode = "sleep", ms = 5000 }"#)
        .step("echo", "{}")
        .section("[limits]\nconcurrency = 1")
        .to_string();
    work.manifest("slow", &slow);
    let server = work.start();
    let body = |i: usize| format!("{{\"i\":{i},\"data\":\"{}\"}}", "x".repeat(1 << 20));
    let send = |i: usize| {
        server
            .post("/hooks/slow")
            .header("content-type", "application/json")
            .body(body(i))
            .send()
    };
    // Warm up allocator and engine with the first, running one.
    assert_eq!(send(0).await.unwrap().status(), 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.resident().0;
    let waiting = 250;
    for i in 1..=waiting {
        assert_eq!(send(i).await.unwrap().status(), 202);
    }
    let grown = server.resident().0.saturating_sub(before);
    eprintln!(
        "{waiting} waiting 1 MiB events: resident memory grew by {} MiB",
        grown >> 20
    );
    assert!(
        grown < (64 + 64) << 20,
        "{waiting} waiting 1 MiB events grew resident memory by {grown} bytes"
    );

    // After a restart, they resume without their bodies loaded at once;
    // the first ones run, each with its own body.
    let succeeded = crate::support::execution_ids;
    let (_, page) = server
        .api("/api/v1/executions?workflow=slow&status=succeeded")
        .await;
    let finished_before = succeeded(&page);
    server.kill();
    let server = work.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (_, page) = server
            .api("/api/v1/executions?workflow=slow&status=succeeded&limit=5")
            .await;
        let resumed = succeeded(&page)
            .into_iter()
            .find(|id| !finished_before.contains(id));
        if let Some(id) = resumed {
            break id;
        }
        assert!(Instant::now() < deadline, "nothing resumed finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // By now every one of them was resumed (in the background, once the
    // server listened) and waits again for its place.
    let resumed = server.resident().0;
    eprintln!("after resuming {waiting}: resident {} MiB", resumed >> 20);
    assert!(
        resumed < before + ((64 + 64) << 20),
        "resuming {waiting} executions took resident memory to {resumed} bytes"
    );
    let (_, record) = server.api(&format!("/api/v1/executions/{done}")).await;
    assert!(
        record["resumes"].as_u64() >= Some(1),
        "{}",
        record["resumes"]
    );
    let output = &record["output"];
    assert_eq!(
        output["data"].as_str().unwrap().len(),
        1 << 20,
        "its own body"
    );
}

/// Progress written without an fsync of its own (a step's result, the end
/// of an async execution) is durable within the store's flush window, and
/// at once on a clean stop: an execution that finished before a `kill -9`
/// taken after the window, or before a SIGTERM, is not run again.
#[tokio::test]
async fn progress_without_its_own_fsync_is_durable_within_the_window() {
    let work = Workdir::new();
    work.manifest("later", &one_step("later", "async", NONE, "echo", "{}"));
    let finished = async |server: &Server| {
        let r = server
            .post_json("/hooks/later", &serde_json::json!({"n": 1}))
            .await;
        assert_eq!(r.status(), 202);
        let ack: serde_json::Value = r.json().await.unwrap();
        let id = ack["execution_id"].as_str().unwrap().to_string();
        let done = server.wait_finished(&id, Duration::from_secs(10)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        id
    };
    let untouched = async |server: &Server, id: &str| {
        let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert!(record["resumes"].is_null(), "run again: {record}");
        assert_eq!(record["steps"][0]["attempts"].as_array().unwrap().len(), 1);
    };

    let server = work.start();
    let crashed = finished(&server).await;
    // Five times the window: the end is on disk by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    let server = work.start();
    untouched(&server, &crashed).await;

    let stopped = finished(&server).await;
    server.stop();
    let server = work.start();
    untouched(&server, &stopped).await;
}
