//! The operator's commands against a running server (issue 13, item 12):
//! `hookflow send`, a delivery signed as each trigger kind expects, is
//! accepted by the real server, and one signed with a wrong secret is
//! refused; `hookflow runs list|show|tail` read its executions.

use serde_json::Value;

use crate::support::{ADMIN_TOKEN, Manifest, Workdir, hookflow, one_step};

/// Each trigger kind: (workflow, auth).
const KINDS: [(&str, &str); 9] = [
    ("none", r#"{ kind = "none" }"#),
    ("bearer", r#"{ kind = "bearer", secrets = ["file:tok"] }"#),
    (
        "header",
        r#"{ kind = "header", header = "X-Token", secrets = ["file:tok"] }"#,
    ),
    (
        "path-token",
        r#"{ kind = "path-token", secrets = ["file:tok"] }"#,
    ),
    (
        "standard",
        r#"{ kind = "standard-webhooks", secrets = ["file:sw"] }"#,
    ),
    ("github", r#"{ kind = "github", secrets = ["file:gh"] }"#),
    (
        "stripe",
        r#"{ kind = "stripe", secrets = ["file:stripe"] }"#,
    ),
    (
        "hmac-hex",
        r#"{ kind = "hmac-sha256", header = "X-Signature", secrets = ["file:gh"] }"#,
    ),
    (
        "hmac-base64",
        r#"{ kind = "hmac-sha256", header = "X-Sig", prefix = "v=", encoding = "base64", secrets = ["file:gh"] }"#,
    ),
];

/// A directory with a workflow of each kind, its secrets made of `seed`.
fn workdir(seed: char) -> Workdir {
    let work = Workdir::new();
    let token: String = std::iter::repeat_n(seed, 24).collect();
    // Standard Webhooks keys are `whsec_` and the base64 of 24 bytes.
    work.file("tok", &token)
        .file(
            "sw",
            &format!(
                "whsec_{}",
                std::iter::repeat_n(seed, 32).collect::<String>()
            ),
        )
        .file("gh", &format!("github-{token}"))
        .file("stripe", &format!("whsec_{token}"))
        .file("payload.json", r#"{"order": 7}"#);
    for (name, auth) in KINDS {
        let path = if name == "path-token" { "" } else { name };
        let manifest = one_step(path, "async", auth, "echo", "{}");
        let manifest = if path.is_empty() {
            manifest.replace("path = \"\"\n", "")
        } else {
            manifest
        };
        work.manifest(name, &format!("name = \"{name}\"\n{manifest}"));
    }
    work
}

fn send(work: &Workdir, base: &str, workflow: &str) -> (Option<i32>, String) {
    let out = hookflow()
        .arg("send")
        .arg(workflow)
        .arg("--dir")
        .arg(work.dir())
        .args(["--url", base])
        .arg("--data")
        .arg(work.dir().join("payload.json"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn send_signs_each_trigger_kind_and_a_wrong_secret_is_refused() {
    let work = workdir('A');
    let server = work.start();
    for (name, _) in KINDS {
        let (code, out) = send(&work, &server.base, name);
        assert_eq!(code, Some(0), "{name}: {out}");
        assert!(out.starts_with("HTTP 202\n"), "{name}: {out}");
        assert!(out.contains("\"status_url\""), "{name}: {out}");
    }
    // The payload arrived as sent.
    let (_, page) = server.api("/api/v1/executions?workflow=stripe").await;
    let id = page["executions"][0]["id"].as_str().unwrap().to_string();
    let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(record["payload"], serde_json::json!({"order": 7}));

    // The same manifests with other secrets: every signed kind is refused.
    let wrong = workdir('B');
    for (name, _) in KINDS.iter().skip(1) {
        let (code, out) = send(&wrong, &server.base, name);
        assert_eq!(code, Some(1), "{name}: {out}");
        let refused = if *name == "path-token" {
            "HTTP 404\n"
        } else {
            "HTTP 401\n"
        };
        assert!(out.starts_with(refused), "{name}: {out}");
    }
    let (code, out) = send(&work, &server.base, "nope");
    assert_eq!(code, Some(1));
    assert!(out.contains("no workflow `nope`"), "{out}");
}

/// `hookflow runs ARGS` against `base` with the admin token: exit code and
/// standard output (standard error after it).
fn runs(base: &str, args: &[&str], token: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = hookflow();
    cmd.arg("runs").args(args).env("HOOKFLOW_URL", base);
    match token {
        Some(t) => cmd.env("HOOKFLOW_ADMIN_TOKEN", t),
        None => cmd.env_remove("HOOKFLOW_ADMIN_TOKEN"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn runs_list_show_and_tail_read_a_running_server() {
    let work = Workdir::new();
    work.manifest(
        "two",
        &Manifest::new("two", r#"{ kind = "none" }"#)
            .trigger("mode", "\"async\"")
            .step("fail", r#"{ mode = "sleep", ms = 500 }"#)
            .step("echo", "{}")
            .to_string(),
    );
    let server = work.start();
    let ack: Value = server
        .post_json("/hooks/two", &serde_json::json!({"n": 1}))
        .await
        .json()
        .await
        .unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    let base = server.base.clone();

    // Followed while it runs, to its end.
    let (code, out, err) = runs(&base, &["tail", &id], Some(ADMIN_TOKEN));
    assert_eq!(code, Some(0), "{out}{err}");
    let events: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        events,
        [
            "step_started",
            "step_finished",
            "step_started",
            "log",
            "log",
            "step_finished",
            "finished"
        ],
        "{out}"
    );
    assert!(
        out.lines().last().unwrap().contains("\"succeeded\""),
        "{out}"
    );

    let (code, out, err) = runs(&base, &["list", "--workflow", "two"], Some(ADMIN_TOKEN));
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(
        lines[0].contains("WORKFLOW") && lines[0].contains("STATUS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&id) && lines[1].contains("succeeded"),
        "{out}"
    );

    let (code, out, _) = runs(
        &base,
        &["list", "--json", "--status", "succeeded"],
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, Some(0));
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["executions"][0]["id"], id.as_str());

    let (code, out, _) = runs(&base, &["show", &id], Some(ADMIN_TOKEN));
    assert_eq!(code, Some(0));
    assert!(out.contains("status    succeeded"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("echo") && l.contains("succeeded")),
        "{out}"
    );
    let (_, out, _) = runs(&base, &["show", &id, "--json"], Some(ADMIN_TOKEN));
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["steps"].as_array().unwrap().len(), 2);

    let (code, _, err) = runs(&base, &["list"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("HOOKFLOW_ADMIN_TOKEN"), "{err}");
    let (code, _, err) = runs(&base, &["list"], Some("wrong"));
    assert_eq!(code, Some(1));
    assert!(err.contains("HTTP 401"), "{err}");
    let (code, _, err) = runs(&base, &["show", "no-such-id"], Some(ADMIN_TOKEN));
    assert_eq!(code, Some(1));
    assert!(err.contains("HTTP 404"), "{err}");
}

/// `hookflow triggers ARGS` against `base` with the admin token.
fn triggers(base: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = hookflow()
        .arg("triggers")
        .args(args)
        .env("HOOKFLOW_URL", base)
        .env("HOOKFLOW_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value after `label` on its line of `out`.
fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.split_whitespace().next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no `{label}` in:\n{out}"))
}

#[tokio::test]
async fn triggers_are_made_and_managed_from_the_command_line() {
    let work = Workdir::new();
    work.manifest(
        "hooked",
        &one_step("hooked", "async", r#"{ kind = "none" }"#, "echo", "{}"),
    );
    let server = work.start();
    let base = server.base.clone();
    let deliver = async |url: &str, secret: &str| {
        server
            .post(url)
            .bearer_auth(secret)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };

    let (code, out, err) = triggers(&base, &["create", "hooked"]);
    assert_eq!(code, Some(0), "{err}");
    let (id, url, secret) = (
        field(&out, "trigger  "),
        field(&out, "url      "),
        field(&out, "secret   "),
    );
    assert!(out.contains("shown once"), "{out}");
    assert_eq!(deliver(url, secret).await, 202);

    let (code, out, _) = triggers(&base, &["list", "--workflow", "hooked"]);
    assert_eq!(code, Some(0));
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert!(
        out.contains(id) && out.contains(url) && !out.contains(secret),
        "{out}"
    );

    assert_eq!(triggers(&base, &["disable", id]).0, Some(0));
    assert_eq!(deliver(url, secret).await, 422);
    assert_eq!(triggers(&base, &["enable", id]).0, Some(0));
    assert_eq!(deliver(url, secret).await, 202);

    let (code, out, _) = triggers(&base, &["rotate", id, "--grace", "1h"]);
    assert_eq!(code, Some(0));
    let new = field(&out, "secret   ");
    assert_ne!(new, secret);
    assert_eq!(deliver(url, secret).await, 202, "within its grace");
    assert_eq!(deliver(url, new).await, 202);

    let (code, out, _) = triggers(
        &base,
        &[
            "create",
            "hooked",
            "--cron",
            "0 9 * * MON",
            "--timezone",
            "Europe/Paris",
            "--json",
        ],
    );
    assert_eq!(code, Some(0));
    let cron: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cron["schedule"], "0 9 * * MON");
    assert_eq!(cron["timezone"], "Europe/Paris");

    assert_eq!(triggers(&base, &["delete", id]).0, Some(0));
    assert_eq!(deliver(url, new).await, 404);
    let (code, _, err) = triggers(&base, &["delete", id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("HTTP 404"), "{err}");
    let (code, _, err) = triggers(&base, &["create", "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no workflow `nope`"), "{err}");
}
