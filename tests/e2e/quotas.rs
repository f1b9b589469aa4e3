//! Quotas (issue 13, item 7): executions per UTC day and month, per
//! workflow and per user, counted in the transaction that records each
//! execution, so they hold exactly under concurrency and across restarts.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::{ADMIN_TOKEN, Go, Server, Workdir, error_body, hookflow, one_step};

const NONE: &str = r#"{ kind = "none" }"#;

fn with_quota(path: &str, quota: &str) -> String {
    format!(
        "{}\n[quota]\n{quota}\n",
        one_step(path, "async", NONE, "echo", "{}")
    )
}

/// Seconds until the next UTC midnight.
fn until_midnight() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    86_400 - now % 86_400
}

async fn run_for(server: &Server, user: &str) -> reqwest::Response {
    server
        .post("/api/v1/run")
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"workflow": "per-user", "user": user, "data": {}}))
        .go()
        .await
}

#[tokio::test]
async fn the_execution_past_the_quota_is_429_until_the_window_resets_even_after_a_restart() {
    let work = Workdir::new();
    work.manifest(
        "daily",
        &with_quota("daily", "per_day = 3\nper_month = 100"),
    )
    .manifest("busy", &with_quota("busy", "per_day = 5"))
    .manifest("per-user", &with_quota("per-user", "per_user_per_day = 2"));
    let server = work.start();

    for n in 0..3 {
        let r = server.post_json("/hooks/daily", &json!({"n": n})).await;
        assert_eq!(r.status(), 202);
    }
    let r = server.post_json("/hooks/daily", &json!({"n": 3})).await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The day's window ends at midnight UTC (a few seconds of slack for
    // the time between the answer and this reading).
    let expected = until_midnight();
    assert!(
        retry_after.abs_diff(expected) <= 5,
        "Retry-After {retry_after}, {expected} s to midnight UTC"
    );
    let body = error_body(r, 429, "quota-exceeded").await;
    assert!(body.to_string().contains("3 executions per day"), "{body}");
    // Nothing was recorded for the refused one.
    let (_, page) = server.api("/api/v1/executions?workflow=daily").await;
    assert_eq!(page["executions"].as_array().unwrap().len(), 3);

    // At once, from many connections: exactly the quota is taken.
    let sends = (0..12).map(|n| {
        let r = server.post("/hooks/busy").json(&json!({"n": n})).send();
        async move { r.await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );

    // Per user: each user has their own count.
    for _ in 0..2 {
        assert_eq!(run_for(&server, "ada").await.status(), 202);
    }
    let refused = error_body(run_for(&server, "ada").await, 429, "quota-exceeded").await;
    assert!(refused.to_string().contains("user `ada`"), "{refused}");
    assert_eq!(run_for(&server, "bob").await.status(), 202);

    // The counts are in the database: a restart does not reset them.
    server.stop();
    let server = work.start();
    let r = server.post_json("/hooks/daily", &json!({"n": 4})).await;
    error_body(r, 429, "quota-exceeded").await;
    let r = server.post_json("/hooks/busy", &json!({})).await;
    error_body(r, 429, "quota-exceeded").await;
    error_body(run_for(&server, "ada").await, 429, "quota-exceeded").await;
    assert_eq!(run_for(&server, "bob").await.status(), 202);
}

#[test]
fn a_zero_quota_is_refused_with_its_line() {
    let work = Workdir::new();
    work.manifest("zero", &with_quota("zero", "per_day = 0"));
    let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let expected = format!(
        "{}:12: quota.per_day must be at least 1",
        work.dir().join("zero.toml").display()
    );
    assert!(
        stdout.contains(&expected),
        "missing `{expected}` in:\n{stdout}"
    );
}
