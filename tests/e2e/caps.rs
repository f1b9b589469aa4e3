//! Capabilities (SPEC §7): outbound HTTP, key-value and config, each
//! granted and not, through the `caps` fixture plugin (built against
//! `hookflow:plugin@0.2.0`), with the audit trail the record keeps. Every
//! outbound request goes to a sink this file starts on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::{Manifest, Server, Workdir};

const NONE: &str = r#"{ kind = "none" }"#;

/// What the sink was sent: method, path with query, body, and the
/// headers (lower-case names).
type Seen = Arc<Mutex<Vec<(String, String, String, Vec<(String, String)>)>>>;

/// An HTTP server on 127.0.0.1 that records what it is sent. `/hello`
/// answers `hello`; `/big` two MiB; `/redirect?to=URL` a 302 to URL;
/// `/fail` a 500; anything else `ok`.
pub struct Sink {
    pub addr: SocketAddr,
    seen: Seen,
}

impl Sink {
    pub async fn start() -> Self {
        let seen: Seen = Arc::default();
        let app = Router::new().fallback(answer).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<(String, String, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(m, p, b, _)| (m.clone(), p.clone(), b.clone()))
            .collect()
    }

    /// The value of header `name` in the `i`th request.
    pub fn header(&self, i: usize, name: &str) -> Option<String> {
        let seen = self.seen.lock().unwrap();
        seen.get(i)?
            .3
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

async fn answer(State(seen): State<Seen>, request: Request) -> Response {
    let method = request.method().to_string();
    let uri = request.uri().clone();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    seen.lock().unwrap().push((
        method,
        path,
        String::from_utf8_lossy(&body).into_owned(),
        headers,
    ));
    match uri.path() {
        "/hello" => "hello".into_response(),
        "/big" => vec![b'x'; 2 << 20].into_response(),
        "/fail" => (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
        "/redirect" => {
            let to = uri
                .query()
                .and_then(|q| q.strip_prefix("to="))
                .unwrap_or("/");
            (StatusCode::FOUND, [("location", to.to_string())]).into_response()
        }
        _ => "ok".into_response(),
    }
}

/// Sends `{}` to `/hooks/{path}` and waits for the execution; returns it.
pub async fn run(server: &Server, path: &str) -> Value {
    run_with(server, path, &json!({})).await
}

/// Sends `body` to `/hooks/{path}` and waits for the execution.
pub async fn run_with(server: &Server, path: &str, body: &Value) -> Value {
    let r = server.post_json(&format!("/hooks/{path}"), body).await;
    assert_eq!(r.status(), 202, "{path}");
    let ack: Value = r.json().await.unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    server.wait_finished(&id, Duration::from_secs(60)).await
}

pub fn attempt(done: &Value) -> &Value {
    &done["steps"][0]["attempts"][0]
}

/// A workflow of one `caps` step with `config` and `allow`.
fn caps(path: &str, config: &str, allow: Option<&str>, sections: &[&str]) -> String {
    let allow = allow.map(|a| format!("allow = {a}"));
    let lines: Vec<&str> = allow.iter().map(String::as_str).collect();
    let mut m = Manifest::new(path, NONE).step_with("caps", config, &lines);
    for s in sections {
        m = m.section(s);
    }
    m.to_string()
}

#[tokio::test]
async fn outbound_http_goes_only_where_granted_and_every_request_is_audited() {
    let sink = Sink::start().await;
    let work = Workdir::new();
    let hello = sink.url("/hello?secret=q");
    let send = |url: &str| {
        format!(r#"{{ requests = [{{ url = "{url}", method = "POST", body = "ping" }}] }}"#)
    };
    work.manifest(
        "granted",
        &caps(
            "granted",
            &send(&hello),
            Some(r#"{ http = ["127.0.0.1"] }"#),
            &[],
        ),
    )
    .manifest("ungranted", &caps("ungranted", &send(&hello), None, &[]))
    .manifest(
        "elsewhere",
        &caps(
            "elsewhere",
            &send(&hello),
            Some(r#"{ http = ["api.example.com"] }"#),
            &[],
        ),
    )
    .manifest(
        "by-name",
        &caps(
            "by-name",
            &send(&format!("http://localhost:{}/hello", sink.addr.port())),
            Some(r#"{ http = ["*"] }"#),
            &[],
        ),
    )
    .manifest(
        "redirected",
        &caps(
            "redirected",
            &format!(
                r#"{{ requests = [{{ url = "{}", follow = true }}] }}"#,
                sink.url("/redirect?to=http://169.254.169.254/latest/meta-data")
            ),
            Some(r#"{ http = ["*"] }"#),
            &[],
        ),
    )
    .manifest(
        "capped",
        &caps(
            "capped",
            &format!(
                r#"{{ requests = [{{ url = "{}" }}, {{ url = "{}" }}] }}"#,
                sink.url("/big"),
                sink.url("/hello")
            ),
            Some(r#"{ http = ["127.0.0.1"], http_max_response = "1KiB", http_max_calls = 1 }"#),
            &[],
        ),
    );
    // The operator names the loopback address, and any public host.
    let server = work.start_env(&[("HOOKFLOW_ALLOW_HTTP", "127.0.0.1,*")]);

    let done = run(&server, "granted").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["output"]["requests"][0],
        json!({"status": 200, "body": "hello"})
    );
    let call = &attempt(&done)["host_calls"][0];
    assert_eq!(call["kind"], "http");
    assert_eq!(call["method"], "POST");
    assert_eq!(call["host"], "127.0.0.1");
    assert_eq!(call["port"], sink.addr.port());
    assert_eq!(call["path"], "/hello", "the query is not kept");
    assert_eq!(call["status"], 200);
    assert_eq!(call["bytes_out"], 4);
    assert_eq!(call["bytes_in"], 5);
    assert!(call["duration_us"].as_u64().unwrap() > 0, "{call}");
    assert!(call.get("denied").is_none(), "{call}");
    assert!(attempt(&done)["host_time_us"].as_u64().unwrap() > 0);
    assert_eq!(
        sink.seen(),
        vec![("POST".into(), "/hello?secret=q".into(), "ping".into())]
    );

    // Refused before anything is sent: no grant, or a host outside it.
    for (path, why) in [
        ("ungranted", "no outbound HTTP grant (allow.http)"),
        (
            "elsewhere",
            "is not in this step's grant (allow.http = [\"api.example.com\"])",
        ),
    ] {
        let done = run(&server, path).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let error = done["output"]["requests"][0]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: {done}"));
        assert!(error.contains("HttpRequestDenied"), "{path}: {error}");
        let call = &attempt(&done)["host_calls"][0];
        let denied = call["denied"].as_str().unwrap_or_default();
        assert!(denied.contains(why), "{path}: {call}");
        let logs = attempt(&done)["logs"].to_string();
        assert!(logs.contains("denied: "), "{path}: {logs}");
    }
    assert_eq!(sink.seen().len(), 1, "a refused request reached the sink");

    // A redirect to a link-local address: the first request is sent, the
    // one following the redirect is refused.
    let done = run(&server, "redirected").await;
    let calls = attempt(&done)["host_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2, "{done}");
    assert_eq!(calls[0]["status"], 302);
    assert_eq!(calls[1]["host"], "169.254.169.254");
    let denied = calls[1]["denied"].as_str().unwrap();
    assert!(denied.contains("169.254.169.254"), "{denied}");
    assert!(
        done["output"]["requests"][0]["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{done}"
    );

    // Limits: the answer past `http_max_response` fails, and a second
    // request past `http_max_calls` is refused.
    let done = run(&server, "capped").await;
    let out = &done["output"]["requests"];
    assert!(
        out[0]["error"]
            .as_str()
            .unwrap()
            .contains("HttpResponseBodySize"),
        "{done}"
    );
    assert!(
        out[1]["error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{done}"
    );
    let calls = &attempt(&done)["host_calls"];
    assert!(
        calls[0]["error"].as_str().unwrap().contains("1024"),
        "{calls}"
    );
    assert!(
        calls[1]["denied"]
            .as_str()
            .unwrap()
            .contains("more than 1 outbound requests"),
        "{calls}"
    );

    // Without the operator naming it, loopback is refused even when the
    // step's grant names it, and a name that resolves to it is refused
    // under a wildcard grant: the address is checked after the lookup.
    drop(server);
    let server = work.start();
    for (path, why) in [
        (
            "granted",
            "127.0.0.1 resolves to 127.0.0.1, a loopback, private or link-local address the operator's ceiling does not name",
        ),
        (
            "by-name",
            "localhost resolves to 127.0.0.1, a loopback, private or link-local address",
        ),
    ] {
        let done = run(&server, path).await;
        let denied = attempt(&done)["host_calls"][0]["denied"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(denied.contains(why), "{path}: {done}");
    }
    assert_eq!(sink.seen().len(), 3, "only the granted requests were sent");
}

#[tokio::test]
async fn config_answers_granted_names_and_secrets_never_reach_the_record() {
    let sink = Sink::start().await;
    let work = Workdir::new();
    const TOKEN: &str = "tok-7f3a9c-caps-secret";
    work.manifest(
        "settings",
        &caps(
            "settings",
            &format!(
                r#"{{ config = ["TOKEN", "CHANNEL", "OTHER", "UNGRANTED"], requests = [{{ url = "{}" }}] }}"#,
                sink.url(&format!("/send/{TOKEN}"))
            ),
            Some(r#"{ config = ["TOKEN", "CHANNEL"], http = ["127.0.0.1"] }"#),
            &[
                "[settings]\nCHANNEL = \"#deploys\"\nUNGRANTED = \"not for this step\"",
                "[secrets]\nTOKEN = \"env:CAPS_TEST_TOKEN\"",
            ],
        ),
    );
    let server = work.start_env(&[
        ("CAPS_TEST_TOKEN", TOKEN),
        ("HOOKFLOW_ALLOW_HTTP", "127.0.0.1"),
    ]);
    let done = run(&server, "settings").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let config = &done["output"]["config"];
    assert_eq!(config["CHANNEL"], "#deploys");
    assert_eq!(config["TOKEN"], "[redacted]", "{done}");
    assert_eq!(config["OTHER"], Value::Null);
    assert_eq!(
        config["UNGRANTED"],
        Value::Null,
        "a name not granted is not answered"
    );
    // The plugin had the real value: the sink saw it in the path.
    assert_eq!(sink.seen()[0].1, format!("/send/{TOKEN}"));
    let logs = attempt(&done)["logs"].to_string();
    assert!(logs.contains("TOKEN is [redacted]"), "{logs}");
    assert_eq!(attempt(&done)["host_calls"][0]["path"], "/send/[redacted]");
    // Nowhere in the record, nor in the list of executions.
    let id = done["id"].as_str().unwrap();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert!(!record.to_string().contains(TOKEN), "{record}");
    let (_, list) = server.api("/api/v1/executions").await;
    assert!(!list.to_string().contains(TOKEN));

    // A grant naming a value that does not exist is refused at load, with
    // its line.
    let out = crate::support::hookflow()
        .arg("check")
        .arg(work.dir())
        .env_remove("CAPS_TEST_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("settings.toml:") && stdout.contains("CAPS_TEST_TOKEN"),
        "{stdout}"
    );
}

#[tokio::test]
async fn key_value_counts_across_executions_and_restarts_in_separate_buckets() {
    let work = Workdir::new();
    let count = r#"{ increment = "n" }"#;
    work.manifest("a", &caps("a", count, Some("{ kv = true }"), &[]))
        .manifest("b", &caps("b", count, Some("{ kv = true }"), &[]))
        .manifest(
            "shared-1",
            &caps("shared-1", count, Some(r#"{ kv = "team" }"#), &[]),
        )
        .manifest(
            "shared-2",
            &caps("shared-2", count, Some(r#"{ kv = "team" }"#), &[]),
        )
        .manifest("none", &caps("none", count, None, &[]))
        .manifest(
            "other",
            &caps(
                "other",
                r#"{ increment = "n", bucket = "team" }"#,
                Some("{ kv = true }"),
                &[],
            ),
        );
    let server = work.start();
    for expected in 1..=3 {
        let done = run(&server, "a").await;
        assert_eq!(done["output"]["kv"], expected, "{done}");
    }
    let done = run(&server, "a").await;
    let call = &attempt(&done)["host_calls"][0];
    assert_eq!(
        *call,
        json!({"kind": "kv", "op": "increment", "bucket": "a", "key": "n", "bytes": 8})
    );
    assert_eq!(run(&server, "b").await["output"]["kv"], 1);
    assert_eq!(run(&server, "shared-1").await["output"]["kv"], 1);
    assert_eq!(run(&server, "shared-2").await["output"]["kv"], 2);

    // Not granted, or another bucket than granted: refused and audited.
    for path in ["none", "other"] {
        let done = run(&server, path).await;
        let error = done["output"]["kv"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("AccessDenied"), "{done}");
        let call = &attempt(&done)["host_calls"][0];
        assert_eq!(call["op"], "open");
        assert!(call["denied"].as_str().is_some(), "{call}");
    }

    // Counted on across a restart.
    server.stop();
    let server = work.start();
    assert_eq!(run(&server, "a").await["output"]["kv"], 5);
    assert_eq!(run(&server, "shared-1").await["output"]["kv"], 3);
}

#[tokio::test]
async fn fuel_is_metered_and_its_limit_fails_the_step() {
    let work = Workdir::new();
    let fuel = "[limits]\nfuel = 5000000";
    let spin = Manifest::new("spin", NONE)
        .step_with("caps", "{ spin = true }", &["retries = { max = 2 }"])
        .section(fuel)
        .to_string();
    work.manifest("spin", &spin)
        .manifest("quick", &caps("quick", "{}", None, &[fuel]))
        .manifest("unmetered", &caps("unmetered", "{}", None, &[]));
    let server = work.start();
    let done = run(&server, "spin").await;
    assert_eq!(done["status"], "failed", "{done}");
    let a = attempt(&done);
    assert_eq!(a["error"]["kind"], "fuel", "{done}");
    assert!(
        a["error"]["message"].as_str().unwrap().contains("5000000"),
        "{done}"
    );
    assert_eq!(
        done["steps"][0]["attempts"].as_array().unwrap().len(),
        1,
        "running out of fuel is not retried"
    );
    let done = run(&server, "quick").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let used = attempt(&done)["fuel"].as_u64().unwrap();
    assert!(used > 0 && used < 5_000_000, "{used}");
    let done = run(&server, "unmetered").await;
    assert!(attempt(&done).get("fuel").is_none(), "{done}");
}

/// A component whose code opens a socket (Rust's standard library, as a
/// language runtime's would) loads, and gets no network: the socket and
/// the name lookup fail inside the guest, and both are in the audit trail.
#[tokio::test]
async fn sockets_load_and_are_refused_and_audited() {
    let sink = Sink::start().await;
    let work = Workdir::new();
    work.manifest(
        "sockets",
        &caps(
            "sockets",
            &format!(
                r#"{{ connect = "{}", lookup = "localhost:80" }}"#,
                sink.addr
            ),
            Some(r#"{ http = ["127.0.0.1"] }"#),
            &[],
        ),
    );
    let server = work.start_env(&[("HOOKFLOW_ALLOW_HTTP", "127.0.0.1")]);
    let done = run(&server, "sockets").await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let out = &done["output"];
    assert!(
        out["connect"].as_str().unwrap().starts_with("error: "),
        "{out}"
    );
    assert!(
        out["lookup"].as_str().unwrap().starts_with("error: "),
        "{out}"
    );
    let calls = attempt(&done)["host_calls"].as_array().unwrap().clone();
    let ops: Vec<&str> = calls.iter().filter_map(|c| c["op"].as_str()).collect();
    assert!(ops.contains(&"tcp"), "{calls:?}");
    assert!(ops.contains(&"lookup"), "{calls:?}");
    all_socket_denials(&calls);
    assert!(sink.seen().is_empty(), "a socket reached the sink");
}

/// Two workflows, `{prefix}-sync` and `{prefix}-async`, each one step
/// built from the source folder `source` with the `sink`'s two URLs to
/// notify, `/granted` on 127.0.0.1 (granted) and `/not-granted` on
/// localhost (not), and `extra` lines for the step; `sections` go above.
pub fn greeting_workflows(
    work: &Workdir,
    sink: &Sink,
    prefix: &str,
    source: &str,
    sections: &str,
    extra: &str,
) {
    let port = sink.addr.port();
    for mode in ["sync", "async"] {
        let name = format!("{prefix}-{mode}");
        let text = Manifest::new(&name, NONE)
            .trigger("mode", &format!("\"{mode}\""))
            .to_string()
            + &format!(
                "\n{sections}\n[[steps]]\nsource = \"{source}\"\nconfig = {{ notify = [\"http://127.0.0.1:{port}/granted\", \"http://localhost:{port}/not-granted\"] }}\n{extra}\n"
            );
        work.manifest(&name, &text);
    }
}

/// What a greeting step written in any language must do with its grant:
/// answer `{prefix}-sync` with its greeting, the granted call made (and
/// the only one the sink saw) and the other refused inside the step,
/// saying `refused`; then record `{prefix}-async` with its logs and both
/// calls audited. Returns the async execution.
pub async fn greets_with_one_granted_call(
    server: &Server,
    sink: &Sink,
    prefix: &str,
    refused: &str,
) -> Value {
    let r = server
        .post_json(&format!("/hooks/{prefix}-sync"), &json!({"name": "Ada"}))
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let out = &answer["output"];
    assert_eq!(out["message"], "Hello, Ada!", "{answer}");
    assert_eq!(out["notify"][0], 200, "{answer}");
    assert!(
        out["notify"][1].as_str().unwrap().contains(refused),
        "{answer}"
    );
    let seen = sink.seen();
    assert_eq!(seen.len(), 1, "only the granted call was sent");
    assert_eq!(seen[0].1, "/granted");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[0].2).unwrap(),
        json!({"text": "Hello, Ada!"})
    );

    let done = run_with(
        server,
        &format!("{prefix}-async"),
        &json!({"name": "Grace"}),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let a = attempt(&done);
    assert!(a["logs"].to_string().contains("attempt 1"), "{a}");
    let calls = a["host_calls"].as_array().unwrap();
    assert_eq!(calls[0]["status"], 200, "{a}");
    assert_eq!(calls[1]["host"], "localhost", "{a}");
    assert!(
        calls[1]["denied"]
            .as_str()
            .unwrap()
            .contains("not in this step's grant"),
        "{a}"
    );
    done
}

/// Every host call is a refused socket use.
pub fn all_socket_denials(calls: &[Value]) {
    for call in calls {
        assert_eq!(call["kind"], "socket", "{call}");
        assert!(
            call["denied"]
                .as_str()
                .unwrap()
                .contains("sockets are never granted"),
            "{call}"
        );
    }
}
