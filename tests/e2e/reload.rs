//! Hot reload (SPEC §8): files changed in the watched directory go live
//! without a restart and without a failed request; a broken change leaves
//! the previous version serving and says why.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Manifest, Server, Workdir, plugin_dir};

const NONE: &str = r#"{ kind = "none" }"#;
/// How long a change may take to go live before a test gives up: generous,
/// since nothing here measures it (the benchmark does).
const LIVE_WITHIN: Duration = Duration::from_secs(30);

/// A sync workflow at `/hooks/{path}` whose one step runs
/// `plugins/{plugin}.wasm` with `config`.
fn sync_step(path: &str, plugin: &str, config: &str) -> String {
    Manifest::new(path, NONE)
        .trigger("mode", "\"sync\"")
        .step(plugin, config)
        .to_string()
}

/// Writes `bytes` to `path` as editors and deploy tools do: to a temporary
/// file beside it, then renamed over it.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(plugin_dir().join(format!("{name}.wasm"))).unwrap()
}

/// Polls `check` until it returns `Some`, for up to [`LIVE_WITHIN`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(start.elapsed() < LIVE_WITHIN, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sync answer's output for payload `{"n": n}` at `/hooks/{path}`, or
/// the status when it is not 200.
async fn answer(server: &Server, path: &str, n: u64) -> Result<(Value, String), u16> {
    let r = server
        .post_json(&format!("/hooks/{path}"), &json!({ "n": n }))
        .await;
    let status = r.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body: Value = r.json().await.unwrap();
    let id = body["execution_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok((body["output"].clone(), id))
}

/// The workflows API's entry for `file` (a manifest's file name).
async fn entry(server: &Server, file: &str) -> Option<Value> {
    let (status, body) = server.api("/api/v1/workflows").await;
    assert_eq!(status, 200, "{body}");
    body["workflows"]
        .as_array()?
        .iter()
        .find(|w| w["file"].as_str().is_some_and(|f| f.ends_with(file)))
        .cloned()
}

/// Under a steady stream of requests with more than 100 in flight, a plugin
/// replaced on disk goes live with no failed request: every answer is the
/// old version's or the new one's, and each execution records the digest
/// of the plugin that answered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_goes_live_under_load_with_no_failed_request() {
    let work = Workdir::new();
    let step = work.dir().join("plugins/step.wasm");
    std::fs::write(&step, wasm("echo")).unwrap();
    work.manifest("live", &sync_step("live", "step", "{}"));
    let server = Arc::new(work.start_env(&[("HOOKFLOW_MAX_IN_FLIGHT", "4096")]));
    let old_digest = entry(&server, "live.toml").await.unwrap()["steps"][0]["digest"].clone();

    // 128 senders, each with its own connection, send until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (new_seen, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..128u64 {
        let (server, stop) = (server.clone(), stop.clone());
        let (new_seen, sent) = (new_seen.clone(), sent.clone());
        let client = reqwest::Client::new();
        senders.spawn(async move {
            let mut answers = Vec::new();
            let mut n = sender * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                let r = client
                    .post(server.url("/hooks/live"))
                    .json(&json!({ "n": n }))
                    .send()
                    .await;
                let r = match r {
                    Ok(r) => r,
                    Err(e) => panic!("request {n} failed: {e}"),
                };
                assert_eq!(r.status(), 200, "request {n}");
                let body: Value = r.json().await.unwrap();
                let output = &body["output"];
                let new = *output == json!({});
                assert!(
                    new || *output == json!({ "n": n }),
                    "request {n}: neither version answered this: {body}"
                );
                if new {
                    new_seen.fetch_add(1, Ordering::Relaxed);
                }
                answers.push((new, body["execution_id"].as_str().unwrap().to_string()));
            }
            answers
        });
    }
    // Load is flowing: replace the plugin (json-map: `{}` for config `{}`).
    eventually("the first hundreds of answers", || {
        let sent = sent.load(Ordering::Relaxed);
        async move { (sent > 500).then_some(()) }
    })
    .await;
    replace(&step, &wasm("json_map"));
    eventually("answers from the new version", || {
        let seen = new_seen.load(Ordering::Relaxed);
        async move { (seen > 300).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    while let Some(done) = senders.join_next().await {
        answers.extend(done.expect("a sender failed"));
    }
    let old: Vec<_> = answers.iter().filter(|(new, _)| !new).collect();
    assert!(old.len() > 100, "{} old answers", old.len());

    // Pinned: each execution ran, and recorded, the version that answered.
    let new_digest = entry(&server, "live.toml").await.unwrap()["steps"][0]["digest"].clone();
    assert_ne!(old_digest, new_digest);
    for (new, id) in answers.iter().step_by(answers.len() / 50) {
        let (_, record) = server.api(&format!("/api/v1/executions/{id}")).await;
        let digest = &record["steps"][0]["plugin_digest"];
        let expected = if *new { &new_digest } else { &old_digest };
        assert_eq!(digest, expected, "{record}");
    }
}

/// A broken plugin, then a manifest that no longer parses: the version
/// before keeps answering, and the workflows API shows the problem with
/// `file:line`; fixing the file loads it.
#[tokio::test]
async fn a_broken_change_leaves_the_previous_version_serving() {
    let work = Workdir::new();
    let step = work.dir().join("plugins/step.wasm");
    std::fs::write(&step, wasm("echo")).unwrap();
    work.manifest("keep", &sync_step("keep", "step", "{}"));
    let server = work.start();
    assert_eq!(
        answer(&server, "keep", 1).await.unwrap().0,
        json!({ "n": 1 })
    );
    let serving = entry(&server, "keep.toml").await.unwrap();
    assert_eq!(serving["state"], "loaded", "{serving}");

    // Half a plugin, as a slow copy leaves it.
    let echo = wasm("echo");
    std::fs::write(&step, &echo[..echo.len() / 2]).unwrap();
    let stale = eventually("the broken plugin reported", || async {
        entry(&server, "keep.toml")
            .await
            .filter(|e| e["state"] == "stale")
    })
    .await;
    let error = stale["errors"][0]["text"].as_str().unwrap();
    assert!(
        error.contains("keep.toml:") && error.contains("step.wasm"),
        "{stale}"
    );
    assert!(stale["errors"][0]["line"].is_u64(), "{stale}");
    assert_eq!(stale["version"], serving["version"], "{stale}");
    assert_eq!(
        answer(&server, "keep", 2).await.unwrap().0,
        json!({ "n": 2 })
    );

    // The plugin whole again, then a manifest that does not parse.
    std::fs::write(&step, &echo).unwrap();
    eventually("the plugin loaded again", || async {
        entry(&server, "keep.toml")
            .await
            .filter(|e| e["state"] == "loaded")
    })
    .await;
    work.file("keep.toml", "[trigger]\npath = \"keep\"\nmode = \"sync\n");
    let stale = eventually("the broken manifest reported", || async {
        entry(&server, "keep.toml")
            .await
            .filter(|e| e["state"] == "stale")
    })
    .await;
    assert_eq!(stale["errors"][0]["line"], 3, "{stale}");
    assert_eq!(
        answer(&server, "keep", 3).await.unwrap().0,
        json!({ "n": 3 })
    );

    // Fixed: the new version serves.
    work.manifest("keep", &sync_step("keep", "json_map", "{ fixed = true }"));
    eventually("the fixed manifest live", || async {
        let (output, _) = answer(&server, "keep", 4).await.ok()?;
        (output == json!({ "fixed": true })).then_some(())
    })
    .await;
}

/// A new manifest starts answering at its URL; a deleted one answers 404
/// to new requests while its executions in flight finish on the version
/// they started on.
#[tokio::test]
async fn workflows_come_and_go_without_a_restart() {
    let work = Workdir::new();
    work.manifest("first", &sync_step("first", "echo", "{}"));
    let server = work.start();
    assert_eq!(answer(&server, "later", 1).await.unwrap_err(), 404);

    let slow = Manifest::new("later", NONE)
        .step("fail", r#"{ mode = "sleep", ms = 1500 }"#)
        .step("json_map", r#"{ done = true }"#)
        .to_string();
    work.manifest("later", &slow);
    let id = eventually("the new workflow answering", || async {
        let r = server.post_json("/hooks/later", &json!({})).await;
        if r.status() != 202 {
            return None;
        }
        let ack: Value = r.json().await.unwrap();
        Some(ack["execution_id"].as_str().unwrap().to_string())
    })
    .await;

    std::fs::remove_file(work.dir().join("later.toml")).unwrap();
    eventually("the removed workflow gone", || async {
        let r = server.post_json("/hooks/later", &json!({})).await;
        (r.status() == 404).then_some(())
    })
    .await;
    assert!(entry(&server, "later.toml").await.is_none());
    let done = server.wait_finished(&id, LIVE_WITHIN).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({ "done": true }), "{done}");
    // The other workflow was never disturbed.
    assert_eq!(
        answer(&server, "first", 2).await.unwrap().0,
        json!({ "n": 2 })
    );
}

/// A thousand writes to one manifest in a burst, valid and not: the server
/// answers throughout and ends on the last version written.
#[tokio::test]
async fn a_thousand_rapid_writes_end_on_the_last_valid_version() {
    let work = Workdir::new();
    let version = |v: u32| sync_step("burst", "json_map", &format!("{{ v = {v} }}"));
    work.manifest("burst", &version(0));
    let server = work.start();
    assert_eq!(
        answer(&server, "burst", 1).await.unwrap().0,
        json!({ "v": 0 })
    );
    let path = work.dir().join("burst.toml");
    for v in 1..=1000u32 {
        if v % 7 == 0 {
            // A torn write now and then.
            std::fs::write(&path, &version(v)[..40]).unwrap();
        } else if v % 2 == 0 {
            replace(&path, version(v).as_bytes());
        } else {
            std::fs::write(&path, version(v)).unwrap();
        }
        if v % 100 == 0 {
            let (status, _) = server.api("/api/v1/workflows").await;
            assert_eq!(status, 200, "unresponsive during write {v}");
            let r = server.post_json("/hooks/burst", &json!({})).await;
            assert_eq!(r.status(), 200, "during write {v}");
        }
    }
    eventually("the last version live", || async {
        let (output, _) = answer(&server, "burst", 2).await.ok()?;
        (output == json!({ "v": 1000 })).then_some(())
    })
    .await;
    assert_eq!(
        entry(&server, "burst.toml").await.unwrap()["state"],
        "loaded"
    );
}

/// The whole directory replaced at once (moved aside, a new one moved in):
/// the new one is watched and served.
#[tokio::test]
async fn a_directory_replaced_as_a_whole_is_followed() {
    let work = Workdir::new();
    work.manifest("swap", &sync_step("swap", "json_map", "{ release = 1 }"));
    let server = work.start();
    assert_eq!(
        answer(&server, "swap", 1).await.unwrap().0,
        json!({ "release": 1 })
    );

    let next = work.tmp.path().join("release-2");
    std::fs::create_dir_all(next.join("plugins")).unwrap();
    std::fs::write(next.join("plugins/json_map.wasm"), wasm("json_map")).unwrap();
    std::fs::write(
        next.join("swap.toml"),
        sync_step("swap", "json_map", "{ release = 2 }"),
    )
    .unwrap();
    std::fs::rename(work.dir(), work.tmp.path().join("release-1")).unwrap();
    std::fs::rename(&next, work.dir()).unwrap();
    eventually("the new directory served", || async {
        let (output, _) = answer(&server, "swap", 2).await.ok()?;
        (output == json!({ "release": 2 })).then_some(())
    })
    .await;
    // And watched: a change inside it goes live too.
    work.manifest("swap", &sync_step("swap", "json_map", "{ release = 3 }"));
    eventually("a change in the new directory live", || async {
        let (output, _) = answer(&server, "swap", 3).await.ok()?;
        (output == json!({ "release": 3 })).then_some(())
    })
    .await;
}

/// With polling (`--poll-interval`) a change is found by scanning; with a
/// poll too slow to find it, SIGHUP reloads at once.
#[tokio::test]
async fn polling_and_sighup_reload_without_events() {
    let work = Workdir::new();
    work.manifest("polled", &sync_step("polled", "json_map", "{ v = 1 }"));
    let server = work.start_env(&[("HOOKFLOW_POLL_INTERVAL", "200ms")]);
    work.manifest("polled", &sync_step("polled", "json_map", "{ v = 2 }"));
    eventually("the polled change live", || async {
        let (output, _) = answer(&server, "polled", 1).await.ok()?;
        (output == json!({ "v": 2 })).then_some(())
    })
    .await;
    drop(server);

    let server = work.start_env(&[("HOOKFLOW_POLL_INTERVAL", "1h")]);
    work.manifest("polled", &sync_step("polled", "json_map", "{ v = 3 }"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        answer(&server, "polled", 2).await.unwrap().0,
        json!({ "v": 2 }),
        "nothing should have noticed the change yet"
    );
    let pid = server.pid().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.unwrap().success());
    eventually("the change live after SIGHUP", || async {
        let (output, _) = answer(&server, "polled", 3).await.ok()?;
        (output == json!({ "v": 3 })).then_some(())
    })
    .await;
}

/// An execution cut off by a crash resumes on the version loaded at the
/// next start, and its record says so: `version` is the new one,
/// `started_on_version` the one it started on, and the step still to run
/// names the plugin that ran it.
#[tokio::test]
async fn a_resumed_execution_runs_on_the_current_version_and_says_so() {
    let work = Workdir::new();
    let step = work.dir().join("plugins/step.wasm");
    std::fs::write(&step, wasm("echo")).unwrap();
    let slow = Manifest::new("resumed", NONE)
        .step("fail", r#"{ mode = "sleep", ms = 3000 }"#)
        .step("step", "{}")
        .to_string();
    work.manifest("resumed", &slow);
    let server = work.start();
    let started_on = entry(&server, "resumed.toml").await.unwrap()["version"].clone();
    let r = server.post_json("/hooks/resumed", &json!({ "n": 1 })).await;
    assert_eq!(r.status(), 202);
    let ack: Value = r.json().await.unwrap();
    let id = ack["execution_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();

    // While it is down, the second step's plugin changes.
    std::fs::write(&step, wasm("json_map")).unwrap();
    let server = work.start();
    let now = entry(&server, "resumed.toml").await.unwrap();
    assert_ne!(now["version"], started_on);
    let done = server.wait_finished(&id, LIVE_WITHIN).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({}), "json-map ran: {done}");
    assert_eq!(done["version"], now["version"], "{done}");
    assert_eq!(done["started_on_version"], started_on, "{done}");
    assert_eq!(done["steps"][1]["plugin_digest"], now["steps"][1]["digest"]);
}

/// `serve --build --watch`: editing a plugin crate's source builds it again
/// and the new behaviour answers without a restart; a source that does not
/// compile leaves the last good version answering.
#[tokio::test]
async fn watch_rebuilds_an_edited_plugin_crate() {
    let work = Workdir::new();
    let src = work.tmp.path().join("src");
    let krate = src.join("plugins/watched");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::create_dir_all(src.join("wit")).unwrap();
    let repo = crate::support::repo_root();
    std::fs::copy(
        repo.join("wit/0.1.0/plugin.wit"),
        src.join("wit/plugin.wit"),
    )
    .unwrap();
    // The same dependency versions and profile as `plugins/`, built into
    // its target directory: only this crate compiles.
    std::fs::copy(repo.join("plugins/Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        r#"[package]
name = "watched"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "0.61"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

[workspace]
"#,
    )
    .unwrap();
    let source = |answer: &str| {
        format!(
            r##"wit_bindgen::generate!({{ path: "../../wit", world: "step" }});
struct Watched;
impl Guest for Watched {{
    fn describe() -> PluginInfo {{
        PluginInfo {{ name: "watched".into(), version: "0".into(), description: String::new(), config_schema: None }}
    }}
    fn run(_input: StepInput) -> Result<StepOutput, StepError> {{
        Ok(StepOutput {{ output: r#"{answer}"#.into(), halt: false, response: None }})
    }}
}}
export!(Watched);
"##
        )
    };
    std::fs::write(krate.join("src/lib.rs"), source(r#"{"built":1}"#)).unwrap();
    work.manifest(
        "watched",
        "[trigger]\npath = \"watched\"\nmode = \"sync\"\nauth = { kind = \"none\" }\n\n[[steps]]\nsource = \"../src/plugins/watched\"\nplugin = \"plugins/watched.wasm\"\n",
    );
    plugin_dir(); // plugins/ built, so its target directory holds the dependencies
    let mut cmd = crate::support::hookflow();
    cmd.arg("serve")
        .arg("--dir")
        .arg(work.dir())
        .arg("--db")
        .arg(work.db())
        .args(["--build", "--watch", "--source-root"])
        .arg(&src)
        .args(["--listen", "127.0.0.1:0"])
        .env("CARGO_TARGET_DIR", repo.join("plugins/target"))
        .env("HOOKFLOW_LOG", "warn");
    let log = work.tmp.path().join("server.log");
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let started =
        hookflow_testkit::spawn(&mut cmd, crate::support::BANNER, Duration::from_secs(300))
            .expect("hookflow builds and starts");
    let mut child = started.child;
    let base = started.listening;
    let client = reqwest::Client::new();
    let output = async || -> Option<Value> {
        let r = client
            .post(format!("{base}/hooks/watched"))
            .json(&json!({}))
            .send()
            .await
            .ok()?;
        let body: Value = r.json().await.ok()?;
        Some(body["output"].clone())
    };
    assert_eq!(output().await, Some(json!({"built": 1})));

    // Broken source: cargo fails, the last good version keeps answering.
    std::fs::write(krate.join("src/lib.rs"), "this is not rust").unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("the build failed")
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no build failure reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let printed = std::fs::read_to_string(&log).unwrap();
    assert!(printed.contains("could not compile `watched`"), "{printed}");
    assert_eq!(output().await, Some(json!({"built": 1})));

    std::fs::write(krate.join("src/lib.rs"), source(r#"{"built":2}"#)).unwrap();
    let start = Instant::now();
    while output().await != Some(json!({"built": 2})) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the edit never went live"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `POST /api/v1/workflows/{name}/rollback`: every version loaded is kept;
/// a rollback serves the one before at once, and the one before that on a
/// second call, across a restart, until the workflow's files change.
#[tokio::test]
async fn rollback_serves_the_version_before_until_the_files_change() {
    let work = Workdir::new();
    let version = |v: u32| sync_step("roll", "json_map", &format!("{{ v = {v} }}"));
    work.manifest("roll", &version(1));
    let server = work.start();
    let rollback = async |server: &Server, name: &str| -> (u16, Value) {
        let r = server
            .client
            .post(server.url(&format!("/api/v1/workflows/{name}/rollback")))
            .bearer_auth(crate::support::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    };
    let answers = async |server: &Server, v: u32| {
        answer(server, "roll", 0).await.ok().map(|(o, _)| o) == Some(json!({ "v": v }))
    };
    let (status, body) = rollback(&server, "roll").await;
    assert_eq!(status, 409, "nothing earlier is kept yet: {body}");
    assert_eq!(rollback(&server, "nope").await.0, 404);

    for v in 2..=3 {
        work.manifest("roll", &version(v));
        eventually("the new version live", || async {
            answers(&server, v).await.then_some(())
        })
        .await;
    }
    let listed = eventually("three versions kept", || async {
        entry(&server, "roll.toml")
            .await
            .filter(|e| e["history"].as_array().is_some_and(|h| h.len() == 3))
    })
    .await;
    let history: Vec<String> = listed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed["history"][0]["serving"], true, "{listed}");

    let (status, body) = rollback(&server, "roll").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], history[1]);
    assert_eq!(body["rolled_back_from"], history[0]);
    assert!(answers(&server, 2).await, "the rollback serves at once");
    let listed = entry(&server, "roll.toml").await.unwrap();
    assert_eq!(listed["rolled_back"], true, "{listed}");
    assert_eq!(listed["version"], history[1]);
    assert_eq!(listed["history"][1]["serving"], true, "{listed}");

    assert_eq!(rollback(&server, "roll").await.0, 200);
    assert!(answers(&server, 1).await);
    drop(server);

    // A restart keeps serving the rolled-back version.
    let server = work.start();
    assert!(
        answers(&server, 1).await,
        "the rollback did not survive a restart"
    );
    assert_eq!(
        entry(&server, "roll.toml").await.unwrap()["rolled_back"],
        true
    );

    // The files change: they serve again, and the rollback is over.
    work.manifest("roll", &version(4));
    eventually("the edited files live", || async {
        answers(&server, 4).await.then_some(())
    })
    .await;
    // Kept once live (a version whose files change before it is kept is
    // not: the next one is), so the test waits for the history too.
    let listed = eventually("version 4 kept", || async {
        let listed = entry(&server, "roll.toml").await?;
        (listed["history"][0]["version"] == listed["version"]).then_some(listed)
    })
    .await;
    assert_eq!(listed["rolled_back"], false, "{listed}");
    let v4 = listed["version"].clone();

    // Files put back to an earlier version: it moves to the front of the
    // history, so a rollback returns to what served just before it.
    work.manifest("roll", &version(3));
    eventually("version 3 first in the history", || async {
        let listed = entry(&server, "roll.toml").await?;
        (listed["history"][0]["version"] == history[0].as_str()).then_some(listed)
    })
    .await;
    let (status, body) = rollback(&server, "roll").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], v4);
    assert!(answers(&server, 4).await);
}
