//! `fail`: misbehaves on purpose, as configured. A test fixture and a way to
//! see how hookflow contains a bad step.
//!
//! `config.mode`:
//! - `"error"` (default): a permanent error with `config.message`;
//! - `"retryable"`: a retryable error with `config.message`;
//! - `"trap"`: a WebAssembly trap (Rust panic);
//! - `"loop"`: spins forever, until the step's timeout stops it;
//! - `"alloc"`: allocates without bound, until the memory limit stops it;
//! - `"flood"`: writes `config.bytes` bytes to stdout, then succeeds;
//! - `"sleep"`: sleeps `config.ms` milliseconds, then succeeds;
//! - `"big-error"`: a permanent error of `config.bytes` bytes;
//! - `"big-response"`: succeeds with an HTTP response of `config.bytes`
//!   bytes of body and `config.headers` headers, status `config.status`
//!   (default 200);
//! - `"recurse"`: recurses without bound, until the stack runs out;
//! - `"big-output"`: succeeds with an output of `config.bytes` bytes (a JSON
//!   string);
//! - `"log-lines"`: calls the `log` import `config.lines` times, then
//!   succeeds;
//! - `"read-file"`: reads `config.path` and succeeds with its length, which
//!   it cannot, having no filesystem.
//!
//! With `config.until_attempt = N` the step succeeds from attempt N on, which
//! shows retries at work. With `config.log_body = true` it first writes the
//! event's body to stderr (a log line holding what the sender sent).

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "step" });

use hookflow::plugin::types::HttpResponse;
use serde_json::Value;
use std::io::Write;

struct Fail;

impl Guest for Fail {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "fail".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Fails as configured: error, retryable, trap, loop, alloc, flood, sleep, recurse, and others.".into(),
            config_schema: None,
        }
    }

    fn run(input: StepInput) -> Result<StepOutput, StepError> {
        let config: Value = serde_json::from_str(&input.config)
            .map_err(|e| StepError::Permanent(format!("fail: config is not JSON: {e}")))?;
        if config.get("log_body").and_then(Value::as_bool) == Some(true) {
            eprintln!("body: {}", String::from_utf8_lossy(&input.event.body));
        }
        let until = config.get("until_attempt").and_then(Value::as_u64);
        if until.is_some_and(|n| u64::from(input.attempt) >= n) {
            return Ok(ok(input.previous));
        }
        let message = config
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("failing as configured")
            .to_string();
        match config
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("error")
        {
            "error" => Err(StepError::Permanent(message)),
            "retryable" => Err(StepError::Retryable(message)),
            "trap" => panic!("{message}"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "flood" => {
                let bytes = config
                    .get("bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(1 << 20);
                let line = [b'x'; 1024];
                let mut out = std::io::stdout();
                let mut written = 0;
                while written < bytes {
                    let _ = out.write_all(&line);
                    written += line.len() as u64;
                }
                let _ = out.flush();
                Ok(ok(input.previous))
            }
            "sleep" => {
                let ms = config.get("ms").and_then(Value::as_u64).unwrap_or(1000);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(ok(input.previous))
            }
            "big-error" => Err(StepError::Permanent("e".repeat(bytes(&config)))),
            "big-response" => {
                let count = config.get("headers").and_then(Value::as_u64).unwrap_or(0);
                let status = config.get("status").and_then(Value::as_u64).unwrap_or(200);
                Ok(StepOutput {
                    output: input.previous,
                    halt: true,
                    response: Some(HttpResponse {
                        status: u16::try_from(status).unwrap_or(u16::MAX),
                        headers: (0..count)
                            .map(|i| (format!("x-h{i}"), "v".into()))
                            .collect(),
                        body: vec![b'b'; bytes(&config)],
                    }),
                })
            }
            "recurse" => Ok(ok(recurse(0).to_string())),
            "big-output" => {
                let n = bytes(&config);
                let mut text = String::with_capacity(n + 2);
                text.push('"');
                text.extend(std::iter::repeat_n('o', n));
                text.push('"');
                Ok(ok(text))
            }
            "log-lines" => {
                let lines = config.get("lines").and_then(Value::as_u64).unwrap_or(1000);
                for i in 0..lines {
                    hookflow::plugin::log::log(
                        hookflow::plugin::log::Level::Info,
                        &format!("line {i}"),
                    );
                }
                Ok(ok(input.previous))
            }
            "read-file" => {
                let path = config
                    .get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("/etc/passwd");
                std::fs::read(path)
                    .map(|b| ok(b.len().to_string()))
                    .map_err(|e| StepError::Permanent(format!("fail: cannot read {path}: {e}")))
            }
            other => Err(StepError::Permanent(format!(
                "fail: unknown mode `{other}`"
            ))),
        }
    }
}

/// Calls itself until the stack runs out; the frame is kept alive by the
/// addition after the call.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 16]);
    recurse(depth + 1) + frame[15]
}

fn bytes(config: &Value) -> usize {
    let n = config.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn ok(output: String) -> StepOutput {
    StepOutput {
        output,
        halt: false,
        response: None,
    }
}

export!(Fail);
