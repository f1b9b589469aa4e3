//! `hookflow runs list|show|tail`: the executions API of a running server,
//! as tables for people and as the API's JSON for scripts (`--json`).

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value;

use crate::cli::{Runs, Token};
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

/// Runs `hookflow runs ...` against `url`.
pub async fn run(
    what: Runs,
    url: &str,
    token: Option<&Token>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(token) = token else {
        bail!("set HOOKFLOW_ADMIN_TOKEN (or --token) to the server's admin token");
    };
    let auth = vec![(
        "authorization".to_string(),
        format!("Bearer {}", token.expose()),
    )];
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
