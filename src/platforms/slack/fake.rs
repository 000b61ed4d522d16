//! A fake Slack Web API for tests: a hyper server on `127.0.0.1:0` that answers the methods the
//! connector uses the way Slack does, and records every request.
//!
//! - Authentication: `Authorization: Bearer <token>` must carry the bot or the user token given
//!   to [`FakeSlack::start`]; anything else is HTTP 200 `{"ok":false,"error":"invalid_auth"}`
//!   (`not_authed` without the header), and `users.profile.set` refuses the bot token
//!   (`not_allowed_token_type`).
//! - Methods: `auth.test`, `chat.postMessage`, `conversations.create`, `conversations.invite`,
//!   `conversations.list`, `tooling.tokens.rotate`,
//!   `files.getUploadURLExternal`, `files.completeUploadExternal`, `users.profile.set`, plus the
//!   upload URL (`/upload/v1/<file id>`) handed out by `files.getUploadURLExternal`.
//! - Manifest API: `apps.manifest.export`, `apps.manifest.validate` and `apps.manifest.update`
//!   for the app [`APP_ID`], on a manifest kept in memory (see [`initial_manifest`];
//!   [`FakeSlack::manifest`], [`FakeSlack::set_manifest`]). They accept only the app
//!   configuration token given to [`FakeSlack::accept_app_config_token`] (anything else is
//!   `invalid_auth`), and that token is refused by every other method. The vendored spec does
//!   not describe these methods, so the fake checks them with its own rules
//!   ([`manifest_errors`]). Unlike Slack, the fake does not send a `url_verification` challenge
//!   to a new request URL.
//! - App configuration tokens expire, and rotate: a token accepted with
//!   [`FakeSlack::accept_app_config_token`] or issued with [`FakeSlack::issue_app_config_pair`]
//!   lives [`APP_CONFIG_TOKEN_LIFETIME_S`] (12 h) on the fake's clock ([`FakeSlack::advance`],
//!   [`FakeSlack::clock`]), then answers `token_expired`; `tooling.tokens.rotate` (no token,
//!   `refresh_token` in the form) exchanges a refresh token for a new pair **once** (a refresh
//!   token used again is `invalid_refresh_token`). Following
//!   <https://api.slack.com/methods/tooling.tokens.rotate> (12 h expiry, the answer's `token`,
//!   `refresh_token`, `iat`, `exp`) and, for single use, Nango's Slack app configuration docs
//!   (third-party; the strict reading).
//! - The manifest merge: `apps.manifest.update` answers `permissions_updated: true` when
//!   `oauth_config.scopes` changed, and validation refuses a bot event whose required bot
//!   scope (`registration::scopes_for_bot_event`, from the events' reference pages) is missing
//!   (whether Slack refuses or only asks for a reinstall is unconfirmed: the fake takes the
//!   strict side).
//! - Channel ids: `conversations.invite` (`channel`) and `files.completeUploadExternal`
//!   (`channel_id`) take an **id**, as their reference pages say
//!   (<https://docs.slack.dev/reference/methods/conversations.invite>,
//!   <https://docs.slack.dev/reference/methods/files.completeUploadExternal>); a `#name` is
//!   `channel_not_found`. `chat.postMessage` accepts a name, as documented.
//!   `conversations.list` pages by `cursor`, returning fewer than `limit` (at most
//!   [`FakeSlack::set_page_size`] per page, 2 by default, as Slack may), filtered by `types`.
//! - Bodies: JSON (`application/json`) or form-urlencoded.
//! - Spec check: where Slack's vendored OpenAPI file (`slack-web.openapi.json`) describes a
//!   method, a request with a parameter the spec does not list, or without one it requires, is
//!   answered `{"ok":false,"error":"invalid_arguments"}` like Slack does. The spec is read at
//!   run time from `$SUPPORTOPSD_VENDOR_DIR/openapi/` or `../shared/vendor/openapi/` next to
//!   the crate; it is never copied into the repository. The spec dates from 2020, so parameters
//!   Slack added since (see [`NEWER_THAN_SPEC`]) are allowed as well.
//! - Scripted failures: [`FakeSlack::fail_next`] makes the next calls of a method answer
//!   `ok:false`, HTTP 429 with `Retry-After`, or HTTP 500.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[cfg(any(test, feature = "test-support"))]
pub use crate::platforms::fakekit::VENDOR_DIR_ENV;
pub use crate::platforms::fakekit::form_decode;

/// Parameters Slack added after the vendored spec was written (method, parameter).
pub const NEWER_THAN_SPEC: &[(&str, &str)] = &[
    ("chat.postMessage", "metadata"),
    ("conversations.create", "team_id"),
    ("conversations.invite", "force"),
];

/// The fake workspace's bot user id (what `auth.test` answers for the bot token).
pub const BOT_USER_ID: &str = "U0FAKEBOT1";
/// The fake workspace's bot id.
pub const BOT_ID: &str = "B0FAKEBOT1";
/// The user owning the user token.
pub const USER_ID: &str = "U0FAKEUSR1";
/// The fake workspace's id.
pub const TEAM_ID: &str = "T0FAKE0001";
/// The fake workspace's name.
pub const TEAM_NAME: &str = "Fake Workspace";
/// Channel `#general`.
pub const GENERAL: &str = "C0GENERAL1";
/// Channel `#support`.
pub const SUPPORT: &str = "C0SUPPORT1";
/// Private channel `#escalations` (the bot is a member).
pub const ESCALATIONS: &str = "C0PRIVATE1";
/// How long an app configuration token lives on the fake's clock.
pub const APP_CONFIG_TOKEN_LIFETIME_S: u64 = 12 * 3600;
/// Where the fake's clock starts (seconds since the epoch).
pub const FAKE_EPOCH_S: u64 = 1_760_000_000;
/// The fake app's id (the app behind the bot, and the one the manifest API knows).
pub const APP_ID: &str = "A0FAKEAPP1";
/// The request URL of [`initial_manifest`].
pub const INITIAL_REQUEST_URL: &str = "https://old-host.example.com/slack/events";

/// Bot events the fake's manifest validation knows.
pub const KNOWN_BOT_EVENTS: &[&str] = &[
    "app_home_opened",
    "app_mention",
    "app_uninstalled",
    "channel_archive",
    "channel_created",
    "channel_rename",
    "member_joined_channel",
    "member_left_channel",
    "message.channels",
    "message.groups",
    "message.im",
    "message.mpim",
    "reaction_added",
    "reaction_removed",
    "team_join",
    "user_change",
];

/// The manifest the fake starts with: a realistic app with settings that an update of the
/// event subscriptions must keep (display information, bot user, scopes, interactivity,
/// `user_events`).
pub fn initial_manifest() -> Value {
    json!({
        "_metadata": { "major_version": 1, "minor_version": 1 },
        "display_information": {
            "name": "supportopsd",
            "description": "Support operations automation",
            "background_color": "#2c2d30"
        },
        "features": {
            "app_home": { "home_tab_enabled": false, "messages_tab_enabled": true },
            "bot_user": { "display_name": "supportopsd", "always_online": true }
        },
        "oauth_config": {
            "scopes": {
                "bot": [
                    "app_mentions:read", "channels:history", "channels:manage",
                    "channels:read", "chat:write", "files:write", "groups:history",
                    "im:history", "mpim:history", "reactions:read", "users:read"
                ],
                "user": ["users.profile:write"]
            }
        },
        "settings": {
            "event_subscriptions": {
                "request_url": INITIAL_REQUEST_URL,
                "bot_events": ["app_home_opened"],
                "user_events": ["reaction_added"]
            },
            "interactivity": {
                "is_enabled": true,
                "request_url": "https://old-host.example.com/slack/actions"
            },
            "org_deploy_enabled": false,
            "socket_mode_enabled": false,
            "token_rotation_enabled": false
        }
    })
}

/// Slack's signature of an Events API delivery: `v0=` + hex(HMAC-SHA256(signing secret,
/// `v0:{timestamp}:{body}`)), sent in `X-Slack-Signature` with `X-Slack-Request-Timestamp`.
pub fn sign(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) =
        <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(signing_secret.as_bytes())
    else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "v0={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Users that exist besides the bot and [`USER_ID`].
pub const AGENTS: &[&str] = &["U0AGENT001", "U0AGENT002"];

/// A scripted failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 200 `{"ok": false, "error": <code>}`.
    Error(String),
    /// HTTP 429 with `Retry-After: <seconds>` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited {
        /// The `Retry-After` value.
        retry_after_secs: u64,
    },
    /// HTTP 500 with a plain-text body.
    ServerError,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path and query (`/api/chat.postMessage`).
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The Web API method (`chat.postMessage`), or `""` for other paths.
    pub fn api_method(&self) -> &str {
        self.path
            .strip_prefix("/api/")
            .map(|m| m.split('?').next().unwrap_or(m))
            .unwrap_or("")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body parsed as form fields.
    pub fn form(&self) -> Vec<(String, String)> {
        form_decode(&String::from_utf8_lossy(&self.body))
    }

    /// The parameters, whatever the content type: a JSON object, or the form fields as strings.
    pub fn params(&self) -> Map<String, Value> {
        params_of(&self.headers, &self.body).unwrap_or_default()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeSlack {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Upload {
    filename: String,
    length: usize,
    bytes: Option<Vec<u8>>,
}

#[derive(Debug)]
struct State {
    addr: SocketAddr,
    bot_token: String,
    user_token: Option<String>,
    requests: Vec<Recorded>,
    failures: HashMap<String, VecDeque<Failure>>,
    /// Methods whose next answers are lost after they were performed, and how many.
    lost: HashMap<String, usize>,
    /// Methods whose answers are held this long after they were performed.
    hold: HashMap<String, std::time::Duration>,
    spec: Option<&'static Spec>,
    seq: u64,
    /// Channel id → name.
    channels: Vec<(String, String)>,
    uploads: HashMap<String, Upload>,
    profile: Map<String, Value>,
    /// App configuration token → expiry (fake clock seconds).
    app_config_tokens: HashMap<String, u64>,
    /// Refresh tokens not used yet.
    refresh_tokens: HashSet<String>,
    /// The fake's clock, seconds since the epoch.
    now_s: u64,
    /// Private channels (ids).
    private: HashSet<String>,
    /// Most channels per `conversations.list` page.
    page_size: usize,
    manifest: Value,
}

impl FakeSlack {
    /// [`FakeSlack::try_start`], for the tests: a failure to bind loopback fails the test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start(bot_token: &str, user_token: Option<&str>) -> FakeSlack {
        FakeSlack::try_start(bot_token, user_token)
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// Starts the fake, accepting `bot_token` and (if given) `user_token`.
    pub async fn try_start(
        bot_token: &str,
        user_token: Option<&str>,
    ) -> std::io::Result<FakeSlack> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            addr,
            bot_token: bot_token.to_owned(),
            user_token: user_token.map(str::to_owned),
            requests: Vec::new(),
            failures: HashMap::new(),
            lost: HashMap::new(),
            hold: HashMap::new(),
            spec: spec(),
            seq: 0,
            channels: vec![
                (GENERAL.to_owned(), "general".to_owned()),
                (SUPPORT.to_owned(), "support".to_owned()),
                (ESCALATIONS.to_owned(), "escalations".to_owned()),
            ],
            private: HashSet::from([ESCALATIONS.to_owned()]),
            page_size: 2,
            uploads: HashMap::new(),
            profile: json!({
                "real_name": "Grace Hopper",
                "display_name": "grace",
                "status_text": "",
                "status_emoji": "",
                "status_expiration": 0,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
            app_config_tokens: HashMap::new(),
            refresh_tokens: HashSet::new(),
            now_s: FAKE_EPOCH_S,
            manifest: initial_manifest(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle_and_hold(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(FakeSlack { addr, state, task })
    }

    /// The Web API base URL (`http://127.0.0.1:<port>/api/`), for `[endpoint] base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The requests to one Web API method.
    pub fn requests_to(&self, method: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.api_method() == method)
            .collect()
    }

    /// Makes the next `times` calls of `method` fail with `failure`.
    pub fn fail_next(&self, method: &str, failure: Failure, times: usize) {
        let mut st = lock(&self.state);
        let q = st.failures.entry(method.to_owned()).or_default();
        q.extend(std::iter::repeat_n(failure, times));
    }

    /// Performs the next `times` calls of `method`, then answers them with a 504 instead: the
    /// message was posted, and its answer was lost (a gateway timing out in front of Slack).
    pub fn lose_answers(&self, method: &str, times: usize) {
        *lock(&self.state).lost.entry(method.to_owned()).or_default() += times;
    }

    /// Performs every call of `method` at once but holds its answer for `hold` (a slow network
    /// after Slack acted): a client killed meanwhile cannot know the message was posted.
    pub fn hold_answers(&self, method: &str, hold: std::time::Duration) {
        lock(&self.state).hold.insert(method.to_owned(), hold);
    }

    /// Whether requests are checked against the vendored spec (false when it was not found).
    pub fn spec_checked(&self) -> bool {
        lock(&self.state).spec.is_some()
    }

    /// The bytes uploaded for a file id, once the upload URL received them.
    pub fn uploaded(&self, file_id: &str) -> Option<Vec<u8>> {
        lock(&self.state)
            .uploads
            .get(file_id)
            .and_then(|u| u.bytes.clone())
    }

    /// Accepts `token` as an app configuration token of the manifest API, issued now (it
    /// expires [`APP_CONFIG_TOKEN_LIFETIME_S`] later).
    pub fn accept_app_config_token(&self, token: &str) {
        let mut st = lock(&self.state);
        let exp = st.now_s + APP_CONFIG_TOKEN_LIFETIME_S;
        st.app_config_tokens.insert(token.to_owned(), exp);
    }

    /// Issues an app configuration token pair now, as the app settings page does.
    pub fn issue_app_config_pair(&self, token: &str, refresh_token: &str) {
        self.accept_app_config_token(token);
        lock(&self.state)
            .refresh_tokens
            .insert(refresh_token.to_owned());
    }

    /// Moves the fake's clock forward.
    pub fn advance(&self, secs: u64) {
        lock(&self.state).now_s += secs;
    }

    /// The fake's clock, for the connector under test.
    pub fn clock(&self) -> super::connector::Clock {
        let state = self.state.clone();
        super::connector::Clock::new(move || lock(&state).now_s)
    }

    /// Sets the most channels a `conversations.list` page holds.
    pub fn set_page_size(&self, n: usize) {
        lock(&self.state).page_size = n.max(1);
    }

    /// Adds a public channel; returns its id (the existing one's when a channel has that name).
    pub fn add_channel(&self, name: &str) -> String {
        let mut st = lock(&self.state);
        if let Some((id, _)) = st.channels.iter().find(|(_, n)| n == name) {
            return id.clone();
        }
        let id = format!("C0ADDED{:03}", st.next());
        st.channels.push((id.clone(), name.to_owned()));
        id
    }

    /// The app's manifest as the last `apps.manifest.update` left it.
    pub fn manifest(&self) -> Value {
        lock(&self.state).manifest.clone()
    }

    /// Replaces the app's manifest (someone edited the app's settings).
    pub fn set_manifest(&self, manifest: Value) {
        lock(&self.state).manifest = manifest;
    }

    /// The user's profile as `users.profile.set` left it.
    pub fn profile(&self) -> Map<String, Value> {
        lock(&self.state).profile.clone()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

type Resp = Response<Full<Bytes>>;

/// A response with `status`, a `Content-Type` and `body`.
fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

fn json_response(status: StatusCode, v: &Value) -> Resp {
    response(
        status,
        "application/json; charset=utf-8",
        Bytes::from(v.to_string()),
    )
}

fn ok(mut v: Value) -> Resp {
    if let Some(m) = v.as_object_mut() {
        m.insert("ok".into(), Value::Bool(true));
    }
    json_response(StatusCode::OK, &v)
}

fn slack_error(code: &str) -> Resp {
    json_response(StatusCode::OK, &json!({"ok": false, "error": code}))
}

fn invalid_arguments(messages: Vec<String>) -> Resp {
    json_response(
        StatusCode::OK,
        &json!({
            "ok": false,
            "error": "invalid_arguments",
            "response_metadata": { "messages": messages },
        }),
    )
}

/// [`handle`], then the hold [`FakeSlack::hold_answers`] set for the method, if any.
async fn handle_and_hold(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = handle(state.clone(), req).await;
    let hold = {
        let st = lock(&state);
        st.hold
            .iter()
            .find(|(m, _)| path.ends_with(&format!("/{m}")))
            .map(|(_, d)| *d)
    };
    if let Some(d) = hold {
        tokio::time::sleep(d).await;
    }
    resp
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let recorded = Recorded {
        method: parts.method.clone(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body,
    };
    let mut st = lock(&state);
    st.requests.push(recorded.clone());

    if let Some(file_id) = recorded.path.strip_prefix("/upload/v1/") {
        return Ok(st.receive_upload(file_id, &recorded));
    }
    let method = recorded.api_method().to_owned();
    if method.is_empty() {
        return Ok(json_response(
            StatusCode::NOT_FOUND,
            &json!({"ok": false, "error": "unknown_method"}),
        ));
    }
    if let Some(f) = st.failures.get_mut(&method).and_then(VecDeque::pop_front) {
        return Ok(match f {
            Failure::Error(code) => slack_error(&code),
            Failure::RateLimited { retry_after_secs } => {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"ok": false, "error": "ratelimited"}),
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, retry_after_secs.into());
                r
            }
            Failure::ServerError => response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                Bytes::from_static(b"Internal Server Error"),
            ),
        });
    }
    if recorded.method != Method::POST && recorded.method != Method::GET {
        return Ok(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"ok": false, "error": "method_not_supported"}),
        ));
    }

    if method == "tooling.tokens.rotate" {
        let Some(params) = params_of(&recorded.headers, &recorded.body) else {
            return Ok(slack_error("invalid_form_data"));
        };
        return Ok(st.rotate(&params));
    }
    // Who is calling.
    let Some(auth) = recorded.header("authorization") else {
        return Ok(slack_error("not_authed"));
    };
    if method.starts_with("apps.manifest.") {
        let exp = auth
            .strip_prefix("Bearer ")
            .and_then(|t| st.app_config_tokens.get(t).copied());
        match exp {
            None => return Ok(slack_error("invalid_auth")),
            Some(exp) if st.now_s >= exp => return Ok(slack_error("token_expired")),
            Some(_) => {}
        }
        let Some(params) = params_of(&recorded.headers, &recorded.body) else {
            return Ok(slack_error("invalid_form_data"));
        };
        return Ok(match method.as_str() {
            "apps.manifest.export" => st.manifest_export(&params),
            "apps.manifest.validate" => st.manifest_validate(&params),
            "apps.manifest.update" => st.manifest_update(&params),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({"ok": false, "error": "unknown_method", "req_method": method}),
            ),
        });
    }
    let is_bot = auth == format!("Bearer {}", st.bot_token);
    let is_user = st
        .user_token
        .as_ref()
        .is_some_and(|t| auth == format!("Bearer {t}"));
    if !is_bot && !is_user {
        return Ok(slack_error("invalid_auth"));
    }

    let Some(params) = params_of(&recorded.headers, &recorded.body) else {
        return Ok(slack_error("invalid_form_data"));
    };
    if let Some(spec) = st.spec
        && let Some(messages) = spec.check(&method, &params)
    {
        return Ok(invalid_arguments(messages));
    }
    let resp = match method.as_str() {
        "auth.test" => st.auth_test(is_bot),
        "chat.postMessage" => st.post_message(&params),
        "conversations.create" => st.create_channel(&params),
        "conversations.invite" => st.invite(&params),
        "conversations.list" => st.list_channels(&params),
        "files.getUploadURLExternal" => st.get_upload_url(&params),
        "files.completeUploadExternal" => st.complete_upload(&params),
        "users.profile.set" if is_bot => slack_error("not_allowed_token_type"),
        "users.profile.set" => st.profile_set(&params),
        _ => json_response(
            StatusCode::NOT_FOUND,
            &json!({"ok": false, "error": "unknown_method", "req_method": method}),
        ),
    };
    // Performed; the answer is lost on the way (see `FakeSlack::lose_answers`).
    if let Some(n) = st.lost.get_mut(&method).filter(|n| **n > 0) {
        *n -= 1;
        return Ok(crate::platforms::fakekit::lost_answer());
    }
    Ok(resp)
}

fn str_param<'a>(params: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

fn bool_param(params: &Map<String, Value>, key: &str) -> bool {
    match params.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        _ => false,
    }
}

impl State {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn ts(&mut self) -> String {
        let n = self.next();
        format!("{}.{:06}", 1_720_612_800 + n, n * 100)
    }

    fn channel(&self, reference: &str) -> Option<(String, String)> {
        let name = reference.strip_prefix('#').unwrap_or(reference);
        self.channels
            .iter()
            .find(|(id, n)| id == reference || n == name)
            .cloned()
    }

    /// A channel by id only (methods whose reference says "channel ID").
    fn channel_by_id(&self, id: &str) -> Option<(String, String)> {
        self.channels.iter().find(|(i, _)| i == id).cloned()
    }

    fn rotate(&mut self, p: &Map<String, Value>) -> Resp {
        let Some(refresh) = str_param(p, "refresh_token") else {
            return invalid_arguments(vec!["[ERROR] missing required field: refresh_token".into()]);
        };
        if !self.refresh_tokens.remove(refresh) {
            return slack_error("invalid_refresh_token");
        }
        let n = self.next();
        let token = format!("xoxe.xoxp-1-rotated-{n:04}");
        let new_refresh = format!("xoxe-1-refresh-{n:04}");
        let iat = self.now_s;
        let exp = iat + APP_CONFIG_TOKEN_LIFETIME_S;
        self.app_config_tokens.insert(token.clone(), exp);
        self.refresh_tokens.insert(new_refresh.clone());
        ok(json!({
            "token": token,
            "refresh_token": new_refresh,
            "team_id": TEAM_ID,
            "user_id": USER_ID,
            "iat": iat,
            "exp": exp,
        }))
    }

    fn list_channels(&mut self, p: &Map<String, Value>) -> Resp {
        let types = str_param(p, "types").unwrap_or("public_channel");
        let want_public = types.split(',').any(|t| t.trim() == "public_channel");
        let want_private = types.split(',').any(|t| t.trim() == "private_channel");
        let visible: Vec<(String, String)> = self
            .channels
            .iter()
            .filter(|(id, _)| {
                if self.private.contains(id) {
                    want_private
                } else {
                    want_public
                }
            })
            .cloned()
            .collect();
        let start = match str_param(p, "cursor").filter(|c| !c.is_empty()) {
            None => 0,
            Some(c) => match c
                .strip_prefix("dXNlcjo")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(n) => n,
                None => return slack_error("invalid_cursor"),
            },
        };
        let limit = p
            .get("limit")
            .and_then(|l| match l {
                Value::String(s) => s.parse::<usize>().ok(),
                Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                _ => None,
            })
            .unwrap_or(100)
            .clamp(1, 1000)
            .min(self.page_size);
        let page: Vec<Value> = visible
            .iter()
            .skip(start)
            .take(limit)
            .map(|(id, name)| {
                let private = self.private.contains(id);
                json!({"id": id, "name": name, "is_channel": !private, "is_private": private, "is_archived": false, "is_member": true})
            })
            .collect();
        let end = start + page.len();
        let next = if end < visible.len() {
            format!("dXNlcjo{end}")
        } else {
            String::new()
        };
        ok(json!({"channels": page, "response_metadata": {"next_cursor": next}}))
    }

    fn auth_test(&mut self, is_bot: bool) -> Resp {
        if is_bot {
            ok(json!({
                "url": "https://fake-workspace.slack.com/",
                "team": TEAM_NAME,
                "user": "supportopsd",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": false,
            }))
        } else {
            ok(json!({
                "url": "https://fake-workspace.slack.com/",
                "team": TEAM_NAME,
                "user": "grace",
                "team_id": TEAM_ID,
                "user_id": USER_ID,
                "is_enterprise_install": false,
            }))
        }
    }

    fn post_message(&mut self, p: &Map<String, Value>) -> Resp {
        let Some(reference) = str_param(p, "channel") else {
            return slack_error("channel_not_found");
        };
        let Some((id, _)) = self.channel(reference) else {
            return slack_error("channel_not_found");
        };
        let text = str_param(p, "text").unwrap_or("");
        let has_blocks = p.get("blocks").is_some_and(|b| !b.is_null());
        let has_attachments = p.get("attachments").is_some_and(|b| !b.is_null());
        if text.is_empty() && !has_blocks && !has_attachments {
            return slack_error("no_text");
        }
        if text.chars().count() > 40_000 {
            return slack_error("msg_too_long");
        }
        let ts = self.ts();
        let mut message = json!({
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
        });
        if let Some(t) = str_param(p, "thread_ts")
            && let Some(m) = message.as_object_mut()
        {
            m.insert("thread_ts".into(), Value::String(t.to_owned()));
            m.insert("parent_user_id".into(), Value::String(USER_ID.to_owned()));
        }
        if let (Some(b), Some(m)) = (p.get("blocks"), message.as_object_mut()) {
            m.insert("blocks".into(), b.clone());
        }
        ok(json!({ "channel": id, "ts": ts, "message": message }))
    }

    fn create_channel(&mut self, p: &Map<String, Value>) -> Resp {
        let name = str_param(p, "name").unwrap_or("");
        if name.is_empty() {
            return slack_error("invalid_name_required");
        }
        if name.chars().count() > 80 {
            return slack_error("invalid_name_maxlength");
        }
        if name
            .chars()
            .any(|c| !(c.is_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
        {
            return slack_error("invalid_name_specials");
        }
        if self.channels.iter().any(|(_, n)| n == name) {
            return slack_error("name_taken");
        }
        let id = format!("C0NEW{:05}", self.next());
        self.channels.push((id.clone(), name.to_owned()));
        let is_private = bool_param(p, "is_private");
        ok(json!({
            "channel": {
                "id": id,
                "name": name,
                "is_channel": !is_private,
                "is_group": is_private,
                "is_private": is_private,
                "is_archived": false,
                "is_general": false,
                "created": 1_720_612_800,
                "creator": BOT_USER_ID,
                "is_member": true,
                "name_normalized": name,
                "topic": { "value": "", "creator": "", "last_set": 0 },
                "purpose": { "value": "", "creator": "", "last_set": 0 },
            }
        }))
    }

    fn invite(&mut self, p: &Map<String, Value>) -> Resp {
        let Some((id, name)) = str_param(p, "channel").and_then(|c| self.channel_by_id(c)) else {
            return slack_error("channel_not_found");
        };
        let users = str_param(p, "users").unwrap_or("");
        if users.is_empty() {
            return slack_error("no_user");
        }
        let known: HashSet<&str> = AGENTS
            .iter()
            .copied()
            .chain([USER_ID, BOT_USER_ID])
            .collect();
        for u in users.split(',') {
            if u == BOT_USER_ID {
                return slack_error("cant_invite_self");
            }
            if !known.contains(u) && !bool_param(p, "force") {
                return slack_error("user_not_found");
            }
        }
        ok(json!({
            "channel": { "id": id, "name": name, "is_channel": true, "is_member": true }
        }))
    }

    fn get_upload_url(&mut self, p: &Map<String, Value>) -> Resp {
        let filename = str_param(p, "filename").unwrap_or("");
        let length = p.get("length").and_then(|l| match l {
            Value::String(s) => s.parse::<usize>().ok(),
            Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => None,
        });
        let mut missing = Vec::new();
        if filename.is_empty() {
            missing.push("[ERROR] missing required field: filename".to_owned());
        }
        let Some(length) = length else {
            missing.push("[ERROR] missing required field: length".to_owned());
            return invalid_arguments(missing);
        };
        if !missing.is_empty() {
            return invalid_arguments(missing);
        }
        let id = format!("F0FILE{:04}", self.next());
        self.uploads.insert(
            id.clone(),
            Upload {
                filename: filename.to_owned(),
                length,
                bytes: None,
            },
        );
        ok(json!({
            "upload_url": format!("http://{}/upload/v1/{id}", self.addr),
            "file_id": id,
        }))
    }

    fn receive_upload(&mut self, file_id: &str, r: &Recorded) -> Resp {
        let text =
            |status: StatusCode, body: String| response(status, "text/plain", Bytes::from(body));
        if r.method != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into());
        }
        let Some(u) = self.uploads.get_mut(file_id) else {
            return text(StatusCode::NOT_FOUND, "not found".into());
        };
        u.bytes = Some(r.body.clone());
        text(StatusCode::OK, format!("OK - {}", r.body.len()))
    }

    fn complete_upload(&mut self, p: &Map<String, Value>) -> Resp {
        let files: Option<Vec<Value>> = match p.get("files") {
            Some(Value::String(s)) => serde_json::from_str(s).ok(),
            Some(Value::Array(a)) => Some(a.clone()),
            _ => None,
        };
        let Some(files) = files.filter(|f| !f.is_empty()) else {
            return invalid_arguments(vec!["[ERROR] missing required field: files".into()]);
        };
        let channel = match str_param(p, "channel_id") {
            Some(c) => match self.channel_by_id(c) {
                Some((id, _)) => Some(id),
                None => return slack_error("channel_not_found"),
            },
            None => None,
        };
        let mut out = Vec::new();
        for f in &files {
            let Some(id) = f.get("id").and_then(Value::as_str) else {
                return invalid_arguments(vec!["[ERROR] files: missing id".into()]);
            };
            let Some(u) = self.uploads.get(id) else {
                return slack_error("file_not_found");
            };
            let Some(bytes) = &u.bytes else {
                return slack_error("file_not_found");
            };
            if bytes.len() != u.length {
                return slack_error("file_upload_size_mismatch");
            }
            let title = f
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or(&u.filename);
            out.push(json!({
                "id": id,
                "name": u.filename,
                "title": title,
                "size": u.length,
                "user": BOT_USER_ID,
                "channels": channel.iter().collect::<Vec<_>>(),
            }));
        }
        ok(json!({ "files": out }))
    }

    fn manifest_export(&mut self, p: &Map<String, Value>) -> Resp {
        match str_param(p, "app_id") {
            None => invalid_arguments(vec!["[ERROR] missing required field: app_id".into()]),
            Some(APP_ID) => ok(json!({ "manifest": self.manifest.clone() })),
            Some(_) => slack_error("invalid_app_id"),
        }
    }

    /// The manifest of a validate or update call, or the answer refusing it.
    #[allow(clippy::result_large_err)] // test code; the error is the answer to send
    fn manifest_param(p: &Map<String, Value>) -> Result<Value, Resp> {
        let manifest = match p.get("manifest") {
            None | Some(Value::Null) => {
                return Err(invalid_arguments(vec![
                    "[ERROR] missing required field: manifest".into(),
                ]));
            }
            Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| {
                invalid_manifest(vec![("Manifest is not valid JSON".into(), "/".into())])
            })?,
            Some(v) => v.clone(),
        };
        let errors = manifest_errors(&manifest);
        if errors.is_empty() {
            Ok(manifest)
        } else {
            Err(invalid_manifest(errors))
        }
    }

    fn manifest_validate(&mut self, p: &Map<String, Value>) -> Resp {
        if let Some(id) = str_param(p, "app_id")
            && id != APP_ID
        {
            return slack_error("invalid_app_id");
        }
        match Self::manifest_param(p) {
            Ok(_) => ok(json!({ "errors": [] })),
            Err(r) => r,
        }
    }

    fn manifest_update(&mut self, p: &Map<String, Value>) -> Resp {
        match str_param(p, "app_id") {
            None => {
                return invalid_arguments(vec!["[ERROR] missing required field: app_id".into()]);
            }
            Some(APP_ID) => {}
            Some(_) => return slack_error("invalid_app_id"),
        }
        match Self::manifest_param(p) {
            Ok(m) => {
                let permissions_updated = m.pointer("/oauth_config/scopes")
                    != self.manifest.pointer("/oauth_config/scopes");
                self.manifest = m;
                ok(json!({ "app_id": APP_ID, "permissions_updated": permissions_updated }))
            }
            Err(r) => r,
        }
    }

    fn profile_set(&mut self, p: &Map<String, Value>) -> Resp {
        let profile: Option<Map<String, Value>> = match p.get("profile") {
            Some(Value::Object(m)) => Some(m.clone()),
            Some(Value::String(s)) => serde_json::from_str(s).ok(),
            _ => None,
        };
        let Some(profile) = profile else {
            return slack_error("invalid_profile");
        };
        if let Some(user) = str_param(p, "user")
            && user != USER_ID
        {
            return slack_error("cannot_update_admin_user");
        }
        if profile
            .get("status_text")
            .and_then(Value::as_str)
            .is_some_and(|t| t.chars().count() > 100)
        {
            return slack_error("too_long");
        }
        let text = profile.get("status_text").and_then(Value::as_str);
        let emoji = profile.get("status_emoji").and_then(Value::as_str);
        if matches!((text, emoji), (Some(""), Some(e)) if !e.is_empty())
            && self.profile.get("status_emoji").and_then(Value::as_str) == Some("")
        {
            return slack_error("must_clear_both_status_text_and_status_emoji");
        }
        for (k, v) in profile {
            self.profile.insert(k, v);
        }
        ok(json!({ "profile": self.profile.clone() }))
    }
}

/// `{"ok": false, "error": "invalid_manifest", "errors": [{message, pointer}…]}`.
fn invalid_manifest(errors: Vec<(String, String)>) -> Resp {
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|(message, pointer)| json!({ "message": message, "pointer": pointer }))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "ok": false, "error": "invalid_manifest", "errors": errors }),
    )
}

/// The fake's manifest rules, as (message, JSON pointer) pairs; empty when valid:
/// `display_information.name` is required; `settings.event_subscriptions` needs a
/// `request_url` (an `http://` or `https://` URL; Slack itself wants `https://`) unless
/// `settings.socket_mode_enabled` is true; every bot event must be one of
/// [`KNOWN_BOT_EVENTS`].
pub fn manifest_errors(manifest: &Value) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if !manifest.is_object() {
        errors.push(("Manifest must be an object".to_owned(), "/".to_owned()));
        return errors;
    }
    let name = manifest
        .pointer("/display_information/name")
        .and_then(Value::as_str);
    if name.is_none_or(str::is_empty) {
        errors.push((
            "Field is required".to_owned(),
            "/display_information/name".to_owned(),
        ));
    }
    if let Some(subs) = manifest.pointer("/settings/event_subscriptions") {
        let socket = manifest.pointer("/settings/socket_mode_enabled") == Some(&Value::Bool(true));
        match subs.get("request_url").and_then(Value::as_str) {
            None if !socket => errors.push((
                "Event Subscription requires either Request URL or Socket Mode Enabled".to_owned(),
                "/settings/event_subscriptions".to_owned(),
            )),
            Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => errors.push((
                "Invalid URL".to_owned(),
                "/settings/event_subscriptions/request_url".to_owned(),
            )),
            _ => {}
        }
        let scopes: Vec<&str> = manifest
            .pointer("/oauth_config/scopes/bot")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let events = subs.get("bot_events").and_then(Value::as_array);
        for (i, e) in events.into_iter().flatten().enumerate() {
            if !e.as_str().is_some_and(|e| KNOWN_BOT_EVENTS.contains(&e)) {
                errors.push((
                    format!("Invalid event type: {e}"),
                    format!("/settings/event_subscriptions/bot_events/{i}"),
                ));
                continue;
            }
            for needed in super::registration::scopes_for_bot_event(e.as_str().unwrap_or("")) {
                if !scopes.contains(needed) {
                    errors.push((
                        format!("Event {e} requires the bot scope {needed}"),
                        format!("/settings/event_subscriptions/bot_events/{i}"),
                    ));
                }
            }
        }
    }
    errors
}

/// The parameters of a request: a JSON object, or form fields as strings. `None` when the body
/// cannot be read as its content type says.
fn params_of(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() {
        return Some(Map::new());
    }
    if ct.starts_with("application/json") {
        return match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        };
    }
    if ct.starts_with("application/x-www-form-urlencoded") {
        return Some(
            form_decode(&String::from_utf8_lossy(body))
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
    }
    None
}

/// What the vendored spec says about each method's parameters.
#[derive(Debug)]
struct Spec {
    /// Method → (parameter → required).
    methods: HashMap<String, HashMap<String, bool>>,
}

impl Spec {
    #[cfg(any(test, feature = "test-support"))]
    fn parse(doc: &Value) -> Spec {
        let mut methods = HashMap::new();
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return Spec { methods };
        };
        for (path, ops) in paths {
            let name = path.trim_start_matches('/').to_owned();
            let mut params = HashMap::new();
            for op in ops.as_object().into_iter().flat_map(|o| o.values()) {
                for p in op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let place = p.get("in").and_then(Value::as_str).unwrap_or("");
                    // The token is modelled as a header; only body and query parameters count.
                    if place != "formData" && place != "query" {
                        continue;
                    }
                    if let Some(n) = p.get("name").and_then(Value::as_str) {
                        let required = p.get("required").and_then(Value::as_bool) == Some(true);
                        let e = params.entry(n.to_owned()).or_insert(false);
                        *e |= required;
                    }
                }
            }
            methods.insert(name, params);
        }
        Spec { methods }
    }

    /// `None` when the spec allows the request (or does not describe the method); else Slack's
    /// `invalid_arguments` messages.
    fn check(&self, method: &str, params: &Map<String, Value>) -> Option<Vec<String>> {
        let allowed = self.methods.get(method)?;
        let mut messages = Vec::new();
        for k in params.keys() {
            let newer = NEWER_THAN_SPEC.iter().any(|(m, p)| *m == method && p == k);
            if !allowed.contains_key(k) && !newer {
                messages.push(format!("[ERROR] unknown parameter: {k}"));
            }
        }
        let mut required: Vec<&String> = allowed
            .iter()
            .filter(|(_, req)| **req)
            .map(|(k, _)| k)
            .collect();
        required.sort();
        for k in required {
            if params.get(k).is_none_or(Value::is_null) {
                messages.push(format!("[ERROR] missing required field: {k}"));
            }
        }
        if messages.is_empty() {
            None
        } else {
            Some(messages)
        }
    }
}

/// The vendored spec, loaded once per process.
#[cfg(any(test, feature = "test-support"))]
fn spec() -> Option<&'static Spec> {
    static SPEC: std::sync::OnceLock<Option<Spec>> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let loaded = crate::platforms::fakekit::vendor_file("openapi/slack-web.openapi.json")
            .and_then(|p| {
                let text = std::fs::read(&p).ok()?;
                let doc: Value = serde_json::from_slice(&text).ok()?;
                Some(Spec::parse(&doc))
            });
        if loaded.is_none() {
            eprintln!("slack fake: vendor spec not found; spec check skipped");
        }
        loaded
    })
    .as_ref()
}

/// The vendored spec: the default build (`supportopsd demo`) reads no vendor documents, so the
/// fake skips the check there.
#[cfg(not(any(test, feature = "test-support")))]
fn spec() -> Option<&'static Spec> {
    None
}
