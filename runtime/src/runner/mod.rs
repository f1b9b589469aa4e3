//! The runner: takes accepted executions and drives them through their
//! steps, in order, each step's output feeding the next.
//!
//! Every step result is committed when the step ends, without an fsync of
//! its own (it is durable within the store's `FLUSH_WITHIN`); the end of an
//! execution that a sender waits for is durable before the sender hears
//! it. Retryable errors,
//! traps and timeouts are retried with exponential backoff and jitter up to
//! the step's `retries.max`; then the execution ends `failed` (or
//! `timed_out` when time ran out). After a restart, executions that were
//! accepted but not finished resume from their first unfinished step.
//!
//! The runner also keeps each workflow's runtime limits ([`Gates`]: its
//! rate limiter and its places for running executions) by workflow name,
//! apart from the loaded spec, and counts executions for `/metrics`
//! through the `metrics` facade and, exactly, for admission
//! ([`Runner::unfinished`]).

mod gates;
pub mod progress;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::Retries;
use crate::engine::{Engine, StepCall, StepLimits, StepRun};
use crate::execution::{
    Attempt, ErrorKind, Event, Execution, HostCall, Json, Status, StepRecord, StepStatus, now_ms,
    null,
};
use crate::observe;
use crate::registry::{Registry, Workflow};
use crate::store::Store;
pub use gates::{Gate, Gates, RateLimiter, kib};
use progress::{Change, Progress};

/// Counter: executions handed to the runner (accepted, or resumed at
/// start).
pub const EXECUTIONS_STARTED: &str = "hookflow_executions_started_total";
/// Counter: executions that ended, labelled by `status`.
pub const EXECUTIONS_FINISHED: &str = "hookflow_executions_finished_total";

/// Describes the runner's counters to the installed metrics recorder and
/// sets them at zero, so they are listed before the first execution.
pub fn describe_metrics() {
    metrics::describe_counter!(
        EXECUTIONS_STARTED,
        "Executions handed to the runner (accepted or resumed)."
    );
    metrics::describe_counter!(EXECUTIONS_FINISHED, "Executions that ended, by status.");
    metrics::counter!(EXECUTIONS_STARTED).absolute(0);
    for status in [
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Cancelled,
    ] {
        metrics::counter!(EXECUTIONS_FINISHED, "status" => status.as_str()).absolute(0);
    }
}

/// An accepted execution, already recorded as `queued`.
pub struct Job {
    pub workflow: Arc<Workflow>,
    pub execution: Execution,
    /// The event, when it is at hand (a new delivery); `None` reads it
    /// from the store when the execution gets a running place (a resume).
    pub event: Option<Arc<Event>>,
    /// Someone waits for the end (a sync sender): the final record is
    /// durable before they hear it. Otherwise it rides on the next durable
    /// commit.
    pub awaited: bool,
}

#[derive(Clone)]
pub struct Runner {
    engine: Arc<Engine>,
    store: Store,
    tasks: TaskTracker,
    gates: Arc<Gates>,
    /// Executions started and not yet finished, and the bytes of their
    /// event bodies: exact, for admission.
    unfinished: Arc<AtomicU64>,
    unfinished_bytes: Arc<AtomicU64>,
    counters: Counters,
    /// Tells event streams what changed.
    progress: Progress,
    /// The executions started and not finished, each with what cancels it.
    cancels: Arc<Mutex<HashMap<uuid::Uuid, CancellationToken>>>,
}

/// Handles on the `/metrics` counters, registered once so that counting is
/// an atomic add, not a registry lookup.
#[derive(Clone)]
struct Counters {
    started: metrics::Counter,
    succeeded: metrics::Counter,
    failed: metrics::Counter,
    timed_out: metrics::Counter,
    cancelled: metrics::Counter,
}

impl Counters {
    fn new() -> Self {
        let finished =
            |status: Status| metrics::counter!(EXECUTIONS_FINISHED, "status" => status.as_str());
        Self {
            started: metrics::counter!(EXECUTIONS_STARTED),
            succeeded: finished(Status::Succeeded),
            failed: finished(Status::Failed),
            timed_out: finished(Status::TimedOut),
            cancelled: finished(Status::Cancelled),
        }
    }

    fn finished(&self, status: Status) -> &metrics::Counter {
        match status {
            Status::Succeeded => &self.succeeded,
            Status::TimedOut => &self.timed_out,
            Status::Cancelled => &self.cancelled,
            _ => &self.failed,
        }
    }
}

/// The step records of a new execution of `workflow`, all pending.
pub fn step_records(workflow: &Workflow) -> Vec<StepRecord> {
    workflow
        .spec
        .steps
        .iter()
        .zip(&workflow.plugins)
        .map(|(step, plugin)| StepRecord {
            id: step.id.clone(),
            plugin: step.plugin_name.clone(),
            plugin_digest: plugin.digest.clone(),
            status: StepStatus::Pending,
            attempts: Vec::new(),
        })
        .collect()
}

impl Runner {
    /// A runner; its counters count into the metrics recorder installed
    /// when it is made.
    pub fn new(engine: Arc<Engine>, store: Store) -> Self {
        Self {
            engine,
            store,
            tasks: TaskTracker::new(),
            gates: Arc::default(),
            unfinished: Arc::default(),
            unfinished_bytes: Arc::default(),
            counters: Counters::new(),
            progress: Progress::default(),
            cancels: Arc::default(),
        }
    }

    /// Cancels execution `id` if it runs here (or waits for a place):
    /// its running step stops at its next epoch tick, and it ends
    /// `cancelled`. `false` when it does not run here.
    pub fn cancel(&self, id: uuid::Uuid) -> bool {
        let cancels = self.cancels.lock().unwrap_or_else(PoisonError::into_inner);
        cancels.get(&id).map(CancellationToken::cancel).is_some()
    }

    /// What followers of executions subscribe to.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The runtime limits of `workflow` (its rate limiter and running
    /// slots), kept across snapshots of the same workflow.
    pub fn gate(&self, workflow: &Workflow) -> Arc<Gate> {
        self.gates.get(&workflow.spec)
    }

    /// Executions started and not yet finished, running or waiting for a
    /// slot.
    pub fn unfinished(&self) -> u64 {
        self.unfinished.load(Ordering::Relaxed)
    }

    /// The bytes of those executions' event bodies.
    pub fn unfinished_bytes(&self) -> u64 {
        self.unfinished_bytes.load(Ordering::Relaxed)
    }

    /// Runs `job` in the background. The receiver gets the finished record
    /// (drop it to not wait).
    pub fn start(&self, job: Job) -> oneshot::Receiver<Execution> {
        let (tx, rx) = oneshot::channel();
        self.counters.started.increment(1);
        self.unfinished.fetch_add(1, Ordering::Relaxed);
        self.unfinished_bytes
            .fetch_add(job.execution.body_len, Ordering::Relaxed);
        let runner = self.clone();
        let (id, bytes) = (job.execution.id, job.execution.body_len);
        let cancel = CancellationToken::new();
        self.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, cancel.clone());
        self.tasks.spawn(async move {
            let run = runner.run(job, &cancel);
            let done = runner.guarded(id, bytes, run).await;
            runner
                .cancels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            if let Some(done) = done {
                let _ = tx.send(done);
            }
        });
        rx
    }

    /// Runs an execution's `run`; if it panics (a bug in hookflow), the
    /// execution ends `failed` instead of staying `queued`, and its place
    /// and admission count are given back. `None` when even that record
    /// cannot be read.
    async fn guarded(
        &self,
        id: uuid::Uuid,
        body_bytes: u64,
        run: impl Future<Output = Execution>,
    ) -> Option<Execution> {
        use futures_util::FutureExt as _;
        // Unwind safety: nothing the run held is used after a panic; the
        // execution is read back from the store.
        match std::panic::AssertUnwindSafe(run).catch_unwind().await {
            Ok(done) => Some(done),
            Err(_) => self.after_panic(id, body_bytes).await,
        }
    }

    async fn after_panic(&self, id: uuid::Uuid, body_bytes: u64) -> Option<Execution> {
        tracing::error!(%id, "running the execution panicked; it ends failed");
        match self.store.get(id).await {
            Ok(Some(mut execution)) => {
                execution.status = Status::Failed;
                execution.error = Some(
                    "hookflow hit an internal error while running this execution (see the server's log); it was not retried".into(),
                );
                Some(self.finish(execution, true).await)
            }
            other => {
                tracing::error!(%id, ?other, "cannot read the execution to fail it");
                self.counters.failed.increment(1);
                self.progress.forget(id);
                self.release(body_bytes);
                None
            }
        }
    }

    /// Gives back an ended execution's place in the admission counts.
    fn release(&self, body_bytes: u64) {
        self.unfinished.fetch_sub(1, Ordering::Relaxed);
        self.unfinished_bytes
            .fetch_sub(body_bytes, Ordering::Relaxed);
    }

    /// [`Runner::resume_unfinished`] in a task of its own, tracked like the
    /// executions: a start does not wait for a backlog. Only executions
    /// accepted before this start are resumed: the server is taking new
    /// ones meanwhile, and those are already running.
    pub fn resume_unfinished_later(&self, registry: Arc<Registry>, max_resumes: u32) {
        let runner = self.clone();
        // Ids are UUID v7, increasing within the process: every execution
        // accepted from here on sorts after this one.
        let before = uuid::Uuid::now_v7();
        self.tasks.spawn(async move {
            runner
                .resume_unfinished(&registry, max_resumes, before)
                .await;
        });
    }

    /// Resumes every execution with an id before `before` that was accepted
    /// but not finished before the last stop. Returns how many were
    /// resumed. An execution whose workflow is not loaded stays queued,
    /// untouched, for a later start; once shutdown has begun, the rest stay
    /// for the next start.
    pub async fn resume_unfinished(
        &self,
        registry: &Registry,
        max_resumes: u32,
        before: uuid::Uuid,
    ) -> usize {
        // One read of every unfinished record, no bodies: each body is
        // read when its execution gets a running place.
        let records = match self.store.unfinished_records().await {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "cannot list unfinished executions");
                return 0;
            }
        };
        let mut resuming = Vec::new();
        for record in records {
            let mut execution = match record {
                Ok(e) => e,
                Err((id, e)) => {
                    tracing::error!(%id, error = %e, "unfinished execution cannot be read");
                    continue;
                }
            };
            let id = execution.id;
            if id >= before {
                continue;
            }
            let Some(workflow) = registry.get(&execution.workflow) else {
                tracing::warn!(%id, workflow = %execution.workflow, "workflow not loaded; execution stays queued");
                continue;
            };
            if execution.resumes >= max_resumes {
                // Resumed that often and never finished: it may be what
                // stops the server. It ends here rather than crash-loop.
                self.give_up(execution).await;
                continue;
            }
            // Counted before it runs, so a crash during the run counts.
            execution.resumes += 1;
            let same_steps = execution.steps.len() == workflow.spec.steps.len()
                && execution
                    .steps
                    .iter()
                    .zip(&workflow.spec.steps)
                    .all(|(r, s)| r.id == s.id);
            if !same_steps {
                execution.steps = step_records(workflow);
            }
            on_current_version(&mut execution, workflow);
            resuming.push((workflow.clone(), execution));
        }
        // The resume counts commit in batches, not one transaction each.
        let mut resumed = 0;
        let mut resuming = resuming.into_iter();
        loop {
            let chunk: Vec<_> = resuming.by_ref().take(RESUME_BATCH).collect();
            if chunk.is_empty() || self.tasks.is_closed() {
                break;
            }
            if let Err(e) = self.store.put_many(chunk.iter().map(|(_, e)| e)).await {
                tracing::error!(error = %e, executions = chunk.len(), "cannot record the resumes; not resumed");
                continue;
            }
            for (workflow, execution) in chunk {
                tracing::debug!(id = %execution.id, workflow = %execution.workflow, "resuming execution");
                drop(self.start(Job {
                    workflow,
                    execution,
                    event: None,
                    awaited: false,
                }));
                resumed += 1;
            }
        }
        if resumed > 0 {
            tracing::info!(executions = resumed, "resumed unfinished executions");
        }
        resumed
    }

    /// Ends an execution that was resumed `max_resumes` times without
    /// finishing: `failed`, with an error that says why.
    async fn give_up(&self, mut execution: Execution) {
        let id = execution.id;
        let message = format!(
            "resumed {} time(s) after a stop without finishing; not resumed again, in case it is what stops the server (see the server's log)",
            execution.resumes
        );
        tracing::error!(%id, workflow = %execution.workflow, "{message}");
        execution.status = Status::Failed;
        execution.error = Some(message);
        execution.finished_at_ms = Some(now_ms());
        self.save(&execution, true).await;
    }

    /// Stops taking new work and waits up to `grace` for running executions.
    /// Whatever is still running then resumes on the next start.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }

    async fn run(&self, job: Job, cancel: &CancellationToken) -> Execution {
        let Job {
            workflow,
            mut execution,
            event,
            awaited,
        } = job;
        let gate = self.gate(&workflow);
        let placed = tokio::select! {
            placed = self.place(&gate, &execution, event) => placed,
            () = cancel.cancelled() => return self.cancelled(execution, awaited).await,
        };
        let (_running, event) = match placed {
            Ok(placed) => placed,
            Err(message) => {
                execution.status = Status::Failed;
                execution.error = Some(message);
                return self.finish(execution, awaited).await;
            }
        };
        execution.status = Status::Running;
        execution.started_at_ms.get_or_insert_with(now_ms);
        // Durations are capped at load; `checked_add` keeps a bad one from
        // panicking here all the same.
        let now = Instant::now();
        let deadline = now
            .checked_add(workflow.spec.limits.execution_timeout)
            .unwrap_or(now);

        let start = execution.first_unfinished_step();
        // `None`: the event's payload, read in place (never copied into a
        // JSON value nor parsed again).
        let mut previous: Option<Json> = match start {
            0 => None,
            n => Some(
                execution.steps[n - 1]
                    .output()
                    .cloned()
                    .unwrap_or_else(null),
            ),
        };
        for index in start..workflow.spec.steps.len() {
            let spec = &workflow.spec.steps[index];
            if cancel.is_cancelled() {
                return self.cancelled(execution, awaited).await;
            }
            match self
                .run_step(
                    &workflow,
                    &mut execution,
                    &event,
                    index,
                    previous
                        .as_deref()
                        .map_or(event.payload_text(), |p| p.get()),
                    Until { deadline, cancel },
                )
                .await
            {
                StepEnd::Cancelled => {
                    return self.cancelled(execution, awaited).await;
                }
                StepEnd::Next(output) => previous = Some(output),
                StepEnd::Halt(output) => {
                    previous = Some(output);
                    for rest in &mut execution.steps[index + 1..] {
                        rest.status = StepStatus::Skipped;
                    }
                    break;
                }
                StepEnd::Failed { timed_out, message } => {
                    execution.status = if timed_out {
                        Status::TimedOut
                    } else {
                        Status::Failed
                    };
                    execution.error = Some(format!("step `{}`: {message}", spec.id));
                    return self.finish(execution, awaited).await;
                }
            }
        }
        execution.status = Status::Succeeded;
        // A workflow has at least one step, so `previous` is a step's output.
        execution.output = Some(previous.unwrap_or_else(null));
        self.finish(execution, awaited).await
    }

    /// A running place among the workflow's `concurrency`, and the event.
    /// When a place is free at once the event stays as it came; otherwise
    /// the execution waits without it (its body is in the store, so
    /// waiting work costs no memory for bodies) and reads it back once a
    /// place is free. `Err` when the body is gone from the store.
    async fn place(
        &self,
        gate: &Gate,
        execution: &Execution,
        event: Option<Arc<Event>>,
    ) -> Result<(OwnedSemaphorePermit, Arc<Event>), String> {
        if let Some(event) = &event
            && let Ok(place) = gate.running.clone().try_acquire_owned()
        {
            return Ok((place, event.clone()));
        }
        drop(event);
        let place = gate
            .running
            .clone()
            .acquire_owned()
            .await
            .expect("a gate's semaphore is never closed");
        let id = execution.id;
        let body = until_stored(id, "read the event's body", || self.store.body(id))
            .await
            .ok_or("the event's body is missing from the store; it cannot run")?;
        let event = Event::new(
            execution.request.clone(),
            execution.content_type.clone(),
            body,
        );
        Ok((place, Arc::new(event)))
    }

    /// Ends a cancelled execution.
    async fn cancelled(&self, mut execution: Execution, awaited: bool) -> Execution {
        execution.cancel();
        self.finish(execution, awaited).await
    }

    /// Records the end: durably when `awaited`, so a sender's answer never
    /// runs ahead of the record.
    async fn finish(&self, mut execution: Execution, awaited: bool) -> Execution {
        execution.finished_at_ms = Some(now_ms());
        self.counters.finished(execution.status).increment(1);
        metrics::counter!(
            observe::WORKFLOW_EXECUTIONS,
            "workflow" => execution.workflow.clone(),
            "status" => execution.status.as_str()
        )
        .increment(1);
        // Committed before anyone hears of the end: a sync sender's answer
        // and the admission counts follow the record.
        self.save(&execution, awaited).await;
        self.release(execution.body_len);
        tracing::debug!(id = %execution.id, status = execution.status.as_str(), "execution finished");
        execution
    }

    /// Runs one step until it succeeds or runs out of attempts.
    async fn run_step(
        &self,
        workflow: &Workflow,
        execution: &mut Execution,
        event: &Event,
        index: usize,
        previous: &str,
        until: Until<'_>,
    ) -> StepEnd {
        let Until { deadline, cancel } = until;
        let spec = &workflow.spec.steps[index];
        let plugin = &workflow.plugins[index];
        let is_last = index + 1 == workflow.spec.steps.len();
        let (config, grants) = workflow
            .spec
            .step_setup(execution.environment.as_deref(), index);
        let config_text = config.to_string();
        loop {
            let number = execution.steps[index].attempts.len() as u32 + 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return StepEnd::Failed {
                    timed_out: true,
                    message: format!(
                        "the execution ran past its execution_timeout of {:?}",
                        workflow.spec.limits.execution_timeout
                    ),
                };
            }
            let limits = StepLimits {
                timeout: spec.timeout.min(remaining),
                memory: usize::try_from(workflow.spec.limits.memory).unwrap_or(usize::MAX),
                fuel: workflow.spec.limits.fuel,
            };
            let started_at_ms = now_ms();
            let call = StepCall {
                execution_id: execution.id.to_string(),
                workflow: &workflow.spec.name,
                step_id: &spec.id,
                event,
                previous,
                config: &config_text,
                attempt: number,
                idempotency_key: format!("{}:{}", execution.id, spec.id),
                grants,
                cancel: Some(cancel),
            };
            // What a crash test counts to find steps that ran twice; also
            // an operator's trace (`HOOKFLOW_LOG=hookflow::steps=debug`).
            tracing::debug!(target: "hookflow::steps", execution = %execution.id, step = %spec.id, attempt = number, "step starting");
            self.progress.notify(
                execution.id,
                Change::StepStarted {
                    index,
                    attempt: number,
                    at_ms: started_at_ms,
                },
            );
            let span = tracing::info_span!(
                "step",
                execution = %execution.id,
                workflow = %workflow.spec.name,
                step = %spec.id,
                attempt = number
            );
            let run = self.engine.run(plugin, call, limits).instrument(span).await;
            observe_attempt(&workflow.spec.name, &spec.id, &run);
            let StepRun {
                result,
                logs,
                logs_dropped_bytes,
                wall_time,
                peak_memory,
                host_calls,
                host_calls_dropped,
                host_time,
                fuel,
            } = run;
            let mut attempt = Attempt {
                number,
                started_at_ms,
                wall_time_us: u64::try_from(wall_time.as_micros()).unwrap_or(u64::MAX),
                peak_memory_bytes: peak_memory as u64,
                output: None,
                error: None,
                logs,
                logs_dropped_bytes,
                host_calls,
                host_calls_dropped,
                host_time_us: u64::try_from(host_time.as_micros()).unwrap_or(u64::MAX),
                fuel,
            };
            let record = &mut execution.steps[index];
            match result {
                Ok(success) => {
                    attempt.output = Some(success.output.clone());
                    record.attempts.push(attempt);
                    record.status = StepStatus::Succeeded;
                    if success.response.is_some() {
                        execution.response = success.response;
                    }
                    // The last step's result commits with the final status.
                    if !is_last && !success.halt {
                        self.save(execution, false).await;
                    }
                    return if success.halt {
                        StepEnd::Halt(success.output)
                    } else {
                        StepEnd::Next(success.output)
                    };
                }
                Err(error) => {
                    let kind = error.kind;
                    attempt.error = Some(error.clone());
                    record.attempts.push(attempt);
                    if kind == ErrorKind::Cancelled {
                        record.status = StepStatus::Cancelled;
                        return StepEnd::Cancelled;
                    }
                    let out_of_time = limits.timeout < spec.timeout && kind == ErrorKind::Timeout;
                    if kind.is_retryable() && number <= spec.retries.max && !out_of_time {
                        self.save(execution, false).await;
                        let wait = backoff(spec.retries, number).min(remaining);
                        tracing::debug!(step = %spec.id, attempt = number, ?wait, "retrying step");
                        tokio::select! {
                            () = tokio::time::sleep(wait) => continue,
                            () = cancel.cancelled() => {
                                execution.steps[index].status = StepStatus::Cancelled;
                                return StepEnd::Cancelled;
                            }
                        }
                    }
                    let record = &mut execution.steps[index];
                    let timed_out = kind == ErrorKind::Timeout;
                    record.status = if timed_out {
                        StepStatus::TimedOut
                    } else {
                        StepStatus::Failed
                    };
                    let message = if out_of_time {
                        format!(
                            "the execution ran past its execution_timeout of {:?}",
                            workflow.spec.limits.execution_timeout
                        )
                    } else {
                        error.message
                    };
                    return StepEnd::Failed { timed_out, message };
                }
            }
        }
    }

    /// Records `execution`, trying again while the store cannot write (a
    /// full disk, a reopen): a step's result or an execution's end is
    /// delayed by an outage, never dropped.
    /// `durable`: resolved once the record is on disk; otherwise once it
    /// is committed, durable within the store's `FLUSH_WITHIN` (for
    /// progress nobody has been told about, see [`Store::put_soon`]).
    async fn save(&self, execution: &Execution, durable: bool) {
        until_stored(execution.id, "record the execution", || async {
            if durable {
                self.store.put(execution, None).await
            } else {
                self.store.put_soon(execution).await
            }
        })
        .await;
        if execution.status.is_finished() {
            self.progress.forget(execution.id);
        }
        self.progress.notify(execution.id, Change::Saved);
    }
}

/// A resumed execution runs on the workflow version loaded now: its steps
/// still to run name the plugins that will run them, and when the version
/// is not the one it started on, the record keeps that one as
/// `started_on_version`.
fn on_current_version(execution: &mut Execution, workflow: &Workflow) {
    if execution.version.as_deref() != Some(workflow.version.as_str()) {
        if execution.started_on_version.is_none() {
            execution.started_on_version = execution.version.take();
        }
        execution.version = Some(workflow.version.clone());
    }
    for (record, plugin) in execution.steps.iter_mut().zip(&workflow.plugins) {
        if record.status != StepStatus::Succeeded {
            record.plugin_digest.clone_from(&plugin.digest);
        }
    }
}

/// Runs a store operation for execution `id` until the store answers it,
/// waiting [`SAVE_RETRY`] between tries: while the store cannot write or
/// read (a full disk, a reopen) the work waits instead of losing its place.
async fn until_stored<T, F, Fut>(id: uuid::Uuid, what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, crate::store::StoreError>>,
{
    let (mut wait, most) = SAVE_RETRY;
    loop {
        match op().await {
            Ok(done) => return done,
            Err(e) => {
                tracing::warn!(%id, error = %e, retry_in = ?wait, "cannot {what} yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(most);
            }
        }
    }
}

/// Resumed executions whose counts commit in one transaction.
const RESUME_BATCH: usize = 1000;

/// Waits between attempts to record an execution: from the first value,
/// doubling up to the second.
const SAVE_RETRY: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// Counts an attempt for `/metrics`: its wall time, and its outbound
/// requests by outcome.
fn observe_attempt(workflow: &str, step: &str, run: &StepRun) {
    metrics::histogram!(
        observe::STEP_DURATION,
        "workflow" => workflow.to_string(),
        "step" => step.to_string()
    )
    .record(run.wall_time.as_secs_f64());
    for call in &run.host_calls {
        if let HostCall::Http {
            status,
            denied,
            error,
            ..
        } = call
        {
            let outcome = match (status, denied, error) {
                (_, Some(_), _) => "denied",
                (Some(s), _, _) => match s / 100 {
                    1 => "1xx",
                    2 => "2xx",
                    3 => "3xx",
                    4 => "4xx",
                    _ => "5xx",
                },
                _ => "error",
            };
            metrics::counter!(
                observe::OUTBOUND_REQUESTS,
                "workflow" => workflow.to_string(),
                "outcome" => outcome
            )
            .increment(1);
        }
    }
}

/// What ends a step early: the execution's deadline, or a cancel.
#[derive(Clone, Copy)]
struct Until<'a> {
    deadline: Instant,
    cancel: &'a CancellationToken,
}

enum StepEnd {
    Next(Json),
    Halt(Json),
    Failed {
        timed_out: bool,
        message: String,
    },
    /// The execution was cancelled during the step (or its retry wait).
    Cancelled,
}

/// The wait before retry `number` (1-based): `backoff * 2^(number-1)`,
/// capped at five minutes, then drawn uniformly from its upper half.
fn backoff(retries: Retries, number: u32) -> Duration {
    let base = retries
        .backoff
        .saturating_mul(1u32 << number.saturating_sub(1).min(20))
        .min(Duration::from_secs(300));
    let half = base / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EnginePolicy;
    use crate::execution::RequestMeta;

    /// Finding 8 of the fault issue: a run that panics fails its execution
    /// (recorded) and gives back its admission count.
    #[tokio::test]
    async fn panics_and_poison_a_panicking_run_fails_its_execution() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let engine = Engine::new(EnginePolicy {
            max_instances: 1,
            ..EnginePolicy::default()
        })
        .unwrap();
        let runner = Runner::new(engine, store.clone());
        let body = bytes::Bytes::from_static(br#"{"a":1}"#);
        let event = Event::new(RequestMeta::default(), None, body.clone());
        let execution = Execution::queued("w", "webhook", &event, vec![]);
        let id = execution.id;
        store
            .put_new(&execution, body, None, Vec::new())
            .await
            .unwrap();
        // As `start` does.
        runner.unfinished.fetch_add(1, Ordering::Relaxed);
        runner.unfinished_bytes.fetch_add(7, Ordering::Relaxed);
        let done = runner
            .guarded(id, 7, async { panic!("a bug in the runner") })
            .await
            .unwrap();
        assert_eq!(done.status, Status::Failed);
        assert!(done.error.unwrap().contains("internal error"));
        let stored = store.get(id).await.unwrap().unwrap();
        assert_eq!(stored.status, Status::Failed);
        assert!(store.unfinished_records().await.unwrap().is_empty());
        assert_eq!(runner.unfinished(), 0);
        assert_eq!(runner.unfinished_bytes(), 0);
    }

    #[test]
    fn backoff_doubles_and_stays_in_its_upper_half() {
        let r = Retries {
            max: 5,
            backoff: Duration::from_millis(200),
        };
        for (n, base) in [(1, 200), (2, 400), (3, 800)] {
            let d = backoff(r, n).as_millis();
            assert!(d >= base / 2 && d <= base, "attempt {n}: {d}ms");
        }
        assert!(backoff(r, 40) <= Duration::from_secs(300));
    }
}
