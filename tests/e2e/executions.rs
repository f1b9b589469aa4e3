//! Accepted webhooks become durable executions whose steps run in order.

use std::time::Duration;

use serde_json::json;

use crate::support::{Go, Workdir, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

#[tokio::test]
async fn async_webhook_is_acknowledged_run_and_kept_across_restarts() {
    let work = Workdir::new();
    work.manifest(
        "orders",
        &one_step("shop/orders/new", "async", NONE, "echo", "{}"),
    );
    let server = work.start();

    let payload = json!({"order": 42, "items": ["a", "b"]});
    let r = server.post_json("/hooks/shop/orders/new", &payload).await;
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let ack: serde_json::Value = r.json().await.unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    assert_eq!(ack["status"], "queued");
    assert_eq!(ack["status_url"], location);
    let token = location
        .strip_prefix(&format!("/api/v1/executions/{id}?token="))
        .expect("status_url is the record's URL with its read token");
    assert_eq!(
        ack["stream_url"],
        format!("/api/v1/executions/{id}/events?token={token}")
    );
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let done = server.wait_finished(&id, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["workflow"], "orders");
    assert_eq!(done["payload"], payload);
    assert_eq!(done["output"], payload);
    let step = &done["steps"][0];
    assert_eq!(step["id"], "echo");
    assert_eq!(step["status"], "succeeded");
    assert_eq!(step["attempts"][0]["output"], payload);
    assert_eq!(step["plugin_digest"].as_str().unwrap().len(), 64);
    let logs = step["attempts"][0]["logs"].to_string();
    assert!(
        logs.contains("\"stream\":\"info\""),
        "log import kept: {logs}"
    );
    assert!(logs.contains("echo echo attempt 1"), "stdout kept: {logs}");

    let (status, page) = server.api("/api/v1/executions?workflow=orders").await;
    assert_eq!(status, 200);
    assert_eq!(page["executions"][0]["id"], id.as_str());

    server.stop();
    let again = work.start();
    let (status, kept) = again.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(kept, done, "the record is the same after a restart");
}

#[tokio::test]
async fn sync_webhook_answers_with_the_chained_output() {
    let work = Workdir::new();
    work.manifest(
        "signup",
        r#"
name = "signup"
[trigger]
path = "signup"
mode = "sync"
auth = { kind = "none" }

[[steps]]
id = "pick"
plugin = "plugins/json_map.wasm"
config = { email = "$.contact.email", second = "$.items[1]", tag = "new" }

[[steps]]
plugin = "plugins/echo.wasm"

[[steps]]
id = "shape"
plugin = "plugins/json_map.wasm"
config = { to = "$previous.email", n = "$previous.second", label = "$previous.tag", via = "$request.method", first = "$.items[0]" }
"#,
    );
    let server = work.start();
    let r = server
        .post_json(
            "/hooks/signup",
            &json!({"contact": {"email": "ada@example.com"}, "items": [1, 2]}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "succeeded");
    assert_eq!(
        body["output"],
        json!({"to": "ada@example.com", "n": 2, "label": "new", "via": "POST", "first": 1})
    );
    let id = body["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    let steps = record["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(
        steps[1]["attempts"][0]["output"],
        json!({"email": "ada@example.com", "second": 2, "tag": "new"})
    );
}

#[tokio::test]
async fn the_plugin_sees_request_metadata_without_credentials() {
    let work = Workdir::new();
    work.file("token", "s3cret-token\n").manifest(
        "meta",
        &one_step(
            "meta",
            "sync",
            r#"{ kind = "header", header = "X-Webhook-Token", secrets = ["file:token"] }"#,
            "echo",
            "{ full = true }",
        ),
    );
    let server = work.start();
    let r = server
        .post("/hooks/meta?source=test")
        .header("x-webhook-token", "s3cret-token")
        .header("authorization", "Bearer other")
        .header("x-trace", "abc")
        .json(&json!({"k": "v"}))
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let seen = &body["output"];
    assert_eq!(seen["request"]["method"], "POST");
    assert_eq!(seen["request"]["path"], "/hooks/meta");
    assert_eq!(seen["request"]["query"], "source=test");
    assert!(
        seen["request"]["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(seen["payload"], json!({"k": "v"}));
    assert_eq!(seen["attempt"], 1);
    let headers = seen["request"]["headers"].to_string();
    assert!(headers.contains("x-trace"), "{headers}");
    assert!(
        !headers.contains("s3cret-token"),
        "token reached the plugin: {headers}"
    );
    assert!(
        !headers.contains("Bearer other"),
        "authorization reached the plugin: {headers}"
    );

    let id = body["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert!(
        !record.to_string().contains("s3cret-token"),
        "token stored: {record}"
    );
}

#[tokio::test]
async fn api_requires_the_admin_token() {
    let work = Workdir::new();
    work.manifest("e", &one_step("e", "async", NONE, "echo", "{}"));
    let server = work.start();
    let r = server
        .client
        .get(server.url("/api/v1/executions"))
        .go()
        .await;
    crate::support::error_body(r, 401, "unauthorized").await;
    let r = server
        .client
        .get(server.url("/api/v1/executions"))
        .bearer_auth("wrong")
        .go()
        .await;
    crate::support::error_body(r, 401, "unauthorized").await;
    let (status, body) = server.api("/api/v1/executions?status=nope").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad-request")));
    let (status, _) = server.api("/api/v1/executions/not-an-id").await;
    assert_eq!(status, 404);
    let r = server.client.get(server.url("/healthz")).go().await;
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    let work = Workdir::new();
    work.manifest("a", &one_step("a", "sync", NONE, "echo", "{}"))
        .manifest("b", &one_step("b", "sync", NONE, "fail", "{}"));
    let server = work.start();
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = server.post_json("/hooks/a", &json!({"i": i})).await;
        let body: serde_json::Value = r.json().await.unwrap();
        ids.push(body["execution_id"].as_str().unwrap().to_string());
    }
    let r = server.post_json("/hooks/b", &json!({})).await;
    assert_eq!(r.status().as_u16(), 500);

    let (_, page) = server.api("/api/v1/executions?workflow=a&limit=2").await;
    let got: Vec<_> = page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, vec![ids[2].clone(), ids[1].clone()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = server
        .api(&format!(
            "/api/v1/executions?workflow=a&limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(page["executions"][0]["id"], ids[0].as_str());
    assert!(page.get("next_cursor").is_none(), "{page}");

    let (_, failed) = server.api("/api/v1/executions?status=failed").await;
    let failed = failed["executions"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["workflow"], "b");

    let metrics = server.client.get(server.url("/metrics")).go().await;
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    for line in [
        "hookflow_executions_started_total 4",
        "hookflow_executions_finished_total{status=\"succeeded\"} 3",
        "hookflow_executions_finished_total{status=\"failed\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn a_sync_webhook_past_its_sync_timeout_gets_202_and_the_run_goes_on() {
    let work = Workdir::new();
    work.manifest(
        "slow",
        r#"
[trigger]
path = "slow"
mode = "sync"
sync_timeout = "300ms"
auth = { kind = "none" }
[[steps]]
plugin = "plugins/fail.wasm"
config = { mode = "sleep", ms = 1500 }
"#,
    );
    let server = work.start();
    let r = server
        .post_json("/hooks/slow", &json!({"late": true}))
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let ack: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ack["status_url"], location);
    let done = server
        .wait_finished(
            ack["execution_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"late": true}));
}

/// RFC 7240 `Prefer`, within what the manifest allows: a sync workflow
/// answers at once when asked (`respond-async`, said back in
/// `Preference-Applied`) or waits no longer than asked (`wait=N`), by
/// webhook and by `POST /api/v1/run`; an async workflow stays async.
#[tokio::test]
async fn a_sender_may_ask_for_the_answer_at_once_or_for_a_shorter_wait() {
    let work = Workdir::new();
    work.manifest(
        "now",
        &one_step("now", "sync", r#"{ kind = "none" }"#, "echo", "{}"),
    )
    .manifest(
        "later",
        &one_step("later", "async", r#"{ kind = "none" }"#, "echo", "{}"),
    )
    .manifest(
        "slow",
        r#"
[trigger]
path = "slow"
mode = "sync"
sync_timeout = "60s"
auth = { kind = "none" }
[[steps]]
plugin = "plugins/fail.wasm"
config = { mode = "sleep", ms = 1500 }
"#,
    );
    let server = work.start();
    let post = |path: &str, prefer: &str| {
        server
            .post(path)
            .header("prefer", prefer)
            .json(&json!({"n": 1}))
    };

    let r = post("/hooks/now", "respond-async").go().await;
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(r.headers()["preference-applied"], "respond-async");
    let ack: serde_json::Value = r.json().await.unwrap();
    let done = server
        .wait_finished(
            ack["execution_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"n": 1}));

    // Unknown preferences change nothing: the manifest's sync answer.
    let r = post("/hooks/now", "handling=lenient, return=minimal")
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("preference-applied").is_none());

    // Waits no longer than asked: the step takes 1.5 s, the sender 0 s.
    let r = post("/hooks/slow", "wait=0").go().await;
    assert_eq!(r.status().as_u16(), 202);
    let r = post("/hooks/slow", "respond-async; foo=bar, wait=30")
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 200, "waited for the result");

    // An async workflow's output is not the sender's to wait for.
    let r = post("/hooks/later", "wait=30").go().await;
    assert_eq!(r.status().as_u16(), 202);
    assert!(r.headers().get("preference-applied").is_none());

    // The same through the run API.
    let r = server
        .post("/api/v1/run")
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .header("prefer", "respond-async")
        .json(&json!({"workflow": "now", "data": {"n": 2}}))
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(r.headers()["preference-applied"], "respond-async");
}

#[tokio::test]
async fn an_execution_cut_off_by_a_crash_resumes_at_the_next_start() {
    let work = Workdir::new();
    work.manifest(
        "long",
        r#"
[trigger]
path = "long"
auth = { kind = "none" }
[[steps]]
id = "first"
plugin = "plugins/echo.wasm"
[[steps]]
id = "slow"
plugin = "plugins/fail.wasm"
config = { mode = "sleep", ms = 2000 }
"#,
    );
    let server = work.start();
    let r = server
        .post_json("/hooks/long", &json!({"keep": "me"}))
        .await;
    assert_eq!(r.status().as_u16(), 202);
    let ack: serde_json::Value = r.json().await.unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    // Wait until the first step is recorded, then crash mid second step.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
        if record["steps"][0]["status"] == "succeeded" {
            assert_eq!(record["steps"][1]["status"], "pending");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "first step never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A step's result is durable within the store's flush window (100 ms);
    // the second step sleeps for 2 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();

    let again = work.start();
    let done = again.wait_finished(&id, Duration::from_secs(15)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"keep": "me"}));
    let first = &done["steps"][0]["attempts"];
    assert_eq!(
        first.as_array().unwrap().len(),
        1,
        "a finished step is not run again"
    );
}
