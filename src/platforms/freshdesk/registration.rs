//! The automation rules supportopsd owns on a Freshdesk account: one per delivered event (two
//! for the events the System can cause), each with a `trigger_webhook` action that posts the
//! body [`super::events`] documents to the integration's URL, with the shared secret in
//! [`FRESHDESK_SECRET_HEADER`].
//!
//! Freshdesk has no webhook subscription API; automation rules are the only way to make it call
//! out (`/api/v2/automations/{type}/rules`).
//!
//! | event | rule type | what fires it | performer |
//! |---|---|---|---|
//! | `ticket_created` | 1 (ticket creation), created at position 1 | every new ticket | — |
//! | `ticket_updated` | 4 (ticket updates) | status or priority changed | agent or requester (3), and a twin for the System (4) |
//! | `ticket_resolved` | 4 | status changed to 4 (resolved) | 3, and a System (4) twin |
//! | `ticket_closed` | 4 | status changed to 5 (closed) | 3, and a System (4) twin (time triggers close tickets as the System) |
//! | `note_created` | 4 | a note was added (public or private) | 3 |
//!
//! Every rule's condition is `priority in [1,2,3,4]`, which holds for every ticket (Freshdesk
//! has exactly these four priorities and no custom ones; it requires a condition), so tickets in
//! custom statuses (6 and above) are not filtered out. The performer numbering follows
//! Freshdesk's own `Va::Performer` (`AGENT = '1'`, `CUSTOMER = '2'`, `ANYONE = '3'` = agent or
//! requester, `SYSTEM = '4'` = no doer), in the freshconsult source
//! (`Ramesh-Veeriaperumal/freshconsult`, `app/models/va/performer.rb`). A rule has one
//! performer, so the System's changes need a rule of their own.
//!
//! Contact events cannot be delivered: automation rules fire on tickets only.
//!
//! Every rule is named `supportopsd:<integration> <event>[ (system)] #<key>` (the ownership
//! marker, see [`crate::platforms::connector::marker`]; `<key>` is 8 hex digits of an HMAC of
//! the shared secret, so that a new secret renames the rules even when Freshdesk does not echo
//! header values) and says so in its description; only rules whose name carries the marker are
//! ever changed or deleted.
//!
//! [`mismatch`] compares what Freshdesk echoes by meaning: numbers and numeric strings are the
//! same (`"3"` is 3: Freshdesk's automation API types `events.from`/`to` as strings,
//! `Admin::AutomationConstants::EVENTS_HASH`), keys Freshdesk adds are ignored, keys it does not
//! echo are not drift, and a header whose value is not echoed (absent, empty or masked) is
//! taken on trust (the `#<key>` in the name covers a new secret).

use serde_json::{Map, Value, json};

use crate::platforms::inbound::FRESHDESK_SECRET_HEADER;

/// Automation type of "ticket creation" rules.
pub const TICKET_CREATION: u8 = 1;
/// Automation type of "ticket updates" rules.
pub const TICKET_UPDATES: u8 = 4;
/// The automation types supportopsd creates rules in.
pub const RULE_TYPES: [u8; 2] = [TICKET_CREATION, TICKET_UPDATES];

/// Performer "agent or requester" (Freshdesk `Va::Performer::ANYONE`).
pub const PERFORMER_PERSON: u8 = 3;
/// Performer "System" (Freshdesk `Va::Performer::SYSTEM`: time triggers and other automations).
pub const PERFORMER_SYSTEM: u8 = 4;

/// The automation type of the rule delivering `event`, or `None` when Freshdesk cannot deliver
/// it.
pub fn rule_type(event: &str) -> Option<u8> {
    match event {
        "ticket_created" => Some(TICKET_CREATION),
        "ticket_updated" | "ticket_resolved" | "ticket_closed" | "note_created" => {
            Some(TICKET_UPDATES)
        }
        _ => None,
    }
}

/// The performers of the rules delivering a ticket-update `event`: one rule each.
pub fn performers(event: &str) -> &'static [u8] {
    match event {
        "ticket_updated" | "ticket_resolved" | "ticket_closed" => {
            &[PERFORMER_PERSON, PERFORMER_SYSTEM]
        }
        "note_created" => &[PERFORMER_PERSON],
        _ => &[],
    }
}

/// 8 hex digits naming the shared secret (an HMAC keyed with it; not the secret).
pub fn secret_key(secret: &str) -> String {
    let fp = crate::secrets::keyed_fingerprint(secret.as_bytes(), &[b"supportopsd freshdesk rule"]);
    fp.chars().take(8).collect()
}

/// The name of the rule delivering `event` for the integration marked `marker`, for the
/// System's changes when `system`, with the secret's key.
pub fn rule_name(marker: &str, event: &str, system: bool, key: &str) -> String {
    let who = if system { " (system)" } else { "" };
    format!("{marker} {event}{who} #{key}")
}

/// Whether a rule name carries `marker` (exactly: `supportopsd:fd` does not own
/// `supportopsd:fd-2 …`).
pub fn owned_by(name: &str, marker: &str) -> bool {
    name == marker
        || name
            .strip_prefix(marker)
            .is_some_and(|rest| rest.starts_with(' '))
}

/// The event an owned rule's name delivers (`supportopsd:fd ticket_created #1a2b3c4d` →
/// `ticket_created`).
pub fn event_of(name: &str, marker: &str) -> Option<String> {
    name.strip_prefix(marker)
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|e| !e.starts_with('#'))
        .map(str::to_owned)
}

/// The JSON body the rule's webhook posts (placeholders rendered by Freshdesk).
///
/// `ticket_updated_at` (`{{ticket.modified_on}}`, the ticket's `updated_at` in Freshdesk's
/// `Helpdesk::TicketDrop`) makes two deliveries of the same transition at different times
/// different bodies; Freshdesk renders the body once and its retries resend it
/// (`Va::Webhook::Trigger` hands the rendered `params` to the throttler with a retry count), so a
/// retry stays identical.
///
/// `performer_id` (`{{event_performer.id}}`) names who made the change, for the loop guard:
/// freshconsult's `Va::Webhook::Util#substitute_placeholders_in_format` adds
/// `'event_performer' => doer` to the template context when the rule has a doer, and
/// `UserDrop#id` is the user's id. Unconfirmed on today's service (see
/// docs/integrations/freshdesk.md): an empty or unrendered value names no one, so the event
/// then runs its rules as before.
pub fn content(event: &str) -> Value {
    json!({ "freshdesk_webhook": {
        "supportopsd_event": event,
        "triggered_event": "{{triggered_event}}",
        "ticket_id": "{{ticket.id}}",
        "ticket_updated_at": "{{ticket.modified_on}}",
        "ticket_subject": "{{ticket.subject}}",
        "ticket_url": "{{ticket.url}}",
        "ticket_status": "{{ticket.status}}",
        "ticket_status_id": "{{ticket.status_id}}",
        "ticket_priority": "{{ticket.priority}}",
        "ticket_source": "{{ticket.source}}",
        "ticket_type": "{{ticket.ticket_type}}",
        "ticket_tags": "{{ticket.tags}}",
        "requester_name": "{{ticket.requester.name}}",
        "requester_email": "{{ticket.requester.email}}",
        "agent_name": "{{ticket.agent.name}}",
        "agent_email": "{{ticket.agent.email}}",
        "performer_id": "{{event_performer.id}}",
    }})
}

/// The `trigger_webhook` action posting [`content`] to `url` with the shared secret.
pub fn webhook_action(event: &str, url: &str, secret: &str) -> Value {
    let mut headers = Map::new();
    headers.insert(
        FRESHDESK_SECRET_HEADER.to_owned(),
        Value::String(secret.to_owned()),
    );
    json!({
        "field_name": "trigger_webhook",
        "request_type": "POST",
        "url": url,
        "content_layout": "2",
        "content_type": "JSON",
        "custom_headers": Value::Object(headers),
        "content": content(event),
    })
}

/// A condition that holds for every ticket: priority is one of Freshdesk's four (there are no
/// custom priorities), whatever the status, custom ones included. Freshdesk requires at least
/// one condition set.
fn any_ticket() -> Value {
    json!([{
        "name": "condition_set_1",
        "match_type": "any",
        "properties": [{
            "resource_type": "ticket",
            "field_name": "priority",
            "operator": "in",
            "value": [1, 2, 3, 4],
        }],
    }])
}

/// The "ticket updates" events (`events`) of the rule delivering `event`.
fn update_events(event: &str) -> Value {
    match event {
        "ticket_resolved" => json!([{ "field_name": "status", "from": "--", "to": 4 }]),
        "ticket_closed" => json!([{ "field_name": "status", "from": "--", "to": 5 }]),
        // `--` is "any" (Freshdesk `Admin::AutomationConstants::ANY_NONE`).
        "note_created" => json!([{ "field_name": "note_type", "value": "--" }]),
        _ => json!([
            { "field_name": "status", "from": "--", "to": "--" },
            { "field_name": "priority", "from": "--", "to": "--" },
        ]),
    }
}

/// One rule supportopsd wants: its automation type and body.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRule {
    /// Automation type (1 or 4).
    pub ty: u8,
    /// The event it delivers.
    pub event: String,
    /// Its name (the body's `name`).
    pub name: String,
    /// What is POSTed or PUT.
    pub body: Value,
}

/// The rules delivering `event` to `url` (one, or two for the events the System can cause).
pub fn desired_rules(marker: &str, event: &str, url: &str, secret: &str) -> Vec<DesiredRule> {
    let Some(ty) = rule_type(event) else {
        return Vec::new();
    };
    let key = secret_key(secret);
    let one = |performer: Option<u8>| {
        let system = performer == Some(PERFORMER_SYSTEM);
        let name = rule_name(marker, event, system, &key);
        let by = if system {
            ", changes made by the System"
        } else {
            ""
        };
        let mut rule = json!({
            "name": name,
            "description": format!(
                "Managed by supportopsd ({marker}): posts `{event}`{by} to supportopsd. Changes are overwritten; remove the integration's [webhook] to delete it."
            ),
            "active": true,
            "conditions": any_ticket(),
            "actions": [webhook_action(event, url, secret)],
        });
        if let Some(m) = rule.as_object_mut() {
            match performer {
                Some(p) => {
                    m.insert("performer".into(), json!({ "type": p }));
                    m.insert("events".into(), update_events(event));
                }
                // First, so that an account whose ticket-creation rules run in "first
                // matching rule" mode still runs it.
                None => {
                    m.insert("position".into(), json!(1));
                }
            }
        }
        DesiredRule {
            ty,
            event: event.to_owned(),
            name,
            body: rule,
        }
    };
    if ty == TICKET_CREATION {
        vec![one(None)]
    } else {
        performers(event).iter().map(|p| one(Some(*p))).collect()
    }
}

/// Whether a rule as Freshdesk returns it does what `desired` does ([`mismatch`] finds
/// nothing).
pub fn matches(live: &Value, desired: &Value) -> bool {
    mismatch(live, desired).is_none()
}

/// What differs between a rule as Freshdesk returns it and `desired`, by meaning: the name,
/// active, the conditions, events and performer, and one webhook action with the same URL,
/// method, content type, body and (when echoed) secret header. Read-only and added fields
/// (`id`, `position`, timestamps, `affected_tickets_count`, …) are ignored; an `outdated` rule
/// never matches (it stops firing). `None` when nothing differs.
pub fn mismatch(live: &Value, desired: &Value) -> Option<String> {
    if truthy(live.get("outdated")) == Some(true) {
        return Some("the rule is outdated (it names a field that no longer exists)".into());
    }
    if truthy(live.get("active")) != Some(true) {
        return Some("the rule is not active".into());
    }
    for key in ["name", "conditions", "events", "performer"] {
        if !same(set(live.get(key)), set(desired.get(key))) {
            return Some(format!("`{key}` differs"));
        }
    }
    let (Some(live_actions), Some(want_actions)) = (
        live.get("actions").and_then(Value::as_array),
        desired.get("actions").and_then(Value::as_array),
    ) else {
        return Some("`actions` is missing".into());
    };
    if live_actions.len() != want_actions.len() {
        return Some("`actions` differs".into());
    }
    live_actions
        .iter()
        .zip(want_actions)
        .find_map(|(l, w)| action_mismatch(l, w))
}

/// `null`, `[]` and `{}` all mean "not set" (a type 1 rule has no events or performer).
fn set(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    })
}

/// A boolean given as `true` or `"true"`.
fn truthy(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Equal by meaning: a number and a numeric string are the same, a boolean and its text are
/// the same, an object matches when every key `want` has that `live` echoes is the same (keys
/// only one side has are not drift: Freshdesk adds some and may not echo others), arrays match
/// element by element.
pub fn same(live: Option<&Value>, want: Option<&Value>) -> bool {
    match (live, want) {
        (None, None) => true,
        (Some(l), Some(w)) => same_value(l, w),
        _ => false,
    }
}

fn same_value(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| l.get(k).is_none_or(|lv| same_value(lv, wv))),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(a, b)| same_value(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.trim().parse::<f64>().is_ok_and(|x| Some(x) == n.as_f64())
        }
        (Value::String(s), Value::Bool(b)) | (Value::Bool(b), Value::String(s)) => {
            s.trim().parse::<bool>().ok() == Some(*b)
        }
        (a, b) => a == b,
    }
}

/// A header value Freshdesk did not echo: absent, empty, or masked (`*****`).
pub fn hidden(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().chars().all(|c| c == '*'),
        _ => false,
    }
}

fn action_mismatch(live: &Value, want: &Value) -> Option<String> {
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(|s| s.trim().to_ascii_uppercase())
    };
    if live.get("field_name") != want.get("field_name") {
        return Some("the action is not `trigger_webhook`".into());
    }
    if live.get("url") != want.get("url") {
        return Some("the webhook URL differs".into());
    }
    for k in ["request_type", "content_type"] {
        if let Some(l) = text(live, k)
            && text(want, k) != Some(l)
        {
            return Some(format!("the webhook's `{k}` differs"));
        }
    }
    // The secret header: compared when Freshdesk echoes its value.
    let lower = |v: Option<&Value>| -> Map<String, Value> {
        v.and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let live_headers = lower(live.get("custom_headers"));
    let want_headers = lower(want.get("custom_headers"));
    for (k, w) in &want_headers {
        let l = live_headers.get(k);
        if !hidden(l) && l != Some(w) {
            return Some(format!("the webhook's `{k}` header differs"));
        }
    }
    // Freshdesk may hand the content back as a JSON string.
    let live_content = match live.get("content") {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok(),
        other => other.cloned(),
    };
    if live_content.as_ref() != want.get("content") {
        return Some("the webhook's body differs".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body the user documentation shows is the one the rules post.
    #[test]
    fn the_documented_body_is_the_posted_one() {
        let doc = include_str!("../../../docs/integrations/freshdesk.md");
        let start = doc
            .find("```json\n{ \"freshdesk_webhook\"")
            .expect("body in the docs")
            + 8;
        let end = start + doc[start..].find("```").expect("end of block");
        let documented: Value = serde_json::from_str(&doc[start..end]).expect("JSON");
        assert_eq!(documented, content("ticket_updated"));
    }

    #[test]
    fn markers_match_exactly() {
        assert!(owned_by(
            "supportopsd:fd ticket_created #1a2b3c4d",
            "supportopsd:fd"
        ));
        assert!(owned_by("supportopsd:fd", "supportopsd:fd"));
        assert!(!owned_by(
            "supportopsd:fd-2 ticket_created #1a2b3c4d",
            "supportopsd:fd"
        ));
        assert!(!owned_by("Escalate VIPs", "supportopsd:fd"));
        for name in [
            "supportopsd:fd ticket_closed #1a2b3c4d",
            "supportopsd:fd ticket_closed (system) #1a2b3c4d",
            "supportopsd:fd ticket_closed",
        ] {
            assert_eq!(
                event_of(name, "supportopsd:fd").as_deref(),
                Some("ticket_closed"),
                "{name}"
            );
        }
    }

    fn one(event: &str, system: bool) -> Value {
        desired_rules("supportopsd:fd", event, "https://h/x", "s3")
            .into_iter()
            .find(|r| r.name.contains("(system)") == system)
            .expect("rule")
            .body
    }

    #[test]
    fn rules_per_event() {
        let created = desired_rules("supportopsd:fd", "ticket_created", "https://h/x", "s3");
        assert_eq!(created.len(), 1);
        let r = &created[0].body;
        assert!(r.get("events").is_none() && r.get("performer").is_none());
        assert_eq!(
            r["position"],
            json!(1),
            "first, for \"first matching rule\" accounts"
        );
        // Every event the System can cause gets a System twin.
        for event in ["ticket_updated", "ticket_resolved", "ticket_closed"] {
            let rules = desired_rules("supportopsd:fd", event, "https://h/x", "s3");
            let performers: Vec<&Value> =
                rules.iter().map(|r| &r.body["performer"]["type"]).collect();
            assert_eq!(performers, [&json!(3), &json!(4)], "{event}");
            assert!(
                rules
                    .iter()
                    .all(|r| r.ty == TICKET_UPDATES && r.event == event)
            );
        }
        assert_eq!(
            desired_rules("supportopsd:fd", "note_created", "https://h/x", "s3").len(),
            1
        );
        let r = one("ticket_resolved", false);
        assert_eq!(r["events"][0]["to"], json!(4));
        assert_eq!(
            r["actions"][0]["custom_headers"][FRESHDESK_SECRET_HEADER],
            "s3"
        );
        assert_eq!(
            r["actions"][0]["content"]["freshdesk_webhook"]["supportopsd_event"],
            "ticket_resolved"
        );
        // No status filter: the condition is on priority, which has no custom values.
        let conditions = r["conditions"].to_string();
        assert!(!conditions.contains("status"), "{conditions}");
        assert_eq!(rule_type("contact_created"), None);
        assert!(desired_rules("supportopsd:fd", "contact_created", "https://h/x", "s3").is_empty());
        assert_eq!(rule_type("note_created"), Some(TICKET_UPDATES));
    }

    #[test]
    fn a_new_secret_renames_the_rules_without_revealing_it() {
        let a = one("ticket_created", false);
        let b = desired_rules("supportopsd:fd", "ticket_created", "https://h/x", "other")[0]
            .body
            .clone();
        assert_ne!(a["name"], b["name"]);
        let key = secret_key("s3");
        assert_eq!(key.len(), 8);
        assert!(!key.contains("s3") && a["name"].as_str().is_some_and(|n| n.ends_with(&key)));
    }

    /// What Freshdesk's automation API is documented (or seen) to echo: numbers as strings,
    /// header values hidden, keys of its own added.
    fn echoed(want: &Value) -> Value {
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
        let mut live = want.clone();
        for k in ["conditions", "events", "performer"] {
            if let Some(v) = want.get(k) {
                live[k] = stringify(v);
            }
        }
        live["id"] = json!(7);
        live["position"] = json!(3);
        live["affected_tickets_count"] = json!(0);
        live["outdated"] = json!(false);
        live["summary"] = json!({ "performer": "Agent or Requester" });
        if let Some(a) = live["actions"][0].as_object_mut() {
            a.remove("custom_headers");
            a.insert(
                "content".into(),
                Value::String(want["actions"][0]["content"].to_string()),
            );
        }
        live
    }

    #[test]
    fn matching_is_by_meaning() {
        for (event, system) in [
            ("ticket_updated", false),
            ("ticket_closed", true),
            ("ticket_created", false),
            ("note_created", false),
        ] {
            let want = one(event, system);
            assert_eq!(mismatch(&echoed(&want), &want), None, "{event}");
        }
        let want = one("ticket_updated", false);
        // A header echoed with a masked or empty value is taken on trust.
        for masked in [json!("********"), json!(""), Value::Null] {
            let mut live = want.clone();
            live["actions"][0]["custom_headers"][FRESHDESK_SECRET_HEADER] = masked.clone();
            assert!(matches(&live, &want), "{masked}");
        }
        // A ticket-creation rule read back with empty events and performer still matches.
        let want1 = one("ticket_created", false);
        let mut live1 = want1.clone();
        live1["events"] = json!([]);
        live1["performer"] = Value::Null;
        assert!(matches(&live1, &want1));
    }

    #[test]
    fn matching_still_sees_edits() {
        let want = one("ticket_updated", false);
        let live = echoed(&want);
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "url",
                Box::new(|l| l["actions"][0]["url"] = json!("https://elsewhere/")),
            ),
            ("inactive", Box::new(|l| l["active"] = json!(false))),
            ("outdated", Box::new(|l| l["outdated"] = json!(true))),
            (
                "performer",
                Box::new(|l| l["performer"]["type"] = json!("1")),
            ),
            ("events", Box::new(|l| l["events"][0]["to"] = json!("5"))),
            (
                "condition",
                Box::new(|l| l["conditions"][0]["properties"][0]["value"] = json!(["1"])),
            ),
            (
                "secret",
                Box::new(|l| {
                    l["actions"][0]["custom_headers"] = json!({ FRESHDESK_SECRET_HEADER: "other" });
                }),
            ),
            (
                "body",
                Box::new(|l| l["actions"][0]["content"] = json!("{}")),
            ),
            (
                "method",
                Box::new(|l| l["actions"][0]["request_type"] = json!("GET")),
            ),
            ("name", Box::new(|l| l["name"] = json!("Renamed"))),
        ];
        for (what, edit) in edits {
            let mut edited = live.clone();
            edit(&mut edited);
            assert!(mismatch(&edited, &want).is_some(), "{what}");
        }
    }
}
