//! The state every HTTP handler shares: the live registry, the store,
//! intake, the API's tokens, the in-flight limit and the metrics handle.
//! Built once when the server starts; nothing below the handlers imports
//! it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::config::Secret;
use crate::http::{Busy, ReadTokens, Sessions};
use crate::intake::Intake;
use crate::registry::LiveRegistry;
use crate::registry::watch::Reloader;
use crate::runner::progress::Progress;
use crate::runner::{Gate, kib};
use crate::store::Store;

pub struct AppState {
    pub registry: LiveRegistry,
    /// Reloads the registry; rolls workflows back.
    pub reloader: Arc<Reloader>,
    pub store: Store,
    pub intake: Intake,
    /// The admin token for `/api/v1`; `None` turns the API off.
    pub admin_token: Option<Secret>,
    /// Tokens that may call `POST /api/v1/run`: the API tokens and the
    /// admin token.
    pub run_tokens: Vec<Secret>,
    /// Places for requests being handled; none left sheds the request.
    pub in_flight: Semaphore,
    /// How long a client may take to send a body.
    pub body_timeout: Duration,
    /// Makes and checks the read tokens of `status_url` and `stream_url`.
    pub tokens: ReadTokens,
    /// The dashboard's login sessions.
    pub sessions: Sessions,
    /// What execution event streams follow.
    pub progress: Progress,
    /// Triggers made through the API.
    pub triggers: Arc<crate::triggers::Triggers>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Set once shutdown begins: new requests are refused.
    pub draining: AtomicBool,
    /// `in_flight`'s size, to tell when no request is left in flight.
    pub max_in_flight: usize,
    /// Room, in KiB, for request bodies being received across the server
    /// (`--max-receiving`); each workflow has its own room as well.
    pub receiving: Arc<Semaphore>,
    /// `receiving`'s size, to tell when no body is being received.
    pub max_receiving_kib: usize,
}

/// Room held while a body is received: given back when dropped.
pub struct Receiving {
    _workflow: OwnedSemaphorePermit,
    _server: OwnedSemaphorePermit,
}

impl AppState {
    /// A place among the requests in flight, or why there is none: the
    /// server is shutting down, or every place is taken (a request without
    /// one is shed with 503 rather than queued without bound).
    pub fn admit_request(&self) -> Result<SemaphorePermit<'_>, Busy> {
        self.check_draining()?;
        self.in_flight.try_acquire().map_err(|_| Busy::Full)
    }

    /// Whether shutdown has begun: new requests get 503.
    pub fn check_draining(&self) -> Result<(), Busy> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Busy::Draining);
        }
        Ok(())
    }

    /// Room to receive a body of `bytes` for the workflow of `gate`, in its own room
    /// (`limits.max_receiving`) and in the server's (`--max-receiving`),
    /// or which is full. Never waits: a full room sheds the request, so
    /// strangers trickling bodies to one workflow hold that workflow's
    /// room and nothing else.
    pub fn receive(&self, gate: &Gate, bytes: u64) -> Result<Receiving, Busy> {
        let kib = kib(bytes).max(1);
        let workflow = gate
            .receiving
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| Busy::Receiving)?;
        let server = self
            .receiving
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| Busy::ReceivingAll)?;
        Ok(Receiving {
            _workflow: workflow,
            _server: server,
        })
    }

    /// Accepts `delivery` for `workflow` and answers as SPEC §5.1 says (a
    /// `202` with where to follow the run, or the sync result), saying
    /// which `Prefer` was applied: the webhook, run, replay and test-run
    /// routes all end here.
    pub async fn deliver(
        &self,
        workflow: std::sync::Arc<crate::registry::Workflow>,
        delivery: crate::intake::Delivery,
    ) -> Result<axum::response::Response, crate::http::HttpError> {
        let (wait, mode) = (delivery.wait, workflow.spec.trigger.mode);
        let outcome = self.intake.accept(workflow, delivery).await?;
        Ok(crate::http::answer_preferring(
            outcome,
            wait,
            mode,
            &self.tokens,
        ))
    }

    /// Whether no request is in flight and no body is being received.
    pub fn idle(&self) -> bool {
        self.in_flight.available_permits() == self.max_in_flight
            && self.receiving.available_permits() == self.max_receiving_kib
    }
}
