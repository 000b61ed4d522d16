//! The live Trello connector: `GET /1/members/me` for checks, the six catalogued card actions
//! ([`super::actions`]), and one webhook per watched board.
//!
//! | action | calls |
//! |---|---|
//! | `create_card` | `POST /1/cards` |
//! | `update_card` | `PUT /1/cards/{id}` (only the fields given) |
//! | `move_card` | `PUT /1/cards/{id}` with `idList` (and `idBoard`, `pos`) |
//! | `add_comment` | `POST /1/cards/{id}/actions/comments` |
//! | `add_checklist` | `POST /1/checklists`, then `POST /1/checklists/{id}/checkItems` per item |
//! | `add_label` | `POST /1/cards/{id}/idLabels` (existing label) or `POST /1/cards/{id}/labels` (new one) |
//!
//! Webhooks ([`TrelloConnector`]'s `sync_webhook`): one `POST /1/webhooks` per board of
//! `[config] boards`, each with the integration's marker as its `description`. What exists is
//! read from the token's own list (`GET /1/tokens/{token}/webhooks`: Trello lists webhooks per
//! token); only webhooks carrying the marker (or recorded in the previous registration) are
//! ever changed or deleted. Trello checks the callback URL with a `HEAD` before it creates a
//! webhook, so the daemon must already be serving it: until then the creation fails as a
//! transient error and is retried by the next sync.
//!
//! Parameters are checked against the catalogue before anything is sent: an unknown name, a
//! missing required one, a value of the wrong type, an empty id, a malformed position or date
//! is [`PlatformError::Invalid`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ::http::Method;
use serde_json::{Value, json};

use super::client::{BadCredential, TrelloClient, segment};
use crate::manifest::Integration;
use crate::platforms::connector::{
    ActionCall, ActionOutput, ConnectError, Connector, Health, PlatformError, Registration,
    RegistrationOutcome, WebhookSync, WebhookTarget,
};
use crate::platforms::http;
use crate::platforms::params::{self, Params};
use crate::secrets::ResolveContext;

/// The REST API base URL unless `[endpoint] base_url` overrides it.
pub const DEFAULT_BASE_URL: &str = "https://api.trello.com/1/";

/// Timeout of one HTTP request (Trello's `HEAD` check of a callback runs inside a webhook
/// creation, so that one can take a while).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest card name, description, comment or checklist name Trello takes.
const MAX_TEXT: usize = 16_384;

/// The longest encoded comment text sent in the query string (its documented place); longer
/// text goes in a JSON body, so that no request line nears a front end's URL limit (8 KiB is
/// common).
pub const LONG_QUERY_BYTES: usize = 2_048;

/// Builds the Trello connector of `integration`: resolves `api_key` and `token` (both
/// required) and reads `boards` and `default_list` from `[config]`. The `app_secret` is not
/// needed here: the daemon verifies deliveries with it.
pub fn connect(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<Arc<dyn Connector>, ConnectError> {
    Ok(Arc::new(connect_trello(integration, ctx)?))
}

/// [`connect`], keeping the Trello type.
pub fn connect_trello(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<TrelloConnector, ConnectError> {
    let key = http::required_credential(integration, "api_key", ctx)?;
    let token = http::required_credential(integration, "token", ctx)?;
    let http_client = http::client(REQUEST_TIMEOUT)?;
    let base = http::base_url(integration, DEFAULT_BASE_URL);
    let client = TrelloClient::new(http_client, base, &key, &token)
        .map_err(|e: BadCredential| ConnectError::Client(e.to_string()))?;
    let boards = match integration.config.get("boards") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let default_list = integration
        .config
        .get("default_list")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    Ok(TrelloConnector {
        client,
        boards,
        default_list,
    })
}

/// The live Trello connector.
#[derive(Debug)]
pub struct TrelloConnector {
    client: TrelloClient,
    boards: Vec<String>,
    default_list: Option<String>,
}

/// A webhook as Trello lists it.
#[derive(Debug, Clone)]
struct Hook {
    id: String,
    id_model: String,
    callback_url: String,
    description: String,
    active: bool,
}

impl Hook {
    fn from_value(v: &Value) -> Option<Hook> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let id = s("id");
        if id.is_empty() {
            return None;
        }
        Some(Hook {
            id,
            id_model: s("idModel"),
            callback_url: s("callbackURL"),
            description: s("description"),
            active: v.get("active").and_then(Value::as_bool).unwrap_or(true),
        })
    }
}

/// Whether a board reference is a full Trello id (24 hex digits) rather than a short link.
fn is_full_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[async_trait::async_trait]
impl Connector for TrelloConnector {
    async fn probe(
        &self,
        target: &crate::platforms::probe::ProbeTarget,
    ) -> Result<Vec<crate::platforms::probe::Finding>, PlatformError> {
        super::probe::run(&self.client, &self.boards, target).await
    }

    async fn check(&self) -> Result<Health, PlatformError> {
        let m = self
            .client
            .call(
                Method::GET,
                "members/me",
                &[("fields", "id,username,fullName".into())],
                "connection check (GET /1/members/me)",
            )
            .await?;
        let s = |k: &str| m.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        let id = s("id").ok_or_else(|| PlatformError::Rejected {
            status: 200,
            detail: "GET /1/members/me: the answer has no member `id`".into(),
        })?;
        let who = match (s("username"), s("fullName")) {
            (Some(u), Some(n)) => format!("@{u} ({n}, {id})"),
            (Some(u), None) => format!("@{u} ({id})"),
            (None, _) => id.to_owned(),
        };
        Ok(Health {
            // Deliveries name who acted as `action.idMemberCreator` (the event's actor): the
            // token's member is who supportopsd acts as.
            identity: Some(id.to_owned()),
            detail: format!("authenticated as {who}"),
        })
    }

    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        // What a failure that may have reached the platform becomes for an action that
        // creates something (`RESEND` in actions.rs): never a blind retry.
        let outcome: Result<ActionOutput, PlatformError> = async {
            let spec = params::action_spec(&super::DESCRIPTOR, &call.action)?;
            let p = Params::check(spec, &call.parameters)?;
            let result = match spec.name {
                "create_card" => self.create_card(&p).await?,
                "update_card" => self.update_card(&p).await?,
                "move_card" => self.move_card(&p).await?,
                "add_comment" => self.add_comment(&p).await?,
                "add_checklist" => self.add_checklist(&p).await?,
                "add_label" => self.add_label(&p).await?,
                other => {
                    return Err(PlatformError::Invalid(format!(
                        "the trello connector cannot perform `{other}`"
                    )));
                }
            };
            Ok(ActionOutput { result })
        }
        .await;
        crate::platforms::connector::guard_resend(super::DESCRIPTOR.kind, &call.action, outcome)
    }

    async fn sync_webhook(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        if self.boards.is_empty() {
            return Err(PlatformError::Invalid(
                "trello webhooks are registered per board: `[config] boards` names none".into(),
            ));
        }
        let marker = target.marker();
        let recorded: HashSet<&str> = target
            .previous
            .iter()
            .flat_map(|p| p.ids.iter().map(String::as_str))
            .collect();
        let mut boards = Vec::with_capacity(self.boards.len());
        for b in &self.boards {
            let id = self.board_id(b).await?;
            if !boards.contains(&id) {
                boards.push(id);
            }
        }
        let live = self.list_hooks().await?;
        let ours = |h: &Hook| h.description == marker || recorded.contains(h.id.as_str());
        // Recorded webhooks that are gone: drift.
        let mut drift = recorded.iter().any(|id| !live.iter().any(|h| h.id == *id));
        let mut changed = false;
        let mut ids = Vec::with_capacity(boards.len());
        let mut kept: HashSet<String> = HashSet::new();
        for board in &boards {
            let mine: Vec<&Hook> = live
                .iter()
                .filter(|h| h.id_model == *board && ours(h))
                .collect();
            let exact = mine
                .iter()
                .find(|h| h.callback_url == target.url && h.description == marker && h.active);
            if let Some(h) = exact {
                ids.push(h.id.clone());
                kept.insert(h.id.clone());
                continue;
            }
            changed = true;
            if let Some(h) = mine.first() {
                // Ours but edited (URL, description, paused): put it back as wanted.
                if recorded.contains(h.id.as_str()) {
                    drift = true;
                }
                let id = h.id.clone();
                self.update_hook(&id, &target.url, &marker).await?;
                ids.push(id.clone());
                kept.insert(id);
                continue;
            }
            // A webhook of this token already delivering this board to our URL, made by hand:
            // Trello refuses a duplicate, so it is adopted (marked as ours).
            if let Some(h) = live
                .iter()
                .find(|h| h.id_model == *board && h.callback_url == target.url)
            {
                let id = h.id.clone();
                self.update_hook(&id, &target.url, &marker).await?;
                ids.push(id.clone());
                kept.insert(id);
                continue;
            }
            let created = self.create_hook(board, &target.url, &marker).await?;
            ids.push(created.clone());
            kept.insert(created);
        }
        // Ours on boards no longer watched, and duplicates: deleted.
        for h in live.iter().filter(|h| ours(h) && !kept.contains(&h.id)) {
            self.delete_hook(&h.id).await?;
            changed = true;
        }
        let outcome = if !changed {
            RegistrationOutcome::Unchanged
        } else {
            match target.change_outcome() {
                RegistrationOutcome::Repaired if !drift => RegistrationOutcome::Updated,
                other => other,
            }
        };
        Ok(WebhookSync::Registered {
            outcome,
            registration: Registration {
                ids,
                url: target.url.clone(),
                events: target.events.clone(),
                expires_at_ms: None,
                secret: None,
            },
        })
    }

    async fn remove_webhook(&self, target: &WebhookTarget) -> Result<usize, PlatformError> {
        let marker = target.marker();
        let recorded: HashSet<&str> = target
            .previous
            .iter()
            .flat_map(|p| p.ids.iter().map(String::as_str))
            .collect();
        let mut deleted = 0;
        for h in self.list_hooks().await? {
            if (h.description == marker || recorded.contains(h.id.as_str()))
                && self.delete_hook(&h.id).await?
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

impl TrelloConnector {
    /// The boards of `[config] boards`, as configured.
    pub fn boards(&self) -> &[String] {
        &self.boards
    }

    /// A board's full id: as given when it is one, else looked up from its short link.
    async fn board_id(&self, reference: &str) -> Result<String, PlatformError> {
        if is_full_id(reference) {
            return Ok(reference.to_owned());
        }
        let b = self
            .client
            .call(
                Method::GET,
                &format!("boards/{}", segment(reference)),
                &[("fields", "id".into())],
                &format!("board `{reference}` of `[config] boards`"),
            )
            .await?;
        b.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| PlatformError::Rejected {
                status: 200,
                detail: format!("GET /1/boards/{reference}: the answer has no `id`"),
            })
    }

    async fn list_hooks(&self) -> Result<Vec<Hook>, PlatformError> {
        let v = self
            .client
            .call(
                Method::GET,
                &self.client.token_path("webhooks"),
                &[],
                "listing the token's webhooks",
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Hook::from_value)
            .collect())
    }

    async fn create_hook(
        &self,
        board: &str,
        url: &str,
        marker: &str,
    ) -> Result<String, PlatformError> {
        let v = self
            .client
            .call(
                Method::POST,
                "webhooks",
                &[
                    ("callbackURL", url.to_owned()),
                    ("idModel", board.to_owned()),
                    ("description", marker.to_owned()),
                    ("active", "true".into()),
                ],
                &format!("creating the webhook of board {board}"),
            )
            .await?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| PlatformError::Rejected {
                status: 200,
                detail: "POST /1/webhooks: the answer has no `id`".into(),
            })
    }

    async fn update_hook(&self, id: &str, url: &str, marker: &str) -> Result<(), PlatformError> {
        self.client
            .call(
                Method::PUT,
                &format!("webhooks/{}", segment(id)),
                &[
                    ("callbackURL", url.to_owned()),
                    ("description", marker.to_owned()),
                    ("active", "true".into()),
                ],
                &format!("updating webhook {id}"),
            )
            .await
            .map(|_| ())
    }

    /// Deletes a webhook; `false` when it was already gone.
    async fn delete_hook(&self, id: &str) -> Result<bool, PlatformError> {
        match self
            .client
            .call(
                Method::DELETE,
                &format!("webhooks/{}", segment(id)),
                &[],
                &format!("deleting webhook {id}"),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(PlatformError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_card(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let list = p
            .id("id_list")?
            .or_else(|| self.default_list.clone())
            .ok_or_else(|| {
                PlatformError::Invalid(
                    "create_card: no `id_list`, and the integration has no `default_list`".into(),
                )
            })?;
        let name = p.text("name")?.unwrap_or_default();
        if name.trim().is_empty() {
            return Err(PlatformError::Invalid(
                "create_card: `name` is empty".into(),
            ));
        }
        let mut q = vec![("idList", list), ("name", name)];
        if let Some(d) = p.text("desc")? {
            q.push(("desc", d));
        }
        if let Some(pos) = p.pos()? {
            q.push(("pos", pos));
        }
        for (ours, theirs) in [("due", "due"), ("start", "start")] {
            if let Some(t) = p.date(ours)? {
                q.push((theirs, t));
            }
        }
        if let Some(b) = p.bool("due_complete") {
            q.push(("dueComplete", b.to_string()));
        }
        for (ours, theirs) in [("id_members", "idMembers"), ("id_labels", "idLabels")] {
            if let Some(list) = p.strings(ours) {
                q.push((theirs, list.join(",")));
            }
        }
        if let Some(u) = p.string("url_source").filter(|u| !u.trim().is_empty()) {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(PlatformError::Invalid(
                    "create_card: `url_source` must be an http(s) URL".into(),
                ));
            }
            q.push(("urlSource", u));
        }
        // A JSON body: `desc` may be 16 KB, too long for a URL.
        let card = self
            .client
            .call_with_body(Method::POST, "cards", &q, "create_card")
            .await?;
        Ok(card_result(&card))
    }

    async fn update_card(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let card = p.required_id("id_card")?;
        let mut q = Vec::new();
        if let Some(n) = p.text("name")? {
            if n.trim().is_empty() {
                return Err(PlatformError::Invalid(
                    "update_card: `name` is empty".into(),
                ));
            }
            q.push(("name", n));
        }
        if let Some(d) = p.text("desc")? {
            q.push(("desc", d));
        }
        if let Some(b) = p.bool("closed") {
            q.push(("closed", b.to_string()));
        }
        for (ours, theirs) in [("due", "due"), ("start", "start")] {
            if let Some(t) = p.date(ours)? {
                q.push((theirs, t));
            }
        }
        if let Some(b) = p.bool("due_complete") {
            q.push(("dueComplete", b.to_string()));
        }
        for (ours, theirs) in [("id_members", "idMembers"), ("id_labels", "idLabels")] {
            if let Some(list) = p.strings(ours) {
                q.push((theirs, list.join(",")));
            }
        }
        if let Some(pos) = p.pos()? {
            q.push(("pos", pos));
        }
        self.put_card(&card, &q, "update_card").await
    }

    /// `PUT cards/{card}` with the fields in `q`; the card as the result.
    async fn put_card(
        &self,
        card: &str,
        q: &[(&str, String)],
        what: &str,
    ) -> Result<Value, PlatformError> {
        let card = self
            .client
            .call_with_body(Method::PUT, &format!("cards/{}", segment(card)), q, what)
            .await?;
        Ok(card_result(&card))
    }

    async fn move_card(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let card = p.required_id("id_card")?;
        let list = p.required_id("id_list")?;
        let mut q = vec![("idList", list)];
        if let Some(b) = p.id("id_board")? {
            q.push(("idBoard", b));
        }
        if let Some(pos) = p.pos()? {
            q.push(("pos", pos));
        }
        self.put_card(&card, &q, "move_card").await
    }

    async fn add_comment(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let card = p.required_id("id_card")?;
        let text = p.text("text")?.unwrap_or_default();
        if text.trim().is_empty() {
            return Err(PlatformError::Invalid(
                "add_comment: `text` is empty".into(),
            ));
        }
        let path = format!("cards/{}/actions/comments", segment(&card));
        // Trello documents comments with `text` in the query only; a JSON body is documented
        // for cards. Short text keeps the documented form; text that would make a URL over
        // [`LONG_QUERY_BYTES`] (which the query form cannot carry anyway) goes in a JSON body.
        let long = http::percent_encode(&text, b"").len() > LONG_QUERY_BYTES;
        let q = [("text", text)];
        let a = if long {
            self.client
                .call_with_body(Method::POST, &path, &q, "add_comment")
                .await?
        } else {
            self.client
                .call(Method::POST, &path, &q, "add_comment")
                .await?
        };
        let id_card = a
            .pointer("/data/card/id")
            .cloned()
            .unwrap_or(Value::String(card));
        Ok(json!({
            "id": a.get("id").cloned().unwrap_or(Value::Null),
            "date": a.get("date").cloned().unwrap_or(Value::Null),
            "id_card": id_card,
        }))
    }

    async fn add_checklist(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let card = p.required_id("id_card")?;
        let items = p.strings("items").unwrap_or_default();
        for item in &items {
            if item.chars().count() > MAX_TEXT {
                return Err(PlatformError::Invalid(format!(
                    "add_checklist: an item of `items` is longer than {MAX_TEXT} characters"
                )));
            }
        }
        let checked = p.bool("checked");
        let mut q = vec![("idCard", card.clone())];
        if let Some(n) = p.text("name")?.filter(|n| !n.trim().is_empty()) {
            q.push(("name", n));
        }
        if let Some(pos) = p.pos()? {
            q.push(("pos", pos));
        }
        if let Some(src) = p.id("id_checklist_source")? {
            q.push(("idChecklistSource", src));
        }
        let list = self
            .client
            .call(Method::POST, "checklists", &q, "add_checklist")
            .await?;
        let Some(id) = list.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return Err(PlatformError::Rejected {
                status: 200,
                detail: "add_checklist: POST /1/checklists answered without an `id`".into(),
            });
        };
        let mut item_ids = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut q = vec![("name", item.clone()), ("pos", "bottom".to_owned())];
            if let Some(c) = checked {
                q.push(("checked", c.to_string()));
            }
            let what = format!(
                "add_checklist: item {} of {} (checklist {id} was created)",
                i + 1,
                items.len()
            );
            let it = self
                .client
                .call(
                    Method::POST,
                    &format!("checklists/{}/checkItems", segment(&id)),
                    &q,
                    &what,
                )
                .await?;
            item_ids.push(it.get("id").cloned().unwrap_or(Value::Null));
        }
        Ok(json!({
            "id": id,
            "name": list.get("name").cloned().unwrap_or(Value::Null),
            "id_card": list.get("idCard").cloned().unwrap_or(Value::String(card)),
            "check_item_ids": item_ids,
        }))
    }

    async fn add_label(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let card = p.required_id("id_card")?;
        let existing = p.id("id_label")?;
        let color = p.string("color");
        let name = p.text("name")?;
        match (existing, color) {
            (Some(_), Some(_)) => Err(PlatformError::Invalid(
                "add_label: give `id_label` (an existing label) or `color` (a new one), not both"
                    .into(),
            )),
            (Some(_), None) if name.is_some() => Err(PlatformError::Invalid(
                "add_label: `name` goes with `color` (a new label), not with `id_label`".into(),
            )),
            (Some(label), None) => {
                let v = self
                    .client
                    .call(
                        Method::POST,
                        &format!("cards/{}/idLabels", segment(&card)),
                        &[("value", label.clone())],
                        "add_label",
                    )
                    .await?;
                let ids = label_ids(&v);
                Ok(json!({ "id_labels": ids, "id": label }))
            }
            (None, Some(color)) => {
                let mut q = vec![("color", color)];
                if let Some(n) = name {
                    q.push(("name", n));
                }
                let v = self
                    .client
                    .call(
                        Method::POST,
                        &format!("cards/{}/labels", segment(&card)),
                        &q,
                        "add_label",
                    )
                    .await?;
                let ids = label_ids(&v);
                // Trello appends the new label to the card's labels.
                let id = v
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| ids.last().cloned());
                Ok(json!({ "id_labels": ids, "id": id }))
            }
            (None, None) => Err(PlatformError::Invalid(
                "add_label: needs `id_label` or `color`".into(),
            )),
        }
    }
}

/// The label ids of an answer: an array of ids, an array of labels, or one label.
fn label_ids(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect(),
        Value::Object(o) => o
            .get("idLabels")
            .map(label_ids)
            .or_else(|| {
                o.get("id")
                    .and_then(Value::as_str)
                    .map(|s| vec![s.to_owned()])
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The catalogued result fields of a card.
fn card_result(card: &Value) -> Value {
    let g = |k: &str| card.get(k).cloned().unwrap_or(Value::Null);
    let url = match card.get("url").and_then(Value::as_str) {
        Some(u) if !u.is_empty() => Value::String(u.to_owned()),
        _ => match card.get("shortLink").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => Value::String(format!("https://trello.com/c/{s}")),
            _ => Value::Null,
        },
    };
    json!({
        "id": g("id"),
        "short_link": g("shortLink"),
        "url": url,
        "name": g("name"),
        "id_short": g("idShort"),
        "id_list": g("idList"),
        "id_board": g("idBoard"),
    })
}

/// Trello's own parameter rules, on top of the shared [`Params`] checks.
trait TrelloParams {
    /// A free-text parameter, at most [`MAX_TEXT`] characters.
    fn text(&self, name: &str) -> Result<Option<String>, PlatformError>;
    /// An id or short link: trimmed, no blanks, slashes, `?` or `#` (it goes into a path).
    fn id(&self, name: &str) -> Result<Option<String>, PlatformError>;
    /// A required [`TrelloParams::id`].
    fn required_id(&self, name: &str) -> Result<String, PlatformError>;
    /// `pos`: `top`, `bottom` or a positive number.
    fn pos(&self) -> Result<Option<String>, PlatformError>;
    /// An RFC 3339 date (or `YYYY-MM-DD`); an empty string clears it (sent empty).
    fn date(&self, name: &str) -> Result<Option<String>, PlatformError>;
}

impl TrelloParams for Params<'_> {
    fn text(&self, name: &str) -> Result<Option<String>, PlatformError> {
        match self.string(name) {
            Some(t) if t.chars().count() > MAX_TEXT => Err(self.invalid(format_args!(
                "`{name}` is longer than {MAX_TEXT} characters"
            ))),
            other => Ok(other),
        }
    }

    fn id(&self, name: &str) -> Result<Option<String>, PlatformError> {
        let Some(v) = self.string(name) else {
            return Ok(None);
        };
        let v = v.trim();
        if v.is_empty() {
            return Err(self.invalid(format_args!("`{name}` is empty")));
        }
        if v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '%'))
        {
            return Err(self.invalid(format_args!(
                "`{name}` {v:?} is not a Trello id or short link"
            )));
        }
        Ok(Some(v.to_owned()))
    }

    fn required_id(&self, name: &str) -> Result<String, PlatformError> {
        self.id(name)?.ok_or_else(|| self.missing(name))
    }

    fn pos(&self) -> Result<Option<String>, PlatformError> {
        let Some(v) = self.string("pos") else {
            return Ok(None);
        };
        let v = v.trim().to_owned();
        let ok =
            v == "top" || v == "bottom" || v.parse::<f64>().is_ok_and(|n| n.is_finite() && n > 0.0);
        if ok {
            Ok(Some(v))
        } else {
            Err(self.invalid(format_args!(
                "`pos` must be `top`, `bottom` or a positive number, got {v:?}"
            )))
        }
    }

    fn date(&self, name: &str) -> Result<Option<String>, PlatformError> {
        let Some(v) = self.string(name) else {
            return Ok(None);
        };
        let v = v.trim().to_owned();
        if v.is_empty() || crate::rules::condition::parse_timestamp(&v).is_some() {
            Ok(Some(v))
        } else {
            Err(self.invalid(format_args!("`{name}` must be an RFC 3339 date, got {v:?}")))
        }
    }
}
