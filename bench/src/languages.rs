//! The same step in Rust, Python and JavaScript: the one `hookflow new
//! plugin --lang ...` writes, built by `hookflow build`. For each, in one
//! run: the component's size, its first load (compiled into an empty
//! compiled-code cache), a load from that cache by a new engine, and one
//! instantiate + call.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hookflow::config::Grants;
use hookflow::engine::{Engine, EnginePolicy};
use hookflow::execution::{Event, RequestMeta};

use crate::micro::{Call, time_calls};
use crate::report::out;

pub struct Figures {
    pub language: &'static str,
    pub bytes: u64,
    pub first_load: Duration,
    pub cached_load: Duration,
    pub call: Duration,
}

const STEPS: [(&str, &str, &str); 3] = [
    ("Rust", "greet-rs", "rust"),
    ("Python", "greet-py", "python"),
    ("JavaScript", "greet-js", "js"),
];

/// `cache` is where `hookflow build` keeps the language toolchains (the
/// tests' cache, so that they are installed once per target directory).
pub async fn run(
    hookflow: &Path,
    root: &Path,
    work: &Path,
    cache: &Path,
    budget: Duration,
) -> anyhow::Result<Vec<Figures>> {
    let dir = work.join("languages");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    for (_, name, lang) in STEPS {
        run_ok(
            Command::new(hookflow)
                .args(["new", "plugin", name, "--lang", lang, "--dir"])
                .arg(&dir),
        )?;
    }
    // The Rust step builds with the plugins' lock file and target
    // directory, so only the step itself compiles.
    std::fs::copy(
        root.join("plugins/Cargo.lock"),
        dir.join("greet-rs/Cargo.lock"),
    )?;
    eprintln!("building the step in each language (toolchains install on first use) ...");
    run_ok(
        Command::new(hookflow)
            .arg("build")
            .arg(dir.join("workflows"))
            .arg("--source-root")
            .arg(&dir)
            .env("HOOKFLOW_CACHE_DIR", cache)
            .env("CARGO_TARGET_DIR", root.join("plugins/target")),
    )?;
    let event = ada();
    let mut out = Vec::new();
    for (language, name, _) in STEPS {
        let path = dir.join(format!("workflows/plugins/{}.wasm", name.replace('-', "_")));
        let wasm = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        let compiled = dir.join(format!("compiled-{name}"));
        let policy = || EnginePolicy {
            cache_dir: Some(compiled.clone()),
            ..EnginePolicy::default()
        };
        let first_load = {
            let engine = Engine::new(policy())?;
            let t = Instant::now();
            engine.load(wasm.clone()).await?;
            t.elapsed()
        };
        let mut cached_load = Duration::MAX;
        let mut call = Duration::ZERO;
        for round in 0..3 {
            let engine = Engine::new(policy())?;
            let t = Instant::now();
            let plugin = engine.load(wasm.clone()).await?;
            cached_load = cached_load.min(t.elapsed());
            if round == 2 {
                let how = Call {
                    config: r#"{"greeting":"Hello"}"#,
                    grants: &Grants::default(),
                };
                call = time_calls(&engine, &plugin, &event, budget, &how).await;
            }
        }
        out.push(Figures {
            language,
            bytes: wasm.len() as u64,
            first_load,
            cached_load,
            call,
        });
    }
    Ok(out)
}

fn ada() -> Event {
    Event::new(
        RequestMeta {
            method: "POST".into(),
            path: "/hooks/greet".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            remote_addr: "127.0.0.1:1".into(),
            received_at_ms: 0,
        },
        Some("application/json".into()),
        Bytes::from_static(br#"{"name":"Ada"}"#),
    )
}

fn run_ok(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub fn print(figures: &[Figures]) {
    out!("\n## The same step in three languages\n");
    out!(
        "| language | component | first load (compile) | cached load | instantiate + call | call vs Rust |"
    );
    out!("|---|---:|---:|---:|---:|---:|");
    let rust = figures.first().map_or(1.0, |f| f.call.as_secs_f64());
    for f in figures {
        out!(
            "| {} | {:.2} MB | {:.0} ms | {:.1} ms | {:.1} us | {:.1}x |",
            f.language,
            f.bytes as f64 / 1e6,
            f.first_load.as_secs_f64() * 1e3,
            f.cached_load.as_secs_f64() * 1e3,
            f.call.as_secs_f64() * 1e6,
            f.call.as_secs_f64() / rust
        );
    }
}
