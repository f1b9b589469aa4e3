//! Triggers made at runtime (issue 13, item 5; the RunTools seed): a
//! webhook trigger's URL and secret, returned once; enable, disable and
//! delete; a rotated secret's grace; all kept across a restart and a
//! reload; and cron triggers made the same way.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Go, Server, Workdir, error_body, one_step};

async fn admin(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = server
        .client
        .request(method, server.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.go().await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The status of a delivery to `url` with bearer `secret`.
async fn deliver(server: &Server, url: &str, secret: &str) -> u16 {
    server
        .post(url)
        .bearer_auth(secret)
        .json(&json!({"via": "runtime"}))
        .go()
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn webhook_triggers_are_made_switched_rotated_and_kept() {
    let work = Workdir::new();
    work.manifest(
        "orders",
        &one_step("orders", "async", r#"{ kind = "none" }"#, "echo", "{}"),
    );
    let server = work.start();

    let (status, made) = admin(
        &server,
        "POST",
        "/api/v1/triggers",
        Some(json!({"workflow": "orders", "kind": "webhook"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let url = made["url"].as_str().unwrap().to_string();
    let secret = made["secret"].as_str().unwrap().to_string();
    assert_eq!(url, format!("/hooks/r/{id}"));
    assert_eq!(made["enabled"], true);

    assert_eq!(deliver(&server, &url, &secret).await, 202);
    let r = server
        .post(&url)
        .bearer_auth("hfs_wrong")
        .json(&json!({}))
        .go()
        .await;
    error_body(r, 401, "unauthorized").await;
    let r = server.post(&url).json(&json!({})).go().await;
    error_body(r, 401, "unauthorized").await;
    assert_eq!(deliver(&server, "/hooks/r/trg_unknown", &secret).await, 404);
    let (_, page) = server.api("/api/v1/executions?workflow=orders").await;
    let (_, record) = server
        .api(&format!(
            "/api/v1/executions/{}",
            page["executions"][0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(record["payload"], json!({"via": "runtime"}));
    assert!(
        !record.to_string().contains(&secret),
        "the secret is never kept"
    );

    // Listed, never with its secret.
    let (_, listed) = admin(&server, "GET", "/api/v1/triggers?workflow=orders", None).await;
    assert_eq!(listed["triggers"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&secret), "{listed}");
    let (status, _) = admin(&server, "GET", &format!("/api/v1/triggers/{id}"), None).await;
    assert_eq!(status, 200);

    // Disabled: 422 (after auth), as a disabled workflow.
    let (status, _) = admin(
        &server,
        "PATCH",
        &format!("/api/v1/triggers/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    let r = server
        .post(&url)
        .bearer_auth(&secret)
        .json(&json!({}))
        .go()
        .await;
    error_body(r, 422, "workflow-inactive").await;
    let r = server
        .post(&url)
        .bearer_auth("hfs_wrong")
        .json(&json!({}))
        .go()
        .await;
    error_body(r, 401, "unauthorized").await;
    admin(
        &server,
        "PATCH",
        &format!("/api/v1/triggers/{id}"),
        Some(json!({"enabled": true})),
    )
    .await;

    // Rotated with a grace of 5 s: both verify, then only the new one.
    let (status, rotated) = admin(
        &server,
        "POST",
        &format!("/api/v1/triggers/{id}/rotate-secret"),
        Some(json!({"grace": "5s"})),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, secret);
    assert_eq!(deliver(&server, &url, &secret).await, 202);
    assert_eq!(deliver(&server, &url, &new).await, 202);
    // Until just past the end of the grace the server gave.
    let ends = rotated["secrets"][0]["expires_at_ms"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(ends.saturating_sub(now) + 200)).await;
    assert_eq!(deliver(&server, &url, &secret).await, 401, "past its grace");
    assert_eq!(deliver(&server, &url, &new).await, 202);
    // A rotation with no grace given keeps the old secret for a day.
    let (_, again) = admin(
        &server,
        "POST",
        &format!("/api/v1/triggers/{id}/rotate-secret"),
        None,
    )
    .await;
    let newest = again["secret"].as_str().unwrap().to_string();
    let ends = again["secrets"][0]["expires_at_ms"].as_u64().unwrap();
    let day = 24 * 3600 * 1000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(ends.abs_diff(now + day) < 60_000, "{again}");

    // Kept across a restart and a reload.
    server.stop();
    let server = work.start();
    assert_eq!(deliver(&server, &url, &new).await, 202);
    assert_eq!(deliver(&server, &url, &newest).await, 202);
    work.manifest(
        "orders",
        &format!(
            "# edited\n{}",
            one_step("orders", "async", r#"{ kind = "none" }"#, "echo", "{}")
        ),
    );
    let start = Instant::now();
    let version = |v: &Value| {
        v["workflows"][0]["version"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let before = version(&server.api("/api/v1/workflows").await.1);
    while version(&server.api("/api/v1/workflows").await.1) == before {
        assert!(start.elapsed() < Duration::from_secs(30), "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deliver(&server, &url, &newest).await, 202);

    // Deleted: gone, and answered as an unknown trigger.
    let (status, _) = admin(&server, "DELETE", &format!("/api/v1/triggers/{id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(deliver(&server, &url, &newest).await, 404);
    let (status, _) = admin(&server, "DELETE", &format!("/api/v1/triggers/{id}"), None).await;
    assert_eq!(status, 404);

    // Bad requests, and nothing without the admin token.
    for (body, status) in [
        (json!({"workflow": "nope", "kind": "webhook"}), 404),
        (json!({"workflow": "orders", "kind": "cron"}), 400),
        (
            json!({"workflow": "orders", "kind": "cron", "schedule": "61 * * * *"}),
            400,
        ),
        (
            json!({"workflow": "orders", "kind": "webhook", "schedule": "* * * * *"}),
            400,
        ),
        (json!({"workflow": "orders", "kind": "smoke"}), 400),
    ] {
        let (got, answer) = admin(&server, "POST", "/api/v1/triggers", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    let r = server.client.get(server.url("/api/v1/triggers")).go().await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_cron_trigger_made_through_the_api_fires_until_deleted() {
    let work = Workdir::new();
    work.manifest(
        "beat",
        &one_step("beat", "async", r#"{ kind = "none" }"#, "echo", "{}"),
    );
    let server = work.start();
    let (status, made) = admin(
        &server,
        "POST",
        "/api/v1/triggers",
        Some(json!({"workflow": "beat", "kind": "cron", "schedule": "* * * * * *"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert!(made.get("secret").is_none(), "{made}");
    let id = made["id"].as_str().unwrap();
    let count = async || {
        let (_, page) = server
            .api("/api/v1/executions?workflow=beat&trigger=cron")
            .await;
        page["executions"].as_array().unwrap().len()
    };
    let start = Instant::now();
    while count().await < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the cron trigger never fired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = admin(&server, "DELETE", &format!("/api/v1/triggers/{id}"), None).await;
    assert_eq!(status, 204);
    // A fire already under way may still land; then nothing more.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after_delete = count().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(count().await, after_delete, "fired after it was deleted");
}

/// `X-Hub-Signature-256` of `body` under `secret`.
fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn a_manifest_serves_one_workflow_from_several_webhook_triggers() {
    let work = Workdir::new();
    let manifest = r#"
[trigger]
path = "orders/in"
mode = "sync"
auth = { kind = "bearer", secrets = ["file:tok"] }

[[triggers]]
kind = "webhook"
path = "orders/github"
auth = { kind = "github", secrets = ["file:gh"] }

[[triggers]]
kind = "webhook"
auth = { kind = "path-token", secrets = ["file:pt"] }

[[triggers]]
kind = "webhook"
path = "orders/ping"
methods = ["GET"]
auth = { kind = "none" }

[[steps]]
plugin = "plugins/echo.wasm"
"#;
    let token = "a-path-token-of-enough-length";
    work.file("tok", "bearer-secret")
        .file("gh", "github-secret")
        .file("pt", token)
        .manifest("orders", manifest);
    let server = work.start();
    let body = br#"{"n":1}"#.to_vec();
    let post = |path: &str| {
        server
            .post(path)
            .header("content-type", "application/json")
            .body(body.clone())
    };

    // Each trigger with its own auth; the workflow's mode (sync) for all.
    let r = post("/hooks/orders/in")
        .bearer_auth("bearer-secret")
        .go()
        .await;
    assert_eq!(r.status(), 200);
    let signed = github_signature("github-secret", &body);
    let r = post("/hooks/orders/github")
        .header("x-hub-signature-256", &signed)
        .go()
        .await;
    assert_eq!(r.status(), 200);
    let r = post(&format!("/hooks/t/{token}")).go().await;
    assert_eq!(r.status(), 200);
    let r = server
        .client
        .get(server.url("/hooks/orders/ping"))
        .go()
        .await;
    assert_eq!(r.status(), 200);
    // ... and not another's.
    let r = post("/hooks/orders/github")
        .bearer_auth("bearer-secret")
        .go()
        .await;
    error_body(r, 401, "unauthorized").await;
    let r = post("/hooks/orders/in")
        .header("x-hub-signature-256", &signed)
        .go()
        .await;
    error_body(r, 401, "unauthorized").await;
    let r = post("/hooks/orders/ping").go().await;
    assert_eq!(r.status(), 405);
    let (_, page) = server.api("/api/v1/executions?workflow=orders").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 4);
    // `hookflow send --path` signs for the trigger at that path.
    let out = crate::support::hookflow()
        .args([
            "send",
            "orders",
            "--path",
            "orders/github",
            "--url",
            &server.base,
        ])
        .arg("--dir")
        .arg(work.dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("HTTP 200"), "{stdout}");

    // A path served twice (here, or by another workflow) is refused.
    work.manifest(
        "other",
        &one_step(
            "orders/github",
            "async",
            r#"{ kind = "none" }"#,
            "echo",
            "{}",
        ),
    );
    let out = crate::support::hookflow()
        .arg("check")
        .arg(work.dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("trigger path `orders/github` is also served by"),
        "{stdout}"
    );
    std::fs::remove_file(work.dir().join("other.toml")).unwrap();
    work.manifest(
        "orders",
        &manifest.replace("path = \"orders/ping\"", "path = \"orders/in\""),
    );
    let out = crate::support::hookflow()
        .arg("check")
        .arg(work.dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("trigger path `orders/in` is served twice by this workflow"),
        "{stdout}"
    );
}
