//! `/metrics` (issue 13, item 10): Prometheus text that a parser reads,
//! whose counters move with requests, executions, steps, outbound calls
//! and reloads.

use std::collections::HashMap;

use serde_json::json;

use crate::support::{Go, Manifest, Server, Workdir, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

/// Every sample of `/metrics`, parsed, by name and sorted labels.
async fn scrape(server: &Server) -> HashMap<String, f64> {
    let r = server.client.get(server.url("/metrics")).go().await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    // The parser skips a line it cannot read: every metric written is read.
    let read: std::collections::HashSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap();
        let name = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(read.contains(name), "unreadable line `{line}`");
    }
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = format!("{}{{{}}}", s.metric, labels.join(","));
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                // The `+Inf` bucket: how many were observed.
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(key, value);
    }
    out
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let work = Workdir::new();
    work.manifest("ok", &one_step("ok", "sync", NONE, "echo", "{}"))
        .manifest("bad", &one_step("bad", "sync", NONE, "fail", "{}"))
        .manifest(
            "out",
            &Manifest::new("out", NONE)
                .trigger("mode", "\"sync\"")
                .step("http_request", r#"{ url = "http://127.0.0.1:9/x" }"#)
                .to_string(),
        );
    let server = work.start();
    let before = scrape(&server).await;
    assert!(
        get(&before, "hookflow_database_bytes{}") > 0.0,
        "{before:?}"
    );
    assert!(
        get(&before, "hookflow_reloads_total{result=ok}") >= 1.0,
        "{before:?}"
    );

    for n in 0..3 {
        let r = server.post_json("/hooks/ok", &json!({"n": n})).await;
        assert_eq!(r.status(), 200);
    }
    for _ in 0..2 {
        let r = server.post_json("/hooks/bad", &json!({})).await;
        assert_eq!(r.status(), 500);
    }
    let r = server.post_json("/hooks/out", &json!({})).await;
    assert_eq!(r.status(), 500);
    let r = server.post_json("/hooks/nowhere", &json!({})).await;
    assert_eq!(r.status(), 404);
    let r = server
        .client
        .get(server.url("/no/such/endpoint"))
        .go()
        .await;
    assert_eq!(r.status(), 404);

    let after = scrape(&server).await;
    let moved = |key: &str| get(&after, key) - get(&before, key);
    let hooks = "hookflow_http_requests_total{route=/hooks/*path,status=";
    assert_eq!(moved(&format!("{hooks}200}}")), 3.0, "{after:?}");
    assert_eq!(moved(&format!("{hooks}500}}")), 3.0, "{after:?}");
    assert_eq!(moved(&format!("{hooks}404}}")), 1.0, "{after:?}");
    assert_eq!(
        moved("hookflow_http_requests_total{route=unmatched,status=404}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        moved("hookflow_workflow_executions_total{status=succeeded,workflow=ok}"),
        3.0
    );
    assert_eq!(
        moved("hookflow_workflow_executions_total{status=failed,workflow=bad}"),
        2.0
    );
    assert_eq!(
        moved("hookflow_step_duration_seconds{step=echo,workflow=ok}"),
        3.0,
        "{after:?}"
    );
    assert!(
        moved("hookflow_outbound_requests_total{outcome=denied,workflow=out}") >= 1.0,
        "{after:?}"
    );
    assert_eq!(get(&after, "hookflow_executions_unfinished{}"), 0.0);
    assert!(after.contains_key("hookflow_executions_unfinished_bytes{}"));
    assert_eq!(
        moved("hookflow_executions_finished_total{status=failed}"),
        3.0
    );
}

/// What a collector was sent: (path, body) of each request.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP collector on 127.0.0.1 that keeps what it is sent.
fn collector() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = header.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    kept.lock().unwrap().push((path, body));
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (url, got)
}

/// Whether `haystack` holds `needle`.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn spans_are_exported_over_otlp_when_asked() {
    let (url, got) = collector();
    let work = Workdir::new();
    work.manifest("traced", &one_step("traced", "sync", NONE, "echo", "{}"));
    let server = work.start_env(&[("HOOKFLOW_OTLP_ENDPOINT", url.as_str())]);
    let r = server.post_json("/hooks/traced", &json!({"n": 1})).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let id = body["execution_id"].as_str().unwrap().to_string();
    // A clean stop flushes the spans still buffered.
    server.stop();
    let got = got.lock().unwrap();
    assert!(!got.is_empty(), "nothing was exported");
    assert!(
        got.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let all: Vec<u8> = got.iter().flat_map(|(_, b)| b.clone()).collect();
    for needle in [
        "hookflow",
        "request",
        "step",
        "traced",
        id.as_str(),
        "/hooks/*path",
    ] {
        assert!(holds(&all, needle), "`{needle}` is in no exported span");
    }
}
