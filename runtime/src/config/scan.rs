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
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut paths: HashMap<String, PathBuf> = HashMap::new();
    specs.retain(|spec| {
        if let Some(first) = names.get(&spec.name) {
            problems.push(Diagnostic {
                file: spec.file.clone(),
                line: Some(spec.name_line),
                message: format!(
                    "workflow name `{}` is already used by {}",
                    spec.name,
                    first.display()
                ),
            });
            return false;
        }
        if let Some(first) = paths
            .get(&spec.trigger.path)
            .filter(|_| !spec.trigger.path.is_empty())
        {
            problems.push(Diagnostic {
                file: spec.file.clone(),
                line: Some(spec.path_line),
                message: format!(
                    "trigger path `{}` is already served by {}",
                    spec.trigger.path,
                    first.display()
                ),
            });
            return false;
        }
        names.insert(spec.name.clone(), spec.file.clone());
        paths.insert(spec.trigger.path.clone(), spec.file.clone());
        true
    });
    (specs, problems)
}

/// Reads and validates one manifest. `root` is the canonical watched
/// directory: no plugin may live outside it.
pub fn load_file(file: &Path, root: &Path) -> Result<WorkflowSpec, Vec<Diagnostic>> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| vec![Diagnostic::file(file, format!("cannot read: {e}"))])?;
    let raw: RawManifest =
        toml::from_str(&source).map_err(|e| vec![toml_error(file, &source, &e)])?;
    let mut checker = Checker {
        file,
        source: &source,
        root,
        dir: file.parent().unwrap_or(root),
        problems: Vec::new(),
    };
    let spec = checker.manifest(raw);
    if checker.problems.is_empty() {
        Ok(spec)
    } else {
        Err(checker.problems)
    }
}

/// A TOML syntax or shape error, at its line when it has one.
pub fn toml_error(file: &Path, source: &str, e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim_end().to_string();
    match e.span() {
        Some(span) => Diagnostic::at(file, source, span, message),
        None => Diagnostic::file(file, message),
    }
}

/// The plugin file a `source` crate builds to when the step names none:
/// `plugins/{package name}.wasm`, `-` written as `_` (as cargo names it).
pub fn plugin_for_source(crate_dir: &Path) -> Result<String, String> {
    package_name(crate_dir).map(|name| format!("plugins/{}.wasm", name.replace('-', "_")))
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
        manifest_with(trigger, auth, "")
    }

    /// The same, with `sections` (e.g. a `[limits]` table) before the step.
    fn manifest_with(trigger: &str, auth: &str, sections: &str) -> String {
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("auth = {auth}")
        };
        format!(
            "\n[trigger]\npath = \"a/b\"\n{trigger}\n{auth}\n\n{sections}[[steps]]\nplugin = \"plugins/echo.wasm\"\nconfig = {{ x = 1 }}\n"
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
        let errs = load(&manifest_with("", NONE, limits)).unwrap_err();
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

    #[test]
    fn duplicate_paths_across_files_name_both() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "plugins/echo.wasm", "x");
        write(dir.path(), "a.toml", &manifest("", NONE));
        write(dir.path(), "b.toml", &manifest("", NONE));
        let (specs, errs) = load_dir(dir.path());
        assert_eq!(specs.len(), 1);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .contains("b.toml:3: trigger path `a/b` is already served by"),
            "{}",
            errs[0]
        );
    }
}
