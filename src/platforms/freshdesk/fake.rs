//! A fake Freshdesk API v2 for tests, on the shared [`FakeServer`]: it answers the calls the
//! connector makes the way Freshdesk does, keeps tickets, contacts, notes, replies, time
//! entries, bulk jobs and automation rules in memory, and records every request.
//!
//! - Authentication: HTTP Basic whose user name is the API key given to
//!   [`FakeFreshdesk::start`] (any password); anything else is 401
//!   `{"code":"invalid_credentials",…}`. [`FakeFreshdesk::suspend`] makes every call 403
//!   `{"code":"account_suspended",…}`; [`FakeFreshdesk::remove_helpdesk`] makes every call 404
//!   with an HTML page, as an unknown domain does. [`FakeFreshdesk::restrict_to_agent`] makes
//!   automation-rule calls 403 `{"code":"access_denied",…}` (a key without admin rights).
//! - Rate limits: every answer carries `X-RateLimit-Total`, `X-RateLimit-Remaining` and
//!   `X-RateLimit-Used-CurrentRequest`; when the minute's budget is spent the answer is 429
//!   with `Retry-After` ([`FakeFreshdesk::set_budget`]). [`FakeFreshdesk::fail_next`] scripts
//!   429s, 500s and 503s per route (`"POST /api/v2/tickets"`, `"PUT /api/v2/tickets/{id}"`…).
//! - Requests are checked against a description of the endpoints the fake covers
//!   ([`api_description`], written from the platform notes: Freshdesk publishes no OpenAPI
//!   document) with [`ApiSpec::check`]: an unknown route is 404, an unknown query parameter or
//!   body field is 400 `Validation failed` with code `invalid_field`, a missing one
//!   `missing_field`, as Freshdesk answers. Values are checked too (status, priority, source,
//!   emails, `time_spent`), and a body that is not JSON, or not sent as `application/json`, is
//!   refused.
//! - Bulk updates answer 202 with a `job_id`; the job reports `in progress` for
//!   [`FakeFreshdesk::set_job_polls`] polls, then `completed` with one entry per ticket
//!   ([`FakeFreshdesk::set_job_outcome`] scripts another final status, e.g. `partial`, or no
//!   per-ticket entries: which values a finished job takes is unconfirmed).
//! - Automation rules of types 1, 3 and 4 are kept per type, in positions (a new rule goes
//!   last unless it names a `position`, which moves the others down, as Freshdesk's
//!   `acts_as_list` rules do). Listing pages by `page`/`per_page`, or ignores them
//!   ([`FakeFreshdesk::ignore_paging`]: whether the real endpoint pages is unconfirmed).
//! - Rules are echoed the way Freshdesk's automation API is documented and reviewed to echo
//!   them (`docs/integrations/freshdesk.md`, "What is confirmed"): numbers in `conditions`,
//!   `events` and `performer` come back as strings (the withone.ai mirror of "View an
//!   Automation Rule" types `performer.type`, `events.from`/`to` as strings, and Freshdesk's
//!   own `Admin::AutomationConstants::EVENTS_HASH` validates `from`/`to` as `String`), header
//!   values are not echoed, the webhook body comes back as a JSON string, and read-only keys
//!   (`summary`, `last_updated_by`, …) are added.
//! - [`FakeFreshdesk::fire`] plays Freshdesk's side of what happens to a ticket
//!   ([`Happening`]): like Freshdesk's `Va::RuleEngine`, it evaluates every active rule of the
//!   matching type: conditions (`in`, `not_in`, `is`, `is_not` on ticket fields), for ticket
//!   updates the events (`from`/`to`, `--` for any) and the performer (1 agent, 2 requester,
//!   3 agent or requester, 4 System, as Freshdesk's `Va::Performer` numbers them:
//!   `Ramesh-Veeriaperumal/freshconsult` `app/models/va/performer.rb`), and for ticket creation
//!   the account's execution mode ([`FakeFreshdesk::first_matching_rule`]: only the first
//!   matching rule by position runs). Each rule that runs renders its `trigger_webhook` content
//!   (placeholders such as `{{ticket.status}}` become display names, like Freshdesk's) and
//!   posts it with the rule's custom headers.
//! - [`FakeFreshdesk::deliver_updates`] makes the fake's own API do the same: a `PUT` that
//!   changes a ticket's status or priority runs the ticket-update rules, the change made by the
//!   API key's agent (observer rules fire on changes made through the API too), so a rule
//!   whose action updates the ticket it triggered on can re-trigger itself through the fake as
//!   it would through Freshdesk.

#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::platforms::fakekit::{
    ApiSpec, Failures, FakeServer, Recorded, Resp, empty_response, json_response, lock,
    text_response, with_header,
};

pub use crate::platforms::fakekit::Failure;

/// The id of the agent the API key belongs to (what `agents/me` answers).
pub const AGENT_ID: i64 = 19_000_000_001;
/// That agent's name.
pub const AGENT_NAME: &str = "Rachel Ops";
/// That agent's email.
pub const AGENT_EMAIL: &str = "rachel@acme.example";
/// Tickets the fake starts with.
pub const SEEDED_TICKETS: [i64; 3] = [101, 102, 103];
/// A contact the fake starts with.
pub const SEEDED_CONTACT: i64 = 5001;
/// That contact's email.
pub const SEEDED_CONTACT_EMAIL: &str = "dana.whitfield@example.com";
/// Custom statuses the account has (number, name).
pub const CUSTOM_STATUSES: &[(i64, &str)] =
    &[(6, "Waiting on Customer"), (7, "Waiting on Third Party")];
/// Groups that exist.
pub const GROUPS: &[i64] = &[301, 302];
/// Agents that exist (besides [`AGENT_ID`]).
pub const AGENTS: &[i64] = &[19_000_000_002, 19_000_000_003];

/// The per-minute budget the fake starts with (Growth plan).
pub const DEFAULT_BUDGET: u64 = 200;

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeFreshdesk {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    api_key: String,
    suspended: bool,
    helpdesk_missing: bool,
    agent_only: bool,
    failures: Failures,
    total: u64,
    remaining: u64,
    seq: i64,
    tickets: BTreeMap<i64, Value>,
    contacts: BTreeMap<i64, Value>,
    notes: Vec<Value>,
    replies: Vec<Value>,
    time_entries: Vec<Value>,
    rules: BTreeMap<(u8, i64), Value>,
    jobs: HashMap<String, (u32, Value)>,
    job_polls: u32,
    job_status: String,
    job_entries: bool,
    first_match: bool,
    ignore_paging: bool,
    clock: i64,
    normalize_stored: Option<fn(&mut Value)>,
    /// Where a `PUT` that changed a ticket's status or priority goes when the fake delivers
    /// updates ([`FakeFreshdesk::deliver_updates`]).
    /// Each carries the changed field's value before the change.
    updates: Option<tokio::sync::mpsc::UnboundedSender<(Happening, i64)>>,
}

/// What happens to a ticket, for [`FakeFreshdesk::fire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happening {
    /// The ticket was created (ticket-creation rules, type 1).
    Created {
        /// The ticket (it must exist in the fake).
        ticket: i64,
    },
    /// Its status changed to `to` (ticket-update rules, type 4).
    Status {
        /// The ticket.
        ticket: i64,
        /// The new status code (custom statuses are 6 and above).
        to: i64,
        /// Who made the change.
        by: By,
    },
    /// Its priority changed to `to`.
    Priority {
        /// The ticket.
        ticket: i64,
        /// The new priority code.
        to: i64,
        /// Who made the change.
        by: By,
    },
    /// A note was added.
    Note {
        /// The ticket.
        ticket: i64,
        /// A private note (else public).
        private: bool,
        /// Who added it.
        by: By,
    },
}

/// Who made a change (a rule's performer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// An agent.
    Agent,
    /// The requester.
    Requester,
    /// The System: a time trigger or another automation.
    System,
    /// supportopsd itself: the agent of the API key ([`AGENT_ID`]), an agent to the rules.
    Us,
}

const TS: &str = "2026-11-28T10:00:00Z";

impl FakeFreshdesk {
    /// [`FakeFreshdesk::try_start`], for the tests: a failure to bind loopback fails the test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start(api_key: &str) -> FakeFreshdesk {
        FakeFreshdesk::try_start(api_key)
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// Starts the fake, accepting `api_key`.
    pub async fn try_start(api_key: &str) -> std::io::Result<FakeFreshdesk> {
        let mut tickets = BTreeMap::new();
        for id in SEEDED_TICKETS {
            tickets.insert(
                id,
                json!({
                    "id": id, "subject": format!("Seeded ticket {id}"), "description": "<p>seed</p>",
                    "status": 2, "priority": 1, "source": 1, "requester_id": SEEDED_CONTACT,
                    "responder_id": null, "group_id": null, "type": null, "tags": [],
                    "cc_emails": [], "custom_fields": {}, "created_at": TS, "updated_at": TS,
                }),
            );
        }
        let mut contacts = BTreeMap::new();
        contacts.insert(
            SEEDED_CONTACT,
            json!({ "id": SEEDED_CONTACT, "name": "Dana Whitfield", "email": SEEDED_CONTACT_EMAIL,
                    "active": true, "created_at": TS, "updated_at": TS }),
        );
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.to_owned(),
            suspended: false,
            helpdesk_missing: false,
            agent_only: false,
            failures: Failures::default(),
            total: DEFAULT_BUDGET,
            remaining: DEFAULT_BUDGET,
            seq: 1000,
            tickets,
            contacts,
            notes: Vec::new(),
            replies: Vec::new(),
            time_entries: Vec::new(),
            rules: BTreeMap::new(),
            jobs: HashMap::new(),
            job_polls: 1,
            job_status: "completed".into(),
            job_entries: true,
            first_match: false,
            ignore_paging: false,
            clock: 0,
            normalize_stored: None,
            updates: None,
        }));
        let shared = state.clone();
        let server = FakeServer::try_start(move |r| handle(&shared, r)).await?;
        Ok(FakeFreshdesk { server, state })
    }

    /// `http://127.0.0.1:<port>`, for `[endpoint] base_url`.
    pub fn base_url(&self) -> String {
        self.server.origin()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// The requests with this method whose path starts with `prefix`.
    pub fn requests_to(&self, method: &Method, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Makes the next `times` calls of `route` (`"METHOD /api/v2/…"` with `{id}` / `{type}`
    /// for path parameters) fail with `failure`.
    pub fn fail_next(&self, route: &str, failure: Failure, times: usize) {
        lock(&self.state).failures.push(route, failure, times);
    }

    /// Performs the next `times` requests `method path` (path without the query, e.g.
    /// `/1/cards`), then answers them with a 504 instead: the platform acted, and its answer
    /// was lost ([`crate::platforms::fakekit::FakeServer::lose_answers`]).
    pub fn lose_answers(&self, method: http::Method, path: &str, times: usize) {
        self.server.lose_answers(method, path, times);
    }

    /// Sets the per-minute budget and what is left of it.
    pub fn set_budget(&self, total: u64, remaining: u64) {
        let mut st = lock(&self.state);
        st.total = total;
        st.remaining = remaining;
    }

    /// Suspends (or reactivates) the account.
    pub fn suspend(&self, suspended: bool) {
        lock(&self.state).suspended = suspended;
    }

    /// Makes the API key an agent's without the admin privilege: automation rules answer 403
    /// `access_denied`.
    pub fn restrict_to_agent(&self, restricted: bool) {
        lock(&self.state).agent_only = restricted;
    }

    /// Makes the fake answer like a domain with no helpdesk.
    pub fn remove_helpdesk(&self) {
        lock(&self.state).helpdesk_missing = true;
    }

    /// How many polls a bulk job reports `in progress` before it completes.
    pub fn set_job_polls(&self, polls: u32) {
        lock(&self.state).job_polls = polls;
    }

    /// The status a finished bulk job reports (`completed` by default), and whether it lists
    /// one entry per ticket.
    pub fn set_job_outcome(&self, status: &str, entries: bool) {
        let mut st = lock(&self.state);
        st.job_status = status.to_owned();
        st.job_entries = entries;
    }

    /// Puts the account's ticket-creation rules in "first matching rule" execution mode (only
    /// the first matching rule by position runs) or back to "all matching rules".
    pub fn first_matching_rule(&self, on: bool) {
        lock(&self.state).first_match = on;
    }

    /// Makes listing rules ignore `page` and `per_page` (every page answers every rule).
    pub fn ignore_paging(&self, on: bool) {
        lock(&self.state).ignore_paging = on;
    }

    /// Makes the fake store every rule written through the API changed by `f`, as an account
    /// that normalises a field differently from what was sent would.
    pub fn normalize_stored_rules(&self, f: Option<fn(&mut Value)>) {
        lock(&self.state).normalize_stored = f;
    }

    /// A ticket as it is now.
    pub fn ticket(&self, id: i64) -> Option<Value> {
        lock(&self.state).tickets.get(&id).cloned()
    }

    /// Every ticket.
    pub fn tickets(&self) -> Vec<Value> {
        lock(&self.state).tickets.values().cloned().collect()
    }

    /// Every contact.
    pub fn contacts(&self) -> Vec<Value> {
        lock(&self.state).contacts.values().cloned().collect()
    }

    /// Every note added.
    pub fn notes(&self) -> Vec<Value> {
        lock(&self.state).notes.clone()
    }

    /// Every reply sent.
    pub fn replies(&self) -> Vec<Value> {
        lock(&self.state).replies.clone()
    }

    /// Every time entry.
    pub fn time_entries(&self) -> Vec<Value> {
        lock(&self.state).time_entries.clone()
    }

    /// Every automation rule, as `(type, rule)`.
    pub fn rules(&self) -> Vec<(u8, Value)> {
        lock(&self.state)
            .rules
            .iter()
            .map(|((t, _), r)| (*t, r.clone()))
            .collect()
    }

    /// Adds a rule someone made by hand (returns its id): last, or at its `position`.
    pub fn add_rule(&self, ty: u8, mut rule: Value) -> i64 {
        let mut st = lock(&self.state);
        st.seq += 1;
        let id = st.seq;
        rule["id"] = json!(id);
        if rule.get("active").is_none() {
            rule["active"] = json!(true);
        }
        let position = rule.get("position").and_then(Value::as_i64);
        place(&mut st, ty, id, rule, position);
        id
    }

    /// Deletes a rule behind supportopsd's back.
    pub fn delete_rule(&self, ty: u8, id: i64) -> bool {
        lock(&self.state).rules.remove(&(ty, id)).is_some()
    }

    /// Edits a rule behind supportopsd's back.
    pub fn edit_rule(&self, ty: u8, id: i64, edit: impl FnOnce(&mut Value)) {
        if let Some(r) = lock(&self.state).rules.get_mut(&(ty, id)) {
            edit(r);
        }
    }

    /// Plays Freshdesk's side of `what`: applies it to the ticket, then runs the rules
    /// Freshdesk would (see the module docs): each posts its rendered `trigger_webhook` content
    /// to its URL with its custom headers. Returns the answers' statuses, one per rule that ran.
    pub async fn fire(&self, what: Happening) -> Vec<u16> {
        let calls = rule_calls(&mut lock(&self.state), what, None);
        post_calls(calls).await
    }

    /// Makes the fake play Freshdesk's side of its own API's ticket updates, as Freshdesk does:
    /// a `PUT /api/v2/tickets/{id}` that changes the status or the priority runs the
    /// ticket-update rules (type 4) like [`FakeFreshdesk::fire`], the change made by the API
    /// key's agent ([`By::Us`]), and posts their webhooks, in order, from a task of its own
    /// (the `PUT` is answered first). Off by default. Needs a Tokio runtime.
    pub fn deliver_updates(&self) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Happening, i64)>();
        lock(&self.state).updates = Some(tx);
        let state = Arc::downgrade(&self.state);
        tokio::spawn(async move {
            while let Some((what, from)) = rx.recv().await {
                let Some(state) = state.upgrade() else { return };
                let calls = rule_calls(&mut lock(&state), what, Some(from));
                drop(state);
                post_calls(calls).await;
            }
        });
    }
}

/// The webhooks Freshdesk's rules post for `what` (see [`FakeFreshdesk::fire`]): the URL, the
/// custom headers and the rendered body of each. `applied`: the change is already on the ticket
/// (a `PUT` made it), from this value, so only `updated_at` moves.
fn rule_calls(
    st: &mut State,
    what: Happening,
    applied: Option<i64>,
) -> Vec<(String, Map<String, Value>, String)> {
    let ticket = match what {
        Happening::Created { ticket }
        | Happening::Status { ticket, .. }
        | Happening::Priority { ticket, .. }
        | Happening::Note { ticket, .. } => ticket,
    };
    let Some(before) = st.tickets.get(&ticket).cloned() else {
        return Vec::new();
    };
    let code =
        |k: &str| applied.unwrap_or_else(|| before.get(k).and_then(Value::as_i64).unwrap_or(0));
    // (rule type, changed field, from, to, triggered_event, performer)
    let (ty, change, triggered, by) = match what {
        Happening::Created { .. } => (1, None, "{ticket_action:created}".to_owned(), None),
        Happening::Status { to, by, .. } => {
            let from = code("status");
            (
                4,
                Some(("status", from, to)),
                format!("{{status:{{from:{from},to:{to}}}}}"),
                Some(by),
            )
        }
        Happening::Priority { to, by, .. } => {
            let from = code("priority");
            (
                4,
                Some(("priority", from, to)),
                format!("{{priority:{{from:{from},to:{to}}}}}"),
                Some(by),
            )
        }
        Happening::Note { private, by, .. } => {
            let kind = if private { "private" } else { "public" };
            (4, None, format!("{{note_type:{kind}}}"), Some(by))
        }
    };
    if let Some((field, _, to)) = change {
        // A changed ticket's `updated_at` moves (a note is assumed not to move it:
        // whether Freshdesk touches the ticket for a note is unconfirmed).
        st.clock += 60;
        let at = format!(
            "2026-11-28 10:{:02}:{:02} UTC",
            (st.clock / 60) % 60,
            st.clock % 60
        );
        if let Some(t) = st.tickets.get_mut(&ticket).and_then(Value::as_object_mut) {
            if applied.is_none() {
                t.insert(field.into(), json!(to));
            }
            t.insert("updated_at".into(), json!(at));
        }
    }
    let Some(t) = st.tickets.get(&ticket).cloned() else {
        return Vec::new();
    };
    let requester = t
        .get("requester_id")
        .and_then(Value::as_i64)
        .and_then(|r| st.contacts.get(&r))
        .cloned()
        .unwrap_or(Value::Null);
    // `{{event_performer.id}}`: the doer's user id, absent for the System
    // (freshconsult `Va::Webhook::Util#substitute_placeholders_in_format` adds
    // `event_performer` only `if doer.present?`; `UserDrop#id`). A new ticket's doer is
    // taken to be its requester.
    let performer = match by {
        Some(By::Us) => AGENT_ID.to_string(),
        Some(By::Agent) => AGENTS[0].to_string(),
        Some(By::System) => String::new(),
        Some(By::Requester) | None => t
            .get("requester_id")
            .and_then(Value::as_i64)
            .map(|r| r.to_string())
            .unwrap_or_default(),
    };
    let mut candidates: Vec<&Value> = st
        .rules
        .iter()
        .filter(|((rt, _), _)| *rt == ty)
        .map(|(_, r)| r)
        .filter(|r| truthy(r.get("active")))
        .filter(|r| conditions_hold(r.get("conditions"), &t))
        .filter(|r| {
            ty == 1
                || (performer_matches(r.get("performer"), by)
                    && events_match(r.get("events"), what, change))
        })
        .collect();
    candidates.sort_by_key(|r| {
        r.get("position")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX)
    });
    if ty == 1 && st.first_match {
        candidates.truncate(1);
    }
    candidates
        .into_iter()
        .flat_map(|r| {
            r.get("actions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|a| a.get("field_name").and_then(Value::as_str) == Some("trigger_webhook"))
        .map(|a| {
            let url = a
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let headers = a
                .get("custom_headers")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let content = a.get("content").cloned().unwrap_or(Value::Null);
            let body = render(&content, &t, &requester, &triggered, &performer).to_string();
            (url, headers, body)
        })
        .collect()
}

/// Posts the webhooks [`rule_calls`] made, in order; the answers' statuses (0: no answer).
async fn post_calls(calls: Vec<(String, Map<String, Value>, String)>) -> Vec<u16> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for (url, headers, body) in calls {
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in &headers {
            if let Some(v) = v.as_str() {
                req = req.header(k.as_str(), v);
            }
        }
        out.push(req.send().await.map(|r| r.status().as_u16()).unwrap_or(0));
    }
    out
}

/// Inserts rule `id` of type `ty` at `position` (1 = first; `None` = last), moving the rules at
/// and below it down one, as Freshdesk's ordered rules do.
fn place(st: &mut State, ty: u8, id: i64, mut rule: Value, position: Option<i64>) {
    let count = st
        .rules
        .keys()
        .filter(|(t, i)| *t == ty && *i != id)
        .count() as i64;
    let at = position.map_or(count + 1, |p| p.clamp(1, count + 1));
    for ((t, i), r) in st.rules.iter_mut() {
        if *t == ty && *i != id {
            let p = r
                .get("position")
                .and_then(Value::as_i64)
                .unwrap_or(i64::MAX);
            if p >= at {
                r["position"] = json!(p.saturating_add(1));
            }
        }
    }
    rule["position"] = json!(at);
    st.rules.insert((ty, id), rule);
}

/// `true`, `"true"`.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// A value as text, numbers and strings alike (`4` and `"4"` are the same to Freshdesk).
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether a rule's condition sets hold for ticket `t`: every set (or any, with `operator`
/// `OR`); within a set, all properties (`match_type: all`) or any.
fn conditions_hold(conditions: Option<&Value>, t: &Value) -> bool {
    let Some(sets) = conditions.and_then(Value::as_array) else {
        return false;
    };
    let set_holds = |set: &Value| {
        let props: Vec<&Value> = set
            .get("properties")
            .and_then(Value::as_array)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        let holds = |p: &&Value| property_holds(p, t);
        match set.get("match_type").and_then(Value::as_str) {
            Some("any") => props.iter().any(holds),
            _ => !props.is_empty() && props.iter().all(holds),
        }
    };
    !sets.is_empty() && sets.iter().all(set_holds)
}

fn property_holds(p: &Value, t: &Value) -> bool {
    let field = p.get("field_name").and_then(Value::as_str).unwrap_or("");
    let key = if field == "ticket_type" {
        "type"
    } else {
        field
    };
    let Some(actual) = t.get(key).map(as_text) else {
        return false;
    };
    let values: Vec<String> = match p.get("value") {
        Some(Value::Array(a)) => a.iter().map(as_text).collect(),
        Some(v) => vec![as_text(v)],
        None => Vec::new(),
    };
    match p.get("operator").and_then(Value::as_str) {
        Some("in" | "is" | "is_any_of") => values.contains(&actual),
        Some("not_in" | "is_not" | "is_none_of") => !values.contains(&actual),
        // An operator the fake does not know never holds (strict, like a rule Freshdesk
        // refuses).
        _ => false,
    }
}

/// Whether a rule's performer covers `by` (1 agent, 2 requester, 3 either, 4 System).
fn performer_matches(performer: Option<&Value>, by: Option<By>) -> bool {
    let ty = performer.and_then(|p| p.get("type")).map(as_text);
    matches!(
        (ty.as_deref(), by),
        (Some("1" | "3"), Some(By::Agent | By::Us))
            | (Some("2" | "3"), Some(By::Requester))
            | (Some("4"), Some(By::System))
    )
}

/// Whether one of a rule's events describes `what` (`--` matches any value).
fn events_match(events: Option<&Value>, what: Happening, change: Option<(&str, i64, i64)>) -> bool {
    let Some(events) = events.and_then(Value::as_array) else {
        return false;
    };
    let any_or =
        |v: Option<&Value>, actual: &str| v.map(as_text).is_some_and(|x| x == "--" || x == actual);
    events.iter().any(|e| {
        let field = e.get("field_name").and_then(Value::as_str).unwrap_or("");
        match (what, change) {
            (Happening::Note { private, .. }, _) => {
                field == "note_type"
                    && any_or(e.get("value"), if private { "private" } else { "public" })
            }
            (_, Some((changed, from, to))) => {
                field == changed
                    && any_or(e.get("from"), &from.to_string())
                    && any_or(e.get("to"), &to.to_string())
            }
            _ => false,
        }
    })
}

/// A rule as the automation API echoes it (see the module docs): numbers in `conditions`,
/// `events` and `performer` as strings, header values not echoed, the webhook body as a JSON
/// string, read-only keys added.
fn echoed(rule: &Value) -> Value {
    fn stringify(v: &Value) -> Value {
        match v {
            Value::Number(n) => Value::String(n.to_string()),
            Value::Array(a) => Value::Array(a.iter().map(stringify).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), stringify(v))).collect())
            }
            other => other.clone(),
        }
    }
    let mut out = rule.clone();
    if let Some(m) = out.as_object_mut() {
        for k in ["conditions", "events", "performer"] {
            if let Some(v) = m.get(k).map(stringify) {
                m.insert(k.into(), v);
            }
        }
        m.insert("last_updated_by".into(), json!(AGENT_ID));
        m.insert("summary".into(), json!({}));
        if let Some(actions) = m.get_mut("actions").and_then(Value::as_array_mut) {
            for a in actions.iter_mut().filter_map(Value::as_object_mut) {
                a.remove("custom_headers");
                if let Some(c) = a
                    .get("content")
                    .filter(|c| !c.is_string())
                    .map(Value::to_string)
                {
                    a.insert("content".into(), Value::String(c));
                }
            }
        }
    }
    out
}

/// Renders Freshdesk placeholders in every string of `content`.
fn render(
    content: &Value,
    t: &Value,
    requester: &Value,
    triggered: &str,
    performer: &str,
) -> Value {
    match content {
        Value::String(s) => {
            let text = |v: Option<&Value>| match v {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            };
            let code = |k: &str| t.get(k).and_then(Value::as_i64).unwrap_or(0);
            let tags = t
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let id = text(t.get("id"));
            let pairs = [
                ("{{triggered_event}}", triggered.to_owned()),
                ("{{ticket.id}}", id.clone()),
                ("{{ticket.modified_on}}", text(t.get("updated_at"))),
                ("{{ticket.subject}}", text(t.get("subject"))),
                (
                    "{{ticket.url}}",
                    format!("https://acme.freshdesk.com/helpdesk/tickets/{id}"),
                ),
                ("{{ticket.status}}", status_name(code("status"))),
                ("{{ticket.status_id}}", code("status").to_string()),
                (
                    "{{ticket.priority}}",
                    name_of(super::PRIORITY_CODES, code("priority")),
                ),
                (
                    "{{ticket.source}}",
                    name_of(super::SOURCE_CODES, code("source")),
                ),
                ("{{ticket.ticket_type}}", text(t.get("type"))),
                ("{{ticket.tags}}", tags),
                ("{{ticket.requester.name}}", text(requester.get("name"))),
                ("{{ticket.requester.email}}", text(requester.get("email"))),
                ("{{ticket.agent.name}}", String::new()),
                ("{{ticket.agent.email}}", String::new()),
                ("{{event_performer.id}}", performer.to_owned()),
            ];
            let mut out = s.clone();
            for (k, v) in pairs {
                out = out.replace(k, &v);
            }
            Value::String(out)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render(v, t, requester, triggered, performer)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| render(v, t, requester, triggered, performer))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `feedback_widget` → `Feedback Widget`, as Freshdesk displays it.
fn name_of(codes: &[(&str, i64)], code: i64) -> String {
    codes
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| {
            n.split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().chain(c).collect::<String>())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn status_name(code: i64) -> String {
    CUSTOM_STATUSES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| name_of(super::STATUS_CODES, code))
}

/// The endpoints the fake covers, as an OpenAPI document: methods, paths, query parameters and
/// closed body schemas (written from the platform notes; Freshdesk publishes none).
pub fn api_description() -> Value {
    let s = |t: &str| json!({ "type": t });
    let props = |names: &[(&str, &str)]| -> Map<String, Value> {
        names.iter().map(|(n, t)| ((*n).to_owned(), s(t))).collect()
    };
    let ticket_fields: &[(&str, &str)] = &[
        ("subject", "string"),
        ("description", "string"),
        ("email", "string"),
        ("requester_id", "integer"),
        ("phone", "string"),
        ("name", "string"),
        ("facebook_id", "string"),
        ("twitter_id", "string"),
        ("unique_external_id", "string"),
        ("status", "integer"),
        ("priority", "integer"),
        ("source", "integer"),
        ("type", "string"),
        ("responder_id", "integer"),
        ("group_id", "integer"),
        ("company_id", "integer"),
        ("product_id", "integer"),
        ("tags", "array"),
        ("cc_emails", "array"),
        ("due_by", "string"),
        ("fr_due_by", "string"),
        ("custom_fields", "object"),
    ];
    let update_fields: Vec<(&str, &str)> = ticket_fields
        .iter()
        .copied()
        .filter(|(n, _)| !matches!(*n, "cc_emails"))
        .collect();
    let closed = |p: Map<String, Value>, required: &[&str]| json!({ "type": "object", "additionalProperties": false, "properties": p, "required": required });
    let body = |schema: &str| json!({ "parameters": [{ "in": "body", "name": "body", "schema": { "$ref": format!("#/definitions/{schema}") } }] });
    let paged = json!({ "parameters": [
        { "in": "query", "name": "page" }, { "in": "query", "name": "per_page" }
    ]});
    let rule_fields = props(&[
        ("name", "string"),
        ("description", "string"),
        ("position", "integer"),
        ("active", "boolean"),
        ("performer", "object"),
        ("events", "array"),
        ("conditions", "array"),
        ("operator", "string"),
        ("actions", "array"),
    ]);
    json!({
        "swagger": "2.0",
        "basePath": "/api/v2",
        "definitions": {
            "TicketCreate": closed(props(ticket_fields), &["subject", "description"]),
            "TicketUpdate": closed(props(&update_fields), &[]),
            "Note": closed(props(&[("body", "string"), ("private", "boolean"), ("incoming", "boolean"),
                ("notify_emails", "array"), ("user_id", "integer")]), &["body"]),
            "Reply": closed(props(&[("body", "string"), ("cc_emails", "array"), ("bcc_emails", "array"),
                ("from_email", "string"), ("user_id", "integer")]), &["body"]),
            "TimeEntry": closed(props(&[("time_spent", "string"), ("note", "string"), ("billable", "boolean"),
                ("agent_id", "integer"), ("timer_running", "boolean"), ("executed_at", "string"),
                ("start_time", "string")]), &[]),
            "Contact": closed(props(&[("name", "string"), ("email", "string"), ("phone", "string"),
                ("mobile", "string"), ("twitter_id", "string"), ("unique_external_id", "string"),
                ("company_id", "integer"), ("job_title", "string"), ("description", "string"),
                ("language", "string"), ("time_zone", "string"), ("tags", "array"),
                ("custom_fields", "object")]), &["name"]),
            "BulkUpdate": closed(
                [("bulk_action".to_owned(), closed(
                    [("ids".to_owned(), s("array")),
                     ("properties".to_owned(), json!({ "$ref": "#/definitions/TicketUpdate" })),
                     ("reply".to_owned(), s("object"))].into_iter().collect(),
                    &["ids"]))].into_iter().collect(),
                &["bulk_action"]),
            "RuleCreate": closed(rule_fields.clone(), &["name", "conditions", "actions"]),
            "RuleUpdate": closed(rule_fields, &[]),
        },
        "paths": {
            "/agents/me": { "get": {} },
            "/tickets": { "post": body("TicketCreate") },
            "/tickets/bulk_update": { "post": body("BulkUpdate") },
            "/tickets/{id}": { "get": {}, "put": body("TicketUpdate") },
            "/tickets/{id}/notes": { "post": body("Note") },
            "/tickets/{id}/reply": { "post": body("Reply") },
            "/tickets/{id}/time_entries": { "post": body("TimeEntry") },
            // "List All Contacts … Filter by email" (Freshdesk API v2 reference, Contacts).
            "/contacts": {
                "post": body("Contact"),
                "get": { "parameters": [
                    { "in": "query", "name": "email" }, { "in": "query", "name": "page" },
                    { "in": "query", "name": "per_page" }
                ]}
            },
            "/jobs/{id}": { "get": {} },
            "/automations/{type}/rules": { "get": paged, "post": body("RuleCreate") },
            "/automations/{type}/rules/{id}": { "get": {}, "put": body("RuleUpdate"), "delete": {} },
        }
    })
}

/// The fake's [`ApiSpec`], parsed once.
pub fn spec() -> &'static ApiSpec {
    static SPEC: std::sync::OnceLock<ApiSpec> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| ApiSpec::parse("freshdesk (fake)", &api_description()))
}

/// The route key of a request: its path with ids replaced (`PUT /api/v2/tickets/{id}`).
pub fn route(r: &Recorded) -> String {
    let segs: Vec<String> = r
        .segments()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let prev = r.segments().get(i.wrapping_sub(1)).copied().unwrap_or("");
            if s.parse::<i64>().is_ok() || prev == "jobs" {
                if prev == "automations" {
                    "{type}".to_owned()
                } else {
                    "{id}".to_owned()
                }
            } else {
                (*s).to_owned()
            }
        })
        .collect();
    format!("{} /{}", r.method, segs.join("/"))
}

fn fd_error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(status, &json!({ "code": code, "message": message }))
}

fn validation(status: StatusCode, errors: Vec<(String, String, &str)>) -> Resp {
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|(f, m, c)| json!({ "field": f, "message": m, "code": c }))
        .collect();
    json_response(
        status,
        &json!({ "description": "Validation failed", "errors": errors }),
    )
}

fn invalid(field: &str, message: &str) -> Resp {
    validation(
        StatusCode::BAD_REQUEST,
        vec![(field.to_owned(), message.to_owned(), "invalid_value")],
    )
}

fn handle(state: &Mutex<State>, r: &Recorded) -> Resp {
    let mut st = lock(state);
    if st.helpdesk_missing {
        return text_response(
            StatusCode::NOT_FOUND,
            "<html><body>There is no helpdesk here.</body></html>",
        );
    }
    let authorized = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| up.split_once(':').map(|(u, _)| u == st.api_key));
    if authorized != Some(true) {
        return fd_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "You have to be logged in to perform this action.",
        );
    }
    if st.suspended {
        return fd_error(
            StatusCode::FORBIDDEN,
            "account_suspended",
            "Your account has been suspended.",
        );
    }
    let route = route(r);
    if st.agent_only && route.contains("/automations/") {
        return fd_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "You are not authorized to perform this action.",
        );
    }
    let resp = match st.failures.take(&route) {
        Some(Failure::RateLimited { retry_after_secs }) => with_header(
            fd_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "You have exceeded the limit of requests per minute",
            ),
            "retry-after",
            &retry_after_secs.to_string(),
        ),
        Some(Failure::ServerError) => fd_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "We're sorry, but something went wrong.",
        ),
        Some(Failure::Unavailable { retry_after_secs }) => with_header(
            fd_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service temporarily unavailable",
            ),
            "retry-after",
            &retry_after_secs.to_string(),
        ),
        None if st.remaining == 0 => with_header(
            fd_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "You have exceeded the limit of requests per minute",
            ),
            "retry-after",
            "60",
        ),
        None => {
            st.remaining -= 1;
            serve(&mut st, r, &route)
        }
    };
    let resp = with_header(resp, "x-ratelimit-total", &st.total.to_string());
    let resp = with_header(resp, "x-ratelimit-remaining", &st.remaining.to_string());
    with_header(resp, "x-ratelimit-used-currentrequest", "1")
}

/// Checks the request against the description, then performs it.
fn serve(st: &mut State, r: &Recorded, route: &str) -> Resp {
    let has_body = matches!(r.method, Method::POST | Method::PUT);
    let body = if has_body {
        let ct = r.header("content-type").unwrap_or("");
        if !ct.starts_with("application/json") {
            return fd_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_content_type",
                "Content-Type header should have application/json",
            );
        }
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => {
                return fd_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "Request body has invalid json format",
                );
            }
        }
    } else {
        None
    };
    if !spec().describes(&r.method, &r.path) {
        return empty_response(StatusCode::NOT_FOUND);
    }
    if let Err(errors) = spec().check(&r.method, &r.path, &r.query, body.as_ref(), &[]) {
        let errors = errors
            .into_iter()
            .map(|e| {
                let (field, code, msg) = if let Some(f) = between(&e, "unknown property `", "`")
                    .or_else(|| between(&e, "unknown query parameter `", "`"))
                {
                    (f, "invalid_field", "Unexpected/invalid field in request")
                } else if let Some(f) = between(&e, "missing required property `", "`") {
                    (f, "missing_field", "It should be present")
                } else {
                    (String::new(), "invalid_value", "Invalid request")
                };
                (field, msg.to_owned(), code)
            })
            .collect();
        return validation(StatusCode::BAD_REQUEST, errors);
    }
    let body = body.unwrap_or(Value::Null);
    let segs = r.segments();
    let id_at = |i: usize| segs.get(i).and_then(|s| s.parse::<i64>().ok());
    match route {
        "GET /api/v2/agents/me" => json_response(
            StatusCode::OK,
            &json!({
                "available": true, "occasional": false, "id": AGENT_ID, "ticket_scope": 1,
                "signature": null, "created_at": TS, "updated_at": TS, "available_since": null,
                "contact": { "active": true, "email": AGENT_EMAIL, "job_title": null,
                             "language": "en", "name": AGENT_NAME, "time_zone": "London" },
            }),
        ),
        "POST /api/v2/tickets" => create_ticket(st, &body),
        "GET /api/v2/tickets/{id}" => match id_at(3).and_then(|id| st.tickets.get(&id)) {
            Some(t) => json_response(StatusCode::OK, t),
            None => empty_response(StatusCode::NOT_FOUND),
        },
        "PUT /api/v2/tickets/{id}" => {
            let id = id_at(3).unwrap_or(0);
            if let Err(resp) = check_ticket_values(st, &body) {
                return resp;
            }
            let Some(t) = st.tickets.get_mut(&id) else {
                return empty_response(StatusCode::NOT_FOUND);
            };
            let code = |t: &Value, k: &str| t.get(k).and_then(Value::as_i64).unwrap_or(0);
            let before = (code(t, "status"), code(t, "priority"));
            apply(t, &body);
            let after = (code(t, "status"), code(t, "priority"));
            let resp = json_response(StatusCode::OK, t);
            // Freshdesk runs its ticket-update rules on a change its API made too (the API
            // key's agent made it): when the fake delivers updates.
            if let Some(tx) = &st.updates {
                if before.0 != after.0 {
                    let what = Happening::Status {
                        ticket: id,
                        to: after.0,
                        by: By::Us,
                    };
                    let _ = tx.send((what, before.0));
                }
                if before.1 != after.1 {
                    let what = Happening::Priority {
                        ticket: id,
                        to: after.1,
                        by: By::Us,
                    };
                    let _ = tx.send((what, before.1));
                }
            }
            resp
        }
        "POST /api/v2/tickets/{id}/notes" => {
            let id = id_at(3).unwrap_or(0);
            if !st.tickets.contains_key(&id) {
                return empty_response(StatusCode::NOT_FOUND);
            }
            for e in strings(body.get("notify_emails")) {
                if e != AGENT_EMAIL {
                    return invalid("notify_emails", "There are no agents with these emails");
                }
            }
            st.seq += 1;
            let text = body.get("body").and_then(Value::as_str).unwrap_or("");
            let note = json!({
                "id": st.seq, "body": text, "body_text": strip_tags(text),
                "incoming": body.get("incoming").cloned().unwrap_or(json!(false)),
                "private": body.get("private").cloned().unwrap_or(json!(true)),
                "user_id": body.get("user_id").cloned().unwrap_or(json!(AGENT_ID)),
                "notify_emails": body.get("notify_emails").cloned().unwrap_or(json!([])),
                "source": 2, "ticket_id": id, "created_at": TS, "updated_at": TS,
            });
            st.notes.push(note.clone());
            json_response(StatusCode::CREATED, &note)
        }
        "POST /api/v2/tickets/{id}/reply" => {
            let id = id_at(3).unwrap_or(0);
            if !st.tickets.contains_key(&id) {
                return empty_response(StatusCode::NOT_FOUND);
            }
            for key in ["cc_emails", "bcc_emails"] {
                if strings(body.get(key)).iter().any(|e| !e.contains('@')) {
                    return invalid(
                        key,
                        "It should contain elements that are valid email addresses",
                    );
                }
            }
            st.seq += 1;
            let text = body.get("body").and_then(Value::as_str).unwrap_or("");
            let reply = json!({
                "id": st.seq, "body": text, "body_text": strip_tags(text), "ticket_id": id,
                "user_id": body.get("user_id").cloned().unwrap_or(json!(AGENT_ID)),
                "from_email": body.get("from_email").cloned().unwrap_or(json!("support@acme.freshdesk.com")),
                "cc_emails": body.get("cc_emails").cloned().unwrap_or(json!([])),
                "bcc_emails": body.get("bcc_emails").cloned().unwrap_or(json!([])),
                "created_at": TS, "updated_at": TS,
            });
            st.replies.push(reply.clone());
            json_response(StatusCode::CREATED, &reply)
        }
        "POST /api/v2/tickets/{id}/time_entries" => {
            let id = id_at(3).unwrap_or(0);
            if !st.tickets.contains_key(&id) {
                return empty_response(StatusCode::NOT_FOUND);
            }
            time_entry(st, id, &body)
        }
        "POST /api/v2/contacts" => create_contact(st, &body),
        // Contacts whose primary email is `email` (a filter, not the search index).
        "GET /api/v2/contacts" => {
            let email = r.query_param("email").unwrap_or("").to_ascii_lowercase();
            let found: Vec<Value> = st
                .contacts
                .values()
                .filter(|c| {
                    email.is_empty()
                        || c.get("email")
                            .and_then(Value::as_str)
                            .is_some_and(|e| e.eq_ignore_ascii_case(&email))
                })
                .cloned()
                .collect();
            json_response(StatusCode::OK, &Value::Array(found))
        }
        "POST /api/v2/tickets/bulk_update" => bulk_update(st, &body),
        "GET /api/v2/jobs/{id}" => {
            let job = segs.get(3).copied().unwrap_or("").to_owned();
            match st.jobs.get_mut(&job) {
                Some((polls, done)) if *polls == 0 => json_response(StatusCode::OK, done),
                Some((polls, _)) => {
                    *polls -= 1;
                    json_response(
                        StatusCode::OK,
                        &json!({ "id": job, "status": "in progress", "progress": 0, "data": [] }),
                    )
                }
                None => empty_response(StatusCode::NOT_FOUND),
            }
        }
        _ if route.starts_with(&format!("{} /api/v2/automations/", r.method)) => {
            rules(st, r, &body)
        }
        _ => empty_response(StatusCode::NOT_FOUND),
    }
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(rest[..rest.find(end)?].to_owned())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn is_email(e: &str) -> bool {
    e.split_once('@')
        .is_some_and(|(l, h)| !l.is_empty() && h.contains('.'))
}

/// Status, priority, source, responder, group and email values, as Freshdesk checks them.
fn check_ticket_values(st: &State, body: &Value) -> Result<(), Resp> {
    let int = |k: &str| body.get(k).filter(|v| !v.is_null());
    if let Some(v) = int("status") {
        let ok = v.as_i64().is_some_and(|s| {
            super::STATUS_CODES.iter().any(|(_, c)| *c == s)
                || CUSTOM_STATUSES.iter().any(|(c, _)| *c == s)
        });
        if !ok {
            return Err(invalid(
                "status",
                "It should be one of these values: '2,3,4,5,6,7'",
            ));
        }
    }
    if let Some(v) = int("priority")
        && !v.as_i64().is_some_and(|p| (1..=4).contains(&p))
    {
        return Err(invalid(
            "priority",
            "It should be one of these values: '1,2,3,4'",
        ));
    }
    if let Some(v) = int("source")
        && !v
            .as_i64()
            .is_some_and(|s| super::SOURCE_CODES.iter().any(|(_, c)| *c == s))
    {
        return Err(invalid(
            "source",
            "It should be one of these values: '1,2,3,7,9,10'",
        ));
    }
    if let Some(v) = int("responder_id")
        && !v
            .as_i64()
            .is_some_and(|a| a == AGENT_ID || AGENTS.contains(&a))
    {
        return Err(invalid(
            "responder_id",
            "There is no agent matching the given responder_id",
        ));
    }
    if let Some(v) = int("group_id")
        && !v.as_i64().is_some_and(|g| GROUPS.contains(&g))
    {
        return Err(invalid(
            "group_id",
            "There is no group matching the given group_id",
        ));
    }
    if let Some(e) = body.get("email").and_then(Value::as_str)
        && !is_email(e)
    {
        return Err(invalid("email", "It should be a valid email address"));
    }
    if let Some(r) = int("requester_id")
        && !r.as_i64().is_some_and(|r| st.contacts.contains_key(&r))
    {
        return Err(invalid(
            "requester_id",
            "There is no contact matching the given requester_id",
        ));
    }
    Ok(())
}

fn apply(t: &mut Value, body: &Value) {
    if let (Some(t), Some(b)) = (t.as_object_mut(), body.as_object()) {
        for (k, v) in b {
            t.insert(k.clone(), v.clone());
        }
        t.insert("updated_at".into(), json!("2026-11-28T10:05:00Z"));
    }
}

fn create_ticket(st: &mut State, body: &Value) -> Resp {
    if let Err(resp) = check_ticket_values(st, body) {
        return resp;
    }
    let has = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    if ![
        "requester_id",
        "email",
        "phone",
        "facebook_id",
        "twitter_id",
        "unique_external_id",
    ]
    .iter()
    .any(|k| has(k))
    {
        return validation(
            StatusCode::BAD_REQUEST,
            vec![(
                "requester_id".into(),
                "Please fill at least 1 of requester_id, phone, email, twitter_id, facebook_id, unique_external_id attributes".into(),
                "missing_field",
            )],
        );
    }
    if has("phone") && !has("email") && !has("name") && !has("requester_id") {
        return validation(
            StatusCode::BAD_REQUEST,
            vec![(
                "name".into(),
                "It should be a/an String".into(),
                "missing_field",
            )],
        );
    }
    let requester = match body.get("requester_id").and_then(Value::as_i64) {
        Some(r) => r,
        None => {
            let email = body.get("email").and_then(Value::as_str).map(str::to_owned);
            let known = email.as_deref().and_then(|e| {
                st.contacts
                    .values()
                    .find(|c| c.get("email").and_then(Value::as_str) == Some(e))
                    .and_then(|c| c.get("id").and_then(Value::as_i64))
            });
            match known {
                Some(id) => id,
                None => {
                    st.seq += 1;
                    let id = st.seq;
                    st.contacts.insert(
                        id,
                        json!({ "id": id, "name": body.get("name").cloned().unwrap_or(json!(email.clone().unwrap_or_default())),
                                "email": email, "phone": body.get("phone"), "active": false,
                                "created_at": TS, "updated_at": TS }),
                    );
                    id
                }
            }
        }
    };
    st.seq += 1;
    let id = st.seq;
    let mut t = json!({
        "id": id, "status": 2, "priority": 1, "source": 2, "requester_id": requester,
        "responder_id": null, "group_id": null, "type": null, "tags": [], "cc_emails": [],
        "custom_fields": {}, "fr_escalated": false, "spam": false, "is_escalated": false,
        "created_at": TS, "updated_at": TS,
    });
    apply(&mut t, body);
    if let Some(m) = t.as_object_mut() {
        for k in [
            "email",
            "phone",
            "name",
            "facebook_id",
            "twitter_id",
            "unique_external_id",
        ] {
            m.remove(k);
        }
        m.insert("updated_at".into(), json!(TS));
    }
    st.tickets.insert(id, t.clone());
    json_response(StatusCode::CREATED, &t)
}

fn time_entry(st: &mut State, ticket: i64, body: &Value) -> Resp {
    let spent = body.get("time_spent").and_then(Value::as_str);
    if let Some(s) = spent {
        let ok = s.split_once(':').is_some_and(|(h, m)| {
            h.parse::<u32>().is_ok() && m.len() == 2 && m.parse::<u32>().is_ok_and(|m| m < 60)
        });
        if !ok {
            return invalid("time_spent", "It should be in the 'hh:mm' format");
        }
    }
    let running_given = body.get("timer_running").and_then(Value::as_bool);
    if running_given == Some(false) && body.get("start_time").is_some() {
        return invalid(
            "start_time",
            "Should not be given when timer_running is false",
        );
    }
    let agent = body
        .get("agent_id")
        .and_then(Value::as_i64)
        .unwrap_or(AGENT_ID);
    if agent != AGENT_ID && !AGENTS.contains(&agent) {
        return invalid("agent_id", "There is no agent matching the given agent_id");
    }
    // With neither time spent nor timer_running, Freshdesk starts a timer.
    let running = running_given.unwrap_or(spent.is_none());
    if running
        && st.time_entries.iter().any(|e| {
            e.get("agent_id").and_then(Value::as_i64) == Some(agent)
                && e.get("timer_running") == Some(&json!(true))
        })
    {
        return invalid("timer_running", "The agent already has a running timer");
    }
    st.seq += 1;
    let entry = json!({
        "id": st.seq, "billable": body.get("billable").cloned().unwrap_or(json!(true)),
        "note": body.get("note").cloned().unwrap_or(json!("")),
        "timer_running": running, "agent_id": agent, "ticket_id": ticket,
        "time_spent": spent.unwrap_or("00:00"),
        "executed_at": body.get("executed_at").cloned().unwrap_or(json!(TS)),
        "start_time": body.get("start_time").cloned().unwrap_or(json!(TS)),
        "created_at": TS, "updated_at": TS,
    });
    st.time_entries.push(entry.clone());
    json_response(StatusCode::CREATED, &entry)
}

fn create_contact(st: &mut State, body: &Value) -> Resp {
    let has = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if ![
        "email",
        "phone",
        "mobile",
        "twitter_id",
        "unique_external_id",
    ]
    .iter()
    .any(|k| has(k))
    {
        return validation(
            StatusCode::BAD_REQUEST,
            vec![(
                "email".into(),
                "Please fill at least 1 of email, mobile, phone, twitter_id, unique_external_id fields".into(),
                "missing_field",
            )],
        );
    }
    if let Some(e) = body.get("email").and_then(Value::as_str) {
        if !is_email(e) {
            return invalid("email", "It should be a valid email address");
        }
        if st
            .contacts
            .values()
            .any(|c| c.get("email").and_then(Value::as_str) == Some(e))
        {
            return validation(
                StatusCode::CONFLICT,
                vec![(
                    "email".into(),
                    "It should be a unique value".into(),
                    "duplicate_value",
                )],
            );
        }
    }
    st.seq += 1;
    let id = st.seq;
    let mut c = json!({ "id": id, "active": false, "created_at": TS, "updated_at": TS });
    apply(&mut c, body);
    if let Some(m) = c.as_object_mut() {
        m.insert("updated_at".into(), json!(TS));
    }
    st.contacts.insert(id, c.clone());
    json_response(StatusCode::CREATED, &c)
}

fn bulk_update(st: &mut State, body: &Value) -> Resp {
    let action = &body["bulk_action"];
    let ids: Vec<i64> = action
        .get("ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return invalid("ids", "It should not be blank");
    }
    let props = action.get("properties").cloned().unwrap_or(json!({}));
    if let Err(resp) = check_ticket_values(st, &props) {
        return resp;
    }
    let mut data = Vec::new();
    for id in &ids {
        match st.tickets.get_mut(id) {
            Some(t) => {
                apply(t, &props);
                data.push(json!({ "id": id, "success": true }));
            }
            None => data.push(json!({ "id": id, "success": false, "message": "Ticket not found" })),
        }
    }
    st.seq += 1;
    let job = format!("{:032x}", st.seq);
    if !st.job_entries {
        data.clear();
    }
    let done = json!({ "id": job, "status": st.job_status, "progress": 100, "data": data,
                       "created_at": TS, "updated_at": TS });
    let polls = st.job_polls;
    st.jobs.insert(job.clone(), (polls, done));
    json_response(
        StatusCode::ACCEPTED,
        &json!({ "job_id": job, "href": format!("https://acme.freshdesk.com/api/v2/jobs/{job}") }),
    )
}

fn rules(st: &mut State, r: &Recorded, body: &Value) -> Resp {
    let segs = r.segments();
    let Some(ty) = segs
        .get(3)
        .and_then(|s| s.parse::<u8>().ok())
        .filter(|t| [1, 3, 4].contains(t))
    else {
        return empty_response(StatusCode::NOT_FOUND);
    };
    let id = segs.get(5).and_then(|s| s.parse::<i64>().ok());
    let check = |b: &Value| -> Result<(), Resp> {
        if ty != 4 {
            for k in ["performer", "events"] {
                if b.get(k).is_some() {
                    return Err(validation(
                        StatusCode::BAD_REQUEST,
                        vec![(
                            k.to_owned(),
                            format!("`{k}` is allowed only in ticket update rules (type 4)"),
                            "invalid_field",
                        )],
                    ));
                }
            }
        }
        for a in b
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if a.get("field_name").and_then(Value::as_str) == Some("trigger_webhook") {
                let url_ok = a
                    .get("url")
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"));
                if !url_ok {
                    return Err(invalid("url", "It should be a valid URL"));
                }
                if !matches!(
                    a.get("request_type").and_then(Value::as_str),
                    Some("GET" | "POST" | "PUT" | "PATCH" | "DELETE")
                ) {
                    return Err(invalid(
                        "request_type",
                        "It should be one of GET, POST, PUT, PATCH, DELETE",
                    ));
                }
            }
        }
        Ok(())
    };
    match (r.method.clone(), id) {
        (Method::GET, None) => {
            let page = r
                .query_param("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let per = r
                .query_param("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let mut all: Vec<&Value> = st
                .rules
                .iter()
                .filter(|((t, _), _)| *t == ty)
                .map(|(_, v)| v)
                .collect();
            all.sort_by_key(|r| {
                r.get("position")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MAX)
            });
            let (skip, take) = if st.ignore_paging {
                (0, usize::MAX)
            } else {
                ((page - 1) * per, per)
            };
            let page: Vec<Value> = all.into_iter().skip(skip).take(take).map(echoed).collect();
            json_response(StatusCode::OK, &Value::Array(page))
        }
        (Method::POST, None) => {
            if let Err(resp) = check(body) {
                return resp;
            }
            st.seq += 1;
            let id = st.seq;
            let mut rule = json!({ "id": id, "active": true, "outdated": false,
                                   "affected_tickets_count": 0, "created_at": TS, "updated_at": TS });
            apply(&mut rule, body);
            if let Some(f) = st.normalize_stored {
                f(&mut rule);
            }
            let position = body.get("position").and_then(Value::as_i64);
            place(st, ty, id, rule, position);
            match st.rules.get(&(ty, id)) {
                Some(rule) => json_response(StatusCode::CREATED, &echoed(rule)),
                None => empty_response(StatusCode::INTERNAL_SERVER_ERROR),
            }
        }
        (Method::GET, Some(id)) => match st.rules.get(&(ty, id)) {
            Some(rule) => json_response(StatusCode::OK, &echoed(rule)),
            None => empty_response(StatusCode::NOT_FOUND),
        },
        (Method::PUT, Some(id)) => {
            if let Err(resp) = check(body) {
                return resp;
            }
            let Some(mut rule) = st.rules.get(&(ty, id)).cloned() else {
                return empty_response(StatusCode::NOT_FOUND);
            };
            let old_position = rule.get("position").and_then(Value::as_i64);
            apply(&mut rule, body);
            if let Some(m) = rule.as_object_mut() {
                m.insert("outdated".into(), json!(false));
            }
            if let Some(f) = st.normalize_stored {
                f(&mut rule);
            }
            let position = body
                .get("position")
                .and_then(Value::as_i64)
                .or(old_position);
            if body.get("position").is_some() {
                // Take it out of the order first, then put it where it was asked to go.
                st.rules.remove(&(ty, id));
                renumber(st, ty);
            }
            place(st, ty, id, rule, position);
            match st.rules.get(&(ty, id)) {
                Some(rule) => json_response(StatusCode::OK, &echoed(rule)),
                None => empty_response(StatusCode::NOT_FOUND),
            }
        }
        (Method::DELETE, Some(id)) => match st.rules.remove(&(ty, id)) {
            Some(_) => {
                renumber(st, ty);
                empty_response(StatusCode::NO_CONTENT)
            }
            None => empty_response(StatusCode::NOT_FOUND),
        },
        _ => empty_response(StatusCode::NOT_FOUND),
    }
}

/// Numbers the rules of type `ty` 1, 2, 3… in their current order.
fn renumber(st: &mut State, ty: u8) {
    let mut order: Vec<(i64, i64)> = st
        .rules
        .iter()
        .filter(|((t, _), _)| *t == ty)
        .map(|((_, id), r)| {
            (
                r.get("position")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MAX),
                *id,
            )
        })
        .collect();
    order.sort();
    for (n, (_, id)) in order.into_iter().enumerate() {
        if let Some(r) = st.rules.get_mut(&(ty, id)) {
            r["position"] = json!(n as i64 + 1);
        }
    }
}
