//! The README's two set-up commands, and the example curl lines, do what
//! they say.

use std::process::Command;
use std::time::Duration;

use crate::support::{BANNER, hookflow, plugin_dir, repo_root};

fn readme() -> String {
    std::fs::read_to_string(repo_root().join("README.md")).unwrap()
}

/// The single line of the README starting with `prefix`-ish content.
fn command_line(text: &str, needle: &str) -> String {
    let found: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(needle) && !l.trim_start().starts_with('#'))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one README line with `{needle}`: {found:?}"
    );
    found[0].trim().to_string()
}

#[test]
fn ci_runs_the_readme_test_command() {
    let test_command = command_line(&readme(), "cargo test");
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).unwrap();
    assert!(
        ci.contains(&test_command),
        ".ci/run does not run `{test_command}`"
    );
}

#[test]
fn the_readme_run_command_serves_the_examples_and_their_curl_lines_work() {
    plugin_dir(); // the plugins workspace is built once; --build reuses it
    let run = command_line(&readme(), "cargo run --release -- serve");
    let (env_part, args) = run.split_once("cargo run --release -- ").unwrap();
    let mut cmd = hookflow();
    for assignment in env_part.split_whitespace() {
        let (k, v) = assignment.split_once('=').expect("VAR=value before cargo");
        cmd.env(k, v);
    }
    let db = tempfile::tempdir().unwrap();
    cmd.args(args.split_whitespace())
        .current_dir(repo_root())
        .env("HOOKFLOW_LISTEN", "127.0.0.1:0")
        .env("HOOKFLOW_DB", db.path().join("examples.redb"))
        .env("HOOKFLOW_LOG", "warn");
    let started =
        hookflow_testkit::spawn(&mut cmd, BANNER, Duration::from_secs(300)).expect("server starts");
    let mut child = started.child;
    let base = started.listening;
    let mut banner = started.banner;
    // Every webhook URL is printed at start, after the number of workflows.
    let next = || {
        started
            .rest
            .recv_timeout(Duration::from_secs(10))
            .expect("banner line")
    };
    let count = next();
    let workflows: usize = count
        .split_once(" workflow(s)")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("a count of workflows, not {count:?}"));
    banner.push(count);
    for _ in 0..workflows {
        banner.push(next());
    }
    let banner = banner.join("\n");
    assert!(
        banner.contains(&format!("POST {base}/hooks/shop/orders -> orders (async)")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("POST|PUT {base}/hooks/greet -> greet (sync)")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "POST {base}/hooks/t/<token> -> slack-events (sync)"
        )),
        "{banner}"
    );

    let examples = std::fs::read_to_string(repo_root().join("examples/README.md")).unwrap();
    let mut expect = None;
    let mut ran = 0;
    let mut in_sh = false;
    for line in examples.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        if let Some(code) = line.strip_prefix("# expect ") {
            expect = Some(code.trim().to_string());
        } else if line.starts_with("python3 ") {
            // A script: `# expect` is its exit code; it prints what
            // arrived where.
            let expected = expect
                .take()
                .unwrap_or_else(|| panic!("no `# expect` before: {line}"));
            let command = line.replace("http://127.0.0.1:8080", &base);
            let out = Command::new("sh")
                .arg("-c")
                .arg(&command)
                .current_dir(repo_root())
                .output()
                .unwrap();
            let printed = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code().map(|c| c.to_string()).as_deref(),
                Some(expected.as_str()),
                "{line}: {printed}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                printed.contains("the sink got POST /chat: ")
                    && printed.contains("ada pushed 2 commit(s) to acme/shop"),
                "{printed}"
            );
            ran += 1;
        } else if line.starts_with("curl ") {
            let expected = expect
                .take()
                .unwrap_or_else(|| panic!("no `# expect` before: {line}"));
            let command = format!(
                "{} -o /dev/null -w '%{{http_code}}'",
                line.replace("http://127.0.0.1:8080", &base)
            );
            let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(got.trim(), expected, "{line}");
            ran += 1;
        }
    }
    assert!(ran >= 7, "only {ran} lines ran");
    let _ = child.kill();
    let _ = child.wait();
}
