//! The server: wires store, engine, registry and runner together, serves
//! HTTP until shut down, then drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{any, get};
use tokio::net::TcpListener;

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
}

/// Shared state of the HTTP handlers.
pub struct App {
    pub registry: Shared,
    pub store: Store,
    pub runner: Runner,
    pub admin_token: Option<Secret>,
    pub in_flight: tokio::sync::Semaphore,
    pub max_queued: u64,
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
            in_flight: tokio::sync::Semaphore::new(settings.max_in_flight),
            max_queued: settings.max_queued,
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
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        drain: Duration,
    ) -> Result<(), ServeError> {
        let app = self.app.clone();
        axum::serve(
            listener,
            router(self.app).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
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
