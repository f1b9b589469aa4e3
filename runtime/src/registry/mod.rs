//! The registry: every loaded workflow with its compiled plugins, and the
//! route table, as one immutable snapshot.
//!
//! Requests take the snapshot that is current when they arrive (see
//! [`LiveRegistry`]) and hold the `Arc<Workflow>` they started with, so an
//! execution runs on the version it began on. Runtime state that must
//! outlive a snapshot (rate limiters, concurrency slots) is kept by the
//! runner, keyed by workflow name, not here.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::config::{self, Auth, Diagnostic, StepSpec, WorkflowSpec};
use crate::engine::{Engine, Plugin};

/// The registry being served. Readers take the current snapshot with one
/// atomic load and no lock.
pub type LiveRegistry = Arc<ArcSwap<Registry>>;

/// A workflow ready to run: its spec and one compiled plugin per step.
pub struct Workflow {
    pub spec: WorkflowSpec,
    /// One compiled plugin per step, in step order.
    pub plugins: Vec<Arc<Plugin>>,
}

#[derive(Default)]
pub struct Registry {
    by_name: BTreeMap<String, Arc<Workflow>>,
    by_path: HashMap<String, Arc<Workflow>>,
    /// Path-token workflows by SHA-256 of each active token: the lookup
    /// takes the same time whatever the token, and no token is kept as a
    /// map key.
    by_token: HashMap<[u8; 32], Arc<Workflow>>,
}

fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
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
}

/// Loads every manifest in `dir` and compiles its plugins (each distinct
/// wasm file once). A workflow with any problem is left out and its
/// problems returned; the rest are loaded.
pub async fn load(dir: &Path, engine: &Arc<Engine>) -> (Registry, Vec<Diagnostic>) {
    let (specs, mut problems) = config::load_dir(dir);
    let mut compiled: HashMap<std::path::PathBuf, Arc<Plugin>> = HashMap::new();
    let mut registry = Registry::default();
    'workflows: for spec in specs {
        let mut plugins: Vec<Arc<Plugin>> = Vec::with_capacity(spec.steps.len());
        for step in &spec.steps {
            if let Some(plugin) = compiled.get(&step.plugin) {
                plugins.push(plugin.clone());
                continue;
            }
            let loaded = match tokio::fs::read(&step.plugin).await {
                Ok(wasm) => engine.load(wasm).await.map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot read: {e}")),
            };
            match loaded {
                Ok(plugin) => {
                    let plugin = Arc::new(plugin);
                    compiled.insert(step.plugin.clone(), plugin.clone());
                    plugins.push(plugin);
                }
                Err(e) => {
                    problems.push(step_problem(
                        &spec,
                        step,
                        format!("plugin `{}`: {e}", step.plugin_name),
                    ));
                    continue 'workflows;
                }
            }
        }
        let before = problems.len();
        for (step, plugin) in spec.steps.iter().zip(&plugins) {
            if let Err(e) = check_config(step, plugin) {
                problems.push(step_problem(&spec, step, e));
            }
        }
        if problems.len() > before {
            continue;
        }
        let tokens: Vec<[u8; 32]> = match &spec.trigger.auth {
            Auth::PathToken { secrets } => {
                secrets.iter().map(|s| token_digest(s.expose())).collect()
            }
            _ => Vec::new(),
        };
        if let Some(taken) = tokens.iter().find_map(|t| registry.by_token.get(t)) {
            problems.push(Diagnostic::file(
                &spec.file,
                format!(
                    "a path token is already used by workflow `{}`",
                    taken.spec.name
                ),
            ));
            continue;
        }
        let workflow = Arc::new(Workflow { spec, plugins });
        for t in tokens {
            registry.by_token.insert(t, workflow.clone());
        }
        if !workflow.spec.trigger.path.is_empty() {
            registry
                .by_path
                .insert(workflow.spec.trigger.path.clone(), workflow.clone());
        }
        registry
            .by_name
            .insert(workflow.spec.name.clone(), workflow);
    }
    (registry, problems)
}

fn step_problem(spec: &WorkflowSpec, step: &StepSpec, message: String) -> Diagnostic {
    Diagnostic {
        file: spec.file.clone(),
        line: Some(step.line),
        message: format!("step `{}`: {message}", step.id),
    }
}

/// Checks a step's `config` against the JSON Schema its plugin describes
/// (a plugin that describes none takes any config).
fn check_config(step: &StepSpec, plugin: &Plugin) -> Result<(), String> {
    let Some(text) = &plugin.config_schema else {
        return Ok(());
    };
    let plugin_name = &step.plugin_name;
    let schema: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!("plugin `{plugin_name}` describes a config schema that is not JSON: {e}")
    })?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| {
        format!("plugin `{plugin_name}` describes a config schema that is not a JSON Schema: {e}")
    })?;
    let errors: Vec<String> = validator
        .iter_errors(&step.config)
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
