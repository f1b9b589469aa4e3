//! Capabilities a step may be granted, as standard WASI interfaces:
//! outbound HTTP ([`http`], `wasi:http/outgoing-handler` through
//! `wasmtime-wasi-http`, every request decided by hookflow's hook),
//! key-value ([`kv`], `wasi:keyvalue` on the redb file) and config
//! (`wasi:config/store` through `wasmtime-wasi-config`, only the names
//! granted). Each is always linked: what the grant does not cover is
//! refused at call time and written in the attempt's audit trail.

pub mod http;
pub mod kv;
mod sockets;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::HostPattern;
use crate::execution::HostCall;

/// Host calls kept in one attempt's audit trail; the rest are counted.
pub const MAX_AUDITED: usize = 256;

/// Bytes of a path or key kept in an audit entry.
pub const MAX_AUDITED_TEXT: usize = 256;

/// Operator-wide limits on outbound HTTP: the ceiling every grant is held
/// to, and the values a step that says nothing gets.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// `--allow-http`: the hosts any step may be granted. Empty: every
    /// public host. Loopback, private and link-local addresses are
    /// reachable only when a pattern here names them.
    pub ceiling: Arc<[HostPattern]>,
    pub timeout: Duration,
    pub max_timeout: Duration,
    pub max_response: u64,
    pub max_max_response: u64,
    pub max_calls: u32,
    pub max_max_calls: u32,
    /// Bytes of request body a step may send in one request.
    pub max_request_body: u64,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            ceiling: Arc::default(),
            timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(60),
            max_response: 1 << 20,
            max_max_response: 16 << 20,
            max_calls: 16,
            max_max_calls: 256,
            max_request_body: 16 << 20,
        }
    }
}

/// Operator-wide limits on key-value data.
#[derive(Debug, Clone, Copy)]
pub struct KvPolicy {
    /// Bytes of one key.
    pub max_key: usize,
    /// Bytes of one value.
    pub max_value: u64,
    /// Bytes of keys and values in one namespace, together.
    pub max_namespace: u64,
}

impl Default for KvPolicy {
    fn default() -> Self {
        Self {
            max_key: 512,
            max_value: 1 << 20,
            max_namespace: 64 << 20,
        }
    }
}

/// One attempt's audit trail and host time, shared with the tasks that
/// carry its outbound requests.
#[derive(Default)]
pub struct Audit {
    inner: Mutex<AuditInner>,
}

#[derive(Default)]
struct AuditInner {
    calls: Vec<HostCall>,
    dropped: u64,
    /// Time in host calls that are not outbound requests (those carry
    /// their own duration).
    other_time: Duration,
}

/// An entry of the trail, to be completed later (`None`: past the cap).
#[derive(Debug, Clone, Copy)]
pub struct Entry(Option<usize>);

/// What an attempt's audit trail came to.
#[derive(Debug, Default)]
pub struct AuditTrail {
    pub calls: Vec<HostCall>,
    pub dropped: u64,
    pub host_time: Duration,
}

impl Audit {
    fn lock(&self) -> std::sync::MutexGuard<'_, AuditInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, call: HostCall) -> Entry {
        let mut inner = self.lock();
        if inner.calls.len() >= MAX_AUDITED {
            inner.dropped += 1;
            return Entry(None);
        }
        inner.calls.push(call);
        Entry(Some(inner.calls.len() - 1))
    }

    pub fn update(&self, entry: Entry, f: impl FnOnce(&mut HostCall)) {
        if let Some(i) = entry.0
            && let Some(call) = self.lock().calls.get_mut(i)
        {
            f(call);
        }
    }

    pub fn add_time(&self, d: Duration) {
        self.lock().other_time += d;
    }

    /// The trail so far, with `redact` applied to its text.
    pub fn take(&self, redact: &Redactor) -> AuditTrail {
        let mut inner = self.lock();
        let mut calls = std::mem::take(&mut inner.calls);
        let mut host_time = inner.other_time;
        for call in &mut calls {
            match call {
                HostCall::Http {
                    path,
                    duration_us,
                    denied,
                    error,
                    ..
                } => {
                    host_time += Duration::from_micros(*duration_us);
                    redact.in_place(path);
                    for text in [denied, error].into_iter().flatten() {
                        redact.in_place(text);
                    }
                }
                HostCall::Kv { key, denied, .. } => {
                    redact.in_place(key);
                    if let Some(d) = denied {
                        redact.in_place(d);
                    }
                }
                HostCall::Socket { target, .. } => redact.in_place(target),
            }
        }
        AuditTrail {
            calls,
            dropped: inner.dropped,
            host_time,
        }
    }
}

/// At most [`MAX_AUDITED_TEXT`] bytes of `text`, cut on a character
/// boundary, with `...` when cut.
pub fn audited_text(text: &str) -> String {
    if text.len() <= MAX_AUDITED_TEXT {
        return text.to_string();
    }
    format!(
        "{}...",
        super::host::floor_char_boundary(text, MAX_AUDITED_TEXT)
    )
}

/// Replaces a step's secret values with `[redacted]` in what is kept of
/// it: logs, errors, output, the audit trail.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Each secret as written and as it appears inside a JSON string.
    needles: Vec<String>,
}

pub const REDACTED: &str = "[redacted]";

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            let escaped = serde_json::to_string(s).unwrap_or_default();
            let escaped = escaped
                .strip_prefix('"')
                .and_then(|e| e.strip_suffix('"'))
                .unwrap_or(s);
            for n in [s, escaped] {
                if !needles.iter().any(|have| have == n) {
                    needles.push(n.to_string());
                }
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Self { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    pub fn contains_secret(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }

    pub fn in_place(&self, text: &mut String) {
        if self.contains_secret(text) {
            for n in self.needles.iter() {
                *text = text.replace(n.as_str(), REDACTED);
            }
        }
    }

    /// `json` (valid JSON text) with secrets redacted inside its strings
    /// and keys; still valid JSON.
    pub fn json(&self, json: &str) -> Option<String> {
        if !self.contains_secret(json) {
            return None;
        }
        let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
        self.value(&mut value);
        Some(value.to_string())
    }

    fn value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => self.in_place(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (mut k, mut v) in entries {
                    self.in_place(&mut k);
                    self.value(&mut v);
                    map.insert(k, v);
                }
            }
            // A secret that is a number or `true` is not told apart
            // from any other value of the output.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_as_written_and_as_json() {
        let r = Redactor::new(["s3cr\"et", "tok-123", ""]);
        let mut log = "sent tok-123 and s3cr\"et".to_string();
        r.in_place(&mut log);
        assert_eq!(log, "sent [redacted] and [redacted]");
        let out = r
            .json(r#"{"token":"Bearer tok-123","q":"s3cr\"et","tok-123":1,"n":5}"#)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["token"], "Bearer [redacted]");
        assert_eq!(v["q"], "[redacted]");
        assert_eq!(v["[redacted]"], 1);
        assert_eq!(r.json(r#"{"clean":true}"#), None);
    }

    #[test]
    fn the_trail_stops_at_its_cap_and_counts_the_rest() {
        let audit = Audit::default();
        for i in 0..MAX_AUDITED + 3 {
            audit.record(HostCall::Kv {
                op: "set".into(),
                bucket: "b".into(),
                key: format!("k{i}"),
                bytes: 1,
                denied: None,
            });
        }
        let trail = audit.take(&Redactor::default());
        assert_eq!(trail.calls.len(), MAX_AUDITED);
        assert_eq!(trail.dropped, 3);
    }
}
