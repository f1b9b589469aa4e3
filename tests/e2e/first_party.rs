//! The first-party plugins built on the guest helper crate, each through
//! the real server: `filter`, `template`, `http-request` (to a sink on
//! 127.0.0.1) and `kv-counter`.

use serde_json::{Value, json};

use crate::caps::{Sink, attempt, run_with};
use crate::support::{Manifest, Server, Workdir};

const NONE: &str = r#"{ kind = "none" }"#;

async fn sync(server: &Server, path: &str, body: Value) -> Value {
    let r = server.post_json(&format!("/hooks/{path}"), &body).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn filter_stops_the_workflow_unless_its_condition_holds() {
    let work = Workdir::new();
    work.manifest(
        "main-only",
        &Manifest::new("main-only", NONE)
            .trigger("mode", "\"sync\"")
            .step("filter", r#"{ when = "payload.ref == 'refs/heads/main'" }"#)
            .step("template", r#"{ text = "pushed to {{ payload.ref }}" }"#)
            .to_string(),
    );
    let server = work.start();
    let passed = sync(&server, "main-only", json!({"ref": "refs/heads/main"})).await;
    assert_eq!(
        passed["output"],
        json!({"text": "pushed to refs/heads/main"})
    );
    let stopped = sync(&server, "main-only", json!({"ref": "refs/heads/dev"})).await;
    assert_eq!(stopped["status"], "succeeded");
    assert_eq!(
        stopped["output"],
        json!({"filtered": true, "when": "payload.ref == 'refs/heads/main'"})
    );
    let id = stopped["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(record["steps"][1]["status"], "skipped", "{record}");
}

#[tokio::test]
async fn template_renders_text_and_json_and_names_what_is_missing() {
    let work = Workdir::new();
    let one = |path: &str, config: &str| {
        Manifest::new(path, NONE)
            .trigger("mode", "\"sync\"")
            .step("template", config)
            .to_string()
    };
    work.manifest("text", &one("text", r#"{ text = "{{ payload.user }} x{{ payload.n * 2 }} via {{ request.method }}" }"#))
        .manifest(
            "shape",
            &one("shape", r#"{ json = { title = "{{ payload.user | upper }}", n = 1, tags = ["{{ payload.n }}"] } }"#),
        )
        .manifest("typo", &one("typo", r#"{ text = "{{ payload.usr.name }}" }"#));
    let server = work.start();
    let out = sync(&server, "text", json!({"user": "ada", "n": 21})).await;
    assert_eq!(out["output"], json!({"text": "ada x42 via POST"}));
    let out = sync(&server, "shape", json!({"user": "ada", "n": 3})).await;
    assert_eq!(
        out["output"],
        json!({"title": "ADA", "n": 1, "tags": ["3"]})
    );
    let r = server
        .post_json("/hooks/typo", &json!({"user": "ada"}))
        .await;
    assert_eq!(r.status(), 500);
    let id = r.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    let error = attempt(&record)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("template"), "{error}");
}

#[tokio::test]
async fn http_request_sends_a_templated_call_and_retries_server_errors() {
    let sink = Sink::start().await;
    let work = Workdir::new();
    let call = |path: &str, target: &str| {
        Manifest::new(path, NONE)
            .step_with(
                "http_request",
                &format!(
                    r#"{{ url = "{}", json = {{ text = "{{{{ payload.msg }}}}" }}, headers = {{ x-source = "{{{{ request.path }}}}" }}, bearer = "TOKEN" }}"#,
                    sink.url(target)
                ),
                &[
                    r#"allow = { http = ["127.0.0.1"], config = ["TOKEN"] }"#,
                    r#"retries = { max = 2, backoff = "10ms" }"#,
                ],
            )
            .section("[secrets]\nTOKEN = \"env:HTTP_REQUEST_TEST_TOKEN\"")
            .to_string()
    };
    work.manifest("notify", &call("notify", "/hook"))
        .manifest("down", &call("down", "/fail"));
    let server = work.start_env(&[
        ("HOOKFLOW_ALLOW_HTTP", "127.0.0.1"),
        ("HTTP_REQUEST_TEST_TOKEN", "tok-http-request"),
    ]);

    let done = run_with(&server, "notify", &json!({"msg": "deployed"})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"status": 200, "body": "ok"}));
    let seen = sink.seen();
    assert_eq!(seen[0].0, "POST");
    assert_eq!(seen[0].1, "/hook");
    let body: Value = serde_json::from_str(&seen[0].2).unwrap();
    assert_eq!(body, json!({"text": "deployed"}));
    assert_eq!(sink.header(0, "x-source").as_deref(), Some("/hooks/notify"));
    assert_eq!(
        sink.header(0, "authorization").as_deref(),
        Some("Bearer tok-http-request")
    );
    let key = sink.header(0, "idempotency-key").unwrap();
    assert!(key.ends_with(":http-request"), "{key}");

    // 500s are retryable: three attempts, then `failed`, each audited.
    let done = run_with(&server, "down", &json!({"msg": "x"})).await;
    assert_eq!(done["status"], "failed", "{done}");
    let attempts = done["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{done}");
    for a in attempts {
        assert_eq!(a["error"]["kind"], "retryable", "{a}");
        assert_eq!(a["host_calls"][0]["status"], 500, "{a}");
    }
    let keys: Vec<String> = (1..4)
        .filter_map(|i| sink.header(i, "idempotency-key"))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "one key for every retry: {keys:?}"
    );
    assert!(!done.to_string().contains("tok-http-request"));
}

#[tokio::test]
async fn kv_counter_counts_per_key_across_restarts_in_each_workflows_own_bucket() {
    let work = Workdir::new();
    let counter = |path: &str| {
        Manifest::new(path, NONE)
            .trigger("mode", "\"sync\"")
            .step_with(
                "kv_counter",
                r#"{ key = "{{ payload.customer }}" }"#,
                &["allow = { kv = true }"],
            )
            .to_string()
    };
    work.manifest("orders", &counter("orders"))
        .manifest("refunds", &counter("refunds"));
    let server = work.start();
    let count = async |path: &str, customer: &str| {
        sync(&server, path, json!({"customer": customer})).await["output"]["count"].clone()
    };
    assert_eq!(count("orders", "acme").await, 1);
    assert_eq!(count("orders", "acme").await, 2);
    assert_eq!(count("orders", "beta").await, 1);
    assert_eq!(
        count("refunds", "acme").await,
        1,
        "another workflow's bucket"
    );
    server.stop();
    let server = work.start();
    let out = sync(&server, "orders", json!({"customer": "acme"})).await;
    assert_eq!(out["output"], json!({"key": "acme", "count": 3}));
}
