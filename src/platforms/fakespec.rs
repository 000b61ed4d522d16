//! A platform's API description (an OpenAPI document or a Google discovery document) reduced
//! to what a fake checks of a request: [`ApiSpec::parse`] and [`ApiSpec::check`], no I/O. The
//! Freshdesk fake checks against a description written into it; the other fakes against the
//! vendor's own documents, which only the tests read ([`super::fakevendor`], `test-support`):
//! in the default build (`supportopsd demo`) those fakes skip the check.

use std::collections::{HashMap, HashSet};

use http::Method;
use regex::Regex;
use serde_json::{Map, Value};

/// One operation of an API description.
#[derive(Debug)]
struct Operation {
    method: Method,
    template: String,
    pattern: Regex,
    /// Literal characters of the template (more is more specific).
    literal_len: usize,
    /// Query parameter → required.
    query: HashMap<String, bool>,
    /// The JSON body's schema, if the operation takes one.
    body: Option<Value>,
}

/// A platform's API description, reduced to what a fake checks: which method and path exist,
/// which query parameters they take (and require), and the schema of their JSON body.
#[derive(Debug)]
pub struct ApiSpec {
    name: String,
    /// Path prefixes of the servers (`/1`, `/api/v2`), tried when a path does not match as is.
    prefixes: Vec<String>,
    ops: Vec<Operation>,
    /// Query parameters every operation takes (Google's standard parameters).
    common_query: HashSet<String>,
    /// `components.schemas` / `definitions` / discovery `schemas`.
    schemas: Map<String, Value>,
    discovery: bool,
}

/// Why a request is not one the spec allows.
pub type SpecErrors = Vec<String>;

impl ApiSpec {
    /// Reads an OpenAPI 3 / Swagger 2 document or a Google discovery document.
    pub fn parse(name: &str, doc: &Value) -> ApiSpec {
        if doc.get("discoveryVersion").is_some() {
            return ApiSpec::parse_discovery(name, doc);
        }
        let mut prefixes = Vec::new();
        for s in doc
            .get("servers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(url) = s.get("url").and_then(Value::as_str) {
                let path = url
                    .split_once("://")
                    .map_or(url, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
                if !path.is_empty() && path != "/" {
                    prefixes.push(path.trim_end_matches('/').to_owned());
                }
            }
        }
        if let Some(base) = doc.get("basePath").and_then(Value::as_str)
            && base != "/"
        {
            prefixes.push(base.trim_end_matches('/').to_owned());
        }
        let schemas = doc
            .pointer("/components/schemas")
            .or_else(|| doc.get("definitions"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut ops = Vec::new();
        for (path, item) in doc
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let shared: Vec<Value> = item
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (verb, op) in item.as_object().into_iter().flatten() {
                let Ok(method) = Method::from_bytes(verb.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                if verb == "parameters" {
                    continue;
                }
                let mut query = HashMap::new();
                let mut body = None;
                let params = shared.iter().chain(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
                for p in params {
                    let p = resolve_ref(doc, p);
                    let place = p.get("in").and_then(Value::as_str).unwrap_or("");
                    let Some(n) = p.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    let required = p.get("required").and_then(Value::as_bool) == Some(true);
                    match place {
                        "query" | "formData" => {
                            *query.entry(n.to_owned()).or_insert(false) |= required;
                        }
                        "body" => body = p.get("schema").cloned(),
                        _ => {}
                    }
                }
                if let Some(rb) = op.get("requestBody") {
                    let rb = resolve_ref(doc, rb);
                    body = rb
                        .get("content")
                        .and_then(Value::as_object)
                        .and_then(|c| {
                            c.iter()
                                .find(|(t, _)| t.contains("json"))
                                .or_else(|| c.iter().next())
                        })
                        .and_then(|(_, m)| m.get("schema"))
                        .cloned();
                }
                ops.extend(Operation::new(method, path, query, body));
            }
        }
        ApiSpec {
            name: name.to_owned(),
            prefixes,
            ops,
            common_query: HashSet::new(),
            schemas,
            discovery: false,
        }
    }

    fn parse_discovery(name: &str, doc: &Value) -> ApiSpec {
        fn walk(node: &Value, ops: &mut Vec<Operation>) {
            for m in node
                .get("methods")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|o| o.values())
            {
                let Some(verb) = m.get("httpMethod").and_then(Value::as_str) else {
                    continue;
                };
                let Ok(method) = Method::from_bytes(verb.as_bytes()) else {
                    continue;
                };
                let Some(path) = m.get("path").and_then(Value::as_str) else {
                    continue;
                };
                let mut query = HashMap::new();
                for (n, p) in m
                    .get("parameters")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if p.get("location").and_then(Value::as_str) == Some("query") {
                        let required = p.get("required").and_then(Value::as_bool) == Some(true);
                        query.insert(n.clone(), required);
                    }
                }
                let body = m.get("request").cloned();
                ops.extend(Operation::new(method, &format!("/{path}"), query, body));
            }
            for r in node
                .get("resources")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|o| o.values())
            {
                walk(r, ops);
            }
        }
        let mut ops = Vec::new();
        walk(doc, &mut ops);
        let common_query = doc
            .get("parameters")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut prefixes = Vec::new();
        if let Some(sp) = doc.get("servicePath").and_then(Value::as_str)
            && !sp.is_empty()
        {
            prefixes.push(format!("/{}", sp.trim_matches('/')));
        }
        ApiSpec {
            name: name.to_owned(),
            prefixes,
            ops,
            common_query,
            schemas: doc
                .get("schemas")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            discovery: true,
        }
    }

    /// Whether the spec describes `method path` at all.
    pub fn describes(&self, method: &Method, path: &str) -> bool {
        self.find(method, path).is_some()
    }

    fn find(&self, method: &Method, path: &str) -> Option<&Operation> {
        let path = match path.trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        let candidates = std::iter::once(path.to_owned()).chain(
            self.prefixes
                .iter()
                .filter_map(|p| path.strip_prefix(p.as_str()).map(str::to_owned)),
        );
        for p in candidates {
            let best = self
                .ops
                .iter()
                .filter(|o| o.method == method && o.pattern.is_match(&p))
                .max_by_key(|o| o.literal_len);
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// Checks a request against the spec: the operation must exist; query parameters must be
    /// ones it declares (`allow_query` lists extras the fake accepts, such as auth
    /// parameters), and the required ones present; a JSON body must have the required
    /// properties of its schema and, where the schema closes it (`additionalProperties:
    /// false`, or always in a discovery document), no others.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        allow_query: &[&str],
    ) -> Result<(), SpecErrors> {
        let Some(op) = self.find(method, path) else {
            return Err(vec![format!("{}: no operation {method} {path}", self.name)]);
        };
        let mut errors = Vec::new();
        for (k, _) in query {
            let known = op.query.contains_key(k)
                || self.common_query.contains(k)
                || allow_query.contains(&k.as_str());
            if !known {
                errors.push(format!(
                    "{method} {}: unknown query parameter `{k}`",
                    op.template
                ));
            }
        }
        for (k, required) in &op.query {
            if *required && !query.iter().any(|(q, _)| q == k) {
                errors.push(format!(
                    "{method} {}: missing required query parameter `{k}`",
                    op.template
                ));
            }
        }
        if let (Some(schema), Some(body)) = (&op.body, body) {
            self.check_value(schema, body, "body", 0, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn schema<'a>(&'a self, s: &'a Value) -> &'a Value {
        let mut s = s;
        for _ in 0..8 {
            let Some(r) = s.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let name = r.rsplit('/').next().unwrap_or(r);
            match self.schemas.get(name) {
                Some(next) => s = next,
                None => break,
            }
        }
        s
    }

    fn check_value(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        depth: usize,
        errors: &mut SpecErrors,
    ) {
        if depth > 6 {
            return;
        }
        let schema = self.schema(schema);
        // Composite schemas: check the properties of every `allOf` part; skip `oneOf`/`anyOf`
        // (a fake cannot tell which branch was meant without more than the spec gives).
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            let mut required = Vec::new();
            for part in all {
                let part = self.schema(part);
                if let Some(p) = part.get("properties").and_then(Value::as_object) {
                    merged.extend(p.clone());
                }
                if let Some(r) = part.get("required").and_then(Value::as_array) {
                    required.extend(r.clone());
                }
            }
            let synthetic =
                serde_json::json!({"type": "object", "properties": merged, "required": required});
            self.check_value(&synthetic, value, at, depth + 1, errors);
            return;
        }
        let Some(obj) = value.as_object() else {
            if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
                for (i, v) in arr.iter().enumerate() {
                    self.check_value(items, v, &format!("{at}[{i}]"), depth + 1, errors);
                }
            }
            return;
        };
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(r) {
                errors.push(format!("{at}: missing required property `{r}`"));
            }
        }
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let closed = self.discovery
            || schema.get("additionalProperties").and_then(Value::as_bool) == Some(false);
        for (k, v) in obj {
            match props.get(k) {
                Some(s) => self.check_value(s, v, &format!("{at}.{k}"), depth + 1, errors),
                None if closed => errors.push(format!("{at}: unknown property `{k}`")),
                None => {}
            }
        }
    }
}

impl Operation {
    fn new(
        method: Method,
        template: &str,
        query: HashMap<String, bool>,
        body: Option<Value>,
    ) -> Option<Operation> {
        // A trailing slash is not significant (Trello's spec has `/webhooks/`).
        let template = match template.trim_end_matches('/') {
            "" => "/",
            t => t,
        };
        let mut pattern = String::from("^");
        let mut literal_len = 0;
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let lit = &rest[..open];
            pattern.push_str(&regex::escape(lit));
            literal_len += lit.len();
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            let var = &rest[open + 1..close.min(rest.len())];
            pattern.push_str(if var.starts_with('+') { ".+" } else { "[^/]+" });
            rest = rest.get(close + 1..).unwrap_or("");
        }
        pattern.push_str(&regex::escape(rest));
        literal_len += rest.len();
        pattern.push('$');
        Some(Operation {
            method,
            template: template.to_owned(),
            pattern: Regex::new(&pattern).ok()?,
            literal_len,
            query,
            body,
        })
    }
}

/// Resolves a local `$ref` (`#/components/parameters/x`) in an OpenAPI document.
fn resolve_ref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with("#/") => doc.pointer(&r[1..]).unwrap_or(v),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec() -> ApiSpec {
        ApiSpec::parse(
            "test",
            &json!({
                "openapi": "3.0.0",
                "servers": [{"url": "https://api.example.com/1"}],
                "components": {"schemas": {"Card": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {"name": {"type": "string"}, "desc": {"type": "string"}}
                }}},
                "paths": {
                    "/cards": {"post": {
                        "parameters": [{"in": "query", "name": "idList", "required": true}],
                        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Card"}}}}
                    }},
                    "/cards/{id}": {"get": {}, "put": {}},
                    "/cards/{id}/actions": {"get": {}}
                }
            }),
        )
    }

    #[test]
    fn operations_match_with_and_without_the_server_prefix() {
        let s = spec();
        assert!(s.describes(&Method::GET, "/1/cards/abc"));
        assert!(s.describes(&Method::GET, "/cards/abc/actions"));
        assert!(!s.describes(&Method::DELETE, "/1/cards/abc"));
        assert!(!s.describes(&Method::GET, "/1/boards/abc"));
    }

    #[test]
    fn query_and_body_are_checked() {
        let s = spec();
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            s.check(
                &Method::POST,
                "/1/cards",
                &q(&[("idList", "L1"), ("key", "k")]),
                Some(&json!({"name": "x"})),
                &["key", "token"],
            ),
            Ok(())
        );
        let errors = s
            .check(
                &Method::POST,
                "/1/cards",
                &q(&[("bogus", "1")]),
                Some(&json!({"desc": "x", "color": "red"})),
                &[],
            )
            .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("`bogus`")));
        assert!(errors.iter().any(|e| e.contains("`idList`")));
        assert!(errors.iter().any(|e| e.contains("`name`")));
        assert!(errors.iter().any(|e| e.contains("`color`")));
    }

    #[test]
    fn discovery_documents_close_bodies_and_know_standard_parameters() {
        let s = ApiSpec::parse(
            "disc",
            &json!({
                "discoveryVersion": "v1",
                "servicePath": "",
                "parameters": {"alt": {}, "fields": {}},
                "schemas": {"ValueRange": {"properties": {"values": {}, "range": {}}}},
                "resources": {"spreadsheets": {"resources": {"values": {"methods": {"append": {
                    "httpMethod": "POST",
                    "path": "v4/spreadsheets/{spreadsheetId}/values/{range}:append",
                    "parameters": {"valueInputOption": {"location": "query", "required": false}},
                    "request": {"$ref": "ValueRange"}
                }}}}}}
            }),
        );
        let path = "/v4/spreadsheets/S1/values/Sheet1!A1:append";
        let q = vec![
            ("valueInputOption".to_owned(), "RAW".to_owned()),
            ("alt".to_owned(), "json".to_owned()),
        ];
        assert_eq!(
            s.check(&Method::POST, path, &q, Some(&json!({"values": []})), &[]),
            Ok(())
        );
        assert!(
            s.check(&Method::POST, path, &q, Some(&json!({"rows": []})), &[])
                .is_err()
        );
    }
}
