//! An action's rendered parameters, checked against its catalogue entry before anything is
//! sent: an unknown name, a missing required one or a value of the wrong type is
//! [`PlatformError::Invalid`]. Rendered values are taken leniently where the meaning is plain
//! (`"true"` for a boolean, `"42"` for an integer, `"a,b"` for a list of tags); `null` counts as
//! absent.

use serde_json::{Map, Value};

use crate::platforms::catalog::{ActionSpec, ParamType};
use crate::platforms::connector::PlatformError;

/// Checked parameters.
#[derive(Debug, Clone)]
pub(crate) struct Params<'a> {
    action: &'static str,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Params<'a> {
    /// Checks names, types, required parameters and `require_one_of` groups.
    pub(crate) fn check(spec: &ActionSpec, v: &'a Value) -> Result<Self, PlatformError> {
        let action = spec.name;
        let map = match v {
            Value::Null => None,
            Value::Object(m) => Some(m),
            _ => {
                return Err(PlatformError::Invalid(format!(
                    "{action}: parameters must be a table"
                )));
            }
        };
        let p = Params { action, map };
        if let Some(m) = map {
            for (k, v) in m {
                let Some(ps) = spec.params.iter().find(|ps| ps.name == k) else {
                    let known: Vec<&str> = spec.params.iter().map(|ps| ps.name).collect();
                    return Err(PlatformError::Invalid(format!(
                        "{action}: unknown parameter `{k}` (known: {})",
                        known.join(", ")
                    )));
                };
                if !v.is_null() && !type_ok(&ps.ty, v) {
                    let allowed = match ps.ty {
                        ParamType::Enum(values) => format!(" ({})", values.join(", ")),
                        _ => String::new(),
                    };
                    return Err(PlatformError::Invalid(format!(
                        "{action}: parameter `{k}` should be {}{allowed}, got {}",
                        type_name(&ps.ty),
                        json_kind(v)
                    )));
                }
            }
        }
        for ps in spec.params.iter().filter(|ps| ps.required) {
            if p.raw(ps.name).is_none() {
                return Err(PlatformError::Invalid(format!(
                    "{action}: missing required parameter `{}`",
                    ps.name
                )));
            }
        }
        for group in spec.require_one_of {
            if !group.iter().any(|n| p.raw(n).is_some()) {
                return Err(PlatformError::Invalid(format!(
                    "{action}: needs at least one of `{}`",
                    group.join("`, `")
                )));
            }
        }
        Ok(p)
    }

    /// The action these parameters are for.
    pub(crate) fn action(&self) -> &'static str {
        self.action
    }

    /// The value of `name`, `null` counting as absent.
    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map?.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter (numbers are written out).
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.raw(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A non-blank string parameter, trimmed.
    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.string(name)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// A boolean parameter (`"true"` / `"false"` accepted).
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        match self.raw(name)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => parse_bool(s),
            _ => None,
        }
    }

    /// An integer parameter (a numeric string accepted).
    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        match self.raw(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A Zendesk id: a positive integer.
    pub(crate) fn id(&self, name: &str) -> Result<Option<u64>, PlatformError> {
        match self.int(name) {
            None => Ok(None),
            Some(n) if n > 0 => Ok(Some(n.unsigned_abs())),
            Some(n) => Err(PlatformError::Invalid(format!(
                "{}: `{name}` must be a positive id, got {n}",
                self.action
            ))),
        }
    }

    /// A required Zendesk id.
    pub(crate) fn required_id(&self, name: &str) -> Result<u64, PlatformError> {
        self.id(name)?.ok_or_else(|| {
            PlatformError::Invalid(format!(
                "{}: missing required parameter `{name}`",
                self.action
            ))
        })
    }

    /// A list of strings (a comma-separated string accepted); blanks dropped.
    pub(crate) fn strings(&self, name: &str) -> Option<Vec<String>> {
        let items: Vec<String> = match self.raw(name)? {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.trim().to_owned()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Value::String(s) => s.split(',').map(|x| x.trim().to_owned()).collect(),
            _ => return None,
        };
        Some(items.into_iter().filter(|s| !s.is_empty()).collect())
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Whether a rendered value fits a parameter type (leniently, see the module docs).
fn type_ok(ty: &ParamType, v: &Value) -> bool {
    match ty {
        ParamType::String => v.is_string() || v.is_number(),
        ParamType::Integer => {
            v.is_i64() || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok())
        }
        ParamType::Number => v.is_number(),
        ParamType::Bool => v.is_boolean() || v.as_str().and_then(parse_bool).is_some(),
        ParamType::StringList => {
            v.is_string()
                || v.as_array()
                    .is_some_and(|a| a.iter().all(|x| x.is_string() || x.is_number()))
        }
        ParamType::Object => v.is_object(),
        ParamType::ObjectList => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        ParamType::Any => true,
        ParamType::Enum(values) => v.as_str().is_some_and(|s| values.contains(&s)),
        ParamType::Code(codes) => match v {
            Value::String(s) => codes.iter().any(|(n, _)| n.eq_ignore_ascii_case(s)),
            Value::Number(n) => n
                .as_i64()
                .is_some_and(|n| codes.iter().any(|(_, c)| *c == n)),
            _ => false,
        },
    }
}

fn type_name(ty: &ParamType) -> &'static str {
    match ty {
        ParamType::String => "a string",
        ParamType::Integer => "an integer",
        ParamType::Number => "a number",
        ParamType::Bool => "a boolean",
        ParamType::StringList => "a list of strings",
        ParamType::Object => "a table",
        ParamType::ObjectList => "a list of tables",
        ParamType::Any => "any value",
        ParamType::Enum(_) | ParamType::Code(_) => "one of the listed values",
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}
