//! A fake Notion API for tests, on the shared fake-server kit ([`crate::platforms::fakekit`]):
//! a loopback server that answers the endpoints the connector uses the way Notion does, keeps
//! pages, data sources and comments in memory, and plays Notion's side of webhook
//! subscriptions (which Notion's UI, not its API, creates).
//!
//! - Every request needs `Authorization: Bearer <token>` with the token given to
//!   [`FakeNotion::start`] (else 401 `unauthorized`) and a `Notion-Version` of
//!   [`super::VERSIONS`] (missing: 400 `missing_version`; unknown: 400 `validation_error`).
//!   Errors are Notion's body: `{"object": "error", "status", "code", "message", "request_id"}`.
//! - Endpoints: `GET /v1/users/me` (the bot [`BOT_ID`]), `POST /v1/pages`, `PATCH
//!   /v1/pages/{id}`, `POST /v1/comments` (403 `restricted_resource` without the insert-comments
//!   capability, see [`FakeNotion::set_comment_capability`]), `POST
//!   /v1/data_sources/{id}/query` (with `page_size`/`start_cursor` pagination and equality
//!   filters on one property), `GET /v1/databases/{id}` (its `data_sources`) and, for
//!   `Notion-Version: 2022-06-28` only, `POST /v1/databases/{id}/query` and `database_id`
//!   parents. Unknown ids are 404 `object_not_found`; anything else is 400
//!   `invalid_request_url`.
//! - Pages in a data source must use its schema's property names, each value naming the
//!   property's type (else 400 `validation_error`); a page under a page has only `title`.
//!   Notion's limits (arrays of 100, texts of 2,000 characters…) are 400 `validation_error`.
//! - Spec check: for versions 2025-09-03 and later, each request is checked against Notion's
//!   vendored OpenAPI document (`openapi/notion.openapi.json`, "Notion API 2025-09-03 - Data
//!   Source Edition", read at run time, never copied) with [`ApiSpec::check`]; what it does not
//!   allow is 400 `validation_error` (`body failed validation: …`), an operation it does not
//!   describe 400 `invalid_request_url`. The document is partial: two shapes Notion's reference
//!   documents and it omits ([`BEYOND_SPEC`]) are checked as their nearest described shape.
//! - Scripted failures ([`FakeNotion::fail_next`], keyed by operation: [`ROUTES`]): 429
//!   `rate_limited` with `Retry-After`, 500 `internal_server_error`, 503
//!   `service_unavailable` with `Retry-After`.
//! - Webhooks: [`FakeNotion::create_subscription`] stands for an operator creating a
//!   subscription in the UI: the fake posts the one-time `{"verification_token": …}` to its
//!   URL. [`FakeNotion::verify_subscription`] stands for pasting the token back;
//!   [`FakeNotion::deliver`] then posts events signed `X-Notion-Signature: sha256=<hex
//!   HMAC-SHA256(token, body)>`. Unverified subscriptions deliver nothing, as in Notion.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::platforms::fakekit::{
    ApiSpec, Failure, Failures, FakeServer, Recorded, Resp, json_response, lock, vendor_spec,
    with_header,
};
use crate::platforms::inbound::hex;

/// The vendored OpenAPI document the fake checks requests against.
pub const SPEC: &str = "openapi/notion.openapi.json";

/// Request shapes Notion's reference documents that the vendored partial spec omits, and how
/// the fake checks them: a comment on a block (`parent.block_id`) or in a discussion
/// (`discussion_id`) is checked as a comment on a page; a sort on a timestamp (`{"timestamp",
/// "direction"}`) as a sort on a property.
pub const BEYOND_SPEC: &[&str] = &[
    "POST /v1/comments parent.block_id",
    "POST /v1/comments discussion_id",
    "POST /v1/data_sources/{id}/query sorts[].timestamp",
];

/// Operation keys of [`FakeNotion::fail_next`].
pub const ROUTES: &[&str] = &[
    "users.me",
    "pages.create",
    "pages.update",
    "comments.create",
    "data_sources.query",
    "databases.query",
    "databases.retrieve",
];

/// The bot user of the token (what `GET /v1/users/me` answers).
pub const BOT_ID: &str = "6b0d549b-6f03-475a-9600-a35a099950d8";
/// The bot's name.
pub const BOT_NAME: &str = "supportopsd";
/// The workspace's name.
pub const WORKSPACE_NAME: &str = "Acme Support";
/// The workspace's id.
pub const WORKSPACE_ID: &str = "13950b26-c203-4f3b-b97d-93ec06319565";
/// A person in the workspace.
pub const PERSON_ID: &str = "36f675cc-81e7-4ef5-a8e2-5d940ed90475";
/// A page shared with the integration, under which pages can be created.
pub const PARENT_PAGE: &str = "0ef104cd-477e-80e1-8571-cfd10e92339a";
/// A database with one data source, [`DATA_SOURCE`].
pub const DATABASE: &str = "248104cd-477e-80fd-b757-e945d38000bd";
/// The data source of [`DATABASE`]; see [`schema`].
pub const DATA_SOURCE: &str = "248104cd-477e-80af-bc30-000bc2d8a7b1";
/// A database with two data sources.
pub const TWO_SOURCE_DATABASE: &str = "31a104cd-477e-80fd-b757-e945d38000bd";
/// The integration id of the fake integration (in deliveries).
pub const INTEGRATION_ID: &str = "0ef2e755-4912-8096-91c1-00376a88a5ca";

/// The properties of [`DATA_SOURCE`]: name → type.
pub fn schema() -> BTreeMap<String, String> {
    [
        ("Name", "title"),
        ("Summary", "rich_text"),
        ("Status", "status"),
        ("Priority", "select"),
        ("Tags", "multi_select"),
        ("Count", "number"),
        ("Done", "checkbox"),
        ("Due", "date"),
        ("Owner", "people"),
        ("Link", "url"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[derive(Debug)]
struct DataSource {
    database: String,
    schema: BTreeMap<String, String>,
    /// Page ids, in creation order.
    rows: Vec<String>,
}

/// A webhook subscription, as made in Notion's UI.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// Where it delivers.
    pub url: String,
    /// Ticked event types.
    pub events: Vec<String>,
    /// The API version shaping its payloads.
    pub api_version: String,
    /// The current verification token (the HMAC key).
    pub token: String,
    /// Whether an operator verified it.
    pub verified: bool,
}

#[derive(Debug)]
struct State {
    token: String,
    spec: Option<&'static ApiSpec>,
    failures: Failures,
    seq: u64,
    pages: HashMap<String, Value>,
    databases: HashMap<String, Vec<String>>,
    data_sources: HashMap<String, DataSource>,
    comments: Vec<Value>,
    comment_capability: bool,
    subscriptions: Vec<Subscription>,
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeNotion {
    server: FakeServer,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

/// Ids compare without dashes and case.
fn key(id: &str) -> String {
    id.chars()
        .filter(|c| *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        &json!({
            "object": "error",
            "status": status.as_u16(),
            "code": code,
            "message": message,
            "request_id": "3c4a6a5e-0f0b-4a4e-8a43-fakefakefake",
        }),
    )
}

fn validation(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "validation_error", message)
}

fn not_found(what: &str, id: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "object_not_found",
        &format!(
            "Could not find {what} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
        ),
    )
}

fn bad_url() -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_url",
        "Invalid request URL.",
    )
}

impl FakeNotion {
    /// [`FakeNotion::try_start`], for the tests: a failure to bind loopback fails the test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start(token: &str) -> FakeNotion {
        FakeNotion::try_start(token)
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// Starts the fake, accepting `token`, with [`PARENT_PAGE`], [`DATABASE`] (one data source,
    /// [`DATA_SOURCE`], no rows) and [`TWO_SOURCE_DATABASE`].
    pub async fn try_start(token: &str) -> std::io::Result<FakeNotion> {
        let mut data_sources = HashMap::new();
        data_sources.insert(
            key(DATA_SOURCE),
            DataSource {
                database: DATABASE.into(),
                schema: schema(),
                rows: Vec::new(),
            },
        );
        let mut databases = HashMap::new();
        databases.insert(key(DATABASE), vec![DATA_SOURCE.to_owned()]);
        let second = [
            "31a104cd-477e-80af-bc30-000bc2d8a7b1",
            "31a104cd-477e-80af-bc30-000bc2d8a7b2",
        ];
        for ds in second {
            data_sources.insert(
                key(ds),
                DataSource {
                    database: TWO_SOURCE_DATABASE.into(),
                    schema: schema(),
                    rows: Vec::new(),
                },
            );
        }
        databases.insert(
            key(TWO_SOURCE_DATABASE),
            second.iter().map(|s| (*s).to_owned()).collect(),
        );
        let mut pages = HashMap::new();
        pages.insert(
            key(PARENT_PAGE),
            json!({
                "object": "page", "id": PARENT_PAGE,
                "created_time": "2026-01-05T09:00:00.000Z", "last_edited_time": "2026-01-05T09:00:00.000Z",
                "parent": {"type": "workspace", "workspace": true},
                "archived": false, "in_trash": false, "is_locked": false,
                "url": format!("https://www.notion.so/Support-{}", key(PARENT_PAGE)),
                "properties": {"title": {"id": "title", "type": "title", "title": [{"type": "text", "text": {"content": "Support"}, "plain_text": "Support"}]}},
            }),
        );
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            spec: vendor_spec(SPEC),
            failures: Failures::default(),
            seq: 0,
            pages,
            databases,
            data_sources,
            comments: Vec::new(),
            comment_capability: true,
            subscriptions: Vec::new(),
        }));
        let shared = state.clone();
        let server = FakeServer::try_start(move |r| lock(&shared).handle(r)).await?;
        Ok(FakeNotion {
            server,
            state,
            http: reqwest::Client::new(),
        })
    }

    /// The API base URL (`http://127.0.0.1:<port>/`), for `[endpoint] base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/", self.server.origin())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Whether requests are checked against the vendored spec (false when it was not found).
    pub fn spec_checked(&self) -> bool {
        lock(&self.state).spec.is_some()
    }

    /// Makes the next `times` calls of operation `route` (one of [`ROUTES`]) fail.
    pub fn fail_next(&self, route: &str, failure: Failure, times: usize) {
        lock(&self.state).failures.push(route, failure, times);
    }

    /// Performs the next `times` requests `method path` (path without the query, e.g.
    /// `/1/cards`), then answers them with a 504 instead: the platform acted, and its answer
    /// was lost ([`crate::platforms::fakekit::FakeServer::lose_answers`]).
    pub fn lose_answers(&self, method: http::Method, path: &str, times: usize) {
        self.server.lose_answers(method, path, times);
    }

    /// Replaces the accepted token (the old one was revoked).
    pub fn set_token(&self, token: &str) {
        lock(&self.state).token = token.to_owned();
    }

    /// Turns the integration's insert-comments capability on or off (on at start).
    pub fn set_comment_capability(&self, on: bool) {
        lock(&self.state).comment_capability = on;
    }

    /// A page as the fake keeps it.
    pub fn page(&self, id: &str) -> Option<Value> {
        lock(&self.state).pages.get(&key(id)).cloned()
    }

    /// How many pages (and database entries) exist.
    pub fn page_count(&self) -> usize {
        lock(&self.state).pages.len()
    }

    /// Every comment made, in order.
    pub fn comments(&self) -> Vec<Value> {
        lock(&self.state).comments.clone()
    }

    /// Adds `n` rows to [`DATA_SOURCE`], named `Row 1`… with `Done` true on even rows; returns
    /// their ids.
    pub fn add_rows(&self, n: usize) -> Vec<String> {
        let mut st = lock(&self.state);
        (0..n)
            .map(|i| {
                let props = json!({
                    "Name": {"title": [{"text": {"content": format!("Row {}", i + 1)}}]},
                    "Done": {"checkbox": i % 2 == 1},
                });
                st.insert_page(
                    json!({"data_source_id": DATA_SOURCE}),
                    props,
                    Some(DATA_SOURCE),
                )
            })
            .collect()
    }

    /// Subscriptions made so far.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        lock(&self.state).subscriptions.clone()
    }

    /// What an operator does in the integration's Webhooks tab: a subscription delivering
    /// `events` to `url` (payloads shaped by `api_version`). Notion then posts the one-time
    /// verification request to `url`; its answer status is returned with the subscription id.
    pub async fn create_subscription(
        &self,
        url: &str,
        events: &[&str],
        api_version: &str,
    ) -> (String, u16) {
        let (id, token) = {
            let mut st = lock(&self.state);
            let id = st.uuid(0x29d7);
            let token = format!("secret_{}{}", key(&st.uuid(0x7e57)), st.seq);
            st.subscriptions.push(Subscription {
                id: id.clone(),
                url: url.to_owned(),
                events: events.iter().map(|e| (*e).to_owned()).collect(),
                api_version: api_version.to_owned(),
                token: token.clone(),
                verified: false,
            });
            (id, token)
        };
        let status = self
            .post(url, json!({ "verification_token": token }), None)
            .await;
        (id, status)
    }

    /// "Resend token": a new verification token replaces the old one and is posted again.
    pub async fn resend_token(&self, subscription: &str) -> u16 {
        let (url, token) = {
            let mut st = lock(&self.state);
            let fresh = format!("secret_{}{}", key(&st.uuid(0x7e58)), st.seq);
            let Some(s) = st.subscriptions.iter_mut().find(|s| s.id == subscription) else {
                return 0;
            };
            s.token = fresh.clone();
            s.verified = false;
            (s.url.clone(), fresh)
        };
        self.post(&url, json!({ "verification_token": token }), None)
            .await
    }

    /// "Resend token", with the verification request signed with the *new* token (what
    /// notion-sdk-js's README says of it: the handshake "is signed with the same token"; other
    /// write-ups say it is unsigned, which [`FakeNotion::resend_token`] plays). Either way it
    /// is never signed with the token the receiver stored.
    pub async fn resend_token_signed(&self, subscription: &str) -> u16 {
        let (url, token) = {
            let mut st = lock(&self.state);
            let fresh = format!("secret_{}{}", key(&st.uuid(0x7e59)), st.seq);
            let Some(s) = st.subscriptions.iter_mut().find(|s| s.id == subscription) else {
                return 0;
            };
            s.token = fresh.clone();
            s.verified = false;
            (s.url.clone(), fresh)
        };
        self.post(&url, json!({ "verification_token": token }), Some(&token))
            .await
    }

    /// "Verify subscription" with the token an operator pasted: true when it is the current
    /// one (the subscription is then active).
    pub fn verify_subscription(&self, subscription: &str, pasted: &str) -> bool {
        let mut st = lock(&self.state);
        let Some(s) = st.subscriptions.iter_mut().find(|s| s.id == subscription) else {
            return false;
        };
        if s.token == pasted {
            s.verified = true;
        }
        s.verified
    }

    /// Delivers a `event_type` event about `entity_id` (authored by `author`, a person or
    /// [`BOT_ID`]) through a verified subscription that ticked it, signed with its token.
    /// Returns the endpoint's status, or `None` when Notion would not deliver it (unknown or
    /// unverified subscription, event not ticked).
    pub async fn deliver(
        &self,
        subscription: &str,
        event_type: &str,
        entity_id: &str,
        author: &str,
    ) -> Option<u16> {
        let (sub, body) = {
            let mut st = lock(&self.state);
            let sub = st
                .subscriptions
                .iter()
                .find(|s| s.id == subscription && s.verified)
                .filter(|s| s.events.iter().any(|e| e == event_type))?
                .clone();
            let body = st.event(&sub, event_type, entity_id, author);
            (sub, body)
        };
        Some(self.post(&sub.url, body, Some(&sub.token)).await)
    }

    async fn post(&self, url: &str, body: Value, key: Option<&str>) -> u16 {
        let bytes = body.to_string().into_bytes();
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "notion-api");
        if let Some(k) = key {
            req = req.header("x-notion-signature", signature(k, &bytes));
        }
        match req.body(bytes).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

/// `sha256=` + hex HMAC-SHA256(`token`, `body`): Notion's `X-Notion-Signature`.
pub fn signature(token: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

impl State {
    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn uuid(&mut self, prefix: u16) -> String {
        let n = self.next();
        format!("{prefix:04x}{n:04x}-477e-80e1-8571-{n:012x}")
    }

    fn now(&mut self) -> String {
        let n = self.next();
        format!(
            "2026-11-28T{:02}:{:02}:{:02}.000Z",
            10 + (n / 3600) % 10,
            (n / 60) % 60,
            n % 60
        )
    }

    fn event(
        &mut self,
        sub: &Subscription,
        event_type: &str,
        entity_id: &str,
        author: &str,
    ) -> Value {
        let entity_type = event_type.split('.').next().unwrap_or("page");
        let author_type = if author == BOT_ID { "bot" } else { "person" };
        let parent = self
            .pages
            .get(&key(entity_id))
            .and_then(|p| p.get("parent").cloned())
            .unwrap_or_else(|| json!({"id": PARENT_PAGE, "type": "page"}));
        let parent = match parent.get("data_source_id").and_then(Value::as_str) {
            Some(ds) => json!({"id": DATABASE, "type": "database", "data_source_id": ds}),
            None => {
                json!({"id": parent.get("page_id").and_then(Value::as_str).unwrap_or(PARENT_PAGE), "type": "page"})
            }
        };
        let mut data = Map::new();
        data.insert("parent".into(), parent);
        if event_type == "page.properties_updated" {
            data.insert("updated_properties".into(), json!(["title"]));
        }
        if entity_type == "comment" {
            data.insert("page_id".into(), Value::String(PARENT_PAGE.into()));
        }
        json!({
            "id": self.uuid(0x367c),
            "timestamp": self.now(),
            "workspace_id": WORKSPACE_ID,
            "workspace_name": WORKSPACE_NAME,
            "subscription_id": sub.id,
            "integration_id": INTEGRATION_ID,
            "type": event_type,
            "authors": [{"id": author, "type": author_type}],
            "attempt_number": 1,
            "api_version": sub.api_version,
            "entity": {"id": entity_id, "type": entity_type},
            "data": data,
        })
    }

    fn handle(&mut self, r: &Recorded) -> Resp {
        let auth = r.header("authorization").unwrap_or("");
        if auth != format!("Bearer {}", self.token) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "API token is invalid.",
            );
        }
        let Some(version) = r.header("notion-version").map(str::to_owned) else {
            return error(
                StatusCode::BAD_REQUEST,
                "missing_version",
                "Notion-Version header failed validation: Notion-Version should be defined, instead was `undefined`.",
            );
        };
        if !super::VERSIONS.contains(&version.as_str()) {
            return validation(&format!(
                "Notion-Version header failed validation: `{version}` is not a supported version."
            ));
        }
        let body = if r.body.is_empty() {
            None
        } else {
            match serde_json::from_slice::<Value>(&r.body) {
                Ok(v) => Some(v),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        "Error parsing JSON body.",
                    );
                }
            }
        };
        let segs: Vec<String> = r.segments().into_iter().map(str::to_owned).collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let route = match (&r.method, segs.as_slice()) {
            (&Method::GET, ["v1", "users", "me"]) => "users.me",
            (&Method::POST, ["v1", "pages"]) => "pages.create",
            (&Method::PATCH, ["v1", "pages", _]) => "pages.update",
            (&Method::POST, ["v1", "comments"]) => "comments.create",
            (&Method::POST, ["v1", "data_sources", _, "query"]) => "data_sources.query",
            (&Method::POST, ["v1", "databases", _, "query"]) => "databases.query",
            (&Method::GET, ["v1", "databases", _]) => "databases.retrieve",
            _ => return bad_url(),
        };
        if let Some(f) = self.failures.take(route) {
            return match f {
                Failure::RateLimited { retry_after_secs } => with_header(
                    error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "You have been rate limited. Please try again in a few minutes.",
                    ),
                    "retry-after",
                    &retry_after_secs.to_string(),
                ),
                Failure::ServerError => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_server_error",
                    "Unexpected error occurred.",
                ),
                Failure::Unavailable { retry_after_secs } => with_header(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "service_unavailable",
                        "Notion is unavailable, please try again later.",
                    ),
                    "retry-after",
                    &retry_after_secs.to_string(),
                ),
            };
        }
        let data_sources = version.as_str() >= "2025-09-03";
        if data_sources && let Some(spec) = self.spec {
            let view = body.as_ref().map(|b| spec_view(route, b));
            if !spec.describes(&r.method, &r.path) {
                return bad_url();
            }
            if let Err(errors) = spec.check(&r.method, &r.path, &r.query, view.as_ref(), &[]) {
                return validation(&format!("body failed validation: {}", errors.join("; ")));
            }
        }
        if let Some(b) = &body
            && let Err(e) = super::values::check_limits(b)
        {
            return validation(&e);
        }
        let body = body.unwrap_or(Value::Null);
        match (route, segs.as_slice()) {
            ("users.me", _) => json_response(
                StatusCode::OK,
                &json!({
                    "object": "user", "id": BOT_ID, "name": BOT_NAME, "avatar_url": null, "type": "bot",
                    "bot": {"owner": {"type": "workspace", "workspace": true}, "workspace_name": WORKSPACE_NAME},
                }),
            ),
            ("pages.create", _) => self.create_page(&body, &version),
            ("pages.update", [_, _, id]) => self.update_page(id, &body, &version),
            ("comments.create", _) => self.create_comment(&body),
            ("data_sources.query", [_, _, id, _]) => self.query(id, &body),
            ("databases.query", [_, _, id, _]) => {
                if data_sources {
                    return bad_url();
                }
                let Some(first) = self
                    .databases
                    .get(&key(id))
                    .and_then(|d| d.first())
                    .cloned()
                else {
                    return not_found("database", id);
                };
                self.query(&first, &body)
            }
            ("databases.retrieve", [_, _, id]) => match self.databases.get(&key(id)) {
                Some(sources) => json_response(
                    StatusCode::OK,
                    &json!({
                        "object": "database", "id": id,
                        "title": [{"type": "text", "text": {"content": "Tickets"}, "plain_text": "Tickets"}],
                        "data_sources": sources.iter().enumerate().map(|(i, s)| json!({"id": s, "name": format!("Source {}", i + 1)})).collect::<Vec<_>>(),
                    }),
                ),
                None => not_found("database", id),
            },
            _ => bad_url(),
        }
    }

    /// The error Notion gives for property values that do not fit a data source's schema (or
    /// a page parent's `title`), if any.
    fn property_error(&self, ds: Option<&str>, props: &Map<String, Value>) -> Option<Resp> {
        let schema = match ds {
            Some(ds) => match self.data_sources.get(&key(ds)) {
                Some(d) => d.schema.clone(),
                None => return Some(not_found("data source", ds)),
            },
            None => [("title".to_owned(), "title".to_owned())]
                .into_iter()
                .collect(),
        };
        for (name, v) in props {
            let Some(ty) = schema.get(name) else {
                return Some(validation(&format!(
                    "{name} is not a property that exists."
                )));
            };
            if v.get(ty).is_none() {
                return Some(validation(&format!(
                    "body.properties.{name}.{ty} should be defined, instead was `undefined`."
                )));
            }
        }
        None
    }

    fn insert_page(&mut self, parent: Value, props: Value, ds: Option<&str>) -> String {
        let id = self.uuid(0x153a);
        let now = self.now();
        let typed: Map<String, Value> = props
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut()
                    && let Some(ty) = m.keys().next().cloned()
                {
                    m.insert("type".into(), Value::String(ty));
                    m.insert("id".into(), Value::String(format!("{:04}", k.len())));
                }
                (k.clone(), v)
            })
            .collect();
        let page = json!({
            "object": "page", "id": id, "created_time": now, "last_edited_time": now,
            "created_by": {"object": "user", "id": BOT_ID}, "last_edited_by": {"object": "user", "id": BOT_ID},
            "parent": parent, "archived": false, "in_trash": false, "is_locked": false,
            "url": format!("https://www.notion.so/{}", key(&id)),
            "properties": typed,
        });
        self.pages.insert(key(&id), page);
        if let Some(ds) = ds.and_then(|d| self.data_sources.get_mut(&key(d))) {
            ds.rows.push(id.clone());
        }
        id
    }

    fn create_page(&mut self, body: &Value, version: &str) -> Resp {
        let parent = body.get("parent").cloned().unwrap_or(Value::Null);
        let props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
        let Some(pm) = props.as_object() else {
            return validation("body.properties should be an object.");
        };
        let data_sources = version >= "2025-09-03";
        let (stored_parent, ds) = if let Some(p) = parent.get("page_id").and_then(Value::as_str) {
            if !self.pages.contains_key(&key(p)) {
                return not_found("page", p);
            }
            (json!({"type": "page_id", "page_id": p}), None)
        } else if let Some(ds) = parent.get("data_source_id").and_then(Value::as_str) {
            if !data_sources {
                return validation(
                    "body.parent.data_source_id is not supported before Notion-Version 2025-09-03.",
                );
            }
            let Some(d) = self.data_sources.get(&key(ds)) else {
                return not_found("data source", ds);
            };
            (
                json!({"type": "data_source_id", "data_source_id": ds, "database_id": d.database}),
                Some(ds.to_owned()),
            )
        } else if let Some(db) = parent.get("database_id").and_then(Value::as_str) {
            let Some(sources) = self.databases.get(&key(db)) else {
                return not_found("database", db);
            };
            if data_sources && sources.len() > 1 {
                return validation(&format!(
                    "Database {db} has multiple data sources; use parent.data_source_id."
                ));
            }
            let Some(first) = sources.first().cloned() else {
                return not_found("database", db);
            };
            (
                json!({"type": "database_id", "database_id": db}),
                Some(first),
            )
        } else {
            return validation(
                "body.parent should be a page_id, data_source_id or database_id parent.",
            );
        };
        if let Some(r) = self.property_error(ds.as_deref(), pm) {
            return r;
        }
        let id = self.insert_page(stored_parent, props, ds.as_deref());
        if let Some(page) = self.pages.get_mut(&key(&id)) {
            for k in ["icon", "cover"] {
                if let Some(v) = body.get(k) {
                    page[k] = v.clone();
                }
            }
        }
        json_response(StatusCode::OK, &self.pages[&key(&id)])
    }

    fn update_page(&mut self, id: &str, body: &Value, version: &str) -> Resp {
        let Some(page) = self.pages.get(&key(id)).cloned() else {
            return not_found("page", id);
        };
        if version >= "2026-03-11" && body.get("archived").is_some() {
            return validation("body.archived is not supported; use body.in_trash.");
        }
        let trashed = page["in_trash"] == json!(true);
        if let Some(props) = body.get("properties").and_then(Value::as_object) {
            if trashed {
                return validation(
                    "Can't edit block that is archived. You must unarchive the block before editing.",
                );
            }
            let ds = page["parent"]["data_source_id"].as_str().map(str::to_owned);
            if let Some(r) = self.property_error(ds.as_deref(), props) {
                return r;
            }
        }
        let now = self.now();
        let Some(page) = self.pages.get_mut(&key(id)) else {
            return not_found("page", id);
        };
        if let Some(props) = body.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut()
                    && let Some(ty) = m.keys().next().cloned()
                {
                    m.insert("type".into(), Value::String(ty));
                }
                page["properties"][k] = v;
            }
        }
        for k in ["icon", "cover", "is_locked"] {
            if let Some(v) = body.get(k) {
                page[k] = v.clone();
            }
        }
        if let Some(t) = body.get("in_trash").or_else(|| body.get("archived")) {
            page["in_trash"] = t.clone();
            page["archived"] = t.clone();
        }
        page["last_edited_time"] = Value::String(now);
        json_response(StatusCode::OK, page)
    }

    fn create_comment(&mut self, body: &Value) -> Resp {
        if !self.comment_capability {
            return error(
                StatusCode::FORBIDDEN,
                "restricted_resource",
                "Insufficient permissions for this endpoint.",
            );
        }
        let page = body["parent"]["page_id"].as_str();
        let block = body["parent"]["block_id"].as_str();
        let discussion = body["discussion_id"].as_str();
        let (parent, discussion_id) = match (page, block, discussion) {
            (Some(p), None, None) => {
                if !self.pages.contains_key(&key(p)) {
                    return not_found("page", p);
                }
                (json!({"type": "page_id", "page_id": p}), self.uuid(0xd15c))
            }
            (None, Some(b), None) => (
                json!({"type": "block_id", "block_id": b}),
                self.uuid(0xd15c),
            ),
            (None, None, Some(d)) => {
                let Some(first) = self
                    .comments
                    .iter()
                    .find(|c| c["discussion_id"].as_str().map(key) == Some(key(d)))
                else {
                    return not_found("discussion", d);
                };
                (first["parent"].clone(), d.to_owned())
            }
            _ => {
                return validation(
                    "body failed validation. Fix one: body.parent should be defined, body.discussion_id should be defined.",
                );
            }
        };
        let id = self.uuid(0xc0ee);
        let now = self.now();
        let comment = json!({
            "object": "comment", "id": id, "parent": parent, "discussion_id": discussion_id,
            "created_time": now, "last_edited_time": now,
            "created_by": {"object": "user", "id": BOT_ID},
            "rich_text": body["rich_text"].clone(),
        });
        self.comments.push(comment.clone());
        json_response(StatusCode::OK, &comment)
    }

    fn query(&mut self, ds: &str, body: &Value) -> Resp {
        let Some(d) = self.data_sources.get(&key(ds)) else {
            return not_found("data source", ds);
        };
        let size = match body.get("page_size") {
            None => 100,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=100) => usize::try_from(n).unwrap_or(100),
                _ => return validation("body.page_size should be a number between 1 and 100."),
            },
        };
        let filter = body.get("filter");
        let rows: Vec<Value> = d
            .rows
            .iter()
            .filter_map(|id| self.pages.get(&key(id)))
            .filter(|p| p["in_trash"] != json!(true))
            .filter(|p| filter.is_none_or(|f| matches_filter(p, f)))
            .cloned()
            .collect();
        let start = match body.get("start_cursor").and_then(Value::as_str) {
            None => 0,
            Some(c) => match rows.iter().position(|p| p["id"].as_str() == Some(c)) {
                Some(i) => i,
                None => return validation("body.start_cursor should be a valid cursor."),
            },
        };
        let page: Vec<Value> = rows.iter().skip(start).take(size).cloned().collect();
        let next = rows
            .get(start + size)
            .and_then(|p| p["id"].as_str())
            .map(str::to_owned);
        json_response(
            StatusCode::OK,
            &json!({
                "object": "list", "type": "page_or_data_source", "page_or_data_source": {},
                "results": page, "has_more": next.is_some(), "next_cursor": next,
            }),
        )
    }
}

/// The equality filters the fake understands: `{"property": P, "<type>": {"equals": v}}`;
/// other filters match every row.
fn matches_filter(page: &Value, f: &Value) -> bool {
    let Some(prop) = f.get("property").and_then(Value::as_str) else {
        return true;
    };
    let Some((ty, cond)) = f
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| *k != "property"))
    else {
        return true;
    };
    let Some(want) = cond.get("equals") else {
        return true;
    };
    let have = &page["properties"][prop][ty.as_str()];
    match ty.as_str() {
        "select" | "status" => have.get("name") == Some(want),
        "title" | "rich_text" => {
            let text: String = have
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["text"]["content"].as_str())
                .collect();
            Some(text.as_str()) == want.as_str()
        }
        _ => have == want,
    }
}

/// The body as the vendored spec describes it (see [`BEYOND_SPEC`]).
fn spec_view(route: &str, body: &Value) -> Value {
    let mut v = body.clone();
    match route {
        "comments.create" => {
            if let Some(m) = v.as_object_mut() {
                if let Some(d) = m.remove("discussion_id") {
                    m.entry("parent").or_insert(json!({ "page_id": d }));
                }
                if let Some(p) = m.get_mut("parent").and_then(Value::as_object_mut)
                    && let Some(b) = p.remove("block_id")
                {
                    p.entry("page_id").or_insert(b);
                }
            }
        }
        "data_sources.query" => {
            for s in v
                .get_mut("sorts")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(m) = s.as_object_mut()
                    && let Some(t) = m.remove("timestamp")
                {
                    m.entry("property").or_insert(t);
                }
            }
        }
        _ => {}
    }
    v
}
