//! TOML text → JSON value plus a table from JSON pointer to source span, so that schema errors
//! (which speak JSON pointers) and cross-reference errors can point at the exact TOML position.

use std::collections::HashMap;
use std::ops::Range;

use serde_json::{Map, Number, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Where a JSON pointer's key and value sit in the TOML text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Spans {
    record: bool,
    map: HashMap<String, (Option<Range<usize>>, Range<usize>)>,
}

/// A TOML syntax error.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    /// Byte range.
    pub(crate) span: Option<Range<usize>>,
    /// Message, lower-case.
    pub(crate) message: String,
}

/// A parsed document.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    /// The document as JSON (TOML datetimes become strings).
    pub(crate) value: Value,
    /// Pointer → span, when asked for.
    pub(crate) spans: Spans,
}

/// Parses TOML into JSON without recording positions (the fast path: a valid file never
/// needs them). Syntax errors come back all at once, with their own spans; the value is then
/// what could be recovered (useful only to learn the file's `id`).
pub(crate) fn parse(text: &str) -> (Value, Vec<SyntaxError>) {
    let (doc, errors) = parse_with(text, false);
    (doc.value, errors)
}

/// Parses TOML and records the span of every key and value.
pub(crate) fn parse_spanned(text: &str) -> Document {
    parse_with(text, true).0
}

fn parse_with(text: &str, record: bool) -> (Document, Vec<SyntaxError>) {
    let (table, errors) = DeTable::parse_recoverable(text);
    let mut spans = Spans {
        record,
        ..Spans::default()
    };
    let mut value_errors = Vec::new();
    let value = table_to_json(table.get_ref(), "", &mut spans, &mut value_errors);
    spans.insert(String::new(), None, table.span());
    let mut out: Vec<SyntaxError> = errors
        .into_iter()
        .map(|e| SyntaxError {
            span: e.span(),
            message: lower_first(e.message().trim()),
        })
        .collect();
    if out.is_empty() {
        out = value_errors;
    }
    (Document { value, spans }, out)
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) if !c.as_str().starts_with(|x: char| x.is_uppercase()) => {
            f.to_lowercase().collect::<String>() + c.as_str()
        }
        Some(f) => f.to_string() + c.as_str(),
        None => String::new(),
    }
}

/// Escapes one JSON pointer token (RFC 6901).
pub(crate) fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn table_to_json(
    table: &DeTable<'_>,
    pointer: &str,
    spans: &mut Spans,
    errors: &mut Vec<SyntaxError>,
) -> Value {
    let mut map = Map::new();
    for (k, v) in table.iter() {
        let key: &str = k.get_ref();
        let p = if spans.record {
            format!("{pointer}/{}", escape_token(key))
        } else {
            String::new()
        };
        let value = value_to_json(v, &p, spans, errors);
        spans.insert(p, Some(k.span()), v.span());
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

fn value_to_json(
    v: &Spanned<DeValue<'_>>,
    pointer: &str,
    spans: &mut Spans,
    errors: &mut Vec<SyntaxError>,
) -> Value {
    match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            let (neg, digits) = match digits.strip_prefix('-') {
                Some(d) => (true, d.to_owned()),
                None => (
                    false,
                    digits.strip_prefix('+').unwrap_or(&digits).to_owned(),
                ),
            };
            let digits = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .unwrap_or(&digits);
            match i64::from_str_radix(digits, i.radix()) {
                Ok(n) => Value::Number(Number::from(if neg { -n } else { n })),
                Err(_) => {
                    errors.push(SyntaxError {
                        span: Some(v.span()),
                        message: format!("integer `{}` is out of range", i.as_str()),
                    });
                    Value::Null
                }
            }
        }
        DeValue::Float(f) => {
            let text: String = f.as_str().chars().filter(|c| *c != '_').collect();
            match text.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    errors.push(SyntaxError {
                        span: Some(v.span()),
                        message: format!(
                            "float `{}` cannot be used here (nan and inf are not allowed)",
                            f.as_str()
                        ),
                    });
                    Value::Null
                }
            }
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = if spans.record {
                        format!("{pointer}/{i}")
                    } else {
                        String::new()
                    };
                    let value = value_to_json(item, &p, spans, errors);
                    spans.insert(p, None, item.span());
                    value
                })
                .collect(),
        ),
        DeValue::Table(t) => table_to_json(t, pointer, spans, errors),
    }
}

// === impl Spans ===

impl Spans {
    fn insert(&mut self, pointer: String, key: Option<Range<usize>>, value: Range<usize>) {
        if self.record {
            self.map.insert(pointer, (key, value));
        }
    }

    /// The span of the value at `pointer`, or of the nearest ancestor that has one.
    pub(crate) fn value(&self, pointer: &str) -> Option<Range<usize>> {
        let mut p = pointer;
        loop {
            if let Some((_, v)) = self.map.get(p) {
                return Some(v.clone());
            }
            let cut = p.rfind('/')?;
            p = &p[..cut];
        }
    }

    /// The span of the key at `pointer` (falls back to the value, then to ancestors).
    pub(crate) fn key(&self, pointer: &str) -> Option<Range<usize>> {
        match self.map.get(pointer) {
            Some((Some(k), _)) => Some(k.clone()),
            _ => self.value(pointer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_maps_spans() {
        let text = "id = \"a\"\nn = 0x1F\nf = 1_000.5\n[t]\n\"x.y\" = [1, { z = true }]\n";
        let doc = parse_spanned(text);
        assert_eq!(
            doc.value,
            serde_json::json!({"id": "a", "n": 31, "f": 1000.5, "t": {"x.y": [1, {"z": true}]}})
        );
        let s = doc.spans.value("/t/x.y/1/z").unwrap();
        assert_eq!(&text[s], "true");
        let k = doc.spans.key("/id").unwrap();
        assert_eq!(&text[k], "id");
        // A pointer that does not exist falls back to its nearest ancestor.
        let s = doc.spans.value("/t/x.y/1/nope").unwrap();
        assert!(text[s].contains("z = true"));
    }

    #[test]
    fn reports_every_syntax_error() {
        let (_, errors) = parse("a = \nb = \"unterminated\nc = 1\n");
        assert!(!errors.is_empty());
        assert!(errors.iter().all(|e| e.span.is_some()));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (_, errors) = parse("a = 1\na = 2\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
