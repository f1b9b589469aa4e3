//! `POST /api/v1/run`: run a workflow by name for a user (the Alloy seed).

use serde_json::{Value, json};

use crate::support::{Go, Workdir, error_body, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

#[tokio::test]
async fn run_by_name_for_a_user_with_an_api_token() {
    let work = Workdir::new();
    work.manifest("invoice", &one_step("invoice", "sync", NONE, "echo", "{}"))
        .manifest("later", &one_step("later", "async", NONE, "echo", "{}"));
    let server = work.start_env(&[("HOOKFLOW_API_TOKENS", "api-key-1,api-key-2")]);
    let run = |token: Option<&str>, body: Value| {
        let mut r = server
            .post("/api/v1/run")
            .header("x-api-version", "2025-09")
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.go()
    };

    // Alloy's body, as its documentation writes it.
    let alloy = json!({"workflowName": "invoice", "userId": "user_42", "data": {"key": "value"}});
    let r = run(Some("api-key-2"), alloy.clone()).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["output"], json!({"key": "value"}));
    let id = body["execution_id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(record["user"], "user_42");
    assert_eq!(record["trigger"], "api");
    assert_eq!(record["payload"], json!({"key": "value"}));
    assert!(!record.to_string().contains("api-key-2"), "token stored");

    // The contract's own names; an async workflow answers 202.
    let r = run(
        Some("api-key-1"),
        json!({"workflow": "later", "user": "u1", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("location"));
    let r = run(
        Some("api-key-1"),
        json!({"workflow_id": "invoice", "data": [1]}),
    )
    .await;
    assert_eq!(r.status(), 200);

    for (token, body, status, code) in [
        (None, alloy.clone(), 401, "unauthorized"),
        (Some("api-key-3"), alloy.clone(), 401, "unauthorized"),
        (
            Some("api-key-1"),
            json!({"workflow": "nope", "data": {}}),
            404,
            "not-found",
        ),
        (Some("api-key-1"), json!({"data": {}}), 400, "bad-request"),
        (
            Some("api-key-1"),
            json!({"workflow": "invoice", "extra": 1}),
            400,
            "invalid-json",
        ),
    ] {
        let r = run(token, body.clone()).await;
        error_body(r, status, code).await;
    }
    let (_, page) = server.api("/api/v1/executions?workflow=invoice").await;
    let runs = page["executions"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["user"], "user_42");
}
