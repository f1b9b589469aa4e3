//! The registry: every loaded workflow with its compiled plugins, and the
//! route table, as one immutable snapshot; and the loader that builds a
//! new snapshot from the watched directory (see [`watch`] for when).
//!
//! Requests take the snapshot that is current when they arrive (see
//! [`LiveRegistry`]) and hold the `Arc<Workflow>` they started with, so an
//! execution runs on the version it began on. Runtime state that must
//! outlive a snapshot (rate limiters, concurrency slots) is kept by the
//! runner, keyed by workflow name, not here.
//!
//! A load never makes things worse: a manifest that no longer validates,
//! or names a plugin that does not load, leaves the previous version of
//! its workflow serving (state `stale`), with the problems reported.

pub mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::config::{self, Auth, Diagnostic, StepSpec, WorkflowSpec};
use crate::engine::{Engine, Plugin};
use crate::execution::now_ms;

/// The registry being served. Readers take the current snapshot with one
/// atomic load and no lock.
pub type LiveRegistry = Arc<ArcSwap<Registry>>;

/// A workflow ready to run: its spec and one compiled plugin per step.
pub struct Workflow {
    pub spec: WorkflowSpec,
    /// One compiled plugin per step, in step order.
    pub plugins: Vec<Arc<Plugin>>,
    /// This version's content address: SHA-256 over the manifest's text
    /// and each step's plugin digest, hex.
    pub version: String,
    /// When this version was loaded, in ms since the epoch.
    pub loaded_at_ms: u64,
}

impl Workflow {
    pub fn new(spec: WorkflowSpec, plugins: Vec<Arc<Plugin>>) -> Self {
        let mut hash = Sha256::new();
        hash.update(spec.manifest_digest.as_bytes());
        for p in &plugins {
            hash.update(b"\0");
            hash.update(p.digest.as_bytes());
        }
        Self {
            spec,
            plugins,
            version: hex::encode(hash.finalize()),
            loaded_at_ms: now_ms(),
        }
    }
}

/// How the last load went for one manifest file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadState {
    /// The file's current content serves.
    Loaded,
    /// The file's current content has problems; the version loaded from
    /// it before keeps serving.
    Stale,
    /// The file has problems and no earlier version of it serves.
    Failed,
}

/// One manifest file in the last load: its state, the workflow serving
/// from it (if any), and its problems.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub file: PathBuf,
    pub state: LoadState,
    pub workflow: Option<Arc<Workflow>>,
    pub problems: Vec<Diagnostic>,
    /// The workflow serves an earlier version than its files hold (a
    /// rollback), until they change.
    pub rolled_back: bool,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("name", &self.spec.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Default, Clone)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<Workflow>>,
    by_path: HashMap<String, Arc<Workflow>>,
    /// Path-token workflows by SHA-256 of each active token: the lookup
    /// takes the same time whatever the token, and no token is kept as a
    /// map key.
    by_token: HashMap<[u8; 32], Arc<Workflow>>,
    /// One entry per manifest file the load looked at, by file.
    files: Vec<FileReport>,
    /// Problems not tied to one manifest (the directory itself).
    general: Vec<Diagnostic>,
    /// When this snapshot was made, in ms since the epoch.
    pub loaded_at_ms: u64,
}

fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn tokens(spec: &WorkflowSpec) -> Vec<[u8; 32]> {
    spec.hooks()
        .flat_map(|t| match &t.auth {
            Auth::PathToken { secrets } => {
                secrets.iter().map(|s| token_digest(s.expose())).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

/// The paths of a workflow's webhook triggers (path tokens aside).
fn paths(spec: &WorkflowSpec) -> impl Iterator<Item = &String> {
    spec.hooks().map(|t| &t.path).filter(|p| !p.is_empty())
}

impl Registry {
    /// The workflow served at `/hooks/{path}`.
    pub fn route(&self, path: &str) -> Option<&Arc<Workflow>> {
        self.by_path.get(path)
    }

    /// The workflow served at `/hooks/t/{token}`.
    pub fn route_token(&self, token: &str) -> Option<&Arc<Workflow>> {
        self.by_token.get(&token_digest(token.as_bytes()))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Workflow>> {
        self.by_name.get(name)
    }

    /// Every workflow, by name.
    pub fn workflows(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Each manifest file of the last load, by file name.
    pub fn files(&self) -> &[FileReport] {
        &self.files
    }

    /// Every problem of the last load, those that left an older version
    /// serving included.
    pub fn problems(&self) -> Vec<Diagnostic> {
        self.general
            .iter()
            .chain(self.files.iter().flat_map(|f| &f.problems))
            .cloned()
            .collect()
    }

    /// Serves `workflow` in place of the workflow of the same name (a
    /// rollback), marking its file's report; when its path or a token is
    /// taken by another workflow, the one serving stays and says why.
    pub fn replace(&mut self, workflow: Arc<Workflow>) -> Result<(), String> {
        self.swap(workflow, true)
    }

    /// Serves `name` enabled or disabled, whatever its manifest says (the
    /// API's choice). `false` when it is not loaded.
    pub fn switch(&mut self, name: &str, enabled: bool) -> bool {
        let Some(current) = self.by_name.get(name) else {
            return false;
        };
        if current.spec.enabled != enabled {
            let mut spec = current.spec.clone();
            spec.enabled = enabled;
            let switched = Workflow {
                spec,
                plugins: current.plugins.clone(),
                version: current.version.clone(),
                loaded_at_ms: current.loaded_at_ms,
            };
            // Same name, path and tokens: swapping cannot collide.
            let rolled_back = self
                .files
                .iter()
                .any(|f| f.rolled_back && f.workflow.as_ref().is_some_and(|w| w.spec.name == name));
            let _ = self.swap(Arc::new(switched), rolled_back);
        }
        true
    }

    /// Puts `workflow` in the place of the loaded one of its name.
    fn swap(&mut self, workflow: Arc<Workflow>, rolled_back: bool) -> Result<(), String> {
        let name = workflow.spec.name.clone();
        let Some(old) = self.by_name.remove(&name) else {
            return Err(format!("workflow `{name}` is not loaded"));
        };
        self.unroute(&old);
        if let Err(taken) = self.add(workflow.clone()) {
            self.add(old).map_err(|_| taken.clone())?;
            return Err(taken);
        }
        for f in &mut self.files {
            if f.workflow.as_ref().is_some_and(|w| w.spec.name == name) {
                f.workflow = Some(workflow.clone());
                f.rolled_back = rolled_back;
            }
        }
        Ok(())
    }

    /// Takes `workflow`'s path and tokens out of the route table.
    fn unroute(&mut self, workflow: &Workflow) {
        let spec = &workflow.spec;
        for path in paths(spec) {
            if self
                .by_path
                .get(path)
                .is_some_and(|w| w.spec.name == spec.name)
            {
                self.by_path.remove(path);
            }
        }
        for t in tokens(spec) {
            self.by_token.remove(&t);
        }
    }

    /// Serves `workflow`, unless its name, path or a path token is taken
    /// already: then says by whom.
    fn add(&mut self, workflow: Arc<Workflow>) -> Result<(), String> {
        let spec = &workflow.spec;
        let tokens = tokens(spec);
        let taken =
            self.by_name
                .get(&spec.name)
                .map(|w| {
                    format!(
                        "the name `{}` is used by {}",
                        spec.name,
                        w.spec.file.display()
                    )
                })
                .or_else(|| {
                    paths(spec).find_map(|path| {
                        self.by_path.get(path).map(|w| {
                            format!("the path `{path}` is used by {}", w.spec.file.display())
                        })
                    })
                })
                .or_else(|| {
                    tokens.iter().find_map(|t| self.by_token.get(t)).map(|w| {
                        format!("a path token is already used by workflow `{}`", w.spec.name)
                    })
                });
        if let Some(taken) = taken {
            return Err(taken);
        }
        for t in tokens {
            self.by_token.insert(t, workflow.clone());
        }
        for path in paths(spec) {
            self.by_path.insert(path.clone(), workflow.clone());
        }
        self.by_name.insert(spec.name.clone(), workflow);
        Ok(())
    }
}

/// Builds registries from the watched directory, compiling each distinct
/// plugin once: a plugin whose bytes did not change since an earlier load
/// is not compiled again.
pub struct Loader {
    dir: PathBuf,
    engine: Arc<Engine>,
    /// Compiled plugins by the SHA-256 of their bytes, those of the last
    /// load.
    compiled: tokio::sync::Mutex<HashMap<String, Arc<Plugin>>>,
}

impl Loader {
    pub fn new(dir: &Path, engine: Arc<Engine>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            engine,
            compiled: tokio::sync::Mutex::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every manifest in the directory and compiles its plugins.
    /// Where a file has problems, the workflow `previous` served from it
    /// keeps serving; a file that is gone takes its workflow with it. When
    /// the directory itself cannot be read, `previous` serves on whole.
    pub async fn load(&self, previous: &Registry) -> Registry {
        let mut compiled = self.compiled.lock().await;
        let dir = self.dir.clone();
        let (specs, problems) = tokio::task::spawn_blocking(move || config::load_dir(&dir))
            .await
            .unwrap_or_else(|e| {
                let problem = Diagnostic::file(&self.dir, format!("reading it failed: {e}"));
                (Vec::new(), vec![problem])
            });
        let mut by_file: BTreeMap<PathBuf, Vec<Diagnostic>> = BTreeMap::new();
        let mut general = Vec::new();
        let manifests: HashSet<PathBuf> = config::manifest_files(&self.dir)
            .map(|files| files.into_iter().collect())
            .unwrap_or_default();
        for p in problems {
            if manifests.contains(&p.file) {
                by_file.entry(p.file.clone()).or_default().push(p);
            } else {
                general.push(p);
            }
        }
        if manifests.is_empty() && !general.is_empty() {
            // The directory is gone or unreadable (being replaced, say):
            // nothing changes until it is back.
            return Registry {
                by_name: previous.by_name.clone(),
                by_path: previous.by_path.clone(),
                by_token: previous.by_token.clone(),
                files: previous.files.clone(),
                general,
                loaded_at_ms: now_ms(),
            };
        }

        let mut fresh: Vec<Arc<Workflow>> = Vec::new();
        let mut in_use: HashMap<String, Arc<Plugin>> = HashMap::new();
        for spec in specs {
            match self.compile(&spec, &mut compiled, &mut in_use).await {
                Ok(plugins) => fresh.push(Arc::new(Workflow::new(spec, plugins))),
                Err(found) => by_file.entry(spec.file.clone()).or_default().extend(found),
            }
        }
        *compiled = in_use;
        drop(compiled);

        let mut registry = Registry {
            general,
            loaded_at_ms: now_ms(),
            ..Registry::default()
        };
        for workflow in fresh {
            let file = workflow.spec.file.clone();
            match registry.add(workflow.clone()) {
                Ok(()) => registry.files.push(FileReport {
                    file,
                    state: LoadState::Loaded,
                    workflow: Some(workflow),
                    problems: Vec::new(),
                    rolled_back: false,
                }),
                Err(taken) => by_file
                    .entry(file.clone())
                    .or_default()
                    .push(Diagnostic::file(&file, taken)),
            }
        }
        // Files with problems: the version loaded from them before keeps
        // serving, if nothing new took its name, path or tokens.
        for (file, mut problems) in by_file {
            let old = previous
                .files
                .iter()
                .find(|f| f.file == file)
                .and_then(|f| f.workflow.clone());
            let (state, workflow) = match old {
                Some(old) => match registry.add(old.clone()) {
                    Ok(()) => (LoadState::Stale, Some(old)),
                    Err(taken) => {
                        problems.push(Diagnostic::file(
                            &file,
                            format!("its previous version cannot keep serving: {taken}"),
                        ));
                        (LoadState::Failed, None)
                    }
                },
                None => (LoadState::Failed, None),
            };
            registry.files.push(FileReport {
                file,
                state,
                workflow,
                problems,
                rolled_back: false,
            });
        }
        registry.files.sort_by(|a, b| a.file.cmp(&b.file));
        registry
    }

    /// The compiled plugins of `spec`'s steps, compiling those not in
    /// `compiled` (or already in `in_use`), and checks each step's config
    /// against its plugin's schema.
    async fn compile(
        &self,
        spec: &WorkflowSpec,
        compiled: &mut HashMap<String, Arc<Plugin>>,
        in_use: &mut HashMap<String, Arc<Plugin>>,
    ) -> Result<Vec<Arc<Plugin>>, Vec<Diagnostic>> {
        let mut plugins: Vec<Arc<Plugin>> = Vec::with_capacity(spec.steps.len());
        for step in &spec.steps {
            let problem = |e: String| {
                vec![step_problem(
                    spec,
                    step,
                    format!("plugin `{}`: {e}", step.plugin_name),
                )]
            };
            let wasm = tokio::fs::read(&step.plugin)
                .await
                .map_err(|e| problem(format!("cannot read: {e}")))?;
            let digest = hex::encode(Sha256::digest(&wasm));
            let known = in_use
                .get(&digest)
                .or_else(|| compiled.get(&digest))
                .cloned();
            let plugin = match known {
                Some(plugin) => plugin,
                None => Arc::new(
                    self.engine
                        .load(wasm)
                        .await
                        .map_err(|e| problem(e.to_string()))?,
                ),
            };
            in_use.insert(digest, plugin.clone());
            plugins.push(plugin);
        }
        let problems = config_problems(spec, &plugins);
        if problems.is_empty() {
            Ok(plugins)
        } else {
            Err(problems)
        }
    }
}

impl Loader {
    /// Serves a kept version again: its manifest text validated as the file
    /// it came from (the files it names looked up as DIR is now), its
    /// plugins from their kept bytes (the compiled-code cache usually has
    /// them).
    pub async fn rebuild(&self, kept: &crate::store::KeptVersion) -> Result<Arc<Workflow>, String> {
        let root = self
            .dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let text = std::str::from_utf8(&kept.manifest).map_err(|e| e.to_string())?;
        let file = PathBuf::from(&kept.file);
        let spec = config::parse_manifest(&file, &root, text)
            .map_err(|problems| config::joined(&problems, "; "))?;
        let mut plugins = Vec::with_capacity(kept.plugins.len());
        for bytes in &kept.plugins {
            let plugin = self
                .engine
                .load(bytes.to_vec())
                .await
                .map_err(|e| e.to_string())?;
            plugins.push(Arc::new(plugin));
        }
        if plugins.len() != spec.steps.len() {
            return Err("the kept plugins do not match its steps".into());
        }
        let problems = config_problems(&spec, &plugins);
        if !problems.is_empty() {
            return Err(config::joined(&problems, "; "));
        }
        let workflow = Workflow::new(spec, plugins);
        if workflow.version != kept.version {
            return Err(format!(
                "it no longer builds to version {} (got {})",
                kept.version, workflow.version
            ));
        }
        Ok(Arc::new(workflow))
    }
}

/// Loads every manifest in `dir` once (as `hookflow check` and a start
/// do): the workflows that load, and every problem.
pub async fn load(dir: &Path, engine: &Arc<Engine>) -> (Registry, Vec<Diagnostic>) {
    let registry = Loader::new(dir, engine.clone())
        .load(&Registry::default())
        .await;
    let problems = registry.problems();
    (registry, problems)
}

fn step_problem(spec: &WorkflowSpec, step: &StepSpec, message: String) -> Diagnostic {
    Diagnostic {
        file: spec.file.clone(),
        line: Some(step.line),
        message: format!("step `{}`: {message}", step.id),
    }
}

/// Each step whose `config` does not fit its plugin's schema, as a problem.
fn config_problems(spec: &WorkflowSpec, plugins: &[Arc<Plugin>]) -> Vec<Diagnostic> {
    spec.steps
        .iter()
        .zip(plugins)
        .filter_map(|(step, plugin)| {
            check_config(step, plugin)
                .err()
                .map(|e| step_problem(spec, step, e))
        })
        .collect()
}

/// Checks a step's `config` against the JSON Schema its plugin describes
/// (a plugin that describes none takes any config).
fn check_config(step: &StepSpec, plugin: &Plugin) -> Result<(), String> {
    match &plugin.config_schema {
        Some(schema) => config_fits(&step.plugin_name, schema, &step.config),
        None => Ok(()),
    }
}

/// Checks `config` against a plugin's config schema (JSON Schema text).
pub fn config_fits(
    plugin_name: &str,
    text: &str,
    config: &serde_json::Value,
) -> Result<(), String> {
    let schema: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!("plugin `{plugin_name}` describes a config schema that is not JSON: {e}")
    })?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| {
        format!("plugin `{plugin_name}` describes a config schema that is not a JSON Schema: {e}")
    })?;
    let errors: Vec<String> = validator
        .iter_errors(config)
        .take(10)
        .map(|e| match e.instance_path().to_string() {
            path if path.is_empty() => e.to_string(),
            path => format!("{path}: {e}"),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`config` does not fit what plugin `{plugin_name}` accepts: {}",
            errors.join("; ")
        ))
    }
}
