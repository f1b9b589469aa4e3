//! `json-map`: builds a new JSON object from selections of the event and the
//! previous output.
//!
//! The step's `config` is the shape of the output. Every string that starts
//! with `$` is a path, replaced by what it selects; everything else is copied
//! as written, and nested objects and arrays are mapped recursively:
//!
//! - `$.a.b[0]` selects from the event's payload (`$` alone is all of it);
//! - `$previous.a` selects from the previous step's output;
//! - `$request.method` selects from the request metadata (`method`, `path`,
//!   `query`, `remote_addr`, `received_at_ms`, `headers.<lower-case name>`).
//!
//! A path that selects nothing yields `null`. A string that must start with a
//! literal `$` is written `$$...`.

wit_bindgen::generate!({ path: "../../wit", world: "step" });

use serde_json::{Map, Value, json};

struct JsonMap;

impl Guest for JsonMap {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "json-map".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Builds a JSON object from $-paths into the event and previous output."
                .into(),
            config_schema: Some(json!({"type": "object"}).to_string()),
        }
    }

    fn run(input: StepInput) -> Result<StepOutput, StepError> {
        let config: Value = parse(&input.config, "config")?;
        if !config.is_object() {
            return Err(StepError::Permanent(
                "json-map: config must be a table of output fields".into(),
            ));
        }
        let request = &input.event.request;
        let roots = Roots {
            payload: parse(&input.event.payload, "payload")?,
            previous: parse(&input.previous, "previous")?,
            request: json!({
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "remote_addr": request.remote_addr,
                "received_at_ms": request.received_at_ms,
                "headers": request
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<Map<String, Value>>(),
            }),
        };
        let output = roots.map(&config)?;
        Ok(StepOutput {
            output: output.to_string(),
            halt: false,
            response: None,
        })
    }
}

struct Roots {
    payload: Value,
    previous: Value,
    request: Value,
}

impl Roots {
    fn map(&self, template: &Value) -> Result<Value, StepError> {
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
                    .collect::<Result<_, StepError>>()?,
            ),
            other => other.clone(),
        })
    }

    fn select(&self, expr: &str) -> Result<Value, StepError> {
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
        for segment in segments(path)
            .map_err(|e| StepError::Permanent(format!("json-map: bad path `{expr}`: {e}")))?
        {
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

fn parse(text: &str, what: &str) -> Result<Value, StepError> {
    serde_json::from_str(text)
        .map_err(|e| StepError::Permanent(format!("json-map: {what} is not JSON: {e}")))
}

export!(JsonMap);
