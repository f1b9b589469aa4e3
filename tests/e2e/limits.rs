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

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off_while_others_are_served() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let work = Workdir::new();
    work.manifest("q", &one_step("q", "sync", NONE, "echo", "{}"));
    let server = work.start_env(&[
        ("HOOKFLOW_HEADER_TIMEOUT", "1s"),
        ("HOOKFLOW_BODY_TIMEOUT", "1s"),
    ]);
    let addr = server.base.trim_start_matches("http://").to_string();

    // Headers trickled one byte at a time, never finished.
    let trickle = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let start = Instant::now();
            s.write_all(b"POST /hooks/q HTTP/1.1\r\n").await.unwrap();
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if s.write_all(b"x").await.is_err() {
                    break;
                }
            }
            let _ = read_until_closed(&mut s).await;
            start.elapsed()
        })
    };
    // A connection that sends nothing at all.
    let silent = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let start = Instant::now();
            let _ = read_until_closed(&mut s).await;
            start.elapsed()
        })
    };
    // A body trickled after complete headers.
    let slow_body = tokio::spawn(async move {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /hooks/q HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
            .await
            .unwrap();
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
        read_until_closed(&mut s).await
    });

    // Meanwhile, a normal sender is served.
    let r = server
        .post("/hooks/q")
        .json(&json!({"ok": true}))
        .go()
        .await;
    assert_eq!(r.status(), 200);

    let trickled = trickle.await.unwrap();
    assert!(
        trickled < Duration::from_secs(3),
        "trickling client held on for {trickled:?}"
    );
    let waited = silent.await.unwrap();
    assert!(
        waited < Duration::from_secs(3),
        "silent client held on for {waited:?}"
    );
    let answer = slow_body.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout"), "{answer}");

    let r = server
        .post("/hooks/q")
        .json(&json!({"still": "serving"}))
        .go()
        .await;
    assert_eq!(r.status(), 200);
}
