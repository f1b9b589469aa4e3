//! The dashboard (`/ui/`): its login session and the safety around it,
//! the answers that serve its files, the API it reads (several statuses,
//! text search, the event body, the server-wide stream) and, in a real
//! browser, the pages themselves (`tests/browser/dashboard.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, Server, Workdir, execution_ids, repo_root, shared_cache};

/// Pinned test tools, installed once into the test build's own folder.
const PLAYWRIGHT: &str = "1.65.2";
const AXE_CORE: &str = "4.14.1";
const CHROMIUM: &str = "/usr/bin/chromium";

const XSS: &str = "<img src=x onerror=alert(1)>";

/// `ok` succeeds (echo, then a short sleep so that it is seen running);
/// `bad` logs its body and fails with the XSS text as its error.
fn workdir() -> Workdir {
    let work = Workdir::new();
    std::fs::create_dir_all(work.dir().join("secrets")).unwrap();
    work.file("secrets/ok.token", "ok-token")
        .file("secrets/bad.token", "bad-token");
    work.manifest(
        "ok",
        r#"[trigger]
path = "ok"
auth = { kind = "bearer", secrets = ["file:secrets/ok.token"] }

[[steps]]
plugin = "plugins/echo.wasm"

[[steps]]
plugin = "plugins/fail.wasm"
config = { mode = "sleep", ms = 200 }
"#,
    );
    work.manifest(
        "bad",
        &format!(
            r#"[trigger]
path = "bad"
auth = {{ kind = "bearer", secrets = ["file:secrets/bad.token"] }}

[[steps]]
plugin = "plugins/echo.wasm"

[[steps]]
plugin = "plugins/fail.wasm"
config = {{ log_body = true, message = "{XSS}" }}
"#
        ),
    );
    work
}

async fn send(server: &Server, path: &str, token: &str, body: &Value) -> String {
    let answer = server
        .post(&format!("/hooks/{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    answer.json::<Value>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Logs in; the `Cookie` header value that carries the session.
async fn login(server: &Server) -> String {
    let answer = server
        .post("/api/v1/session")
        .header("origin", &server.base)
        .json(&json!({"token": ADMIN_TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    let cookie = answer
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    cookie.split(';').next().unwrap().to_string()
}

/// The status of `GET path` with the session `cookie`.
async fn with_cookie(server: &Server, cookie: &str, path: &str) -> u16 {
    let answer = server.client.get(server.url(path)).header("cookie", cookie);
    answer.send().await.unwrap().status().as_u16()
}

/// A session works like the admin token for reads and, from this origin,
/// for changes; from another origin a change is refused whatever the
/// cookie; logout ends it for good; bearer calls are unchanged.
#[tokio::test]
async fn sessions_stand_in_for_the_token_only_from_this_origin() {
    let work = workdir();
    let server = work.start();
    let c = &server.client;
    let id = send(&server, "ok", "ok-token", &json!({"n": 1})).await;
    server.wait_finished(&id, Duration::from_secs(60)).await;

    let wrong = server
        .post("/api/v1/session")
        .header("origin", &server.base)
        .json(&json!({"token": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let cross_login = server
        .post("/api/v1/session")
        .header("origin", "http://evil.example")
        .json(&json!({"token": ADMIN_TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_login.status(), 403);

    let cookie = login(&server).await;
    assert_eq!(with_cookie(&server, &cookie, "/api/v1/session").await, 200);
    assert_eq!(
        with_cookie(&server, &cookie, "/api/v1/executions").await,
        200
    );
    assert_eq!(
        with_cookie(&server, &cookie, &format!("/api/v1/executions/{id}")).await,
        200
    );

    let replay = |origin: Option<&str>, site: Option<&str>| {
        let mut request = c
            .post(server.url(&format!("/api/v1/executions/{id}/replay")))
            .header("cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request.send()
    };
    let evil = Some("http://evil.example");
    assert_eq!(replay(evil, None).await.unwrap().status(), 403);
    assert_eq!(
        replay(None, Some("cross-site")).await.unwrap().status(),
        403
    );
    assert_eq!(
        replay(Some(&server.base), Some("same-site"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(replay(None, None).await.unwrap().status(), 403);
    let refused = replay(evil, None).await.unwrap();
    crate::support::error_body(refused, 403, "forbidden").await;
    assert_eq!(
        replay(Some(&server.base), None).await.unwrap().status(),
        202
    );
    assert_eq!(
        replay(None, Some("same-origin")).await.unwrap().status(),
        202
    );
    // A webhook is judged by its own credentials, never by the cookie.
    let hook = c
        .post(server.url("/hooks/ok"))
        .bearer_auth("ok-token")
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .json(&json!({"n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 202);
    // A bearer call is judged by its token alone, whatever the origin.
    let bearer = c
        .post(server.url(&format!("/api/v1/executions/{id}/replay")))
        .bearer_auth(ADMIN_TOKEN)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 202);
    let wrong_bearer = c
        .get(server.url("/api/v1/executions"))
        .header("cookie", &cookie)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_bearer.status(), 401);

    // A restart keeps the session.
    server.stop();
    let server = work.start();
    let c = &server.client;
    assert_eq!(
        with_cookie(&server, &cookie, "/api/v1/executions").await,
        200
    );

    let logout = c
        .delete(server.url("/api/v1/session"))
        .header("cookie", &cookie)
        .header("origin", &server.base)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let cleared = logout.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(with_cookie(&server, &cookie, "/api/v1/session").await, 401);
    assert_eq!(
        with_cookie(&server, &cookie, "/api/v1/executions").await,
        401
    );
    server.stop();
    let server = work.start();
    assert_eq!(
        with_cookie(&server, &cookie, "/api/v1/executions").await,
        401,
        "a logged-out session came back"
    );
}

/// Guessing the token through the login form is slow: ten tries a minute
/// from one address, then `429` with `Retry-After`, the right token
/// included; the bearer API is not affected.
#[tokio::test]
async fn logins_are_limited_per_address() {
    let work = workdir();
    let server = work.start();
    let try_login = |token: &'static str| {
        server
            .post("/api/v1/session")
            .header("origin", &server.base)
            .json(&json!({ "token": token }))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(try_login("guess").await.unwrap().status(), 401);
    }
    let limited = try_login(ADMIN_TOKEN).await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=7).contains(&retry), "retry after {retry}");
    let body = crate::support::error_body(limited, 429, "rate-limited").await;
    assert!(
        body["message"].as_str().unwrap().contains("logins"),
        "{body}"
    );
    let (status, _) = server.api("/api/v1/executions").await;
    assert_eq!(status, 200);
}

/// A new admin token ends every session made with the old one.
#[tokio::test]
async fn a_new_admin_token_ends_the_sessions() {
    let work = workdir();
    let server = work.start();
    let cookie = login(&server).await;
    server.stop();
    let server = work.start_env(&[("HOOKFLOW_ADMIN_TOKEN", "another-admin-token")]);
    assert_eq!(
        with_cookie(&server, &cookie, "/api/v1/executions").await,
        401
    );
}

/// Every file the dashboard serves: the security headers, an ETag that
/// answers `304`, compression; page URLs get the page, unknown files 404.
#[tokio::test]
async fn the_files_are_served_safely_and_cached() {
    let work = workdir();
    let server = work.start();
    let c = &server.client;
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/ui"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/ui/");
    for path in [
        "/ui/",
        "/ui/workflows",
        "/ui/executions/0199",
        "/ui/assets/app.js",
        "/ui/assets/style.css",
        "/ui/assets/nothing.js",
    ] {
        let answer = c.get(server.url(path)).send().await.unwrap();
        let headers = answer.headers().clone();
        let expect_status = if path.ends_with("nothing.js") {
            404
        } else {
            200
        };
        assert_eq!(answer.status(), expect_status, "{path}");
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        if expect_status == 404 {
            continue;
        }
        let text = answer.text().await.unwrap();
        let kind = headers["content-type"].to_str().unwrap();
        if path.ends_with(".js") {
            assert!(kind.contains("javascript"), "{path}: {kind}");
        } else if path.ends_with(".css") {
            assert!(kind.starts_with("text/css"), "{path}: {kind}");
        } else {
            assert!(kind.starts_with("text/html"), "{path}: {kind}");
            assert!(text.contains("/ui/assets/app.js"), "{path}");
        }
        assert!(!text.contains(ADMIN_TOKEN));
        let etag = headers["etag"].clone();
        let again = c
            .get(server.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        let gzip = c
            .get(server.url(path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(gzip.headers()["content-encoding"], "gzip", "{path}");
    }
    // Nothing in the page comes from another host.
    let page = c
        .get(server.url("/ui/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reference in ["http://", "https://", "//"] {
        let outside = page
            .match_indices(reference)
            .filter(|(i, _)| !page[..*i].ends_with("xmlns=\""))
            .count();
        assert_eq!(outside, 0, "{reference} in the page: {page}");
    }
}

/// What the list offers the dashboard: several statuses at once, text
/// search in the bodies (and by id), the raw body as a download, and the
/// counts of a summary.
#[tokio::test]
async fn the_list_filters_by_several_statuses_and_searches_the_bodies() {
    let work = workdir();
    let server = work.start();
    let ok = send(&server, "ok", "ok-token", &json!({"note": "Blue Whale"})).await;
    let bad = send(&server, "bad", "bad-token", &json!({"note": XSS})).await;
    server.wait_finished(&ok, Duration::from_secs(60)).await;
    server.wait_finished(&bad, Duration::from_secs(60)).await;
    let ids = execution_ids;
    let (_, both) = server
        .api("/api/v1/executions?status=failed,succeeded")
        .await;
    assert_eq!(ids(&both), [bad.as_str(), ok.as_str()]);
    let (_, failed) = server.api("/api/v1/executions?status=failed,running").await;
    assert_eq!(ids(&failed), [bad.as_str()]);
    let (_, found) = server.api("/api/v1/executions?q=blue%20whale").await;
    assert_eq!(ids(&found), [ok.as_str()]);
    let (_, by_id) = server.api(&format!("/api/v1/executions?q={bad}")).await;
    assert_eq!(ids(&by_id), [bad.as_str()]);
    let (_, none) = server.api("/api/v1/executions?q=whale&status=failed").await;
    assert_eq!(ids(&none), Vec::<String>::new());
    let (status, _) = server.api("/api/v1/executions?status=failed,nope").await;
    assert_eq!(status, 400);

    let summary = &both["executions"][1];
    assert_eq!(summary["steps"], 2);
    assert_eq!(summary["attempts"], 2);
    assert!(summary["peak_memory_bytes"].as_u64().unwrap() > 0);

    let body = server
        .client
        .get(server.url(&format!("/api/v1/executions/{bad}/body")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.headers()["content-type"], "application/octet-stream");
    assert!(
        body.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(body.headers()["content-security-policy"], "sandbox");
    let sent: Value = body.json().await.unwrap();
    assert_eq!(sent["note"], XSS);
}

/// `/api/v1/stream`: every execution's changes as they are recorded, and
/// a `workflows` event when the directory changes.
#[tokio::test]
async fn the_stream_tells_of_every_change() {
    let work = workdir();
    let server = work.start();
    let stream = server
        .client
        .get(server.url("/api/v1/stream"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut body = stream.bytes_stream();
    let id = send(&server, "ok", "ok-token", &json!({"n": 1})).await;
    let mut text = String::new();
    let mut statuses = Vec::new();
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                let Some(data) = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .filter(|_| event.contains("event: execution"))
                else {
                    continue;
                };
                let summary: Value = serde_json::from_str(data).unwrap();
                if summary["id"] == id.as_str() {
                    statuses.push(summary["status"].as_str().unwrap().to_string());
                    if summary["status"] == "succeeded" {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "saw {statuses:?}");
    assert_eq!(statuses.last().unwrap(), "succeeded");

    work.manifest(
        "third",
        &crate::support::one_step("third", "async", r#"{ kind = "none" }"#, "echo", "{}"),
    );
    let reloaded = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains("event: workflows") {
                return;
            }
        }
    })
    .await;
    assert!(reloaded.is_ok(), "no workflows event: {text}");
}

/// A Python venv with Playwright, and axe-core, installed once per test
/// build (pinned versions).
fn browser_tools() -> (PathBuf, PathBuf) {
    let tools = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-tools");
    let venv = tools.join(format!("playwright-{PLAYWRIGHT}"));
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (Python 3 with venv)",
        );
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("playwright=={PLAYWRIGHT}")),
            "pip install playwright",
        );
        std::fs::write(&ready, "").unwrap();
    }
    let axe_dir = tools.join(format!("axe-core-{AXE_CORE}"));
    let axe = axe_dir.join("node_modules/axe-core/axe.min.js");
    if !axe.exists() {
        run(
            Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&axe_dir)
                .arg(format!("axe-core@{AXE_CORE}")),
            "npm install axe-core",
        );
    }
    (python, axe)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pages in Debian's Chromium, headless, through Playwright: login,
/// live list, detail, replay, filters, paging, restart, workflows,
/// logout; the payload as text; no console error, CSP violation or
/// request off 127.0.0.1; axe-core on each page. Writes the README's
/// screenshots (`docs/screenshots/`). Fails when the browser is missing.
#[test]
fn the_dashboard_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's chromium at {CHROMIUM} (`.ci/run` installs it)"
    );
    let (python, axe) = browser_tools();
    let work = workdir();
    let out = work.tmp.path().join("browser");
    std::fs::create_dir_all(&out).unwrap();
    let screenshots = repo_root().join("docs/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let status = Command::new(python)
        .arg(repo_root().join("tests/browser/dashboard.py"))
        .arg("--hookflow")
        .arg(env!("CARGO_BIN_EXE_hookflow"))
        .arg("--dir")
        .arg(work.dir())
        .arg("--db")
        .arg(work.db())
        .args(["--token", ADMIN_TOKEN, "--chromium", CHROMIUM])
        .arg("--axe")
        .arg(&axe)
        .arg("--screenshots")
        .arg(&screenshots)
        .arg("--out")
        .arg(&out)
        .env("HOOKFLOW_CACHE_DIR", shared_cache())
        .status()
        .expect("python runs");
    if !status.success() {
        // Kept for a look: the failure's screenshot and the server's log.
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-failure");
        let _ = std::fs::remove_dir_all(&kept);
        std::fs::create_dir_all(&kept).unwrap();
        for file in ["failure.png", "server.log"] {
            let _ = std::fs::copy(out.join(file), kept.join(file));
        }
        panic!(
            "the browser checks failed (exit {status}); screenshot and server log in {}",
            kept.display()
        );
    }
}
