//! What every fake platform server in the tests shares: a hyper server on `127.0.0.1:0` that
//! records each request and hands it to the platform's handler, scripted failures, and the
//! checks of a request against the platform's own API description (an OpenAPI document or a
//! Google discovery document) from the vendor directory.
//!
//! The vendor documents are read at run time from `$SUPPORTOPSD_VENDOR_DIR` or
//! `../shared/vendor` next to the crate, and never copied into the repository. Where neither
//! exists the spec check is skipped, and the fake says so once on stderr
//! ([`ApiSpec::load`] returns `None`, and [`ApiSpec::is_loaded`] lets a test report it).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use regex::Regex;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The environment variable naming the vendor directory (holding `openapi/…` and
/// `discovery/…`).
pub const VENDOR_DIR_ENV: &str = "SUPPORTOPSD_VENDOR_DIR";

/// A response of a fake.
pub type Resp = Response<Full<Bytes>>;

/// Locks a fake's state, ignoring poisoning (a panicking test already failed).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Recorded {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first query parameter called `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as form fields.
    pub fn form(&self) -> Vec<(String, String)> {
        form_decode(&String::from_utf8_lossy(&self.body))
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The path split on `/`, without empty segments.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }
}

/// Decodes `application/x-www-form-urlencoded` text (also a query string).
pub fn form_decode(s: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

/// A JSON response.
pub fn json_response(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// A plain-text response.
pub fn text_response(status: StatusCode, text: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An empty response.
pub fn empty_response(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Adds a header to a response.
pub fn with_header(mut r: Resp, name: &'static str, value: &str) -> Resp {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

/// A scripted failure: the next calls of a route answer this instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 429 with `Retry-After: secs` (the platform's own 429 body).
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// HTTP 500 (the platform's own 5xx body).
    ServerError,
    /// HTTP 503 with `Retry-After: secs`.
    Unavailable {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
}

/// Scripted failures by route key (a name each fake chooses: `"POST /api/v2/tickets"`,
/// `"create_card"`…).
#[derive(Debug, Default)]
pub struct Failures(HashMap<String, VecDeque<Failure>>);

impl Failures {
    /// Makes the next `times` calls of `key` fail with `failure`.
    pub fn push(&mut self, key: &str, failure: Failure, times: usize) {
        let q = self.0.entry(key.to_owned()).or_default();
        for _ in 0..times {
            q.push_back(failure.clone());
        }
    }

    /// The failure scripted for this call of `key`, if any.
    pub fn take(&mut self, key: &str) -> Option<Failure> {
        self.0.get_mut(key).and_then(VecDeque::pop_front)
    }
}

/// Requests whose answer is lost: (method, path, how many more).
type LostAnswers = Arc<Mutex<Vec<(Method, String, usize)>>>;

/// The answer a client gets when the platform acted but its answer was lost on the way: a
/// gateway timing out in front of the platform (504, as a load balancer sends it). The
/// platform's state has changed; the client cannot know.
pub fn lost_answer() -> Resp {
    text_response(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout")
}

/// A running fake server. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    lost: LostAnswers,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Starts a server on `127.0.0.1:0` that records every request and answers with
    /// `handler`. Bodies are read whole before the handler runs.
    pub async fn start<H>(handler: H) -> FakeServer
    where
        H: Fn(&Recorded) -> Resp + Send + Sync + 'static,
    {
        FakeServer::start_async(move |r: Recorded| std::future::ready(handler(&r))).await
    }

    /// [`FakeServer::start`] with a handler that may wait (a fake that calls out before it
    /// answers, as Trello checks a webhook's callback URL with `HEAD` before creating it).
    /// The handler owns its copy of the request; it must not hold a lock across an `.await`.
    pub async fn start_async<H, F>(handler: H) -> FakeServer
    where
        H: Fn(Recorded) -> F + Send + Sync + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let lost: LostAnswers = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let recorded = requests.clone();
        let losing = lost.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let recorded = recorded.clone();
                let losing = losing.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let recorded = recorded.clone();
                        let losing = losing.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(http_body_util::Collected::to_bytes)
                                .unwrap_or_default();
                            let r = Recorded {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                query: form_decode(parts.uri.query().unwrap_or("")),
                                headers: parts.headers,
                                body,
                            };
                            lock(&recorded).push(r.clone());
                            let (method, path) = (r.method.clone(), r.path.clone());
                            let resp = handler(r).await;
                            // The platform acted (its state changed); the answer is lost.
                            let mut lost = lock(&losing);
                            if let Some(entry) = lost
                                .iter_mut()
                                .find(|(m, p, n)| *m == method && *p == path && *n > 0)
                            {
                                entry.2 -= 1;
                                return Ok::<_, Infallible>(lost_answer());
                            }
                            drop(lost);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeServer {
            addr,
            requests,
            lost,
            task,
        }
    }

    /// Performs the next `times` requests `method path` (path without the query) as usual,
    /// then answers them with [`lost_answer`] instead: the platform created what was asked,
    /// and the client cannot know (what a real platform behind a timing-out gateway, or a
    /// connection cut after the request was read, does).
    pub fn lose_answers(&self, method: Method, path: &str, times: usize) {
        lock(&self.lost).push((method, path.to_owned(), times));
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.requests).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.requests).clear();
    }
}

/// The vendor file `rel` (e.g. `openapi/trello.openapi.json`), if it can be found.
pub fn vendor_file(rel: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os(VENDOR_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vendor");
    from_env
        .into_iter()
        .chain([beside])
        .map(|d| d.join(rel))
        .find(|p| p.is_file())
}

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
    /// Loads (once per process) the vendor document `rel` (`openapi/….json|yaml` or
    /// `discovery/….json`). `None`, with one line on stderr, when it cannot be found or read.
    pub fn load(rel: &str) -> Option<&'static ApiSpec> {
        static CACHE: OnceLock<Mutex<HashMap<String, Option<&'static ApiSpec>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(hit) = lock(cache).get(rel) {
            return *hit;
        }
        let loaded = vendor_file(rel).and_then(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let doc: Value = if rel.ends_with(".yaml") || rel.ends_with(".yml") {
                serde_yaml_ng::from_str(&text).ok()?
            } else {
                serde_json::from_str(&text).ok()?
            };
            Some(&*Box::leak(Box::new(ApiSpec::parse(rel, &doc))))
        });
        if loaded.is_none() {
            eprintln!(
                "fake platform: vendor document {rel} not found (set {VENDOR_DIR_ENV}); its spec check is skipped"
            );
        }
        lock(cache).insert(rel.to_owned(), loaded);
        loaded
    }

    /// Whether the vendor document `rel` can be loaded (for tests that report a skipped check).
    pub fn is_loaded(rel: &str) -> bool {
        ApiSpec::load(rel).is_some()
    }

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
                ops.push(Operation::new(method, path, query, body));
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
                ops.push(Operation::new(method, &format!("/{path}"), query, body));
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
    ) -> Operation {
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
        Operation {
            method,
            template: template.to_owned(),
            pattern: Regex::new(&pattern).expect("path template pattern"),
            literal_len,
            query,
            body,
        }
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

    #[tokio::test]
    async fn async_handlers_can_wait_before_answering() {
        let backend = FakeServer::start(|r| text_response(StatusCode::OK, &r.path)).await;
        let target = format!("{}/probe", backend.origin());
        let front = FakeServer::start_async(move |r: Recorded| {
            let target = target.clone();
            async move {
                let got = reqwest::Client::new()
                    .head(&target)
                    .send()
                    .await
                    .map(|a| a.status().as_u16())
                    .unwrap_or(0);
                text_response(StatusCode::OK, &format!("{} {got}", r.path))
            }
        })
        .await;
        let answer = reqwest::get(format!("{}/front", front.origin()))
            .await
            .expect("front answers")
            .text()
            .await
            .expect("text");
        assert_eq!(answer, "/front 200");
        assert_eq!(front.requests().len(), 1);
        assert_eq!(backend.requests()[0].method, Method::HEAD);
        assert_eq!(backend.requests()[0].path, "/probe");
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_decode("a=1+2&b=%41%zz&c"),
            vec![
                ("a".to_owned(), "1 2".to_owned()),
                ("b".to_owned(), "A%zz".to_owned()),
                ("c".to_owned(), String::new()),
            ]
        );
    }
}

#[cfg(test)]
mod vendor_tests {
    use super::*;

    /// The vendor documents the fakes use parse and describe the operations they cover.
    #[test]
    fn vendor_documents_describe_known_operations() {
        let cases: &[(&str, Method, &str)] = &[
            (
                "openapi/zendesk-support.openapi.yaml",
                Method::POST,
                "/api/v2/tickets",
            ),
            (
                "openapi/zendesk-support.openapi.yaml",
                Method::GET,
                "/api/v2/users/me",
            ),
            ("openapi/trello.openapi.json", Method::POST, "/1/cards"),
            ("openapi/trello.openapi.json", Method::POST, "/1/webhooks"),
            ("openapi/notion.openapi.json", Method::GET, "/v1/users/me"),
            (
                "discovery/sheets-v4.discovery.json",
                Method::POST,
                "/v4/spreadsheets/S/values/A1:append",
            ),
            (
                "discovery/drive-v3.discovery.json",
                Method::POST,
                "/drive/v3/files/F/watch",
            ),
        ];
        let mut skipped = Vec::new();
        for (rel, method, path) in cases {
            match ApiSpec::load(rel) {
                Some(spec) => assert!(spec.describes(method, path), "{rel}: {method} {path}"),
                None => skipped.push(*rel),
            }
        }
        if !skipped.is_empty() {
            eprintln!("spec check skipped (vendor documents not found): {skipped:?}");
        }
    }
}
