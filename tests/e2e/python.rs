//! A step written in Python: `hookflow build` makes it a component
//! (componentize-py, installed on first use into the cache), and it runs
//! end to end with the capabilities its grant allows.

use serde_json::{Value, json};

use crate::caps::{Sink, attempt, run_with};
use crate::support::{Manifest, Workdir, hookflow, shared_cache};

const NONE: &str = r#"{ kind = "none" }"#;

const APP: &str = r#"
from hookflow_step import WitWorld, step, http, log, Permanent

@step(name="py-greet", description="Greets, and tells two hosts")
def run(input):
    log.info(f"attempt {input['attempt']}")
    message = f"Hello, {input['previous'].get('name', 'world')}!"
    results = []
    for url in input["config"]["notify"]:
        try:
            answer = http.post(url, json_body={"text": message})
            results.append(answer.status)
        except Permanent as e:
            results.append(str(e))
    return {"message": message, "notify": results}
"#;

#[tokio::test]
async fn a_python_step_is_built_and_runs_with_its_grant() {
    let sink = Sink::start().await;
    let work = Workdir::new();
    let src = work.dir().join("py-greet");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("app.py"), APP).unwrap();
    let port = sink.addr.port();
    let config = format!(
        r#"{{ notify = ["http://127.0.0.1:{port}/granted", "http://localhost:{port}/not-granted"] }}"#
    );
    for (name, mode) in [("py-sync", "sync"), ("py-async", "async")] {
        let text = Manifest::new(name, NONE)
            .trigger("mode", &format!("\"{mode}\""))
            .to_string()
            + &format!(
                "\n[[steps]]\nsource = \"py-greet\"\nconfig = {config}\nallow = {{ http = [\"127.0.0.1\"] }}\n"
            );
        work.manifest(name, &text);
    }
    let built = hookflow()
        .arg("build")
        .arg(work.dir())
        .env("HOOKFLOW_CACHE_DIR", shared_cache())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(work.dir().join("plugins/py_greet.wasm").is_file());

    let server = work.start_env(&[("HOOKFLOW_ALLOW_HTTP", "127.0.0.1")]);
    let r = server
        .post_json("/hooks/py-sync", &json!({"name": "Ada"}))
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    let out = &answer["output"];
    assert_eq!(out["message"], "Hello, Ada!", "{answer}");
    assert_eq!(out["notify"][0], 200, "{answer}");
    assert!(
        out["notify"][1].as_str().unwrap().contains("denied"),
        "{answer}"
    );
    let seen = sink.seen();
    assert_eq!(seen.len(), 1, "only the granted call was sent");
    assert_eq!(seen[0].1, "/granted");
    assert_eq!(
        serde_json::from_str::<Value>(&seen[0].2).unwrap(),
        json!({"text": "Hello, Ada!"})
    );

    let done = run_with(&server, "py-async", &json!({"name": "Grace"})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let a = attempt(&done);
    assert!(a["logs"].to_string().contains("attempt 1"), "{a}");
    let calls = a["host_calls"].as_array().unwrap();
    assert_eq!(calls[0]["status"], 200, "{a}");
    assert_eq!(calls[1]["host"], "localhost", "{a}");
    assert!(
        calls[1]["denied"]
            .as_str()
            .unwrap()
            .contains("not in this step's grant"),
        "{a}"
    );
}
