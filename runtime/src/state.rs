//! The state every HTTP handler shares: the live registry, the store,
//! intake, the API's tokens, the in-flight limit and the metrics handle.
//! Built once when the server starts; nothing below the handlers imports
//! it.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::Secret;
use crate::intake::Intake;
use crate::registry::LiveRegistry;
use crate::store::Store;

pub struct AppState {
    pub registry: LiveRegistry,
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
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// A place among the requests in flight, if one is free: a request
    /// without one is shed (503) rather than queued without bound.
    pub fn in_flight(&self) -> Option<SemaphorePermit<'_>> {
        self.in_flight.try_acquire().ok()
    }
}
