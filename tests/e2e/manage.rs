//! Acting on runs and workflows (issue 13, items 3 and 4): the executions
//! list by every filter, paged by cursor while executions arrive; cancel,
//! replay and test runs; workflows enabled and disabled, durably.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::events::SseReader;
use crate::support::{ADMIN_TOKEN, Go, Manifest, Server, Workdir, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `POST path` with the admin token and a JSON body; the status and body.
async fn admin_post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let r = server
        .post(path)
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .go()
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The ids a listing with `query` returns (one page of up to 500).
async fn ids(server: &Server, query: &str) -> Vec<String> {
    let (status, page) = server
        .api(&format!("/api/v1/executions?{query}&limit=500"))
        .await;
    assert_eq!(status, 200, "{query}: {page}");
    crate::support::execution_ids(&page)
}

async fn send(server: &Server, path: &str, n: u64) -> String {
    let r = server.post_json(path, &json!({"n": n})).await;
    assert_eq!(r.status(), 202);
    let ack: Value = r.json().await.unwrap();
    ack["execution_id"].as_str().unwrap().to_string()
}

async fn run_for(server: &Server, workflow: &str, user: &str) -> String {
    let (status, ack) = admin_post(
        server,
        "/api/v1/run",
        &json!({"workflow": workflow, "user": user, "data": {}}),
    )
    .await;
    assert_eq!(status, 202, "{ack}");
    ack["execution_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn executions_list_by_every_filter_and_page_without_duplicates_or_gaps() {
    let work = Workdir::new();
    work.manifest("a", &one_step("a", "async", NONE, "echo", "{}"))
        .manifest("b", &one_step("b", "async", NONE, "echo", "{}"))
        .manifest("c", &one_step("c", "async", NONE, "fail", "{}"));
    let server = work.start();

    let mut a = Vec::new();
    for n in 0..10 {
        a.push(send(&server, "/hooks/a", n).await);
    }
    let mut u1 = Vec::new();
    for _ in 0..4 {
        u1.push(run_for(&server, "b", "u1").await);
    }
    // A time bound between two batches (ids carry the millisecond).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let middle = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut u2 = Vec::new();
    for _ in 0..3 {
        u2.push(run_for(&server, "b", "u2").await);
    }
    let mut c = Vec::new();
    for n in 0..2 {
        c.push(send(&server, "/hooks/c", n).await);
    }
    for id in a.iter().chain(&u1).chain(&u2).chain(&c) {
        server.wait_finished(id, Duration::from_secs(20)).await;
    }
    let newest_first = |v: &[&Vec<String>]| -> Vec<String> {
        let mut all: Vec<String> = v.iter().flat_map(|x| x.iter().cloned()).collect();
        all.sort();
        all.reverse();
        all
    };
    assert_eq!(ids(&server, "workflow=a").await, newest_first(&[&a]));
    assert_eq!(ids(&server, "status=failed").await, newest_first(&[&c]));
    assert_eq!(ids(&server, "trigger=api").await, newest_first(&[&u1, &u2]));
    assert_eq!(
        ids(&server, "trigger=webhook&status=succeeded").await,
        newest_first(&[&a])
    );
    assert_eq!(ids(&server, "user=u1").await, newest_first(&[&u1]));
    assert_eq!(
        ids(&server, "workflow=b&user=u2").await,
        newest_first(&[&u2])
    );
    assert_eq!(
        ids(&server, &format!("since={middle}")).await,
        newest_first(&[&u2, &c])
    );
    assert_eq!(
        ids(&server, &format!("until={middle}")).await,
        newest_first(&[&a, &u1])
    );
    assert_eq!(
        ids(&server, &format!("workflow=b&since={middle}")).await,
        newest_first(&[&u2])
    );
    let rfc3339 = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(middle));
    assert_eq!(
        ids(&server, &format!("since={rfc3339}")).await,
        newest_first(&[&u2, &c])
    );
    assert!(ids(&server, "user=nobody").await.is_empty());
    for bad in ["since=yesterday", "status=done", "cursor=x"] {
        let (status, body) = server.api(&format!("/api/v1/executions?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Paged three at a time while new executions arrive between pages:
    // every execution there when paging began comes exactly once.
    let before: HashSet<String> = ids(&server, "").await.into_iter().collect();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = server
            .api(&format!("/api/v1/executions?limit=3{cursor}"))
            .await;
        assert_eq!(status, 200);
        for e in page["executions"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_string());
        }
        send(&server, "/hooks/a", 99).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a page repeated an execution");
    assert!(before.is_subset(&unique), "a page missed an execution");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first across pages");
}

#[tokio::test]
async fn cancel_stops_a_looping_step_and_replay_and_test_runs_are_linked() {
    let work = Workdir::new();
    let looping = Manifest::new("spin", NONE)
        .trigger("mode", "\"async\"")
        .step_with("fail", r#"{ mode = "loop" }"#, &["timeout = \"60s\""])
        .step("echo", "{}")
        .to_string();
    work.manifest("spin", &looping)
        .manifest("echo", &one_step("echo", "async", NONE, "echo", "{}"))
        .manifest("now", &one_step("now", "sync", NONE, "echo", "{}"));
    let server = work.start();

    // Cancel, while the step spins (its start seen on the event stream).
    let r = server.post_json("/hooks/spin", &json!({"spin": 1})).await;
    let ack: Value = r.json().await.unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    let stream = server
        .client
        .get(server.url(ack["stream_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let mut events = SseReader::new(stream);
    assert_eq!(events.next().await.unwrap().event, "step_started");
    let (status, body) = admin_post(
        &server,
        &format!("/api/v1/executions/{id}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(
        status, 200,
        "the step stopped within the cancel's wait: {body}"
    );
    assert_eq!(body["status"], "cancelled");
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(record["status"], "cancelled", "{record}");
    let spun = &record["steps"][0];
    assert_eq!(spun["status"], "cancelled");
    assert_eq!(spun["attempts"][0]["error"]["kind"], "cancelled");
    assert_eq!(record["steps"][1]["status"], "cancelled");
    assert!(
        record["steps"][1]["attempts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The stream ends with the final state.
    let mut last = None;
    while let Some(e) = events.next().await {
        last = Some(e);
    }
    let last = last.unwrap();
    assert_eq!(
        (last.event.as_str(), &last.data["status"]),
        ("finished", &json!("cancelled"))
    );
    // Once ended, a cancel is refused; an unknown one is not found.
    let (status, _) = admin_post(
        &server,
        &format!("/api/v1/executions/{id}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = admin_post(
        &server,
        &format!("/api/v1/executions/{}/cancel", uuid::Uuid::now_v7()),
        &json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, list) = server.api("/api/v1/executions?status=cancelled").await;
    assert_eq!(
        (status, list["executions"][0]["id"].clone()),
        (200, json!(id))
    );

    // Replay: the stored event again, a new execution linked to it.
    let original = send(&server, "/hooks/echo", 7).await;
    server
        .wait_finished(&original, Duration::from_secs(10))
        .await;
    let (status, ack) = admin_post(
        &server,
        &format!("/api/v1/executions/{original}/replay"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 202, "{ack}");
    let again = ack["execution_id"].as_str().unwrap();
    assert_ne!(again, original);
    let replayed = server.wait_finished(again, Duration::from_secs(10)).await;
    assert_eq!(replayed["status"], "succeeded");
    assert_eq!(replayed["replay_of"], original.as_str());
    assert_eq!(replayed["trigger"], "replay");
    assert_eq!(replayed["payload"], json!({"n": 7}));
    assert_eq!(replayed["output"], json!({"n": 7}));

    // A test run with a JSON body: the workflow's own answer.
    let (status, body) = admin_post(
        &server,
        "/api/v1/workflows/now/test",
        &json!({"test": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"], json!({"test": true}));
    let test_id = body["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{test_id}")).await;
    assert_eq!(record["trigger"], "test");
    let (status, _) = admin_post(&server, "/api/v1/workflows/nope/test", &json!({})).await;
    assert_eq!(status, 404);
    let not_json = server
        .post("/api/v1/workflows/now/test")
        .bearer_auth(ADMIN_TOKEN)
        .body("{not json")
        .go()
        .await;
    assert_eq!(not_json.status(), 400);
    // None of these without the admin token.
    for path in [
        format!("/api/v1/executions/{original}/replay"),
        format!("/api/v1/executions/{original}/cancel"),
        "/api/v1/workflows/now/test".to_string(),
    ] {
        let r = server.post(&path).json(&json!({})).go().await;
        assert_eq!(r.status(), 401, "{path}");
    }
    assert_eq!(
        ids(&server, "trigger=test").await,
        vec![test_id.to_string()]
    );
}

/// The status a webhook to `path` gets.
async fn status(server: &Server, path: &str) -> u16 {
    server.post_json(path, &json!({})).await.status().as_u16()
}

/// The `enabled` the workflows API shows for `name`, and its version.
async fn shown(server: &Server, name: &str) -> (Value, String) {
    let (_, all) = server.api("/api/v1/workflows").await;
    let entry = all["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {all}"));
    (
        entry["enabled"].clone(),
        entry["version"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn workflows_are_enabled_and_disabled_across_reloads_and_restarts() {
    let work = Workdir::new();
    work.manifest("on", &one_step("on", "async", NONE, "echo", "{}"));
    let off = format!(
        "enabled = false\n{}",
        one_step("off", "async", NONE, "echo", "{}")
    );
    work.manifest("off", &off);
    let mut server = work.start();
    assert_eq!(status(&server, "/hooks/on").await, 202);
    assert_eq!(status(&server, "/hooks/off").await, 422);

    let (code, body) = admin_post(&server, "/api/v1/workflows/on/disable", &json!({})).await;
    assert_eq!((code, body), (200, json!({"name": "on", "enabled": false})));
    let (code, _) = admin_post(&server, "/api/v1/workflows/off/enable", &json!({})).await;
    assert_eq!(code, 200);
    let (code, _) = admin_post(&server, "/api/v1/workflows/nope/enable", &json!({})).await;
    assert_eq!(code, 404);
    let r = server
        .post("/api/v1/workflows/on/enable")
        .json(&json!({}))
        .go()
        .await;
    assert_eq!(r.status(), 401);
    let check = async |server: &Server| {
        assert_eq!(status(server, "/hooks/on").await, 422);
        assert_eq!(status(server, "/hooks/off").await, 202);
        assert_eq!(shown(server, "on").await.0, json!(false));
        assert_eq!(shown(server, "off").await.0, json!(true));
    };
    check(&server).await;

    // A reload (the manifest changed) keeps the API's choice.
    let before = shown(&server, "on").await.1;
    work.manifest(
        "on",
        &format!("# edited\n{}", one_step("on", "async", NONE, "echo", "{}")),
    );
    let start = std::time::Instant::now();
    while shown(&server, "on").await.1 == before {
        assert!(start.elapsed() < Duration::from_secs(30), "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&server).await;

    // So does a restart.
    server.stop();
    server = work.start();
    check(&server).await;

    let (code, _) = admin_post(&server, "/api/v1/workflows/on/enable", &json!({})).await;
    assert_eq!(code, 200);
    assert_eq!(status(&server, "/hooks/on").await, 202);
}
