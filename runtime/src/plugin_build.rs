//! `hookflow build DIR`: compiles every plugin source that the manifests in
//! DIR name as `source`, into the `.wasm` file the step loads: a Rust crate
//! with the machine's cargo (adding the `wasm32-wasip2` target when it is
//! missing), a Python module (`app.py`) with componentize-py, installed
//! on first use from PyPI at a pinned version into a private directory
//! (`toolchains/` in the compiled-code cache), never into the system. Building a crate runs its build script, so a source must
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
        match (SourceKind::of(&target.source), &python) {
            (Some(SourceKind::Python), Some(toolchain)) => build_python(target, toolchain)?,
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
    let done = venv.join(".installed");
    if !done.is_file() {
        let _ = writeln!(
            progress,
            "installing componentize-py {COMPONENTIZE_PY} from PyPI into {} (once)",
            venv.display()
        );
        let _ = std::fs::remove_dir_all(&venv);
        std::fs::create_dir_all(toolchains).map_err(|e| fail(e.to_string()))?;
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (Python 3 with venv is needed)",
        )
        .map_err(fail)?;
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
            "pip install",
        )
        .map_err(fail)?;
        std::fs::write(&done, COMPONENTIZE_PY).map_err(|e| fail(e.to_string()))?;
    }
    // The WIT and helper, by their content: a new hookflow writes its own.
    let digest = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (path, text) in WIT_FILES {
            h.update(path.as_bytes());
            h.update(text.as_bytes());
        }
        h.update(PYTHON_HELPER.as_bytes());
        hex::encode(&h.finalize()[..8])
    };
    let support = toolchains.join(format!("python-support-{digest}"));
    if !support.join("python/hookflow_step.py").is_file() {
        for (path, text) in WIT_FILES {
            let to = support.join("wit").join(path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
            }
            std::fs::write(&to, text).map_err(|e| fail(e.to_string()))?;
        }
        std::fs::create_dir_all(support.join("python")).map_err(|e| fail(e.to_string()))?;
        std::fs::write(support.join("python/hookflow_step.py"), PYTHON_HELPER)
            .map_err(|e| fail(e.to_string()))?;
    }
    Ok(PythonToolchain {
        componentize,
        support,
    })
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
fn build_python(target: &BuildTarget, toolchain: &PythonToolchain) -> Result<(), BuildError> {
    let fail = |reason: String| BuildError::Cargo {
        crate_dir: target.source.display().to_string(),
        reason,
    };
    let out = std::env::temp_dir().join(format!(
        "hookflow-build-{}-{}.wasm",
        std::process::id(),
        target
            .output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    run(
        Command::new(&toolchain.componentize)
            .arg("-d")
            .arg(toolchain.support.join("wit"))
            .args(["-w", "step", "componentize", "app", "-p"])
            .arg(&target.source)
            .arg("-p")
            .arg(toolchain.support.join("python"))
            .arg("-o")
            .arg(&out),
        "componentize-py",
    )
    .map_err(fail)?;
    let installed = install(&out, &target.output);
    let _ = std::fs::remove_file(&out);
    installed
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
            p.components()
                .any(|c| c.as_os_str() == "target" || c.as_os_str() == "__pycache__")
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
