//! A step written in JavaScript: `hookflow build` bundles it with its
//! modules and makes it a component (componentize-js, installed on first
//! use into the cache), and it runs end to end with what its grant allows.

use serde_json::json;

use crate::caps::{Sink, attempt, greeting_workflows, greets_with_one_granted_call, run_with};
use crate::support::{Workdir, build_sources};

const APP: &str = r#"
import isNumber from 'is-number';
import { step, config, log, Retryable } from 'hookflow-step';
import { greeting } from './greeting.js';

export const { describe, run } = step({ name: 'js-greet', description: 'Greets, and tells two hosts' }, async (input) => {
  log.info(`attempt ${input.attempt}`);
  console.log(`from ${input.request.path}`);
  if (input.previous.fail) throw new Retryable('the greeting service is down');
  const message = greeting(input.previous.name ?? 'world');
  const notify = [];
  for (const url of input.config.notify) {
    try {
      const answer = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-token': config.get('token') },
        body: JSON.stringify({ text: message }),
      });
      notify.push(answer.status);
    } catch (e) {
      notify.push(String(e));
    }
  }
  return { message, notify, numeric: isNumber(input.request.receivedAtMs) };
});
"#;

/// The step's npm dependency (CommonJS), installed by the build and
/// bundled into the component.
const PACKAGE: &str =
    r#"{ "name": "js-greet", "main": "app.js", "dependencies": { "is-number": "7.0.0" } }"#;

const GREETING: &str = "export const greeting = (name) => `Hello, ${name}!`;\n";

#[tokio::test]
async fn a_javascript_step_is_built_and_runs_with_its_grant() {
    let sink = Sink::start().await;
    let work = Workdir::new();
    work.source(
        "js-greet",
        &[
            ("package.json", PACKAGE),
            ("app.js", APP),
            ("greeting.js", GREETING),
        ],
    );
    greeting_workflows(
        &work,
        &sink,
        "js",
        "js-greet",
        "[secrets]\ntoken = \"env:JS_TEST_TOKEN\"\n",
        "retries = { max = 1, backoff = \"10ms\" }\nallow = { http = [\"127.0.0.1\"], config = [\"token\"] }",
    );
    build_sources(&work.dir());
    assert!(work.dir().join("plugins/js_greet.wasm").is_file());
    let server = work.start_env(&[
        ("HOOKFLOW_ALLOW_HTTP", "127.0.0.1"),
        ("JS_TEST_TOKEN", "s3cret-token"),
    ]);
    let done = greets_with_one_granted_call(&server, &sink, "js", "NetworkError").await;
    assert_eq!(sink.header(0, "x-token").as_deref(), Some("s3cret-token"));
    assert_eq!(done["output"]["numeric"], true, "{done}");
    assert!(
        attempt(&done)["logs"]
            .to_string()
            .contains("from /hooks/js-async"),
        "console.log is kept: {done}"
    );
    assert!(
        !done.to_string().contains("s3cret-token"),
        "the secret is redacted from the record: {done}"
    );

    // A thrown Retryable is retried, then recorded with its message.
    let failed = run_with(&server, "js-async", &json!({"fail": true})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let attempts = failed["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{failed}");
    assert_eq!(attempts[1]["error"]["kind"], "retryable", "{failed}");
    assert!(
        attempts[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the greeting service is down"),
        "{failed}"
    );
}
