//! Freshdesk events and the normalisation of their webhook bodies.
//!
//! Freshdesk has no webhook subscription API, so the body is ours to define. supportopsd
//! registers one automation rule per event (type 1 "ticket creation" for `ticket_created`,
//! type 4 "ticket updates" for the others) whose `trigger_webhook` action posts this JSON
//! (an "advanced" content layout; the values are Freshdesk placeholders):
//!
//! ```json
//! { "freshdesk_webhook": {
//!     "supportopsd_event": "ticket_updated",
//!     "triggered_event":   "{{triggered_event}}",
//!     "ticket_id":         "{{ticket.id}}",
//!     "ticket_updated_at": "{{ticket.modified_on}}",
//!     "ticket_subject":    "{{ticket.subject}}",
//!     "ticket_url":        "{{ticket.url}}",
//!     "ticket_status":     "{{ticket.status}}",
//!     "ticket_status_id":  "{{ticket.status_id}}",
//!     "ticket_priority":   "{{ticket.priority}}",
//!     "ticket_source":     "{{ticket.source}}",
//!     "ticket_type":       "{{ticket.ticket_type}}",
//!     "ticket_tags":       "{{ticket.tags}}",
//!     "requester_name":    "{{ticket.requester.name}}",
//!     "requester_email":   "{{ticket.requester.email}}",
//!     "agent_name":        "{{ticket.agent.name}}",
//!     "agent_email":       "{{ticket.agent.email}}",
//!     "performer_id":      "{{event_performer.id}}" } }
//! ```
//!
//! How it is read:
//!
//! - Every value arrives as a string; an empty string means "no value" and becomes `null`.
//! - `ticket_id` becomes the integer `ticket.id` (required).
//! - Status, priority and source arrive as display names ("Waiting on Customer", "Urgent",
//!   "Email"). They become the numeric API codes (`ticket.status`…) and the names are kept as
//!   `ticket.status_name`… A custom status (code 6 and above) has no fixed name; its code is taken
//!   from `ticket_status_id` (`{{ticket.status_id}}`, the number; `Helpdesk::TicketDrop#status_id`
//!   in Freshdesk's own source), else from `triggered_event` when the event reports the status
//!   change, else it stays `null`.
//! - `triggered_event` is Freshdesk's pseudo-JSON (`{status:{from:4,to:6}}`,
//!   `{ticket_action:created}`, `{note_type:private}`): every `{from, to}` entry becomes a
//!   change, `note_type` describes the note of `note_created`.
//! - `supportopsd_event` is a literal written into each rule, so the daemon knows which rule
//!   fired; when present it must name the event being normalised. Bodies without it (such as the
//!   ones a hand-made rule posts) are accepted.
//! - `ticket_updated_at` (`{{ticket.modified_on}}`, the ticket's last update) is not read into
//!   the event: it is there so that two deliveries of the same transition differ, and so get
//!   different ids (the id is the body's digest, see [`super::webhook`]).
//! - The description is deliberately not sent: HTML text pasted into a JSON body may break it.
//!   Rules needing it re-fetch the ticket.
//! - Freshdesk sends no event id and no time, so `id` and `time` are `None`.
//! - `performer_id` (`{{event_performer.id}}`, the doer's user id in Freshdesk's own source;
//!   unconfirmed on today's service) is the event's actor, which the loop guard compares with
//!   the agent id of the API key (`agents/me`). The System (a time trigger) has no doer, so it
//!   arrives empty; empty or unrendered (`{{…}}`), it names no one and the event runs its rules:
//!   rules should still not re-trigger themselves by their conditions.
//!
//! Contact events exist in Freshdesk but automation rules only fire on tickets, so they are
//! catalogued as not deliverable.

use serde_json::{Map, Value, json};

use super::{PRIORITY_CODES, SOURCE_CODES, STATUS_CODES};
use crate::platforms::catalog::fields;
use crate::platforms::{Actors, EventSpec, FieldSpec, NormalizeError, Normalized};
use crate::rules::Allowed;

/// The codes Freshdesk fixes (its API's enums; custom statuses take 6 and above), as
/// normalisation yields them ([`crate::platforms::PlatformKind::values`]).
pub(crate) const VALUES: &[(&str, Allowed)] = &[
    (
        "ticket.status",
        Allowed::Codes {
            codes: STATUS_CODES,
            custom_from: Some(6),
        },
    ),
    (
        "ticket.priority",
        Allowed::Codes {
            codes: PRIORITY_CODES,
            custom_from: None,
        },
    ),
    (
        "ticket.source",
        Allowed::Codes {
            codes: SOURCE_CODES,
            custom_from: None,
        },
    ),
];

/// The fields given (`"path": Type`, as in `fields!`), then the ticket, requester and agent
/// fields every ticket-based event carries.
macro_rules! ticket_fields {
    ($($path:tt : $ty:ident),* $(,)?) => {
        fields![
            $($path: $ty,)*
            "ticket.id": Integer,
            "ticket.subject": String,
            "ticket.url": String,
            "ticket.status": Integer,
            "ticket.status_name": String,
            "ticket.priority": Integer,
            "ticket.priority_name": String,
            "ticket.source": Integer,
            "ticket.source_name": String,
            "ticket.type": String,
            "ticket.tags": StringList,
            "requester.name": String,
            "requester.email": String,
            "agent.name": String,
            "agent.email": String,
        ]
    };
}

const CONTACT_FIELDS: &[FieldSpec] = fields![
    "contact.id": Integer,
    "contact.name": String,
    "contact.email": String,
    "contact.phone": String,
    "contact.mobile": String,
    "contact.company_id": Integer,
    "contact.created_at": Timestamp,
    "contact.updated_at": Timestamp,
];

/// Every Freshdesk event.
/// Who made the change: `performer_id` (`{{event_performer.id}}`, empty when the System did),
/// compared with the agent id of the API key (see [`super::registration::content`]).
const PERFORMER: Actors = Actors::Each(&["payload.freshdesk_webhook.performer_id"]);
/// Contact events are never delivered.
const NO_PERFORMER: Actors =
    Actors::Nobody("automation rules fire on tickets only, so this event is never delivered");

pub(crate) static EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "ticket_created",
        description: "A ticket was created (automation rule on ticket creation)",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &[],
        deliverable: true,
        actors: PERFORMER,
    },
    EventSpec {
        name: "ticket_updated",
        description: "A ticket's properties changed (automation rule on ticket updates)",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &["status", "priority"],
        deliverable: true,
        actors: PERFORMER,
    },
    EventSpec {
        name: "ticket_resolved",
        description: "A ticket's status changed to resolved (4)",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &["status"],
        deliverable: true,
        actors: PERFORMER,
    },
    EventSpec {
        name: "ticket_closed",
        description: "A ticket's status changed to closed (5)",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &["status"],
        deliverable: true,
        actors: PERFORMER,
    },
    EventSpec {
        name: "note_created",
        description: "A note was added to a ticket (the ticket-update rule's \"note is added\" event)",
        primary: "note",
        fields: ticket_fields!["note.type": String, "note.private": Bool, "note.ticket_id": Integer],
        changes: &[],
        deliverable: true,
        actors: PERFORMER,
    },
    EventSpec {
        name: "contact_created",
        description: "A contact was created; not deliverable: Freshdesk automation rules (the only webhook source) fire on tickets only",
        primary: "contact",
        fields: CONTACT_FIELDS,
        changes: &[],
        deliverable: false,
        actors: NO_PERFORMER,
    },
    EventSpec {
        name: "contact_updated",
        description: "A contact was updated; not deliverable: Freshdesk automation rules (the only webhook source) fire on tickets only",
        primary: "contact",
        fields: CONTACT_FIELDS,
        changes: &[],
        deliverable: false,
        actors: NO_PERFORMER,
    },
];

/// Turns the body an automation rule posted (see the module docs) into the event context.
pub(crate) fn normalize(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError> {
    if !event.deliverable {
        return Err(err(format!(
            "Freshdesk cannot deliver `{}`: automation rules only fire on tickets",
            event.name
        )));
    }
    let root = payload
        .as_object()
        .ok_or_else(|| err("expected a JSON object at the top level".into()))?;
    let body = root
        .get("freshdesk_webhook")
        .and_then(Value::as_object)
        .ok_or_else(|| err("expected an object at `freshdesk_webhook`".into()))?;

    if let Some(declared) = body.get("supportopsd_event") {
        let declared = declared.as_str().ok_or_else(|| {
            err("expected a string at `freshdesk_webhook.supportopsd_event`".into())
        })?;
        if declared != event.name {
            return Err(err(format!(
                "the payload is a `{declared}` delivery, not `{}`",
                event.name
            )));
        }
    }

    let triggered = match body.get("triggered_event") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::String(s)) => match parse_pseudo_json(s) {
            Ok(Value::Object(map)) => map,
            Ok(_) => Map::new(),
            Err(e) => return Err(err(format!("`freshdesk_webhook.triggered_event`: {e}"))),
        },
        Some(_) => {
            return Err(err(
                "expected a string at `freshdesk_webhook.triggered_event`".into(),
            ));
        }
    };

    let mut changes = Map::new();
    for (key, value) in &triggered {
        if let Some(change) = value.as_object()
            && (change.contains_key("from") || change.contains_key("to"))
        {
            let from = change.get("from").cloned().unwrap_or(Value::Null);
            let to = change.get("to").cloned().unwrap_or(Value::Null);
            changes.insert(key.clone(), json!({ "from": from, "to": to }));
        }
    }

    let ticket_id = match body.get("ticket_id") {
        Some(v) => integer(v).ok_or_else(|| {
            err(format!(
                "expected a ticket id at `freshdesk_webhook.ticket_id`, found {}",
                short(v)
            ))
        })?,
        None => return Err(err("missing `freshdesk_webhook.ticket_id`".into())),
    };

    let changed_to = |field: &str| {
        changes
            .get(field)
            .and_then(|c| c.get("to"))
            .and_then(Value::as_i64)
    };
    let (status, status_name) = coded(body.get("ticket_status"), STATUS_CODES);
    // The number itself (`{{ticket.status_id}}`), which a custom status's name cannot give.
    let status = body
        .get("ticket_status_id")
        .and_then(integer)
        .or(status)
        .or_else(|| changed_to("status"));
    let (priority, priority_name) = coded(body.get("ticket_priority"), PRIORITY_CODES);
    let priority = priority.or_else(|| changed_to("priority"));
    let (source, source_name) = coded(body.get("ticket_source"), SOURCE_CODES);

    let expected_status = match event.name {
        "ticket_resolved" => Some(4),
        "ticket_closed" => Some(5),
        _ => None,
    };
    if let (Some(expected), Some(actual)) = (expected_status, status)
        && expected != actual
    {
        return Err(err(format!(
            "a `{}` payload must have status {expected}, found {actual}",
            event.name
        )));
    }

    let tags = match text(body.get("ticket_tags")) {
        Value::String(s) => Value::Array(
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.to_owned()))
                .collect(),
        ),
        _ => Value::Array(Vec::new()),
    };

    let ticket = json!({
        "id": ticket_id,
        "subject": text(body.get("ticket_subject")),
        "url": text(body.get("ticket_url")),
        "status": status,
        "status_name": status_name,
        "priority": priority,
        "priority_name": priority_name,
        "source": source,
        "source_name": source_name,
        "type": text(body.get("ticket_type")),
        "tags": tags,
    });
    let requester = json!({
        "name": text(body.get("requester_name")),
        "email": text(body.get("requester_email")),
    });
    let agent = json!({
        "name": text(body.get("agent_name")),
        "email": text(body.get("agent_email")),
    });

    let mut objects = Map::new();
    if event.name == "note_created" {
        let note_type = triggered
            .get("note_type")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let private = match note_type.as_deref() {
            Some("private") => Value::Bool(true),
            Some("public") => Value::Bool(false),
            _ => Value::Null,
        };
        objects.insert(
            "note".into(),
            json!({ "type": note_type, "private": private, "ticket_id": ticket_id }),
        );
    }
    objects.insert("ticket".into(), ticket);
    objects.insert("requester".into(), requester);
    objects.insert("agent".into(), agent);

    Ok(Normalized {
        id: None,
        time: None,
        actors: event.actors.read(&objects, payload),
        objects,
        changes,
    })
}

fn err(message: String) -> NormalizeError {
    NormalizeError(message)
}

/// A short rendering of a value for error messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(40).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// A placeholder's text: a non-empty trimmed string, else `null`.
fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.trim().to_owned()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        _ => Value::Null,
    }
}

/// An integer given as a number or a numeric string.
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A numeric enum rendered as a display name ("Waiting on Customer") or a number:
/// `(code, name)`, either of which may be unknown.
fn coded(v: Option<&Value>, codes: &[(&str, i64)]) -> (Option<i64>, Option<String>) {
    let Some(v) = v else { return (None, None) };
    if let Some(n) = integer(v) {
        let name = codes
            .iter()
            .find(|(_, c)| *c == n)
            .map(|(name, _)| display(name));
        return (Some(n), name);
    }
    let Value::String(s) = v else {
        return (None, None);
    };
    let name = s.trim();
    if name.is_empty() {
        return (None, None);
    }
    let key = name.to_ascii_lowercase().replace([' ', '-'], "_");
    let code = codes.iter().find(|(n, _)| *n == key).map(|(_, c)| *c);
    (code, Some(name.to_owned()))
}

/// `feedback_widget` → `Feedback widget`.
fn display(code_name: &str) -> String {
    let spaced = code_name.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Parses Freshdesk's `{{triggered_event}}` rendering: `{status:{from:4,to:6}}`. Keys and
/// scalars are bare text (quotes, if any, are dropped); integers become numbers.
pub(crate) fn parse_pseudo_json(input: &str) -> Result<Value, String> {
    const MAX_DEPTH: usize = 8;

    fn value(chars: &[char], pos: &mut usize, depth: usize) -> Result<Value, String> {
        skip_ws(chars, pos);
        if chars.get(*pos) == Some(&'{') {
            if depth >= MAX_DEPTH {
                return Err(format!("nested deeper than {MAX_DEPTH} levels"));
            }
            object(chars, pos, depth + 1)
        } else {
            let start = *pos;
            while let Some(c) = chars.get(*pos) {
                if matches!(c, ',' | '}') {
                    break;
                }
                *pos += 1;
            }
            let raw: String = chars.get(start..*pos).unwrap_or_default().iter().collect();
            Ok(scalar(&raw))
        }
    }

    fn object(chars: &[char], pos: &mut usize, depth: usize) -> Result<Value, String> {
        // At '{'.
        *pos += 1;
        let mut map = Map::new();
        loop {
            skip_ws(chars, pos);
            match chars.get(*pos) {
                None => return Err("unclosed `{`".into()),
                Some('}') => {
                    *pos += 1;
                    return Ok(Value::Object(map));
                }
                Some(',') => {
                    *pos += 1;
                    continue;
                }
                Some(_) => {}
            }
            let start = *pos;
            while let Some(c) = chars.get(*pos) {
                if matches!(c, ':' | ',' | '{' | '}') {
                    break;
                }
                *pos += 1;
            }
            let key: String = chars.get(start..*pos).unwrap_or_default().iter().collect();
            let key = unquote(key.trim()).to_owned();
            if chars.get(*pos) != Some(&':') {
                return Err(format!("expected `:` after key `{key}`"));
            }
            *pos += 1;
            let v = value(chars, pos, depth)?;
            map.insert(key, v);
        }
    }

    fn skip_ws(chars: &[char], pos: &mut usize) {
        while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
            *pos += 1;
        }
    }

    fn unquote(s: &str) -> &str {
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
    }

    fn scalar(raw: &str) -> Value {
        let s = unquote(raw.trim());
        if let Ok(n) = s.parse::<i64>() {
            Value::from(n)
        } else if s.is_empty() || s == "null" {
            Value::Null
        } else {
            Value::String(s.to_owned())
        }
    }

    let chars: Vec<char> = input.chars().collect();
    let mut pos = 0;
    skip_ws(&chars, &mut pos);
    if chars.get(pos) != Some(&'{') {
        return Err("expected `{` at the start".into());
    }
    let v = object(&chars, &mut pos, 1)?;
    skip_ws(&chars, &mut pos);
    if pos < chars.len() {
        return Err("unexpected text after the closing `}`".into());
    }
    Ok(v)
}
