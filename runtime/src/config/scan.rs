//! The watched directory: which files are manifests, reading each into a
//! [`WorkflowSpec`], and the checks that span files (names and paths are
//! unique). Also where a `source` crate's plugin file goes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::diagnostic::Diagnostic;
use super::raw::RawManifest;
use super::spec::WorkflowSpec;
use super::validate::Checker;

/// The manifests in `dir` (`*.toml`, not recursive), sorted by name.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let entries = std::fs::read_dir(dir).map_err(|e| Diagnostic::file(dir, e.to_string()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every manifest in `dir`. Returns the valid workflows and every
/// problem found; a file with problems yields no workflow.
pub fn load_dir(dir: &Path) -> (Vec<WorkflowSpec>, Vec<Diagnostic>) {
    let root = match dir.canonicalize() {
        Ok(root) if root.is_dir() => root,
        _ => {
            let msg = "not a directory: create it, or point --dir / HOOKFLOW_DIR at the workflows";
            return (Vec::new(), vec![Diagnostic::file(dir, msg)]);
        }
    };
    let files = match manifest_files(dir) {
        Ok(files) => files,
        Err(d) => return (Vec::new(), vec![d]),
    };
    let mut problems = Vec::new();
    let mut specs: Vec<WorkflowSpec> = Vec::new();
    for file in files {
        match load_file(&file, &root) {
            Ok(spec) => specs.push(spec),
            Err(mut found) => problems.append(&mut found),
        }
    }
    // A name or path claimed by two manifests: neither is loaded, since
    // which one the operator meant cannot be known.
    let mut names: HashMap<&str, Vec<&Path>> = HashMap::new();
    let mut paths: HashMap<&str, Vec<&Path>> = HashMap::new();
    for spec in &specs {
        names.entry(&spec.name).or_default().push(&spec.file);
        for hook in spec.hooks().filter(|t| !t.path.is_empty()) {
            paths.entry(&hook.path).or_default().push(&spec.file);
        }
    }
    let others = |claims: &HashMap<&str, Vec<&Path>>, key: &str, me: &Path| -> Vec<String> {
        claims.get(key).map_or_else(Vec::new, |files| {
            files
                .iter()
                .filter(|f| **f != me)
                .map(|f| f.display().to_string())
                .collect()
        })
    };
    let mut refused = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let by_name = others(&names, &spec.name, &spec.file);
        let (shared, by_path) = spec
            .hooks()
            .filter(|t| !t.path.is_empty())
            .map(|t| (t.path.as_str(), others(&paths, &t.path, &spec.file)))
            .find(|(_, by)| !by.is_empty())
            .unwrap_or_default();
        if !by_name.is_empty() {
            problems.push(Diagnostic {
                file: spec.file.clone(),
                line: Some(spec.name_line),
                message: format!(
                    "workflow name `{}` is also used by {}: neither is loaded",
                    spec.name,
                    by_name.join(", ")
                ),
            });
        }
        if !by_path.is_empty() {
            problems.push(Diagnostic {
                file: spec.file.clone(),
                line: Some(spec.path_line),
                message: format!(
                    "trigger path `{shared}` is also served by {}: neither is loaded",
                    by_path.join(", ")
                ),
            });
        }
        if !by_name.is_empty() || !by_path.is_empty() {
            refused.push(i);
        }
    }
    let specs = specs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !refused.contains(i))
        .map(|(_, spec)| spec)
        .collect();
    (specs, problems)
}

/// The largest manifest file read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Reads and validates one manifest. `root` is the canonical watched
/// directory: no plugin, schema or secret file may live outside it, nor
/// the manifest itself (through a symlink).
pub fn load_file(file: &Path, root: &Path) -> Result<WorkflowSpec, Vec<Diagnostic>> {
    let dir = file.parent().unwrap_or(root);
    let name = file.file_name().map(Path::new).unwrap_or(file);
    let source = read_confined(dir, root, name, MAX_MANIFEST_BYTES)
        .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string()))
        .map_err(|e| vec![Diagnostic::file(file, format!("the manifest {e}"))])?;
    parse_manifest(file, root, &source)
}

/// Validates `source` as the manifest at `file` (which need not hold it
/// now: a kept earlier version, say); the files it names are looked up in
/// the watched directory as it is.
pub fn parse_manifest(
    file: &Path,
    root: &Path,
    source: &str,
) -> Result<WorkflowSpec, Vec<Diagnostic>> {
    let dir = file.parent().unwrap_or(root);
    let source = source.to_string();
    let raw: RawManifest =
        toml::from_str(&source).map_err(|e| vec![toml_error(file, &source, &e)])?;
    let mut checker = Checker {
        file,
        source: &source,
        root,
        dir,
        problems: Vec::new(),
    };
    let spec = checker.manifest(raw);
    if checker.problems.is_empty() {
        Ok(spec)
    } else {
        Err(checker.problems)
    }
}

/// Why a file a manifest names cannot be used. Each completes a sentence
/// about the file: "... resolves outside the workflow directory".
#[derive(Debug)]
pub(super) enum Unfit {
    Missing,
    Outside,
    NotAFile,
    TooLarge { size: u64, max: u64 },
    Unreadable(std::io::Error),
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::Missing => f.write_str("is not found"),
            Unfit::Outside => f.write_str("resolves outside the workflow directory"),
            Unfit::NotAFile => f.write_str("is not a regular file"),
            Unfit::TooLarge { size, max } => write!(f, "is {size} bytes; the limit is {max}"),
            Unfit::Unreadable(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

/// The real path of `written` (relative to `dir`) when it resolves,
/// symlinks included, to a regular file inside `root` of at most `max`
/// bytes.
pub(super) fn confined_file(
    dir: &Path,
    root: &Path,
    written: &Path,
    max: u64,
) -> Result<PathBuf, Unfit> {
    let real = dir
        .join(written)
        .canonicalize()
        .map_err(|_| Unfit::Missing)?;
    if !real.starts_with(root) {
        return Err(Unfit::Outside);
    }
    let meta = std::fs::metadata(&real).map_err(Unfit::Unreadable)?;
    if !meta.is_file() {
        return Err(Unfit::NotAFile);
    }
    if meta.len() > max {
        return Err(Unfit::TooLarge {
            size: meta.len(),
            max,
        });
    }
    Ok(real)
}

/// Reads a [`confined_file`], at most `max` bytes whatever the file does
/// after the check.
pub(super) fn read_confined(
    dir: &Path,
    root: &Path,
    written: &Path,
    max: u64,
) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let real = confined_file(dir, root, written, max).map_err(|u| u.to_string())?;
    let mut bytes = Vec::new();
    std::fs::File::open(&real)
        .and_then(|f| f.take(max).read_to_end(&mut bytes))
        .map_err(|e| Unfit::Unreadable(e).to_string())?;
    Ok(bytes)
}

/// A TOML syntax or shape error, at its line when it has one.
pub fn toml_error(file: &Path, source: &str, e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim_end().to_string();
    match e.span() {
        Some(span) => Diagnostic::at(file, source, span, message),
        None => Diagnostic::file(file, message),
    }
}

/// The plugin file a `source` builds to when the step names none:
/// `plugins/{name}.wasm`, `-` written as `_` (as cargo names it), where
/// the name is the crate's package name, the `package.json` name (without
/// its scope) or else the folder's name.
pub fn plugin_for_source(dir: &Path) -> Result<String, String> {
    let folder = || {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{} has no folder name", dir.display()))
    };
    let name = match SourceKind::of(dir) {
        Some(SourceKind::Rust) => package_name(dir)?,
        Some(SourceKind::JavaScript) => match npm_package(dir)?.name {
            Some(name) => name.rsplit('/').next().unwrap_or(&name).to_string(),
            None => folder()?,
        },
        Some(SourceKind::Python) => match py_project(dir)?.project.name {
            Some(name) => name,
            None => folder()?,
        },
        _ => folder()?,
    };
    Ok(format!("plugins/{}.wasm", name.replace('-', "_")))
}

/// What a `source` folder holds, and so how it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A Rust crate (`Cargo.toml`): cargo, for `wasm32-wasip2`.
    Rust,
    /// A Python module (`app.py`, with a `pyproject.toml` when it has
    /// dependencies): componentize-py.
    Python,
    /// A JavaScript module (`package.json`, `app.js`, `index.js` or a
    /// single `*.js`): bundled, then componentize-js.
    JavaScript,
}

impl SourceKind {
    pub fn of(dir: &Path) -> Option<Self> {
        if dir.join("Cargo.toml").is_file() {
            Some(Self::Rust)
        } else if dir.join("app.py").is_file() || dir.join("pyproject.toml").is_file() {
            Some(Self::Python)
        } else if dir.join("package.json").is_file() || !js_files(dir).is_empty() {
            Some(Self::JavaScript)
        } else {
            None
        }
    }
}

/// The fields of a `pyproject.toml` that building reads.
#[derive(Debug, Default, Deserialize)]
pub struct PyProject {
    #[serde(default)]
    pub project: PyProjectTable,
}

#[derive(Debug, Default, Deserialize)]
pub struct PyProjectTable {
    pub name: Option<String>,
    /// Requirements, as pip reads them (`"six==1.16.0"`).
    #[serde(default)]
    pub dependencies: Vec<String>,
}

/// The `pyproject.toml` at `dir`, or an empty one when there is none.
pub fn py_project(dir: &Path) -> Result<PyProject, String> {
    let path = dir.join("pyproject.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| format!("{}: not a pyproject.toml: {}", path.display(), e.message())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PyProject::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The fields of a `package.json` that building reads.
#[derive(Debug, Default, Deserialize)]
pub struct NpmPackage {
    pub name: Option<String>,
    pub main: Option<String>,
    #[serde(default)]
    pub dependencies: serde_json::Map<String, serde_json::Value>,
}

/// The `package.json` at `dir`, or an empty one when there is none.
pub fn npm_package(dir: &Path) -> Result<NpmPackage, String> {
    let path = dir.join("package.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a package.json: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NpmPackage::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The module a JavaScript step starts from: `package.json`'s `main`,
/// else `app.js`, else `index.js`, else the folder's only `*.js`.
pub fn js_entry(dir: &Path) -> Result<PathBuf, String> {
    if let Some(main) = npm_package(dir)?.main {
        return Ok(dir.join(main));
    }
    for name in ["app.js", "index.js"] {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    match js_files(dir).as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("{} holds no JavaScript module", dir.display())),
        _ => Err(format!(
            "{} holds several *.js and none is app.js or index.js: name the entry as `main` in a package.json",
            dir.display()
        )),
    }
}

/// The `*.js` and `*.mjs` files directly in `dir`.
fn js_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "js" || x == "mjs"))
        .collect()
}

/// The `[package] name` of the crate at `dir`.
fn package_name(dir: &Path) -> Result<String, String> {
    #[derive(Deserialize)]
    struct CargoToml {
        package: Package,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str::<CargoToml>(&text)
        .map(|c| c.package.name)
        .map_err(|e| format!("{}: no [package] name: {}", path.display(), e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Method, Mode};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A one-step manifest: `trigger` lines go into `[trigger]` after the
    /// path, then `auth` (omitted when empty).
    fn manifest(trigger: &str, auth: &str) -> String {
        manifest_with("a/b", trigger, auth, "")
    }

    /// The same at `path`, with `sections` (e.g. a `[limits]` table) before
    /// the step.
    fn manifest_with(path: &str, trigger: &str, auth: &str, sections: &str) -> String {
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("auth = {auth}")
        };
        format!(
            "\n[trigger]\npath = \"{path}\"\n{trigger}\n{auth}\n\n{sections}[[steps]]\nplugin = \"plugins/echo.wasm\"\nconfig = {{ x = 1 }}\n"
        )
    }

    const NONE: &str = r#"{ kind = "none" }"#;

    fn load(text: &str) -> Result<WorkflowSpec, Vec<Diagnostic>> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "plugins/echo.wasm", "not really wasm");
        let file = write(dir.path(), "w.toml", text);
        let root = dir.path().canonicalize().unwrap();
        load_file(&file, &root)
    }

    #[test]
    fn a_minimal_manifest_gets_defaults() {
        let spec = load(&manifest("", NONE)).unwrap();
        assert_eq!(spec.name, "w");
        assert_eq!(spec.trigger.methods, vec![Method::Post]);
        assert_eq!(spec.trigger.mode, Mode::Async);
        assert_eq!(spec.trigger.max_body, 1 << 20);
        assert_eq!(spec.steps[0].id, "echo");
        assert_eq!(spec.steps[0].config["x"], 1);
        assert_eq!(spec.limits.memory, 64 << 20);
    }

    #[test]
    fn unknown_fields_are_reported_with_their_line() {
        let errs = load(&manifest("paht = 1", NONE)).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, Some(4), "{}", errs[0]);
        assert!(errs[0].message.contains("paht"), "{}", errs[0]);
    }

    #[test]
    fn every_validation_problem_is_reported() {
        let text = r#"
name = "Bad Name"
[trigger]
path = "/x"
sync_timeout = "soon"
auth = { kind = "bearer", secrets = ["env:HOOKFLOW_TEST_SURELY_UNSET"] }

[[steps]]
plugin = "../outside.wasm"
"#;
        let errs = load(text).unwrap_err();
        let lines: Vec<_> = errs.iter().map(|d| d.line).collect();
        assert_eq!(
            lines,
            vec![Some(2), Some(4), Some(5), Some(6), Some(9)],
            "{errs:?}"
        );
        assert!(errs[3].message.contains("HOOKFLOW_TEST_SURELY_UNSET"));
    }

    /// Finding 8 of the fault issue: a duration that would overflow a
    /// deadline is refused at load, with its line.
    #[test]
    fn durations_past_a_year_are_refused_at_load() {
        let limits = "[limits]\nexecution_timeout = \"300000000000y\"\n\n";
        let errs = load(&manifest_with("a/b", "", NONE, limits)).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, Some(8), "{}", errs[0]);
        assert!(errs[0].message.contains("366 days"), "{}", errs[0]);
    }

    #[test]
    fn missing_auth_is_an_error_not_open_access() {
        let errs = load(&manifest("", "")).unwrap_err();
        assert!(errs[0].message.contains("kind = \"none\""), "{errs:?}");
    }

    #[test]
    fn unknown_auth_kind_and_fields_are_refused() {
        let errs = load(&manifest("", r#"{ kind = "magic" }"#)).unwrap_err();
        assert!(errs[0].message.contains("magic"), "{errs:?}");
        let errs = load(&manifest("", r#"{ kind = "none", secrets = [] }"#)).unwrap_err();
        assert!(errs[0].message.contains("secrets"), "{errs:?}");
    }

    /// Finding 9 of the fault issue: two manifests claiming one path are
    /// both refused, each naming the other, rather than the first in
    /// sorted order silently winning.
    #[test]
    fn conflicting_manifests_are_both_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "plugins/echo.wasm", "x");
        write(dir.path(), "a.toml", &manifest("", NONE));
        write(dir.path(), "b.toml", &manifest("", NONE));
        write(dir.path(), "c.toml", &manifest_with("c", "", NONE, ""));
        let (specs, errs) = load_dir(dir.path());
        let loaded: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(loaded, ["c"], "{errs:?}");
        assert_eq!(errs.len(), 2, "{errs:?}");
        for (file, other) in [("a.toml", "b.toml"), ("b.toml", "a.toml")] {
            assert!(
                errs.iter().any(|e| e
                    .to_string()
                    .contains(&format!("{file}:3: trigger path `a/b` is also served by"))
                    && e.message.contains(other)),
                "{errs:?}"
            );
        }
    }

    /// Finding 9: manifests, secrets and schemas are read only from
    /// regular files inside the directory, and only so many bytes.
    #[test]
    fn files_outside_the_directory_or_not_regular_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        write(outer.path(), "outside.token", "s3cret-outside");
        let dir = outer.path().join("workflows");
        write(&dir, "plugins/echo.wasm", "x");
        let root = dir.canonicalize().unwrap();
        let read = |written: &str| read_confined(&root, &root, Path::new(written), 64);
        write(&dir, "ok", "fine");
        assert_eq!(read("ok").unwrap(), b"fine");
        assert!(
            read("../outside.token")
                .unwrap_err()
                .contains("outside the workflow directory")
        );
        assert!(read("/dev/zero").unwrap_err().contains("outside"));
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        assert!(read("zero").unwrap_err().contains("outside"));
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert!(read("sub").unwrap_err().contains("not a regular file"));
        write(&dir, "big", &"x".repeat(65));
        assert!(read("big").unwrap_err().contains("the limit is 64"));

        let secret = r#"{ kind = "bearer", secrets = ["file:../outside.token"] }"#;
        let file = write(&dir, "w.toml", &manifest("", secret));
        let errs = load_file(&file, &root).unwrap_err();
        assert!(errs[0].message.contains("resolves outside"), "{errs:?}");
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let errs = load_file(&file, &root).unwrap_err();
        assert!(errs[0].message.contains("not a regular file"), "{errs:?}");
    }

    #[test]
    fn a_source_folder_is_known_by_what_it_holds_and_names_its_plugin() {
        let root = tempfile::tempdir().unwrap();
        let folder = |name: &str, files: &[(&str, &str)]| {
            let dir = root.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in files {
                std::fs::write(dir.join(file), text).unwrap();
            }
            dir
        };
        let rust = folder("r", &[("Cargo.toml", "[package]\nname = \"my-step\"\n")]);
        assert_eq!(SourceKind::of(&rust), Some(SourceKind::Rust));
        assert_eq!(plugin_for_source(&rust).unwrap(), "plugins/my_step.wasm");

        let py = folder("py-step", &[("app.py", "")]);
        assert_eq!(SourceKind::of(&py), Some(SourceKind::Python));
        assert_eq!(plugin_for_source(&py).unwrap(), "plugins/py_step.wasm");
        let pyproject = folder(
            "pp",
            &[(
                "pyproject.toml",
                "[project]\nname = \"hook-py\"\ndependencies = [\"six==1.16.0\"]\n",
            )],
        );
        assert_eq!(SourceKind::of(&pyproject), Some(SourceKind::Python));
        assert_eq!(
            plugin_for_source(&pyproject).unwrap(),
            "plugins/hook_py.wasm"
        );
        assert_eq!(
            py_project(&pyproject).unwrap().project.dependencies,
            ["six==1.16.0"]
        );

        let npm = folder(
            "npm",
            &[(
                "package.json",
                r#"{"name": "@acme/js-step", "main": "src/main.js"}"#,
            )],
        );
        assert_eq!(SourceKind::of(&npm), Some(SourceKind::JavaScript));
        assert_eq!(plugin_for_source(&npm).unwrap(), "plugins/js_step.wasm");
        assert_eq!(js_entry(&npm).unwrap(), npm.join("src/main.js"));

        let app = folder("app-js", &[("app.js", ""), ("util.js", "")]);
        assert_eq!(js_entry(&app).unwrap(), app.join("app.js"));
        assert_eq!(plugin_for_source(&app).unwrap(), "plugins/app_js.wasm");
        let single = folder("single", &[("hook.mjs", "")]);
        assert_eq!(SourceKind::of(&single), Some(SourceKind::JavaScript));
        assert_eq!(js_entry(&single).unwrap(), single.join("hook.mjs"));

        let several = folder("several", &[("a.js", ""), ("b.js", "")]);
        assert_eq!(SourceKind::of(&several), Some(SourceKind::JavaScript));
        assert!(
            js_entry(&several)
                .unwrap_err()
                .contains("name the entry as `main`")
        );
        let broken = folder("broken", &[("package.json", "{not json")]);
        assert!(
            plugin_for_source(&broken)
                .unwrap_err()
                .contains("not a package.json")
        );
        assert_eq!(SourceKind::of(&folder("empty", &[])), None);
    }
}
