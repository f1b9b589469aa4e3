//! `$`-path selection over a step's input, shared by `json-map` and
//! `respond`.
//!
//! - `$.a.b[0]` selects from the event's payload (`$` alone is all of it);
//! - `$previous.a` selects from the previous step's output;
//! - `$request.method` selects from the request metadata (`method`, `path`,
//!   `query`, `remote_addr`, `received_at_ms`, `headers.<lower-case name>`).
//!
//! A path that selects nothing yields `null`. A string that must start with a
//! literal `$` is written `$$...`. Any other string is itself.

use serde_json::Value;

/// The request metadata as the `$request` root.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub remote_addr: &'a str,
    pub received_at_ms: u64,
    pub headers: &'a [(String, String)],
}

impl Roots {
    /// The roots of a step's input: payload and previous output as JSON
    /// text, and the request.
    pub fn new(payload: &str, previous: &str, request: Request<'_>) -> Result<Self, BadPath> {
        let parse = |text: &str, what: &str| {
            serde_json::from_str(text).map_err(|e| BadPath(format!("{what} is not JSON: {e}")))
        };
        Ok(Self {
            payload: parse(payload, "payload")?,
            previous: parse(previous, "previous")?,
            request: serde_json::json!({
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "remote_addr": request.remote_addr,
                "received_at_ms": request.received_at_ms,
                "headers": request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<serde_json::Map<String, Value>>(),
            }),
        })
    }
}

/// The roots of a `step-input` from any crate's bindings:
/// `select::roots_of!(input)`.
#[macro_export]
macro_rules! roots_of {
    ($input:expr) => {{
        let input = &$input;
        let r = &input.event.request;
        $crate::Roots::new(
            &input.event.payload,
            &input.previous,
            $crate::Request {
                method: &r.method,
                path: &r.path,
                query: &r.query,
                remote_addr: &r.remote_addr,
                received_at_ms: r.received_at_ms,
                headers: &r.headers,
            },
        )
    }};
}

/// Why a template could not be applied.
#[derive(Debug)]
pub struct BadPath(pub String);

pub struct Roots {
    pub payload: Value,
    pub previous: Value,
    pub request: Value,
}

impl Roots {
    pub fn map(&self, template: &Value) -> Result<Value, BadPath> {
        Ok(match template {
            Value::String(s) => self.select(s)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.map(item))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.map(v)?)))
                    .collect::<Result<_, BadPath>>()?,
            ),
            other => other.clone(),
        })
    }

    pub fn select(&self, expr: &str) -> Result<Value, BadPath> {
        if let Some(literal) = expr.strip_prefix("$$") {
            return Ok(Value::String(format!("${literal}")));
        }
        let Some(rest) = expr.strip_prefix('$') else {
            return Ok(Value::String(expr.to_string()));
        };
        let (root, path) = if let Some(p) = rest.strip_prefix("previous") {
            (&self.previous, p)
        } else if let Some(p) = rest.strip_prefix("request") {
            (&self.request, p)
        } else {
            (&self.payload, rest)
        };
        let mut current = root;
        for segment in segments(path).map_err(|e| BadPath(format!("bad path `{expr}`: {e}")))? {
            let next = match segment {
                Segment::Key(k) => current.get(k),
                Segment::Index(i) => current.get(i),
            };
            match next {
                Some(v) => current = v,
                None => return Ok(Value::Null),
            }
        }
        Ok(current.clone())
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `.a.b[0].c` into segments.
fn segments(path: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err("empty field name".into());
            }
            out.push(Segment::Key(&r[..end]));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or("missing `]`")?;
            let index = r[..end]
                .parse()
                .map_err(|_| format!("`{}` is not an index", &r[..end]))?;
            out.push(Segment::Index(index));
            rest = &r[end + 1..];
        } else {
            return Err(format!("expected `.` or `[` at `{rest}`"));
        }
    }
    Ok(out)
}
