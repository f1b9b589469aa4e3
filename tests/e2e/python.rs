//! A step written in Python: `hookflow build` makes it a component
//! (componentize-py, installed on first use into the cache), and it runs
//! end to end with the capabilities its grant allows.

use serde_json::json;

use crate::caps::{
    Sink, all_socket_denials, attempt, greeting_workflows, greets_with_one_granted_call, run_with,
};
use crate::support::{Manifest, Workdir, build_sources};

const NONE: &str = r#"{ kind = "none" }"#;

const APP: &str = r#"
import six
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
    return {"message": message, "notify": results, "six": six.__version__}
"#;

/// The step's PyPI dependency, installed by the build into the component.
const PYPROJECT: &str = "[project]\nname = \"py-greet\"\ndependencies = [\"six==1.16.0\"]\n";

#[tokio::test]
async fn a_python_step_is_built_and_runs_with_its_grant() {
    let sink = Sink::start().await;
    let work = Workdir::new();
    work.source(
        "py-greet",
        &[("app.py", APP), ("pyproject.toml", PYPROJECT)],
    );
    greeting_workflows(
        &work,
        &sink,
        "py",
        "py-greet",
        "",
        "allow = { http = [\"127.0.0.1\"] }",
    );
    build_sources(&work.dir());
    assert!(work.dir().join("plugins/py_greet.wasm").is_file());
    let server = work.start_env(&[("HOOKFLOW_ALLOW_HTTP", "127.0.0.1")]);
    let done = greets_with_one_granted_call(&server, &sink, "py", "denied").await;
    assert_eq!(done["output"]["six"], "1.16.0", "{done}");
}

const SOCKETS: &str = r#"
import socket
from hookflow_step import WitWorld, step

def attempt(f):
    try:
        f()
        return "allowed"
    except OSError as e:
        return f"{type(e).__name__}: {e}"

@step(name="py-sockets")
def run(input):
    port = input["config"]["port"]
    return {
        "connect": attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=2)),
        "socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(("127.0.0.1", port))),
        "lookup": attempt(lambda: socket.getaddrinfo("localhost", 80)),
    }
"#;

/// The Python runtime imports `wasi:sockets`: the component loads, and
/// every use fails inside the guest, as Python's own error, with the
/// denial in the attempt's audit trail; nothing reaches the listener.
#[tokio::test]
async fn a_python_step_importing_sockets_loads_and_every_use_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let work = Workdir::new();
    work.source("py-sockets", &[("app.py", SOCKETS)]);
    let text = Manifest::new("py-sockets", NONE).to_string()
        + &format!("\n[[steps]]\nsource = \"py-sockets\"\nconfig = {{ port = {port} }}\n");
    work.manifest("py-sockets", &text);
    build_sources(&work.dir());
    let server = work.start();
    let done = run_with(&server, "py-sockets", &json!({})).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    for op in ["connect", "socket", "lookup"] {
        let said = done["output"][op].as_str().unwrap();
        assert!(said.starts_with("PermissionError"), "{op}: {done}");
    }
    let calls = attempt(&done)["host_calls"].as_array().unwrap().clone();
    assert!(calls.len() >= 3, "{calls:?}");
    all_socket_denials(&calls);
    assert!(
        calls.iter().any(|c| c["target"] == "localhost"),
        "{calls:?}"
    );
    assert!(listener.accept().is_err(), "a socket reached the listener");
}
