//! A fake Trello REST API for tests, on the shared [`fakekit`] server: it answers the calls the
//! connector makes the way Trello does, keeps boards, lists, labels, cards, checklists,
//! comments and webhooks in memory, and delivers signed webhook actions.
//!
//! - Authentication: `Authorization: OAuth oauth_consumer_key="…", oauth_token="…"` or the
//!   `key`/`token` query parameters must carry the key and token given to
//!   [`FakeTrello::start`]; else HTTP 401 with Trello's plain-text bodies (`invalid key`,
//!   `invalid token`). [`FakeTrello::revoke_token`] makes the token invalid.
//! - Spec check: every request is checked against Trello's vendored OpenAPI document
//!   (`openapi/trello.openapi.json`, read at run time, never copied): an operation it does not
//!   describe is HTTP 404 `Cannot <METHOD> <path>` (Express's text, as Trello answers), a query
//!   parameter it does not declare or a missing required one is HTTP 400 with a text body.
//! - Errors in Trello's shapes: `text/plain` 400s (`invalid value for idList`, `invalid id`,
//!   `A webhook with that callback, model, and token already exists`), 404s, and JSON 429s
//!   (`{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}`); scripted with
//!   [`FakeTrello::fail_next`] (route keys such as `"POST /cards"`, `"GET /members/me"`).
//! - Rate limit: 100 requests per 10 s per token, as Trello; beyond it, HTTP 429 with
//!   `{"error":"API_TOKEN_LIMIT_EXCEEDED",…}` and no `Retry-After` ([`FakeTrello::set_rate_limit`]).
//! - Webhooks: `POST /1/webhooks` first sends a `HEAD` to the callback URL and refuses with
//!   Trello's 400 (`URL (…) did not return 200 status code, got N`) unless it answers 200;
//!   `PUT` checks a changed URL the same way. Webhooks belong to the token that made them
//!   (`GET /1/tokens/{token}/webhooks`). [`FakeTrello::deliver`] POSTs an action to a
//!   webhook's callback signed `base64(HMAC-SHA1(app secret, body + callbackURL))`, and, like
//!   Trello, deletes the webhook when the callback answers 410.
//! - [`FakeTrello::proxy`] routes a public URL prefix to a local origin (a reverse proxy in
//!   front of the daemon), for the `HEAD` check and deliveries.

#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use sha1::Sha1;
use tokio::time::Instant;

use crate::platforms::fakekit::{
    ApiSpec, Failure, Failures, FakeServer, Recorded, Resp, json_response, lock, text_response,
    vendor_spec, with_header,
};

/// The vendor document the fake checks requests against.
pub const SPEC: &str = "openapi/trello.openapi.json";

/// The member the token belongs to (who supportopsd acts as).
pub const MEMBER_ID: &str = "5a1b2c3d4e5f60718293a4b5";
/// Its username.
pub const MEMBER_USERNAME: &str = "supportopsd_bot";
/// A human member who acts on the boards (the creator of [`FakeTrello::action`]s).
pub const HUMAN_ID: &str = "5e0f1a2b3c4d5e6f7a8b9c01";
/// The watched board.
pub const BOARD_ID: &str = "5f1a2b3c4d5e6f7a8b9c0d1e";
/// Its short link.
pub const BOARD_SHORT_LINK: &str = "Xy12AbCd";
/// A second board.
pub const OTHER_BOARD_ID: &str = "5f1a2b3c4d5e6f7a8b9c0d2f";
/// List "Inbox" of [`BOARD_ID`].
pub const LIST_INBOX: &str = "5f1a2b3c4d5e6f7a8b9c0e01";
/// List "Doing" of [`BOARD_ID`].
pub const LIST_DOING: &str = "5f1a2b3c4d5e6f7a8b9c0e02";
/// List "Escalated" of [`OTHER_BOARD_ID`].
pub const LIST_OTHER: &str = "5f1a2b3c4d5e6f7a8b9c0e03";
/// Label "urgent" (red) of [`BOARD_ID`].
pub const LABEL_URGENT: &str = "5f1a2b3c4d5e6f7a8b9c0f01";
/// Label colours Trello takes.
const COLORS: &[&str] = &[
    "green", "yellow", "orange", "red", "purple", "blue", "sky", "lime", "pink", "black",
];

type HmacSha1 = Hmac<Sha1>;

/// Trello's per-token limit: 100 requests per 10 seconds.
pub const TOKEN_LIMIT: (usize, Duration) = (100, Duration::from_secs(10));

/// A webhook as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// The board (or other model) it watches.
    pub id_model: String,
    /// Where it delivers.
    pub callback_url: String,
    /// Its description.
    pub description: String,
    /// Whether it delivers.
    pub active: bool,
    /// The token it belongs to.
    pub token: String,
}

impl Webhook {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "description": self.description,
            "idModel": self.id_model,
            "callbackURL": self.callback_url,
            "active": self.active,
            "consecutiveFailures": 0,
            "firstConsecutiveFailDate": null,
        })
    }
}

#[derive(Debug)]
struct State {
    api_key: String,
    token: String,
    token_valid: bool,
    app_secret: String,
    spec: Option<&'static ApiSpec>,
    failures: Failures,
    seq: u64,
    /// (id, short link, name).
    boards: Vec<(String, String, String)>,
    /// (id, board id, name).
    lists: Vec<(String, String, String)>,
    /// Labels: `{id, idBoard, name, color}`.
    labels: Vec<Value>,
    cards: Vec<Map<String, Value>>,
    checklists: Vec<Map<String, Value>>,
    comments: Vec<Value>,
    webhooks: Vec<Webhook>,
    proxies: Vec<(String, String)>,
    /// Requests allowed per window for the token (Trello: 100 per 10 s).
    limit: (usize, Duration),
    /// When the token's recent requests came.
    hits: VecDeque<Instant>,
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeTrello {
    server: FakeServer,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

fn text(status: StatusCode, body: &str) -> Resp {
    text_response(status, body)
}

fn not_found() -> Resp {
    text(
        StatusCode::NOT_FOUND,
        "The requested resource was not found.",
    )
}

fn invalid_value(field: &str) -> Resp {
    text(
        StatusCode::BAD_REQUEST,
        &format!("invalid value for {field}"),
    )
}

fn ok(v: &Value) -> Resp {
    json_response(StatusCode::OK, v)
}

impl FakeTrello {
    /// [`FakeTrello::try_start`], for the tests: a failure to bind loopback fails the test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start(api_key: &str, token: &str, app_secret: &str) -> FakeTrello {
        FakeTrello::try_start(api_key, token, app_secret)
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// Starts the fake, accepting `api_key` and `token`; deliveries are signed with
    /// `app_secret`.
    pub async fn try_start(
        api_key: &str,
        token: &str,
        app_secret: &str,
    ) -> std::io::Result<FakeTrello> {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_owned(),
            token: token.to_owned(),
            token_valid: true,
            app_secret: app_secret.to_owned(),
            spec: vendor_spec(SPEC),
            failures: Failures::default(),
            seq: 0,
            boards: vec![
                (
                    BOARD_ID.into(),
                    BOARD_SHORT_LINK.into(),
                    "Support escalations".into(),
                ),
                (
                    OTHER_BOARD_ID.into(),
                    "Zz98YxWv".into(),
                    "Engineering".into(),
                ),
            ],
            lists: vec![
                (LIST_INBOX.into(), BOARD_ID.into(), "Inbox".into()),
                (LIST_DOING.into(), BOARD_ID.into(), "Doing".into()),
                (LIST_OTHER.into(), OTHER_BOARD_ID.into(), "Escalated".into()),
            ],
            labels: vec![
                json!({"id": LABEL_URGENT, "idBoard": BOARD_ID, "name": "urgent", "color": "red"}),
            ],
            cards: Vec::new(),
            checklists: Vec::new(),
            comments: Vec::new(),
            webhooks: Vec::new(),
            proxies: Vec::new(),
            limit: TOKEN_LIMIT,
            hits: VecDeque::new(),
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let st = state.clone();
        let client = http.clone();
        let server = FakeServer::try_start_async(move |r: Recorded| {
            let st = st.clone();
            let client = client.clone();
            async move { handle(st, client, r).await }
        })
        .await?;
        Ok(FakeTrello {
            server,
            state,
            http,
        })
    }

    /// The API base URL (`http://127.0.0.1:<port>/1`), for `[endpoint] base_url`.
    pub fn base_url(&self) -> String {
        format!("{}/1", self.server.origin())
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// The requests of one route key (`"POST /cards"`, `"PUT /cards/{id}"`…).
    pub fn requests_to(&self, key: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| route_key(&r.method, &r.path) == key)
            .collect()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Whether requests are checked against the vendor document (false when it is absent).
    pub fn spec_checked(&self) -> bool {
        lock(&self.state).spec.is_some()
    }

    /// Makes the next `times` calls of route `key` fail with `failure`.
    pub fn fail_next(&self, key: &str, failure: Failure, times: usize) {
        lock(&self.state).failures.push(key, failure, times);
    }

    /// Performs the next `times` requests `method path` (path without the query, e.g.
    /// `/1/cards`), then answers them with a 504 instead: the platform acted, and its answer
    /// was lost ([`crate::platforms::fakekit::FakeServer::lose_answers`]).
    pub fn lose_answers(&self, method: http::Method, path: &str, times: usize) {
        self.server.lose_answers(method, path, times);
    }

    /// Allows the token `max` requests per `window` (default [`TOKEN_LIMIT`]); beyond that,
    /// Trello's JSON 429 without `Retry-After`.
    pub fn set_rate_limit(&self, max: usize, window: Duration) {
        let mut st = lock(&self.state);
        st.limit = (max, window);
        st.hits.clear();
    }

    /// Makes the token invalid from now on (revoked or expired).
    pub fn revoke_token(&self) {
        lock(&self.state).token_valid = false;
    }

    /// Routes callback URLs starting with `public_prefix` to `local_origin` (for the `HEAD`
    /// check and deliveries), like a reverse proxy in front of the daemon.
    pub fn proxy(&self, public_prefix: &str, local_origin: &str) {
        lock(&self.state)
            .proxies
            .push((public_prefix.to_owned(), local_origin.to_owned()));
    }

    /// Every webhook, of every token.
    pub fn webhooks(&self) -> Vec<Webhook> {
        lock(&self.state).webhooks.clone()
    }

    /// Adds a webhook directly (someone else's, or one made by hand); returns its id.
    pub fn add_webhook(
        &self,
        id_model: &str,
        callback_url: &str,
        description: &str,
        token: &str,
    ) -> String {
        let mut st = lock(&self.state);
        let id = st.new_id();
        st.webhooks.push(Webhook {
            id: id.clone(),
            id_model: id_model.to_owned(),
            callback_url: callback_url.to_owned(),
            description: description.to_owned(),
            active: true,
            token: token.to_owned(),
        });
        id
    }

    /// Deletes a webhook behind the connector's back (drift).
    pub fn delete_webhook(&self, id: &str) -> bool {
        let mut st = lock(&self.state);
        let before = st.webhooks.len();
        st.webhooks.retain(|w| w.id != id);
        st.webhooks.len() != before
    }

    /// Edits a webhook behind the connector's back (drift).
    pub fn edit_webhook(&self, id: &str, edit: impl FnOnce(&mut Webhook)) {
        let mut st = lock(&self.state);
        if let Some(w) = st.webhooks.iter_mut().find(|w| w.id == id) {
            edit(w);
        }
    }

    /// Every card.
    pub fn cards(&self) -> Vec<Map<String, Value>> {
        lock(&self.state).cards.clone()
    }

    /// A card by id.
    pub fn card(&self, id: &str) -> Option<Map<String, Value>> {
        lock(&self.state)
            .cards
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            .cloned()
    }

    /// Every comment action.
    pub fn comments(&self) -> Vec<Value> {
        lock(&self.state).comments.clone()
    }

    /// Every checklist (with its `checkItems`).
    pub fn checklists(&self) -> Vec<Map<String, Value>> {
        lock(&self.state).checklists.clone()
    }

    /// Every label (`{id, idBoard, name, color}`).
    pub fn labels(&self) -> Vec<Value> {
        lock(&self.state).labels.clone()
    }

    /// Creates a card in `list` directly (as a person would); returns it (`None`: no such list
    /// in the fake).
    pub fn add_card(&self, list: &str, name: &str) -> Option<Map<String, Value>> {
        let mut st = lock(&self.state);
        let board = st.lists.iter().find(|l| l.0 == list).map(|l| l.1.clone())?;
        let card = st.new_card(list, &board, name);
        st.cards.push(card.clone());
        Some(card)
    }

    /// A webhook action body part of type `kind` on `card`, by [`HUMAN_ID`], in Trello's
    /// shape (`createCard`, `commentCard` with `text`, `updateCard`…).
    pub fn action(&self, kind: &str, card_id: &str, text: Option<&str>) -> Value {
        let mut st = lock(&self.state);
        let id = st.new_id();
        let card = st
            .cards
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(card_id))
            .cloned()
            .unwrap_or_default();
        let g = |k: &str| card.get(k).cloned().unwrap_or(Value::Null);
        let list_id = card.get("idList").and_then(Value::as_str).unwrap_or("");
        let list = st.lists.iter().find(|l| l.0 == list_id).cloned();
        let board = st
            .boards
            .iter()
            .find(|b| {
                Some(&b.0)
                    == card
                        .get("idBoard")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .as_ref()
            })
            .cloned();
        let mut data = json!({
            "card": {"id": g("id"), "name": g("name"), "idShort": g("idShort"), "shortLink": g("shortLink")},
            "list": list.map(|l| json!({"id": l.0, "name": l.2})).unwrap_or(Value::Null),
            "board": board.map(|b| json!({"id": b.0, "shortLink": b.1, "name": b.2})).unwrap_or(Value::Null),
        });
        if let Some(t) = text {
            data["text"] = json!(t);
        }
        json!({
            "id": id,
            "idMemberCreator": HUMAN_ID,
            "type": kind,
            "date": "2026-11-28T12:00:00.000Z",
            "data": data,
            "appCreator": null,
            "memberCreator": {"id": HUMAN_ID, "username": "grace", "fullName": "Grace Hopper"},
        })
    }

    /// POSTs `action` to webhook `webhook_id`'s callback the way Trello does: body
    /// `{action, model, webhook}`, `X-Trello-Webhook` signed with the app secret over the body
    /// and the registered callback URL. Returns the callback's status (0 when unreachable, or when the webhook is unknown or paused);
    /// a 410 deletes the webhook, as on Trello.
    pub async fn deliver(&self, webhook_id: &str, action: Value) -> u16 {
        let (hook, secret, target, model) = {
            let st = lock(&self.state);
            // An unknown or paused webhook delivers nothing.
            let Some(hook) = st
                .webhooks
                .iter()
                .find(|w| w.id == webhook_id && w.active)
                .cloned()
            else {
                return 0;
            };
            let model = st
                .boards
                .iter()
                .find(|b| b.0 == hook.id_model)
                .map(|b| json!({"id": b.0, "name": b.2, "shortLink": b.1}))
                .unwrap_or_else(|| json!({"id": hook.id_model}));
            let target = st.route(&hook.callback_url);
            (hook, st.app_secret.clone(), target, model)
        };
        let body = json!({"action": action, "model": model, "webhook": hook.json()}).to_string();
        let signature = sign(&secret, body.as_bytes(), &hook.callback_url);
        let status = self
            .http
            .post(target)
            .header("content-type", "application/json")
            .header("x-trello-webhook", signature)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        if status == 410 {
            self.delete_webhook(webhook_id);
        }
        status
    }
}

/// `base64(HMAC-SHA1(secret, body + callback_url))`: Trello's `X-Trello-Webhook`.
pub fn sign(secret: &str, body: &[u8], callback_url: &str) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = <HmacSha1 as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    mac.update(callback_url.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The route key of a request: the method and the path under `/1` with ids replaced
/// (`POST /cards`, `PUT /cards/{id}`, `GET /tokens/{token}/webhooks`).
pub fn route_key(method: &Method, path: &str) -> String {
    let segs: Vec<&str> = path
        .trim_start_matches("/1")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let shape: Vec<&str> = match segs.as_slice() {
        ["members", "me"] => vec!["members", "me"],
        ["tokens", _, rest @ ..] => std::iter::once("tokens")
            .chain(std::iter::once("{token}"))
            .chain(rest.iter().copied())
            .collect(),
        [a, _, rest @ ..] => std::iter::once(*a)
            .chain(std::iter::once("{id}"))
            .chain(rest.iter().copied())
            .collect(),
        other => other.to_vec(),
    };
    format!("{method} /{}", shape.join("/"))
}

impl State {
    fn new_id(&mut self) -> String {
        self.seq += 1;
        format!("6a{:022x}", self.seq)
    }

    fn route(&self, url: &str) -> String {
        for (from, to) in &self.proxies {
            if let Some(rest) = url.strip_prefix(from.as_str()) {
                return format!("{}{rest}", to.trim_end_matches('/'));
            }
        }
        url.to_owned()
    }

    fn new_card(&mut self, list: &str, board: &str, name: &str) -> Map<String, Value> {
        let id = self.new_id();
        let short = format!("c{:07}", self.seq);
        let id_short = self.cards.len() + 1;
        let mut card = Map::new();
        for (k, v) in [
            ("id", json!(id)),
            ("name", json!(name)),
            ("desc", json!("")),
            ("idList", json!(list)),
            ("idBoard", json!(board)),
            ("idShort", json!(id_short)),
            ("shortLink", json!(short)),
            (
                "url",
                json!(format!("https://trello.com/c/{short}/{id_short}")),
            ),
            ("shortUrl", json!(format!("https://trello.com/c/{short}"))),
            ("closed", json!(false)),
            ("pos", json!(16384 * id_short)),
            ("due", Value::Null),
            ("start", Value::Null),
            ("dueComplete", json!(false)),
            ("idMembers", json!([])),
            ("idLabels", json!([])),
        ] {
            card.insert(k.into(), v);
        }
        card
    }

    fn card_mut(&mut self, id: &str) -> Option<&mut Map<String, Value>> {
        self.cards.iter_mut().find(|c| {
            c.get("id").and_then(Value::as_str) == Some(id)
                || c.get("shortLink").and_then(Value::as_str) == Some(id)
        })
    }

    fn list_board(&self, list: &str) -> Option<String> {
        self.lists.iter().find(|l| l.0 == list).map(|l| l.1.clone())
    }

    /// The token the request authenticates with, or Trello's 401.
    fn authenticate(&self, r: &Recorded) -> Result<(), Resp> {
        let (mut key, mut token) = (
            r.query_param("key").map(str::to_owned),
            r.query_param("token").map(str::to_owned),
        );
        if let Some(h) = r.header("authorization")
            && let Some(rest) = h.strip_prefix("OAuth ")
        {
            for part in rest.split(',') {
                if let Some((k, v)) = part.trim().split_once('=') {
                    let v = v.trim().trim_matches('"').to_owned();
                    match k.trim() {
                        "oauth_consumer_key" => key = Some(v),
                        "oauth_token" => token = Some(v),
                        _ => {}
                    }
                }
            }
        }
        if key.as_deref() != Some(self.api_key.as_str()) {
            return Err(text(StatusCode::UNAUTHORIZED, "invalid key"));
        }
        match token {
            None => Err(text(
                StatusCode::UNAUTHORIZED,
                "unauthorized permission requested",
            )),
            Some(t) if t == self.token && self.token_valid => Ok(()),
            Some(_) => Err(text(StatusCode::UNAUTHORIZED, "invalid token")),
        }
    }
}

/// What a request needs once the state lock is released.
enum Step {
    Done(Resp),
    /// Check the callback with HEAD, then create the webhook.
    Create {
        hook: Webhook,
    },
    /// Check the (changed) callback with HEAD, then apply the update.
    Update {
        hook: Webhook,
    },
}

/// The longest request target (path and query, encoded) the fake's front end accepts. Trello
/// documents no limit; 8 KiB is the common front-end default (nginx's
/// `large_client_header_buffers 4 8k`) beyond which a request line is answered 414. The
/// review's finding: a 16 KB `desc` in the query string risks exactly this.
pub const MAX_URL_BYTES: usize = 8_192;

/// The request target's length as sent (the query re-encoded).
fn target_len(r: &Recorded) -> usize {
    r.path.len()
        + r.query
            .iter()
            .map(|(k, v)| {
                2 + crate::platforms::http::percent_encode(k, b"").len()
                    + crate::platforms::http::percent_encode(v, b"").len()
            })
            .sum::<usize>()
}

/// A JSON object body's fields read as parameters, like the query's: "Query parameters may
/// also be replaced with a JSON request body instead" (the vendored Trello OpenAPI
/// description of `POST /1/cards` and `PUT /1/cards/{id}`). Values that are not strings are
/// read as their JSON text (`true`, `3`).
fn body_as_params(mut r: Recorded) -> Recorded {
    let json = r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    if json && let Value::Object(m) = r.json() {
        for (k, v) in m {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            r.query.push((k, v));
        }
    }
    r
}

async fn handle(state: Arc<Mutex<State>>, client: reqwest::Client, r: Recorded) -> Resp {
    if target_len(&r) > MAX_URL_BYTES {
        return text(StatusCode::URI_TOO_LONG, "URI Too Long");
    }
    let r = body_as_params(r);
    let step = {
        let mut st = lock(&state);
        route(&mut st, &r)
    };
    let (hook, creating) = match step {
        Step::Done(resp) => return resp,
        Step::Create { hook } => (hook, true),
        Step::Update { hook } => (hook, false),
    };
    let target = lock(&state).route(&hook.callback_url);
    let got = client
        .head(target)
        .send()
        .await
        .map(|a| a.status().as_u16());
    match got {
        Ok(200) => {}
        Ok(code) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "message": format!("URL ({}) did not return 200 status code, got {code}", hook.callback_url),
                    "error": "ERROR",
                }),
            );
        }
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "message": format!("URL ({}) did not return 200 status code, got no response", hook.callback_url),
                    "error": "ERROR",
                }),
            );
        }
    }
    let mut st = lock(&state);
    if creating {
        st.webhooks.push(hook.clone());
    } else if let Some(w) = st.webhooks.iter_mut().find(|w| w.id == hook.id) {
        *w = hook.clone();
    } else {
        return not_found();
    }
    ok(&hook.json())
}

fn route(st: &mut State, r: &Recorded) -> Step {
    let key = route_key(&r.method, &r.path);
    if let Some(f) = st.failures.take(&key) {
        return Step::Done(match f {
            Failure::RateLimited { retry_after_secs } => {
                let resp = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}),
                );
                // Trello documents no Retry-After; 0 scripts its absence.
                if retry_after_secs > 0 {
                    with_header(resp, "retry-after", &retry_after_secs.to_string())
                } else {
                    resp
                }
            }
            Failure::ServerError => {
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            Failure::Unavailable { retry_after_secs } => with_header(
                text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
                "retry-after",
                &retry_after_secs.to_string(),
            ),
        });
    }
    if let Err(resp) = st.authenticate(r) {
        return Step::Done(resp);
    }
    let now = Instant::now();
    let (max, window) = st.limit;
    while st
        .hits
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        st.hits.pop_front();
    }
    if st.hits.len() >= max {
        return Step::Done(json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}),
        ));
    }
    st.hits.push_back(now);
    if let Some(spec) = st.spec
        && let Err(errors) = spec.check(&r.method, &r.path, &r.query, None, &["key", "token"])
    {
        return Step::Done(if spec.describes(&r.method, &r.path) {
            text(StatusCode::BAD_REQUEST, &errors.join("; "))
        } else {
            text(
                StatusCode::NOT_FOUND,
                &format!("Cannot {} {}", r.method, r.path),
            )
        });
    }
    let q = |k: &str| r.query_param(k).map(str::to_owned);
    let segs: Vec<&str> = r
        .path
        .trim_start_matches("/1")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let resp = match (r.method.clone(), segs.as_slice()) {
        (Method::GET, ["members", "me"]) => ok(&json!({
            "id": MEMBER_ID,
            "username": MEMBER_USERNAME,
            "fullName": "supportopsd",
            "initials": "S",
            "url": format!("https://trello.com/{MEMBER_USERNAME}"),
        })),
        (Method::GET, ["boards", id]) => {
            match st.boards.iter().find(|b| b.0 == *id || b.1 == *id) {
                Some(b) => ok(&json!({"id": b.0, "name": b.2, "shortLink": b.1})),
                None => not_found(),
            }
        }
        (Method::POST, ["cards"]) => create_card(st, r),
        (Method::PUT, ["cards", id]) => update_card(st, id, r),
        (Method::POST, ["cards", id, "actions", "comments"]) => {
            let text_param = q("text").unwrap_or_default();
            if text_param.trim().is_empty() {
                invalid_value("text")
            } else {
                comment(st, id, &text_param)
            }
        }
        (Method::POST, ["checklists"]) => create_checklist(st, r),
        (Method::POST, ["checklists", id, "checkItems"]) => create_check_item(st, id, r),
        (Method::POST, ["cards", id, "idLabels"]) => add_label(st, id, q("value")),
        (Method::POST, ["cards", id, "labels"]) => new_label(st, id, q("color"), q("name")),
        (Method::GET, ["tokens", token, "webhooks"]) => {
            if *token != st.token {
                text(StatusCode::UNAUTHORIZED, "invalid token")
            } else {
                let list: Vec<Value> = st
                    .webhooks
                    .iter()
                    .filter(|w| w.token == st.token)
                    .map(Webhook::json)
                    .collect();
                ok(&Value::Array(list))
            }
        }
        (Method::POST, ["webhooks"]) => return create_webhook(st, r),
        (Method::PUT, ["webhooks", id]) => return update_webhook(st, id, r),
        (Method::DELETE, ["webhooks", id]) => match st.webhooks.iter().position(|w| w.id == *id) {
            Some(i) if st.webhooks[i].token == st.token => {
                st.webhooks.remove(i);
                ok(&json!({"_value": null}))
            }
            Some(_) => text(StatusCode::BAD_REQUEST, "webhook does not belong to token"),
            None => not_found(),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            &format!("Cannot {} {}", r.method, r.path),
        ),
    };
    Step::Done(resp)
}

fn is_true(v: Option<String>) -> Option<bool> {
    v.map(|s| s == "true")
}

fn check_pos(pos: Option<&str>) -> bool {
    pos.is_none_or(|p| p == "top" || p == "bottom" || p.parse::<f64>().is_ok_and(|n| n >= 0.0))
}

fn split_ids(v: Option<String>) -> Option<Vec<Value>> {
    v.map(|s| {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(|x| json!(x))
            .collect()
    })
}

fn create_card(st: &mut State, r: &Recorded) -> Resp {
    let q = |k: &str| r.query_param(k).map(str::to_owned);
    let list = q("idList").unwrap_or_default();
    let Some(board) = st.list_board(&list) else {
        return invalid_value("idList");
    };
    if !check_pos(q("pos").as_deref()) {
        return invalid_value("pos");
    }
    let mut card = st.new_card(&list, &board, &q("name").unwrap_or_default());
    if let Some(labels) = split_ids(q("idLabels")) {
        for l in &labels {
            if !st
                .labels
                .iter()
                .any(|x| x["id"] == *l && x["idBoard"] == json!(board))
            {
                return invalid_value("idLabels");
            }
        }
        card.insert("idLabels".into(), Value::Array(labels));
    }
    if let Some(m) = split_ids(q("idMembers")) {
        card.insert("idMembers".into(), Value::Array(m));
    }
    for k in ["desc", "due", "start"] {
        if let Some(v) = q(k) {
            card.insert(k.into(), json!(v));
        }
    }
    if let Some(b) = is_true(q("dueComplete")) {
        card.insert("dueComplete".into(), json!(b));
    }
    st.cards.push(card.clone());
    ok(&Value::Object(card))
}

fn update_card(st: &mut State, id: &str, r: &Recorded) -> Resp {
    let q = |k: &str| r.query_param(k).map(str::to_owned);
    if !check_pos(q("pos").as_deref()) {
        return invalid_value("pos");
    }
    let new_board = match q("idList") {
        Some(l) => match st.list_board(&l) {
            Some(b) => Some(b),
            None => return invalid_value("idList"),
        },
        None => None,
    };
    if let (Some(b), Some(given)) = (&new_board, q("idBoard"))
        && *b != given
    {
        return invalid_value("idBoard");
    }
    let labels = st.labels.clone();
    let Some(card) = st.card_mut(id) else {
        return text(StatusCode::NOT_FOUND, "card not found");
    };
    if let Some(l) = q("idList") {
        card.insert("idList".into(), json!(l));
    }
    if let Some(b) = new_board {
        card.insert("idBoard".into(), json!(b));
    }
    for k in ["name", "desc", "due", "start", "pos"] {
        if let Some(v) = q(k) {
            card.insert(k.into(), json!(v));
        }
    }
    for k in ["closed", "dueComplete"] {
        if let Some(b) = is_true(q(k)) {
            card.insert(k.into(), json!(b));
        }
    }
    if let Some(m) = split_ids(q("idMembers")) {
        card.insert("idMembers".into(), Value::Array(m));
    }
    if let Some(ls) = split_ids(q("idLabels")) {
        if !ls.iter().all(|l| labels.iter().any(|x| x["id"] == *l)) {
            return invalid_value("idLabels");
        }
        card.insert("idLabels".into(), Value::Array(ls));
    }
    ok(&Value::Object(card.clone()))
}

fn comment(st: &mut State, card_id: &str, body: &str) -> Resp {
    let id = st.new_id();
    let Some(card) = st.card_mut(card_id).map(|c| c.clone()) else {
        return text(StatusCode::NOT_FOUND, "card not found");
    };
    let action = json!({
        "id": id,
        "idMemberCreator": MEMBER_ID,
        "type": "commentCard",
        "date": "2026-11-28T12:00:00.000Z",
        "data": {
            "text": body,
            "card": {"id": card["id"], "name": card["name"], "idShort": card["idShort"], "shortLink": card["shortLink"]},
            "board": {"id": card["idBoard"]},
            "list": {"id": card["idList"]},
        },
        "memberCreator": {"id": MEMBER_ID, "username": MEMBER_USERNAME},
    });
    st.comments.push(action.clone());
    ok(&action)
}

fn create_checklist(st: &mut State, r: &Recorded) -> Resp {
    let q = |k: &str| r.query_param(k).map(str::to_owned);
    let card_id = q("idCard").unwrap_or_default();
    let Some(card) = st.card_mut(&card_id).map(|c| c.clone()) else {
        return invalid_value("idCard");
    };
    if !check_pos(q("pos").as_deref()) {
        return invalid_value("pos");
    }
    let mut items = Vec::new();
    if let Some(src) = q("idChecklistSource") {
        match st
            .checklists
            .iter()
            .find(|c| c.get("id").and_then(Value::as_str) == Some(src.as_str()))
        {
            Some(c) => items = c["checkItems"].as_array().cloned().unwrap_or_default(),
            None => return invalid_value("idChecklistSource"),
        }
    }
    let id = st.new_id();
    let mut list = Map::new();
    list.insert("id".into(), json!(id));
    list.insert(
        "name".into(),
        json!(q("name").unwrap_or_else(|| "Checklist".into())),
    );
    list.insert("idCard".into(), card["id"].clone());
    list.insert("idBoard".into(), card["idBoard"].clone());
    list.insert("pos".into(), json!(16384));
    list.insert("checkItems".into(), Value::Array(items));
    st.checklists.push(list.clone());
    ok(&Value::Object(list))
}

fn create_check_item(st: &mut State, id: &str, r: &Recorded) -> Resp {
    let name = r.query_param("name").unwrap_or("").to_owned();
    if name.trim().is_empty() {
        return invalid_value("name");
    }
    let checked = r.query_param("checked") == Some("true");
    let item_id = st.new_id();
    let Some(list) = st
        .checklists
        .iter_mut()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
    else {
        return invalid_value("id");
    };
    let item = json!({
        "id": item_id,
        "name": name,
        "state": if checked { "complete" } else { "incomplete" },
        "idChecklist": id,
        "pos": 16384,
    });
    if let Some(Value::Array(items)) = list.get_mut("checkItems") {
        items.push(item.clone());
    }
    ok(&item)
}

fn add_label(st: &mut State, card_id: &str, value: Option<String>) -> Resp {
    let labels = st.labels.clone();
    let Some(card) = st.card_mut(card_id) else {
        return text(StatusCode::NOT_FOUND, "card not found");
    };
    let Some(value) = value else {
        return invalid_value("value");
    };
    if !labels
        .iter()
        .any(|l| l["id"] == json!(value) && l["idBoard"] == card["idBoard"])
    {
        return invalid_value("value");
    }
    let Some(Value::Array(ids)) = card.get_mut("idLabels") else {
        return invalid_value("value");
    };
    if ids.contains(&json!(value)) {
        return text(StatusCode::BAD_REQUEST, "that label is already on the card");
    }
    ids.push(json!(value));
    ok(&Value::Array(ids.clone()))
}

fn new_label(st: &mut State, card_id: &str, color: Option<String>, name: Option<String>) -> Resp {
    let Some(color) = color.filter(|c| COLORS.contains(&c.as_str())) else {
        return invalid_value("color");
    };
    let id = st.new_id();
    let Some(card) = st.card_mut(card_id) else {
        return text(StatusCode::NOT_FOUND, "card not found");
    };
    let board = card["idBoard"].clone();
    let Some(Value::Array(ids)) = card.get_mut("idLabels") else {
        return invalid_value("color");
    };
    ids.push(json!(id));
    let out = Value::Array(ids.clone());
    st.labels.push(
        json!({"id": id, "idBoard": board, "name": name.unwrap_or_default(), "color": color}),
    );
    ok(&out)
}

fn known_model(st: &State, id: &str) -> bool {
    st.boards.iter().any(|b| b.0 == id)
        || st.lists.iter().any(|l| l.0 == id)
        || st.cards.iter().any(|c| c["id"] == json!(id))
        || id == MEMBER_ID
}

fn valid_callback(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://")) && url.len() > "http://".len()
}

fn create_webhook(st: &mut State, r: &Recorded) -> Step {
    let q = |k: &str| r.query_param(k).map(str::to_owned);
    let url = q("callbackURL").unwrap_or_default();
    let model = q("idModel").unwrap_or_default();
    if !valid_callback(&url) {
        return Step::Done(invalid_value("callbackURL"));
    }
    if !known_model(st, &model) {
        return Step::Done(invalid_value("idModel"));
    }
    if st
        .webhooks
        .iter()
        .any(|w| w.callback_url == url && w.id_model == model && w.token == st.token)
    {
        return Step::Done(text(
            StatusCode::BAD_REQUEST,
            "A webhook with that callback, model, and token already exists",
        ));
    }
    let id = st.new_id();
    Step::Create {
        hook: Webhook {
            id,
            id_model: model,
            callback_url: url,
            description: q("description").unwrap_or_default(),
            active: q("active").as_deref() != Some("false"),
            token: st.token.clone(),
        },
    }
}

fn update_webhook(st: &mut State, id: &str, r: &Recorded) -> Step {
    let q = |k: &str| r.query_param(k).map(str::to_owned);
    let Some(current) = st.webhooks.iter().find(|w| w.id == id).cloned() else {
        return Step::Done(not_found());
    };
    if current.token != st.token {
        return Step::Done(text(
            StatusCode::BAD_REQUEST,
            "webhook does not belong to token",
        ));
    }
    let mut hook = current.clone();
    if let Some(u) = q("callbackURL") {
        if !valid_callback(&u) {
            return Step::Done(invalid_value("callbackURL"));
        }
        hook.callback_url = u;
    }
    if let Some(m) = q("idModel") {
        if !known_model(st, &m) {
            return Step::Done(invalid_value("idModel"));
        }
        hook.id_model = m;
    }
    if let Some(d) = q("description") {
        hook.description = d;
    }
    if let Some(a) = is_true(q("active")) {
        hook.active = a;
    }
    if hook.callback_url != current.callback_url {
        return Step::Update { hook };
    }
    if let Some(w) = st.webhooks.iter_mut().find(|w| w.id == id) {
        *w = hook.clone();
    }
    Step::Done(ok(&hook.json()))
}
