//! Following a run (issue 13, item 1): the `202` carries a `status_url`
//! and a `stream_url` with a read token for that execution alone; the
//! stream is Server-Sent Events, the history then the live tail, resumed
//! by `Last-Event-ID`.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Manifest, Server, Workdir};

const NONE: &str = r#"{ kind = "none" }"#;

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Sse {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

/// Reads a `text/event-stream` answer event by event.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"].to_str().unwrap();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Self {
            body: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` once the stream ends.
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("id", v)) => id = Some(v.trim().parse().unwrap()),
                        Some(("event", v)) => event = v.trim().to_string(),
                        Some(("data", v)) => data.push_str(v.strip_prefix(' ').unwrap_or(v)),
                        _ => {} // a comment (keep-alive)
                    }
                }
                if let Some(id) = id {
                    let data = serde_json::from_str(&data).unwrap();
                    return Some(Sse { id, event, data });
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("an event or the end within 30 s")?
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn rest(mut self) -> Vec<Sse> {
        let mut all = Vec::new();
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}

async fn get(server: &Server, url: &str, last_event_id: Option<u64>) -> reqwest::Response {
    let mut request = server.client.get(server.url(url));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    request.send().await.unwrap()
}

/// The events a three-step run (a slow step, a step that logs, a step that
/// fails once and then succeeds) makes, by name.
const NAMES: [&str; 11] = [
    "step_started",
    "step_finished",
    "step_started",
    "log",
    "log",
    "step_finished",
    "step_started",
    "step_finished",
    "step_started",
    "step_finished",
    "finished",
];

#[tokio::test]
async fn a_sender_follows_its_run_live_and_after_and_resumes_by_last_event_id() {
    let work = Workdir::new();
    let manifest = Manifest::new("three", NONE)
        .trigger("mode", "\"async\"")
        .step_with(
            "fail",
            r#"{ mode = "sleep", ms = 3000 }"#,
            &[r#"id = "slow""#],
        )
        .step_with(
            "fail",
            r#"{ mode = "log-lines", lines = 2 }"#,
            &[r#"id = "logs""#],
        )
        .step_with(
            "fail",
            r#"{ mode = "retryable", until_attempt = 2 }"#,
            &[
                r#"id = "flaky""#,
                r#"retries = { max = 1, backoff = "10ms" }"#,
            ],
        )
        .to_string();
    work.manifest("three", &manifest);
    work.manifest(
        "other",
        &Manifest::new("other", NONE)
            .trigger("mode", "\"async\"")
            .step("echo", "{}")
            .to_string(),
    );
    let server = work.start();

    let payload = json!({"n": 1});
    let ack: Value = server
        .post_json("/hooks/three", &payload)
        .await
        .json()
        .await
        .unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    let stream_url = ack["stream_url"].as_str().unwrap().to_string();
    let status_url = ack["status_url"].as_str().unwrap().to_string();

    // Connected while the first step runs: its start arrives at once, not
    // when the attempt is recorded.
    let mut live = SseReader::new(get(&server, &stream_url, None).await);
    let first = live.next().await.unwrap();
    assert_eq!(
        (first.id, first.event.as_str()),
        (1, "step_started"),
        "{first:?}"
    );
    assert_eq!(first.data["step"], "slow");
    let r: Value = get(&server, &status_url, None).await.json().await.unwrap();
    assert_eq!(r["id"], id.as_str(), "the read token reads the record");
    assert_eq!(
        r["steps"][0]["attempts"],
        json!([]),
        "the first step's start is sent while it runs, before its record: {r}"
    );
    let mut seen = vec![first];
    seen.extend(live.rest().await);
    let names: Vec<_> = seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, NAMES, "{seen:#?}");
    let ids: Vec<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=11).collect::<Vec<_>>());
    assert_eq!(seen[3].data["message"], "line 0");
    assert_eq!(seen[3].data["step"], "logs");
    assert_eq!(seen[5].data["output"], payload, "a step's output is sent");
    assert_eq!(seen[7].data["status"], "failed");
    assert_eq!(seen[7].data["error"]["kind"], "retryable");
    assert_eq!(
        (
            seen[8].data["step"].clone(),
            seen[8].data["attempt"].clone()
        ),
        (json!("flaky"), json!(2))
    );
    assert_eq!(seen[10].data["status"], "succeeded");
    assert_eq!(seen[10].data["output"], payload);

    // Connecting after the end: the same history, then the end.
    let after = SseReader::new(get(&server, &stream_url, None).await)
        .rest()
        .await;
    assert_eq!(after, seen);
    // The admin token reads it too.
    let admin = server
        .client
        .get(server.url(&format!("/api/v1/executions/{id}/events")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(SseReader::new(admin).rest().await, seen);
    // Reconnecting with `Last-Event-ID`: what came after, nothing lost.
    for last in [0, 1, 5, 10] {
        let resumed = SseReader::new(get(&server, &stream_url, Some(last)).await)
            .rest()
            .await;
        assert_eq!(resumed, seen[last as usize..], "after {last}");
    }
    let done = SseReader::new(get(&server, &stream_url, Some(11)).await)
        .rest()
        .await;
    assert!(done.is_empty(), "{done:?}");

    // The token is good for its execution and no other.
    let other: Value = server
        .post_json("/hooks/other", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let other_id = other["execution_id"].as_str().unwrap();
    let token = stream_url.split_once("?token=").unwrap().1;
    for url in [
        format!("/api/v1/executions/{other_id}?token={token}"),
        format!("/api/v1/executions/{other_id}/events?token={token}"),
        format!("/api/v1/executions/{id}/events?token={}", &token[1..]),
        format!("/api/v1/executions/{id}?token=x{token}"),
        format!("/api/v1/executions/{id}"),
        format!("/api/v1/executions/{id}/events"),
        format!("/api/v1/executions?token={token}"),
    ] {
        assert_eq!(server.status_of(&url).await, 401, "{url}");
    }
    let theirs = other["status_url"].as_str().unwrap();
    assert_eq!(server.status_of(theirs).await, 200);
}
