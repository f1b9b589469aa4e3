//! Idempotency keys: concurrent duplicates make exactly one execution;
//! repeats are replayed or refused as the manifest says.

use std::collections::HashSet;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::support::{Go, Manifest, Workdir, error_body, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

/// An async echo workflow at `path` answering repeats as `on_duplicate`.
fn with_duplicate(path: &str, on_duplicate: &str) -> String {
    Manifest::new(path, NONE)
        .trigger("on_duplicate", &format!("\"{on_duplicate}\""))
        .step("echo", "{}")
        .to_string()
}

#[tokio::test]
async fn a_hundred_concurrent_deliveries_make_one_execution() {
    let work = Workdir::new();
    work.manifest("replay", &with_duplicate("replay", "replay"))
        .manifest("conflict", &with_duplicate("conflict", "conflict"));
    let server = work.start();

    let deliveries = (0..100).map(|_| {
        server
            .post("/hooks/replay")
            .header("idempotency-key", "order-42")
            .json(&json!({"order": 42}))
            .go()
    });
    let answers = join_all(deliveries).await;
    let mut ids = HashSet::new();
    let mut replayed = 0;
    for r in answers {
        assert_eq!(r.status(), 202);
        if r.headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
        {
            replayed += 1;
        }
        let body: Value = r.json().await.unwrap();
        ids.insert(body["execution_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "every answer names the same execution");
    assert_eq!(replayed, 99);
    let (_, page) = server.api("/api/v1/executions?workflow=replay").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 1);

    let deliveries = (0..100).map(|_| {
        server
            .post("/hooks/conflict")
            .header("idempotency-key", "order-42")
            .json(&json!({"order": 42}))
            .go()
    });
    let answers = join_all(deliveries).await;
    let mut accepted = Vec::new();
    let mut conflicts = Vec::new();
    for r in answers {
        match r.status().as_u16() {
            202 => accepted.push(r.json::<Value>().await.unwrap()["execution_id"].clone()),
            409 => conflicts.push(error_body(r, 409, "duplicate").await["execution_id"].clone()),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted.len(), 1);
    assert_eq!(conflicts.len(), 99);
    assert!(conflicts.iter().all(|id| *id == accepted[0]));
    let (_, page) = server.api("/api/v1/executions?workflow=conflict").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_sync_replay_answers_the_original_output() {
    let work = Workdir::new();
    work.manifest("s", &one_step("s", "sync", NONE, "echo", "{}"));
    let server = work.start();
    let send = |body: Value| {
        server
            .post("/hooks/s")
            .header("idempotency-key", "k1")
            .json(&body)
            .go()
    };
    let first = send(json!({"v": 1})).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    // Same key, different body: the original answer, not a new run.
    let again = send(json!({"v": 2})).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(again["output"], json!({"v": 1}));
}

#[tokio::test]
async fn without_a_key_nothing_is_deduplicated_and_long_keys_are_refused() {
    let work = Workdir::new();
    work.manifest("p", &one_step("p", "async", NONE, "echo", "{}"));
    let server = work.start();
    // Two identical empty-body pings are two deliveries: no key is derived
    // from the body.
    for _ in 0..2 {
        assert_eq!(server.post("/hooks/p").go().await.status(), 202);
    }
    for key in ["a", "b"] {
        let r = server
            .post("/hooks/p")
            .header("idempotency-key", key)
            .go()
            .await;
        assert_eq!(r.status(), 202);
    }
    let (_, page) = server.api("/api/v1/executions?workflow=p").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 4);
    let r = server
        .post("/hooks/p")
        .header("idempotency-key", "k".repeat(256))
        .go()
        .await;
    error_body(r, 400, "bad-request").await;
}
