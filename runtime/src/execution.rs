//! The execution record: one event through one workflow, as stored in the
//! database and shown by the API. These are plain data types shared by
//! ingress, runner, store and api; none of them knows about HTTP, wasm or
//! redb.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The HTTP request that delivered an event, credentials removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote_addr: String,
    pub received_at_ms: u64,
}

/// An accepted event: the raw body and what came with it.
#[derive(Debug, Clone)]
pub struct Event {
    pub request: RequestMeta,
    pub content_type: Option<String>,
    /// The body exactly as received.
    pub body: Bytes,
    /// The body is a JSON document (already validated at ingress).
    pub is_json: bool,
    /// A form-encoded body as a JSON object (set by [`Event::new`]).
    pub form: Option<Json>,
}

impl Event {
    /// An event. Its content type, parsed once, says what the body is: JSON
    /// when the type is `application/json` or `+json`, or when there is no
    /// type (an empty body is never JSON); a form-encoded body also becomes
    /// a JSON object of its fields (a repeated field becomes an array). A
    /// type that does not parse as a media type is neither.
    pub fn new(request: RequestMeta, content_type: Option<String>, body: Bytes) -> Self {
        let media = content_type
            .as_deref()
            .map(|ct| ct.parse::<mime::Mime>().ok());
        let is_json = !body.is_empty()
            && match &media {
                None => true,
                Some(parsed) => parsed.as_ref().is_some_and(is_json_media),
            };
        let form = media
            .flatten()
            .filter(|m| m.essence_str() == mime::APPLICATION_WWW_FORM_URLENCODED.essence_str())
            .map(|_| form_object(&body));
        Self {
            request,
            content_type,
            body,
            is_json,
            form,
        }
    }

    /// The payload as JSON text: the body itself when it is JSON, the
    /// fields of a form, else `null`.
    pub fn payload_text(&self) -> &str {
        if let Some(form) = &self.form {
            return form.get();
        }
        if self.is_json {
            // Invariant: a JSON body is validated at intake before anything
            // reads its payload, and serde_json rejects invalid UTF-8.
            std::str::from_utf8(&self.body).unwrap_or("null")
        } else {
            "null"
        }
    }
}

/// `application/json`, or any `+json` type.
fn is_json_media(m: &mime::Mime) -> bool {
    m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
}

fn form_object(body: &[u8]) -> Json {
    let mut fields = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(body) {
        let v = Value::String(v.into_owned());
        match fields.get_mut(k.as_ref()) {
            Some(Value::Array(list)) => list.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
            None => {
                fields.insert(k.into_owned(), v);
            }
        }
    }
    // Invariant: a map of strings always serialises.
    serde_json::value::to_raw_value(&fields).unwrap_or_else(|_| null())
}

/// JSON `null`.
pub fn null() -> Json {
    // Invariant: "null" is valid JSON.
    RawValue::from_string("null".into()).unwrap_or_default()
}

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// Stopped through `POST /api/v1/executions/{id}/cancel`.
    Cancelled,
}

impl Status {
    pub fn is_finished(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(Value::String(s.to_string())).map_err(|_| {
            format!(
                "unknown status `{s}`: use queued, running, succeeded, failed, timed_out or cancelled"
            )
        })
    }
}

/// One line of a step's logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `stdout`, `stderr`, or the level the plugin gave the `log` import.
    pub stream: String,
    pub message: String,
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The plugin returned a retryable error.
    Retryable,
    /// The plugin returned a permanent error, or its output was invalid.
    Permanent,
    /// The plugin trapped (a panic, a bug, a limit).
    Trap,
    /// The plugin went past its memory limit.
    Memory,
    /// The step went past its timeout.
    Timeout,
    /// The step used up the fuel its workflow allows (`limits.fuel`).
    Fuel,
    /// The execution was cancelled while the step ran.
    Cancelled,
}

impl ErrorKind {
    /// Retryable errors, traps and timeouts are worth another attempt;
    /// running out of fuel is not (the same input takes the same fuel).
    pub fn is_retryable(self) -> bool {
        !matches!(
            self,
            ErrorKind::Permanent | ErrorKind::Fuel | ErrorKind::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    pub kind: ErrorKind,
    pub message: String,
}

/// An HTTP answer chosen by a step for a synchronous webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Stored and shown as base64 (a third over the bytes, where a JSON
    /// array of numbers was up to four times them); records written as an
    /// array still read.
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
}

/// Bytes as a base64 string in JSON; an array of numbers reads too.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Base64(String),
            Array(Vec<u8>),
        }
        match Stored::deserialize(d)? {
            Stored::Base64(text) => STANDARD.decode(text).map_err(serde::de::Error::custom),
            Stored::Array(bytes) => Ok(bytes),
        }
    }
}

/// JSON kept as the text it came as: validated once, never rebuilt.
pub type Json = Box<RawValue>;

/// One try at running a step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub started_at_ms: u64,
    pub wall_time_us: u64,
    pub peak_memory_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    pub logs: Vec<LogLine>,
    /// Log bytes dropped past the per-attempt cap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logs_dropped_bytes: u64,
    /// The audit trail: each outbound request and key-value write the step
    /// made or was refused, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_calls: Vec<HostCall>,
    /// Host calls past the per-attempt cap of the audit trail, counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_calls_dropped: u64,
    /// Time spent in host calls (outbound requests until their answer
    /// ended, key-value operations), within `wall_time_us`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_time_us: u64,
    /// Fuel the attempt consumed, when the workflow sets `limits.fuel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

/// One use of a granted capability, as the audit trail keeps it. Secret
/// values are redacted from every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostCall {
    /// An outbound request (`wasi:http/outgoing-handler`).
    Http {
        method: String,
        host: String,
        port: u16,
        /// The path, without the query.
        path: String,
        /// The answer's status, once it came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        bytes_out: u64,
        bytes_in: u64,
        /// From the request to the end of its answer (or its failure).
        duration_us: u64,
        /// Why the request was refused before it was sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        denied: Option<String>,
        /// Why it failed once sent (connection, timeout, size).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A key-value write (`wasi:keyvalue`), or a bucket refused.
    Kv {
        /// `set`, `delete`, `increment` or `open`.
        op: String,
        bucket: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        key: String,
        /// Bytes written (the value's length; 8 for an increment).
        bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        denied: Option<String>,
    },
    /// A socket or name lookup (`wasi:sockets`): always refused.
    Socket {
        /// `tcp`, `udp` (a socket of the address family in `target`) or
        /// `lookup` (of the name in `target`).
        op: String,
        target: String,
        denied: String,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Succeeded,
    Failed,
    TimedOut,
    /// Not run because an earlier step halted the workflow.
    Skipped,
    /// Stopped, or never run, because the execution was cancelled.
    Cancelled,
}

/// A step of an execution, with every attempt made at it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    /// The plugin file, relative to the workflow directory.
    pub plugin: String,
    /// SHA-256 of the plugin's wasm, hex.
    pub plugin_digest: String,
    pub status: StepStatus,
    pub attempts: Vec<Attempt>,
}

impl StepRecord {
    /// The output of the successful attempt, if any.
    pub fn output(&self) -> Option<&Json> {
        self.attempts.last().and_then(|a| a.output.as_ref())
    }
}

impl Execution {
    /// The output of the last step that succeeded: what a succeeded
    /// execution's `output` always is.
    pub fn last_step_output(&self) -> Option<&Json> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.status == StepStatus::Succeeded)
            .and_then(StepRecord::output)
    }
}

/// One event through one workflow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Execution {
    /// A UUID v7: ids sort by creation time.
    pub id: Uuid,
    pub workflow: String,
    pub status: Status,
    /// What started it: `webhook`, `api` (`POST /api/v1/run`), `replay`
    /// (`POST /api/v1/executions/{id}/replay`), `test`
    /// (`POST /api/v1/workflows/{name}/test`) or `cron` (a cron slot).
    pub trigger: String,
    /// Who it runs for, when the caller said (`POST /api/v1/run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The environment its steps run in (`[environments.NAME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The failed execution of the same delivery (same idempotency key)
    /// that this one retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<Uuid>,
    /// The execution whose stored event this one runs again
    /// (`POST /api/v1/executions/{id}/replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<Uuid>,
    /// How many times it was resumed after a stop without finishing.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub resumes: u32,
    /// The workflow version it runs on (see `GET /api/v1/workflows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version it started on, when it was resumed after a restart on
    /// a version loaded since (`version` is then the one it finished on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on_version: Option<String>,
    pub created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    pub request: RequestMeta,
    pub content_type: Option<String>,
    pub body_len: u64,
    pub body_is_json: bool,
    pub steps: Vec<StepRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ShapedResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Execution {
    /// A new `queued` execution for `event`, with a fresh UUID v7, started
    /// by `trigger` (`webhook`, `api`), with `steps` pending.
    pub fn queued(workflow: &str, trigger: &str, event: &Event, steps: Vec<StepRecord>) -> Self {
        Self {
            id: Uuid::now_v7(),
            workflow: workflow.to_string(),
            status: Status::Queued,
            trigger: trigger.to_string(),
            user: None,
            environment: None,
            retry_of: None,
            replay_of: None,
            resumes: 0,
            version: None,
            started_on_version: None,
            created_at_ms: event.request.received_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            request: event.request.clone(),
            content_type: event.content_type.clone(),
            body_len: event.body.len() as u64,
            body_is_json: event.is_json,
            steps,
            output: None,
            response: None,
            error: None,
        }
    }

    /// Ends it `cancelled`: the steps that did not run are `cancelled` too.
    /// (The end time is the caller's to set, with the record's write.)
    pub fn cancel(&mut self) {
        for step in &mut self.steps {
            if step.status == StepStatus::Pending {
                step.status = StepStatus::Cancelled;
            }
        }
        self.status = Status::Cancelled;
        self.error = Some("cancelled through the API".into());
    }

    /// The index of the first step not yet done: where a resumed execution
    /// picks up.
    pub fn first_unfinished_step(&self) -> usize {
        self.steps
            .iter()
            .position(|s| s.status != StepStatus::Succeeded)
            .unwrap_or(self.steps.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 6 of the fault issue: a shaped answer's body is stored as
    /// base64, not as an array of numbers, and old records still read.
    #[test]
    fn unbounded_guest_data_answer_bodies_are_stored_compactly() {
        let shaped = ShapedResponse {
            status: 200,
            headers: vec![],
            body: vec![0xff; 3000],
        };
        let json = serde_json::to_string(&shaped).unwrap();
        assert!(json.len() < 4200, "{} bytes of JSON for 3000", json.len());
        assert!(json.contains(r#""body":"////"#), "{json}");
        assert_eq!(
            serde_json::from_str::<ShapedResponse>(&json).unwrap(),
            shaped
        );
        let old = r#"{"status":200,"headers":[["a","b"]],"body":[104,105]}"#;
        let read: ShapedResponse = serde_json::from_str(old).unwrap();
        assert_eq!(read.body, b"hi");
    }

    #[test]
    fn status_parses_from_its_wire_name() {
        assert_eq!("timed_out".parse::<Status>(), Ok(Status::TimedOut));
        assert!("done".parse::<Status>().unwrap_err().contains("succeeded"));
        assert_eq!(Status::TimedOut.as_str(), "timed_out");
    }

    #[test]
    fn payload_of_a_non_json_body_is_null() {
        let event = Event {
            request: RequestMeta {
                method: "POST".into(),
                path: "/hooks/x".into(),
                query: String::new(),
                headers: vec![],
                remote_addr: "127.0.0.1:1".into(),
                received_at_ms: 0,
            },
            content_type: Some("text/plain".into()),
            body: Bytes::from_static(b"{\"a\":1}"),
            is_json: false,
            form: None,
        };
        assert_eq!(event.payload_text(), "null");
        let json = Event {
            is_json: true,
            ..event
        };
        assert_eq!(json.payload_text(), "{\"a\":1}");
    }

    /// Whether a non-empty body sent with `content_type` is JSON.
    fn is_json_type(content_type: &str) -> bool {
        let body = Bytes::from_static(b"{}");
        Event::new(RequestMeta::default(), Some(content_type.into()), body).is_json
    }

    #[test]
    fn json_is_told_by_content_type() {
        assert!(Event::new(RequestMeta::default(), None, Bytes::from_static(b"{}")).is_json);
        assert!(!Event::new(RequestMeta::default(), None, Bytes::new()).is_json);
        assert!(is_json_type("application/json; charset=utf-8"));
        assert!(is_json_type("Application/JSON"));
        assert!(is_json_type("application/vnd.api+json"));
        assert!(!is_json_type("text/plain"));
        assert!(!is_json_type("application/x-www-form-urlencoded"));
        assert!(!is_json_type("garbage"));
    }

    #[test]
    fn a_form_body_becomes_an_object() {
        let event = Event::new(
            RequestMeta {
                method: "POST".into(),
                path: "/hooks/x".into(),
                query: String::new(),
                headers: vec![],
                remote_addr: String::new(),
                received_at_ms: 0,
            },
            Some("application/x-www-form-urlencoded; charset=utf-8".into()),
            Bytes::from_static(b"name=John+Doe&tag=a&tag=b&emp_id=33&x=%26"),
        );
        let v: Value = serde_json::from_str(event.payload_text()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "John Doe", "tag": ["a", "b"], "emp_id": "33", "x": "&"})
        );
    }
}
