//! Steps that fail, trap, loop or hoard memory fail their own execution,
//! visibly, and nothing else.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Manifest, SCHEDULING_SLACK_US, Server, Workdir, error_body, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

async fn run_async(server: &Server, path: &str) -> Value {
    let r = server.post_json(path, &json!({"n": 1})).await;
    assert_eq!(r.status().as_u16(), 202);
    let ack: Value = r.json().await.unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    server.wait_finished(&id, Duration::from_secs(20)).await
}

#[tokio::test]
async fn an_erroring_step_fails_the_execution_with_its_message() {
    let work = Workdir::new();
    work.manifest(
        "err",
        &one_step(
            "err",
            "async",
            NONE,
            "fail",
            r#"{ mode = "error", message = "card declined" }"#,
        ),
    )
    .manifest(
        "errsync",
        &one_step(
            "errsync",
            "sync",
            NONE,
            "fail",
            r#"{ mode = "error", message = "card declined" }"#,
        ),
    );
    let server = work.start();
    let done = run_async(&server, "/hooks/err").await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error"].as_str().unwrap().contains("card declined"),
        "{done}"
    );
    assert_eq!(
        done["steps"][0]["attempts"][0]["error"]["kind"],
        "permanent"
    );

    let r = server.post_json("/hooks/errsync", &json!({})).await;
    let body = error_body(r, 500, "workflow-failed").await;
    let id = body["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(record["status"], "failed");
}

#[tokio::test]
async fn a_trapping_step_fails_with_the_trap_and_panic_message() {
    let work = Workdir::new();
    work.manifest(
        "trap",
        &one_step(
            "trap",
            "async",
            NONE,
            "fail",
            r#"{ mode = "trap", message = "boom at line 7" }"#,
        ),
    );
    let server = work.start();
    let done = run_async(&server, "/hooks/trap").await;
    assert_eq!(done["status"], "failed");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("trapped"), "{error}");
    assert!(error.contains("boom at line 7"), "{error}");
    assert_eq!(done["steps"][0]["attempts"][0]["error"]["kind"], "trap");
}

#[tokio::test]
async fn retryable_errors_are_retried_until_they_pass() {
    let work = Workdir::new();
    work.manifest(
        "flaky",
        r#"
[trigger]
path = "flaky"
auth = { kind = "none" }
[[steps]]
plugin = "plugins/fail.wasm"
config = { mode = "retryable", until_attempt = 3 }
retries = { max = 4, backoff = "10ms" }
"#,
    );
    let server = work.start();
    let done = run_async(&server, "/hooks/flaky").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let attempts = done["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(attempts[0]["error"]["kind"], "retryable");
    assert_eq!(done["output"], json!({"n": 1}));
}

#[tokio::test]
async fn a_looping_step_times_out_while_other_workflows_keep_answering() {
    let work = Workdir::new();
    let looping = |path| {
        Manifest::new(path, NONE)
            .step_with("fail", r#"{ mode = "loop" }"#, &[r#"timeout = "1s""#])
            .to_string()
    };
    work.manifest("loop1", &looping("loop"))
        .manifest("loop2", &looping("loop2"))
        .manifest("quick", &one_step("quick", "sync", NONE, "echo", "{}"));
    let server = work.start();
    let mut ids = Vec::new();
    for path in ["/hooks/loop", "/hooks/loop2"] {
        let r = server.post_json(path, &json!({})).await;
        assert_eq!(r.status().as_u16(), 202);
        let ack: Value = r.json().await.unwrap();
        ids.push(ack["execution_id"].as_str().unwrap().to_string());
    }
    // Two loops hold both cores' worth of wasm; the server still answers.
    for i in 0..5 {
        let r = server.post_json("/hooks/quick", &json!({"i": i})).await;
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["output"], json!({"i": i}));
    }
    for id in ids {
        let done = server.wait_finished(&id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "timed_out", "{done}");
        let attempt = &done["steps"][0]["attempts"][0];
        assert_eq!(attempt["error"]["kind"], "timeout");
        let wall_us = attempt["wall_time_us"].as_u64().unwrap();
        assert!(
            (1_000_000..=1_000_000 + SCHEDULING_SLACK_US).contains(&wall_us),
            "stopped after {wall_us}us"
        );
    }
}

#[tokio::test]
async fn a_memory_hungry_step_hits_its_limit_and_fails() {
    let work = Workdir::new();
    work.manifest(
        "hog",
        r#"
[trigger]
path = "hog"
auth = { kind = "none" }
[[steps]]
plugin = "plugins/fail.wasm"
config = { mode = "alloc" }
[limits]
memory = "16MiB"
"#,
    );
    let server = work.start();
    let done = run_async(&server, "/hooks/hog").await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["steps"][0]["attempts"][0]["error"]["kind"], "memory");
    assert!(
        done["error"].as_str().unwrap().contains("memory limit"),
        "{done}"
    );
    let peak = done["steps"][0]["attempts"][0]["peak_memory_bytes"]
        .as_u64()
        .unwrap();
    // Recorded, and near the cap: the step grew in 1 MiB pieces until the
    // limit refused one.
    assert!((8 << 20..=16 << 20).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn a_flooding_step_has_its_logs_capped() {
    let work = Workdir::new();
    work.manifest(
        "flood",
        &one_step(
            "flood",
            "async",
            NONE,
            "fail",
            r#"{ mode = "flood", bytes = 4194304 }"#,
        ),
    );
    let server = work.start();
    let done = run_async(&server, "/hooks/flood").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let attempt = &done["steps"][0]["attempts"][0];
    let kept: usize = attempt["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(kept <= 64 * 1024, "kept {kept} bytes of logs");
    assert!(attempt["logs_dropped_bytes"].as_u64().unwrap() >= 4_000_000);
}
