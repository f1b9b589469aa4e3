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

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{LiveRegistry, Loader, Registry};

/// Quiet time after the last change before a reload.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Longest wait for quiet: under a stream of writes, a reload at least
/// this often.
pub const MAX_SETTLE: Duration = Duration::from_secs(2);
/// How often the directory's identity is checked, to follow a directory
/// replaced as a whole.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Loads the directory again and swaps the result in; one reload at a time.
pub struct Reloader {
    loader: Loader,
    live: LiveRegistry,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(loader: Loader, live: LiveRegistry) -> Self {
        Self {
            loader,
            live,
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the directory and serves the result; logs what changed and
    /// every problem. Returns the registry now served.
    pub async fn reload(&self, why: &str) -> Arc<Registry> {
        let _one = self.one_at_a_time.lock().await;
        let previous = self.live.load_full();
        let next = Arc::new(self.loader.load(&previous).await);
        log_changes(&previous, &next, why);
        self.live.store(next.clone());
        next
    }
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
    use notify::event::{AccessKind, AccessMode};
    let change = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    change && !event.paths.iter().all(|p| ignore.iter().any(|i| p == i))
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
