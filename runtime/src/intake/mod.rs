//! Intake: admission and acceptance of events, below HTTP.
//!
//! [`Intake::admit`] decides whether a workflow takes another event now
//! (enabled, within its rate, room in the queue). [`Intake::accept`] checks
//! the payload (valid JSON, typed input), claims the idempotency key,
//! records the event and its `queued` execution durably, starts the run and,
//! for a sync workflow, waits for its result. Both return plain values, an
//! [`Outcome`] or a [`Refusal`]; the webhook ingress and the run API turn
//! them into HTTP answers.

use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::config::{FieldError, Mode, OnDuplicate, TriggerSpec, WorkflowSpec};
use crate::execution::{Event, Execution, Status, now_ms};
use crate::registry::Workflow;
use crate::runner::{Gate, Job, Runner, step_records};
use crate::store::{Claim, IdempotencyKey, QuotaCount, Store};

/// The longest idempotency key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// What started an execution, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Webhook,
    /// `POST /api/v1/run`.
    Api,
    /// `POST /api/v1/executions/{id}/replay`: a stored event again.
    Replay,
    /// `POST /api/v1/workflows/{name}/test`: a test payload.
    Test,
    /// A cron trigger's slot.
    Cron,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Webhook => "webhook",
            Trigger::Api => "api",
            Trigger::Replay => "replay",
            Trigger::Test => "test",
            Trigger::Cron => "cron",
        }
    }
}

/// Where a delivery's idempotency key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// No key: every delivery is new.
    None,
    /// A key the sender gave (a header).
    Given(String),
    /// The payload's top-level `id` field (a Stripe event id).
    PayloadId,
}

/// An event an authenticated sender delivered, with what intake needs to
/// know about it.
pub struct Delivery {
    pub event: Event,
    /// The body is JSON by its content type but not yet parsed: intake
    /// validates it (400 when it is not JSON).
    pub unparsed_json: bool,
    pub key: KeySource,
    pub trigger: Trigger,
    /// Who the execution runs for, when the caller said.
    pub user: Option<String>,
    /// How long the sender asked to wait for the result.
    pub wait: Wait,
    /// The execution whose event this replays.
    pub replay_of: Option<Uuid>,
    /// The environment asked for (`?environment=`); `None`: the default.
    pub environment: Option<String>,
}

/// How long a sender asked to wait for the result (RFC 7240 `Prefer`),
/// within what the manifest allows: a sync trigger may be asked to answer
/// at once or to wait less than its `sync_timeout`; an async trigger
/// answers at once whatever is asked, since its output is not the
/// sender's to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Wait {
    /// As the manifest says.
    #[default]
    AsManifest,
    /// `Prefer: respond-async`: answer `202` once the event is recorded.
    NoWait,
    /// `Prefer: wait=N`: wait at most this long (and at most the
    /// trigger's `sync_timeout`), then answer `202`.
    UpTo(std::time::Duration),
}

impl Wait {
    /// The mode and the longest wait this delivery gets.
    pub fn resolve(self, trigger: &TriggerSpec) -> (Mode, std::time::Duration) {
        match (trigger.mode, self) {
            (Mode::Async, _) | (Mode::Sync, Wait::NoWait) => (Mode::Async, trigger.sync_timeout),
            (Mode::Sync, Wait::AsManifest) => (Mode::Sync, trigger.sync_timeout),
            (Mode::Sync, Wait::UpTo(wait)) => (Mode::Sync, wait.min(trigger.sync_timeout)),
        }
    }
}

/// What came of an accepted delivery.
#[derive(Debug)]
pub enum Outcome {
    /// Recorded and started, not finished when the answer is due (async,
    /// or sync past its `sync_timeout`).
    Accepted(Uuid),
    /// A sync workflow finished in time, successfully or not.
    Finished(Execution),
    /// The idempotency key is held by `original`: nothing new was recorded.
    /// `finished` is its record when the workflow is sync and it has ended,
    /// so the original answer can be given again.
    Replayed {
        original: Uuid,
        finished: Option<Execution>,
    },
}

/// Why a delivery was not taken. Nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("workflow `{0}` is disabled; enable it to accept events")]
    Inactive(String),
    #[error("this workflow accepts at most {limit}; try again in {retry_after} s")]
    RateLimited { limit: String, retry_after: u64 },
    #[error("too many executions are waiting to run; try again")]
    QueueFull,
    #[error("the executions waiting to run hold their limit of body bytes; try again")]
    QueueBytesFull,
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
    #[error("the idempotency key is {0} bytes; the limit is {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    #[error("the input is not valid: {}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    InvalidInput(Vec<FieldError>),
    #[error("this idempotency key was already used by execution {0}")]
    Duplicate(Uuid),
    #[error("the quota of {quota} is used up; it resets in {retry_after} s")]
    QuotaExceeded { quota: String, retry_after: u64 },
    #[error("{0}")]
    UnknownEnvironment(String),
    #[error("the event could not be stored; try again")]
    StoreFailed,
}

/// What recording a delivery did.
enum Recorded {
    /// A new execution, started; the receiver gets its finished record.
    Started(oneshot::Receiver<Execution>),
    /// The key is held by `original`; nothing was written, and the
    /// execution and event come back unused.
    Duplicate {
        original: Uuid,
        execution: Box<Execution>,
        event: Box<Event>,
    },
}

/// When the UTC day and the UTC month of `now` end (ms since the epoch).
fn windows(now: u64) -> (u64, u64) {
    use chrono::{DateTime, Datelike, NaiveDate};
    let today = DateTime::from_timestamp_millis(i64::try_from(now).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .date_naive();
    let start = |d: Option<NaiveDate>| {
        d.and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(u64::MAX, |t| {
                u64::try_from(t.and_utc().timestamp_millis()).unwrap_or(u64::MAX)
            })
    };
    let next_month = match today.month() {
        12 => NaiveDate::from_ymd_opt(today.year() + 1, 1, 1),
        m => NaiveDate::from_ymd_opt(today.year(), m + 1, 1),
    };
    (start(today.succ_opt()), start(next_month))
}

/// The quotas a new execution of `spec` for `user` counts against at
/// `now` (ms since the epoch), with what each is called in a refusal.
fn quotas(spec: &WorkflowSpec, user: Option<&str>, now: u64) -> Vec<(QuotaCount, String)> {
    let q = &spec.limits.quota;
    if *q == crate::config::Quota::default() {
        return Vec::new();
    }
    let (day_ends, month_ends) = windows(now);
    let name = &spec.name;
    let mut out = Vec::new();
    let mut add = |limit: Option<u64>, counter: String, ends: u64, what: String| {
        if let Some(limit) = limit {
            out.push((
                QuotaCount::new(&counter, limit, ends),
                format!("{limit} {what}"),
            ));
        }
    };
    add(
        q.per_day,
        format!("{name}\0day"),
        day_ends,
        "executions per day".into(),
    );
    add(
        q.per_month,
        format!("{name}\0month"),
        month_ends,
        "executions per month".into(),
    );
    if let Some(user) = user {
        add(
            q.per_user_per_day,
            format!("{name}\0user\0{user}\0day"),
            day_ends,
            format!("executions per day for user `{user}`"),
        );
        add(
            q.per_user_per_month,
            format!("{name}\0user\0{user}\0month"),
            month_ends,
            format!("executions per month for user `{user}`"),
        );
    }
    out
}

/// Admission and acceptance; one per server.
pub struct Intake {
    store: Store,
    runner: Runner,
    /// Executions started and not finished, at most; past it, refuse.
    max_queued: u64,
    /// The same, counted in bytes of their event bodies.
    max_queued_bytes: u64,
}

impl Intake {
    pub fn new(store: Store, runner: Runner, max_queued: u64, max_queued_bytes: u64) -> Self {
        Self {
            store,
            runner,
            max_queued,
            max_queued_bytes,
        }
    }

    /// Executions started and not finished, and their event bytes.
    pub fn unfinished(&self) -> (u64, u64) {
        (self.runner.unfinished(), self.runner.unfinished_bytes())
    }

    /// Cancels execution `id` if it runs here (see [`Runner::cancel`]).
    pub fn cancel(&self, id: Uuid) -> bool {
        self.runner.cancel(id)
    }

    /// The runtime limits of `workflow` (rate, running and receiving room).
    pub fn gate(&self, workflow: &Workflow) -> Arc<Gate> {
        self.runner.gate(workflow)
    }

    /// After the sender is authenticated: is the workflow enabled, within
    /// its rate (kept in `gate`, the workflow's), and is there room for
    /// another execution?
    pub fn admit(&self, workflow: &Workflow, gate: &Gate) -> Result<(), Refusal> {
        let spec = &workflow.spec;
        if !spec.enabled {
            return Err(Refusal::Inactive(spec.name.clone()));
        }
        if let Some(limiter) = &gate.rate {
            limiter.check().map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Refusal::RateLimited {
                    limit: spec.limits.rate.map(|r| r.to_string()).unwrap_or_default(),
                    retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            })?;
        }
        if self.runner.unfinished() >= self.max_queued {
            return Err(Refusal::QueueFull);
        }
        if self.runner.unfinished_bytes() >= self.max_queued_bytes {
            return Err(Refusal::QueueBytesFull);
        }
        Ok(())
    }

    /// Records an admitted delivery as a new execution (unless its
    /// idempotency key is held), starts it, and says what came of it: at
    /// once for an async workflow, with the result for a sync one.
    pub async fn accept(
        &self,
        workflow: Arc<Workflow>,
        delivery: Delivery,
    ) -> Result<Outcome, Refusal> {
        let Delivery {
            event,
            unparsed_json,
            key,
            trigger,
            user,
            wait,
            replay_of,
            environment,
        } = delivery;
        let spec = &workflow.spec;
        let environment = spec
            .environment(environment.as_deref())
            .map_err(Refusal::UnknownEnvironment)?;
        let key = inspect(spec, &event, unparsed_json, key)?;
        let trigger_spec = &spec.trigger;
        let key = key.map(|k| {
            let window = u64::try_from(trigger_spec.idempotency_window.as_millis());
            let expires = now_ms().saturating_add(window.unwrap_or(u64::MAX));
            IdempotencyKey::new(&spec.name, &k, expires)
        });
        let mut execution = new_execution(&workflow, &event, trigger);
        execution.user = user;
        execution.replay_of = replay_of;
        execution.environment = environment;
        let id = execution.id;
        let (mode, sync_timeout) = wait.resolve(trigger_spec);
        let awaited = mode == Mode::Sync;

        let done = match self
            .record(&workflow, execution, event, key.clone(), awaited)
            .await?
        {
            Recorded::Started(done) => done,
            Recorded::Duplicate {
                original,
                mut execution,
                event,
            } => {
                let holder = self.holder(original).await;
                if !holder.as_ref().is_some_and(ended_badly) {
                    return duplicate(&workflow, original, holder, mode);
                }
                // The delivery's execution failed: this redelivery is a new
                // attempt at it, linked to the failed one, and takes its
                // key over (unless another redelivery already did).
                execution.retry_of = Some(original);
                let key = key.map(|k| k.replacing(original));
                match self
                    .record(&workflow, *execution, *event, key, awaited)
                    .await?
                {
                    Recorded::Started(done) => done,
                    Recorded::Duplicate { original, .. } => {
                        let holder = self.holder(original).await;
                        return duplicate(&workflow, original, holder, mode);
                    }
                }
            }
        };
        if mode == Mode::Async {
            return Ok(Outcome::Accepted(id));
        }
        match tokio::time::timeout(sync_timeout, done).await {
            Ok(Ok(finished)) => Ok(Outcome::Finished(finished)),
            // Still running (or the server is stopping): the sender can
            // follow it.
            Ok(Err(_)) | Err(_) => Ok(Outcome::Accepted(id)),
        }
    }

    /// Records `execution` and, when its key was free, starts it. Runs in a
    /// task of its own: a sender that hangs up drops the caller's future,
    /// and a committed execution must start all the same.
    async fn record(
        &self,
        workflow: &Arc<Workflow>,
        execution: Execution,
        event: Event,
        key: Option<IdempotencyKey>,
        awaited: bool,
    ) -> Result<Recorded, Refusal> {
        let (store, runner, workflow) = (self.store.clone(), self.runner.clone(), workflow.clone());
        let (counts, names): (Vec<_>, Vec<_>) =
            quotas(&workflow.spec, execution.user.as_deref(), now_ms())
                .into_iter()
                .unzip();
        let task = tokio::spawn(async move {
            let claim = store
                .put_new(&execution, event.body.clone(), key, counts)
                .await;
            match claim {
                Ok(Claim::OverQuota {
                    index,
                    resets_at_ms,
                }) => Err(Refusal::QuotaExceeded {
                    quota: names.get(index).cloned().unwrap_or_default(),
                    retry_after: resets_at_ms.saturating_sub(now_ms()).div_ceil(1000).max(1),
                }),
                Ok(Claim::New) => Ok(Recorded::Started(runner.start(Job {
                    awaited,
                    workflow,
                    execution,
                    event: Some(Arc::new(event)),
                }))),
                Ok(Claim::Duplicate(original)) => Ok(Recorded::Duplicate {
                    original,
                    execution: Box::new(execution),
                    event: Box::new(event),
                }),
                Err(e) => {
                    let name = &workflow.spec.name;
                    tracing::error!(error = %e, workflow = %name, "cannot record event");
                    Err(Refusal::StoreFailed)
                }
            }
        });
        task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "recording an event failed");
            Err(Refusal::StoreFailed)
        })
    }

    /// The execution holding an idempotency key, when it can be read.
    async fn holder(&self, id: Uuid) -> Option<Execution> {
        self.store.get(id).await.ok().flatten()
    }
}

/// Whether an execution has ended without succeeding.
fn ended_badly(execution: &Execution) -> bool {
    execution.status.is_finished() && execution.status != Status::Succeeded
}

/// The answer to a delivery whose key is held by `original` (read as
/// `holder`): a conflict, or the original answer again (with its result
/// when this delivery was answered in `mode` sync).
fn duplicate(
    workflow: &Workflow,
    original: Uuid,
    holder: Option<Execution>,
    mode: Mode,
) -> Result<Outcome, Refusal> {
    let trigger = &workflow.spec.trigger;
    if trigger.on_duplicate == OnDuplicate::Conflict {
        return Err(Refusal::Duplicate(original));
    }
    let finished = match mode {
        Mode::Async => None,
        Mode::Sync => holder.filter(|e| e.status.is_finished()),
    };
    Ok(Outcome::Replayed { original, finished })
}

/// Checks a delivery before anything is recorded: the payload is JSON when
/// it should be (400), the idempotency key is not too long (400), the
/// payload fits the workflow's typed input (422). Returns the key.
fn inspect(
    spec: &WorkflowSpec,
    event: &Event,
    unparsed_json: bool,
    key: KeySource,
) -> Result<Option<String>, Refusal> {
    let want_value = !spec.input.is_any() || key == KeySource::PayloadId;
    let parsed = parse_payload(event, unparsed_json, want_value)?;
    let key = match key {
        KeySource::None => None,
        KeySource::Given(k) => Some(k),
        KeySource::PayloadId => parsed
            .as_ref()
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_string),
    };
    if let Some(k) = key.as_ref().filter(|k| k.len() > MAX_KEY_LEN) {
        return Err(Refusal::KeyTooLong(k.len()));
    }
    if !spec.input.is_any() {
        let payload = parsed.unwrap_or(Value::Null);
        spec.input.check(&payload).map_err(Refusal::InvalidInput)?;
    }
    Ok(key)
}

/// Parses the payload once, as far as this delivery needs: into a value
/// when `want_value` (typed input, or a key inside the payload), else only
/// validated when it is unparsed JSON, else not at all.
fn parse_payload(
    event: &Event,
    unparsed_json: bool,
    want_value: bool,
) -> Result<Option<Value>, Refusal> {
    let parsed = match (unparsed_json, want_value) {
        (true, false) => serde_json::from_slice::<serde::de::IgnoredAny>(&event.body).map(|_| None),
        (true, true) => serde_json::from_slice(&event.body).map(Some),
        // A form's fields, JSON already validated, or `null`.
        (false, true) => serde_json::from_str(event.payload_text()).map(Some),
        (false, false) => Ok(None),
    };
    parsed.map_err(|e| Refusal::BadJson(e.to_string()))
}

/// A new `queued` execution of `workflow` for `event`.
fn new_execution(workflow: &Workflow, event: &Event, trigger: Trigger) -> Execution {
    let mut execution = Execution::queued(
        &workflow.spec.name,
        trigger.as_str(),
        event,
        step_records(workflow),
    );
    execution.version = Some(workflow.version.clone());
    execution
}

#[cfg(test)]
mod tests {
    use super::windows;

    /// Milliseconds of an RFC 3339 time.
    fn ms(t: &str) -> u64 {
        let t = humantime::parse_rfc3339(t).unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[test]
    fn quota_windows_end_at_utc_midnight_and_the_first_of_the_month() {
        assert_eq!(
            windows(ms("2026-12-31T23:59:59Z")),
            (ms("2027-01-01T00:00:00Z"), ms("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            windows(ms("2028-02-28T12:00:00Z")),
            (ms("2028-02-29T00:00:00Z"), ms("2028-03-01T00:00:00Z"))
        );
        // The first millisecond of a day is in that day.
        assert_eq!(
            windows(ms("2026-06-01T00:00:00Z")),
            (ms("2026-06-02T00:00:00Z"), ms("2026-07-01T00:00:00Z"))
        );
    }
}
