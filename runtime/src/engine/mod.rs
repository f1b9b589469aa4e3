//! The wasm engine: one `wasmtime::Engine` with a fixed policy, plugins
//! compiled once and pre-instantiated, and a fresh `Store` for every step
//! call.
//!
//! Policy, in one place: Cranelift only; the pooling instance allocator; an
//! epoch ticker thread shared by every call, driving deadlines; fuel
//! metering, limited when a workflow sets `limits.fuel`; a memory cap per
//! instance that traps when exceeded; WASI with no filesystem preopens, no
//! environment and no sockets; stdout and stderr captured into the step's
//! logs, capped; the capabilities of [`caps`] as far as the step's grant
//! goes. wasmtime types stay inside this module: the rest of the crate sees
//! [`Engine`], [`Plugin`], [`StepCall`] and [`StepRun`].

mod bindings;
mod cache;
pub mod caps;
mod host;
mod wasi;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Strategy,
    UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::WasiHttpCtx;

use crate::config::Grants;
use crate::execution::{ErrorKind, Event, HostCall, Json, LogLine, ShapedResponse, StepError};
use bindings::StepPre;
use caps::http::{HttpGate, HttpLimits};
use caps::kv::{KvAccess, KvBackend};
use caps::{Audit, HttpPolicy, KvPolicy, Redactor};
use host::{CapturePipe, Host, Limiter, Logs, floor_char_boundary};

/// Engine-wide limits, fixed at start.
#[derive(Debug, Clone)]
pub struct EnginePolicy {
    /// Step instances alive at once; calls beyond it wait for a slot.
    pub max_instances: u32,
    /// The largest linear memory any plugin may have (the per-workflow
    /// `limits.memory` must be at most this).
    pub max_memory: usize,
    /// Epoch tick: the granularity of step deadlines.
    pub tick: Duration,
    /// Bytes of logs (log import + stdout + stderr) kept per attempt.
    pub log_cap: usize,
    /// Bytes of output a step may return.
    pub max_output: usize,
    /// Bytes of HTTP answer body a step may shape.
    pub max_response_body: usize,
    /// Headers a step's HTTP answer may carry, and their bytes in all.
    pub max_response_headers: usize,
    pub max_response_header_bytes: usize,
    /// Bytes of error text kept from a step (the rest is cut).
    pub max_error_text: usize,
    /// Use the pooling instance allocator (the default, and what a server
    /// wants); `false` maps memory on demand for every instance.
    pub pooling: bool,
    /// Where compiled plugins are kept between loads (see [`cache`]);
    /// `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Outbound HTTP: the operator's ceiling and defaults.
    pub http: HttpPolicy,
    /// Key-value limits.
    pub kv: KvPolicy,
}

impl Default for EnginePolicy {
    fn default() -> Self {
        Self {
            max_instances: 100,
            max_memory: 1 << 30,
            tick: Duration::from_millis(10),
            log_cap: 64 * 1024,
            max_output: 4 << 20,
            max_response_body: 1 << 20,
            max_response_headers: 64,
            max_response_header_bytes: 16 * 1024,
            max_error_text: 4 * 1024,
            pooling: true,
            cache_dir: None,
            http: HttpPolicy::default(),
            kv: KvPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("could not configure the wasm engine: {0}")]
    Setup(String),
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error(
        "the component does not fit hookflow's `step` world (wit/plugin.wit) or asks for a capability hookflow does not grant: {0}"
    )]
    Link(String),
    #[error("the plugin failed when asked to describe itself: {0}")]
    Describe(String),
}

/// Stops the epoch ticker thread when the engine is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shared wasm engine. Cheap to share behind an `Arc`.
pub struct Engine {
    wasmtime: wasmtime::Engine,
    linker: Linker<Host>,
    /// Places for live step instances (`max_instances`): a call waits for
    /// one rather than failing when the pool is full.
    instances: Semaphore,
    policy: EnginePolicy,
    cache: Option<cache::CompiledCache>,
    /// TLS for outbound requests, built once.
    tls: Arc<rustls::ClientConfig>,
    /// Where granted key-value buckets live (the database), once set.
    kv: OnceLock<Arc<dyn KvBackend>>,
    _ticker: Ticker,
}

/// A compiled, pre-linked plugin, ready to instantiate.
pub struct Plugin {
    pre: StepPre<Host>,
    /// SHA-256 of the wasm bytes, hex.
    pub digest: String,
    /// The JSON Schema its `describe` export gives for a step's `config`.
    pub config_schema: Option<String>,
}

/// Limits for one step call.
#[derive(Debug, Clone, Copy)]
pub struct StepLimits {
    pub timeout: Duration,
    pub memory: usize,
    /// Fuel the attempt may consume (`limits.fuel`); `None`: unlimited.
    pub fuel: Option<u64>,
}

/// The input of one step call.
pub struct StepCall<'a> {
    pub execution_id: String,
    pub workflow: &'a str,
    pub step_id: &'a str,
    pub event: &'a Event,
    pub previous: &'a str,
    pub config: &'a str,
    pub attempt: u32,
    pub idempotency_key: String,
    /// What the step may do beyond computing.
    pub grants: &'a Grants,
    /// Cancelled: the step stops at its next epoch tick (or, inside a host
    /// call, at once) with [`ErrorKind::Cancelled`].
    pub cancel: Option<&'a CancellationToken>,
}

/// A step's successful result.
#[derive(Debug, Clone)]
pub struct StepSuccess {
    pub output: Json,
    pub halt: bool,
    pub response: Option<ShapedResponse>,
}

/// What came of one step call.
#[derive(Debug)]
pub struct StepRun {
    pub result: Result<StepSuccess, StepError>,
    pub logs: Vec<LogLine>,
    pub logs_dropped_bytes: u64,
    pub wall_time: Duration,
    pub peak_memory: usize,
    /// Outbound requests and key-value writes, sent or refused.
    pub host_calls: Vec<HostCall>,
    pub host_calls_dropped: u64,
    /// Time in host calls, within `wall_time`.
    pub host_time: Duration,
    /// Fuel consumed, when the call had a fuel limit.
    pub fuel: Option<u64>,
}

/// Bytes of each pooled memory, table and stack kept resident between
/// instances.
const KEEP_RESIDENT: usize = 2 << 20;

/// Extra time past a step's deadline before the host stops waiting for it,
/// for the rare case where the guest is inside a host call when the
/// deadline passes.
const HOST_GRACE: Duration = Duration::from_millis(500);

impl Engine {
    pub fn new(policy: EnginePolicy) -> Result<Arc<Self>, EngineError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(policy.max_instances)
            .total_core_instances(policy.max_instances * 16)
            .total_memories(policy.max_instances * 2)
            .total_tables(policy.max_instances * 8)
            .total_stacks(policy.max_instances)
            // Per component, so one plugin cannot take many slots (and
            // the memory cap many times): the same counts the store's
            // limiter allows.
            .max_memories_per_component(host::MAX_MEMORIES as u32)
            .max_tables_per_component(host::MAX_TABLES as u32)
            .max_core_instances_per_component(host::MAX_CORE_INSTANCES as u32)
            .max_memory_size(policy.max_memory)
            // Reset a slot by zeroing what a call dirtied (found through
            // PAGEMAP_SCAN where the kernel has it) and keep it resident:
            // no madvise, no page faults, no TLB shootdown per call.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT);

        let mut config = Config::new();
        config
            .strategy(Strategy::Cranelift)
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(true)
            .allocation_strategy(if policy.pooling {
                InstanceAllocationStrategy::Pooling(pool)
            } else {
                InstanceAllocationStrategy::OnDemand
            });
        let wasmtime =
            wasmtime::Engine::new(&config).map_err(|e| EngineError::Setup(e.to_string()))?;

        let linker = linker(&wasmtime).map_err(|e| EngineError::Setup(format!("{e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = wasmtime.weak();
            let stop = stop.clone();
            let tick = policy.tick;
            std::thread::Builder::new()
                .name("hookflow-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        match engine.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| EngineError::Setup(e.to_string()))?
        };

        let cache = policy.cache_dir.as_ref().and_then(|dir| {
            cache::CompiledCache::open(dir, &wasmtime)
                .inspect_err(|e| tracing::warn!(dir = %dir.display(), error = %e, "no compiled-code cache: plugins are compiled on every load"))
                .ok()
        });
        Ok(Arc::new(Self {
            wasmtime,
            linker,
            instances: Semaphore::new(policy.max_instances as usize),
            cache,
            tls: caps::http::tls_config(),
            kv: OnceLock::new(),
            policy,
            _ticker: Ticker {
                stop,
                thread: Some(thread),
            },
        }))
    }

    /// Keeps granted key-value buckets in `backend` (the database). Set
    /// once, before steps run; until then a `kv` grant opens nothing.
    pub fn set_kv_backend(&self, backend: Arc<dyn KvBackend>) {
        let _ = self.kv.set(backend);
    }

    /// The plugin whose bytes are `wasm` (hashing to `digest`) as native
    /// code: from the compiled-code cache when it holds a sound entry,
    /// compiled by Cranelift (and kept there) otherwise. Blocking.
    fn compile(&self, wasm: &[u8], digest: &str) -> Result<Component, EngineError> {
        if let Some(kept) = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&self.wasmtime, digest))
        {
            tracing::debug!(%digest, "plugin taken from the compiled-code cache");
            return Ok(kept);
        }
        let component = Component::new(&self.wasmtime, wasm)
            .map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        if let Some(cache) = &self.cache {
            cache.put(digest, &component);
        }
        Ok(component)
    }

    /// Compiles and links a plugin, then asks it to describe itself. Runs
    /// the compiler on a blocking thread: never on the request path.
    pub async fn load(self: &Arc<Self>, wasm: Vec<u8>) -> Result<Plugin, EngineError> {
        let digest = hex::encode(Sha256::digest(&wasm));
        let engine = self.clone();
        let key = digest.clone();
        let component = tokio::task::spawn_blocking(move || engine.compile(&wasm, &key))
            .await
            .map_err(|e| EngineError::Compile(e.to_string()))??;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| EngineError::Link(format!("{e:#}")))?;
        let pre = StepPre::new(pre).map_err(|e| EngineError::Link(format!("{e:#}")))?;

        let limits = StepLimits {
            timeout: Duration::from_secs(5),
            memory: self.policy.max_memory.min(256 << 20),
            fuel: None,
        };
        // Invariant: the semaphore is never closed.
        let _instance = self.instances.acquire().await;
        let (mut store, _, _) = self.store(limits, &Grants::default(), None);
        // The epoch deadline stops a describe() that computes forever; this
        // outer timeout stops one blocked inside a host call.
        let describe = async {
            let step = pre.instantiate_async(&mut store).await?;
            step.call_describe(&mut store).await
        };
        let late =
            || EngineError::Describe(format!("it did not answer within {:?}", limits.timeout));
        let info = match tokio::time::timeout(limits.timeout + HOST_GRACE, describe).await {
            Err(_) => return Err(late()),
            Ok(Ok(info)) => info,
            // Named by the limit it hit, not by the trap's backtrace.
            Ok(Err(_)) if store.data().timed_out => return Err(late()),
            Ok(Err(_)) if store.data().limiter.memory_exceeded => {
                return Err(EngineError::Describe(format!(
                    "it went past the memory limit of {} bytes",
                    limits.memory
                )));
            }
            Ok(Err(e)) => return Err(EngineError::Describe(one_line(&e))),
        };
        Ok(Plugin {
            pre,
            digest,
            config_schema: info.config_schema,
        })
    }

    /// A fresh store with its own WASI context, limits, deadline and the
    /// capabilities `grants` allows.
    fn store(
        &self,
        limits: StepLimits,
        grants: &Grants,
        cancel: Option<&CancellationToken>,
    ) -> (Store<Host>, CapturePipe, CapturePipe) {
        let stdout = CapturePipe::new(self.policy.log_cap);
        let stderr = CapturePipe::new(self.policy.log_cap);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let audit = Arc::new(Audit::default());
        let host = Host {
            wasi,
            table: wasmtime::component::ResourceTable::new(),
            limiter: Limiter::new(limits.memory),
            logs: Logs::new(self.policy.log_cap),
            deadline: Instant::now()
                .checked_add(limits.timeout)
                .unwrap_or_else(Instant::now),
            timed_out: false,
            cancel: cancel.cloned(),
            cancelled: false,
            http: WasiHttpCtx::new(),
            gate: HttpGate::new(
                HttpLimits::new(grants, &self.policy.http),
                self.tls.clone(),
                audit.clone(),
            ),
            config: grants
                .config
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_str()))
                .collect::<WasiConfigVariables>(),
            kv: grants.kv.clone().and_then(|grant| {
                Some(KvAccess {
                    backend: self.kv.get()?.clone(),
                    grant,
                    policy: self.policy.kv,
                })
            }),
            audit,
        };
        let mut store = Store::new(&self.wasmtime, host);
        store.limiter(|h| &mut h.limiter);
        // Unlimited unless the workflow sets `limits.fuel`; metered always.
        let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        // The deadline is armed before instantiation: start functions count.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            if ctx
                .data()
                .cancel
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
            {
                ctx.data_mut().cancelled = true;
                wasmtime::bail!("the execution was cancelled");
            }
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                wasmtime::bail!("the step ran past its timeout");
            }
            Ok(UpdateDeadline::Yield(1))
        });
        (store, stdout, stderr)
    }

    /// Runs one attempt of a step in a fresh instance.
    pub async fn run(&self, plugin: &Plugin, call: StepCall<'_>, limits: StepLimits) -> StepRun {
        // Invariant: the semaphore is never closed.
        let _instance = self.instances.acquire().await;
        let started = Instant::now();
        let (mut store, stdout, stderr) = self.store(limits, call.grants, call.cancel);
        let redact = Redactor::new(call.grants.secret_values());
        let input = to_wit(&call);
        let cancelled = async {
            match call.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(limits.timeout + HOST_GRACE, async {
                let step = plugin.pre.instantiate_async(&mut store).await?;
                step.call_run(&mut store, &input).await
            }) => Some(outcome),
            // Stuck in a host call (compute stops at its next tick).
            () = cancelled => None,
        };
        let wall_time = started.elapsed();
        let fuel = limits
            .fuel
            .map(|given| given.saturating_sub(store.get_fuel().unwrap_or(0)));

        let host = store.data_mut();
        let trail = host.audit.take(&redact);
        let mut logs = std::mem::take(&mut host.logs);
        drain_pipe(&mut logs, "stdout", &stdout);
        let stderr_tail = drain_pipe(&mut logs, "stderr", &stderr);
        for call in &trail.calls {
            if let HostCall::Http {
                denied: Some(why), ..
            }
            | HostCall::Kv {
                denied: Some(why), ..
            }
            | HostCall::Socket { denied: why, .. } = call
            {
                logs.push("hookflow", &format!("denied: {why}"));
            }
        }
        let limiter = &host.limiter;
        let timeout = || {
            Err(step_error(
                ErrorKind::Timeout,
                format!("the step ran past its timeout of {:?}", limits.timeout),
            ))
        };
        let cancelled = || {
            Err(step_error(
                ErrorKind::Cancelled,
                "the execution was cancelled".into(),
            ))
        };
        let result = match outcome {
            None => cancelled(),
            Some(Ok(Err(_))) if host.cancelled => cancelled(),
            Some(outcome) => match outcome {
                // The host stopped waiting: the guest is stuck in a host call.
                Err(_elapsed) => timeout(),
                Ok(Ok(Ok(out))) => self.accept_output(out),
                Ok(Ok(Err(e))) => Err(match e {
                    bindings::StepError::Retryable(m) => self.guest_error(ErrorKind::Retryable, m),
                    bindings::StepError::Permanent(m) => self.guest_error(ErrorKind::Permanent, m),
                }),
                Ok(Err(_)) if host.timed_out => timeout(),
                Ok(Err(e))
                    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) =>
                {
                    Err(step_error(
                        ErrorKind::Fuel,
                        format!(
                            "the step used up its fuel of {} (limits.fuel)",
                            limits.fuel.unwrap_or_default()
                        ),
                    ))
                }
                Ok(Err(_)) if limiter.memory_exceeded => Err(step_error(
                    ErrorKind::Memory,
                    format!(
                        "the step went past its memory limit of {} bytes",
                        limiter.memory_cap
                    ),
                )),
                Ok(Err(trap)) => {
                    Err(self.guest_error(ErrorKind::Trap, trap_message(&trap, stderr_tail)))
                }
            },
        };
        let mut result = result;
        let mut lines = logs.lines;
        if !redact.is_empty() {
            for line in &mut lines {
                redact.in_place(&mut line.message);
            }
            match &mut result {
                Ok(success) => {
                    if let Some(clean) = redact.json(success.output.get())
                        && let Ok(raw) = RawValue::from_string(clean)
                    {
                        success.output = raw;
                    }
                }
                Err(e) => redact.in_place(&mut e.message),
            }
        }
        StepRun {
            result,
            logs: lines,
            logs_dropped_bytes: logs.dropped_bytes as u64,
            wall_time,
            peak_memory: limiter.peak_memory,
            host_calls: trail.calls,
            host_calls_dropped: trail.dropped,
            host_time: trail.host_time,
            fuel,
        }
    }

    fn accept_output(&self, out: bindings::StepOutput) -> Result<StepSuccess, StepError> {
        let policy = &self.policy;
        let refuse = |what: String| Err(step_error(ErrorKind::Permanent, what));
        if out.output.len() > policy.max_output {
            return refuse(format!(
                "the step returned {} bytes of output; the limit is {}",
                out.output.len(),
                policy.max_output
            ));
        }
        if let Some(r) = &out.response {
            let header_bytes: usize = r.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
            if r.body.len() > policy.max_response_body {
                return refuse(format!(
                    "the step's response body is {} bytes; the limit is {}",
                    r.body.len(),
                    policy.max_response_body
                ));
            }
            if r.headers.len() > policy.max_response_headers
                || header_bytes > policy.max_response_header_bytes
            {
                return refuse(format!(
                    "the step's response headers are {} ({header_bytes} bytes); the limit is {} ({} bytes)",
                    r.headers.len(),
                    policy.max_response_headers,
                    policy.max_response_header_bytes
                ));
            }
            if !(100..=599).contains(&r.status) {
                return refuse(format!(
                    "the step's response status {} is not an HTTP status (100 to 599)",
                    r.status
                ));
            }
        }
        let output = RawValue::from_string(out.output).map_err(|e| {
            step_error(
                ErrorKind::Permanent,
                format!("the step's output is not valid JSON: {e}"),
            )
        })?;
        Ok(StepSuccess {
            output,
            halt: out.halt,
            response: out.response.map(|r| ShapedResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
        })
    }

    /// A step's own error, its text cut to `max_error_text` bytes.
    fn guest_error(&self, kind: ErrorKind, mut text: String) -> StepError {
        let max = self.policy.max_error_text;
        if text.len() > max {
            let kept = floor_char_boundary(&text, max).len();
            let cut = text.len() - kept;
            text.truncate(kept);
            text.push_str(&format!(" ... ({cut} bytes cut)"));
        }
        step_error(kind, text)
    }
}

/// The linker every plugin is linked against: WASI (minus sockets), the
/// capabilities (HTTP, key-value, config) and hookflow's own `log`, at
/// 0.2.0 and at 0.1.0.
fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<Host>> {
    let mut l = Linker::new(engine);
    wasi::add_to_linker(&mut l)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l)?;
    wasmtime_wasi_config::add_to_linker(&mut l, |h: &mut Host| WasiConfig::from(&h.config))?;
    bindings::wasi::keyvalue::store::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
    {
        use wasmtime_wasi::p2::bindings::sockets;
        sockets::tcp_create_socket::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
        sockets::udp_create_socket::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
        sockets::ip_name_lookup::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
    }
    bindings::wasi::keyvalue::atomics::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
    bindings::hookflow::plugin::types::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
    bindings::hookflow::plugin::log::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
    bindings::v0_1::hookflow::plugin::types::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
    bindings::v0_1::hookflow::plugin::log::add_to_linker::<Host, HasSelf<Host>>(&mut l, |h| h)?;
    Ok(l)
}

fn step_error(kind: ErrorKind, message: String) -> StepError {
    StepError { kind, message }
}

/// Moves captured output into the logs, one entry per line. Returns what
/// best explains a trap: a Rust panic's message, else the last line.
fn drain_pipe(logs: &mut Logs, stream: &str, pipe: &CapturePipe) -> Option<String> {
    let (bytes, dropped) = pipe.take();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &lines {
        logs.push(stream, line);
    }
    logs.dropped_bytes += dropped;
    if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at")) {
        let message: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("note:"))
            .copied()
            .collect();
        if !message.is_empty() {
            return Some(format!("panicked: {}", message.join(" ")));
        }
    }
    lines.last().map(|l| l.to_string())
}

/// A guest error in one line: the trap, or the innermost cause (a limit
/// the instance broke), without the wasm backtrace.
fn one_line(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("it trapped: {trap}"),
        None => err.root_cause().to_string(),
    }
}

fn trap_message(err: &wasmtime::Error, stderr_tail: Option<String>) -> String {
    let what = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("the step trapped: {trap}"),
        None => format!("the step failed: {}", err.root_cause()),
    };
    match stderr_tail {
        Some(line) => format!("{what} ({line})"),
        None => what,
    }
}

fn to_wit(call: &StepCall<'_>) -> bindings::StepInput {
    let event = call.event;
    let request = &event.request;
    bindings::StepInput {
        execution_id: call.execution_id.clone(),
        workflow: call.workflow.to_string(),
        step_id: call.step_id.to_string(),
        event: bindings::Event {
            payload: event.payload_text().to_string(),
            body: event.body.to_vec(),
            content_type: event.content_type.clone(),
            request: bindings::RequestMeta {
                method: request.method.clone(),
                path: request.path.clone(),
                query: request.query.clone(),
                headers: request.headers.clone(),
                remote_addr: request.remote_addr.clone(),
                received_at_ms: request.received_at_ms,
            },
        },
        previous: call.previous.to_string(),
        config: call.config.to_string(),
        attempt: call.attempt,
        idempotency_key: call.idempotency_key.clone(),
    }
}
