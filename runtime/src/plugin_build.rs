//! `hookflow build DIR`: compiles every plugin source that the manifests in
//! DIR name as `source`, into the `.wasm` file the step loads: a Rust crate
//! with the machine's cargo (adding the `wasm32-wasip2` target when it is
//! missing), a Python module (`app.py`, its `pyproject.toml` dependencies
//! installed as pure-Python wheels) with componentize-py, a
//! JavaScript module (`package.json` or `*.js`) bundled with rolldown then
//! built with componentize-js. The Python and JavaScript toolchains are
//! installed on first use, from PyPI and npm at pinned versions, into a
//! private directory (`toolchains/` in the compiled-code cache), never
//! into the system. Building a crate runs its build script, so a source must
//! resolve inside DIR or inside a directory the operator names with
//! `--source-root`: a manifest dropped into the watched directory cannot
//! make hookflow run code from anywhere else. Each output is written to a temporary file and renamed
//! into place, so no reader ever sees half a plugin.
//!
//! `hookflow serve --build --watch` also watches the source crates and
//! builds again when one changes ([`watch_sources`]); the new `.wasm` lands
//! in DIR, where the server's own watch reloads it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use toml::Spanned;

use crate::config::{self, Diagnostic, SourceKind};

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The componentize-py release Python steps are built with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The `step` world's WIT, embedded: written out for the toolchains of
/// other languages and for `hookflow new plugin`. Paths under `wit/`.
pub const WIT_FILES: &[(&str, &str)] = &[
    ("plugin.wit", include_str!("../../wit/plugin.wit")),
    (
        "deps/cli/cli.wit",
        include_str!("../../wit/deps/cli/cli.wit"),
    ),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/http/http.wit",
        include_str!("../../wit/deps/http/http.wit"),
    ),
    ("deps/io/io.wit", include_str!("../../wit/deps/io/io.wit")),
    (
        "deps/random/random.wit",
        include_str!("../../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../wit/deps/sockets/sockets.wit"),
    ),
    (
        "deps/keyvalue/atomic.wit",
        include_str!("../../wit/deps/keyvalue/atomic.wit"),
    ),
    (
        "deps/keyvalue/batch.wit",
        include_str!("../../wit/deps/keyvalue/batch.wit"),
    ),
    (
        "deps/keyvalue/store.wit",
        include_str!("../../wit/deps/keyvalue/store.wit"),
    ),
    (
        "deps/keyvalue/watch.wit",
        include_str!("../../wit/deps/keyvalue/watch.wit"),
    ),
    (
        "deps/keyvalue/world.wit",
        include_str!("../../wit/deps/keyvalue/world.wit"),
    ),
    (
        "deps/config/store.wit",
        include_str!("../../wit/deps/config/store.wit"),
    ),
    (
        "deps/config/world.wit",
        include_str!("../../wit/deps/config/world.wit"),
    ),
];

/// The Python helper module (`plugins/python/hookflow_step.py`).
pub const PYTHON_HELPER: &str = include_str!("../../plugins/python/hookflow_step.py");

/// The componentize-js release JavaScript steps are built with.
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The JavaScript helper module (`plugins/js/hookflow-step.js`), imported
/// as `hookflow-step`.
pub const JS_HELPER: &str = include_str!("../../plugins/js/hookflow-step.js");

/// The JavaScript toolchain: the npm packages, pinned whole by the lock
/// file (`npm ci`), and the script that bundles a step.
const JS_TOOLCHAIN: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../plugins/js/toolchain/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../plugins/js/toolchain/package-lock.json"),
    ),
    (
        "bundle.mjs",
        include_str!("../../plugins/js/toolchain/bundle.mjs"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", config::joined(.0, "\n"))]
    Manifests(Vec<Diagnostic>),
    #[error("cannot add the {WASM_TARGET} target: {0}")]
    Target(String),
    #[error("cannot install {tool}: {reason}")]
    Toolchain { tool: String, reason: String },
    #[error("building {crate_dir} failed: {reason}")]
    Cargo { crate_dir: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Builds every plugin source named in `dir`, each of which must resolve
/// inside `dir` or one of `source_roots`, installing what other languages
/// need into `toolchains`; returns the files written.
pub fn build_dir(
    dir: &Path,
    source_roots: &[PathBuf],
    toolchains: &Path,
    progress: &mut impl Write,
) -> Result<Vec<PathBuf>, BuildError> {
    let targets = build_targets(dir, source_roots).map_err(BuildError::Manifests)?;
    if targets.is_empty() {
        let _ = writeln!(progress, "no plugin sources named in {}", dir.display());
        return Ok(Vec::new());
    }
    let kinds: Vec<Option<SourceKind>> =
        targets.iter().map(|t| SourceKind::of(&t.source)).collect();
    if kinds.contains(&Some(SourceKind::Rust)) {
        ensure_target(progress)?;
    }
    let python = if kinds.contains(&Some(SourceKind::Python)) {
        Some(python_toolchain(toolchains, progress)?)
    } else {
        None
    };
    let js = if kinds.contains(&Some(SourceKind::JavaScript)) {
        Some(js_toolchain(toolchains, progress)?)
    } else {
        None
    };
    let mut written = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let _ = writeln!(
            progress,
            "[{}/{}] building {} -> {}",
            i + 1,
            targets.len(),
            target.source.display(),
            target.output.display()
        );
        match SourceKind::of(&target.source) {
            Some(SourceKind::Python) if let Some(toolchain) = &python => {
                build_python(target, toolchain, progress)?
            }
            Some(SourceKind::JavaScript) if let Some(toolchain) = &js => {
                build_js(target, toolchain, progress)?
            }
            _ => build_one(target)?,
        }
        written.push(target.output.clone());
    }
    let _ = writeln!(progress, "built {} plugin(s)", written.len());
    Ok(written)
}

/// Adds the wasm target through rustup unless it is already installed.
pub fn ensure_target(progress: &mut impl Write) -> Result<(), BuildError> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| BuildError::Target(format!("rustup is needed to add the target: {e}")))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    let _ = writeln!(
        progress,
        "adding the {WASM_TARGET} target (rustup target add)"
    );
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| BuildError::Target(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Target(format!("rustup exited with {status}")))
    }
}

/// A plugin crate that `hookflow build` compiles, and where its wasm goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildTarget {
    /// The crate's directory.
    pub source: PathBuf,
    /// The `.wasm` file the step loads.
    pub output: PathBuf,
}

/// Every `source` named by the manifests in `dir`, once each. Reads only the
/// `[[steps]]` of each manifest, so it works before the plugins exist.
pub fn build_targets(
    dir: &Path,
    source_roots: &[PathBuf],
) -> Result<Vec<BuildTarget>, Vec<Diagnostic>> {
    #[derive(Deserialize)]
    struct Steps {
        #[serde(default)]
        steps: Vec<StepPaths>,
    }
    #[derive(Deserialize)]
    struct StepPaths {
        plugin: Option<String>,
        source: Option<Spanned<String>>,
    }
    let files = config::manifest_files(dir).map_err(|d| vec![d])?;
    // Where sources may be: DIR and the named roots, as real paths.
    let allowed: Vec<PathBuf> = std::iter::once(dir)
        .chain(source_roots.iter().map(PathBuf::as_path))
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let mut targets: Vec<BuildTarget> = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Diagnostic::file(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        let steps = match toml::from_str::<Steps>(&text) {
            Ok(s) => s.steps,
            Err(e) => {
                problems.push(config::toml_error(&file, &text, &e));
                continue;
            }
        };
        let base = file.parent().unwrap_or(dir);
        for step in steps {
            let Some(source) = step.source else { continue };
            let crate_dir = base.join(source.get_ref());
            let inside = crate_dir
                .canonicalize()
                .is_ok_and(|real| allowed.iter().any(|root| real.starts_with(root)));
            if !inside {
                problems.push(Diagnostic::at(
                    &file,
                    &text,
                    source.span(),
                    format!(
                        "source `{}` is not a crate inside {} (building a crate runs its build script): move it in, or name its directory with --source-root",
                        source.get_ref(),
                        dir.display()
                    ),
                ));
                continue;
            }
            let output = match (&step.plugin, config::plugin_for_source(&crate_dir)) {
                (Some(p), _) => base.join(p),
                (None, Ok(p)) => base.join(p),
                (None, Err(e)) => {
                    problems.push(Diagnostic::at(&file, &text, source.span(), e));
                    continue;
                }
            };
            let target = BuildTarget {
                source: crate_dir,
                output,
            };
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(problems)
    }
}

#[derive(Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
}

fn build_one(target: &BuildTarget) -> Result<(), BuildError> {
    let crate_dir = target.source.display().to_string();
    let fail = |reason: String| BuildError::Cargo {
        crate_dir: crate_dir.clone(),
        reason,
    };
    let manifest = target.source.join("Cargo.toml");
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--target", WASM_TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(fail(format!("cargo exited with {}", output.status)));
    }
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let wasm = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<CargoMessage>(l).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter(|m| m.manifest_path.as_deref() == Some(manifest.as_path()))
        .flat_map(|m| m.filenames)
        .find(|f| f.extension().is_some_and(|x| x == "wasm"))
        .ok_or_else(|| fail("cargo produced no .wasm: is the crate a `cdylib`?".into()))?;
    install(&wasm, &target.output)
}

/// What building a Python step needs: componentize-py, and the WIT and
/// helper module it builds against.
#[derive(Debug, Clone)]
pub struct PythonToolchain {
    componentize: PathBuf,
    pip: PathBuf,
    support: PathBuf,
}

/// componentize-py in a virtual environment of its own under
/// `toolchains`, installed from PyPI on first use (`python3 -m venv`, then
/// pip), with the WIT and the helper module written beside it.
fn python_toolchain(
    toolchains: &Path,
    progress: &mut impl Write,
) -> Result<PythonToolchain, BuildError> {
    let fail = |reason: String| BuildError::Toolchain {
        tool: format!("componentize-py {COMPONENTIZE_PY}"),
        reason,
    };
    let venv = toolchains.join(format!("componentize-py-{COMPONENTIZE_PY}"));
    let componentize = venv.join("bin/componentize-py");
    let what = format!("componentize-py {COMPONENTIZE_PY} from PyPI");
    let _lock = install_once(toolchains, &venv, &what, progress, || {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (Python 3 with venv is needed)",
        )?;
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
            "pip install",
        )
    })
    .map_err(fail)?;
    let support = support_dir(toolchains).map_err(fail)?;
    Ok(PythonToolchain {
        componentize,
        pip: venv.join("bin/pip"),
        support,
    })
}

/// The WIT and the helper modules, written out under `toolchains` in a
/// folder named by their content, so that a new hookflow writes its own.
fn support_dir(toolchains: &Path) -> Result<PathBuf, String> {
    let files: Vec<(String, &str)> = WIT_FILES
        .iter()
        .map(|(path, text)| (format!("wit/{path}"), *text))
        .chain([
            ("python/hookflow_step.py".to_string(), PYTHON_HELPER),
            ("js/hookflow-step.js".to_string(), JS_HELPER),
        ])
        .collect();
    let support = toolchains.join(format!("support-{}", digest(&files)));
    if !support.join(".complete").is_file() {
        write_files(&support, &files)?;
        std::fs::write(support.join(".complete"), "").map_err(|e| e.to_string())?;
    }
    Ok(support)
}

/// Holds `toolchains/.lock` until dropped, so that two builds at once
/// (two `hookflow build`s, or one beside a watching server) install and
/// write each toolchain once, and never read one half-written.
fn lock(toolchains: &Path) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(toolchains)
        .map_err(|e| format!("cannot create {}: {e}", toolchains.display()))?;
    let path = toolchains.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

/// Installs a toolchain into `dir` with `install` unless an earlier run
/// finished it (its `.installed` marker), saying so on `progress`; a
/// half-done install is started again from nothing. Returns the
/// toolchains lock, to hold while the toolchain is set up.
fn install_once(
    toolchains: &Path,
    dir: &Path,
    what: &str,
    progress: &mut impl Write,
    install: impl FnOnce() -> Result<(), String>,
) -> Result<std::fs::File, String> {
    let held = lock(toolchains)?;
    let done = dir.join(".installed");
    if !done.is_file() {
        let _ = writeln!(progress, "installing {what} into {} (once)", dir.display());
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        install()?;
        std::fs::write(&done, what).map_err(|e| e.to_string())?;
    }
    Ok(held)
}

/// A short hex digest of named texts.
fn digest<N: AsRef<str>>(files: &[(N, &str)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (path, text) in files {
        h.update(path.as_ref().as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

fn write_files<N: AsRef<str>>(dir: &Path, files: &[(N, &str)]) -> Result<(), String> {
    for (path, text) in files {
        let to = dir.join(path.as_ref());
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&to, text).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
    }
    Ok(())
}

/// What building a JavaScript step needs: node, the installed toolchain
/// and the WIT and helper module it builds against.
#[derive(Debug, Clone)]
pub struct JsToolchain {
    dir: PathBuf,
    support: PathBuf,
}

/// componentize-js and rolldown, installed from npm on first use with
/// `npm ci` against the embedded lock file into a folder of their own
/// under `toolchains` (named by the lock's content). Install scripts do
/// not run: the packages ship their binaries as plain files.
fn js_toolchain(toolchains: &Path, progress: &mut impl Write) -> Result<JsToolchain, BuildError> {
    let fail = |reason: String| BuildError::Toolchain {
        tool: format!("componentize-js {COMPONENTIZE_JS}"),
        reason,
    };
    let dir = toolchains.join(format!(
        "componentize-js-{COMPONENTIZE_JS}-{}",
        digest(JS_TOOLCHAIN)
    ));
    let what = format!("componentize-js {COMPONENTIZE_JS} from npm");
    let _lock = install_once(toolchains, &dir, &what, progress, || {
        write_files(&dir, JS_TOOLCHAIN)?;
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .args(["--loglevel", "error"])
                .current_dir(&dir),
            "npm ci (Node.js 20 or later with npm is needed)",
        )
    })
    .map_err(fail)?;
    let support = support_dir(toolchains).map_err(fail)?;
    Ok(JsToolchain { dir, support })
}

/// A JavaScript step into a component: its npm dependencies installed
/// when it declares some and has none yet (scripts off), the entry module
/// bundled with them and the helper, then componentize-js against the
/// `step` world. The runtime's `fetch-event` export is left out (a step
/// exports `run`); `fetch` itself goes out through `wasi:http`.
fn build_js(
    target: &BuildTarget,
    toolchain: &JsToolchain,
    progress: &mut impl Write,
) -> Result<(), BuildError> {
    let fail = |reason: String| BuildError::Cargo {
        crate_dir: target.source.display().to_string(),
        reason,
    };
    let package = config::npm_package(&target.source).map_err(fail)?;
    if !package.dependencies.is_empty() && !target.source.join("node_modules").is_dir() {
        let _ = writeln!(
            progress,
            "installing the npm dependencies of {}",
            target.source.display()
        );
        let verb = if target.source.join("package-lock.json").is_file() {
            "ci"
        } else {
            "install"
        };
        run(
            Command::new("npm")
                .args([verb, "--no-audit", "--no-fund", "--ignore-scripts"])
                .args(["--loglevel", "error"])
                .current_dir(&target.source),
            "npm",
        )
        .map_err(fail)?;
    }
    let entry = config::js_entry(&target.source).map_err(fail)?;
    let scratch = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let bundled = scratch.path().join("step.js");
    let out = scratch.path().join("step.wasm");
    run(
        Command::new("node")
            .arg(toolchain.dir.join("bundle.mjs"))
            .arg(&entry)
            .arg(toolchain.support.join("js/hookflow-step.js"))
            .arg(&bundled),
        "bundling (node)",
    )
    .map_err(fail)?;
    run(
        Command::new("node")
            .arg(
                toolchain
                    .dir
                    .join("node_modules/@bytecodealliance/componentize-js/src/cli.js"),
            )
            .arg(&bundled)
            .arg("--wit")
            .arg(toolchain.support.join("wit"))
            .args(["--world-name", "step", "--disable", "fetch-event", "--out"])
            .arg(&out),
        "componentize-js",
    )
    .map_err(fail)?;
    install(&out, &target.output)
}

/// Runs `cmd`, its output passed through; an error names `what` failed.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} exited with {status}"))
    }
}

/// `app.py` in `target.source`, with the helper module, into a component.
/// The `pyproject.toml` dependencies, when there are any, are installed
/// first with the toolchain's pip into a scratch folder that goes into the
/// component beside them: pure-Python wheels only (a native extension
/// built for this machine would not run in WebAssembly, and no package's
/// setup code runs).
fn build_python(
    target: &BuildTarget,
    toolchain: &PythonToolchain,
    progress: &mut impl Write,
) -> Result<(), BuildError> {
    let fail = |reason: String| BuildError::Cargo {
        crate_dir: target.source.display().to_string(),
        reason,
    };
    if !target.source.join("app.py").is_file() {
        return Err(fail(
            "a Python step is the module app.py, and this folder has none".into(),
        ));
    }
    let requirements = config::py_project(&target.source)
        .map_err(fail)?
        .project
        .dependencies;
    let scratch = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let deps = scratch.path().join("deps");
    if !requirements.is_empty() {
        let _ = writeln!(
            progress,
            "installing {} from PyPI (pure-Python wheels)",
            requirements.join(", ")
        );
        run(
            Command::new(&toolchain.pip)
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg("--target")
                .arg(&deps)
                .args(["--only-binary=:all:", "--platform", "any"])
                .args(["--implementation", "py"])
                .args(&requirements),
            "pip install (only pure-Python wheels can go into a component)",
        )
        .map_err(fail)?;
    }
    let out = scratch.path().join("step.wasm");
    let mut cmd = Command::new(&toolchain.componentize);
    cmd.arg("-d")
        .arg(toolchain.support.join("wit"))
        .args(["-w", "step", "componentize", "app", "-p"])
        .arg(&target.source)
        .arg("-p")
        .arg(toolchain.support.join("python"));
    if deps.is_dir() {
        cmd.arg("-p").arg(&deps);
    }
    run(cmd.arg("-o").arg(&out), "componentize-py").map_err(fail)?;
    install(&out, &target.output)
}

/// Copies `from` to `to` through a temporary file and a rename.
fn install(from: &Path, to: &Path) -> Result<(), BuildError> {
    let fail = |e: std::io::Error| BuildError::Write {
        path: to.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let tmp = to.with_extension("wasm.partial");
    std::fs::copy(from, &tmp).map_err(fail)?;
    std::fs::rename(&tmp, to).map_err(fail)
}

/// Watches the source crates the manifests in `dir` name and, once a
/// change has settled, builds them all again (cargo skips what did not
/// change). A failed build prints cargo's errors and leaves the last good
/// `.wasm` in place, so the version serving stays; a good one writes the
/// new `.wasm` into DIR, which the server reloads. Changes under a crate's
/// `target/` do not count.
pub fn watch_sources(
    dir: &Path,
    source_roots: &[PathBuf],
    toolchains: &Path,
) -> Result<usize, String> {
    use notify::{RecursiveMode, Watcher};
    let targets =
        build_targets(dir, source_roots).map_err(|problems| config::joined(&problems, "\n"))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let in_target = |p: &PathBuf| {
            p.components().any(|c| {
                ["target", "__pycache__", "node_modules"]
                    .contains(&c.as_os_str().to_str().unwrap_or(""))
            })
        };
        if crate::registry::watch::is_change(&event) && !event.paths.iter().all(in_target) {
            let _ = tx.send(());
        }
    })
    .map_err(|e| e.to_string())?;
    for t in &targets {
        watcher
            .watch(&t.source, RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", t.source.display()))?;
    }
    let (dir, roots, toolchains) = (
        dir.to_path_buf(),
        source_roots.to_vec(),
        toolchains.to_path_buf(),
    );
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            if !crate::registry::watch::settle(&mut rx).await {
                return;
            }
            let (dir, roots, toolchains) = (dir.clone(), roots.clone(), toolchains.clone());
            let built = tokio::task::spawn_blocking(move || {
                build_dir(&dir, &roots, &toolchains, &mut std::io::stderr())
            })
            .await;
            match built {
                Ok(Ok(written)) => {
                    tracing::info!(plugins = written.len(), "rebuilt the plugin sources");
                }
                Ok(Err(e)) => {
                    eprintln!("{e}");
                    tracing::error!("the build failed; the last good version keeps serving");
                }
                Err(e) => tracing::error!(error = %e, "the build did not finish"),
            }
        }
    });
    Ok(targets.len())
}
