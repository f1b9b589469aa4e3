//! `/api/v1/openapi.json` (issue 13, item 11): generated from the code; it
//! lists exactly the routes the router serves, with their methods, and
//! every request example in it is accepted.

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Go, Manifest, Server, Workdir};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `path` with its parameters filled in from `with`.
fn fill(path: &str, with: &[(&str, &str)]) -> String {
    with.iter().fold(path.to_string(), |p, (name, value)| {
        p.replace(&format!("{{{name}}}"), value)
    })
}

async fn send(server: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut r = server
        .client
        .request(method, server.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        r = r.json(body);
    }
    let r = r.go().await;
    let status = r.status().as_u16();
    // An event stream that never ends (`/api/v1/stream`): its first
    // bytes are enough to tell that it is served.
    if r.headers()
        .get("content-type")
        .is_some_and(|t| t == "text/event-stream")
    {
        return (status, "(an event stream)".into());
    }
    (status, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_what_is_served_and_its_examples_work() {
    let work = Workdir::new();
    // Every method a trigger may take, so the webhook's example is
    // accepted by each.
    let every = r#"["GET", "POST", "PUT", "PATCH", "DELETE"]"#;
    work.manifest(
        "orders",
        &Manifest::new("orders", r#"{ kind = "none" }"#)
            .trigger("mode", "\"async\"")
            .trigger("methods", every)
            .step("echo", "{}")
            .to_string(),
    );
    let server = work.start();
    let r = server
        .client
        .get(server.url("/api/v1/openapi.json"))
        .go()
        .await;
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();

    // Real values for the parameters: an execution, a workflow, a trigger.
    let ack: Value = server
        .post_json("/hooks/orders", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let execution = ack["execution_id"].as_str().unwrap().to_string();
    let (_, made) = send(
        &server,
        "post",
        "/api/v1/triggers",
        Some(&json!({"workflow": "orders", "kind": "webhook"})),
    )
    .await;
    let made: Value = serde_json::from_str(&made).unwrap();
    let trigger = made["id"].as_str().unwrap().to_string();
    let fills = |path: &str| {
        let id = if path.starts_with("/api/v1/triggers") {
            trigger.as_str()
        } else {
            execution.as_str()
        };
        fill(path, &[("id", id), ("name", "orders"), ("path", "orders")])
    };

    let mut operations = 0;
    for (path, item) in paths {
        let url = fills(path);
        for method in METHODS {
            let documented = item.get(method);
            // Delete last: the trigger is needed by the other routes.
            if method == "delete" {
                continue;
            }
            let example = documented
                .and_then(|op| op.pointer("/requestBody/content/application~1json/example"))
                .cloned();
            let (status, body) = send(&server, method, &url, example.as_ref()).await;
            // The router's own 405 has no body; a workflow's `methods`
            // answer one of their own (405 with `Allow`, as JSON).
            let unrouted = status == 405 && body.is_empty();
            match documented {
                Some(_) => {
                    operations += 1;
                    assert!(
                        !body.contains("no such endpoint") && !unrouted,
                        "{method} {path} is documented and not served: {status} {body}"
                    );
                    if example.is_some() {
                        assert!(
                            (200..300).contains(&status),
                            "the example of {method} {path} was refused: {status} {body}"
                        );
                    }
                }
                None => assert!(
                    unrouted,
                    "{method} {path} is served and not documented: {status} {body}"
                ),
            }
        }
    }
    let (status, _) = send(
        &server,
        "delete",
        &format!("/api/v1/triggers/{trigger}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(paths["/api/v1/triggers/{id}"].get("delete").is_some());
    assert!(operations >= 20, "{operations} operations documented");
    // What is not documented is not served.
    for path in ["/api/v1/nothing", "/api/v2/run", "/hook"] {
        let (status, body) = send(&server, "get", path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("no such endpoint"), "{path}: {body}");
    }
}
