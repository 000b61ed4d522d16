//! The OpenAPI 3.1 document of the daemon's HTTP API (`openapi.json` beside this file, compiled
//! into the binary and served at `GET /api/openapi.json`), and its rendering as an HTML
//! reference ([`reference`]) for the console's API page.
//!
//! Guarantees, checked by the tests below:
//!
//! - the document is valid OpenAPI 3.1 as far as a structural check goes: `openapi` is `3.1.x`,
//!   `info` has a title and a version, every operation has an `operationId` (unique), a tag
//!   the document declares, and responses; every path parameter is declared; every `$ref`
//!   resolves;
//! - its paths × methods are exactly the route table's ([`super::routes::ROUTES`]), both ways:
//!   a route missing from the document, or documented but absent, fails a test;
//! - [`reference`] shows every operation once, with an anchor `op-<operationId>`, and escapes
//!   every text it takes from the document.
//!
//! The document is hand-written JSON, not generated: its descriptions and examples are
//! written for people (the examples are real answers of the handlers in `api.rs`, shortened).

use std::sync::OnceLock;

use maud::{Markup, html};
use serde_json::{Map, Value};

/// The document's text, as compiled in.
const DOCUMENT: &str = include_str!("openapi.json");

/// The HTTP methods an OpenAPI path item may hold, in the order the reference shows them.
pub const METHODS: &[&str] = &[
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// The document, parsed once. Should the compiled-in text not parse (a test makes sure it
/// does), the value is an object saying so, never a panic.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_str(DOCUMENT).unwrap_or_else(|e| {
            serde_json::json!({"error": format!("the compiled-in OpenAPI document does not parse: {e}")})
        })
    })
}

/// The document as served (`GET /api/openapi.json`): the compiled-in text as it is.
pub fn document_bytes() -> &'static [u8] {
    DOCUMENT.as_bytes()
}

/// Who may call an operation, in words, from its `security` requirements.
pub fn who_may_call(operation: &Value) -> String {
    let Some(reqs) = operation.get("security").and_then(Value::as_array) else {
        return "admin token".to_owned();
    };
    if reqs.is_empty() {
        return "no token (open)".to_owned();
    }
    let mut names: Vec<&str> = Vec::new();
    for r in reqs {
        match r.as_object().and_then(|m| m.keys().next()) {
            None => names.push("no token (open by default)"),
            Some(k) => names.push(match k.as_str() {
                "adminToken" => "admin token",
                "readOnlyToken" => "read-only token",
                "pushSignature" => "a push webhook's signature (X-Hub-Signature-256)",
                "gitlabToken" => "a push webhook's X-Gitlab-Token",
                other => other,
            }),
        }
    }
    names.join(" or ")
}

/// A JSON pointer's target in `doc` for a local `$ref` (`#/components/…`).
fn resolve_ref<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// `v`, or what its `$ref` names (one level; the document nests none deeper).
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve_ref(doc, r).unwrap_or(v),
        None => v,
    }
}

/// An operation id made safe for an HTML id.
fn anchor(operation_id: &str) -> String {
    let safe: String = operation_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("op-{safe}")
}

/// A schema's type in a few words: `integer (1–1000, default 50)`, `string, one of: a, b`.
fn type_of(schema: &Value) -> String {
    let mut text = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    };
    let mut notes = Vec::new();
    if let (Some(lo), Some(hi)) = (schema.get("minimum"), schema.get("maximum")) {
        notes.push(format!("{lo}–{hi}"));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        notes.push(format!("pattern {p}"));
    }
    if let Some(d) = schema.get("default") {
        notes.push(format!("default {d}"));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        notes.push(format!("one of: {}", values.join(", ")));
    }
    if !notes.is_empty() {
        text.push_str(&format!(" ({})", notes.join("; ")));
    }
    text
}

/// An example as shown: JSON pretty-printed, a string as it is.
fn example_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// The first example of a `content` map: (media type, example).
fn first_example(content: Option<&Value>) -> Option<(String, String)> {
    let content = content?.as_object()?;
    content.iter().find_map(|(media, c)| {
        c.get("example")
            .map(|e| (media.clone(), example_text(e)))
            .or_else(|| {
                c.get("examples")?
                    .as_object()?
                    .values()
                    .find_map(|e| e.get("value"))
                    .map(|e| (media.clone(), example_text(e)))
            })
    })
}

/// The operations of the document: (tag, method, path, operation), in the document's order.
pub fn operations(doc: &Value) -> Vec<(String, &'static str, String, &Value)> {
    let mut out = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                let tag = op
                    .get("tags")
                    .and_then(|t| t.get(0))
                    .and_then(Value::as_str)
                    .unwrap_or("Other")
                    .to_owned();
                out.push((tag, *method, path.clone(), op));
            }
        }
    }
    out
}

/// The document as an HTML fragment for people: a table of contents by tag, then each
/// operation (method and path, summary, description, who may call it, parameters, request
/// body, responses with their example answers), each under `id="op-<operationId>"`. Every
/// text comes from `doc` and is escaped; no script.
pub fn reference(doc: &Value) -> Markup {
    let ops = operations(doc);
    let empty = Map::new();
    let info = doc.get("info").and_then(Value::as_object).unwrap_or(&empty);
    let text = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    // Tags in the document's order, then any an operation names that it does not declare.
    let mut tags: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(Value::as_object)
                .map(|t| (text(t, "name"), text(t, "description")))
                .collect()
        })
        .unwrap_or_default();
    for (tag, ..) in &ops {
        if !tags.iter().any(|(t, _)| t == tag) {
            tags.push((tag.clone(), String::new()));
        }
    }
    tags.retain(|(t, _)| ops.iter().any(|(tag, ..)| tag == t));
    let op_id = |op: &Value, method: &str, path: &str| {
        op.get("operationId")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{method}-{path}"), str::to_owned)
    };
    html! {
        section.api-reference {
            h2 { (text(info, "title")) " " small { "version " (text(info, "version")) } }
            @if let Some(d) = info.get("description").and_then(Value::as_str) { p { (d) } }
            p { "The document itself: " a href="/api/openapi.json" { code { "GET /api/openapi.json" } } " (OpenAPI " (doc.get("openapi").and_then(Value::as_str).unwrap_or("?")) ")." }
            nav.api-toc aria-label="API routes" {
                @for (tag, _) in &tags {
                    h3 { (tag) }
                    ul {
                        @for (t, method, path, op) in &ops {
                            @if t == tag {
                                li {
                                    a href={ "#" (anchor(&op_id(op, method, path))) } {
                                        code { (method.to_uppercase()) " " (path) }
                                    }
                                    @if let Some(s) = op.get("summary").and_then(Value::as_str) { " — " (s) }
                                }
                            }
                        }
                    }
                }
            }
            @for (tag, description) in &tags {
                section.api-tag {
                    h2 { (tag) }
                    @if !description.is_empty() { p { (description) } }
                    @for (t, method, path, op) in &ops {
                        @if t == tag { (operation(doc, method, path, op, &anchor(&op_id(op, method, path)))) }
                    }
                }
            }
        }
    }
}

/// One operation of [`reference`].
fn operation(doc: &Value, method: &str, path: &str, op: &Value, id: &str) -> Markup {
    let deprecated = op.get("deprecated").and_then(Value::as_bool) == Some(true);
    let params: Vec<&Value> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().map(|p| deref(doc, p)).collect())
        .unwrap_or_default();
    let body = op.get("requestBody").map(|b| deref(doc, b));
    let responses: Vec<(&String, &Value)> = op
        .get("responses")
        .and_then(Value::as_object)
        .map(|rs| rs.iter().map(|(code, r)| (code, deref(doc, r))).collect())
        .unwrap_or_default();
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    html! {
        article.api-op id=(id) {
            h3 {
                code.method { (method.to_uppercase()) } " " code.path { (path) }
                @if deprecated { " " span.deprecated { "deprecated" } }
            }
            @if let Some(summary) = op.get("summary").and_then(Value::as_str) { p.summary { strong { (summary) } } }
            @if let Some(d) = op.get("description").and_then(Value::as_str) { p { (d) } }
            p.token { "Who may call it: " (who_may_call(op)) "." }
            @if !params.is_empty() {
                table.api-params {
                    caption { "Parameters" }
                    thead { tr { th scope="col" { "name" } th scope="col" { "in" } th scope="col" { "type" } th scope="col" { "required" } th scope="col" { "description" } } }
                    tbody {
                        @for p in &params {
                            tr {
                                td { code { (s(p, "name")) } }
                                td { (s(p, "in")) }
                                td { (p.get("schema").map(type_of).unwrap_or_default()) }
                                td { @if p.get("required").and_then(Value::as_bool) == Some(true) { "yes" } @else { "no" } }
                                td { (s(p, "description")) }
                            }
                        }
                    }
                }
            }
            @if let Some(body) = body {
                div.api-body {
                    h4 { "Request body" @if body.get("required").and_then(Value::as_bool) != Some(true) { " (optional)" } }
                    p { (s(body, "description")) }
                    @if let Some(content) = body.get("content").and_then(Value::as_object) {
                        p { "Content type: " @for (i, media) in content.keys().enumerate() { @if i > 0 { ", " } code { (media) } } }
                    }
                    @if let Some((_, example)) = first_example(body.get("content")) { pre { code { (example) } } }
                }
            }
            div.api-responses {
                h4 { "Responses" }
                dl {
                    @for (code, r) in &responses {
                        dt { code { (code) } }
                        dd {
                            (s(r, "description"))
                            @if let Some((media, example)) = first_example(r.get("content")) {
                                pre aria-label={ "Example answer (" (media) ")" } { code { (example) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::daemon::routes::{ROUTES, path_params};

    /// Every `$ref` in `v` with its location.
    fn refs<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        if let Some(r) = x.as_str() {
                            out.push((at.clone(), r));
                        }
                    } else {
                        refs(x, format!("{at}/{k}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    refs(x, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    /// The structural checks of OpenAPI 3.1 this document must pass; the problems found.
    fn problems(doc: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let version = doc.get("openapi").and_then(Value::as_str).unwrap_or("");
        if !version.starts_with("3.1.") {
            out.push(format!("openapi is {version:?}, not 3.1.x"));
        }
        for k in ["title", "version"] {
            if doc
                .pointer(&format!("/info/{k}"))
                .and_then(Value::as_str)
                .is_none()
            {
                out.push(format!("info.{k} missing"));
            }
        }
        let declared: BTreeSet<&str> = doc
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect();
        let schemes: BTreeSet<&str> = doc
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
            .collect();
        let mut ids = BTreeSet::new();
        for (tag, method, path, op) in operations(doc) {
            let at = format!("{} {path}", method.to_uppercase());
            match op.get("operationId").and_then(Value::as_str) {
                Some(id) if ids.insert(id.to_owned()) => {}
                Some(id) => out.push(format!("{at}: operationId {id} twice")),
                None => out.push(format!("{at}: no operationId")),
            }
            if !declared.contains(tag.as_str()) {
                out.push(format!("{at}: tag {tag} is not declared"));
            }
            match op.get("responses").and_then(Value::as_object) {
                Some(r) if !r.is_empty() => {
                    for code in r.keys() {
                        let valid = code == "default"
                            || (code.len() == 3 && code.chars().all(|c| c.is_ascii_digit()));
                        if !valid {
                            out.push(format!("{at}: response code {code}"));
                        }
                    }
                }
                _ => out.push(format!("{at}: no responses")),
            }
            if op.get("summary").and_then(Value::as_str).is_none() {
                out.push(format!("{at}: no summary"));
            }
            let params: Vec<&Value> = op
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| deref(doc, p))
                .collect();
            for name in path_params(&path) {
                let declared = params.iter().any(|p| {
                    p.get("name").and_then(Value::as_str) == Some(name)
                        && p.get("in").and_then(Value::as_str) == Some("path")
                        && p.get("required").and_then(Value::as_bool) == Some(true)
                });
                if !declared {
                    out.push(format!(
                        "{at}: path parameter {name} not declared (required)"
                    ));
                }
            }
            for p in &params {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                let place = p.get("in").and_then(Value::as_str).unwrap_or("");
                if !["path", "query", "header", "cookie"].contains(&place) {
                    out.push(format!("{at}: parameter {name} in {place:?}"));
                }
                if place == "path" && !path_params(&path).contains(&name) {
                    out.push(format!("{at}: path parameter {name} not in the path"));
                }
                if p.get("schema").is_none() {
                    out.push(format!("{at}: parameter {name} has no schema"));
                }
            }
            for req in op
                .get("security")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for name in req.as_object().into_iter().flat_map(|m| m.keys()) {
                    if !schemes.contains(name.as_str()) {
                        out.push(format!("{at}: security scheme {name} not declared"));
                    }
                }
            }
        }
        let mut all = Vec::new();
        refs(doc, String::new(), &mut all);
        for (at, r) in all {
            if resolve_ref(doc, r).is_none() {
                out.push(format!("{at}: $ref {r} does not resolve"));
            }
        }
        out
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = document();
        assert!(doc.get("error").is_none(), "{doc}");
        assert_eq!(problems(doc), Vec::<String>::new());
        assert!(operations(doc).len() >= ROUTES.len());
    }

    #[test]
    fn the_structural_check_finds_what_is_wrong() {
        // The check itself can fail: a broken document gives each problem.
        let doc = json!({
            "openapi": "3.0.3",
            "info": {"title": "x"},
            "tags": [{"name": "A"}],
            "paths": {
                "/a/{id}": {"get": {"operationId": "a", "tags": ["B"], "responses": {}}},
                "/b": {"post": {"operationId": "a", "tags": ["A"], "summary": "b",
                    "responses": {"200": {"$ref": "#/components/responses/Nope"}},
                    "security": [{"nobody": []}]}}
            }
        });
        let found = problems(&doc).join("\n");
        for expected in [
            "openapi is \"3.0.3\"",
            "info.version missing",
            "GET /a/{id}: tag B is not declared",
            "GET /a/{id}: no responses",
            "GET /a/{id}: path parameter id not declared",
            "POST /b: operationId a twice",
            "POST /b: security scheme nobody not declared",
            "$ref #/components/responses/Nope does not resolve",
        ] {
            assert!(found.contains(expected), "{expected} not in\n{found}");
        }
    }

    #[test]
    fn the_document_lists_every_route_and_nothing_else() {
        let table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned()))
            .collect();
        let documented: BTreeSet<(String, String)> = operations(document())
            .into_iter()
            .map(|(_, m, p, _)| (m.to_owned(), p))
            .collect();
        let missing: Vec<_> = table.difference(&documented).collect();
        let absent: Vec<_> = documented.difference(&table).collect();
        assert!(
            missing.is_empty(),
            "routes missing from the document: {missing:?}"
        );
        assert!(absent.is_empty(), "documented, but not routes: {absent:?}");
    }

    #[test]
    fn the_aliases_are_deprecated_and_the_tokens_said() {
        let doc = document();
        for (path, method) in [
            ("/api/events/dead", "get"),
            ("/api/events/{job_id}/replay", "post"),
        ] {
            let op = &doc["paths"][path][method];
            assert_eq!(op["deprecated"], true, "{method} {path}");
        }
        let reads = operations(doc).into_iter().filter(|(_, m, p, _)| {
            *m == "get" && p.starts_with("/api/") && !p.starts_with("/api/webhooks")
        });
        for (_, m, p, op) in reads {
            let who = who_may_call(op);
            if p.ends_with("/notion/verification") {
                assert_eq!(who, "admin token", "{m} {p}");
            } else {
                assert_eq!(who, "admin token or read-only token", "{m} {p}");
            }
        }
        assert_eq!(
            who_may_call(&doc["paths"]["/api/pin"]["post"]),
            "admin token"
        );
        assert_eq!(
            who_may_call(&doc["paths"]["/healthz"]["get"]),
            "no token (open)"
        );
        assert!(who_may_call(&doc["paths"]["/api/sync"]["post"]).contains("X-Hub-Signature-256"));
    }

    #[test]
    fn the_reference_shows_every_operation_once() {
        let doc = document();
        let html = reference(doc).into_string();
        for (_, method, path, op) in operations(doc) {
            let id = op["operationId"].as_str().unwrap();
            let anchor = format!("id=\"op-{id}\"");
            assert_eq!(html.matches(&anchor).count(), 1, "{anchor}");
            assert!(html.contains(&format!("href=\"#op-{id}\"")), "{id}");
            let _ = (method, path);
        }
        assert!(!html.contains("<script"), "no script");
        // Example answers and the token needed are there.
        assert!(html.contains("&quot;applied_revision&quot;"));
        assert!(html.contains("Who may call it: admin token or read-only token."));
        assert!(html.contains("<code>limit</code>"));
        assert!(html.contains("integer (1–1000; default 50)"));
    }

    #[test]
    fn the_reference_escapes_what_the_document_says() {
        let hostile = "<script>alert(1)</script>\"'&";
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": hostile, "version": hostile, "description": hostile},
            "tags": [{"name": hostile, "description": hostile}],
            "paths": {
                "/x/{id}": {"get": {
                    "operationId": "a\"><img src=x onerror=alert(1)>",
                    "tags": [hostile],
                    "summary": hostile,
                    "description": hostile,
                    "parameters": [{"name": hostile, "in": "path", "required": true,
                                    "schema": {"type": "string", "enum": [hostile]}, "description": hostile}],
                    "responses": {"200": {"description": hostile,
                        "content": {"application/json": {"example": {"k": hostile}}}}}
                }}
            }
        });
        let html = reference(&doc).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("id=\"op-a---img-src-x-onerror-alert-1--\""),
            "{html}"
        );
        // A document without paths or tags renders, empty.
        let html = reference(&json!({})).into_string();
        assert!(!html.contains("api-op"), "{html}");
    }
}
