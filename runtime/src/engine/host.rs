//! Per-call host state: WASI context, resource limits, deadline, the
//! step's captured logs, and its capabilities (outbound HTTP, key-value,
//! config) with their audit trail. One `Host` lives in one `Store` for one
//! call.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{Level, hookflow::plugin::log, v0_1};
use super::caps::Audit;
use super::caps::http::HttpGate;
use super::caps::kv::KvAccess;
use crate::execution::LogLine;

/// Log lines of one call, bounded in total bytes. Lines past the cap are
/// dropped and counted, so a chatty plugin cannot grow the host's memory or
/// the store.
#[derive(Debug, Default)]
pub struct Logs {
    cap: usize,
    used: usize,
    pub lines: Vec<LogLine>,
    pub dropped_bytes: usize,
}

impl Logs {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    pub fn push(&mut self, stream: &str, message: &str) {
        let room = self.cap - self.used;
        if room == 0 {
            self.dropped_bytes += message.len();
            return;
        }
        let kept = floor_char_boundary(message, room);
        self.used += kept.len();
        self.dropped_bytes += message.len() - kept.len();
        self.lines.push(LogLine {
            stream: stream.to_string(),
            message: kept.to_string(),
        });
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn floor_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A guest's stdout or stderr: keeps the first `cap` bytes, then discards
/// (never traps the guest for writing too much).
#[derive(Clone)]
pub struct CapturePipe {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    cap: usize,
    bytes: Vec<u8>,
    dropped: usize,
}

impl CapturePipe {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                ..Captured::default()
            })),
        }
    }

    /// The captured bytes and how many were dropped past the cap.
    pub fn take(&self) -> (Vec<u8>, usize) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut c.bytes), c.dropped)
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl CapturePipe {
    fn append(&self, buf: &[u8]) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = c.cap.saturating_sub(c.bytes.len());
        let kept = buf.len().min(room);
        c.bytes.extend_from_slice(&buf[..kept]);
        c.dropped += buf.len() - kept;
    }
}

impl StdoutStream for CapturePipe {
    // A direct stream: the default adapter would spawn a task per stream
    // and cost a cross-thread wake-up per write.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always writable: what is past the cap is counted and dropped.
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Memory and table limits for one instance. Exceeding them traps (rather
/// than `memory.grow` quietly returning -1) and is remembered, so the step's
/// error can say which limit it hit. The memory cap is for all of the
/// instance's linear memories together: a component with several memories
/// does not get the cap several times.
pub struct Limiter {
    pub memory_cap: usize,
    /// Bytes of every linear memory of the instance, together.
    pub memory_total: usize,
    pub peak_memory: usize,
    pub memory_exceeded: bool,
    /// The growth last allowed, given back if the allocation then fails.
    pending_growth: usize,
}

impl Limiter {
    pub fn new(memory_cap: usize) -> Self {
        Self {
            memory_cap,
            memory_total: 0,
            peak_memory: 0,
            memory_exceeded: false,
            pending_growth: 0,
        }
    }
}

const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Linear memories, tables and core instances one step instance may have.
/// Ordinary components have one memory and a few tables and instances;
/// more than this is refused when the plugin loads.
pub const MAX_MEMORIES: usize = 4;
pub const MAX_TABLES: usize = 8;
pub const MAX_CORE_INSTANCES: usize = 32;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_total.saturating_add(growth);
        if total > self.memory_cap {
            self.memory_exceeded = true;
            wasmtime::bail!(
                "memory limit exceeded: the step asked for {total} bytes in all, the limit is {}",
                self.memory_cap
            );
        }
        self.memory_total = total;
        self.pending_growth = growth;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_total -= std::mem::take(&mut self.pending_growth);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!("table limit exceeded: {desired} elements asked for");
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Everything a `Store` holds for one step call.
pub struct Host {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub logs: Logs,
    pub deadline: Instant,
    pub timed_out: bool,
    /// Cancels the step at its next epoch tick.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// The step was stopped by `cancel`.
    pub cancelled: bool,
    pub http: WasiHttpCtx,
    /// Decides each outbound request (the step's `allow.http`).
    pub gate: HttpGate,
    /// The `wasi:config` names granted, with their values.
    pub config: WasiConfigVariables,
    /// The key-value bucket granted, if any.
    pub kv: Option<KvAccess>,
    pub audit: Arc<Audit>,
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.gate,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for Host {
    fn log(&mut self, level: Level, message: String) {
        let stream = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.logs.push(stream, &message);
    }
}

/// `log` at 0.1.0: the same levels, under their older names.
impl v0_1::hookflow::plugin::log::Host for Host {
    fn log(&mut self, level: v0_1::hookflow::plugin::log::Level, message: String) {
        use v0_1::hookflow::plugin::log::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        log::Host::log(self, level, message);
    }
}

impl super::bindings::hookflow::plugin::types::Host for Host {}
impl v0_1::hookflow::plugin::types::Host for Host {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_stop_at_the_cap_and_count_the_rest() {
        let mut logs = Logs::new(10);
        logs.push("info", "12345678");
        logs.push("info", "abcdef");
        logs.push("info", "zzz");
        assert_eq!(logs.lines.len(), 2);
        assert_eq!(logs.lines[1].message, "ab");
        assert_eq!(logs.dropped_bytes, 4 + 3);
    }

    #[test]
    fn truncation_keeps_utf8_whole() {
        let mut logs = Logs::new(2);
        logs.push("info", "é1");
        assert_eq!(logs.lines[0].message, "é");
    }
}
