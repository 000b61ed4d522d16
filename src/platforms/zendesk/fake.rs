//! A fake Zendesk Support API for tests, on the shared [`fakekit`] server (`127.0.0.1:0`,
//! every request recorded). It behaves like Zendesk where the connector can tell:
//!
//! - **Auth**: `Authorization: Basic base64("{email}/token:{api_token}")` or `Bearer {oauth}`
//!   with the credentials given to [`FakeZendesk::start`]. Wrong credentials are 401
//!   `{"error":"Couldn't authenticate you"}`. `GET /api/v2/users/me` is allowed for anonymous
//!   users: without an `Authorization` header (or after [`FakeZendesk::answer_anonymous`]) it
//!   answers 200 with an anonymous end user (`id: null`). A suspended account
//!   ([`FakeZendesk::suspend`]) answers 403; a closed one ([`FakeZendesk::close_account`]) 404
//!   on every path.
//! - **Rate limits**: every answer carries `X-Rate-Limit: 700` and a decreasing
//!   `X-Rate-Limit-Remaining` (list endpoints also `ratelimit-limit`, `-remaining`, `-reset`);
//!   a spent budget ([`FakeZendesk::set_rate_limit_remaining`]) is 429 with
//!   `Retry-After: 60`; scripted failures ([`FakeZendesk::fail_next`], keyed
//!   `"METHOD /path"` with ids written `{id}`, e.g. `"PUT /api/v2/tickets/{id}"`) give 429 with
//!   `Retry-After`, 500 or 503.
//! - **Tickets**: create (with `Idempotency-Key`: a repeat with the same body answers the
//!   cached response and `x-idempotency-lookup: hit`, a different body is 400), show,
//!   update (`safe_update` + `updated_stamp` → 409 on a stale stamp; a closed ticket → 422),
//!   tags (`PUT` adds, `POST` replaces), macros (`GET …/macros/{id}/apply` answers the ticket as
//!   it would be), `update_many` jobs polled through `job_statuses` (completed after
//!   [`FakeZendesk::set_job_polls`] polls), `show_many`.
//! - **Users**: create (422 `DuplicateValue` on a known email) and create-or-update.
//! - **Webhooks API** and **Triggers**: CRUD kept in memory with Zendesk's rules (event
//!   subscriptions need `POST` + `json`; a webhook cannot switch connection method; the signing
//!   secret is writable on create only; a trigger's `notification_webhook` must name a
//!   trigger-connected webhook; a webhook used by a trigger cannot be deleted).
//! - **Signed deliveries**: [`FakeZendesk::deliver`] posts a body to a webhook's endpoint with
//!   `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(secret, timestamp + body)) and
//!   `X-Zendesk-Webhook-Signature-Timestamp`; [`FakeZendesk::fire_trigger`] renders a trigger's
//!   body for a ticket and delivers it.
//! - **Spec check**: every request is checked against the vendor API description —
//!   `zendesk-webhooks.unofficial-botbrains.openapi.yaml` for `/api/v2/webhooks*`,
//!   `zendesk-support.openapi.yaml` for everything else. An operation the spec does not have is
//!   404 `InvalidEndpoint`; a query parameter it does not declare, or a body without a
//!   required property, is 400 `InvalidParameters` (and recorded: [`FakeZendesk::spec_errors`]).
//!   Without the vendor documents the check is skipped (said once on stderr).

#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::platforms::fakekit::{
    Failure, Failures, FakeServer, Recorded, Resp, empty_response, json_response, lock,
    text_response, vendor_spec, with_header,
};

/// The support API description.
pub const SUPPORT_SPEC: &str = "openapi/zendesk-support.openapi.yaml";
/// The Webhooks API description (unofficial; the official file has no webhooks).
pub const WEBHOOKS_SPEC: &str = "openapi/zendesk-webhooks.unofficial-botbrains.openapi.yaml";

/// Spec errors the fake ignores because the vendor description is wrong there: the ticket
/// inputs' `custom_fields` items point at `CustomFieldObject` (a field *definition*, requiring
/// `key`, `title` and `type`), while the API takes `{ "id": …, "value": … }` pairs, as the
/// OAS's own examples and the ticketing docs show.
pub const SPEC_ERRATA: &[&str] = &[".custom_fields["];

/// The agent the credentials belong to.
pub const AGENT_ID: u64 = 9_000_001;
/// Its email (the `email` credential).
pub const AGENT_EMAIL: &str = "ops@acme.example";
/// Another agent, for assignments.
pub const OTHER_AGENT_ID: u64 = 9_000_002;
/// Its email.
pub const OTHER_AGENT_EMAIL: &str = "kim@acme.example";
/// A group.
pub const GROUP_ID: u64 = 360_001;
/// The account id sent with deliveries.
pub const ACCOUNT_ID: u64 = 12_514_403;
/// The rate limit announced in `X-Rate-Limit`.
pub const RATE_LIMIT: u64 = 700;

/// A running fake Zendesk.
#[derive(Debug)]
pub struct FakeZendesk {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    email: String,
    api_token: String,
    oauth: Option<String>,
    anonymous: bool,
    suspended: bool,
    closed: bool,
    remaining: u64,
    clock: u64,
    users: BTreeMap<u64, Value>,
    next_user: u64,
    tickets: BTreeMap<u64, Value>,
    next_ticket: u64,
    next_audit: u64,
    macros: BTreeMap<u64, Value>,
    webhooks: BTreeMap<String, Value>,
    secrets: HashMap<String, String>,
    next_webhook: u64,
    triggers: BTreeMap<u64, Value>,
    next_trigger: u64,
    jobs: HashMap<String, (Value, u32)>,
    next_job: u64,
    job_polls: u32,
    edit_after_macro: bool,
    idempotency: HashMap<String, (Value, u16, Value)>,
    failures: Failures,
    spec_errors: Vec<String>,
    origin: String,
}

/// Seconds since the epoch of the fake clock's start (2026-11-28T10:00:00Z).
const CLOCK_START: u64 = 1_795_860_000;

/// `secs` since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Zendesk's signature of a delivery: base64(HMAC-SHA256(secret, timestamp + body)), the
/// secret used as the bytes of its text.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl FakeZendesk {
    /// [`FakeZendesk::try_start`], for the tests: a failure to bind loopback fails the test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start(email: &str, api_token: &str, oauth: Option<&str>) -> FakeZendesk {
        FakeZendesk::try_start(email, api_token, oauth)
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// Starts a fake accepting `email` + `api_token` (Basic) and, when given, `oauth` (Bearer).
    pub async fn try_start(
        email: &str,
        api_token: &str,
        oauth: Option<&str>,
    ) -> std::io::Result<FakeZendesk> {
        let mut users = BTreeMap::new();
        for (id, name, email, role) in [
            (AGENT_ID, "Ops Bot", email, "admin"),
            (OTHER_AGENT_ID, "Kim Agent", OTHER_AGENT_EMAIL, "agent"),
        ] {
            users.insert(
                id,
                json!({"id": id, "name": name, "email": email, "role": role, "active": true,
                       "url": "", "created_at": rfc3339(CLOCK_START),
                       "updated_at": rfc3339(CLOCK_START), "tags": []}),
            );
        }
        let state = Arc::new(Mutex::new(State {
            email: email.to_owned(),
            api_token: api_token.to_owned(),
            oauth: oauth.map(str::to_owned),
            anonymous: false,
            suspended: false,
            closed: false,
            remaining: RATE_LIMIT,
            clock: CLOCK_START,
            users,
            next_user: 9_100_000,
            tickets: BTreeMap::new(),
            next_ticket: 35_436,
            next_audit: 7_000_000,
            macros: BTreeMap::new(),
            webhooks: BTreeMap::new(),
            secrets: HashMap::new(),
            next_webhook: 1,
            triggers: BTreeMap::new(),
            next_trigger: 10_849_292_971_400,
            jobs: HashMap::new(),
            next_job: 1,
            job_polls: 1,
            edit_after_macro: false,
            idempotency: HashMap::new(),
            failures: Failures::default(),
            spec_errors: Vec::new(),
            origin: String::new(),
        }));
        let s = state.clone();
        let server = FakeServer::try_start(move |r| handle(&s, r)).await?;
        lock(&state).origin = server.origin();
        Ok(FakeZendesk { server, state })
    }

    /// `http://127.0.0.1:<port>` (the integration's `[endpoint] base_url`).
    pub fn base_url(&self) -> String {
        self.server.origin()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// The requests of `method path` (path exactly).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .collect()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Makes the next `times` calls of `route` (`"PUT /api/v2/tickets/{id}"`) fail.
    pub fn fail_next(&self, route: &str, failure: Failure, times: usize) {
        lock(&self.state).failures.push(route, failure, times);
    }

    /// `GET /api/v2/users/me` answers an anonymous user whatever the credentials.
    pub fn answer_anonymous(&self, on: bool) {
        lock(&self.state).anonymous = on;
    }

    /// Suspends the account: every authenticated call is 403.
    pub fn suspend(&self) {
        lock(&self.state).suspended = true;
    }

    /// Closes the account: every path is 404.
    pub fn close_account(&self) {
        lock(&self.state).closed = true;
    }

    /// Sets the role of the credentials' user (`end-user`, `agent`, `admin`).
    pub fn set_role(&self, role: &str) {
        if let Some(u) = lock(&self.state).users.get_mut(&AGENT_ID) {
            u["role"] = json!(role);
        }
    }

    /// Leaves `n` requests in the minute's budget (then every request is 429 with
    /// `Retry-After: 60`, until [`FakeZendesk::reset_rate_limit`]).
    pub fn set_rate_limit_remaining(&self, n: u64) {
        lock(&self.state).remaining = n;
    }

    /// A new minute: the whole budget again.
    pub fn reset_rate_limit(&self) {
        lock(&self.state).remaining = RATE_LIMIT;
    }

    /// How many polls a bulk job takes to complete (default 1: `queued` once).
    pub fn set_job_polls(&self, polls: u32) {
        lock(&self.state).job_polls = polls;
    }

    /// Simulates someone editing the ticket right after each `…/macros/{id}/apply` answer
    /// (its `updated_at` moves on), so that the save that follows collides.
    pub fn edit_after_macro_apply(&self, on: bool) {
        lock(&self.state).edit_after_macro = on;
    }

    /// Requests the spec check refused so far.
    pub fn spec_errors(&self) -> Vec<String> {
        lock(&self.state).spec_errors.clone()
    }

    /// Adds a ticket (`fields` over defaults); its id.
    pub fn add_ticket(&self, fields: Value) -> u64 {
        let mut st = lock(&self.state);
        let id = st.next_ticket;
        st.next_ticket += 1;
        let now = st.now();
        let mut t = json!({
            "id": id, "url": format!("{}/api/v2/tickets/{id}.json", st.origin),
            "subject": "Printer on fire", "description": "It burns.", "status": "open",
            "priority": "normal", "type": "incident", "tags": [], "requester_id": AGENT_ID,
            "submitter_id": AGENT_ID, "assignee_id": null, "group_id": null,
            "organization_id": null, "external_id": null, "custom_fields": [],
            "created_at": now, "updated_at": now, "comments": []
        });
        merge(&mut t, &fields);
        st.tickets.insert(id, t);
        id
    }

    /// Adds an end user; its id.
    pub fn add_user(&self, name: &str, email: &str) -> u64 {
        let mut st = lock(&self.state);
        let id = st.users.keys().max().copied().unwrap_or(AGENT_ID) + 1_000;
        let now = st.now();
        st.users.insert(
            id,
            json!({"id": id, "name": name, "email": email, "role": "end-user", "active": true,
                   "url": "", "created_at": now, "updated_at": now, "tags": []}),
        );
        id
    }

    /// A ticket as stored.
    pub fn ticket(&self, id: u64) -> Option<Value> {
        lock(&self.state).tickets.get(&id).cloned()
    }

    /// Changes a ticket behind the connector's back (bumps `updated_at`).
    pub fn touch_ticket(&self, id: u64, fields: Value) {
        let mut st = lock(&self.state);
        let now = st.tick();
        if let Some(t) = st.tickets.get_mut(&id) {
            merge(t, &fields);
            t["updated_at"] = json!(now);
        }
    }

    /// A user by email.
    pub fn user_by_email(&self, email: &str) -> Option<Value> {
        lock(&self.state)
            .users
            .values()
            .find(|u| u["email"].as_str() == Some(email))
            .cloned()
    }

    /// Adds a macro whose `actions` (`[{field, value}]`, Zendesk's shape) apply to a ticket.
    pub fn add_macro(&self, id: u64, title: &str, actions: Value) {
        lock(&self.state).macros.insert(
            id,
            json!({"id": id, "title": title, "active": true, "actions": actions}),
        );
    }

    /// Every webhook.
    pub fn webhooks(&self) -> Vec<Value> {
        lock(&self.state).webhooks.values().cloned().collect()
    }

    /// Every trigger.
    pub fn triggers(&self) -> Vec<Value> {
        lock(&self.state).triggers.values().cloned().collect()
    }

    /// Adds a webhook made by someone else (not through the connector); its id.
    pub fn add_foreign_webhook(&self, name: &str, endpoint: &str) -> String {
        let mut st = lock(&self.state);
        let id = st.webhook_id();
        let now = st.now();
        st.webhooks.insert(
            id.clone(),
            json!({"id": id, "name": name, "status": "active", "endpoint": endpoint,
                   "http_method": "POST", "request_format": "json",
                   "subscriptions": ["zen:event-type:user.created"],
                   "created_at": now, "created_by": "7272236579355"}),
        );
        st.secrets
            .insert(id.clone(), format!("foreign-secret-{id}"));
        id
    }

    /// Deletes a webhook behind the connector's back (and the triggers using it).
    pub fn delete_webhook(&self, id: &str) {
        let mut st = lock(&self.state);
        st.webhooks.remove(id);
        st.triggers
            .retain(|_, t| t["actions"][0]["value"][0].as_str() != Some(id));
    }

    /// Edits a webhook behind the connector's back.
    pub fn edit_webhook(&self, id: &str, fields: Value) {
        if let Some(w) = lock(&self.state).webhooks.get_mut(id) {
            merge(w, &fields);
        }
    }

    /// Deletes a trigger behind the connector's back.
    pub fn delete_trigger(&self, id: u64) {
        lock(&self.state).triggers.remove(&id);
    }

    /// Edits a trigger behind the connector's back.
    pub fn edit_trigger(&self, id: u64, fields: Value) {
        if let Some(t) = lock(&self.state).triggers.get_mut(&id) {
            merge(t, &fields);
        }
    }

    /// The signing secret of a webhook.
    pub fn secret_of(&self, webhook_id: &str) -> Option<String> {
        lock(&self.state).secrets.get(webhook_id).cloned()
    }

    /// The headers of a signed delivery of `body` by `webhook_id` at `timestamp`.
    pub fn signed_headers(
        &self,
        webhook_id: &str,
        timestamp: &str,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        let secret = self.secret_of(webhook_id).unwrap_or_default();
        vec![
            ("content-type", "application/json".to_owned()),
            ("x-zendesk-account-id", ACCOUNT_ID.to_string()),
            ("x-zendesk-webhook-id", webhook_id.to_owned()),
            (
                "x-zendesk-webhook-invocation-id",
                format!("{}", fakekit_counter()),
            ),
            (
                "x-zendesk-webhook-signature",
                sign(&secret, timestamp, body),
            ),
            (
                "x-zendesk-webhook-signature-timestamp",
                timestamp.to_owned(),
            ),
        ]
    }

    /// Posts `body` to the endpoint of `webhook_id`, signed the way Zendesk does, now; the
    /// status answered.
    pub async fn deliver(&self, webhook_id: &str, body: &[u8]) -> Result<u16, String> {
        let (endpoint, method) = {
            let st = lock(&self.state);
            let w = st
                .webhooks
                .get(webhook_id)
                .ok_or_else(|| format!("no webhook {webhook_id}"))?;
            (
                w["endpoint"].as_str().unwrap_or("").to_owned(),
                w["http_method"].as_str().unwrap_or("POST").to_owned(),
            )
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ts = rfc3339(now);
        let client = reqwest::Client::new();
        let mut req = client.request(
            Method::from_bytes(method.as_bytes()).unwrap_or(Method::POST),
            endpoint,
        );
        for (k, v) in self.signed_headers(webhook_id, &ts, body) {
            req = req.header(k, v);
        }
        let r = req
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(r.status().as_u16())
    }

    /// The body the trigger that sends `event` would post for ticket `ticket_id` (its
    /// placeholders rendered), and the webhook it posts to.
    pub fn render_trigger(&self, event: &str, ticket_id: u64) -> Option<(String, Vec<u8>)> {
        let st = lock(&self.state);
        let t = st.tickets.get(&ticket_id)?;
        let (webhook, template) = st.triggers.values().find_map(|tr| {
            let v = &tr["actions"][0]["value"];
            let body = v[1].as_str()?;
            let parsed: Value = serde_json::from_str(body).ok()?;
            (parsed["supportopsd_event"] == event && tr["active"] == true)
                .then(|| (v[0].as_str().unwrap_or("").to_owned(), body.to_owned()))
        })?;
        let user = |id: &Value| {
            id.as_u64()
                .and_then(|i| st.users.get(&i))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let requester = user(&t["requester_id"]);
        let assignee = user(&t["assignee_id"]);
        let last = t["comments"]
            .as_array()
            .and_then(|c| c.last())
            .cloned()
            .unwrap_or(Value::Null);
        let text = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        let cap = |v: &Value| {
            let s = text(v);
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        };
        let pairs: Vec<(&str, String)> = vec![
            ("ticket.id", text(&t["id"])),
            ("ticket.title", text(&t["subject"])),
            ("ticket.status", cap(&t["status"])),
            ("ticket.priority", cap(&t["priority"])),
            ("ticket.ticket_type", cap(&t["type"])),
            ("ticket.tags", text(&t["tags"])),
            ("ticket.via", "Web service".to_owned()),
            (
                "ticket.url",
                format!("acme.zendesk.com/agent/tickets/{ticket_id}"),
            ),
            ("ticket.external_id", text(&t["external_id"])),
            ("ticket.brand.id", text(&t["brand_id"])),
            ("ticket.group.id", text(&t["group_id"])),
            ("ticket.organization.id", text(&t["organization_id"])),
            ("ticket.created_at_with_timestamp", text(&t["created_at"])),
            ("ticket.updated_at_with_timestamp", text(&t["updated_at"])),
            ("ticket.requester.id", text(&requester["id"])),
            ("ticket.requester.name", text(&requester["name"])),
            ("ticket.requester.email", text(&requester["email"])),
            ("ticket.assignee.id", text(&assignee["id"])),
            ("ticket.assignee.name", text(&assignee["name"])),
            ("ticket.assignee.email", text(&assignee["email"])),
            // Who made the change: the ticket's submitter (our agent unless a test says
            // otherwise), as Zendesk renders the user whose update fired the trigger.
            ("current_user.id", text(&t["submitter_id"])),
            ("ticket.latest_comment.id", text(&last["id"])),
            ("ticket.latest_comment.value", text(&last["body"])),
            ("ticket.latest_comment.is_public", text(&last["public"])),
            ("ticket.latest_comment.author.id", text(&last["author_id"])),
        ];
        let mut body = template;
        for (k, v) in pairs {
            // Raw substitution, no JSON escaping: Zendesk's placeholder reference says a
            // placeholder sent to a webhook "is rendered as raw text and not HTML"
            // (support.zendesk.com/hc/en-us/articles/4408886858138), and no Zendesk document
            // says placeholders in a JSON body are escaped. A quote or a newline in a value
            // therefore breaks a JSON body that puts it inside a string, as it would in
            // production.
            body = body.replace(&format!("{{{{{k}}}}}"), &v);
        }
        Some((webhook, body.into_bytes()))
    }

    /// Renders the trigger of `event` for a ticket and delivers it; the status answered.
    pub async fn fire_trigger(&self, event: &str, ticket_id: u64) -> Result<u16, String> {
        let (webhook, body) = self
            .render_trigger(event, ticket_id)
            .ok_or_else(|| format!("no active trigger sends {event} (or no ticket {ticket_id})"))?;
        self.deliver(&webhook, &body).await
    }

    /// Delivers an event-subscription envelope of `event_type` (`user.created`) to every
    /// active webhook subscribed to it; the statuses answered.
    pub async fn emit_event(
        &self,
        event_type: &str,
        subject: &str,
        detail: Value,
        event: Value,
    ) -> Vec<u16> {
        let full = format!("zen:event-type:{event_type}");
        let ids: Vec<String> = lock(&self.state)
            .webhooks
            .values()
            .filter(|w| {
                w["status"] == "active"
                    && w["subscriptions"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(&full)))
            })
            .filter_map(|w| w["id"].as_str().map(str::to_owned))
            .collect();
        let body = json!({
            "type": full, "account_id": ACCOUNT_ID,
            "id": format!("6b9bbadf-5725-4e92-bebe-{:012}", fakekit_counter()),
            "time": rfc3339(CLOCK_START), "zendesk_event_version": "2022-11-06",
            "subject": subject, "detail": detail, "event": event
        })
        .to_string();
        let mut out = Vec::new();
        for id in ids {
            out.push(self.deliver(&id, body.as_bytes()).await.unwrap_or(0));
        }
        out
    }
}

/// A process-wide counter for invocation and event ids.
fn fakekit_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(8_350_205_582);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Shallow-merges the keys of `fields` into `target`.
fn merge(target: &mut Value, fields: &Value) {
    if let (Some(t), Some(f)) = (target.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            t.insert(k.clone(), v.clone());
        }
    }
}

impl State {
    fn now(&self) -> String {
        rfc3339(self.clock)
    }

    /// Advances the clock one second; the new now.
    fn tick(&mut self) -> String {
        self.clock += 1;
        self.now()
    }

    fn webhook_id(&mut self) -> String {
        let n = self.next_webhook;
        self.next_webhook += 1;
        format!("01GK8E6BKWMJZD2T8Y5AX{n:05}")
    }
}

fn error(status: StatusCode, error: &str, description: &str) -> Resp {
    json_response(status, &json!({"error": error, "description": description}))
}

fn invalid(description: &str, details: Value) -> Resp {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"error": "RecordInvalid", "description": description, "details": details}),
    )
}

fn not_found() -> Resp {
    error(StatusCode::NOT_FOUND, "RecordNotFound", "Not found")
}

/// The route key of a request: ids (numbers, ULIDs, job ids) written `{id}`.
fn route(r: &Recorded) -> String {
    let path: Vec<String> = r
        .path
        .split('/')
        .map(|s| {
            let id = !s.is_empty()
                && (s.chars().all(|c| c.is_ascii_digit())
                    || (s.len() >= 20 && s.chars().all(|c| c.is_ascii_alphanumeric())));
            if id { "{id}".to_owned() } else { s.to_owned() }
        })
        .collect();
    format!("{} {}", r.method, path.join("/"))
}

fn handle(state: &Arc<Mutex<State>>, r: &Recorded) -> Resp {
    let mut st = lock(state);
    if st.closed {
        return text_response(
            StatusCode::NOT_FOUND,
            "Oops! The page you were looking for doesn't exist. This Zendesk account does not exist.",
        );
    }
    // The account's budget for the minute: spent, it is a 429 until `reset_rate_limit`.
    if st.remaining == 0 {
        let resp = with_header(
            text_response(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests: you have exceeded the rate limit, please wait before retrying",
            ),
            "retry-after",
            "60",
        );
        let resp = with_header(resp, "x-rate-limit", &RATE_LIMIT.to_string());
        return with_header(resp, "x-rate-limit-remaining", "0");
    }
    st.remaining -= 1;
    let remaining = st.remaining;
    let list = r.method == Method::GET
        && [
            "/api/v2/webhooks",
            "/api/v2/triggers",
            "/api/v2/tickets/show_many",
        ]
        .contains(&r.path.as_str());
    let resp = answer(&mut st, r);
    let mut resp = with_header(resp, "x-rate-limit", &RATE_LIMIT.to_string());
    resp = with_header(resp, "x-rate-limit-remaining", &remaining.to_string());
    if list {
        // List endpoints also send the `ratelimit-*` headers.
        resp = with_header(resp, "ratelimit-limit", &RATE_LIMIT.to_string());
        resp = with_header(resp, "ratelimit-remaining", &remaining.to_string());
        resp = with_header(resp, "ratelimit-reset", "60");
    }
    with_header(resp, "x-zendesk-api-version", "v2")
}

fn answer(st: &mut State, r: &Recorded) -> Resp {
    let key = route(r);
    if let Some(f) = st.failures.take(&key) {
        return match f {
            Failure::RateLimited { retry_after_secs } => with_header(
                text_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests: you have exceeded the rate limit, please wait before retrying",
                ),
                "retry-after",
                &retry_after_secs.to_string(),
            ),
            Failure::ServerError => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "Something went wrong on our side",
            ),
            Failure::Unavailable { retry_after_secs } => with_header(
                text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable: maintenance",
                ),
                "retry-after",
                &retry_after_secs.to_string(),
            ),
        };
    }

    // Authentication.
    let auth = r.header("authorization").map(str::to_owned);
    let me = r.method == Method::GET && r.path == "/api/v2/users/me";
    let authenticated = match auth.as_deref() {
        None => false,
        Some(a) => {
            if let Some(b) = a.strip_prefix("Basic ") {
                let expected = format!("{}/token:{}", st.email, st.api_token);
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .is_ok_and(|d| d == expected.as_bytes())
            } else if let Some(t) = a.strip_prefix("Bearer ") {
                st.oauth.as_deref() == Some(t.trim())
            } else {
                false
            }
        }
    };
    if me && (auth.is_none() || st.anonymous) {
        return json_response(
            StatusCode::OK,
            &json!({"user": {"id": null, "url": null, "name": "Anonymous user", "email": null,
                             "role": "end-user", "active": true,
                             "authenticity_token": "anon-csrf"}}),
        );
    }
    if !authenticated {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "Couldn't authenticate you"}),
        );
    }
    if st.suspended {
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "You do not have access to this page. Please contact the account owner of this help desk for further help.",
        );
    }

    // The body must be JSON, sent as JSON.
    let body = if r.body.is_empty() {
        None
    } else {
        let ct = r.header("content-type").unwrap_or("");
        if !ct.starts_with("application/json") {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "Content-Type must be application/json",
            );
        }
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => Some(v),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidJSON",
                    "The request body is not valid JSON",
                );
            }
        }
    };

    // The vendor spec.
    let spec_name = if r.path.starts_with("/api/v2/webhooks") {
        WEBHOOKS_SPEC
    } else {
        SUPPORT_SPEC
    };
    if let Some(spec) = vendor_spec(spec_name) {
        let path = r.path.strip_suffix(".json").unwrap_or(&r.path);
        if !spec.describes(&r.method, path) {
            st.spec_errors
                .push(format!("{spec_name}: no operation {} {path}", r.method));
            return error(StatusCode::NOT_FOUND, "InvalidEndpoint", "Not found");
        }
        if let Err(errors) = spec
            // The OAS describes `ListTicketComments`'s offset pagination (`sort_order`,
            // `per_page`) in its description, not as declared parameters.
            .check(
                &r.method,
                path,
                &r.query,
                body.as_ref(),
                if path.ends_with("/comments") {
                    &["sort_order", "per_page", "page"]
                } else {
                    &[]
                },
            )
            .map_err(|e| {
                e.into_iter()
                    .filter(|x| !SPEC_ERRATA.iter().any(|s| x.contains(s)))
                    .collect::<Vec<_>>()
            })
            .or_else(|e| if e.is_empty() { Ok(()) } else { Err(e) })
        {
            st.spec_errors.extend(errors.iter().cloned());
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": "InvalidParameters", "description": "The request does not match the API", "details": errors}),
            );
        }
    }
    let body = body.unwrap_or(Value::Null);
    let seg: Vec<&str> = r.segments();
    let m = r.method.clone();
    match (m, seg.as_slice()) {
        (Method::GET, ["api", "v2", "users", "me"]) => {
            let u = st.users.get(&AGENT_ID).cloned().unwrap_or(Value::Null);
            let mut u = u;
            u["authenticity_token"] = json!("csrf-token");
            json_response(StatusCode::OK, &json!({ "user": u }))
        }
        (Method::POST, ["api", "v2", "tickets"]) => create_ticket(st, r, &body),
        (Method::GET, ["api", "v2", "tickets", "show_many"]) => {
            let ids: Vec<u64> = r
                .query_param("ids")
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            let tickets: Vec<Value> = ids
                .iter()
                .filter_map(|id| st.tickets.get(id))
                .map(public_ticket)
                .collect();
            json_response(StatusCode::OK, &json!({ "tickets": tickets }))
        }
        (Method::GET, ["api", "v2", "users", "show_many"]) => {
            let users: Vec<Value> = r
                .query_param("ids")
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.trim().parse::<u64>().ok())
                .filter_map(|id| st.users.get(&id).cloned())
                .collect();
            json_response(StatusCode::OK, &json!({ "users": users }))
        }
        (Method::GET, ["api", "v2", "tickets", id, "comments"]) => {
            let Some(id) = ticket_id(id, st) else {
                return not_found();
            };
            // Offset pagination as the OAS `ListTicketComments` description documents it:
            // oldest first unless `sort_order=desc`, `per_page` up to 100.
            let mut comments: Vec<Value> = st.tickets[&id]["comments"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    c["type"] = json!("Comment");
                    c["plain_body"] = c["body"].clone();
                    c
                })
                .collect();
            if r.query_param("sort_order") == Some("desc") {
                comments.reverse();
            }
            let per_page = r
                .query_param("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(100)
                .clamp(1, 100);
            let count = comments.len();
            comments.truncate(per_page);
            json_response(
                StatusCode::OK,
                &json!({"comments": comments, "count": count, "next_page": null, "previous_page": null}),
            )
        }
        (Method::PUT, ["api", "v2", "tickets", "update_many"]) => update_many(st, r, &body),
        (Method::GET, ["api", "v2", "job_statuses", id]) => {
            let id = (*id).to_owned();
            let Some((job, left)) = st.jobs.get(&id).cloned() else {
                return not_found();
            };
            if left > 1 {
                st.jobs.insert(id, (job.clone(), left - 1));
                return json_response(StatusCode::OK, &json!({ "job_status": job }));
            }
            let done = run_job(st, &job);
            st.jobs.insert(id, (done.clone(), 0));
            json_response(StatusCode::OK, &json!({ "job_status": done }))
        }
        (Method::GET, ["api", "v2", "tickets", id]) => match ticket_id(id, st) {
            Some(id) => json_response(
                StatusCode::OK,
                &json!({ "ticket": public_ticket(&st.tickets[&id]) }),
            ),
            None => not_found(),
        },
        (Method::PUT, ["api", "v2", "tickets", id]) => {
            let Some(id) = ticket_id(id, st) else {
                return not_found();
            };
            let Some(t) = body.get("ticket").and_then(Value::as_object) else {
                return invalid("Record validation errors", json!({"ticket": "missing"}));
            };
            match update_ticket(st, id, t) {
                Ok((ticket, audit)) => json_response(
                    StatusCode::OK,
                    &json!({ "ticket": public_ticket(&ticket), "audit": audit }),
                ),
                Err(resp) => resp,
            }
        }
        (m @ (Method::PUT | Method::POST), ["api", "v2", "tickets", id, "tags"]) => {
            let Some(id) = ticket_id(id, st) else {
                return not_found();
            };
            let tags: Vec<String> = body["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let safe = matches!(&body["safe_update"], Value::Bool(true))
                || body["safe_update"].as_str() == Some("true");
            if safe && body["updated_stamp"] != st.tickets[&id]["updated_at"] {
                return error(
                    StatusCode::CONFLICT,
                    "UpdateConflict",
                    "Safe Update prevented the update due to outdated ticket data. Please fetch the latest ticket data and try again.",
                );
            }
            let now = st.tick();
            let Some(t) = st.tickets.get_mut(&id) else {
                return not_found();
            };
            let mut current: Vec<String> = if m == Method::PUT {
                t["tags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            for tag in tags {
                let tag = tag.to_lowercase();
                if !current.contains(&tag) {
                    current.push(tag);
                }
            }
            t["tags"] = json!(current);
            t["updated_at"] = json!(now);
            let status = if m == Method::PUT {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            json_response(status, &json!({ "tags": current }))
        }
        (Method::GET, ["api", "v2", "tickets", id, "macros", mid, "apply"]) => {
            let Some(id) = ticket_id(id, st) else {
                return not_found();
            };
            let Some(mac) = mid
                .parse::<u64>()
                .ok()
                .and_then(|m| st.macros.get(&m))
                .cloned()
            else {
                return not_found();
            };
            let mut after = public_ticket(&st.tickets[&id]);
            for a in mac["actions"].as_array().into_iter().flatten() {
                let field = a["field"].as_str().unwrap_or("");
                let value = &a["value"];
                match field {
                    "comment_value" => {
                        let text = value.as_str().unwrap_or("").to_owned();
                        after["comment"] = json!({"body": text, "public": false,
                            "scoped_body": [["channel:all", text]]});
                    }
                    "comment_mode_is_public" => {
                        after["comment"]["public"] = json!(value.as_str() == Some("true"));
                    }
                    "set_tags" => {
                        after["tags"] =
                            json!(value.as_str().unwrap_or("").split(' ').collect::<Vec<_>>())
                    }
                    "assignee_id" | "group_id" => {
                        after[field] = json!(value.as_str().and_then(|s| s.parse::<u64>().ok()));
                    }
                    other => after[other] = value.clone(),
                }
            }
            if st.edit_after_macro {
                let now = st.tick();
                if let Some(t) = st.tickets.get_mut(&id) {
                    t["updated_at"] = json!(now);
                }
            }
            json_response(StatusCode::OK, &json!({"result": {"ticket": after}}))
        }
        (Method::POST, ["api", "v2", "users"]) => create_user(st, &body, false),
        (Method::POST, ["api", "v2", "users", "create_or_update"]) => create_user(st, &body, true),
        (Method::GET, ["api", "v2", "webhooks"]) => {
            let filter = r.query_param("filter[name_contains]").unwrap_or("");
            let list: Vec<Value> = st
                .webhooks
                .values()
                .filter(|w| w["name"].as_str().unwrap_or("").contains(filter))
                .cloned()
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"webhooks": list, "meta": {"has_more": false, "after_cursor": null, "before_cursor": null},
                        "links": {"next": null, "prev": null}}),
            )
        }
        (Method::POST, ["api", "v2", "webhooks"]) => create_webhook(st, &body),
        (Method::GET, ["api", "v2", "webhooks", id]) => match st.webhooks.get(*id) {
            Some(w) => json_response(StatusCode::OK, &json!({ "webhook": w })),
            None => webhook_not_found(),
        },
        (Method::PUT, ["api", "v2", "webhooks", id]) => replace_webhook(st, id, &body),
        (Method::DELETE, ["api", "v2", "webhooks", id]) => {
            if !st.webhooks.contains_key(*id) {
                return webhook_not_found();
            }
            let used = st.triggers.values().any(|t| {
                t["actions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["value"][0].as_str() == Some(id))
            });
            if used {
                return webhook_error(
                    StatusCode::BAD_REQUEST,
                    "WebhookInUse",
                    "The webhook is used by a trigger or automation; remove it from them first",
                );
            }
            st.webhooks.remove(*id);
            st.secrets.remove(*id);
            empty_response(StatusCode::NO_CONTENT)
        }
        (m @ (Method::GET | Method::POST), ["api", "v2", "webhooks", id, "signing_secret"]) => {
            if !st.webhooks.contains_key(*id) {
                return webhook_not_found();
            }
            if m == Method::POST {
                let fresh = format!("reset-{}-{}", id, fakekit_counter());
                st.secrets.insert((*id).to_owned(), fresh);
            }
            let secret = st.secrets.get(*id).cloned().unwrap_or_default();
            let status = if m == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(
                status,
                &json!({"signing_secret": {"algorithm": "SHA256", "secret": secret}}),
            )
        }
        (Method::GET, ["api", "v2", "triggers"]) => {
            let list: Vec<Value> = st.triggers.values().cloned().collect();
            json_response(
                StatusCode::OK,
                &json!({"triggers": list, "count": list.len(), "next_page": null, "previous_page": null}),
            )
        }
        (Method::POST, ["api", "v2", "triggers"]) => {
            let t = body.get("trigger").cloned().unwrap_or(Value::Null);
            if let Err(resp) = check_trigger(st, &t) {
                return resp;
            }
            let id = st.next_trigger;
            st.next_trigger += 1;
            let now = st.tick();
            let mut t = t;
            let raw_title = t["title"].clone();
            merge(
                &mut t,
                &json!({"id": id, "url": format!("{}/api/v2/triggers/{id}.json", st.origin),
                        "position": id % 1000, "created_at": now, "updated_at": now,
                        "raw_title": raw_title, "default": false}),
            );
            if t.get("active").is_none() {
                t["active"] = json!(true);
            }
            st.triggers.insert(id, t.clone());
            json_response(StatusCode::CREATED, &json!({ "trigger": t }))
        }
        (Method::GET, ["api", "v2", "triggers", id]) => {
            match id.parse::<u64>().ok().and_then(|i| st.triggers.get(&i)) {
                Some(t) => json_response(StatusCode::OK, &json!({ "trigger": t })),
                None => not_found(),
            }
        }
        (Method::PUT, ["api", "v2", "triggers", id]) => {
            let Some(id) = id
                .parse::<u64>()
                .ok()
                .filter(|i| st.triggers.contains_key(i))
            else {
                return not_found();
            };
            let t = body.get("trigger").cloned().unwrap_or(Value::Null);
            if let Err(resp) = check_trigger(st, &t) {
                return resp;
            }
            let now = st.tick();
            let Some(stored) = st.triggers.get_mut(&id) else {
                return not_found();
            };
            merge(stored, &t);
            stored["updated_at"] = json!(now);
            let stored = stored.clone();
            json_response(StatusCode::OK, &json!({ "trigger": stored }))
        }
        (Method::DELETE, ["api", "v2", "triggers", id]) => {
            match id.parse::<u64>().ok().and_then(|i| st.triggers.remove(&i)) {
                Some(_) => empty_response(StatusCode::NO_CONTENT),
                None => not_found(),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "InvalidEndpoint", "Not found"),
    }
}

fn webhook_error(status: StatusCode, code: &str, detail: &str) -> Resp {
    json_response(
        status,
        &json!({"errors": [{"code": code, "title": code, "detail": detail}]}),
    )
}

fn webhook_not_found() -> Resp {
    webhook_error(
        StatusCode::NOT_FOUND,
        "WebhookNotFound",
        "Webhook not found",
    )
}

fn ticket_id(s: &str, st: &State) -> Option<u64> {
    s.strip_suffix(".json")
        .unwrap_or(s)
        .parse::<u64>()
        .ok()
        .filter(|id| st.tickets.contains_key(id))
}

/// A ticket as the API shows it (without the fake's comment list).
fn public_ticket(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("comments");
    }
    t
}

const STATUSES: &[&str] = &["new", "open", "pending", "hold", "solved", "closed"];
const PRIORITIES: &[&str] = &["urgent", "high", "normal", "low"];
const TYPES: &[&str] = &["problem", "incident", "question", "task"];

/// Checks enum values of a ticket input; the 422 answer when one is wrong.
fn check_ticket_values(t: &Map<String, Value>) -> Result<(), Resp> {
    for (k, allowed) in [
        ("status", STATUSES),
        ("priority", PRIORITIES),
        ("type", TYPES),
    ] {
        if let Some(v) = t.get(k).filter(|v| !v.is_null())
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            return Err(invalid(
                "Record validation errors",
                json!({ k: [{"description": format!("{k}: {v} is not valid"), "error": "InvalidValue"}] }),
            ));
        }
    }
    if let Some(c) = t.get("comment") {
        let has = ["body", "html_body"].iter().any(|k| {
            c.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        });
        if !has {
            return Err(invalid(
                "Record validation errors",
                json!({"comment": [{"description": "Comment: body can't be blank"}]}),
            ));
        }
    }
    Ok(())
}

fn create_ticket(st: &mut State, r: &Recorded, body: &Value) -> Resp {
    if let Some(key) = r.header("idempotency-key").map(str::to_owned) {
        if let Some((seen, status, resp)) = st.idempotency.get(&key).cloned() {
            if &seen != body {
                return error(
                    StatusCode::BAD_REQUEST,
                    "IdempotentRequestError",
                    "The request body does not match the original request for this idempotency key",
                );
            }
            return with_header(
                json_response(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED),
                    &resp,
                ),
                "x-idempotency-lookup",
                "hit",
            );
        }
        let resp = create_ticket_fresh(st, body);
        let status = resp.status().as_u16();
        if status == 201 {
            let id = st.next_ticket - 1;
            let saved = json!({ "ticket": public_ticket(&st.tickets[&id]) });
            st.idempotency.insert(key, (body.clone(), status, saved));
        }
        return with_header(resp, "x-idempotency-lookup", "miss");
    }
    create_ticket_fresh(st, body)
}

fn create_ticket_fresh(st: &mut State, body: &Value) -> Resp {
    let Some(t) = body.get("ticket").and_then(Value::as_object) else {
        return invalid("Record validation errors", json!({"ticket": "missing"}));
    };
    if t.get("comment").is_none() {
        return invalid(
            "Record validation errors",
            json!({"comment": [{"description": "Comment: cannot be blank"}]}),
        );
    }
    if let Err(resp) = check_ticket_values(t) {
        return resp;
    }
    let requester = if let Some(id) = t.get("requester_id").and_then(Value::as_u64) {
        if !st.users.contains_key(&id) {
            return invalid(
                "Record validation errors",
                json!({"requester": [{"description": "Requester: is invalid"}]}),
            );
        }
        id
    } else if let Some(email) = t
        .get("requester")
        .and_then(|r| r.get("email"))
        .and_then(Value::as_str)
    {
        match st
            .users
            .values()
            .find(|u| u["email"].as_str() == Some(email))
            .and_then(|u| u["id"].as_u64())
        {
            Some(id) => id,
            None => {
                let id = st.next_user;
                st.next_user += 1;
                let now = st.now();
                let name = t
                    .get("requester")
                    .and_then(|r| r.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or(email)
                    .to_owned();
                st.users.insert(
                    id,
                    json!({"id": id, "name": name, "email": email, "role": "end-user",
                           "url": format!("{}/api/v2/users/{id}.json", st.origin),
                           "created_at": now, "updated_at": now, "tags": []}),
                );
                id
            }
        }
    } else {
        AGENT_ID
    };
    let id = st.next_ticket;
    st.next_ticket += 1;
    let now = st.tick();
    let comment = &t["comment"];
    let text = comment["body"]
        .as_str()
        .or(comment["html_body"].as_str())
        .unwrap_or("")
        .to_owned();
    let audit = st.next_audit;
    st.next_audit += 1;
    let status = t
        .get("status")
        .cloned()
        .filter(|v| !v.is_null())
        .unwrap_or_else(|| {
            if t.get("assignee_id").is_some_and(|a| !a.is_null()) {
                json!("open")
            } else {
                json!("new")
            }
        });
    let g = |k: &str| t.get(k).cloned().unwrap_or(Value::Null);
    let ticket = json!({
        "id": id, "url": format!("{}/api/v2/tickets/{id}.json", st.origin),
        "subject": g("subject"), "raw_subject": g("subject"), "description": text,
        "status": status, "priority": g("priority"), "type": g("type"),
        "tags": t.get("tags").cloned().unwrap_or_else(|| json!([])),
        "requester_id": requester,
        "submitter_id": t.get("submitter_id").cloned().unwrap_or(json!(AGENT_ID)),
        "assignee_id": g("assignee_id"), "group_id": g("group_id"),
        "organization_id": g("organization_id"), "brand_id": g("brand_id"),
        "ticket_form_id": g("ticket_form_id"), "external_id": g("external_id"),
        "due_at": g("due_at"), "custom_fields": t.get("custom_fields").cloned().unwrap_or_else(|| json!([])),
        "created_at": now, "updated_at": now,
        "comments": [{"id": audit, "body": text, "public": comment.get("public").cloned().unwrap_or(json!(true)), "author_id": AGENT_ID}]
    });
    st.tickets.insert(id, ticket.clone());
    with_header(
        json_response(
            StatusCode::CREATED,
            &json!({ "ticket": public_ticket(&ticket), "audit": {"id": audit, "ticket_id": id} }),
        ),
        "location",
        &format!("{}/api/v2/tickets/{id}.json", st.origin),
    )
}

/// Applies a ticket update; the ticket and its audit, or the error answer.
fn update_ticket(st: &mut State, id: u64, t: &Map<String, Value>) -> Result<(Value, Value), Resp> {
    check_ticket_values(t)?;
    let current = st.tickets[&id].clone();
    if current["status"] == "closed" {
        return Err(invalid(
            "Record validation errors",
            json!({"status": [{"description": "Status: closed prevents ticket update"}]}),
        ));
    }
    let safe = matches!(t.get("safe_update"), Some(Value::Bool(true)))
        || t.get("safe_update").and_then(Value::as_str) == Some("true");
    if safe && t.get("updated_stamp") != Some(&current["updated_at"]) {
        return Err(error(
            StatusCode::CONFLICT,
            "UpdateConflict",
            "Safe Update prevented the update due to outdated ticket data. Please fetch the latest ticket data and try again.",
        ));
    }
    let assignee = match t.get("assignee_email").and_then(Value::as_str) {
        Some(email) => match st
            .users
            .values()
            .find(|u| u["email"].as_str() == Some(email) && u["role"] != "end-user")
        {
            Some(u) => Some(u["id"].clone()),
            None => {
                return Err(invalid(
                    "Record validation errors",
                    json!({"assignee": [{"description": "Assignee: is not an agent"}]}),
                ));
            }
        },
        None => None,
    };
    let audit = st.next_audit;
    st.next_audit += 1;
    let now = st.tick();
    let Some(ticket) = st.tickets.get_mut(&id) else {
        return Err(not_found());
    };
    for (k, v) in t {
        match k.as_str() {
            "safe_update" | "updated_stamp" | "assignee_email" => {}
            "comment" => {
                let text = v["body"].as_str().or(v["html_body"].as_str()).unwrap_or("");
                let c = json!({"id": audit, "body": text,
                    "public": v.get("public").cloned().unwrap_or(json!(true)),
                    "author_id": v.get("author_id").cloned().unwrap_or(json!(AGENT_ID))});
                if let Some(a) = ticket["comments"].as_array_mut() {
                    a.push(c);
                }
            }
            "additional_tags" => {
                let mut tags: Vec<Value> = ticket["tags"].as_array().cloned().unwrap_or_default();
                for tag in v.as_array().into_iter().flatten() {
                    if !tags.contains(tag) {
                        tags.push(tag.clone());
                    }
                }
                ticket["tags"] = Value::Array(tags);
            }
            "id" => {}
            _ => ticket[k.as_str()] = v.clone(),
        }
    }
    if let Some(a) = assignee {
        ticket["assignee_id"] = a;
    }
    if ticket["status"] == "new" && !ticket["assignee_id"].is_null() {
        ticket["status"] = json!("open");
    }
    ticket["updated_at"] = json!(now);
    let ticket = ticket.clone();
    Ok((
        ticket,
        json!({"id": audit, "ticket_id": id, "created_at": now, "author_id": AGENT_ID}),
    ))
}

fn update_many(st: &mut State, r: &Recorded, body: &Value) -> Resp {
    let items: Vec<Value> = if let Some(ids) = r.query_param("ids") {
        let Some(t) = body.get("ticket").and_then(Value::as_object) else {
            return invalid("Record validation errors", json!({"ticket": "missing"}));
        };
        ids.split(',')
            .filter_map(|s| s.trim().parse::<u64>().ok())
            .map(|id| {
                let mut t = Value::Object(t.clone());
                t["id"] = json!(id);
                t
            })
            .collect()
    } else {
        // Zendesk's guide "Adding tags to tickets without overwriting existing tags"
        // (developer.zendesk.com/documentation/ticketing/managing-tickets/adding-tags-to-tickets-without-overwriting-existing-tags/):
        // `additional_tags` and `remove_tags` "only work with bulk updates, where the tickets
        // are specified in the ids parameter", not with batch updates (a `tickets` array). The
        // job still completes: the tags are silently not changed.
        let mut items = body["tickets"].as_array().cloned().unwrap_or_default();
        for item in &mut items {
            if let Some(o) = item.as_object_mut() {
                o.remove("additional_tags");
                o.remove("remove_tags");
            }
        }
        items
    };
    if items.is_empty() || items.len() > 100 {
        return invalid(
            "Record validation errors",
            json!({"tickets": "between 1 and 100 tickets"}),
        );
    }
    if st
        .jobs
        .values()
        .filter(|(j, _)| j["status"] != "completed")
        .count()
        >= 30
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyJobs",
            "Number of simultaneous jobs exceeded",
        );
    }
    let id = format!("82de0b044094f0c67893ac9fe64f{:04x}", st.next_job);
    st.next_job += 1;
    let job = json!({"id": id, "url": format!("{}/api/v2/job_statuses/{id}.json", st.origin),
                     "status": "queued", "total": items.len(), "progress": 0, "message": null,
                     "results": null, "items": items});
    st.jobs.insert(id, (job.clone(), st.job_polls));
    let mut shown = job;
    if let Some(o) = shown.as_object_mut() {
        o.remove("items");
    }
    json_response(StatusCode::OK, &json!({ "job_status": shown }))
}

/// Performs a queued job; its completed status.
fn run_job(st: &mut State, job: &Value) -> Value {
    if job["status"] == "completed" {
        return job.clone();
    }
    let mut results = Vec::new();
    for item in job["items"].as_array().into_iter().flatten() {
        let id = item["id"].as_u64().unwrap_or(0);
        let mut t = item.as_object().cloned().unwrap_or_default();
        t.remove("id");
        if !st.tickets.contains_key(&id) {
            results.push(json!({"id": id, "success": false, "error": "TicketNotFound", "details": "Ticket not found"}));
            continue;
        }
        match update_ticket(st, id, &t) {
            Ok(_) => results
                .push(json!({"action": "update", "id": id, "status": "Updated", "success": true})),
            Err(resp) => {
                let code = if resp.status() == StatusCode::CONFLICT {
                    "UpdateConflict"
                } else {
                    "RecordInvalid"
                };
                results.push(json!({"id": id, "success": false, "error": code,
                                    "details": format!("ticket {id} could not be updated")}));
            }
        }
    }
    let mut done = job.clone();
    if let Some(o) = done.as_object_mut() {
        o.remove("items");
    }
    done["status"] = json!("completed");
    done["progress"] = json!(results.len());
    done["message"] = json!(format!("Completed at {}", st.now()));
    done["results"] = Value::Array(results);
    done
}

fn create_user(st: &mut State, body: &Value, upsert: bool) -> Resp {
    let u = body
        .get("user")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let name = u.get("name").and_then(Value::as_str).unwrap_or("");
    let email = u.get("email").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return invalid(
            "Record validation errors",
            json!({"name": [{"description": "Name: is too short (minimum one character)"}]}),
        );
    }
    if let Some(role) = u.get("role").and_then(Value::as_str)
        && !["end-user", "agent", "admin"].contains(&role)
    {
        return invalid(
            "Record validation errors",
            json!({"role": [{"description": "Role: is invalid"}]}),
        );
    }
    let existing = st
        .users
        .iter()
        .find(|(_, x)| !email.is_empty() && x["email"].as_str() == Some(email))
        .map(|(id, _)| *id);
    let now = st.tick();
    match existing {
        Some(id) if upsert => {
            let Some(user) = st.users.get_mut(&id) else {
                return not_found();
            };
            for (k, v) in &u {
                user[k.as_str()] = v.clone();
            }
            user["updated_at"] = json!(now);
            let user = user.clone();
            json_response(StatusCode::OK, &json!({ "user": user }))
        }
        Some(_) => invalid(
            "Record validation errors",
            json!({"email": [{"description": format!("Email: {email} is already being used by another user"), "error": "DuplicateValue"}]}),
        ),
        None => {
            let id = st.next_user;
            st.next_user += 1;
            let mut user = Value::Object(u);
            merge(
                &mut user,
                &json!({"id": id, "url": format!("{}/api/v2/users/{id}.json", st.origin),
                        "created_at": now, "updated_at": now, "active": true}),
            );
            if user.get("role").is_none() {
                user["role"] = json!("end-user");
            }
            st.users.insert(id, user.clone());
            json_response(StatusCode::CREATED, &json!({ "user": user }))
        }
    }
}

/// Zendesk's rules for a webhook body; the 400 answer when one is broken.
fn check_webhook(w: &Value) -> Result<(), Resp> {
    let s = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("");
    let endpoint = s("endpoint");
    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
        return Err(webhook_error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "endpoint must be an http(s) URL",
        ));
    }
    let subs: Vec<&str> = w["subscriptions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if subs.is_empty() {
        return Err(webhook_error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "subscriptions must not be empty",
        ));
    }
    let conditional = subs.contains(&"conditional_ticket_events");
    if conditional && subs.len() > 1 {
        return Err(webhook_error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "conditional_ticket_events cannot be combined with event subscriptions",
        ));
    }
    if !conditional {
        if let Some(bad) = subs.iter().find(|s| !s.starts_with("zen:event-type:")) {
            return Err(webhook_error(
                StatusCode::BAD_REQUEST,
                "InvalidValue",
                &format!("unknown subscription {bad}"),
            ));
        }
        if s("http_method") != "POST" || s("request_format") != "json" {
            return Err(webhook_error(
                StatusCode::BAD_REQUEST,
                "InvalidValue",
                "webhooks subscribed to Zendesk events must use POST and json",
            ));
        }
    }
    if !["active", "inactive"].contains(&s("status")) {
        return Err(webhook_error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "status must be active or inactive",
        ));
    }
    Ok(())
}

fn create_webhook(st: &mut State, body: &Value) -> Resp {
    let w = body.get("webhook").cloned().unwrap_or(Value::Null);
    if let Err(resp) = check_webhook(&w) {
        return resp;
    }
    let id = st.webhook_id();
    let now = st.tick();
    let secret = w
        .pointer("/signing_secret/secret")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("zd-signing-{id}-{}", fakekit_counter()));
    let mut stored = w.clone();
    if let Some(o) = stored.as_object_mut() {
        o.remove("signing_secret");
    }
    merge(
        &mut stored,
        &json!({"id": id, "created_at": now, "created_by": AGENT_ID.to_string(),
                "updated_at": now, "updated_by": AGENT_ID.to_string()}),
    );
    st.webhooks.insert(id.clone(), stored.clone());
    st.secrets.insert(id, secret);
    json_response(StatusCode::CREATED, &json!({ "webhook": stored }))
}

fn replace_webhook(st: &mut State, id: &str, body: &Value) -> Resp {
    let Some(current) = st.webhooks.get(id).cloned() else {
        return webhook_not_found();
    };
    let w = body.get("webhook").cloned().unwrap_or(Value::Null);
    if w.get("signing_secret").is_some() || w.get("external_source").is_some() {
        return webhook_error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "signing_secret and external_source cannot be set when updating a webhook",
        );
    }
    if let Err(resp) = check_webhook(&w) {
        return resp;
    }
    let was_conditional = current["subscriptions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s == "conditional_ticket_events"));
    let is_conditional = w["subscriptions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s == "conditional_ticket_events"));
    if was_conditional != is_conditional {
        return webhook_error(
            StatusCode::BAD_REQUEST,
            "InvalidValue",
            "a webhook cannot switch between event subscriptions and triggers",
        );
    }
    let now = st.tick();
    let mut stored = w;
    merge(
        &mut stored,
        &json!({"id": id, "created_at": current["created_at"], "created_by": current["created_by"],
                "updated_at": now, "updated_by": AGENT_ID.to_string()}),
    );
    st.webhooks.insert(id.to_owned(), stored);
    empty_response(StatusCode::NO_CONTENT)
}

/// A trigger's `notification_webhook` actions must name a trigger-connected webhook.
fn check_trigger(st: &State, t: &Value) -> Result<(), Resp> {
    for a in t["actions"].as_array().into_iter().flatten() {
        if a["field"] == "notification_webhook" {
            let id = a["value"][0].as_str().unwrap_or("");
            let ok = st.webhooks.get(id).is_some_and(|w| {
                w["subscriptions"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "conditional_ticket_events"))
            });
            if !ok || a["value"][1].as_str().is_none() {
                return Err(invalid(
                    "Record validation errors",
                    json!({"actions": [{"description": format!("Notify webhook: {id} is not a webhook connected to triggers")}]}),
                ));
            }
        }
    }
    Ok(())
}
