//! Webhook registration on Zendesk, through the Webhooks API and the Triggers API.
//!
//! What supportopsd owns for an integration (every name or title starts with the marker
//! `supportopsd:<integration id>`):
//!
//! - **`<marker> events`**: a webhook subscribed to Zendesk events
//!   (`zen:event-type:user.created`, `…organization.name_changed`, …): every user and
//!   organization event, and the ticket events too when config `ticket_events_via =
//!   "event_subscription"`. Event-subscribed webhooks must be `POST` + `json`.
//! - **`<marker> tickets`** (default `ticket_events_via = "trigger"`): a webhook connected to
//!   triggers (`subscriptions = ["conditional_ticket_events"]`), and one trigger
//!   **`<marker> <event>`** per ticket or comment event, whose `notification_webhook` action
//!   posts the body documented in [`super::events`] to it. Triggers are the default because
//!   ticket event subscriptions are recent and their availability per plan is unclear.
//!
//! Deliveries are verified with one signing secret, read from
//! `GET /api/v2/webhooks/{id}/signing_secret` after registration and returned in
//! [`Registration::secret`] (the daemon seals it). When both webhooks are needed, the second
//! is created with the first one's secret (`signing_secret` is writable on create only); if
//! Zendesk does not keep it, the sync fails and says to use `ticket_events_via =
//! "event_subscription"` (one webhook).
//!
//! [`Registration::ids`] records them as `webhook:<id>` and `trigger:<id>`.
//!
//! [`ZendeskConnector::sync`] is idempotent: it lists what carries the marker (and reads the
//! ids the state recorded, in case a name was edited), creates what is missing, replaces what
//! differs (URL, subscriptions, method, format, status, trigger conditions or actions),
//! deletes what is ours but no longer wanted, and changes nothing when everything matches.

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Value, json};

use super::connector::{TicketEventsVia, ZendeskConnector};
use crate::platforms::connector::{
    PlatformError, Registration, RegistrationOutcome, WebhookSync, WebhookTarget,
};
use crate::secrets::Secret;

/// The subscription prefix of Zendesk event types.
pub const EVENT_TYPE: &str = "zen:event-type:";

/// The subscription of a trigger-connected webhook.
pub const CONDITIONAL: &str = "conditional_ticket_events";

/// Most list pages read.
const MAX_PAGES: usize = 100;

/// Zendesk event types behind a catalogue event, when delivered by event subscription
/// (the mapping back is [`super::webhook`]'s).
pub fn subscriptions(event: &str) -> &'static [&'static str] {
    match event {
        "ticket.created" => &["zen:event-type:ticket.created"],
        "ticket.updated" => &[
            "zen:event-type:ticket.agent_assignment_changed",
            "zen:event-type:ticket.brand_changed",
            "zen:event-type:ticket.custom_status_changed",
            "zen:event-type:ticket.description_changed",
            "zen:event-type:ticket.external_id_changed",
            "zen:event-type:ticket.form_changed",
            "zen:event-type:ticket.group_assignment_changed",
            "zen:event-type:ticket.organization_changed",
            "zen:event-type:ticket.priority_changed",
            "zen:event-type:ticket.requester_changed",
            "zen:event-type:ticket.status_changed",
            "zen:event-type:ticket.subject_changed",
            "zen:event-type:ticket.tags_changed",
            "zen:event-type:ticket.type_changed",
        ],
        "ticket.solved" | "ticket.closed" => &["zen:event-type:ticket.status_changed"],
        "comment.created" => &["zen:event-type:ticket.comment_added"],
        "user.created" => &["zen:event-type:user.created"],
        "user.updated" => &[
            "zen:event-type:user.active_changed",
            "zen:event-type:user.alias_changed",
            "zen:event-type:user.custom_field_changed",
            "zen:event-type:user.custom_role_changed",
            "zen:event-type:user.default_group_changed",
            "zen:event-type:user.details_changed",
            "zen:event-type:user.external_id_changed",
            "zen:event-type:user.identity_changed",
            "zen:event-type:user.identity_created",
            "zen:event-type:user.identity_deleted",
            "zen:event-type:user.name_changed",
            "zen:event-type:user.notes_changed",
            "zen:event-type:user.only_private_comments_changed",
        ],
        "organization.created" => &["zen:event-type:organization.created"],
        "organization.updated" => &[
            "zen:event-type:organization.custom_field_changed",
            "zen:event-type:organization.external_id_changed",
            "zen:event-type:organization.name_changed",
            "zen:event-type:organization.tags_changed",
        ],
        _ => &[],
    }
}

/// Whether a catalogue event is about tickets (registered by trigger by default).
pub fn is_ticket_event(event: &str) -> bool {
    event.starts_with("ticket.") || event == "comment.created"
}

/// The conditions of the trigger of a ticket event.
pub fn trigger_conditions(event: &str) -> Value {
    let change = json!({"field": "update_type", "operator": "is", "value": "Change"});
    match event {
        "ticket.created" => json!({
            "all": [{"field": "update_type", "operator": "is", "value": "Create"}],
            "any": []
        }),
        "ticket.solved" => json!({
            "all": [change, {"field": "status", "operator": "value", "value": "solved"}],
            "any": []
        }),
        "ticket.closed" => json!({
            "all": [{"field": "status", "operator": "value", "value": "closed"}],
            "any": []
        }),
        "comment.created" => json!({
            "all": [change],
            "any": [
                {"field": "comment_is_public", "operator": "is", "value": "true"},
                {"field": "comment_is_public", "operator": "is", "value": "false"}
            ]
        }),
        _ => json!({ "all": [change], "any": [] }),
    }
}

/// The body a trigger posts for `event` (the shape [`super::events`] documents): a JSON text
/// with Zendesk placeholders, ids quoted so that an empty placeholder stays valid JSON. Zendesk
/// substitutes placeholders as raw text, so only placeholders whose values are ids, enum values
/// or timestamps are used: free text (subject, names, comment bodies) comes from the
/// enrichment step instead.
pub fn trigger_body(event: &str) -> String {
    json!({
        "supportopsd_event": event,
        "ticket": {
            "id": "{{ticket.id}}",
            "status": "{{ticket.status}}", "priority": "{{ticket.priority}}",
            "type": "{{ticket.ticket_type}}",
            "via": "{{ticket.via}}", "url": "{{ticket.url}}",
            "brand_id": "{{ticket.brand.id}}",
            "group_id": "{{ticket.group.id}}", "organization_id": "{{ticket.organization.id}}",
            "created_at": "{{ticket.created_at_with_timestamp}}",
            "updated_at": "{{ticket.updated_at_with_timestamp}}"
        },
        "requester": {"id": "{{ticket.requester.id}}"},
        "assignee": {"id": "{{ticket.assignee.id}}"},
        "current_user": {"id": "{{current_user.id}}"},
        "comment": {"id": "{{ticket.latest_comment.id}}",
                    "public": "{{ticket.latest_comment.is_public}}",
                    "author_id": "{{ticket.latest_comment.author.id}}"}
    })
    .to_string()
}

/// What should exist on Zendesk for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The subscriptions of the `events` webhook, sorted (empty: no such webhook).
    pub subscriptions: Vec<String>,
    /// The ticket events delivered by triggers (empty: no `tickets` webhook, no trigger).
    pub trigger_events: Vec<String>,
}

impl Desired {
    /// What `events` need with ticket events delivered `via`.
    pub fn of(events: &[String], via: TicketEventsVia) -> Result<Desired, PlatformError> {
        let mut subs = BTreeSet::new();
        let mut triggers = BTreeSet::new();
        for e in events {
            if super::DESCRIPTOR.event(e).is_none() {
                return Err(PlatformError::Invalid(format!(
                    "zendesk has no event `{e}`"
                )));
            }
            if is_ticket_event(e) && via == TicketEventsVia::Trigger {
                triggers.insert(e.clone());
            } else {
                subs.extend(subscriptions(e).iter().map(|s| (*s).to_owned()));
            }
        }
        Ok(Desired {
            subscriptions: subs.into_iter().collect(),
            trigger_events: triggers.into_iter().collect(),
        })
    }
}

/// The pairs of a query string (`page=2&per_page=100`), percent-decoded.
fn query_pairs(qs: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(x) => {
                            out.push(x);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                x => out.push(x),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    qs.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

/// Whether `name` carries `marker` (its first word).
fn owned(name: &str, marker: &str) -> bool {
    name.split(' ').next() == Some(marker)
}

/// The id of a webhook or trigger, when it is one (letters and digits only: it goes into a
/// path).
fn id_of(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Some(s.clone())
        }
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// The webhook body supportopsd wants.
fn webhook_body(name: &str, url: &str, subscriptions: &[String], integration: &str) -> Value {
    json!({
        "name": name,
        "description": format!("Managed by supportopsd for the integration {integration}; it removes this webhook when the integration's [webhook] goes away."),
        "status": "active",
        "endpoint": url,
        "http_method": "POST",
        "request_format": "json",
        "subscriptions": subscriptions,
    })
}

/// Whether a live webhook already is what `want` describes.
fn webhook_matches(live: &Value, want: &Value) -> bool {
    let subs = |v: &Value| -> BTreeSet<String> {
        v.get("subscriptions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    [
        "name",
        "status",
        "endpoint",
        "http_method",
        "request_format",
    ]
    .iter()
    .all(|k| str_of(live, k) == str_of(want, k))
        && subs(live) == subs(want)
}

/// Whether a live webhook is connected the same way (event-subscribed or trigger-connected):
/// Zendesk does not let a webhook switch.
fn same_connection(live: &Value, want: &Value) -> bool {
    let conditional = |v: &Value| {
        v.get("subscriptions")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(CONDITIONAL)))
    };
    conditional(live) == conditional(want)
}

/// The trigger body supportopsd wants.
fn trigger_body_object(title: &str, event: &str, webhook_id: &str, integration: &str) -> Value {
    json!({
        "title": title,
        "description": format!("Managed by supportopsd for the integration {integration}: sends {event} to supportopsd."),
        "active": true,
        "conditions": trigger_conditions(event),
        "actions": [{"field": "notification_webhook", "value": [webhook_id, trigger_body(event)]}],
    })
}

/// A trigger's conditions with both lists present.
fn normalized_conditions(v: &Value) -> Value {
    let list = |k: &str| {
        v.get(k)
            .cloned()
            .filter(Value::is_array)
            .unwrap_or_else(|| json!([]))
    };
    json!({ "all": list("all"), "any": list("any") })
}

fn trigger_matches(live: &Value, want: &Value) -> bool {
    str_of(live, "title") == str_of(want, "title")
        && live.get("active").and_then(Value::as_bool) == Some(true)
        && normalized_conditions(live.get("conditions").unwrap_or(&Value::Null))
            == normalized_conditions(want.get("conditions").unwrap_or(&Value::Null))
        && normalized_actions(live) == normalized_actions(want)
}

/// A trigger's actions, with a `notification_webhook` body read as JSON when it is (Zendesk
/// may store the text re-spaced).
fn normalized_actions(t: &Value) -> Vec<Value> {
    t.get("actions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            let mut a = a.clone();
            if a.get("field").and_then(Value::as_str) == Some("notification_webhook")
                && let Some(text) = a.pointer("/value/1").and_then(Value::as_str)
                && let Ok(parsed) = serde_json::from_str::<Value>(text)
            {
                a["value"][1] = parsed;
            }
            a
        })
        .collect()
}

impl ZendeskConnector {
    /// [`crate::platforms::Connector::sync_webhook`] (see the module docs).
    pub(super) async fn sync(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        let marker = target.marker();
        let integration = target.integration.to_string();
        let desired = Desired::of(&target.events, self.ticket_events_via)?;
        let mut changed = false;

        let mut webhooks = self.owned_webhooks(&marker, target).await?;
        let mut triggers = self.owned_triggers(&marker, target).await?;

        // The event-subscribed webhook first: its secret is the one both webhooks share.
        let events_name = format!("{marker} events");
        let tickets_name = format!("{marker} tickets");
        let mut secret: Option<String> = None;
        let mut keep_webhooks: Vec<String> = Vec::new();
        let mut events_id = None;
        if !desired.subscriptions.is_empty() {
            // A tickets webhook made before (events added later): the new events webhook
            // takes its secret, so the triggers can stay.
            let mut inherited = None;
            if !desired.trigger_events.is_empty()
                && !webhooks.iter().any(|w| str_of(w, "name") == events_name)
                && let Some(id) = webhooks
                    .iter()
                    .find(|w| str_of(w, "name") == tickets_name)
                    .and_then(id_of)
            {
                inherited = Some(self.signing_secret(&id).await?);
            }
            let want = webhook_body(
                &events_name,
                &target.url,
                &desired.subscriptions,
                &integration,
            );
            let (id, c) = self
                .ensure_webhook(&mut webhooks, &events_name, &want, inherited.as_deref())
                .await?;
            changed |= c;
            secret = Some(self.signing_secret(&id).await?);
            keep_webhooks.push(id.clone());
            events_id = Some(id);
        }
        let mut tickets_id = None;
        if !desired.trigger_events.is_empty() {
            let want = webhook_body(
                &tickets_name,
                &target.url,
                &[CONDITIONAL.to_owned()],
                &integration,
            );
            let (mut id, c) = self
                .ensure_webhook(&mut webhooks, &tickets_name, &want, secret.as_deref())
                .await?;
            changed |= c;
            let mut own = self.signing_secret(&id).await?;
            if let Some(shared) = secret.as_deref()
                && own != shared
            {
                // Its secret was reset, or Zendesk did not keep the one given: make it again
                // with the shared secret (its triggers first: Zendesk keeps a webhook in use).
                let uses = |t: &Value| {
                    t.get("actions")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|a| a.pointer("/value/0").and_then(Value::as_str) == Some(id.as_str()))
                };
                for t in triggers.iter().filter(|t| uses(t)) {
                    if let Some(tid) = id_of(t) {
                        self.delete(&format!("api/v2/triggers/{tid}")).await?;
                    }
                }
                triggers.retain(|t| !uses(t));
                self.delete(&format!("api/v2/webhooks/{id}")).await?;
                webhooks.retain(|w| id_of(w).as_deref() != Some(id.as_str()));
                let (again, _) = self
                    .ensure_webhook(&mut webhooks, &tickets_name, &want, Some(shared))
                    .await?;
                id = again;
                own = self.signing_secret(&id).await?;
                changed = true;
                if own != shared {
                    return Err(PlatformError::Rejected {
                        status: 200,
                        detail: "Zendesk gave the trigger-connected webhook its own signing secret, so user/organization and ticket deliveries cannot share one; set `ticket_events_via = \"event_subscription\"` in the integration's [config]".into(),
                    });
                }
            }
            secret.get_or_insert(own);
            keep_webhooks.push(id.clone());
            tickets_id = Some(id);
        }

        // Triggers, one per ticket event, all posting to the tickets webhook.
        let mut keep_triggers: Vec<String> = Vec::new();
        if let Some(webhook_id) = &tickets_id {
            for event in &desired.trigger_events {
                let title = format!("{marker} {event}");
                let want = trigger_body_object(&title, event, webhook_id, &integration);
                let (id, c) = self.ensure_trigger(&mut triggers, &title, &want).await?;
                changed |= c;
                keep_triggers.push(id);
            }
        }

        // What is ours but no longer wanted: triggers first (they reference webhooks).
        for t in &triggers {
            if let Some(id) = id_of(t).filter(|id| !keep_triggers.contains(id)) {
                self.delete(&format!("api/v2/triggers/{id}")).await?;
                changed = true;
            }
        }
        for w in &webhooks {
            if let Some(id) = id_of(w).filter(|id| !keep_webhooks.contains(id)) {
                self.delete(&format!("api/v2/webhooks/{id}")).await?;
                changed = true;
            }
        }

        let mut ids: Vec<String> = Vec::new();
        ids.extend(events_id.map(|id| format!("webhook:{id}")));
        ids.extend(tickets_id.map(|id| format!("webhook:{id}")));
        ids.extend(keep_triggers.iter().map(|id| format!("trigger:{id}")));
        let outcome = if changed {
            target.change_outcome()
        } else {
            RegistrationOutcome::Unchanged
        };
        Ok(WebhookSync::Registered {
            outcome,
            registration: Registration {
                ids,
                url: target.url.clone(),
                events: target.events.clone(),
                expires_at_ms: None,
                secret: secret.map(Secret::from),
            },
        })
    }

    /// [`crate::platforms::Connector::remove_webhook`]: deletes every trigger, then every
    /// webhook, carrying the marker (or recorded in `previous`).
    pub(super) async fn remove(&self, target: &WebhookTarget) -> Result<usize, PlatformError> {
        let marker = target.marker();
        let triggers = self.owned_triggers(&marker, target).await?;
        let webhooks = self.owned_webhooks(&marker, target).await?;
        let mut deleted = 0;
        for t in &triggers {
            if let Some(id) = id_of(t)
                && self.delete(&format!("api/v2/triggers/{id}")).await?
            {
                deleted += 1;
            }
        }
        for w in &webhooks {
            if let Some(id) = id_of(w)
                && self.delete(&format!("api/v2/webhooks/{id}")).await?
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// `DELETE`; `false` when it was already gone.
    async fn delete(&self, path: &str) -> Result<bool, PlatformError> {
        match self
            .client
            .call(Method::DELETE, path, &[], None, None)
            .await
        {
            Ok(_) => Ok(true),
            Err(PlatformError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The recorded ids of `kind` (`webhook`, `trigger`) in `previous`.
    fn recorded(target: &WebhookTarget, kind: &str) -> Vec<String> {
        target
            .previous
            .iter()
            .flat_map(|p| p.ids.iter())
            .filter_map(|id| id.strip_prefix(kind)?.strip_prefix(':'))
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()))
            .map(str::to_owned)
            .collect()
    }

    /// Every webhook whose name carries `marker`, plus those recorded in `previous` that
    /// still exist (their name may have been edited).
    async fn owned_webhooks(
        &self,
        marker: &str,
        target: &WebhookTarget,
    ) -> Result<Vec<Value>, PlatformError> {
        let mut out: Vec<Value> = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = vec![("filter[name_contains]", marker.to_owned())];
            if let Some(a) = &after {
                q.push(("page[after]", a.clone()));
            }
            let a = self
                .client
                .call(Method::GET, "api/v2/webhooks", &q, None, None)
                .await?;
            for w in a
                .body
                .get("webhooks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if owned(str_of(w, "name"), marker) {
                    out.push(w.clone());
                }
            }
            let more = a.body.pointer("/meta/has_more").and_then(Value::as_bool) == Some(true);
            after = a
                .body
                .pointer("/meta/after_cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if !more || after.is_none() {
                break;
            }
        }
        for id in Self::recorded(target, "webhook") {
            if out.iter().any(|w| id_of(w).as_deref() == Some(id.as_str())) {
                continue;
            }
            match self
                .client
                .call(
                    Method::GET,
                    &format!("api/v2/webhooks/{id}"),
                    &[],
                    None,
                    None,
                )
                .await
            {
                Ok(a) => out.extend(a.body.get("webhook").cloned()),
                Err(PlatformError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every trigger whose title carries `marker`, plus those recorded in `previous` that
    /// still exist.
    async fn owned_triggers(
        &self,
        marker: &str,
        target: &WebhookTarget,
    ) -> Result<Vec<Value>, PlatformError> {
        let mut out: Vec<Value> = Vec::new();
        let mut query: Vec<(String, String)> = Vec::new();
        for _ in 0..MAX_PAGES {
            let q: Vec<(&str, String)> =
                query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let a = self
                .client
                .call(Method::GET, "api/v2/triggers", &q, None, None)
                .await?;
            for t in a
                .body
                .get("triggers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if owned(str_of(t, "title"), marker) {
                    out.push(t.clone());
                }
            }
            // `next_page` is an absolute URL of the same list: follow its query only.
            match a
                .body
                .get("next_page")
                .and_then(Value::as_str)
                .and_then(|u| u.split_once('?'))
            {
                Some((_, qs)) => query = query_pairs(qs),
                None => break,
            }
        }
        for id in Self::recorded(target, "trigger") {
            if out.iter().any(|t| id_of(t).as_deref() == Some(id.as_str())) {
                continue;
            }
            match self
                .client
                .call(
                    Method::GET,
                    &format!("api/v2/triggers/{id}"),
                    &[],
                    None,
                    None,
                )
                .await
            {
                Ok(a) => out.extend(a.body.get("trigger").cloned()),
                Err(PlatformError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Makes the webhook `name` be `want`: the live one when it matches, else replaced (or
    /// made again when its connection method differs), else created (with `secret` as its
    /// signing secret when given). Its id, and whether anything changed. The webhook used is
    /// taken out of `live`.
    async fn ensure_webhook(
        &self,
        live: &mut Vec<Value>,
        name: &str,
        want: &Value,
        secret: Option<&str>,
    ) -> Result<(String, bool), PlatformError> {
        // By name first; else a recorded one whose name was edited (no other owned name).
        let pos = live
            .iter()
            .position(|w| str_of(w, "name") == name)
            .or_else(|| {
                live.iter().position(|w| {
                    let n = str_of(w, "name");
                    !n.ends_with(" events") && !n.ends_with(" tickets") && same_connection(w, want)
                })
            });
        if let Some(pos) = pos {
            let w = live.remove(pos);
            if let Some(id) = id_of(&w) {
                if webhook_matches(&w, want) {
                    return Ok((id, false));
                }
                if same_connection(&w, want) {
                    self.client
                        .call(
                            Method::PUT,
                            &format!("api/v2/webhooks/{id}"),
                            &[],
                            Some(&json!({ "webhook": want })),
                            None,
                        )
                        .await?;
                    return Ok((id, true));
                }
                self.delete(&format!("api/v2/webhooks/{id}")).await?;
            }
        }
        let mut body = want.clone();
        if let (Some(s), Some(o)) = (secret, body.as_object_mut()) {
            o.insert(
                "signing_secret".into(),
                json!({"algorithm": "sha256", "secret": s}),
            );
        }
        let a = self
            .client
            .call(
                Method::POST,
                "api/v2/webhooks",
                &[],
                Some(&json!({ "webhook": body })),
                None,
            )
            .await?;
        let id = a
            .body
            .get("webhook")
            .and_then(id_of)
            .ok_or_else(|| PlatformError::Rejected {
                status: a.status.as_u16(),
                detail: "POST /api/v2/webhooks: the answer has no `webhook.id`".into(),
            })?;
        Ok((id, true))
    }

    /// Makes the trigger `title` be `want` (see [`Self::ensure_webhook`]).
    async fn ensure_trigger(
        &self,
        live: &mut Vec<Value>,
        title: &str,
        want: &Value,
    ) -> Result<(String, bool), PlatformError> {
        let marker = title.split(' ').next().unwrap_or("");
        let pos = live
            .iter()
            .position(|t| str_of(t, "title") == title)
            .or_else(|| live.iter().position(|t| !owned(str_of(t, "title"), marker)));
        if let Some(pos) = pos {
            let t = live.remove(pos);
            if let Some(id) = id_of(&t) {
                if trigger_matches(&t, want) {
                    return Ok((id, false));
                }
                self.client
                    .call(
                        Method::PUT,
                        &format!("api/v2/triggers/{id}"),
                        &[],
                        Some(&json!({ "trigger": want })),
                        None,
                    )
                    .await?;
                return Ok((id, true));
            }
        }
        let a = self
            .client
            .call(
                Method::POST,
                "api/v2/triggers",
                &[],
                Some(&json!({ "trigger": want })),
                None,
            )
            .await?;
        let id = a
            .body
            .get("trigger")
            .and_then(id_of)
            .ok_or_else(|| PlatformError::Rejected {
                status: a.status.as_u16(),
                detail: "POST /api/v2/triggers: the answer has no `trigger.id`".into(),
            })?;
        Ok((id, true))
    }

    /// `GET /api/v2/webhooks/{id}/signing_secret` → `signing_secret.secret`.
    async fn signing_secret(&self, id: &str) -> Result<String, PlatformError> {
        let a = self
            .client
            .call(
                Method::GET,
                &format!("api/v2/webhooks/{id}/signing_secret"),
                &[],
                None,
                None,
            )
            .await?;
        a.body
            .pointer("/signing_secret/secret")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| PlatformError::Rejected {
                status: a.status.as_u16(),
                detail: format!(
                    "GET /api/v2/webhooks/{id}/signing_secret: the answer has no `signing_secret.secret` (a webhook made by a Zendesk app keeps its secret hidden)"
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_objects_per_mode() {
        let events: Vec<String> = ["comment.created", "ticket.created", "user.created"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let d = Desired::of(&events, TicketEventsVia::Trigger).expect("desired");
        assert_eq!(d.subscriptions, vec!["zen:event-type:user.created"]);
        assert_eq!(d.trigger_events, vec!["comment.created", "ticket.created"]);
        let d = Desired::of(&events, TicketEventsVia::EventSubscription).expect("desired");
        assert!(d.trigger_events.is_empty());
        assert_eq!(
            d.subscriptions,
            vec![
                "zen:event-type:ticket.comment_added",
                "zen:event-type:ticket.created",
                "zen:event-type:user.created"
            ]
        );
        assert!(matches!(
            Desired::of(&["ticket.exploded".to_owned()], TicketEventsVia::Trigger),
            Err(PlatformError::Invalid(_))
        ));
    }

    #[test]
    fn every_event_can_be_registered() {
        for e in super::super::DESCRIPTOR.events {
            assert!(!subscriptions(e.name).is_empty(), "{}", e.name);
            for s in subscriptions(e.name) {
                assert!(s.starts_with(EVENT_TYPE));
            }
        }
    }

    #[test]
    fn trigger_bodies_are_json_the_parser_reads() {
        for e in super::super::DESCRIPTOR
            .events
            .iter()
            .filter(|e| is_ticket_event(e.name))
        {
            let body: Value = serde_json::from_str(&trigger_body(e.name)).expect("json");
            assert_eq!(body["supportopsd_event"], e.name);
            assert!(trigger_conditions(e.name)["all"].is_array());
        }
    }

    #[test]
    fn next_page_queries_are_decoded() {
        assert_eq!(
            query_pairs("page=2&sort_by=title&x=a%20b+c&bad=%zz&flag"),
            vec![
                ("page".to_owned(), "2".to_owned()),
                ("sort_by".to_owned(), "title".to_owned()),
                ("x".to_owned(), "a b c".to_owned()),
                ("bad".to_owned(), "%zz".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert_eq!(query_pairs("%"), vec![("%".to_owned(), String::new())]);
    }

    #[test]
    fn trigger_bodies_compare_as_json() {
        let want = trigger_body_object(
            "supportopsd:zd ticket.created",
            "ticket.created",
            "W1",
            "zd",
        );
        let mut live = want.clone();
        live["id"] = json!(5);
        let spaced = serde_json::to_string_pretty(
            &serde_json::from_str::<Value>(&trigger_body("ticket.created")).expect("json"),
        )
        .expect("text");
        live["actions"][0]["value"][1] = json!(spaced);
        assert!(trigger_matches(&live, &want));
        live["actions"][0]["value"][0] = json!("W2");
        assert!(!trigger_matches(&live, &want));
    }

    #[test]
    fn markers_are_whole_words() {
        assert!(owned("supportopsd:zd events", "supportopsd:zd"));
        assert!(!owned("supportopsd:zd-main events", "supportopsd:zd"));
        assert!(!owned("my supportopsd:zd events", "supportopsd:zd"));
    }
}
