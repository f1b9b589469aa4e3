//! Hot reload: when files in the watched directory change, or on SIGHUP,
//! the directory is loaded again and the new registry (workflows, plugins
//! and route table at once) replaces the served one in one atomic store.
//!
//! Changes are gathered until the directory has been quiet for
//! [`SETTLE`] (an editor's write-then-rename, a slow copy), at most
//! [`MAX_SETTLE`], and then loaded as a whole: which file changed does not
//! matter, since unchanged plugins are not compiled again. A file caught
//! half-written fails to parse and leaves the previous version serving
//! until its last write settles and loads. Compiling happens on blocking
//! threads, never on the threads that answer requests.
//!
//! The watch follows the directory's path, not its inode: when the
//! directory is replaced (an atomic `mv` of a whole directory, a symlink
//! switched to a new release), the next check (every [`RECHECK`]) notices
//! and watches the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{LiveRegistry, Loader, Registry, Workflow};
use crate::store::{KeptVersion, Pin, Store, StoreError};

/// Quiet time after the last change before a reload.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Longest wait for quiet: under a stream of writes, a reload at least
/// this often.
pub const MAX_SETTLE: Duration = Duration::from_secs(2);
/// How often the directory's identity is checked, to follow a directory
/// replaced as a whole.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Loads the directory again and swaps the result in; one reload at a time.
/// Also keeps each version loaded (for rollback) and serves the versions
/// rollbacks pinned.
pub struct Reloader {
    loader: Loader,
    live: LiveRegistry,
    store: Store,
    /// The version this process last kept of each workflow.
    kept: std::sync::Mutex<HashMap<String, String>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// Why a rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("no workflow `{0}` is loaded")]
    Unknown(String),
    #[error("no earlier version of `{0}` is kept")]
    NoEarlier(String),
    #[error("the earlier version cannot serve: {0}")]
    Unusable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Reloader {
    pub fn new(loader: Loader, live: LiveRegistry, store: Store) -> Self {
        Self {
            loader,
            live,
            store,
            kept: std::sync::Mutex::default(),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the directory and serves the result (with the versions
    /// rollbacks pinned); logs what changed and every problem, and keeps
    /// the versions loaded for the first time. Returns the registry now
    /// served.
    pub async fn reload(&self, why: &str) -> Arc<Registry> {
        let _one = self.one_at_a_time.lock().await;
        let previous = self.live.load_full();
        let mut next = self.loader.load(&previous).await;
        self.serve_pins(&previous, &mut next).await;
        self.serve_switches(&mut next).await;
        let next = Arc::new(next);
        log_changes(&previous, &next, why);
        let result = if next.problems().is_empty() {
            "ok"
        } else {
            "problems"
        };
        metrics::counter!(crate::observe::RELOADS, "result" => result).increment(1);
        self.live.store(next.clone());
        self.keep_versions(&next).await;
        next
    }

    /// Serves the version before the one serving `name` (among those
    /// kept) until the workflow's files change; returns it.
    pub async fn rollback(&self, name: &str) -> Result<String, RollbackError> {
        {
            let _one = self.one_at_a_time.lock().await;
            let live = self.live.load_full();
            let current = live
                .get(name)
                .cloned()
                .ok_or_else(|| RollbackError::Unknown(name.into()))?;
            let history = self.store.history(name).await?;
            let target = match history.iter().position(|k| k.version == current.version) {
                Some(i) => history.get(i + 1),
                None => history.first(),
            }
            .ok_or_else(|| RollbackError::NoEarlier(name.into()))?
            .clone();
            let over = self
                .store
                .pins()
                .await?
                .into_iter()
                .find(|(n, _)| n == name)
                .map_or(current.version.clone(), |(_, pin)| pin.over);
            let kept = self
                .store
                .kept_version(&target.version)
                .await?
                .ok_or_else(|| RollbackError::NoEarlier(name.into()))?;
            self.loader
                .rebuild(&kept)
                .await
                .map_err(RollbackError::Unusable)?;
            let pin = Pin {
                version: target.version,
                over,
            };
            self.store.set_pin(name, Some(pin)).await?;
        }
        let now = self.reload("rollback").await;
        Ok(now.get(name).map(|w| w.version.clone()).unwrap_or_default())
    }

    /// Enables or disables `name` (the API's choice, kept in the store
    /// over the manifest's `enabled`, across restarts and reloads).
    /// `false` when no such workflow is loaded.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<bool, StoreError> {
        let _one = self.one_at_a_time.lock().await;
        let live = self.live.load_full();
        if live.get(name).is_none() {
            return Ok(false);
        }
        self.store.set_switch(name, enabled).await?;
        let mut next = (*live).clone();
        next.switch(name, enabled);
        self.live.store(Arc::new(next));
        tracing::info!(workflow = %name, enabled, "workflow switched through the API");
        Ok(true)
    }

    /// Serves the workflows the API enabled or disabled as it said.
    async fn serve_switches(&self, next: &mut Registry) {
        match self.store.switches().await {
            Ok(switches) => {
                for (name, enabled) in switches {
                    next.switch(&name, enabled);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read which workflows are switched"),
        }
    }

    /// Where a rollback's pin holds (the workflow's files still load as
    /// the version it was rolled back from), serves the pinned version;
    /// where the files changed since, lets the pin go.
    async fn serve_pins(&self, previous: &Registry, next: &mut Registry) {
        let pins = match self.store.pins().await {
            Ok(pins) => pins,
            Err(e) => {
                tracing::error!(error = %e, "cannot read rollback pins");
                return;
            }
        };
        for (name, pin) in pins {
            let from_files = next.get(&name).map(|w| w.version.clone());
            if from_files.as_deref() != Some(pin.over.as_str()) {
                tracing::info!(workflow = %name, "its files changed since the rollback: serving them");
                if let Err(e) = self.store.set_pin(&name, None).await {
                    tracing::error!(workflow = %name, error = %e, "cannot drop a rollback pin");
                }
                continue;
            }
            let reuse = previous
                .get(&name)
                .filter(|w| w.version == pin.version)
                .cloned();
            let pinned = match reuse {
                Some(w) => Ok(w),
                None => match self.store.kept_version(&pin.version).await {
                    Ok(Some(kept)) => self.loader.rebuild(&kept).await,
                    Ok(None) => Err("it is no longer kept".to_string()),
                    Err(e) => Err(e.to_string()),
                },
            };
            match pinned.and_then(|w| next.replace(w)) {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(workflow = %name, version = %pin.version, error = %e, "cannot serve the rolled-back version; serving the files")
                }
            }
        }
    }

    /// Keeps, for rollback, each version loaded from its files that is
    /// not the one this process last kept of that workflow (a version kept
    /// before moves to the front of the history). The files are read again
    /// and kept only when they still hash to what was loaded.
    async fn keep_versions(&self, registry: &Registry) {
        for f in registry.files() {
            let Some(w) = f
                .workflow
                .as_ref()
                .filter(|_| f.state == super::LoadState::Loaded && !f.rolled_back)
            else {
                continue;
            };
            let last = self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&w.spec.name)
                .cloned();
            if last.as_ref() == Some(&w.version) {
                continue;
            }
            let Some(kept) = read_version(w).await else {
                continue; // changed since: the next reload keeps it
            };
            match self.store.keep_version(kept).await {
                Ok(()) => {
                    self.kept
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(w.spec.name.clone(), w.version.clone());
                }
                Err(e) => {
                    tracing::warn!(workflow = %w.spec.name, error = %e, "cannot keep this version for rollback")
                }
            }
        }
    }
}

/// The files of `w` as they are now, if they still hash to it.
async fn read_version(w: &Workflow) -> Option<KeptVersion> {
    use sha2::{Digest, Sha256};
    let manifest = tokio::fs::read(&w.spec.file).await.ok()?;
    if hex::encode(Sha256::digest(&manifest)) != w.spec.manifest_digest {
        return None;
    }
    let mut plugins = Vec::with_capacity(w.plugins.len());
    for (step, plugin) in w.spec.steps.iter().zip(&w.plugins) {
        let bytes = tokio::fs::read(&step.plugin).await.ok()?;
        if hex::encode(Sha256::digest(&bytes)) != plugin.digest {
            return None;
        }
        plugins.push(bytes::Bytes::from(bytes));
    }
    Some(KeptVersion {
        name: w.spec.name.clone(),
        version: w.version.clone(),
        file: w.spec.file.display().to_string(),
        loaded_at_ms: w.loaded_at_ms,
        manifest: manifest.into(),
        plugins,
    })
}

fn log_changes(previous: &Registry, next: &Registry, why: &str) {
    let mut changed = 0;
    for w in next.workflows() {
        match previous.get(&w.spec.name) {
            Some(old) if old.version == w.version => {}
            Some(_) => {
                changed += 1;
                tracing::info!(workflow = %w.spec.name, version = %&w.version[..12], "workflow reloaded");
            }
            None => {
                changed += 1;
                tracing::info!(workflow = %w.spec.name, version = %&w.version[..12], "workflow added");
            }
        }
    }
    for w in previous.workflows() {
        if next.get(&w.spec.name).is_none() {
            changed += 1;
            tracing::info!(workflow = %w.spec.name, "workflow removed");
        }
    }
    let problems = next.problems();
    for p in &problems {
        tracing::error!("{p}");
    }
    tracing::info!(
        why,
        workflows = next.len(),
        changed,
        problems = problems.len(),
        "reloaded the workflow directory"
    );
}

/// How the directory is watched.
#[derive(Debug, Clone, Copy)]
pub enum Watch {
    /// Filesystem events (inotify and its kin).
    Events,
    /// Scanning every given interval, for filesystems that deliver no
    /// events (some network mounts). Each scan reads every file in the
    /// directory: modification times alone (whole seconds, as the poller
    /// keeps them) would miss a second write within the same second.
    Poll(Duration),
}

/// Watches `dir` and reloads through `reloader` as files change, until the
/// process ends. Files named in `ignore` (the database, if it lies inside)
/// do not count as changes.
pub fn spawn(
    reloader: Arc<Reloader>,
    dir: &Path,
    how: Watch,
    ignore: Vec<PathBuf>,
) -> Result<(), notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if counts(&event, &ignore) => {
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "watching the workflow directory"),
    };
    let watcher: Box<dyn Watcher + Send> = match how {
        Watch::Events => Box::new(notify::recommended_watcher(handler)?),
        // By content: the poller's modification times are whole seconds,
        // and two writes within one second must not look like one.
        Watch::Poll(every) => Box::new(notify::PollWatcher::new(
            handler,
            notify::Config::default()
                .with_poll_interval(every)
                .with_compare_contents(true),
        )?),
    };
    let mut watched = Watched {
        watcher,
        dir: dir.to_path_buf(),
        identity: None,
    };
    watched.rewatch();
    tokio::spawn(watched.run(reloader, rx));
    Ok(())
}

/// Whether an event is a change to something that is not ignored. Reads
/// (hookflow's own, during a reload) are not changes.
fn counts(event: &notify::Event, ignore: &[PathBuf]) -> bool {
    is_change(event) && !event.paths.iter().all(|p| ignore.iter().any(|i| p == i))
}

/// Whether an event changes a file: anything but a read (a file closed
/// after writing counts).
pub(crate) fn is_change(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

struct Watched {
    watcher: Box<dyn Watcher + Send>,
    dir: PathBuf,
    /// The directory being watched: its device and inode, once found.
    identity: Option<(u64, u64)>,
}

impl Watched {
    /// Watches the directory now at `dir`, if it is a new one; whether it
    /// was.
    fn rewatch(&mut self) -> bool {
        let now = identity(&self.dir);
        if now == self.identity {
            return false;
        }
        if self.identity.is_some() {
            let _ = self.watcher.unwatch(&self.dir);
        }
        self.identity = now;
        if now.is_some()
            && let Err(e) = self.watcher.watch(&self.dir, RecursiveMode::Recursive)
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the workflow directory");
            self.identity = None;
        }
        true
    }

    async fn run(mut self, reloader: Arc<Reloader>, mut rx: mpsc::UnboundedReceiver<()>) {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                got = rx.recv() => match got {
                    Some(()) => {
                        if !settle(&mut rx).await {
                            return;
                        }
                        "files changed"
                    }
                    None => return,
                },
                _ = recheck.tick() => {
                    if !self.rewatch() {
                        continue;
                    }
                    "the directory was replaced"
                }
            };
            reloader.reload(why).await;
        }
    }
}

/// Waits until no change came for [`SETTLE`], or [`MAX_SETTLE`] passed;
/// `false` when the watcher is gone.
pub(crate) async fn settle(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    let first = Instant::now();
    loop {
        match tokio::time::timeout(SETTLE, rx.recv()).await {
            Ok(Some(())) if first.elapsed() < MAX_SETTLE => {}
            Ok(Some(())) | Err(_) => return true,
            Ok(None) => return false,
        }
    }
}

/// The device and inode of the directory at `dir` (following symlinks).
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

/// Reloads on every SIGHUP, for operators whose filesystem delivers no
/// events (or who want a reload now).
pub fn reload_on_sighup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    reloader.reload("SIGHUP").await;
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
    }
}
