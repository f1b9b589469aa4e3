//! The server: wires store, engine, registry, runner and intake together,
//! serves HTTP through its own accept loop until shut down, then drains.
//! Only the binary imports this module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

use crate::api;
use crate::cli::Token;
use crate::config::{Auth, Diagnostic, Secret};
use crate::engine::{Engine, EngineError, EnginePolicy};
use crate::execution::now_ms;
use crate::http::{HttpError, ReadTokens, Sessions};
use crate::intake::Intake;
use crate::registry::watch::{self, Reloader, Watch};
use crate::registry::{Loader, Registry};
use crate::runner::{self, Runner};
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// What `hookflow serve` runs with. Its tokens print as `<redacted>`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub db: PathBuf,
    /// Page cache of the database, in bytes.
    pub db_cache: usize,
    pub admin_token: Option<Token>,
    pub engine: EnginePolicy,
    /// Webhook requests handled at once; more get 503.
    pub max_in_flight: usize,
    /// Executions started and not finished; more webhooks get 503.
    pub max_queued: u64,
    /// The same, counted in bytes of event bodies.
    pub max_queued_bytes: u64,
    /// Bytes of request bodies being received at once.
    pub max_receiving: u64,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
    /// Bearer tokens for `POST /api/v1/run` (the admin token works too).
    pub api_tokens: Vec<Token>,
    /// Times an unfinished execution is resumed at start before it is
    /// failed instead.
    pub max_resumes: u32,
    /// How long finished executions are kept.
    pub retention: Duration,
    /// How `dir` is watched for changes to reload; `None`: not watched
    /// (SIGHUP still reloads).
    pub watch: Option<Watch>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// The whole HTTP surface; tests may call it without a socket. Built from
/// the handlers' OpenAPI annotations (`api::openapi::routes`), so
/// `/api/v1/openapi.json` lists exactly what it serves.
pub fn router(state: Arc<AppState>) -> Router {
    let (routes, api) = api::openapi::routes().split_for_parts();
    api::openapi::keep(api);
    routes
        .merge(crate::ui::routes())
        .fallback(|| async { HttpError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn(crate::observe::requests))
        .with_state(state)
}

/// A server that has loaded everything and is ready to accept.
pub struct Server {
    state: Arc<AppState>,
    runner: Runner,
    /// Problems that left workflows out.
    pub problems: Vec<Diagnostic>,
    _engine: Arc<Engine>,
}

impl Server {
    /// Opens the store, starts the engine, loads the workflows and resumes
    /// unfinished executions.
    pub async fn start(settings: &Settings) -> Result<Self, ServeError> {
        let metrics = metrics_handle();
        let store = Store::open_with_cache(&settings.db, settings.db_cache)?;
        let engine = Engine::new(settings.engine.clone())?;
        engine.set_kv_backend(Arc::new(store.clone()));
        let live = Arc::new(ArcSwap::from_pointee(Registry::default()));
        let reloader = Arc::new(Reloader::new(
            Loader::new(&settings.dir, engine.clone()),
            live.clone(),
            store.clone(),
        ));
        // Watched before the first load, so that a change made while it
        // loads is not missed.
        if let Some(how) = settings.watch {
            let ignore = vec![settings.db.clone(), std::path::absolute(&settings.db)?];
            if let Err(e) = watch::spawn(reloader.clone(), &settings.dir, how, ignore) {
                tracing::warn!(error = %e, "cannot watch the workflow directory; SIGHUP reloads it");
            }
        }
        watch::reload_on_sighup(reloader.clone());
        let registry = reloader.reload("start").await;
        let problems = registry.problems();
        let runner = Runner::new(engine.clone(), store.clone());
        // Intake does not wait for a backlog: what was unfinished resumes
        // in the background while new events are taken.
        runner.resume_unfinished_later(registry.clone(), settings.max_resumes);
        tokio::spawn(prune_old_executions(store.clone(), settings.retention));
        let admin_token = settings
            .admin_token
            .as_ref()
            .map(|t| Secret::new(t.expose()));
        let run_tokens = settings
            .api_tokens
            .iter()
            .chain(&settings.admin_token)
            .map(Token::expose)
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .collect();
        let tokens = ReadTokens::new(*store.read_token_key());
        let sessions = Sessions::load(store.clone(), admin_token.as_ref()).await?;
        let triggers = Arc::new(crate::triggers::Triggers::new(store.triggers().await?));
        let progress = runner.progress().clone();
        let state = Arc::new(AppState {
            tokens,
            sessions,
            progress,
            triggers,
            registry: live,
            reloader,
            store: store.clone(),
            intake: Intake::new(
                store,
                runner.clone(),
                settings.max_queued,
                settings.max_queued_bytes,
            ),
            admin_token,
            run_tokens,
            in_flight: tokio::sync::Semaphore::new(settings.max_in_flight),
            max_in_flight: settings.max_in_flight,
            receiving: Arc::new(tokio::sync::Semaphore::new(
                runner::kib(settings.max_receiving) as usize,
            )),
            max_receiving_kib: runner::kib(settings.max_receiving) as usize,
            draining: AtomicBool::new(false),
            body_timeout: settings.body_timeout,
            metrics,
        });
        Ok(Self {
            state,
            runner,
            problems,
            _engine: engine,
        })
    }

    /// The registry being served.
    pub fn registry(&self) -> Arc<Registry> {
        self.state.registry.load_full()
    }

    /// Accepts connections until `shutdown` resolves. Then drains: new
    /// requests are answered `503` (with `Retry-After`) while those in
    /// flight finish, for up to `drain`; then running executions get what
    /// is left of `drain`, and the rest resume on the next start.
    ///
    /// A connection must send its first byte and then its whole request
    /// head within `header_timeout`, so neither a silent client nor one
    /// trickling its headers holds a connection open (bodies have
    /// `Settings::body_timeout`, enforced by ingress). At most
    /// `max_connections` are open at once; past that, new ones wait in
    /// the listen backlog until one closes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        options: ServeOptions,
    ) -> Result<(), ServeError> {
        let ServeOptions {
            drain,
            header_timeout,
            max_connections,
        } = options;
        let state = self.state.clone();
        crate::cron::spawn(state.clone());
        let connections = Connections {
            router: router(self.state),
            graceful: GracefulShutdown::new(),
            header_timeout,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
        };
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                (accepted, slot) = connections.next(&listener) => connections.serve(accepted, slot).await,
                () = &mut shutdown => break,
            }
        }
        state.draining.store(true, Ordering::Relaxed);
        // Event streams end now: their clients reconnect with
        // `Last-Event-ID` and lose nothing.
        state.progress.close();
        let deadline = tokio::time::Instant::now() + drain;
        let mut check = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                (accepted, slot) = connections.next(&listener) => connections.serve(accepted, slot).await,
                _ = check.tick() => if state.idle() { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        drop(listener);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, connections.graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open at shutdown were closed");
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !self.runner.drain(left).await {
            tracing::warn!("executions still running at shutdown will resume on the next start");
        }
        // The last progress of the runs that ended is made durable.
        if let Err(e) = state.store.flush().await {
            tracing::warn!(error = %e, "the store could not make the last progress durable");
        }
        Ok(())
    }
}

/// How `Server::serve` treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// On shutdown: time for requests in flight, then running executions.
    pub drain: Duration,
    /// Time from connecting to the end of a request head.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// Serves accepted connections, each in a task of its own.
struct Connections {
    router: Router,
    graceful: GracefulShutdown,
    header_timeout: Duration,
    /// One per open connection.
    slots: Arc<Semaphore>,
}

type Accepted = std::io::Result<(tokio::net::TcpStream, SocketAddr)>;

impl Connections {
    /// Waits for a free slot, then for a connection to take it. Cancel
    /// safe: dropped while waiting, it takes nothing.
    async fn next(&self, listener: &TcpListener) -> (Accepted, OwnedSemaphorePermit) {
        // Invariant: the semaphore is never closed.
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        (listener.accept().await, slot)
    }

    async fn serve(&self, accepted: Accepted, slot: OwnedSemaphorePermit) {
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors, most likely: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let watcher = self.graceful.watcher();
        let header_timeout = self.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return, // silent or gone
            }
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(conn).await;
        });
    }
}

/// The lines printed at start: each live webhook URL.
pub fn describe_routes(registry: &Registry, base: &str) -> Vec<String> {
    registry
        .workflows()
        .flat_map(|w| {
            let state = if w.spec.enabled { "" } else { ", disabled" };
            let hooks: Vec<String> = w
                .spec
                .hooks()
                .map(|t| {
                    let methods: Vec<_> = t.methods.iter().map(|m| m.as_str()).collect();
                    let mode = t.mode.as_str();
                    // A path token is a secret: never printed.
                    let path = match t.auth {
                        Auth::PathToken { .. } => "t/<token>",
                        _ => t.path.as_str(),
                    };
                    format!(
                        "  {} {base}/hooks/{path} -> {} ({mode}{state})",
                        methods.join("|"),
                        w.spec.name
                    )
                })
                .collect();
            let crons = w.spec.crons.iter().map(move |c| {
                format!(
                    "  cron \"{}\" ({}) -> {}{state}",
                    c.pattern, c.timezone, w.spec.name
                )
            });
            hooks.into_iter().chain(crons)
        })
        .collect()
}

/// How often old executions are looked for, and how many go per
/// transaction (so the writer is never held long).
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PRUNE_BATCH: usize = 256;

/// Deletes finished executions older than `retention`, now and every
/// [`PRUNE_EVERY`], a batch at a time.
async fn prune_old_executions(store: Store, retention: Duration) {
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        every.tick().await;
        let before = now_ms().saturating_sub(retention_ms);
        let mut pruned = 0;
        loop {
            match store.prune_before(before, PRUNE_BATCH).await {
                Ok(n) => {
                    pruned += n;
                    if n < PRUNE_BATCH {
                        break;
                    }
                    // Let waiting webhooks' commits go first.
                    tokio::task::yield_now().await;
                }
                Err(StoreError::Closed) => return,
                // Logged by the store; tried again next round.
                Err(_) => break,
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, "deleted executions past the retention");
        }
    }
}

/// The Prometheus recorder behind `/metrics`, installed once per process.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            // Durations are histograms with these buckets (not summaries),
            // so they aggregate across servers.
            let builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &crate::observe::BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histogram samples are kept until upkeep drains them into
            // their buckets: without it, a server nobody scrapes would
            // hold one sample per request and per step, without bound.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("hookflow-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            runner::describe_metrics();
            crate::observe::describe();
            metrics::describe_gauge!(
                crate::store::DATABASE_BYTES,
                metrics::Unit::Bytes,
                "The database file's size."
            );
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 9 of the fault issue: tokens never reach `Debug` output.
    #[test]
    fn settings_do_not_print_tokens() {
        let settings = Settings {
            dir: "w".into(),
            db: "d".into(),
            db_cache: 1,
            admin_token: Some("admin-s3cret".into()),
            engine: EnginePolicy::default(),
            max_in_flight: 1,
            max_queued: 1,
            max_queued_bytes: 1,
            max_receiving: 1,
            body_timeout: Duration::from_secs(1),
            api_tokens: vec!["api-s3cret".into()],
            max_resumes: 3,
            retention: Duration::from_secs(1),
            watch: None,
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
