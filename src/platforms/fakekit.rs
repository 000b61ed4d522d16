//! What every fake platform server shares (the tests' and `supportopsd demo`'s): a hyper
//! server on `127.0.0.1:0` that records each request and hands it to the platform's handler,
//! scripted failures, lost answers. Built by default (the demo runs the fakes); reading the
//! vendor's API descriptions for the request checks ([`super::fakespec`]) is test code
//! (`super::fakevendor`, built with `test-support` only).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use super::fakespec::{ApiSpec, SpecErrors};
#[cfg(any(test, feature = "test-support"))]
pub use super::fakevendor::{VENDOR_DIR_ENV, vendor_file};

/// The vendor's API description `rel` for a fake's request checks, loaded once per process
/// ([`ApiSpec::load`]); `None` when it cannot be found.
#[cfg(any(test, feature = "test-support"))]
pub fn vendor_spec(rel: &str) -> Option<&'static ApiSpec> {
    ApiSpec::load(rel)
}

/// The vendor's API description `rel` for a fake's request checks: the default build
/// (`supportopsd demo`) reads no vendor documents, so its fakes skip these checks.
#[cfg(not(any(test, feature = "test-support")))]
pub fn vendor_spec(_rel: &str) -> Option<&'static ApiSpec> {
    None
}

/// The host policy the tests run the daemon under: the fakes listen on loopback at ports chosen
/// at random, so every loopback port may be named by an endpoint override (`127.0.0.1:*`).
pub const LOOPBACK_POLICY: &str = r#"# The tests' fakes listen on loopback.
[endpoints]
allow = ["127.0.0.1:*"]
"#;

/// A host policy allowing endpoint overrides to name exactly `hosts` (`127.0.0.1:PORT`, the
/// fakes' addresses) and nothing else: what `supportopsd demo` runs the daemon under.
pub fn loopback_policy(hosts: &[String]) -> String {
    let list: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "# supportopsd demo: only the fake platforms on loopback.\n[endpoints]\nallow = [{}]\n",
        list.join(", ")
    )
}

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
    pub async fn try_start<H>(handler: H) -> std::io::Result<FakeServer>
    where
        H: Fn(&Recorded) -> Resp + Send + Sync + 'static,
    {
        FakeServer::try_start_async(move |r: Recorded| std::future::ready(handler(&r))).await
    }

    /// [`FakeServer::try_start`], for the tests: a failure to bind loopback fails the test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start<H>(handler: H) -> FakeServer
    where
        H: Fn(&Recorded) -> Resp + Send + Sync + 'static,
    {
        FakeServer::try_start(handler)
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// [`FakeServer::try_start_async`], for the tests: a failure to bind loopback fails the
    /// test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start_async<H, F>(handler: H) -> FakeServer
    where
        H: Fn(Recorded) -> F + Send + Sync + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        FakeServer::try_start_async(handler)
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// [`FakeServer::try_start`] with a handler that may wait (a fake that calls out before it
    /// answers, as Trello checks a webhook's callback URL with `HEAD` before creating it).
    /// The handler owns its copy of the request; it must not hold a lock across an `.await`.
    pub async fn try_start_async<H, F>(handler: H) -> std::io::Result<FakeServer>
    where
        H: Fn(Recorded) -> F + Send + Sync + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
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
        Ok(FakeServer {
            addr,
            requests,
            lost,
            task,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_demo_policy_allows_exactly_the_fakes_and_the_tests_any_loopback_port() {
        let path = std::path::Path::new("policy.toml");
        let demo = crate::policy::Policy::parse(
            &loopback_policy(&["127.0.0.1:4001".to_owned(), "127.0.0.1:4002".to_owned()]),
            path,
        )
        .unwrap();
        let tests = crate::policy::Policy::parse(LOOPBACK_POLICY, path).unwrap();
        let allows = |policy: &crate::policy::Policy, url: &str| {
            policy
                .check_endpoint(crate::platforms::PlatformKind::Slack, &[], "base_url", url)
                .is_ok()
        };
        assert!(allows(&demo, "http://127.0.0.1:4001/api/"));
        assert!(allows(&demo, "http://127.0.0.1:4002"));
        assert!(!allows(&demo, "http://127.0.0.1:4003"));
        assert!(!allows(&demo, "https://hooks.example.com"));
        assert!(allows(&tests, "http://127.0.0.1:4003"));
        assert!(!allows(&tests, "https://hooks.example.com"));
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
