//! Typed input (ToolJet's parameters) and form-encoded bodies.

use serde_json::{Value, json};

use crate::support::{Go, Manifest, Workdir, error_body, one_step};

#[tokio::test]
async fn typed_input_lists_every_violated_field() {
    let work = Workdir::new();
    work.file("token", "tooljet-token").manifest(
        "employees",
        &Manifest::new(
            "employees",
            r#"{ kind = "bearer", secrets = ["file:token"] }"#,
        )
        .trigger("mode", r#""sync""#)
        .section(
            r#"[input]
name = "string"
emp_id = "number"
team = { type = "string", required = false }"#,
        )
        .step("echo", "{}")
        .to_string(),
    );
    let server = work.start();
    let send = |body: Value| {
        server
            .post("/hooks/employees")
            .bearer_auth("tooljet-token")
            .json(&body)
            .go()
    };
    // ToolJet's documented example.
    let ok = send(json!({"name": "John Doe", "emp_id": 33})).await;
    assert_eq!(ok.status(), 200);
    let ok: Value = ok.json().await.unwrap();
    assert_eq!(ok["output"], json!({"name": "John Doe", "emp_id": 33}));

    let bad = send(json!({"emp_id": "33", "team": 7})).await;
    let err = error_body(bad, 422, "invalid-input").await;
    let fields: Vec<&str> = err["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{err}");
    for f in ["name", "emp_id", "team"] {
        assert!(fields.contains(&f), "{err}");
    }
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("`name` is required"), "{message}");
    assert!(
        message.contains("`emp_id` must be a number, not a string"),
        "{message}"
    );

    let not_object = send(json!([1, 2])).await;
    error_body(not_object, 422, "invalid-input").await;
    let (_, page) = server.api("/api/v1/executions?workflow=employees").await;
    assert_eq!(
        page["executions"].as_array().unwrap().len(),
        1,
        "refused input is not recorded"
    );
}

#[tokio::test]
async fn a_form_body_reaches_the_plugin_as_an_object() {
    let work = Workdir::new();
    work.manifest(
        "form",
        &one_step(
            "form",
            "sync",
            r#"{ kind = "none" }"#,
            "echo",
            "{ full = true }",
        ),
    );
    let server = work.start();
    let r = server
        .post("/hooks/form?via=slack")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("command=%2Fdeploy&text=web+now&tag=a&tag=b")
        .go()
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let seen = &body["output"];
    assert_eq!(
        seen["payload"],
        json!({"command": "/deploy", "text": "web now", "tag": ["a", "b"]})
    );
    assert_eq!(seen["request"]["query"], "via=slack");
    assert_eq!(seen["content_type"], "application/x-www-form-urlencoded");
}

#[tokio::test]
async fn a_step_can_shape_the_http_answer_of_a_sync_webhook() {
    // Slack's URL-verification handshake, as the example answers it.
    let work = Workdir::new();
    work.manifest(
        "slack",
        r#"
[trigger]
path = "slack"
mode = "sync"
auth = { kind = "none" }
[[steps]]
plugin = "plugins/respond.wasm"
config = { body = "$.challenge", headers = { x-handled-by = "hookflow" } }
[[steps]]
plugin = "plugins/fail.wasm"
config = { mode = "error", message = "never reached: respond halts" }
"#,
    );
    let server = work.start();
    let challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
    let r = server
        .post_json(
            "/hooks/slack",
            &json!({"type": "url_verification", "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["x-handled-by"], "hookflow");
    assert_eq!(r.text().await.unwrap(), challenge);
    let (_, page) = server.api("/api/v1/executions?workflow=slack").await;
    let id = page["executions"][0]["id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["steps"][1]["status"], "skipped");
}

#[tokio::test]
async fn a_json_schema_file_checks_the_payload() {
    let work = Workdir::new();
    std::fs::create_dir_all(work.dir().join("schemas")).unwrap();
    work.file(
        "schemas/employee.json",
        r#"{"type": "object", "required": ["name", "emp_id"],
            "properties": {"name": {"type": "string"}, "emp_id": {"type": "integer", "minimum": 1}}}"#,
    )
    .manifest(
        "hire",
        &format!(
            "input_schema = \"schemas/employee.json\"\n{}",
            one_step("hire", "async", r#"{ kind = "none" }"#, "echo", "{}")
        ),
    );
    let server = work.start();
    let r = server
        .post_json("/hooks/hire", &json!({"name": "John Doe", "emp_id": 33}))
        .await;
    assert_eq!(r.status(), 202);
    let r = server.post_json("/hooks/hire", &json!({"emp_id": 0})).await;
    let err = error_body(r, 422, "invalid-input").await;
    let errors = err["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{err}");
    assert!(errors.iter().any(|e| e["field"] == "/emp_id"), "{err}");
    assert!(err["message"].as_str().unwrap().contains("name"), "{err}");
}
