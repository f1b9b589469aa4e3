//! `GET /api/v1/executions/{id}/events`: an execution's progress as
//! Server-Sent Events (see [`crate::runner::progress`] for what is sent
//! and how events are numbered). The history first (after the event named
//! by `Last-Event-ID`, when the client reconnects), then the live tail;
//! the stream ends after the `finished` event. Read with the admin token or
//! the execution's read token (`?token=`, as `stream_url` carries it).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::{ReadQuery, require_reader};
use crate::execution::Execution;
use crate::http::HttpError;
use crate::runner::progress::{self, Change, Notice, ProgressEvent};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/executions/{id}/events", tag = "executions", params(("id" = String, Path), ("token" = Option<String>, Query, description = "the read token of the execution, instead of the admin token"), ("Last-Event-ID" = Option<String>, Header)), responses((status = 200, description = "Server-Sent Events until `finished`"), (status = 401, description = "no token for it"), (status = 404, description = "no such execution")), security(("admin" = [])))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Result<Response, HttpError> {
    let uuid = require_reader(&state, &headers, &id, q.token.as_deref())?;
    // Subscribed before the record is read: a change in between is seen.
    let notices = state.progress.subscribe();
    let record = state
        .store
        .get(uuid)
        .await
        .map_err(HttpError::store_read)?
        .ok_or_else(|| HttpError::NotFound(format!("no execution `{id}`")))?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut follow = Follow {
        state,
        id: uuid,
        notices,
        record,
        sent: after,
        derived: 0,
        pending: VecDeque::new(),
        done: false,
    };
    follow.take_history();
    // A step that started before the subscription is announced all the
    // same.
    if let Some(Change::StepStarted {
        index,
        attempt,
        at_ms,
    }) = follow.state.progress.last_started(uuid)
    {
        follow.started(index, attempt, at_ms);
    }
    let stream = futures_util::stream::unfold(follow, Follow::next);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One client's place in one execution's events.
struct Follow {
    state: Arc<AppState>,
    id: Uuid,
    notices: tokio::sync::broadcast::Receiver<Notice>,
    /// The record as last read.
    record: Execution,
    /// The number of the last event sent or queued.
    sent: u64,
    /// How many events `record` holds.
    derived: u64,
    pending: VecDeque<ProgressEvent>,
    /// The record is final: the stream ends once `pending` is sent.
    done: bool,
}

impl Follow {
    /// Queues the record's events past `sent`.
    fn take_history(&mut self) {
        let events = progress::history(&self.record);
        self.derived = events.len() as u64;
        let new = usize::try_from(self.sent).unwrap_or(usize::MAX);
        for event in events.into_iter().skip(new) {
            self.sent = event.id;
            self.pending.push_back(event);
        }
        self.done = self.record.status.is_finished();
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                let event = Event::default()
                    .id(e.id.to_string())
                    .event(e.name)
                    .data(e.data.to_string());
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let notice = tokio::select! {
                notice = self.notices.recv() => notice,
                () = self.state.progress.closed() => return None,
            };
            match notice {
                Ok(Notice { id, .. }) if id != self.id => {}
                Ok(Notice {
                    change:
                        Change::StepStarted {
                            index,
                            attempt,
                            at_ms,
                        },
                    ..
                }) => self.started(index, attempt, at_ms),
                Ok(Notice {
                    change: Change::Saved,
                    ..
                })
                | Err(RecvError::Lagged(_)) => {
                    // Gone (pruned) or unreadable: the stream ends; the
                    // client may reconnect.
                    let record = self.state.store.get(self.id).await.ok().flatten()?;
                    self.record = record;
                    self.take_history();
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// An attempt started: its `step_started` is sent now, under the number
    /// the record gives it once the attempt ends, when that number is the
    /// next one (the record read holds every earlier attempt).
    fn started(&mut self, index: usize, attempt: u32, at_ms: u64) {
        let recorded = self.record.steps.get(index).map_or(0, |s| s.attempts.len());
        if recorded + 1 == attempt as usize && self.sent == self.derived {
            self.sent += 1;
            self.pending.push_back(ProgressEvent {
                id: self.sent,
                name: "step_started",
                data: progress::step_started(&self.record, index, attempt, at_ms),
            });
        }
    }
}
