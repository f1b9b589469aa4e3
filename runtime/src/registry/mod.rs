//! The registry: every loaded workflow with its compiled plugins, and the
//! route table, as one immutable snapshot.
//!
//! A snapshot is built off the request path and swapped in whole (see
//! [`Shared`]); requests hold the `Arc<Workflow>` they started with, so an
//! execution finishes on the version it began on.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use sha2::{Digest, Sha256};

use crate::config::{self, Auth, Diagnostic, WorkflowSpec};
use crate::engine::{Engine, Plugin};

/// The live snapshot, replaced atomically on reload.
pub type Shared = Arc<ArcSwap<Registry>>;

/// A workflow ready to run.
pub struct Workflow {
    pub spec: WorkflowSpec,
    /// One compiled plugin per step, in step order.
    pub plugins: Vec<Arc<Plugin>>,
    /// Bounds the workflow's executions running at once
    /// (`limits.concurrency`).
    pub slots: Arc<Semaphore>,
    /// `limits.rate`, shared by every connection.
    pub rate: Option<RateLimiter>,
}

/// A workflow's request rate limiter (GCRA): bursts up to the count, then
/// one more every `per / count`.
pub type RateLimiter = governor::DefaultDirectRateLimiter;

fn rate_limiter(rate: config::Rate) -> Option<RateLimiter> {
    let count = std::num::NonZeroU32::new(rate.count)?;
    let quota = governor::Quota::with_period(rate.per / rate.count)?.allow_burst(count);
    Some(governor::RateLimiter::direct(quota))
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
        let mut plugins = Vec::with_capacity(spec.steps.len());
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
                    problems.push(Diagnostic {
                        file: spec.file.clone(),
                        line: Some(step.line),
                        message: format!("step `{}`: plugin `{}`: {e}", step.id, step.plugin_name),
                    });
                    continue 'workflows;
                }
            }
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
        let workflow = Arc::new(Workflow {
            slots: Arc::new(Semaphore::new(spec.limits.concurrency)),
            rate: spec.limits.rate.and_then(rate_limiter),
            spec,
            plugins,
        });
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
