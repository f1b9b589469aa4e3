//! The expression language of hookflow's first-party plugins, from
//! well-kept crates, one for all of them:
//!
//! - **paths** select values: RFC 9535 JSONPath (`serde_json_path`), with
//!   the root naming what it selects from: `$.a.b[0]` (the event's
//!   payload; `$` alone is all of it), `$previous.a` (the previous step's
//!   output), `$request['headers']['user-agent']` or
//!   `$request.headers['user-agent']` (the request: `method`, `path`,
//!   `query`, `remote_addr`, `received_at_ms`, `headers` by lower-case
//!   name). A path that can select one value at most (names and indexes
//!   only) gives it, or `null`; one with wildcards, filters, slices,
//!   unions or `..` gives the array of what it selects. A string that must
//!   start with a literal `$` is written `$$...`.
//! - **templates** make text: Jinja syntax (`minijinja`), e.g.
//!   `Push to {{ payload.ref }} by {{ payload.pusher.name }}`, with the
//!   variables `payload`, `previous` and `request`.
//! - **conditions** decide: a template expression, e.g.
//!   `payload.ref == "refs/heads/main" and previous.count > 3`, true when
//!   its value is truthy.

use minijinja::Environment;
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

/// The context of a `step-input` from any crate's bindings (of either
/// version of the world): `expr::context_of!(input)`.
#[macro_export]
macro_rules! context_of {
    ($input:expr) => {{
        let input = &$input;
        let r = &input.event.request;
        $crate::Context::from_text(
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

/// An expression that does not parse or cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError(pub String);

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExprError {}

/// The request metadata, as the `request` root sees it.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub remote_addr: &'a str,
    pub received_at_ms: u64,
    pub headers: &'a [(String, String)],
}

/// What expressions see: the payload, the previous output, the request.
pub struct Context {
    value: Value,
}

impl Context {
    /// A context whose `request` is already an object of the request's
    /// fields (as the helper crate's `Event::request` gives it).
    pub fn with_request(payload: Value, previous: Value, request: Value) -> Self {
        let mut value = Map::new();
        value.insert("payload".into(), payload);
        value.insert("previous".into(), previous);
        value.insert("request".into(), request);
        Self {
            value: Value::Object(value),
        }
    }

    pub fn new(payload: Value, previous: Value, request: Request<'_>) -> Self {
        let headers: Map<String, Value> = request
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
            .collect();
        let request = serde_json::json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "remote_addr": request.remote_addr,
            "received_at_ms": request.received_at_ms,
            "headers": headers,
        });
        Self::with_request(payload, previous, request)
    }

    /// Payload and previous from JSON text (as a step receives them).
    pub fn from_text(
        payload: &str,
        previous: &str,
        request: Request<'_>,
    ) -> Result<Self, ExprError> {
        let parse = |text: &str, what: &str| {
            serde_json::from_str(text).map_err(|e| ExprError(format!("{what} is not JSON: {e}")))
        };
        Ok(Self::new(
            parse(payload, "the payload")?,
            parse(previous, "the previous output")?,
            request,
        ))
    }

    /// The variables, as one object.
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// What the path `text` selects (see the crate's docs).
    pub fn select(&self, text: &str) -> Result<Value, ExprError> {
        let (root, rest) = if let Some(rest) = text.strip_prefix("$previous") {
            ("previous", rest)
        } else if let Some(rest) = text.strip_prefix("$request") {
            ("request", rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            ("payload", rest)
        } else {
            return Err(ExprError(format!(
                "`{text}` is not a path: paths start with `$`"
            )));
        };
        let path = JsonPath::parse(&format!("${rest}"))
            .map_err(|e| ExprError(format!("`{text}` is not a JSONPath (RFC 9535): {e}")))?;
        let nodes = path.query(&self.value[root]);
        Ok(if is_singular(rest) {
            nodes.first().cloned().unwrap_or(Value::Null)
        } else {
            Value::Array(nodes.all().into_iter().cloned().collect())
        })
    }

    /// `shape` with every string that starts with `$` replaced by what it
    /// selects (`$$` for a literal `$`); objects and arrays mapped
    /// throughout, everything else copied.
    pub fn map(&self, shape: &Value) -> Result<Value, ExprError> {
        each_string(shape, &|s| {
            Ok(match s.strip_prefix('$') {
                Some(rest) if rest.starts_with('$') => Value::String(rest.to_string()),
                Some(_) => self.select(s)?,
                None => Value::String(s.to_string()),
            })
        })
    }

    /// The template `text` rendered.
    pub fn render(&self, text: &str) -> Result<String, ExprError> {
        environment()
            .render_str(text, &self.value)
            .map_err(|e| ExprError(format!("template `{}`: {e}", clip(text))))
    }

    /// `shape` with every string rendered as a template; objects and
    /// arrays throughout, everything else copied.
    pub fn render_json(&self, shape: &Value) -> Result<Value, ExprError> {
        each_string(shape, &|s| self.render(s).map(Value::String))
    }

    /// Whether the condition `text` holds.
    pub fn test(&self, text: &str) -> Result<bool, ExprError> {
        let env = environment();
        let expr = env
            .compile_expression(text)
            .map_err(|e| ExprError(format!("condition `{}`: {e}", clip(text))))?;
        expr.eval(&self.value)
            .map(|v| v.is_true())
            .map_err(|e| ExprError(format!("condition `{}`: {e}", clip(text))))
    }
}

/// `shape` with each string replaced by what `f` makes of it, through
/// objects and arrays; other values copied.
fn each_string(
    shape: &Value,
    f: &dyn Fn(&str) -> Result<Value, ExprError>,
) -> Result<Value, ExprError> {
    Ok(match shape {
        Value::String(s) => f(s)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| each_string(v, f))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), each_string(v, f)?)))
                .collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

/// Undefined variables are errors, not empty text: a misspelt field is
/// told, not silently blank.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Whether a path (after its root) selects one value at most: only names
/// and indexes, no wildcard, filter, slice, union or descendant segment.
fn is_singular(rest: &str) -> bool {
    let mut quote = None;
    let mut prev = '\0';
    for c in rest.chars() {
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '*' | '?' | ':' | ',' => return false,
                '.' if prev == '.' => return false,
                _ => {}
            },
        }
        prev = c;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        let headers = vec![("User-Agent".to_string(), "curl/8".to_string())];
        Context::new(
            json!({"ref": "refs/heads/main", "commits": [{"id": "a"}, {"id": "b"}], "user-name": "ada"}),
            json!({"count": 4}),
            Request {
                method: "POST",
                path: "/hooks/x",
                query: "",
                remote_addr: "127.0.0.1:1",
                received_at_ms: 7,
                headers: &headers,
            },
        )
    }

    #[test]
    fn paths_select_from_their_root() {
        let c = ctx();
        assert_eq!(c.select("$.ref").unwrap(), "refs/heads/main");
        assert_eq!(c.select("$['user-name']").unwrap(), "ada");
        assert_eq!(c.select("$.commits[1].id").unwrap(), "b");
        assert_eq!(c.select("$.missing").unwrap(), Value::Null);
        assert_eq!(c.select("$previous.count").unwrap(), 4);
        assert_eq!(
            c.select("$request.headers['user-agent']").unwrap(),
            "curl/8"
        );
        assert_eq!(c.select("$request.method").unwrap(), "POST");
        assert_eq!(c.select("$").unwrap()["ref"], "refs/heads/main");
        // Many: always an array, even of one.
        assert_eq!(c.select("$.commits[*].id").unwrap(), json!(["a", "b"]));
        assert_eq!(
            c.select("$.commits[?@.id == 'a'].id").unwrap(),
            json!(["a"])
        );
        assert_eq!(c.select("$..id").unwrap(), json!(["a", "b"]));
        assert!(c.select("$.a b").is_err());
        assert!(c.select("plain").is_err());
    }

    #[test]
    fn shapes_map_paths_and_keep_literals() {
        let c = ctx();
        let out = c
            .map(&json!({"branch": "$.ref", "n": 1, "cost": "$$5", "ids": ["$.commits[0].id"]}))
            .unwrap();
        assert_eq!(
            out,
            json!({"branch": "refs/heads/main", "n": 1, "cost": "$5", "ids": ["a"]})
        );
    }

    #[test]
    fn templates_and_conditions_see_the_same_variables() {
        let c = ctx();
        assert_eq!(
            c.render("{{ payload.ref }} x{{ previous.count }} by {{ request.method }}")
                .unwrap(),
            "refs/heads/main x4 by POST"
        );
        assert_eq!(
            c.render_json(&json!({"t": "{{ payload.commits | length }}", "k": 2}))
                .unwrap(),
            json!({"t": "2", "k": 2})
        );
        assert!(
            c.test("payload.ref == 'refs/heads/main' and previous.count > 3")
                .unwrap()
        );
        assert!(!c.test("payload.ref is endingwith('/dev')").unwrap());
        let e = c.render("{{ payload.nope.deeper }}").unwrap_err();
        assert!(e.0.contains("template"), "{e}");
        assert!(c.test("payload.ref ==").is_err());
    }
}
