//! Hostile plugins: each fails only its own step (or, when it is hostile
//! before any call, is refused at load) with an error naming the limit,
//! while other workflows keep answering and the server's memory stays
//! within its limits.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Manifest, SCHEDULING_SLACK_US, Workdir, hookflow};

const NONE: &str = r#"{ kind = "none" }"#;

/// Little-endian bytes of `n`, as a WAT data string.
fn le(n: u32) -> String {
    n.to_le_bytes()
        .iter()
        .map(|b| format!("\\{b:02x}"))
        .collect()
}

/// A `step` component written by hand, so it can be made hostile in ways
/// no compiler emits. `Fixture::default()` is a well-behaved plugin whose
/// `run` succeeds with `null`.
#[derive(Default)]
struct Fixture {
    /// The main memory's size in 64 KiB pages (1 when 0).
    pages: u32,
    /// Core module fields put first (imports, a start function, more
    /// memories or tables).
    fields: &'static str,
    /// Component fields before the main instance (more core modules and
    /// instances).
    before: String,
    /// Arguments of the main instance's `instantiate`.
    with: &'static str,
    /// Instructions `run` executes before it answers.
    run: &'static str,
}

impl Fixture {
    fn wasm(&self) -> Vec<u8> {
        let Self {
            pages,
            fields,
            before,
            with,
            run,
        } = self;
        let pages = (*pages).max(1);
        // Strings at 2048; `describe`'s record at 1024, `run`'s result at
        // 1100.
        let strings = [
            (2048, "wat"),
            (2056, "0.1.0"),
            (2064, "hand-written"),
            (2080, "null"),
        ];
        // plugin-info { name, version, description, config-schema: none }
        let info = [le(2048), le(3), le(2056), le(5), le(2064), le(12), le(0)].concat();
        // result::ok(step-output { output: "null", halt: false, response: none })
        let ok = [le(0), le(2080), le(4), le(0), le(0)].concat();
        let data: String = strings
            .iter()
            .map(|(at, s)| format!("(data (memory $main) (i32.const {at}) \"{s}\")\n"))
            .collect();
        let wat = format!(
            r#"(component
  {before}
  (core module $m
    {fields}
    (memory $main (export "memory") {pages})
    (global $heap (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $at) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size $main) (i32.const 65536)))
        (then (drop (memory.grow $main
          (i32.add (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size $main) (i32.const 65536))) (i32.const 65536)) (i32.const 1))))))
      (local.get $at))
    (data (memory $main) (i32.const 1024) "{info}")
    (data (memory $main) (i32.const 1100) "{ok}")
    {data}
    (func (export "describe") (result i32) (i32.const 1024))
    (func (export "run") (param i32) (result i32) {run} (i32.const 1100)))
  (core instance $i (instantiate $m {with}))
  (type $request-meta' (record
    (field "method" string) (field "path" string) (field "query" string)
    (field "headers" (list (tuple string string))) (field "remote-addr" string)
    (field "received-at-ms" u64)))
  (export $request-meta "request-meta" (type $request-meta'))
  (type $event' (record
    (field "payload" string) (field "body" (list u8)) (field "content-type" (option string))
    (field "request" $request-meta)))
  (export $event "event" (type $event'))
  (type $step-input' (record
    (field "execution-id" string) (field "workflow" string) (field "step-id" string)
    (field "event" $event) (field "previous" string) (field "config" string)
    (field "attempt" u32) (field "idempotency-key" string)))
  (export $step-input "step-input" (type $step-input'))
  (type $http-response' (record
    (field "status" u16) (field "headers" (list (tuple string string))) (field "body" (list u8))))
  (export $http-response "http-response" (type $http-response'))
  (type $step-output' (record
    (field "output" string) (field "halt" bool) (field "response" (option $http-response))))
  (export $step-output "step-output" (type $step-output'))
  (type $step-error' (variant (case "retryable" string) (case "permanent" string)))
  (export $step-error "step-error" (type $step-error'))
  (type $plugin-info' (record
    (field "name" string) (field "version" string) (field "description" string)
    (field "config-schema" (option string))))
  (export $plugin-info "plugin-info" (type $plugin-info'))
  (func (export "describe") (result $plugin-info)
    (canon lift (core func $i "describe") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (func (export "run") (param "input" $step-input) (result (result $step-output (error $step-error)))
    (canon lift (core func $i "run") (memory (core memory $i "memory")) (realloc (core func $i "realloc")))))"#
        );
        wat::parse_str(&wat).expect("the fixture's WAT parses")
    }
}

/// `hookflow check` on `work`: its exit code and what it printed.
fn check(work: &Workdir) -> (Option<i32>, String) {
    let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Components that are hostile before any call (in their start function,
/// their declared memory, their count of memories or tables) are refused
/// when they load, each with an error naming what it broke, and the server
/// serves its other workflows. A hand-written well-behaved component of
/// the same shape loads and runs, so the refusals are the hostility's.
#[tokio::test]
async fn one_plugin_draining_the_pool_hostile_components_are_refused_at_load() {
    let work = Workdir::new();
    // Twelve core instances, each of a module with one `field`.
    let instances = |field: &str| {
        (0..12)
            .map(|i| format!("(core module $x{i} {field}) (core instance (instantiate $x{i}))"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let fixtures = [
        ("control", Fixture::default()),
        (
            "start-loop",
            Fixture {
                fields: "(func $spin (loop $l (br $l))) (start $spin)",
                ..Fixture::default()
            },
        ),
        (
            "memory-4gib",
            Fixture {
                pages: 65536,
                ..Fixture::default()
            },
        ),
        (
            "memories",
            Fixture {
                fields: "(memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1) (memory 1)",
                ..Fixture::default()
            },
        ),
        (
            "tables",
            Fixture {
                fields: "(table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref) (table 1 funcref)",
                ..Fixture::default()
            },
        ),
        (
            "memory-instances",
            Fixture {
                before: instances("(memory 1)"),
                ..Fixture::default()
            },
        ),
        (
            "table-instances",
            Fixture {
                before: instances("(table 1 funcref)"),
                ..Fixture::default()
            },
        ),
    ];
    for (name, wasm) in &fixtures {
        std::fs::write(work.dir().join(format!("plugins/{name}.wasm")), wasm.wasm()).unwrap();
        work.manifest(
            name,
            &Manifest::new(name, NONE)
                .trigger("mode", "\"sync\"")
                .step(name, "{}")
                .to_string(),
        );
    }
    let (code, stdout) = check(&work);
    assert_eq!(code, Some(1), "{stdout}");
    for (name, expected) in [
        ("start-loop", "did not answer within 5s"),
        ("memory-4gib", "exceeds the limit of 0x40000000 bytes"),
        ("memories", "memories count of 13 exceeds"),
        ("tables", "tables count of 12 exceeds"),
        (
            "memory-instances",
            "13 Wasm linear memories, which exceeds the configured maximum of 4",
        ),
        (
            "table-instances",
            "12 tables, which exceeds the configured maximum of 8",
        ),
    ] {
        let plugin = format!("plugin `plugins/{name}.wasm`: ");
        let why = stdout
            .lines()
            .find_map(|l| l.split_once(&plugin).map(|(_, why)| why))
            .unwrap_or_else(|| panic!("no problem reported for {name}:\n{stdout}"));
        eprintln!("{name}: {why}");
        assert!(why.contains(expected), "{name}: `{expected}` not in {why}");
    }
    assert!(!stdout.contains("control.toml"), "{stdout}");

    let server = work.start();
    let r = server.post_json("/hooks/control", &json!({"n": 1})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["output"], Value::Null, "{body}");
    for name in [
        "start-loop",
        "memory-4gib",
        "memories",
        "tables",
        "memory-instances",
        "table-instances",
    ] {
        let r = server
            .post_json(&format!("/hooks/{name}"), &json!({}))
            .await;
        assert_eq!(r.status(), 404, "{name} was not left out");
    }
}

/// A hostile step, and what its execution must end as.
struct Case {
    name: &'static str,
    plugin: &'static str,
    config: &'static str,
    memory_mib: u64,
    timeout_s: u64,
    status: &'static str,
    /// In the step's recorded error (or, for `succeeded`, nothing).
    error: &'static str,
}

/// Hostile steps all at once: each fails only its own step, with a
/// recorded error naming the limit it hit, within its timeout plus
/// [`SCHEDULING_SLACK_US`] (as the server measured the attempt); a healthy sync workflow
/// answers all the while; and the server's peak resident memory stays
/// within its memory at the start plus the memory limits of the hostile
/// steps plus a stated margin (256 MiB: what the host lifts out of a guest
/// before the caps check, allocator slack).
#[tokio::test]
async fn hostile_steps_fail_alone_within_their_limits() {
    let cases = [
        Case {
            name: "loop",
            plugin: "fail",
            config: r#"{ mode = "loop" }"#,
            memory_mib: 64,
            timeout_s: 2,
            status: "timed_out",
            error: "timeout of 2s",
        },
        Case {
            name: "alloc",
            plugin: "fail",
            config: r#"{ mode = "alloc" }"#,
            memory_mib: 64,
            timeout_s: 10,
            status: "failed",
            error: "memory limit of 67108864 bytes",
        },
        Case {
            name: "recurse",
            plugin: "fail",
            config: r#"{ mode = "recurse" }"#,
            memory_mib: 64,
            timeout_s: 10,
            status: "failed",
            error: "out of bounds memory access",
        },
        Case {
            name: "trap",
            plugin: "fail",
            config: r#"{ mode = "trap", message = "boom" }"#,
            memory_mib: 64,
            timeout_s: 10,
            status: "failed",
            error: "boom",
        },
        Case {
            name: "big-output",
            plugin: "fail",
            config: r#"{ mode = "big-output", bytes = 104857600 }"#,
            memory_mib: 320,
            timeout_s: 20,
            status: "failed",
            error: "4194304",
        },
        Case {
            name: "big-response",
            plugin: "fail",
            config: r#"{ mode = "big-response", bytes = 104857600 }"#,
            memory_mib: 320,
            timeout_s: 20,
            status: "failed",
            error: "1048576",
        },
        Case {
            name: "log-lines",
            plugin: "fail",
            config: r#"{ mode = "log-lines", lines = 1000000 }"#,
            memory_mib: 64,
            timeout_s: 60,
            status: "succeeded",
            error: "",
        },
        Case {
            name: "read-file",
            plugin: "fail",
            config: r#"{ mode = "read-file", path = "/etc/passwd" }"#,
            memory_mib: 64,
            timeout_s: 10,
            status: "failed",
            error: "cannot read /etc/passwd",
        },
        Case {
            name: "two-memories",
            plugin: "two-memories",
            config: "{}",
            memory_mib: 16,
            timeout_s: 10,
            status: "failed",
            error: "memory limit of 16777216 bytes",
        },
        // Wasm calls without end: the engine's own stack limit.
        Case {
            name: "deep-calls",
            plugin: "deep-calls",
            config: "{}",
            memory_mib: 16,
            timeout_s: 10,
            status: "failed",
            error: "call stack exhausted",
        },
    ];
    let work = Workdir::new();
    // Two memories of 12.5 MiB each: under a 16 MiB cap one by one, over
    // it together.
    let two = Fixture {
        before:
            "(core module $other (memory (export \"m\") 1)) (core instance $o (instantiate $other))"
                .into(),
        with: "(with \"x\" (instance $o))",
        fields: "(import \"x\" \"m\" (memory $x 1))",
        run: "(drop (memory.grow $x (i32.const 200))) (drop (memory.grow $main (i32.const 200)))",
        ..Fixture::default()
    };
    std::fs::write(work.dir().join("plugins/two-memories.wasm"), two.wasm()).unwrap();
    let deep = Fixture {
        fields: "(func $down (call $down))",
        run: "(call $down)",
        ..Fixture::default()
    };
    std::fs::write(work.dir().join("plugins/deep-calls.wasm"), deep.wasm()).unwrap();
    for c in &cases {
        let timeout = format!("timeout = \"{}s\"", c.timeout_s);
        work.manifest(
            c.name,
            &Manifest::new(c.name, NONE)
                .step_with(c.plugin, c.config, &[&timeout])
                .section(&format!("[limits]\nmemory = \"{}MiB\"", c.memory_mib))
                .to_string(),
        );
    }
    work.manifest(
        "quick",
        &crate::support::one_step("quick", "sync", NONE, "echo", "{}"),
    );
    let server = work.start();
    let r = server
        .post_json("/hooks/quick", &json!({"warm": true}))
        .await;
    assert_eq!(r.status(), 200);
    let (at_start, _) = server.resident();

    let mut ids = Vec::new();
    for c in &cases {
        let r = server
            .post_json(&format!("/hooks/{}", c.name), &json!({}))
            .await;
        assert_eq!(r.status(), 202, "{}", c.name);
        let ack: Value = r.json().await.unwrap();
        ids.push(ack["execution_id"].as_str().unwrap().to_string());
    }
    // The healthy workflow answers while they run.
    for i in 0..20 {
        let r = server.post_json("/hooks/quick", &json!({"i": i})).await;
        assert_eq!(r.status(), 200, "request {i} while hostile steps ran");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["output"], json!({"i": i}));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (c, id) in cases.iter().zip(&ids) {
        let done = server.wait_finished(id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], c.status, "{}: {done}", c.name);
        let attempt = &done["steps"][0]["attempts"][0];
        let wall_us = attempt["wall_time_us"].as_u64().unwrap();
        assert!(
            wall_us <= c.timeout_s * 1_000_000 + SCHEDULING_SLACK_US,
            "{}: stopped after {wall_us} us",
            c.name
        );
        if c.error.is_empty() {
            continue;
        }
        let error = attempt["error"]["message"].as_str().unwrap_or_default();
        assert!(
            error.contains(c.error),
            "{}: `{}` not in {error}",
            c.name,
            c.error
        );
    }
    // The million log lines: kept up to the cap, the rest counted.
    let (_, logs) = server.api(&format!("/api/v1/executions/{}", ids[6])).await;
    let attempt = &logs["steps"][0]["attempts"][0];
    assert!(
        attempt["logs_dropped_bytes"].as_u64().unwrap() > 0,
        "{attempt}"
    );
    let kept: usize = attempt["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().len())
        .sum();
    assert!(kept <= 64 * 1024, "{kept} bytes of logs kept");

    let (_, peak) = server.resident();
    let limits: u64 = cases.iter().map(|c| c.memory_mib << 20).sum();
    let margin = 256 << 20;
    eprintln!(
        "resident: {} MiB at start, peak {} MiB; hostile limits {} MiB",
        at_start >> 20,
        peak >> 20,
        limits >> 20
    );
    assert!(
        peak <= at_start + limits + margin,
        "peak resident {peak} bytes, over {at_start} + {limits} + {margin}"
    );
    let r = server
        .post_json("/hooks/quick", &json!({"after": true}))
        .await;
    assert_eq!(r.status(), 200);
}
