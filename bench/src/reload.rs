//! Hot reload, timed from outside: a manifest rewritten, then a plugin
//! replaced, again and again while the server runs; each time, from the
//! write until a request is answered by the new version. The figure
//! includes the wait for the directory to be quiet (200 ms) before a
//! reload starts. And a restart with 20 distinct plugins, with the
//! compiled-code cache empty and then filled.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::report::out;
use crate::servers::Server;

/// Times of one kind of change, one per round.
pub struct Timings {
    pub what: &'static str,
    pub times: Vec<Duration>,
}

/// Start to ready with 20 distinct plugins: the compiled-code cache empty,
/// then filled by that start.
pub struct Restart {
    pub plugins: usize,
    pub cold: Duration,
    pub warm: Duration,
}

/// `wasm` with a custom section holding `i` appended: the same plugin in
/// other bytes, so another digest, compiled on its own.
fn variant(wasm: &[u8], i: usize) -> Vec<u8> {
    let name = b"hookflow-bench";
    let mut content = vec![name.len() as u8];
    content.extend_from_slice(name);
    content.extend_from_slice(i.to_string().as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push(content.len() as u8); // under 128: one LEB128 byte
    out.extend_from_slice(&content);
    out
}

/// Starts the server on `plugins` workflows of distinct plugins twice:
/// with an empty compiled-code cache, then with the one that start filled.
pub async fn restart(
    bin: &Path,
    root: &Path,
    work: &Path,
    plugins: usize,
) -> anyhow::Result<Restart> {
    let dir = work.join("restart");
    std::fs::create_dir_all(dir.join("plugins"))?;
    let echo = std::fs::read(root.join("plugins/target/wasm32-wasip2/release/echo.wasm"))?;
    for i in 0..plugins {
        std::fs::write(dir.join(format!("plugins/p{i}.wasm")), variant(&echo, i))?;
        std::fs::write(
            dir.join(format!("w{i}.toml")),
            manifest(&format!("w{i}"), &format!("p{i}"), "{}"),
        )?;
    }
    let db = work.join("restart.redb");
    let mut ready = Vec::new();
    for _ in 0..2 {
        let began = Instant::now();
        let server = Server::hookflow(bin, &dir, &db)?;
        ready.push(began.elapsed());
        server.stop();
    }
    Ok(Restart {
        plugins,
        cold: ready[0],
        warm: ready[1],
    })
}

/// Writes `bytes` to `path` as editors do: a temporary file, renamed over.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn manifest(path: &str, plugin: &str, config: &str) -> String {
    format!(
        "[trigger]\npath = \"{path}\"\nmode = \"sync\"\nauth = {{ kind = \"none\" }}\n\n[[steps]]\nplugin = \"plugins/{plugin}.wasm\"\nconfig = {config}\n"
    )
}

/// Polls `/hooks/{path}` until `answered` accepts the output; how long
/// that took. Gives up after 30 s.
async fn until_answered(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    answered: impl Fn(&Value) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let url = format!("http://{}/hooks/{path}", server.addr);
    while start.elapsed() < Duration::from_secs(30) {
        let r = client.post(&url).json(&json!({ "n": 1 })).send().await?;
        if r.status() == 200 {
            let body: Value = r.json().await?;
            if answered(&body["output"]) {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    anyhow::bail!("the new version of /hooks/{path} never answered")
}

pub async fn run(
    bin: &Path,
    root: &Path,
    work: &Path,
    rounds: usize,
) -> anyhow::Result<Vec<Timings>> {
    let dir = work.join("reload");
    std::fs::create_dir_all(dir.join("plugins"))?;
    let wasm = |name: &str| {
        std::fs::read(root.join(format!("plugins/target/wasm32-wasip2/release/{name}.wasm")))
            .with_context(|| format!("read {name}.wasm"))
    };
    let (echo, json_map) = (wasm("echo")?, wasm("json_map")?);
    std::fs::write(dir.join("plugins/json_map.wasm"), &json_map)?;
    std::fs::write(dir.join("plugins/step.wasm"), &echo)?;
    std::fs::write(
        dir.join("live.toml"),
        manifest("live", "json_map", "{ v = 0 }"),
    )?;
    std::fs::write(dir.join("swap.toml"), manifest("swap", "step", "{}"))?;
    let server = Server::hookflow(bin, &dir, &work.join("reload.redb"))?;
    let client = reqwest::Client::new();

    let mut manifests = Vec::with_capacity(rounds);
    for v in 1..=rounds {
        replace(
            &dir.join("live.toml"),
            manifest("live", "json_map", &format!("{{ v = {v} }}")).as_bytes(),
        )?;
        let took = until_answered(&client, &server, "live", |o| *o == json!({ "v": v })).await?;
        manifests.push(took);
    }
    // The plugin alternates between json-map (answers `{}` to config `{}`)
    // and echo (answers the payload), each time in bytes never seen
    // before: each round compiles a component.
    let mut plugins = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let to_map = round % 2 == 0;
        let next = variant(if to_map { &json_map } else { &echo }, round);
        replace(&dir.join("plugins/step.wasm"), &next)?;
        let took = until_answered(&client, &server, "swap", |o| {
            if to_map {
                *o == json!({})
            } else {
                *o == json!({ "n": 1 })
            }
        })
        .await?;
        plugins.push(took);
    }
    server.stop();
    Ok(vec![
        Timings {
            what: "a manifest rewritten",
            times: manifests,
        },
        Timings {
            what: "a plugin replaced by one never seen (compiled)",
            times: plugins,
        },
    ])
}

pub fn print(timings: &[Timings], restart: &Restart) {
    out!("\n## Hot reload\n");
    out!(
        "From a file's write (to a temporary file renamed over it) until a request is answered by the new version, polled every millisecond; includes the 200 ms of quiet the server waits for before it reloads.\n"
    );
    out!("| change | rounds | p50 | max |");
    out!("|---|---:|---:|---:|");
    for t in timings {
        let mut sorted = t.times.clone();
        sorted.sort();
        let (p50, max) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
        out!(
            "| {} | {} | {:.0} ms | {:.0} ms |",
            t.what,
            sorted.len(),
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    out!(
        "\nStart to ready with {} distinct plugins: {:.2} s with the compiled-code cache empty, {:.2} s with it filled.",
        restart.plugins,
        restart.cold.as_secs_f64(),
        restart.warm.as_secs_f64()
    );
}
