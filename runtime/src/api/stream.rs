//! `GET /api/v1/stream`: the whole server's changes as Server-Sent Events,
//! for a live list (the dashboard's): `execution`, with the execution's
//! summary, each time one is recorded or changes; `workflows` each time the
//! served workflows change (a reload, enable or disable).
//!
//! Changes are gathered for [`TICK`] and each execution is sent once per
//! tick, as it is then, so a burst costs one read per execution. A client
//! that falls too far behind is disconnected; like one whose server
//! restarted, it reconnects and reads the list again to fill in what it
//! missed.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::executions::Summary;
use super::require_admin;
use crate::http::HttpError;
use crate::runner::progress::{Change, Notice};
use crate::state::AppState;

/// How long changes are gathered before they are sent.
const TICK: Duration = Duration::from_millis(250);
/// Events waiting for a slow client before it is disconnected.
const BACKLOG: usize = 256;

#[utoipa::path(get, path = "/api/v1/stream", tag = "executions", responses((status = 200, description = "Server-Sent Events: `execution` (a summary, as the list gives) and `workflows` (`{\"reloaded_at_ms\": N}`)"), (status = 401, description = "no admin token")), security(("admin" = [])))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    require_admin(&state, &headers)?;
    let (tx, mut rx) = mpsc::channel(BACKLOG);
    tokio::spawn(watch(state, tx));
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Sends the changes to `tx` until the client leaves, falls behind, or the
/// server stops.
async fn watch(state: Arc<AppState>, tx: mpsc::Sender<Result<Event, Infallible>>) {
    let mut notices = state.progress.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changed: BTreeSet<Uuid> = BTreeSet::new();
    let mut registry = state.registry.load_full();
    loop {
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(Notice { id, change: Change::Saved }) => {
                    changed.insert(id);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_) | RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let now = state.registry.load_full();
                if !Arc::ptr_eq(&now, &registry) {
                    let data = json!({ "reloaded_at_ms": now.loaded_at_ms }).to_string();
                    registry = now;
                    if !send(&tx, Event::default().event("workflows").data(data)) {
                        return;
                    }
                }
                for id in std::mem::take(&mut changed) {
                    let Ok(Some(execution)) = state.store.get(id).await else {
                        continue;
                    };
                    let data = serde_json::to_string(&Summary::from(&execution)).unwrap_or_default();
                    if !send(&tx, Event::default().event("execution").data(data)) {
                        return;
                    }
                }
            }
            () = tx.closed() => return,
            () = state.progress.closed() => return,
        }
    }
}

/// Queues `event`; false once the client is gone or too far behind.
fn send(tx: &mpsc::Sender<Result<Event, Infallible>>, event: Event) -> bool {
    tx.try_send(Ok(event)).is_ok()
}
