//! The automation rules supportopsd owns on a Freshdesk account: one per delivered event, each
//! with a `trigger_webhook` action that posts the body [`super::events`] documents to the
//! integration's URL, with the shared secret in [`FRESHDESK_SECRET_HEADER`].
//!
//! Freshdesk has no webhook subscription API; automation rules are the only way to make it call
//! out (`/api/v2/automations/{type}/rules`).
//!
//! | event | rule type | what fires it |
//! |---|---|---|
//! | `ticket_created` | 1 (ticket creation) | every new ticket |
//! | `ticket_updated` | 4 (ticket updates) | status or priority changed |
//! | `ticket_resolved` | 4 | status changed to 4 (resolved) |
//! | `ticket_closed` | 4 | status changed to 5 (closed) |
//! | `note_created` | 4 | a note was added (public or private) |
//!
//! Contact events cannot be delivered: automation rules fire on tickets only.
//!
//! Every rule is named `supportopsd:<integration> <event>` (the ownership marker, see
//! [`crate::platforms::connector::marker`]) and says so in its description; only rules whose
//! name carries the marker are ever changed or deleted.

use serde_json::{Map, Value, json};

use crate::platforms::inbound::FRESHDESK_SECRET_HEADER;

/// Automation type of "ticket creation" rules.
pub const TICKET_CREATION: u8 = 1;
/// Automation type of "ticket updates" rules.
pub const TICKET_UPDATES: u8 = 4;
/// The automation types supportopsd creates rules in.
pub const RULE_TYPES: [u8; 2] = [TICKET_CREATION, TICKET_UPDATES];

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

/// The name of the rule delivering `event` for the integration marked `marker`.
pub fn rule_name(marker: &str, event: &str) -> String {
    format!("{marker} {event}")
}

/// Whether a rule name carries `marker` (exactly: `supportopsd:fd` does not own
/// `supportopsd:fd-2 …`).
pub fn owned_by(name: &str, marker: &str) -> bool {
    name == marker
        || name
            .strip_prefix(marker)
            .is_some_and(|rest| rest.starts_with(' '))
}

/// The event an owned rule's name delivers (`supportopsd:fd ticket_created` → `ticket_created`).
pub fn event_of(name: &str, marker: &str) -> Option<String> {
    name.strip_prefix(marker)
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
}

/// The JSON body the rule's webhook posts (placeholders rendered by Freshdesk).
pub fn content(event: &str) -> Value {
    json!({ "freshdesk_webhook": {
        "supportopsd_event": event,
        "triggered_event": "{{triggered_event}}",
        "ticket_id": "{{ticket.id}}",
        "ticket_subject": "{{ticket.subject}}",
        "ticket_url": "{{ticket.url}}",
        "ticket_status": "{{ticket.status}}",
        "ticket_priority": "{{ticket.priority}}",
        "ticket_source": "{{ticket.source}}",
        "ticket_type": "{{ticket.ticket_type}}",
        "ticket_tags": "{{ticket.tags}}",
        "requester_name": "{{ticket.requester.name}}",
        "requester_email": "{{ticket.requester.email}}",
        "agent_name": "{{ticket.agent.name}}",
        "agent_email": "{{ticket.agent.email}}",
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

/// A condition that holds for every ticket in one of the four standard statuses (Freshdesk
/// requires at least one condition set).
fn any_ticket() -> Value {
    json!([{
        "name": "condition_set_1",
        "match_type": "any",
        "properties": [{
            "resource_type": "ticket",
            "field_name": "status",
            "operator": "in",
            "value": [2, 3, 4, 5],
        }],
    }])
}

/// The "ticket updates" events (`events`) of the rule delivering `event`.
fn update_events(event: &str) -> Value {
    match event {
        "ticket_resolved" => json!([{ "field_name": "status", "from": "--", "to": 4 }]),
        "ticket_closed" => json!([{ "field_name": "status", "from": "--", "to": 5 }]),
        "note_created" => json!([{ "field_name": "note_type", "value": "--" }]),
        _ => json!([
            { "field_name": "status", "from": "--", "to": "--" },
            { "field_name": "priority", "from": "--", "to": "--" },
        ]),
    }
}

/// The complete rule body delivering `event` to `url` (what is POSTed or PUT).
pub fn desired_rule(marker: &str, event: &str, url: &str, secret: &str) -> Value {
    let mut rule = json!({
        "name": rule_name(marker, event),
        "description": format!(
            "Managed by supportopsd ({marker}): posts `{event}` to supportopsd. Changes are overwritten; remove the integration's [webhook] to delete it."
        ),
        "active": true,
        "conditions": any_ticket(),
        "actions": [webhook_action(event, url, secret)],
    });
    if rule_type(event) == Some(TICKET_UPDATES)
        && let Some(m) = rule.as_object_mut()
    {
        // Agent or requester: any person's change (not other automations).
        m.insert("performer".into(), json!({ "type": 3 }));
        m.insert("events".into(), update_events(event));
    }
    rule
}

/// Whether a rule as Freshdesk returns it does what `desired` does: the same name, active, the
/// same conditions, events and performer, and one webhook action with the same URL, method,
/// body and secret header. Read-only fields Freshdesk adds (`id`, `position`, timestamps,
/// `affected_tickets_count`) are ignored; an `outdated` rule never matches (it stops firing).
pub fn matches(live: &Value, desired: &Value) -> bool {
    if live.get("outdated").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    if live.get("active").and_then(Value::as_bool) != Some(true) {
        return false;
    }
    // `null`, `[]` and `{}` all mean "not set" (a type 1 rule has no events or performer).
    let set = |v: Option<&Value>| -> Option<Value> {
        v.filter(|v| match v {
            Value::Null => false,
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => true,
        })
        .cloned()
    };
    for key in ["name", "conditions", "events", "performer"] {
        if set(live.get(key)) != set(desired.get(key)) {
            return false;
        }
    }
    let (Some(live_actions), Some(want_actions)) = (
        live.get("actions").and_then(Value::as_array),
        desired.get("actions").and_then(Value::as_array),
    ) else {
        return false;
    };
    live_actions.len() == want_actions.len()
        && live_actions
            .iter()
            .zip(want_actions)
            .all(|(l, w)| action_matches(l, w))
}

fn action_matches(live: &Value, want: &Value) -> bool {
    let same = |k: &str| live.get(k) == want.get(k);
    let headers_same = {
        let lower = |v: Option<&Value>| -> Map<String, Value> {
            v.and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        lower(live.get("custom_headers")) == lower(want.get("custom_headers"))
    };
    // Freshdesk may hand the content back as a JSON string.
    let content_same = match (live.get("content"), want.get("content")) {
        (Some(Value::String(s)), Some(w)) => {
            serde_json::from_str::<Value>(s).ok().as_ref() == Some(w)
        }
        (l, w) => l == w,
    };
    ["field_name", "request_type", "url", "content_type"]
        .into_iter()
        .all(same)
        && headers_same
        && content_same
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
        assert!(owned_by("supportopsd:fd ticket_created", "supportopsd:fd"));
        assert!(owned_by("supportopsd:fd", "supportopsd:fd"));
        assert!(!owned_by(
            "supportopsd:fd-2 ticket_created",
            "supportopsd:fd"
        ));
        assert!(!owned_by("Escalate VIPs", "supportopsd:fd"));
        assert_eq!(
            event_of("supportopsd:fd ticket_closed", "supportopsd:fd").as_deref(),
            Some("ticket_closed")
        );
    }

    #[test]
    fn rules_per_event() {
        let r = desired_rule("supportopsd:fd", "ticket_created", "https://h/x", "s3");
        assert!(r.get("events").is_none() && r.get("performer").is_none());
        let r = desired_rule("supportopsd:fd", "ticket_resolved", "https://h/x", "s3");
        assert_eq!(r["events"][0]["to"], json!(4));
        assert_eq!(
            r["actions"][0]["custom_headers"][FRESHDESK_SECRET_HEADER],
            "s3"
        );
        assert_eq!(
            r["actions"][0]["content"]["freshdesk_webhook"]["supportopsd_event"],
            "ticket_resolved"
        );
        assert_eq!(rule_type("contact_created"), None);
        assert_eq!(rule_type("note_created"), Some(TICKET_UPDATES));
    }

    #[test]
    fn matching_ignores_read_only_fields_and_sees_edits() {
        let want = desired_rule("supportopsd:fd", "ticket_updated", "https://h/x", "s3");
        let mut live = want.clone();
        live["id"] = json!(7);
        live["position"] = json!(3);
        live["affected_tickets_count"] = json!(0);
        live["outdated"] = json!(false);
        assert!(matches(&live, &want));
        // The content handed back as a string still matches.
        let mut as_text = live.clone();
        as_text["actions"][0]["content"] = Value::String(want["actions"][0]["content"].to_string());
        assert!(matches(&as_text, &want));

        // A ticket-creation rule read back with empty events and performer still matches.
        let want1 = desired_rule("supportopsd:fd", "ticket_created", "https://h/x", "s3");
        let mut live1 = want1.clone();
        live1["events"] = json!([]);
        live1["performer"] = Value::Null;
        assert!(matches(&live1, &want1));

        let mut edited = live.clone();
        edited["actions"][0]["url"] = json!("https://elsewhere/");
        assert!(!matches(&edited, &want));
        let mut off = live.clone();
        off["active"] = json!(false);
        assert!(!matches(&off, &want));
        let mut outdated = live.clone();
        outdated["outdated"] = json!(true);
        assert!(!matches(&outdated, &want));
        let mut secret = live;
        secret["actions"][0]["custom_headers"] = json!({});
        assert!(!matches(&secret, &want));
    }
}
