//! `hookflow runs ...` and `hookflow triggers ...`: the executions and
//! triggers API of a running server, as tables for people and as the
//! API's JSON for scripts (`--json`), with the admin token.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value;

use crate::cli::{Runs, Token, Triggers};
use crate::client::{call, follow};

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A time in ms since the epoch as RFC 3339 (seconds), or `-`.
fn time(ms: &Value) -> String {
    ms.as_u64().map_or_else(
        || "-".into(),
        |ms| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_seconds(t).to_string()
        },
    )
}

/// From `created_at_ms` to `finished_at_ms`, or `-`.
fn took(e: &Value) -> String {
    match (e["created_at_ms"].as_u64(), e["finished_at_ms"].as_u64()) {
        (Some(a), Some(b)) => format!("{} ms", b.saturating_sub(a)),
        _ => "-".into(),
    }
}

/// Rows as columns padded to their widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".into(), str::to_string)
}

/// The `Authorization` header of the admin token.
fn admin(token: Option<&Token>) -> anyhow::Result<Vec<(String, String)>> {
    let Some(token) = token else {
        bail!("set HOOKFLOW_ADMIN_TOKEN (or --token) to the server's admin token");
    };
    Ok(vec![(
        "authorization".to_string(),
        format!("Bearer {}", token.expose()),
    )])
}

/// Runs `hookflow runs ...` against `url`.
pub async fn runs(
    what: Runs,
    url: &str,
    token: Option<&Token>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let auth = admin(token)?;
    let get = async |path: String| -> anyhow::Result<Value> {
        let answer = call(url, http::Method::GET, &path, &auth, Vec::new()).await?;
        if answer.status != 200 {
            bail!("HTTP {}: {}", answer.status, answer.body);
        }
        Ok(serde_json::from_str(&answer.body)?)
    };
    match what {
        Runs::List {
            workflow,
            status,
            trigger,
            user,
            since,
            limit,
        } => {
            let mut query = format!("limit={limit}");
            for (name, value) in [
                ("workflow", workflow),
                ("status", status),
                ("trigger", trigger),
                ("user", user),
                ("since", since),
            ] {
                if let Some(v) = value {
                    let _ = write!(query, "&{name}={}", encode(&v));
                }
            }
            let page = get(format!("/api/v1/executions?{query}")).await?;
            if json {
                println!("{page}");
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["ID", "WORKFLOW", "STATUS", "TRIGGER", "CREATED", "TOOK"]
                    .map(String::from)
                    .to_vec(),
            ];
            for e in page["executions"].as_array().into_iter().flatten() {
                rows.push(vec![
                    text(&e["id"]),
                    text(&e["workflow"]),
                    text(&e["status"]),
                    text(&e["trigger"]),
                    time(&e["created_at_ms"]),
                    took(e),
                ]);
            }
            print!("{}", table(&rows));
        }
        Runs::Show { id } => {
            let e = get(format!("/api/v1/executions/{}", encode(&id))).await?;
            if json {
                println!("{e}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("execution {}", text(&e["id"]));
            println!(
                "workflow  {} ({})",
                text(&e["workflow"]),
                text(&e["trigger"])
            );
            println!("status    {}", text(&e["status"]));
            println!("created   {}", time(&e["created_at_ms"]));
            println!("took      {}", took(&e));
            if let Some(error) = e["error"].as_str() {
                println!("error     {error}");
            }
            let mut rows = vec![
                ["STEP", "STATUS", "ATTEMPTS", "WALL TIME", "ERROR"]
                    .map(String::from)
                    .to_vec(),
            ];
            for s in e["steps"].as_array().into_iter().flatten() {
                let attempts = s["attempts"].as_array().map_or(0, Vec::len);
                let last = s["attempts"].as_array().and_then(|a| a.last());
                let wall = last
                    .and_then(|a| a["wall_time_us"].as_u64())
                    .map_or_else(|| "-".into(), |us| format!("{:.1} ms", us as f64 / 1000.0));
                let error = last
                    .and_then(|a| a["error"]["message"].as_str())
                    .unwrap_or("")
                    .to_string();
                rows.push(vec![
                    text(&s["id"]),
                    text(&s["status"]),
                    attempts.to_string(),
                    wall,
                    error,
                ]);
            }
            println!();
            print!("{}", table(&rows));
            if let Some(output) = e.get("output") {
                println!("\noutput    {output}");
            }
        }
        Runs::Tail { id } => {
            let path = format!("/api/v1/executions/{}/events", encode(&id));
            follow(url, &path, &auth, |event| {
                if json {
                    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
                    println!(
                        "{}",
                        serde_json::json!({"id": event.id, "event": event.event, "data": data})
                    );
                } else {
                    println!("{:>4} {:<14} {}", event.id, event.event, event.data);
                }
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `hookflow triggers ...` against `url`.
pub async fn triggers(
    what: Triggers,
    url: &str,
    token: Option<&Token>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut headers = admin(token)?;
    headers.push(("content-type".into(), "application/json".into()));
    let send = async |method: http::Method, path: String, body: Option<Value>| {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let answer = call(url, method, &path, &headers, body).await?;
        if !(200..300).contains(&answer.status) {
            bail!("HTTP {}: {}", answer.status, answer.body);
        }
        anyhow::Ok(serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::Null))
    };
    let one = |t: &Value| {
        let mut lines = vec![
            format!("trigger  {}", text(&t["id"])),
            format!("workflow {}", text(&t["workflow"])),
            format!("kind     {}", text(&t["kind"])),
            format!("enabled  {}", t["enabled"]),
        ];
        if let Some(url) = t["url"].as_str() {
            lines.push(format!("url      {url}"));
        }
        if let Some(schedule) = t["schedule"].as_str() {
            lines.push(format!("schedule {schedule} ({})", text(&t["timezone"])));
        }
        if let Some(secret) = t["secret"].as_str() {
            lines.push(format!("secret   {secret}   (shown once: keep it now)"));
        }
        lines.join("\n")
    };
    let shown = match what {
        Triggers::List { workflow } => {
            let query = workflow.map_or_else(String::new, |w| format!("?workflow={}", encode(&w)));
            let all = send(http::Method::GET, format!("/api/v1/triggers{query}"), None).await?;
            if json {
                println!("{all}");
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["ID", "WORKFLOW", "KIND", "ENABLED", "URL OR SCHEDULE"]
                    .map(String::from)
                    .to_vec(),
            ];
            for t in all["triggers"].as_array().into_iter().flatten() {
                let target = t["url"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| {
                        t["schedule"]
                            .as_str()
                            .map(|s| format!("{s} ({})", text(&t["timezone"])))
                    })
                    .unwrap_or_default();
                rows.push(vec![
                    text(&t["id"]),
                    text(&t["workflow"]),
                    text(&t["kind"]),
                    t["enabled"].to_string(),
                    target,
                ]);
            }
            print!("{}", table(&rows));
            return Ok(ExitCode::SUCCESS);
        }
        Triggers::Create {
            workflow,
            cron,
            timezone,
            missed,
            disabled,
        } => {
            let mut body = serde_json::json!({"workflow": workflow, "enabled": !disabled});
            match cron {
                Some(schedule) => {
                    body["kind"] = "cron".into();
                    body["schedule"] = schedule.into();
                    body["timezone"] = timezone.unwrap_or_else(|| "UTC".into()).into();
                    if let Some(m) = missed {
                        body["missed"] = m.into();
                    }
                }
                None => body["kind"] = "webhook".into(),
            }
            send(http::Method::POST, "/api/v1/triggers".into(), Some(body)).await?
        }
        Triggers::Enable { id } => {
            let path = format!("/api/v1/triggers/{}", encode(&id));
            send(
                http::Method::PATCH,
                path,
                Some(serde_json::json!({"enabled": true})),
            )
            .await?
        }
        Triggers::Disable { id } => {
            let path = format!("/api/v1/triggers/{}", encode(&id));
            send(
                http::Method::PATCH,
                path,
                Some(serde_json::json!({"enabled": false})),
            )
            .await?
        }
        Triggers::Delete { id } => {
            send(
                http::Method::DELETE,
                format!("/api/v1/triggers/{}", encode(&id)),
                None,
            )
            .await?;
            if !json {
                println!("deleted {id}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Triggers::Rotate { id, grace } => {
            let body = grace.map(|g| serde_json::json!({"grace": g}));
            let path = format!("/api/v1/triggers/{}/rotate-secret", encode(&id));
            send(http::Method::POST, path, body).await?
        }
    };
    if json {
        println!("{shown}");
    } else {
        println!("{}", one(&shown));
    }
    Ok(ExitCode::SUCCESS)
}
