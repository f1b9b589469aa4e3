//! `hookflow check` and `hookflow build` as an operator runs them.

use crate::support::{Workdir, hookflow, one_step};

#[test]
fn check_reports_every_problem_with_file_and_line_and_exits_1() {
    let work = Workdir::new();
    work.manifest(
        "good",
        &one_step("good", "async", r#"{ kind = "none" }"#, "echo", "{}"),
    )
    .manifest(
        "broken",
        r#"name = "broken"

[trigger]
path = "good"
methods = ["POST", "FETCH"]
auth = { kind = "none" }

[[steps]]
plugin = "plugins/echo.wasm"
"#,
    )
    .manifest(
        "invalid",
        r#"[trigger]
path = "/bad path"
auth = { kind = "none" }
sync_timeout = "forever"

[[steps]]
plugin = "plugins/missing.wasm"
"#,
    )
    .file("plugins/garbage.wasm", "this is not wasm")
    .manifest(
        "garbage",
        &one_step("garbage", "async", r#"{ kind = "none" }"#, "garbage", "{}"),
    );
    let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let dir = work.dir();
    for expected in [
        format!(
            "{}:5: unknown variant `FETCH`",
            dir.join("broken.toml").display()
        ),
        format!(
            "{}:2: trigger path `/bad path`",
            dir.join("invalid.toml").display()
        ),
        format!(
            "{}:4: `forever` is not a duration",
            dir.join("invalid.toml").display()
        ),
        format!(
            "{}:7: plugin `plugins/missing.wasm` not found",
            dir.join("invalid.toml").display()
        ),
        format!(
            "{}:8: step `garbage`: plugin `plugins/garbage.wasm`: not a valid WebAssembly component",
            dir.join("garbage.toml").display()
        ),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
    assert!(stdout.contains("5 problem(s)"), "{stdout}");

    std::fs::remove_file(dir.join("broken.toml")).unwrap();
    std::fs::remove_file(dir.join("invalid.toml")).unwrap();
    std::fs::remove_file(dir.join("garbage.toml")).unwrap();
    let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ok: 1 workflow(s)"), "{stdout}");
}

#[test]
fn a_plugin_outside_the_directory_is_refused() {
    let work = Workdir::new();
    let outside = work.tmp.path().join("outside.wasm");
    std::fs::copy(work.dir().join("plugins/echo.wasm"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, work.dir().join("plugins/link.wasm")).unwrap();
    work.manifest(
        "link",
        &one_step("link", "async", r#"{ kind = "none" }"#, "link", "{}"),
    );
    let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("resolves outside the workflow directory"),
        "{stdout}"
    );
}

#[test]
fn a_step_config_the_plugin_does_not_accept_is_refused_at_load() {
    // echo describes its config: `full` must be a boolean.
    let work = Workdir::new();
    let check = |config: &str| {
        let none = r#"{ kind = "none" }"#;
        work.manifest("picky", &one_step("picky", "async", none, "echo", config));
        let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), stdout)
    };
    let (code, stdout) = check(r#"{ full = "yes" }"#);
    assert_eq!(code, Some(1), "{stdout}");
    let expected = format!(
        "{}:8: step `echo`: `config` does not fit what plugin `plugins/echo.wasm` accepts: /full: ",
        work.dir().join("picky.toml").display()
    );
    assert!(
        stdout.contains(&expected),
        "missing `{expected}` in:\n{stdout}"
    );
    let (code, stdout) = check("{ full = true }");
    assert_eq!(code, Some(0), "{stdout}");
}

#[test]
fn a_component_asking_for_what_hookflow_does_not_provide_is_refused_at_load() {
    // A component importing an interface hookflow never links (here
    // wasi:blobstore) must not load, and `check` must say which.
    let work = Workdir::new();
    let wat = r#"(component
        (import "wasi:blobstore/blobstore@0.2.0-draft" (instance
            (export "create-container" (func))
        ))
    )"#;
    let wasm = wat::parse_str(wat).expect("valid WAT");
    std::fs::write(work.dir().join("plugins/net.wasm"), wasm).unwrap();
    work.manifest(
        "net",
        &one_step("net", "async", r#"{ kind = "none" }"#, "net", "{}"),
    );
    let out = hookflow().arg("check").arg(work.dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("wasi:blobstore/blobstore"), "{stdout}");
}

/// Finding 9 of the fault issue: a `source` outside the watched directory
/// is not built (building runs the crate's build script), absolute or
/// `../`, unless the operator names its directory with `--source-root`.
#[test]
fn the_watched_directory_is_an_input_sources_outside_are_not_built() {
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("build-script-ran");
    let evil = outside.path().join("evil");
    std::fs::create_dir_all(evil.join("src")).unwrap();
    std::fs::write(
        evil.join("Cargo.toml"),
        "[package]\nname = \"evil\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[lib]\ncrate-type = [\"cdylib\"]\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(evil.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        evil.join("build.rs"),
        format!(
            "fn main() {{ std::fs::write({:?}, \"ran\").unwrap(); }}\n",
            marker
        ),
    )
    .unwrap();
    let work = Workdir::new();
    let manifest = |source: &str| {
        format!(
            "[trigger]\npath = \"x\"\nauth = {{ kind = \"none\" }}\n\n[[steps]]\nsource = {source:?}\n"
        )
    };
    work.manifest("absolute", &manifest(&evil.display().to_string()));
    let up = std::iter::repeat_n("..", work.dir().components().count())
        .collect::<Vec<_>>()
        .join("/");
    work.manifest("relative", &manifest(&format!("{up}{}", evil.display())));
    let out = hookflow().arg("build").arg(work.dir()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for name in ["absolute", "relative"] {
        let expected = format!("{name}.toml:6:");
        let line = stderr
            .lines()
            .find(|l| l.contains(&expected))
            .unwrap_or_else(|| panic!("no problem for {name}:\n{stderr}"));
        assert!(line.contains("is not a crate inside"), "{line}");
        assert!(line.contains("--source-root"), "{line}");
    }
    assert!(!marker.exists(), "the outside crate's build script ran");
}
