//! Zendesk events and the normalisation of their webhook bodies.
//!
//! Two delivery shapes exist, told apart by `type`:
//!
//! 1. **Event subscriptions** (`type` starts with `zen:event-type:`): Zendesk's fixed envelope
//!    `{ type, account_id, id, time, zendesk_event_version, subject, detail, event }`, where
//!    `detail` is a snapshot of the object and `event` says what changed
//!    (`{ "current": …, "previous": … }` for the `*_changed` types). User and organization events
//!    always come this way. Mapping of our event names to subscription types:
//!    - `user.created` ← `user.created`; `user.updated` ← every other `user.*` type;
//!    - `organization.created` ← `organization.created`; `organization.updated` ← every other
//!      `organization.*` type except `organization.deleted`;
//!    - `ticket.created` ← `ticket.created`; `ticket.updated` ← every other `ticket.*` type;
//!      `ticket.solved` / `ticket.closed` ← `ticket.status_changed` to that status;
//!      `comment.created` ← `ticket.comment_added` (the comment is read from `event.comment`,
//!      or `event` itself: `id`, `body`, `is_public`, `author.id`).
//! 2. **Trigger-connected webhooks** (any other body): the default for ticket and comment events
//!    (config `ticket_events_via`), since ticket event subscriptions are recent and their plan
//!    availability is unclear. supportopsd writes this body into the trigger's
//!    `notification_webhook` action. Zendesk substitutes placeholders into the body as raw text
//!    (its placeholder reference says placeholders sent to a webhook are rendered as plain
//!    text; it documents no JSON escaping), so the body holds **only ids, enum values and
//!    timestamps**: a subject, a name or a comment with a quote or a newline would make it
//!    invalid JSON. Ids are quoted so that an empty placeholder stays valid JSON:
//!
//! ```json
//! { "supportopsd_event": "ticket.updated",
//!   "ticket": { "id": "{{ticket.id}}", "status": "{{ticket.status}}",
//!               "priority": "{{ticket.priority}}", "type": "{{ticket.ticket_type}}",
//!               "via": "{{ticket.via}}", "url": "{{ticket.url}}",
//!               "brand_id": "{{ticket.brand.id}}", "group_id": "{{ticket.group.id}}",
//!               "organization_id": "{{ticket.organization.id}}",
//!               "created_at": "{{ticket.created_at_with_timestamp}}",
//!               "updated_at": "{{ticket.updated_at_with_timestamp}}" },
//!   "requester": { "id": "{{ticket.requester.id}}" },
//!   "assignee":  { "id": "{{ticket.assignee.id}}" },
//!   "current_user": { "id": "{{current_user.id}}" },
//!   "comment": { "id": "{{ticket.latest_comment.id}}",
//!                "public": "{{ticket.latest_comment.is_public}}",
//!                "author_id": "{{ticket.latest_comment.author.id}}" } }
//! ```
//!
//!    The text fields (subject, description, tags, external id, submitter and form, the
//!    requester's and assignee's name and email, the comment body) are **enriched**: when a
//!    rule on the event reads one of them, the delivery is stored with a pending enrichment
//!    and the executor fetches them (`GET /api/v2/tickets/{id}`, the requester and assignee
//!    with `GET /api/v2/users/show_many?ids=…`, and for `comment.created`
//!    `GET /api/v2/tickets/{id}/comments?sort_order=desc&per_page=1`) before the rules are
//!    matched ([`delivery`]).
//!
//! Which fields each mode delivers ([`delivery`]; `validate` refuses a condition or template
//! on a field the configured mode never delivers):
//!
//! | field | `trigger` | `event_subscription` |
//! |---|---|---|
//! | ids, status, priority, type, via, timestamps | delivered | delivered |
//! | `ticket.url` | delivered | never |
//! | `ticket.subject`, `.description`, `.tags`, `.external_id`, `.submitter_id`, `.form_id` | enriched | delivered |
//! | `requester.name`, `.email`, `assignee.name`, `.email` | enriched | never |
//! | `comment.body` | enriched | delivered |
//!
//! `ticket.closed` is refused with `trigger`: Zendesk closes tickets with its solved→closed
//! automation, and "Closed means that the ticket has been locked and cannot be reopened or
//! updated" (support.zendesk.com/hc/en-us/articles/115015611647); no document says a trigger
//! runs on that update, so a trigger for it may never fire. With `event_subscription` the
//! closing is a `ticket.status_changed` event.
//!
//! Decisions common to both shapes:
//!
//! - **Ids are integers.** Event subscriptions send ids as strings (`"6596848315901"`) and
//!   triggers render them as text; both become integers, so they can feed actions
//!   (`assign_ticket` takes integer ids) and match the REST API. A reference id of `0` (Zendesk's
//!   "none", e.g. `organization_id: "0"`) becomes `null`.
//! - Status, priority and type are lower-cased (`"Open"` → `"open"`, `"On-hold"` → `"hold"`), so
//!   both shapes yield the API's values. Empty strings and `-` become `null`.
//! - Trigger bodies carry no previous values: only `ticket.solved` / `ticket.closed` report a
//!   change there (`status` to that value, from `null`). Fields a trigger does not carry are
//!   `null` until enriched.
//! - `id` is the envelope's event id (triggers have none: the webhook uses the digest of the
//!   signed body, never the unsigned invocation header),
//!   `time` the envelope's `time` (triggers: the ticket's `updated_at`), `actors` what the
//!   catalogue names: the trigger's `current_user.id`, the comment author, the subscription's
//!   `detail.actor_id` (`-1`, the system, names no one).

use serde_json::{Map, Value, json};

use crate::platforms::catalog::fields;
use crate::platforms::{Actors, Delivery, EventSpec, FieldSpec, NormalizeError, Normalized};
use crate::rules::Allowed;

const PREFIX: &str = "zen:event-type:";

/// The values Zendesk fixes (its API's enums, docs: the ticket object), lower-cased as
/// normalisation yields them ([`crate::platforms::PlatformKind::values`]).
pub(crate) const VALUES: &[(&str, Allowed)] = &[
    (
        "ticket.status",
        Allowed::Strings(&["new", "open", "pending", "hold", "solved", "closed"]),
    ),
    (
        "ticket.priority",
        Allowed::Strings(&["low", "normal", "high", "urgent"]),
    ),
    (
        "ticket.type",
        Allowed::Strings(&["problem", "incident", "question", "task"]),
    ),
];

/// The fields given (`"path": Type`, as in `fields!`), then the ticket, requester and assignee
/// fields every ticket event carries.
macro_rules! ticket_fields {
    ($($path:tt : $ty:ident),* $(,)?) => {
        fields![
            $($path: $ty,)*
            "ticket.id": Integer,
            "ticket.subject": String,
            "ticket.description": String,
            "ticket.status": String,
            "ticket.priority": String,
            "ticket.type": String,
            "ticket.tags": StringList,
            "ticket.via": String,
            "ticket.url": String,
            "ticket.external_id": String,
            "ticket.requester_id": Integer,
            "ticket.submitter_id": Integer,
            "ticket.assignee_id": Integer,
            "ticket.group_id": Integer,
            "ticket.organization_id": Integer,
            "ticket.brand_id": Integer,
            "ticket.form_id": Integer,
            "ticket.created_at": Timestamp,
            "ticket.updated_at": Timestamp,
            "requester.id": Integer,
            "requester.name": String,
            "requester.email": String,
            "assignee.id": Integer,
            "assignee.name": String,
            "assignee.email": String,
        ]
    };
}

const USER_FIELDS: &[FieldSpec] = fields![
    "user.id": Integer,
    "user.name": String,
    "user.email": String,
    "user.role": String,
    "user.external_id": String,
    "user.organization_id": Integer,
    "user.default_group_id": Integer,
    "user.created_at": Timestamp,
    "user.updated_at": Timestamp,
];

const ORGANIZATION_FIELDS: &[FieldSpec] = fields![
    "organization.id": Integer,
    "organization.name": String,
    "organization.external_id": String,
    "organization.group_id": Integer,
    "organization.shared_tickets": Bool,
    "organization.shared_comments": Bool,
    "organization.created_at": Timestamp,
    "organization.updated_at": Timestamp,
];

/// `(subscription attribute, change key)` per domain: `ticket.agent_assignment_changed`
/// reports `assignee_id`.
const TICKET_CHANGES: &[(&str, &str)] = &[
    ("status", "status"),
    ("priority", "priority"),
    ("type", "type"),
    ("subject", "subject"),
    ("description", "description"),
    ("tags", "tags"),
    ("agent_assignment", "assignee_id"),
    ("group_assignment", "group_id"),
    ("organization", "organization_id"),
    ("requester", "requester_id"),
    ("submitter", "submitter_id"),
    ("brand", "brand_id"),
    ("form", "form_id"),
    ("custom_status", "custom_status_id"),
    ("external_id", "external_id"),
];

const USER_CHANGES: &[(&str, &str)] = &[
    ("active", "active"),
    ("name", "name"),
    ("alias", "alias"),
    ("details", "details"),
    ("notes", "notes"),
    ("external_id", "external_id"),
    ("default_group", "default_group_id"),
    ("custom_role", "custom_role_id"),
    ("last_login", "last_login_at"),
    ("only_private_comments", "only_private_comments"),
];

const ORGANIZATION_CHANGES: &[(&str, &str)] = &[
    ("name", "name"),
    ("external_id", "external_id"),
    ("tags", "tags"),
];

/// Every Zendesk event.
/// Who caused a ticket event: the trigger's `current_user` (the user whose update fired it), or
/// the event subscription's `detail.actor_id` (`-1`, Zendesk's system user, names no one).
const TICKET_ACTORS: &[&str] = &["payload.current_user.id", "payload.detail.actor_id"];
/// A comment's author as well, named first in event subscriptions (as the comment's writer).
const COMMENT_ACTORS: &[&str] = &[
    "payload.current_user.id",
    "comment.author_id",
    "payload.detail.actor_id",
];
/// Why user and organization events name no actor.
const NO_ACTOR: &str = "the event subscription's `detail` is the user or organization itself; no actor field is catalogued for it";

pub(crate) static EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "ticket.created",
        description: "A ticket was created",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &[],
        deliverable: true,
        actors: Actors::Each(TICKET_ACTORS),
    },
    EventSpec {
        name: "ticket.updated",
        description: "A ticket was updated (any property, or a comment added)",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &[
            "status",
            "priority",
            "type",
            "subject",
            "description",
            "tags",
            "assignee_id",
            "group_id",
            "organization_id",
            "requester_id",
            "submitter_id",
            "brand_id",
            "form_id",
            "custom_status_id",
            "external_id",
        ],
        deliverable: true,
        actors: Actors::Each(TICKET_ACTORS),
    },
    EventSpec {
        name: "ticket.solved",
        description: "A ticket's status changed to solved",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &["status"],
        deliverable: true,
        actors: Actors::Each(TICKET_ACTORS),
    },
    EventSpec {
        name: "ticket.closed",
        description: "A ticket's status changed to closed (usually by the closing automation)",
        primary: "ticket",
        fields: ticket_fields![],
        changes: &["status"],
        deliverable: true,
        actors: Actors::Each(TICKET_ACTORS),
    },
    EventSpec {
        name: "comment.created",
        description: "A public reply or internal note was added to a ticket",
        primary: "comment",
        fields: ticket_fields![
            "comment.id": Integer,
            "comment.body": String,
            "comment.public": Bool,
            "comment.author_id": Integer,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Each(COMMENT_ACTORS),
    },
    EventSpec {
        name: "user.created",
        description: "A user (end user, agent or admin) was created",
        primary: "user",
        fields: USER_FIELDS,
        changes: &[],
        deliverable: true,
        actors: Actors::Nobody(NO_ACTOR),
    },
    EventSpec {
        name: "user.updated",
        description: "A user changed (name, activity, identities, memberships, role…)",
        primary: "user",
        fields: USER_FIELDS,
        changes: &[
            "active",
            "name",
            "alias",
            "details",
            "notes",
            "external_id",
            "default_group_id",
            "custom_role_id",
            "last_login_at",
            "only_private_comments",
        ],
        deliverable: true,
        actors: Actors::Nobody(NO_ACTOR),
    },
    EventSpec {
        name: "organization.created",
        description: "An organization was created",
        primary: "organization",
        fields: ORGANIZATION_FIELDS,
        changes: &[],
        deliverable: true,
        actors: Actors::Nobody(NO_ACTOR),
    },
    EventSpec {
        name: "organization.updated",
        description: "An organization changed (name, external id, tags, custom fields)",
        primary: "organization",
        fields: ORGANIZATION_FIELDS,
        changes: &["name", "external_id", "tags"],
        deliverable: true,
        actors: Actors::Nobody(NO_ACTOR),
    },
];

/// The `ticket_events_via` setting as written in a manifest.
const VIA_TRIGGER: &str = "`ticket_events_via = \"trigger\"`";
const VIA_SUBSCRIPTION: &str = "`ticket_events_via = \"event_subscription\"`";

/// What a trigger body does not carry and the enrichment fetches with the ticket and its
/// people ([`TICKET_CALLS`]).
const TICKET_ENRICHED: &[&str] = &[
    "ticket.subject",
    "ticket.description",
    "ticket.tags",
    "ticket.external_id",
    "ticket.submitter_id",
    "ticket.form_id",
    "requester.name",
    "requester.email",
    "assignee.name",
    "assignee.email",
];

/// [`TICKET_ENRICHED`] and the latest comment's body (`comment.created`).
const COMMENT_ENRICHED: &[&str] = &[
    "ticket.subject",
    "ticket.description",
    "ticket.tags",
    "ticket.external_id",
    "ticket.submitter_id",
    "ticket.form_id",
    "requester.name",
    "requester.email",
    "assignee.name",
    "assignee.email",
    "comment.body",
];

/// The API calls of one enrichment (the users call only when the ticket has a requester or an
/// assignee).
const TICKET_CALLS: &[&str] = &[
    "GET /api/v2/tickets/{id}",
    "GET /api/v2/users/show_many?ids={requester_id},{assignee_id}",
];
const COMMENT_CALLS: &[&str] = &[
    "GET /api/v2/tickets/{id}",
    "GET /api/v2/users/show_many?ids={requester_id},{assignee_id}",
    "GET /api/v2/tickets/{id}/comments?sort_order=desc&per_page=1",
];

/// What an event subscription's `detail` never has: names and emails of the people (only
/// their ids), and the agent URL.
const SUBSCRIPTION_ABSENT: &[&str] = &[
    "ticket.url",
    "requester.name",
    "requester.email",
    "assignee.name",
    "assignee.email",
];

/// Why `ticket.closed` is refused in trigger mode.
const CLOSED_BY_TRIGGER: &str = "Zendesk closes tickets with its solved→closed automation and a closed ticket cannot be updated; no Zendesk document says a trigger runs on the update that closes a ticket, so its trigger may never fire. Set `ticket_events_via = \"event_subscription\"` on the integration (the closing arrives as a `ticket.status_changed` event), or trigger on `ticket.solved`.";

/// How an integration with `config` delivers `event` (see the module docs' table): ticket and
/// comment events depend on `ticket_events_via`; user and organization events always come by
/// event subscription, whole.
pub(crate) fn delivery(event: &EventSpec, config: &Map<String, Value>) -> Option<Delivery> {
    if !matches!(event.primary, "ticket" | "comment") {
        return None;
    }
    let subscription =
        config.get("ticket_events_via").and_then(Value::as_str) == Some("event_subscription");
    Some(if subscription {
        Delivery {
            mode: VIA_SUBSCRIPTION,
            absent: SUBSCRIPTION_ABSENT,
            enriched: &[],
            enrichment_calls: &[],
            refused: None,
        }
    } else {
        let comment = event.name == "comment.created";
        Delivery {
            mode: VIA_TRIGGER,
            absent: &[],
            enriched: if comment {
                COMMENT_ENRICHED
            } else {
                TICKET_ENRICHED
            },
            enrichment_calls: if comment { COMMENT_CALLS } else { TICKET_CALLS },
            refused: (event.name == "ticket.closed").then_some(CLOSED_BY_TRIGGER),
        }
    })
}

/// Turns a Zendesk webhook body (either shape, see the module docs) into the event context.
pub(crate) fn normalize(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError> {
    let root = payload
        .as_object()
        .ok_or_else(|| err("expected a JSON object at the top level".into()))?;
    let mut normalized = match root
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| t.strip_prefix(PREFIX))
    {
        Some(kind) => subscription(event, root, kind)?,
        None => trigger(event, root)?,
    };
    normalized.actors = event.actors.read(&normalized.objects, payload);
    Ok(normalized)
}

/// The event-subscription envelope.
fn subscription(
    event: &EventSpec,
    root: &Map<String, Value>,
    kind: &str,
) -> Result<Normalized, NormalizeError> {
    let accepted = match event.name {
        "ticket.created" => kind == "ticket.created",
        "ticket.updated" => kind.starts_with("ticket.") && kind != "ticket.created",
        "ticket.solved" | "ticket.closed" => kind == "ticket.status_changed",
        "comment.created" => kind == "ticket.comment_added",
        "user.created" => kind == "user.created",
        "user.updated" => kind.starts_with("user.") && kind != "user.created",
        "organization.created" => kind == "organization.created",
        "organization.updated" => {
            kind.starts_with("organization.")
                && !matches!(kind, "organization.created" | "organization.deleted")
        }
        other => return Err(err(format!("unknown Zendesk event `{other}`"))),
    };
    if !accepted {
        return Err(err(format!(
            "a `{PREFIX}{kind}` payload is not a `{}` event",
            event.name
        )));
    }
    let detail = root
        .get("detail")
        .and_then(Value::as_object)
        .ok_or_else(|| err("expected an object at `detail`".into()))?;
    let empty = Map::new();
    let what = match root.get("event") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(err("expected an object at `event`".into())),
    };

    let (domain, action) = kind.split_once('.').unwrap_or((kind, ""));
    let table = match domain {
        "ticket" => TICKET_CHANGES,
        "user" => USER_CHANGES,
        _ => ORGANIZATION_CHANGES,
    };
    let mut changes = Map::new();
    if let Some(attr) = action.strip_suffix("_changed")
        && let Some((_, key)) = table.iter().find(|(a, _)| *a == attr)
        && (what.contains_key("current") || what.contains_key("previous"))
    {
        let from = change_value(key, what.get("previous"));
        let to = change_value(key, what.get("current"));
        changes.insert((*key).to_owned(), json!({ "from": from, "to": to }));
    }

    let mut objects = Map::new();
    match domain {
        "ticket" => {
            let ticket = ticket_from_detail(detail)?;
            objects.insert(
                "requester".into(),
                person(ticket.get("requester_id"), None, None),
            );
            objects.insert(
                "assignee".into(),
                person(ticket.get("assignee_id"), None, None),
            );
            if event.name == "comment.created" {
                let comment = match what.get("comment") {
                    Some(Value::Object(c)) => c,
                    _ => what,
                };
                objects.insert("comment".into(), comment_from(comment));
            }
            if let Some(expected) = final_status(event.name) {
                let to = changes
                    .get("status")
                    .and_then(|c| c.get("to"))
                    .filter(|v| !v.is_null())
                    .or_else(|| ticket.get("status"));
                if to.and_then(Value::as_str) != Some(expected) {
                    return Err(err(format!(
                        "a `{}` payload must change the status to `{expected}`, found {}",
                        event.name,
                        to.map_or_else(|| "none".to_owned(), Value::to_string)
                    )));
                }
            }
            objects.insert("ticket".into(), ticket);
        }
        "user" => {
            let user = json!({
                "id": primary_id(detail.get("id"), "detail.id")?,
                "name": text(detail.get("name")),
                "email": text(detail.get("email")),
                "role": text(detail.get("role")),
                "external_id": text(detail.get("external_id")),
                "organization_id": ref_id(detail.get("organization_id")),
                "default_group_id": ref_id(detail.get("default_group_id")),
                "created_at": text(detail.get("created_at")),
                "updated_at": text(detail.get("updated_at")),
            });
            objects.insert("user".into(), user);
        }
        _ => {
            let organization = json!({
                "id": primary_id(detail.get("id"), "detail.id")?,
                "name": text(detail.get("name")),
                "external_id": text(detail.get("external_id")),
                "group_id": ref_id(detail.get("group_id")),
                "shared_tickets": boolean(detail.get("shared_tickets")),
                "shared_comments": boolean(detail.get("shared_comments")),
                "created_at": text(detail.get("created_at")),
                "updated_at": text(detail.get("updated_at")),
            });
            objects.insert("organization".into(), organization);
        }
    }

    Ok(Normalized {
        id: root.get("id").and_then(Value::as_str).map(str::to_owned),
        time: root.get("time").and_then(Value::as_str).map(str::to_owned),
        actors: Vec::new(),
        objects,
        changes,
    })
}

/// The body of a trigger-connected webhook.
fn trigger(event: &EventSpec, root: &Map<String, Value>) -> Result<Normalized, NormalizeError> {
    if matches!(event.primary, "user" | "organization") {
        return Err(err(format!(
            "`{}` is delivered only by event subscriptions: expected `type` to start with `{PREFIX}`",
            event.name
        )));
    }
    if let Some(declared) = root.get("supportopsd_event") {
        let declared = declared
            .as_str()
            .ok_or_else(|| err("expected a string at `supportopsd_event`".into()))?;
        if declared != event.name {
            return Err(err(format!(
                "the payload is a `{declared}` delivery, not `{}`",
                event.name
            )));
        }
    }
    let t = root
        .get("ticket")
        .and_then(Value::as_object)
        .ok_or_else(|| err("expected an object at `ticket`".into()))?;
    let empty = Map::new();
    let object_at = |key: &str| -> Result<&Map<String, Value>, NormalizeError> {
        match root.get(key) {
            None | Some(Value::Null) => Ok(&empty),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(err(format!("expected an object at `{key}`"))),
        }
    };
    let requester = object_at("requester")?;
    let assignee = object_at("assignee")?;
    // `current_user` (who caused a trigger delivery) is read by the catalogue's actor paths.
    object_at("current_user")?;

    let ticket = json!({
        "id": primary_id(t.get("id"), "ticket.id")?,
        "subject": text(t.get("subject")),
        "description": text(t.get("description")),
        "status": status(t.get("status")),
        "priority": lowercase(t.get("priority")),
        "type": lowercase(t.get("type")),
        "tags": tags(t.get("tags")),
        "via": text(t.get("via")),
        "url": text(t.get("url")),
        "external_id": text(t.get("external_id")),
        "requester_id": ref_id(requester.get("id").or_else(|| t.get("requester_id"))),
        "submitter_id": ref_id(t.get("submitter_id")),
        "assignee_id": ref_id(assignee.get("id").or_else(|| t.get("assignee_id"))),
        "group_id": ref_id(t.get("group_id")),
        "organization_id": ref_id(t.get("organization_id")),
        "brand_id": ref_id(t.get("brand_id")),
        "form_id": ref_id(t.get("form_id")),
        "created_at": text(t.get("created_at")),
        "updated_at": text(t.get("updated_at")),
    });

    let mut changes = Map::new();
    if let Some(expected) = final_status(event.name) {
        match ticket.get("status").and_then(Value::as_str) {
            Some(s) if s != expected => {
                return Err(err(format!(
                    "a `{}` payload must have status `{expected}`, found `{s}`",
                    event.name
                )));
            }
            _ => {}
        }
        changes.insert("status".into(), json!({ "from": null, "to": expected }));
    }

    let mut objects = Map::new();
    if event.name == "comment.created" {
        let comment = match root.get("comment") {
            Some(Value::Object(c)) => comment_from(c),
            _ => return Err(err("expected an object at `comment`".into())),
        };
        objects.insert("comment".into(), comment);
    }
    let time = ticket
        .get("updated_at")
        .and_then(Value::as_str)
        .map(str::to_owned);
    objects.insert(
        "requester".into(),
        person(
            ticket.get("requester_id"),
            requester.get("name"),
            requester.get("email"),
        ),
    );
    objects.insert(
        "assignee".into(),
        person(
            ticket.get("assignee_id"),
            assignee.get("name"),
            assignee.get("email"),
        ),
    );
    objects.insert("ticket".into(), ticket);

    Ok(Normalized {
        id: None,
        time,
        actors: Vec::new(),
        objects,
        changes,
    })
}

/// The enriched fields of a ticket event, from what the REST API answers
/// (`GET /api/v2/tickets/{id}`'s `ticket`, the requester's and assignee's `user` objects from
/// `GET /api/v2/users/show_many`, and for `comment.created` the comment from
/// `GET /api/v2/tickets/{id}/comments`), normalised like deliveries: objects to merge into the
/// event's.
pub(crate) fn enriched(
    ticket: &Value,
    requester: Option<&Value>,
    assignee: Option<&Value>,
    comment: Option<&Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "ticket".into(),
        json!({
            "subject": text(ticket.get("subject").or_else(|| ticket.get("raw_subject"))),
            "description": text(ticket.get("description")),
            "tags": tags(ticket.get("tags")),
            "external_id": text(ticket.get("external_id")),
            "submitter_id": ref_id(ticket.get("submitter_id")),
            "form_id": ref_id(ticket.get("ticket_form_id").or_else(|| ticket.get("form_id"))),
        }),
    );
    let who = |u: Option<&Value>| {
        json!({
            "name": text(u.and_then(|u| u.get("name"))),
            "email": text(u.and_then(|u| u.get("email"))),
        })
    };
    out.insert("requester".into(), who(requester));
    out.insert("assignee".into(), who(assignee));
    if let Some(c) = comment {
        out.insert(
            "comment".into(),
            json!({ "body": text(c.get("body").or_else(|| c.get("plain_body"))) }),
        );
    }
    out
}

fn err(message: String) -> NormalizeError {
    NormalizeError(message)
}

fn final_status(event: &str) -> Option<&'static str> {
    match event {
        "ticket.solved" => Some("solved"),
        "ticket.closed" => Some("closed"),
        _ => None,
    }
}

fn ticket_from_detail(d: &Map<String, Value>) -> Result<Value, NormalizeError> {
    let via = match d.get("via") {
        Some(Value::Object(v)) => text(v.get("channel")),
        other => text(other),
    };
    Ok(json!({
        "id": primary_id(d.get("id"), "detail.id")?,
        "subject": text(d.get("subject")),
        "description": text(d.get("description")),
        "status": status(d.get("status")),
        "priority": lowercase(d.get("priority")),
        "type": lowercase(d.get("type")),
        "tags": tags(d.get("tags")),
        "via": via,
        "url": Value::Null,
        "external_id": text(d.get("external_id")),
        "requester_id": ref_id(d.get("requester_id")),
        "submitter_id": ref_id(d.get("submitter_id")),
        "assignee_id": ref_id(d.get("assignee_id")),
        "group_id": ref_id(d.get("group_id")),
        "organization_id": ref_id(d.get("organization_id")),
        "brand_id": ref_id(d.get("brand_id")),
        "form_id": ref_id(d.get("form_id")),
        "created_at": text(d.get("created_at")),
        "updated_at": text(d.get("updated_at")),
    }))
}

fn comment_from(c: &Map<String, Value>) -> Value {
    let author_id = match c.get("author") {
        Some(Value::Object(a)) => ref_id(a.get("id")),
        _ => ref_id(c.get("author_id")),
    };
    json!({
        "id": ref_id(c.get("id")),
        "body": text(c.get("body").or_else(|| c.get("value"))),
        "public": boolean(c.get("is_public").or_else(|| c.get("public"))),
        "author_id": author_id,
    })
}

fn person(id: Option<&Value>, name: Option<&Value>, email: Option<&Value>) -> Value {
    json!({
        "id": id.cloned().unwrap_or(Value::Null),
        "name": text(name),
        "email": text(email),
    })
}

/// A change's `current`/`previous` value, typed like the field it reports.
fn change_value(key: &str, v: Option<&Value>) -> Value {
    match key {
        "status" => status(v),
        "priority" | "type" => lowercase(v),
        "tags" => match v {
            Some(Value::Array(_) | Value::String(_)) => tags(v),
            _ => Value::Null,
        },
        k if k.ends_with("_id") && k != "external_id" => ref_id(v),
        _ => v.cloned().unwrap_or(Value::Null),
    }
}

/// Non-empty trimmed text, else `null`; numbers are rendered.
fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.trim().to_owned()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        _ => Value::Null,
    }
}

/// Lower-cased text; `-` (a trigger's "no value") is `null`.
fn lowercase(v: Option<&Value>) -> Value {
    match text(v) {
        Value::String(s) if s != "-" => Value::String(s.to_lowercase()),
        _ => Value::Null,
    }
}

/// A status category from an API value (`open`, `OPEN`) or a display name (`On-hold`).
fn status(v: Option<&Value>) -> Value {
    match lowercase(v) {
        Value::String(s) if matches!(s.as_str(), "on-hold" | "on hold" | "on_hold") => {
            Value::String("hold".into())
        }
        other => other,
    }
}

/// Tags from a list, or from a trigger's space-separated `{{ticket.tags}}`.
fn tags(v: Option<&Value>) -> Value {
    let list: Vec<Value> = match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect(),
        Some(Value::String(s)) => s
            .split_whitespace()
            .map(|t| Value::String(t.to_owned()))
            .collect(),
        _ => Vec::new(),
    };
    Value::Array(list)
}

fn boolean(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Bool(b)) => Value::Bool(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => Value::Null,
    }
}

fn integer(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A reference to another object: an integer, with `0` and non-numbers as `null`.
fn ref_id(v: Option<&Value>) -> Value {
    match integer(v) {
        Some(0) | None => Value::Null,
        Some(n) => Value::from(n),
    }
}

/// The id of the event's primary object: required.
fn primary_id(v: Option<&Value>, at: &str) -> Result<Value, NormalizeError> {
    match integer(v) {
        Some(n) => Ok(Value::from(n)),
        None => Err(err(format!("expected an integer id at `{at}`"))),
    }
}
