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
