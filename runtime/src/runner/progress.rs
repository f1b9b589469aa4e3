//! An execution's progress as a sequence of numbered events, for the
//! Server-Sent Events of `GET /api/v1/executions/{id}/events`.
//!
//! The events are derived from the stored record, always in the same order
//! (each attempt's `step_started`, its `log` lines, its `step_finished`;
//! then `step_skipped` for steps a halt skipped, and `finished` last), so
//! an event's number is the same whenever and wherever it is derived: a
//! client that reconnects with `Last-Event-ID` misses nothing and sees
//! nothing twice. While a step runs, the runner announces it ([`Notice`]):
//! a follower sends that attempt's `step_started` at once, under the
//! number the record gives it once the attempt ends. Log lines are sent
//! when their attempt ends (a step's logs are collected per attempt).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::execution::{Attempt, Execution, StepStatus};

/// Notices kept for a follower that falls behind; past this it rereads the
/// record, losing nothing but an early `step_started`.
const BACKLOG: usize = 1024;

/// What changed about an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Its record was written.
    Saved,
    /// Attempt `attempt` of step `index` started at `at_ms`.
    StepStarted {
        index: usize,
        attempt: u32,
        at_ms: u64,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Notice {
    pub id: Uuid,
    pub change: Change,
}

/// Tells followers what changed; cheap to clone, costs a send per change
/// when nobody follows.
#[derive(Clone)]
pub struct Progress {
    tx: broadcast::Sender<Notice>,
    closing: CancellationToken,
    /// The last attempt started of each unfinished execution, for a
    /// follower that subscribes while it runs.
    started: Arc<Mutex<HashMap<Uuid, Change>>>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            closing: CancellationToken::new(),
            started: Arc::default(),
        }
    }
}

impl Progress {
    pub fn notify(&self, id: Uuid, change: Change) {
        if let Change::StepStarted { .. } = change {
            self.started().insert(id, change);
        }
        // No follower: nothing to tell.
        let _ = self.tx.send(Notice { id, change });
    }

    /// Execution `id` has finished: nothing of it runs any more.
    pub fn forget(&self, id: Uuid) {
        self.started().remove(&id);
    }

    /// The last attempt started of execution `id`, while it is unfinished
    /// (the attempt may have ended since).
    pub fn last_started(&self, id: Uuid) -> Option<Change> {
        self.started().get(&id).copied()
    }

    fn started(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Change>> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notices from now on. Subscribe before reading the record, so that
    /// no change between the two is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }

    /// Ends every stream (at shutdown: its clients reconnect with
    /// `Last-Event-ID`, to this server once it is back or to another).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves once [`Progress::close`] is called.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }
}

/// One event of an execution's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEvent {
    /// From 1, in order.
    pub id: u64,
    pub name: &'static str,
    pub data: Value,
}

/// The `step_started` event of attempt `attempt` of step `index`.
pub fn step_started(execution: &Execution, index: usize, attempt: u32, at_ms: u64) -> Value {
    json!({
        "step": execution.steps.get(index).map(|s| s.id.as_str()),
        "index": index,
        "attempt": attempt,
        "started_at_ms": at_ms,
    })
}

fn step_finished(step: &str, index: usize, a: &Attempt) -> Value {
    let mut data = json!({
        "step": step,
        "index": index,
        "attempt": a.number,
        "status": if a.error.is_some() { "failed" } else { "succeeded" },
        "wall_time_us": a.wall_time_us,
    });
    if let Some(output) = &a.output {
        data["output"] = serde_json::from_str(output.get()).unwrap_or(Value::Null);
    }
    if let Some(error) = &a.error {
        data["error"] = json!(error);
    }
    data
}

/// Every event the record of `execution` holds, numbered from 1.
pub fn history(execution: &Execution) -> Vec<ProgressEvent> {
    let mut events: Vec<(&'static str, Value)> = Vec::new();
    for (index, step) in execution.steps.iter().enumerate() {
        for a in &step.attempts {
            events.push((
                "step_started",
                step_started(execution, index, a.number, a.started_at_ms),
            ));
            for line in &a.logs {
                events.push((
                    "log",
                    json!({"step": step.id, "attempt": a.number, "stream": line.stream, "message": line.message}),
                ));
            }
            events.push(("step_finished", step_finished(&step.id, index, a)));
        }
    }
    if execution.status.is_finished() {
        for (index, step) in execution.steps.iter().enumerate() {
            if step.status == StepStatus::Skipped {
                events.push(("step_skipped", json!({"step": step.id, "index": index})));
            }
        }
        let mut end = json!({
            "status": execution.status.as_str(),
            "finished_at_ms": execution.finished_at_ms,
        });
        if let Some(output) = &execution.output {
            end["output"] = serde_json::from_str(output.get()).unwrap_or(Value::Null);
        }
        if let Some(error) = &execution.error {
            end["error"] = json!(error);
        }
        events.push(("finished", end));
    }
    events
        .into_iter()
        .zip(1..)
        .map(|((name, data), id)| ProgressEvent { id, name, data })
        .collect()
}
