//! The server: wires store, engine, registry and runner together, serves
//! HTTP until shut down, then drains.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{any, get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::api;
use crate::config::{Auth, Diagnostic, Mode, Secret};
use crate::engine::{Engine, EngineError, EnginePolicy};
use crate::ingress::{self, HttpError};
use crate::registry::{self, Registry, Shared};
use crate::runner::Runner;
use crate::store::{Store, StoreError};

/// What `hookflow serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub db: PathBuf,
    pub admin_token: Option<String>,
    pub engine: EnginePolicy,
    /// Webhook requests handled at once; more get 503.
    pub max_in_flight: usize,
    /// Executions started and not finished; more webhooks get 503.
    pub max_queued: u64,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
    /// Bearer tokens for `POST /api/v1/run` (the admin token works too).
    pub api_tokens: Vec<String>,
}

/// Shared state of the HTTP handlers.
pub struct App {
    pub registry: Shared,
    pub store: Store,
    pub runner: Runner,
    pub admin_token: Option<Secret>,
    /// Tokens that may call `POST /api/v1/run`: the API tokens and the
    /// admin token.
    pub api_tokens: Vec<Secret>,
    pub in_flight: tokio::sync::Semaphore,
    pub max_queued: u64,
    pub body_timeout: Duration,
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

/// The whole HTTP surface; tests may call it without a socket.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/hooks/{*path}", any(ingress::hook))
        .route("/api/v1/run", post(ingress::run::run))
        .route("/api/v1/executions", get(api::executions))
        .route("/api/v1/executions/{id}", get(api::execution))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .fallback(|| async { HttpError::NotFound("no such endpoint".into()) })
        .with_state(app)
}

/// A server that has loaded everything and is ready to accept.
pub struct Ready {
    app: Arc<App>,
    pub problems: Vec<Diagnostic>,
    _engine: Arc<Engine>,
}

impl Ready {
    /// Opens the store, starts the engine, loads the workflows and resumes
    /// unfinished executions.
    pub async fn start(settings: &Settings) -> Result<Self, ServeError> {
        let store = Store::open(&settings.db)?;
        let engine = Engine::new(settings.engine.clone())?;
        let (registry, problems) = registry::load(&settings.dir, &engine).await;
        for p in &problems {
            tracing::error!("{p}");
        }
        let runner = Runner::new(engine.clone(), store.clone());
        let resumed = runner.resume_unfinished(&registry).await;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unfinished executions");
        }
        let app = Arc::new(App {
            registry: Arc::new(ArcSwap::from_pointee(registry)),
            store,
            runner,
            admin_token: settings.admin_token.clone().map(Secret::new),
            api_tokens: settings
                .api_tokens
                .iter()
                .chain(&settings.admin_token)
                .filter(|t| !t.is_empty())
                .map(|t| Secret::new(t.as_bytes()))
                .collect(),
            in_flight: tokio::sync::Semaphore::new(settings.max_in_flight),
            max_queued: settings.max_queued,
            body_timeout: settings.body_timeout,
        });
        Ok(Self {
            app,
            problems,
            _engine: engine,
        })
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.app.registry.load_full()
    }

    /// Serves on `listener` until `shutdown` resolves, then waits up to
    /// `drain` for running executions (the rest resume on the next start).
    /// Accepts connections until `shutdown` resolves; then lets open
    /// requests finish and waits up to `drain` for running executions (the
    /// rest resume on the next start).
    ///
    /// A connection must send its first byte and then its whole request
    /// head within `header_timeout`, so neither a silent client nor one
    /// trickling its headers holds a connection open (bodies have
    /// `Settings::body_timeout`, enforced by ingress).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
        header_timeout: Duration,
    ) -> Result<(), ServeError> {
        let app = self.app.clone();
        let router = router(self.app);
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of descriptors, most likely: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let watcher = graceful.watcher();
            tokio::spawn(async move {
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
        drop(listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open at shutdown were closed");
        }
        if !app.runner.drain(drain).await {
            tracing::warn!("executions still running at shutdown will resume on the next start");
        }
        Ok(())
    }
}

/// The lines printed at start: each live webhook URL.
pub fn describe_routes(registry: &Registry, base: &str) -> Vec<String> {
    registry
        .workflows()
        .map(|w| {
            let t = &w.spec.trigger;
            let methods: Vec<_> = t.methods.iter().map(|m| m.as_str()).collect();
            let mode = match t.mode {
                Mode::Async => "async",
                Mode::Sync => "sync",
            };
            let state = if w.spec.enabled { "" } else { ", disabled" };
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
        .collect()
}
