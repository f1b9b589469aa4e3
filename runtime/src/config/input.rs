//! Typed input: what a workflow's payload must look like, written as
//! `[input]` fields or as an `input_schema` JSON Schema file, and the check
//! that reports every violation at once.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use toml::Spanned;

use super::raw::default_true;
use super::scan::read_confined;
use super::validate::Checker;

/// The largest schema file read.
const MAX_SCHEMA_BYTES: u64 = 1 << 20;

/// Schema violations reported for one payload, at most.
const MAX_SCHEMA_ERRORS: usize = 50;

/// What a payload must satisfy before an execution is recorded.
#[derive(Debug, Clone, Default)]
pub enum InputRules {
    /// Anything goes.
    #[default]
    Any,
    /// Typed fields (`[input]`); the payload must be an object.
    Fields(Vec<InputField>),
    /// A JSON Schema (`input_schema`), compiled at load.
    Schema(Arc<jsonschema::Validator>),
}

/// A typed input field: the payload must carry it, with this type, unless
/// it is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputField {
    pub name: String,
    pub kind: FieldType,
    pub required: bool,
}

/// The type of a typed input field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

/// One problem with the payload: the field (a JSON pointer for schemas)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "a string",
            FieldType::Number => "a number",
            FieldType::Integer => "an integer",
            FieldType::Boolean => "a boolean",
            FieldType::Object => "an object",
            FieldType::Array => "an array",
        }
    }

    pub fn accepts(self, v: &Value) -> bool {
        match self {
            FieldType::String => v.is_string(),
            FieldType::Number => v.is_number(),
            FieldType::Integer => v.is_i64() || v.is_u64(),
            FieldType::Boolean => v.is_boolean(),
            FieldType::Object => v.is_object(),
            FieldType::Array => v.is_array(),
        }
    }
}

impl InputRules {
    /// Whether any payload passes, so it need not be parsed for the check.
    pub fn is_any(&self) -> bool {
        matches!(self, InputRules::Any)
    }

    /// Checks `payload`; every problem at once.
    pub fn check(&self, payload: &Value) -> Result<(), Vec<FieldError>> {
        let errors = match self {
            InputRules::Any => Vec::new(),
            InputRules::Fields(fields) => check_fields(fields, payload),
            InputRules::Schema(schema) => schema
                .iter_errors(payload)
                .take(MAX_SCHEMA_ERRORS)
                .map(|e| FieldError {
                    field: e.instance_path().to_string(),
                    message: format!("{}: {e}", e.instance_path()),
                })
                .collect(),
        };
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn check_fields(fields: &[InputField], payload: &Value) -> Vec<FieldError> {
    let Some(object) = payload.as_object() else {
        return vec![FieldError {
            field: String::new(),
            message: "the payload must be a JSON object (or a form)".into(),
        }];
    };
    fields
        .iter()
        .filter_map(|f| {
            let message = match object.get(&f.name) {
                None | Some(Value::Null) if f.required => {
                    format!("`{}` is required ({})", f.name, f.kind.as_str())
                }
                None | Some(Value::Null) => return None,
                Some(v) if f.kind.accepts(v) => return None,
                Some(v) => format!(
                    "`{}` must be {}, not {}",
                    f.name,
                    f.kind.as_str(),
                    json_kind(v)
                ),
            };
            Some(FieldError {
                field: f.name.clone(),
                message,
            })
        })
        .collect()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Checker<'_> {
    /// `[input]` or `input_schema` (not both).
    pub(super) fn input_rules(
        &mut self,
        fields: Option<Spanned<toml::Table>>,
        schema: Option<Spanned<String>>,
    ) -> InputRules {
        if let (Some(_), Some(schema)) = (&fields, &schema) {
            self.error(
                schema.span(),
                "use either [input] or input_schema, not both",
            );
        }
        if let Some(schema) = schema {
            let span = schema.span();
            return match self.schema(schema.get_ref()) {
                Ok(s) => InputRules::Schema(s),
                Err(e) => {
                    self.error(span, e);
                    InputRules::Any
                }
            };
        }
        match fields.map(|t| self.fields(t)) {
            Some(fields) if !fields.is_empty() => InputRules::Fields(fields),
            _ => InputRules::Any,
        }
    }

    /// `input_schema = "schemas/x.json"`: a JSON Schema file inside the
    /// workflow directory. Remote and file references are not resolved.
    fn schema(&self, written: &str) -> Result<Arc<jsonschema::Validator>, String> {
        let bytes = read_confined(self.dir, self.root, Path::new(written), MAX_SCHEMA_BYTES)
            .map_err(|e| format!("input_schema `{written}` {e}"))?;
        let schema: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("input_schema `{written}` is not JSON: {e}"))?;
        jsonschema::validator_for(&schema)
            .map(Arc::new)
            .map_err(|e| format!("input_schema `{written}` is not a valid JSON Schema: {e}"))
    }

    /// `[input]`: `name = "string"`, or `name = { type = "string", required = false }`.
    fn fields(&mut self, table: Spanned<toml::Table>) -> Vec<InputField> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(rename = "type")]
            kind: FieldType,
            #[serde(default = "default_true")]
            required: bool,
        }
        let span = table.span();
        let mut fields = Vec::new();
        for (name, value) in table.into_inner() {
            let parsed = match value {
                toml::Value::String(t) => FieldType::deserialize(toml::Value::String(t))
                    .map(|kind| Full {
                        kind,
                        required: true,
                    })
                    .map_err(|e| e.to_string()),
                other => Full::deserialize(other).map_err(|e| e.to_string()),
            };
            match parsed {
                Ok(f) => fields.push(InputField {
                    name,
                    kind: f.kind,
                    required: f.required,
                }),
                Err(e) => self.error(
                    span.clone(),
                    format!(
                        "input `{name}`: {}; write \"string\", \"number\", \"integer\", \"boolean\", \"object\" or \"array\", or {{ type = \"...\", required = false }}",
                        e.trim()
                    ),
                ),
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_report_every_problem() {
        let rules = InputRules::Fields(vec![
            InputField {
                name: "name".into(),
                kind: FieldType::String,
                required: true,
            },
            InputField {
                name: "emp_id".into(),
                kind: FieldType::Number,
                required: true,
            },
            InputField {
                name: "team".into(),
                kind: FieldType::String,
                required: false,
            },
        ]);
        assert_eq!(rules.check(&json!({"name": "Ada", "emp_id": 3})), Ok(()));
        let errors = rules.check(&json!({"emp_id": "3", "team": 7})).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "emp_id", "team"]);
        assert!(rules.check(&json!([1])).is_err());
        assert_eq!(InputRules::Any.check(&json!(null)), Ok(()));
    }
}
