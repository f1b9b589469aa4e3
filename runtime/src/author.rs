//! For plugin authors: `hookflow new plugin` (a step in Rust, Python or
//! JavaScript that builds and passes its own test as written, for Rust the
//! guest helper crate beside it, and a manifest that uses it) and `hookflow run-step` (one step, locally, with
//! its output, logs and audit trail printed).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::cli::Lang;
use crate::config::{ConfigEntry, Grants, HostPattern, KvGrant};
use crate::engine::{Engine, EnginePolicy, StepCall, StepLimits};
use crate::execution::{Event, HostCall, RequestMeta};

/// The guest helper crate's sources, embedded so that `new plugin` can
/// write it out beside a new crate (with the WIT it is generated from,
/// `plugin_build::WIT_FILES`).
const HELPER_SOURCES: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        include_str!("../../plugins/hookflow-plugin/src/lib.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../plugins/hookflow-plugin/src/http.rs"),
    ),
    (
        "src/kv.rs",
        include_str!("../../plugins/hookflow-plugin/src/kv.rs"),
    ),
    (
        "src/config.rs",
        include_str!("../../plugins/hookflow-plugin/src/config.rs"),
    ),
    (
        "src/log.rs",
        include_str!("../../plugins/hookflow-plugin/src/log.rs"),
    ),
];

/// The helper's manifest outside the repository's workspace: the same
/// dependencies, with their versions written out.
const HELPER_MANIFEST: &str = r#"[package]
name = "hookflow-plugin"
description = "Write a hookflow step in Rust (written by `hookflow new plugin`)."
version = "0.1.0"
edition = "2024"

[dependencies]
schemars = "1"
serde = { version = "1", features = ["derive"] }
serde_json = "1"
wit-bindgen = "0.61"
"#;

/// What `new plugin` writes, and where.
#[derive(Debug)]
pub struct NewPlugin {
    pub step_dir: PathBuf,
    pub helper_dir: PathBuf,
    pub manifest: PathBuf,
    /// The helper was already there and was left alone.
    pub helper_kept: bool,
}

/// `hookflow new plugin NAME --dir DIR --lang LANG`: `DIR/NAME/` (the
/// step), for Rust `DIR/hookflow-plugin/` (unless there already), and
/// `DIR/workflows/NAME.toml`.
pub fn new_plugin(name: &str, dir: &Path, lang: Lang) -> anyhow::Result<NewPlugin> {
    if !is_crate_name(name) {
        bail!(
            "`{name}` is not a plugin name: lower-case letters, digits and `-`, starting with a letter"
        );
    }
    let step_dir = dir.join(name);
    let manifest = dir.join("workflows").join(format!("{name}.toml"));
    for taken in [&step_dir, &manifest] {
        if taken.exists() {
            bail!("{} already exists; nothing was written", taken.display());
        }
    }
    let helper_dir = dir.join("hookflow-plugin");
    let helper_kept = helper_dir.join("Cargo.toml").exists();
    let snake = name.replace('-', "_");
    match lang {
        Lang::Rust => {
            if !helper_kept {
                write(&helper_dir.join("Cargo.toml"), HELPER_MANIFEST)?;
                for (path, text) in HELPER_SOURCES {
                    // Beside its own copy of the WIT, not the repository's.
                    let text = text.replace(r#"path: "../../wit""#, r#"path: "wit""#);
                    write(&helper_dir.join(path), &text)?;
                }
                for (path, text) in crate::plugin_build::WIT_FILES {
                    write(&helper_dir.join("wit").join(path), text)?;
                }
            }
            write(&step_dir.join("Cargo.toml"), &crate_manifest(name))?;
            write(&step_dir.join("src/lib.rs"), STEP_TEMPLATE)?;
            write(&step_dir.join(".gitignore"), "/target\n")?;
        }
        Lang::Python => {
            write(&step_dir.join("app.py"), &PYTHON_APP.replace("NAME", name))?;
            write(&step_dir.join("greet.py"), PYTHON_GREET)?;
            write(&step_dir.join("test_greet.py"), PYTHON_TEST)?;
            write(&step_dir.join(".gitignore"), "__pycache__/\n")?;
        }
        Lang::Js => {
            write(
                &step_dir.join("package.json"),
                &JS_PACKAGE.replace("NAME", name),
            )?;
            write(&step_dir.join("app.js"), &JS_APP.replace("NAME", name))?;
            write(&step_dir.join("greet.js"), JS_GREET)?;
            write(&step_dir.join("greet.test.js"), JS_TEST)?;
            write(&step_dir.join(".gitignore"), "node_modules/\n")?;
        }
    }
    write(&manifest, &workflow_manifest(name, &snake))?;
    Ok(NewPlugin {
        step_dir,
        helper_dir,
        manifest,
        helper_kept,
    })
}

/// A plugin crate's name: lower-case letters, digits and `-`, starting
/// with a letter, at most 64 bytes.
fn is_crate_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn crate_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
description = "A hookflow step."
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
hookflow-plugin = {{ path = "../hookflow-plugin" }}
serde = {{ version = "1", features = ["derive"] }}

# Small plugins: they are compiled once and kept, but stored and loaded as
# they are.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

# Its own workspace, wherever it is written.
[workspace]
"#
    )
}

/// The crate's `src/lib.rs`: a step with typed config and its own test.
const STEP_TEMPLATE: &str = r#"//! A hookflow step: greets whoever the event names.

use hookflow_plugin::{Error, Input, JsonSchema, Output, Value, json};
use serde::Deserialize;

/// The step's `config` in the manifest. Its JSON Schema is published by
/// `describe`, and hookflow checks every manifest's config against it.
#[derive(Deserialize, JsonSchema)]
#[schemars(crate = "hookflow_plugin::schemars")]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The greeting's first word.
    #[serde(default = "hello")]
    pub greeting: String,
}

fn hello() -> String {
    "Hello".into()
}

fn run(input: Input<Config>) -> Result<Output, Error> {
    hookflow_plugin::log::info(&format!("attempt {}", input.attempt));
    Ok(Output::new(greet(&input.config, &input.previous)))
}

/// The step's logic, apart from the host: what its test calls.
pub fn greet(config: &Config, previous: &Value) -> Value {
    let name = previous["name"].as_str().unwrap_or("world");
    json!({ "message": format!("{}, {name}!", config.greeting) })
}

hookflow_plugin::step!(Config, run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name_or_the_world() {
        let config = Config { greeting: "Hi".into() };
        assert_eq!(greet(&config, &json!({"name": "Ada"}))["message"], "Hi, Ada!");
        assert_eq!(greet(&config, &json!({}))["message"], "Hi, world!");
    }
}
"#;

/// A Python step: `app.py` wires the logic in `greet.py` to the host;
/// `test_greet.py` tests the logic with plain Python.
const PYTHON_APP: &str = r#""""A hookflow step: greets whoever the event names."""

# WitWorld is what the component exports: app.py must import it.
from hookflow_step import WitWorld, log, step  # noqa: F401

from greet import greet

CONFIG_SCHEMA = {
    "type": "object",
    "properties": {"greeting": {"type": "string", "description": "The greeting's first word."}},
    "additionalProperties": False,
}


@step(name="NAME", description="Greets whoever the event names", config_schema=CONFIG_SCHEMA)
def run(input):
    log.info(f"attempt {input['attempt']}")
    return greet(input["config"], input["previous"])
"#;

const PYTHON_GREET: &str = r#""""The step's logic, apart from the host: what its test calls."""


def greet(config, previous):
    name = previous.get("name", "world") if isinstance(previous, dict) else "world"
    return {"message": f"{config.get('greeting', 'Hello')}, {name}!"}
"#;

const PYTHON_TEST: &str = r#"import unittest

from greet import greet


class GreetTest(unittest.TestCase):
    def test_greets_by_name_or_the_world(self):
        self.assertEqual(greet({"greeting": "Hi"}, {"name": "Ada"})["message"], "Hi, Ada!")
        self.assertEqual(greet({"greeting": "Hi"}, {})["message"], "Hi, world!")


if __name__ == "__main__":
    unittest.main()
"#;

/// A JavaScript step: `app.js` wires the logic in `greet.js` to the host;
/// `greet.test.js` tests the logic with Node's own runner (`npm test`).
const JS_PACKAGE: &str = r#"{
  "name": "NAME",
  "private": true,
  "type": "module",
  "main": "app.js",
  "scripts": {
    "test": "node --test"
  }
}
"#;

const JS_APP: &str = r#"// A hookflow step: greets whoever the event names.
import { step, log } from 'hookflow-step';
import { greet } from './greet.js';

export const { describe, run } = step(
  {
    name: 'NAME',
    description: 'Greets whoever the event names',
    configSchema: {
      type: 'object',
      properties: { greeting: { type: 'string', description: "The greeting's first word." } },
      additionalProperties: false,
    },
  },
  async (input) => {
    log.info(`attempt ${input.attempt}`);
    return greet(input.config, input.previous);
  },
);
"#;

const JS_GREET: &str = r#"// The step's logic, apart from the host: what its test calls.
export function greet(config, previous) {
  const name = previous?.name ?? 'world';
  return { message: `${config.greeting ?? 'Hello'}, ${name}!` };
}
"#;

const JS_TEST: &str = r#"import { test } from 'node:test';
import assert from 'node:assert/strict';
import { greet } from './greet.js';

test('greets by name or the world', () => {
  assert.equal(greet({ greeting: 'Hi' }, { name: 'Ada' }).message, 'Hi, Ada!');
  assert.equal(greet({ greeting: 'Hi' }, {}).message, 'Hi, world!');
});
"#;

fn workflow_manifest(name: &str, snake: &str) -> String {
    format!(
        r#"# Written by `hookflow new plugin {name}`: a sync webhook running the
# `{name}` step. Serve it with
#   hookflow serve --dir workflows --build --watch --source-root .
# and call it with
#   curl -s localhost:8080/hooks/{name} -H 'content-type: application/json' -d '{{"name":"Ada"}}'
# `auth` is open for trying it out: choose a real one (docs/manifest.md)
# before anyone else can reach the server.
name = "{name}"

[trigger]
path = "{name}"
mode = "sync"
auth = {{ kind = "none" }}

[[steps]]
source = "../{name}"
plugin = "plugins/{snake}.wasm"
config = {{ greeting = "Hello" }}
# What the step may do beyond computing (docs/manifest.md, Capabilities):
# allow = {{ http = ["api.example.com"], kv = true, config = ["API_TOKEN"] }}
"#
    )
}

/// `hookflow run-step`'s options.
#[derive(Debug, Clone, Default)]
pub struct RunStep {
    pub plugin: PathBuf,
    pub event: PathBuf,
    pub config: Option<PathBuf>,
    /// Granted and within the ceiling: both are this list.
    pub allow_http: Vec<HostPattern>,
    /// `NAME=VALUE` settings and secrets for `wasi:config`.
    pub settings: Vec<(String, String)>,
    pub secrets: Vec<(String, String)>,
    /// Grant a key-value bucket, kept in this database file (a temporary
    /// one when `None` and `kv` is set).
    pub kv: bool,
    pub db: Option<PathBuf>,
    pub timeout: Duration,
    pub fuel: Option<u64>,
}

/// Runs one step once and prints what came of it; `Ok(true)` when the
/// step succeeded.
pub async fn run_step(opts: &RunStep, out: &mut impl Write) -> anyhow::Result<bool> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let wasm = read(&opts.plugin)?;
    let body = read(&opts.event)?;
    serde_json::from_slice::<serde_json::Value>(&body)
        .with_context(|| format!("{} is not JSON", opts.event.display()))?;
    let config: serde_json::Value = match &opts.config {
        Some(p) => serde_json::from_slice(&read(p)?)
            .with_context(|| format!("{} is not JSON", p.display()))?,
        None => serde_json::json!({}),
    };

    let mut policy = EnginePolicy::default();
    policy.http.ceiling = opts.allow_http.clone().into();
    let engine = Engine::new(policy)?;
    let temp;
    if opts.kv || opts.db.is_some() {
        let path = match &opts.db {
            Some(p) => p.clone(),
            None => {
                temp = tempfile::tempdir()?;
                temp.path().join("run-step.redb")
            }
        };
        let store = crate::store::Store::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        engine.set_kv_backend(Arc::new(store));
    }
    let plugin = engine.load(wasm).await?;
    if let Some(schema) = &plugin.config_schema {
        let name = opts.plugin.display().to_string();
        crate::registry::config_fits(&name, schema, &config).map_err(anyhow::Error::msg)?;
    }
    let entries = |list: &[(String, String)], secret: bool| {
        list.iter()
            .map(|(name, value)| ConfigEntry {
                name: name.clone(),
                value: value.clone(),
                secret,
            })
            .collect::<Vec<_>>()
    };
    let mut config_entries = entries(&opts.settings, false);
    config_entries.extend(entries(&opts.secrets, true));
    let grants = Grants {
        http: opts.allow_http.clone().into(),
        kv: (opts.kv || opts.db.is_some()).then(|| KvGrant {
            bucket: "run-step".into(),
            namespace: "workflow/run-step".into(),
        }),
        config: config_entries,
        ..Grants::default()
    };
    let event = Event::new(
        RequestMeta {
            method: "POST".into(),
            path: "/hooks/run-step".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            remote_addr: "127.0.0.1:0".into(),
            received_at_ms: crate::execution::now_ms(),
        },
        Some("application/json".into()),
        Bytes::from(body),
    );
    let config_text = config.to_string();
    let call = StepCall {
        execution_id: uuid::Uuid::now_v7().to_string(),
        workflow: "run-step",
        step_id: "step",
        event: &event,
        previous: event.payload_text(),
        config: &config_text,
        attempt: 1,
        idempotency_key: "run-step:step".into(),
        grants: &grants,
        cancel: None,
    };
    let limits = StepLimits {
        timeout: opts.timeout,
        memory: 64 << 20,
        fuel: opts.fuel,
    };
    let run = engine.run(&plugin, call, limits).await;

    let ok = run.result.is_ok();
    match &run.result {
        Ok(success) => {
            let pretty = serde_json::from_str::<serde_json::Value>(success.output.get())
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| success.output.get().to_string());
            writeln!(out, "output:\n{pretty}")?;
            if success.halt {
                writeln!(out, "(the step halts the workflow)")?;
            }
            if let Some(r) = &success.response {
                writeln!(
                    out,
                    "answer: {} {:?} {}",
                    r.status,
                    r.headers,
                    String::from_utf8_lossy(&r.body)
                )?;
            }
        }
        Err(e) => writeln!(out, "error ({:?}): {}", e.kind, e.message)?,
    }
    writeln!(out, "logs:")?;
    for line in &run.logs {
        writeln!(out, "  [{}] {}", line.stream, line.message)?;
    }
    if run.logs_dropped_bytes > 0 {
        writeln!(
            out,
            "  ({} bytes past the cap dropped)",
            run.logs_dropped_bytes
        )?;
    }
    writeln!(out, "host calls:")?;
    for call in &run.host_calls {
        writeln!(out, "  {}", describe_call(call))?;
    }
    writeln!(
        out,
        "wall time {:?}, in host calls {:?}, peak memory {} bytes{}",
        run.wall_time,
        run.host_time,
        run.peak_memory,
        run.fuel.map(|f| format!(", fuel {f}")).unwrap_or_default()
    )?;
    Ok(ok)
}

fn describe_call(call: &HostCall) -> String {
    match call {
        HostCall::Http {
            method,
            host,
            port,
            path,
            status,
            bytes_out,
            bytes_in,
            duration_us,
            denied,
            error,
        } => {
            let what = format!("http {method} {host}:{port}{path}");
            match (denied, error, status) {
                (Some(why), _, _) => format!("{what} denied: {why}"),
                (_, Some(why), _) => format!("{what} failed: {why}"),
                (_, _, status) => format!(
                    "{what} -> {} ({bytes_out} B out, {bytes_in} B in, {duration_us} us)",
                    status.map_or("-".to_string(), |s| s.to_string())
                ),
            }
        }
        HostCall::Kv {
            op,
            bucket,
            key,
            bytes,
            denied,
        } => match denied {
            Some(why) => format!("kv {op} {bucket} denied: {why}"),
            None => format!("kv {op} {bucket}/{key} ({bytes} B)"),
        },
        HostCall::Socket { op, target, denied } => {
            format!("socket {op} {target} denied: {denied}")
        }
    }
}
