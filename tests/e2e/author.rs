//! For plugin authors: the guide in `plugins/README.md` runs as written,
//! from an empty folder to a live workflow, and `hookflow run-step` prints
//! a step's output, logs and audit trail.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::caps::Sink;
use crate::support::{BANNER, Server, hookflow, plugin_dir, repo_root, shared_cache};

/// The first `lang` code block after `marker` in `plugins/README.md`.
fn guide_block(marker: &str, lang: &str) -> String {
    let guide = std::fs::read_to_string(repo_root().join("plugins/README.md")).unwrap();
    let (_, after) = guide
        .split_once(marker)
        .unwrap_or_else(|| panic!("plugins/README.md has {marker}"));
    after
        .split_once(&format!("```{lang}\n"))
        .and_then(|(_, b)| b.split_once("```"))
        .unwrap_or_else(|| panic!("a {lang} block follows {marker}"))
        .0
        .to_string()
}

/// The lines of the guide's command block (after its `guide:` marker).
fn guide_lines() -> Vec<String> {
    guide_block("<!-- guide:", "sh")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Cargo as the tests run it, building into the plugins' target directory
/// with their lock file's versions, so only the new crates compile.
fn cargo_env(cmd: &mut Command) -> &mut Command {
    cmd.env("CARGO_TARGET_DIR", repo_root().join("plugins/target"))
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn hookflow_in(dir: &Path, args: &str) -> Command {
    let mut cmd = hookflow();
    cmd.current_dir(dir).args(args.split_whitespace());
    cargo_env(&mut cmd);
    cmd
}

#[tokio::test]
async fn the_authoring_guide_runs_from_an_empty_folder_to_a_live_workflow() {
    plugin_dir(); // the plugins' dependencies are compiled once
    let lines = guide_lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    // hookflow new plugin demo --dir my-hooks
    let new = lines[0]
        .strip_prefix("hookflow ")
        .expect("hookflow new ...");
    let said = run_ok(&mut hookflow_in(dir, new), &lines[0]);
    assert!(said.contains("my-hooks/demo"), "{said}");
    let again = hookflow_in(dir, new).output().unwrap();
    assert_eq!(
        again.status.code(),
        Some(1),
        "a second `new` overwrites nothing"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    std::fs::copy(
        repo_root().join("plugins/Cargo.lock"),
        dir.join("my-hooks/demo/Cargo.lock"),
    )
    .unwrap();

    // (cd my-hooks/demo && cargo test)
    let test = lines[1]
        .strip_prefix("(cd ")
        .and_then(|l| l.strip_suffix(" && cargo test)"))
        .expect("(cd CRATE && cargo test)");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.arg("test").current_dir(dir.join(test));
    let tested = run_ok(cargo_env(&mut cargo), &lines[1]);
    assert!(tested.contains("test result: ok. 1 passed"), "{tested}");

    // hookflow build my-hooks/workflows --source-root my-hooks
    let build = lines[2]
        .strip_prefix("hookflow ")
        .expect("hookflow build ...");
    run_ok(&mut hookflow_in(dir, build), &lines[2]);
    assert!(dir.join("my-hooks/workflows/plugins/demo.wasm").is_file());

    // hookflow serve --dir my-hooks/workflows --build --watch --source-root my-hooks
    let serve = lines[3]
        .strip_prefix("hookflow ")
        .expect("hookflow serve ...");
    let db = dir.join("guide.redb");
    let mut cmd = hookflow_in(dir, serve);
    cmd.env("HOOKFLOW_LISTEN", "127.0.0.1:0")
        .env("HOOKFLOW_DB", &db)
        .env("HOOKFLOW_CACHE_DIR", shared_cache())
        .env("HOOKFLOW_LOG", "warn");
    let started =
        hookflow_testkit::spawn(&mut cmd, BANNER, Duration::from_secs(300)).expect("serves");
    let mut child = started.child;

    // curl -s localhost:8080/hooks/demo -H 'content-type: application/json' -d '{"name":"Ada"}'
    let curl = &lines[4];
    let path = curl
        .split_whitespace()
        .find_map(|w| w.strip_prefix("localhost:8080"))
        .expect("a localhost:8080 URL");
    let body = curl
        .split_once("-d '")
        .and_then(|(_, b)| b.strip_suffix('\''))
        .expect("a -d '...' body");
    assert!(curl.contains("content-type: application/json"), "{curl}");
    let answer = reqwest::Client::new()
        .post(format!("{}{path}", started.listening))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let got: Value = answer.json().await.unwrap_or(Value::Null);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["output"], json!({"message": "Hello, Ada!"}), "{got}");
}

#[tokio::test]
async fn run_step_prints_the_output_logs_and_audit_trail() {
    let sink = Sink::start().await;
    let work = tempfile::tempdir().unwrap();
    let event = work.path().join("event.json");
    std::fs::write(&event, r#"{"name":"Ada"}"#).unwrap();
    let config = work.path().join("config.json");
    std::fs::write(
        &config,
        json!({"requests": [{"url": sink.url("/hello")}], "config": ["TOKEN"]}).to_string(),
    )
    .unwrap();
    let caps = plugin_dir().join("caps.wasm");
    // Waited for without blocking: the sink answers on this runtime.
    let run = async |extra: &[&str]| {
        let mut cmd = hookflow();
        cmd.arg("run-step")
            .arg(&caps)
            .arg("--event")
            .arg(&event)
            .arg("--config")
            .arg(&config)
            .args(["--secret", "TOKEN=run-step-s3cret"])
            .args(extra);
        let out = tokio::process::Command::from(cmd).output().await.unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };

    let (code, printed) = run(&["--allow-http", "127.0.0.1"]).await;
    assert_eq!(code, Some(0), "{printed}");
    let port = sink.addr.port();
    assert!(printed.contains("\"body\": \"hello\""), "{printed}");
    assert!(
        printed.contains(&format!(
            "http GET 127.0.0.1:{port}/hello -> 200 (0 B out, 5 B in"
        )),
        "{printed}"
    );
    assert!(printed.contains("TOKEN is [redacted]"), "{printed}");
    assert!(!printed.contains("run-step-s3cret"), "{printed}");

    let (code, printed) = run(&[]).await;
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        printed.contains(&format!(
            "http GET 127.0.0.1:{port}/hello denied: 127.0.0.1:{port}: this step has no outbound HTTP grant"
        )),
        "{printed}"
    );
    assert_eq!(sink.seen().len(), 1, "the denied request was not sent");

    // A failing step exits 1 and says why.
    let out = hookflow()
        .arg("run-step")
        .arg(plugin_dir().join("fail.wasm"))
        .arg("--event")
        .arg(&event)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.starts_with("error (Permanent): "), "{printed}");
}

/// The body `-d '...'` and path of a guide's `curl` line.
fn curl_parts(line: &str) -> (String, String) {
    let path = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("localhost:8080"))
        .expect("a localhost:8080 URL");
    let body = line
        .split_once("-d '")
        .and_then(|(_, b)| b.strip_suffix('\''))
        .expect("a -d '...' body");
    (path.to_string(), body.to_string())
}

/// The Python and JavaScript guide, line by line as a shell would run it:
/// `new` for both languages, their own tests natively, `serve --build`
/// (installing both toolchains on first use), and a request to each.
#[tokio::test]
async fn the_python_and_javascript_guide_runs_as_written() {
    let lines: Vec<String> = guide_block("<!-- guide-py-js:", "sh")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 7, "{lines:?}");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut server = None;
    let mut answered = 0;
    for line in &lines {
        if let Some(args) = line.strip_prefix("hookflow serve ") {
            let mut cmd = hookflow_in(dir, &format!("serve {args}"));
            cmd.env("HOOKFLOW_LISTEN", "127.0.0.1:0")
                .env("HOOKFLOW_DB", dir.join("guide.redb"))
                .env("HOOKFLOW_CACHE_DIR", shared_cache())
                .env("HOOKFLOW_LOG", "warn");
            server = Some(
                hookflow_testkit::spawn(&mut cmd, BANNER, Duration::from_secs(600))
                    .unwrap_or_else(|e| panic!("{line}: {e}")),
            );
        } else if let Some(args) = line.strip_prefix("hookflow ") {
            let said = run_ok(&mut hookflow_in(dir, args), line);
            assert!(said.contains("wrote "), "{line}: {said}");
        } else if line.starts_with("(cd ") {
            let out = Command::new("sh")
                .arg("-c")
                .arg(line)
                .current_dir(dir)
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{line}: {said}");
            // unittest's summary, or node --test's.
            let tested = said.contains("Ran 1 test") || said.contains("# pass 1");
            assert!(tested, "{line}: {said}");
        } else if line.starts_with("curl ") {
            let started = server.as_ref().expect("serve runs before curl");
            let (path, body) = curl_parts(line);
            let answer = reqwest::Client::new()
                .post(format!("{}{path}", started.listening))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "{line}");
            let got: Value = answer.json().await.unwrap();
            assert_eq!(
                got["output"],
                json!({"message": "Hello, Ada!"}),
                "{line}: {got}"
            );
            answered += 1;
        } else {
            panic!("the guide has a line this test does not know: {line}");
        }
    }
    if let Some(mut started) = server {
        let _ = started.child.kill();
        let _ = started.child.wait();
    }
    assert_eq!(answered, 2);
    for made in ["hello_py.wasm", "hello_js.wasm"] {
        assert!(dir.join("my-hooks/workflows/plugins").join(made).is_file());
    }
}

/// "The same step, three ways": the guide's Rust, Python and JavaScript
/// code, each built by `hookflow build` and run twice against a local
/// receiver, all with the same grant: the count goes up in each one's
/// bucket, the secret goes out as the bearer token, and the record keeps
/// it redacted.
#[tokio::test]
async fn the_guides_same_step_runs_the_same_in_three_languages() {
    plugin_dir(); // the Rust step's dependencies are compiled once
    let sink = crate::caps::Sink::start().await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let sources = [
        ("notify-rs", "rust", "src/lib.rs"),
        ("notify-py", "python", "app.py"),
        ("notify-js", "js", "app.js"),
    ];
    for (name, lang, file) in sources {
        run_ok(
            &mut hookflow_in(dir, &format!("new plugin {name} --lang {lang} --dir .")),
            name,
        );
        let code = guide_block("<!-- three-ways:", lang);
        std::fs::write(dir.join(name).join(file), code).unwrap();
        let text = format!(
            "name = \"{name}\"\n\n[trigger]\npath = \"{name}\"\nmode = \"sync\"\nauth = {{ kind = \"none\" }}\n\n[secrets]\nAPI_TOKEN = \"env:NOTIFY_TOKEN\"\n\n[[steps]]\nsource = \"../{name}\"\nplugin = \"plugins/{}.wasm\"\nconfig = {{ url = \"{}\" }}\nallow = {{ http = [\"127.0.0.1\"], kv = true, config = [\"API_TOKEN\"] }}\n",
            name.replace('-', "_"),
            sink.url("/notify")
        );
        std::fs::write(dir.join("workflows").join(format!("{name}.toml")), text).unwrap();
    }
    std::fs::copy(
        repo_root().join("plugins/Cargo.lock"),
        dir.join("notify-rs/Cargo.lock"),
    )
    .unwrap();
    let mut build = hookflow_in(dir, "build workflows --source-root .");
    build.env("HOOKFLOW_CACHE_DIR", shared_cache());
    run_ok(&mut build, "hookflow build");

    let server = Server::start_with(
        &dir.join("workflows"),
        &dir.join("notify.redb"),
        &[
            ("HOOKFLOW_ALLOW_HTTP", "127.0.0.1"),
            ("NOTIFY_TOKEN", "three-ways-s3cret"),
        ],
    );
    for (i, (name, _, _)) in sources.iter().enumerate() {
        for count in 1..=2 {
            let r = server
                .post_json(&format!("/hooks/{name}"), &json!({"name": "Ada"}))
                .await;
            let got: Value = r.json().await.unwrap();
            assert_eq!(
                got["output"],
                json!({"count": count, "status": 200}),
                "{name}: {got}"
            );
            assert!(!got.to_string().contains("three-ways-s3cret"), "{got}");
        }
        let seen = sink.seen();
        assert_eq!(seen.len(), 2 * (i + 1), "{name}");
        for (k, count) in [(2 * i, 1), (2 * i + 1, 2)] {
            assert_eq!(seen[k].1, "/notify", "{name}");
            assert_eq!(
                serde_json::from_str::<Value>(&seen[k].2).unwrap(),
                json!({"text": format!("event {count}: Ada")}),
                "{name}"
            );
            assert_eq!(
                sink.header(k, "authorization").as_deref(),
                Some("Bearer three-ways-s3cret"),
                "{name}"
            );
        }
    }
}
