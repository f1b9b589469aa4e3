//! What a webhook sender sees for every way a request can be refused.

use bytes::Bytes;
use futures_util::stream;
use serde_json::json;

use crate::support::{Go, Workdir, error_body, one_step};

fn auth_workdir() -> Workdir {
    let work = Workdir::new();
    work.file("bearer.token", "bearer-secret\n")
        .file("header.token", "header-secret")
        .manifest(
            "bearer",
            &one_step(
                "auth/bearer",
                "async",
                r#"{ kind = "bearer", secrets = ["file:bearer.token"] }"#,
                "echo",
                "{}",
            ),
        )
        .manifest(
            "header",
            &one_step(
                "auth/header",
                "async",
                r#"{ kind = "header", header = "X-Webhook-Secret", secrets = ["file:header.token"] }"#,
                "echo",
                "{}",
            ),
        );
    work
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401() {
    let work = auth_workdir();
    let server = work.start();
    let body = json!({"x": 1});

    let r = server.post("/hooks/auth/bearer").json(&body).go().await;
    let err = error_body(r, 401, "unauthorized").await;
    assert!(err["message"].as_str().unwrap().contains("Bearer"));
    let r = server
        .post("/hooks/auth/bearer")
        .bearer_auth("bearer-secreT")
        .json(&body)
        .go()
        .await;
    error_body(r, 401, "unauthorized").await;
    let r = server
        .post("/hooks/auth/bearer")
        .bearer_auth("bearer-secret")
        .json(&body)
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 202);

    let r = server.post("/hooks/auth/header").json(&body).go().await;
    let err = error_body(r, 401, "unauthorized").await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("x-webhook-secret"),
        "{err}"
    );
    let r = server
        .post("/hooks/auth/header")
        .header("x-webhook-secret", "nope")
        .json(&body)
        .go()
        .await;
    error_body(r, 401, "unauthorized").await;
    let r = server
        .post("/hooks/auth/header")
        .bearer_auth("header-secret")
        .json(&body)
        .go()
        .await;
    error_body(r, 401, "unauthorized").await;
    let r = server
        .post("/hooks/auth/header")
        .header("X-Webhook-Secret", "header-secret")
        .json(&body)
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 202);

    let (_, page) = server.api("/api/v1/executions").await;
    assert_eq!(
        page["executions"].as_array().unwrap().len(),
        2,
        "only accepted requests are recorded"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404_and_405() {
    let work = Workdir::new();
    work.manifest(
        "multi",
        r#"
[trigger]
path = "a/b"
methods = ["POST", "PUT"]
auth = { kind = "none" }
[[steps]]
plugin = "plugins/echo.wasm"
"#,
    );
    let server = work.start();
    let r = server.post_json("/hooks/a", &json!({})).await;
    error_body(r, 404, "not-found").await;
    let r = server.post_json("/hooks/a/b/c", &json!({})).await;
    error_body(r, 404, "not-found").await;
    let r = server.client.get(server.url("/nothing-here")).go().await;
    error_body(r, 404, "not-found").await;
    let r = server.client.get(server.url("/hooks/a/b")).go().await;
    assert_eq!(r.headers()["allow"], "POST, PUT");
    error_body(r, 405, "method-not-allowed").await;
    let r = server
        .client
        .put(server.url("/hooks/a/b"))
        .json(&json!({}))
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 202);
}

/// A percent-encoded path reaches the workflow at the decoded path
/// (Flowker's `orders%2Fpaid` is `orders/paid`); the step sees the path as
/// it was sent; what does not decode to a served path is 404.
#[tokio::test]
async fn percent_encoded_paths_route_to_the_nested_path() {
    let work = Workdir::new();
    work.manifest(
        "paid",
        &one_step(
            "orders/paid",
            "sync",
            r#"{ kind = "none" }"#,
            "echo",
            "{ full = true }",
        ),
    );
    let server = work.start();
    for sent in ["orders%2Fpaid", "orders%2fpaid", "%6Frders/paid"] {
        let r = server
            .post_json(&format!("/hooks/{sent}"), &json!({"n": 1}))
            .await;
        assert_eq!(r.status().as_u16(), 200, "{sent}");
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            answer["output"]["request"]["path"],
            format!("/hooks/{sent}"),
            "{answer}"
        );
    }
    for unknown in [
        "orders%2Fpaid%2F",
        "orders%252Fpaid",
        "orders%FFpaid",
        "orders%2",
    ] {
        let r = server
            .post_json(&format!("/hooks/{unknown}"), &json!({}))
            .await;
        error_body(r, 404, "not-found").await;
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_with_or_without_content_length() {
    let work = Workdir::new();
    work.manifest(
        "big",
        &one_step("big", "async", r#"{ kind = "none" }"#, "echo", "{}"),
    );
    let server = work.start();
    const MIB: usize = 1 << 20;

    // Exactly 1 MiB of JSON is accepted.
    let mut exact = vec![b' '; MIB];
    exact[..2].copy_from_slice(b"{}");
    let r = server
        .post("/hooks/big")
        .header("content-type", "application/json")
        .body(exact)
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 202);

    let over = vec![b' '; MIB + 1];
    let r = server
        .post("/hooks/big")
        .header("content-type", "application/json")
        .body(over.clone())
        .go()
        .await;
    error_body(r, 413, "payload-too-large").await;

    // Chunked: no Content-Length, the limit is found while streaming.
    let chunks: Vec<Result<Bytes, std::io::Error>> = over
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = server
        .post("/hooks/big")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream::iter(chunks)))
        .go()
        .await;
    assert!(r.headers().get("content-length").is_some_and(|v| v != "0"));
    error_body(r, 413, "payload-too-large").await;

    let r = server.client.get(server.url("/healthz")).go().await;
    assert_eq!(r.status().as_u16(), 200, "still serving");
    let (_, page) = server.api("/api/v1/executions").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_json_is_400_and_other_types_pass_as_bytes() {
    let work = Workdir::new();
    work.manifest(
        "j",
        &one_step(
            "j",
            "sync",
            r#"{ kind = "none" }"#,
            "echo",
            "{ full = true }",
        ),
    );
    let server = work.start();
    let r = server
        .post("/hooks/j")
        .header("content-type", "application/json")
        .body("{\"a\":")
        .go()
        .await;
    let err = error_body(r, 400, "invalid-json").await;
    assert!(err["message"].as_str().unwrap().contains("EOF"), "{err}");
    let r = server.post("/hooks/j").body("not json").go().await;
    error_body(r, 400, "invalid-json").await;

    let r = server
        .post("/hooks/j")
        .header("content-type", "text/plain")
        .body("plain words")
        .go()
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["output"]["payload"], serde_json::Value::Null);
    assert_eq!(body["output"]["body_len"], 11);
    assert_eq!(body["output"]["content_type"], "text/plain");
}

#[tokio::test]
async fn a_disabled_workflow_is_422_after_auth() {
    let work = Workdir::new();
    work.file("t", "tok").manifest(
        "off",
        r#"
enabled = false
[trigger]
path = "off"
auth = { kind = "bearer", secrets = ["file:t"] }
[[steps]]
plugin = "plugins/echo.wasm"
"#,
    );
    let server = work.start();
    let r = server.post_json("/hooks/off", &json!({})).await;
    error_body(r, 401, "unauthorized").await;
    let r = server
        .post("/hooks/off")
        .bearer_auth("tok")
        .json(&json!({}))
        .go()
        .await;
    error_body(r, 422, "workflow-inactive").await;
}

#[tokio::test]
async fn a_refused_small_request_leaves_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = auth_workdir();
    let server = work.start();
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = |auth: &str| {
        format!(
            "POST /hooks/auth/bearer HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 8\r\n\r\n{{\"x\": 1}}"
        )
    };
    s.write_all(request("").as_bytes()).await.unwrap();
    s.write_all(request("authorization: Bearer bearer-secret\r\n").as_bytes())
        .await
        .unwrap();
    // Both answers arrive on the one connection: 401, then 202.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("HTTP/1.1 401") && seen.contains("HTTP/1.1 202")) {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answers in time")
            .unwrap();
        assert!(n > 0, "connection closed after: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.find("401").unwrap() < seen.find("202").unwrap());
}
