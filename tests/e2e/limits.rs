//! Limits a sender controls: rate per workflow, requests in flight, slow
//! clients. Each is answered honestly and the server keeps serving.

use futures_util::future::join_all;
use serde_json::json;

use crate::support::{Go, Workdir, error_body, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

#[tokio::test]
async fn a_rate_limit_admits_exactly_n_across_connections() {
    let work = Workdir::new();
    work.manifest(
        "rated",
        &format!(
            "{}\n[limits]\nrate = \"5/min\"\n",
            one_step("rated", "async", NONE, "echo", "{}")
        ),
    );
    let server = work.start();
    // Each request on its own client: separate connections.
    let sends = (0..8).map(|i| {
        reqwest::Client::new()
            .post(server.url("/hooks/rated"))
            .json(&json!({"i": i}))
            .go()
    });
    let answers = join_all(sends).await;
    let mut accepted = 0;
    let mut limited = 0;
    for r in answers {
        match r.status().as_u16() {
            202 => accepted += 1,
            429 => {
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry), "retry-after {retry}");
                error_body(r, 429, "rate-limited").await;
                limited += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((accepted, limited), (5, 3));
    let (_, page) = server.api("/api/v1/executions?workflow=rated").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn past_the_in_flight_cap_requests_are_shed_with_503() {
    let work = Workdir::new();
    work.manifest(
        "slow",
        &one_step(
            "slow",
            "sync",
            NONE,
            "fail",
            r#"{ mode = "sleep", ms = 1500 }"#,
        ),
    );
    let server = work.start_env(&[("HOOKFLOW_MAX_IN_FLIGHT", "2")]);
    let sends = (0..5).map(|_| {
        reqwest::Client::new()
            .post(server.url("/hooks/slow"))
            .json(&json!({}))
            .go()
    });
    let answers = join_all(sends).await;
    let mut ok = 0;
    let mut shed = 0;
    for r in answers {
        match r.status().as_u16() {
            200 => ok += 1,
            503 => {
                assert!(r.headers().contains_key("retry-after"));
                error_body(r, 503, "unavailable").await;
                shed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, shed), (2, 3));
    // Still serving, and nothing accepted was lost.
    let r = server.post("/hooks/slow").json(&json!({})).go().await;
    assert_eq!(r.status(), 200);
    let (_, page) = server.api("/api/v1/executions?workflow=slow").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 3);
}
