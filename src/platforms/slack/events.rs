//! Slack events and the normalisation of Events API deliveries.
//!
//! Slack posts an `event_callback` envelope:
//! `{ token, team_id, api_app_id, type: "event_callback", event: { type, … }, event_id,
//! event_time, authorizations }`. The event names catalogued here are the inner `event.type`
//! values; `message` covers every message subscription (`message.channels`, `message.groups`,
//! `message.im`, `message.mpim`).
//!
//! Normalisation:
//!
//! - `id` is `event_id` (the dedupe key across Slack's retries), `time` is `event_time`
//!   (Unix seconds) as RFC 3339, `team.id` is `team_id`.
//! - `actors` are read from the fields each event's catalogue entry names (`message.bot_id`
//!   then `message.user`; `channel.creator`; `member.inviter` and `member.user`; `reaction.user`;
//!   `user.id`), so the loop guard skips an event any of them says our bot caused.
//! - Slack ids and timestamps (`ts`) stay strings, as Slack uses them.
//! - An edited message (`subtype: message_changed`) is read from its inner `message`, and the
//!   text change is reported as `changes.text`; a deleted one (`message_deleted`) from its
//!   `previous_message`. `message.subtype` keeps the outer subtype.
//! - A `url_verification` handshake is not an event; the webhook ingress answers it before
//!   anything is normalised, and normalising it is an error.

use serde_json::{Map, Value, json};

use crate::platforms::catalog::fields;
use crate::platforms::{Actors, EventSpec, FieldSpec, NormalizeError, Normalized};

const MESSAGE_FIELDS: &[FieldSpec] = fields![
    "message.text": String,
    "message.user": String,
    "message.bot_id": String,
    "message.subtype": String,
    "message.channel": String,
    "message.channel_type": String,
    "message.ts": String,
    "message.thread_ts": String,
    "message.event_ts": String,
    "channel.id": String,
    "channel.type": String,
    "team.id": String,
];

/// Every Slack event.
pub(crate) static EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "message",
        description: "A message was posted, edited or deleted in a channel, group or DM the app is in",
        primary: "message",
        fields: MESSAGE_FIELDS,
        changes: &["text"],
        deliverable: true,
        actors: Actors::Each(&["message.bot_id", "message.user"]),
    },
    EventSpec {
        name: "app_mention",
        description: "A message mentioned the app's bot user",
        primary: "message",
        fields: MESSAGE_FIELDS,
        changes: &[],
        deliverable: true,
        actors: Actors::Each(&["message.bot_id", "message.user"]),
    },
    EventSpec {
        name: "reaction_added",
        description: "A user added an emoji reaction to a message or file",
        primary: "reaction",
        fields: fields![
            "reaction.name": String,
            "reaction.user": String,
            "reaction.item_user": String,
            "reaction.item.type": String,
            "reaction.item.channel": String,
            "reaction.item.ts": String,
            "reaction.event_ts": String,
            "channel.id": String,
            "team.id": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Each(&["reaction.user"]),
    },
    EventSpec {
        name: "channel_created",
        description: "A public channel was created",
        primary: "channel",
        fields: fields![
            "channel.id": String,
            "channel.name": String,
            "channel.created": Timestamp,
            "channel.creator": String,
            "team.id": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Each(&["channel.creator"]),
    },
    EventSpec {
        name: "member_joined_channel",
        description: "A user joined a channel (on their own or invited)",
        primary: "member",
        fields: fields![
            "member.user": String,
            "member.channel": String,
            "member.channel_type": String,
            "member.team": String,
            "member.inviter": String,
            "channel.id": String,
            "channel.type": String,
            "team.id": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Each(&["member.inviter", "member.user"]),
    },
    EventSpec {
        name: "team_join",
        description: "A new member joined the workspace",
        primary: "user",
        fields: fields![
            "user.id": String,
            "user.name": String,
            "user.real_name": String,
            "user.display_name": String,
            "user.email": String,
            "user.is_bot": Bool,
            "user.team_id": String,
            "user.tz": String,
            "team.id": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Each(&["user.id"]),
    },
];

/// Turns an Events API `event_callback` body into the event context.
pub(crate) fn normalize(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError> {
    let root = payload
        .as_object()
        .ok_or_else(|| err("expected a JSON object at the top level".into()))?;
    match root.get("type").and_then(Value::as_str) {
        Some("event_callback") => {}
        Some("url_verification") => {
            return Err(err("a `url_verification` handshake carries no event".into()));
        }
        Some(other) => {
            return Err(err(format!(
                "expected `type` = \"event_callback\", found \"{other}\""
            )));
        }
        None => return Err(err("expected a string at `type`".into())),
    }
    let ev = root
        .get("event")
        .and_then(Value::as_object)
        .ok_or_else(|| err("expected an object at `event`".into()))?;
    match ev.get("type").and_then(Value::as_str) {
        Some(t) if t == event.name => {}
        Some(t) => {
            return Err(err(format!(
                "the payload is a `{t}` event, not `{}`",
                event.name
            )));
        }
        None => return Err(err("expected a string at `event.type`".into())),
    }

    let team = json!({ "id": text(root.get("team_id")) });
    let mut objects = Map::new();
    let mut changes = Map::new();

    match event.name {
        "message" | "app_mention" => {
            let subtype = text(ev.get("subtype"));
            let inner = |key: &str| -> Result<Option<&Map<String, Value>>, NormalizeError> {
                match ev.get(key) {
                    Some(Value::Object(m)) => Ok(Some(m)),
                    None | Some(Value::Null) => Ok(None),
                    Some(_) => Err(err(format!("expected an object at `event.{key}`"))),
                }
            };
            let source = match subtype.as_str() {
                Some("message_changed") => {
                    let current = inner("message")?
                        .ok_or_else(|| err("expected an object at `event.message`".into()))?;
                    let before = inner("previous_message")?;
                    changes.insert(
                        "text".into(),
                        json!({
                            "from": text(before.and_then(|m| m.get("text"))),
                            "to": text(current.get("text")),
                        }),
                    );
                    current
                }
                Some("message_deleted") => inner("previous_message")?.unwrap_or(ev),
                _ => ev,
            };
            let channel = text(ev.get("channel").or_else(|| source.get("channel")));
            let channel_type = text(ev.get("channel_type"));
            let bot_id = text(source.get("bot_id"));
            let user = text(source.get("user"));
            objects.insert(
                "message".into(),
                json!({
                    "text": text(source.get("text")),
                    "user": user,
                    "bot_id": bot_id,
                    "subtype": subtype,
                    "channel": channel,
                    "channel_type": channel_type,
                    "ts": text(source.get("ts")),
                    "thread_ts": text(source.get("thread_ts")),
                    "event_ts": text(ev.get("event_ts")),
                }),
            );
            objects.insert(
                "channel".into(),
                json!({ "id": channel, "type": channel_type }),
            );
        }
        "reaction_added" => {
            let item = match ev.get("item") {
                Some(Value::Object(m)) => m,
                _ => return Err(err("expected an object at `event.item`".into())),
            };
            let user = text(ev.get("user"));
            let channel = text(item.get("channel"));
            objects.insert(
                "reaction".into(),
                json!({
                    "name": text(ev.get("reaction")),
                    "user": user,
                    "item_user": text(ev.get("item_user")),
                    "item": {
                        "type": text(item.get("type")),
                        "channel": channel,
                        "ts": text(item.get("ts")),
                    },
                    "event_ts": text(ev.get("event_ts")),
                }),
            );
            objects.insert("channel".into(), json!({ "id": channel }));
        }
        "channel_created" => {
            let channel = match ev.get("channel") {
                Some(Value::Object(m)) => m,
                _ => return Err(err("expected an object at `event.channel`".into())),
            };
            let creator = text(channel.get("creator"));
            let created = channel
                .get("created")
                .and_then(Value::as_i64)
                .and_then(rfc3339_from_unix);
            objects.insert(
                "channel".into(),
                json!({
                    "id": text(channel.get("id")),
                    "name": text(channel.get("name")),
                    "created": created,
                    "creator": creator,
                }),
            );
        }
        "member_joined_channel" => {
            let user = text(ev.get("user"));
            let inviter = text(ev.get("inviter"));
            let channel = text(ev.get("channel"));
            let channel_type = text(ev.get("channel_type"));
            objects.insert(
                "member".into(),
                json!({
                    "user": user,
                    "channel": channel,
                    "channel_type": channel_type,
                    "team": text(ev.get("team")),
                    "inviter": inviter,
                }),
            );
            objects.insert(
                "channel".into(),
                json!({ "id": channel, "type": channel_type }),
            );
        }
        "team_join" => {
            let user = match ev.get("user") {
                Some(Value::Object(m)) => m,
                _ => return Err(err("expected an object at `event.user`".into())),
            };
            let empty = Map::new();
            let profile = user
                .get("profile")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let id = text(user.get("id"));
            objects.insert(
                "user".into(),
                json!({
                    "id": id,
                    "name": text(user.get("name")),
                    "real_name": text(user.get("real_name").or_else(|| profile.get("real_name"))),
                    "display_name": text(profile.get("display_name")),
                    "email": text(profile.get("email")),
                    "is_bot": user.get("is_bot").and_then(Value::as_bool),
                    "team_id": text(user.get("team_id")),
                    "tz": text(user.get("tz")),
                }),
            );
        }
        other => return Err(err(format!("unknown Slack event `{other}`"))),
    }
    objects.insert("team".into(), team);

    Ok(Normalized {
        id: root
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        time: root
            .get("event_time")
            .and_then(Value::as_i64)
            .and_then(rfc3339_from_unix),
        actors: event.actors.read(&objects, payload),
        objects,
        changes,
    })
}

fn err(message: String) -> NormalizeError {
    NormalizeError(message)
}

/// A non-empty string, else `null`.
fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Value::String(s.clone()),
        _ => Value::Null,
    }
}

/// Unix seconds as RFC 3339 UTC (`2012-12-14T20:38:43Z`), for years 1970 to 9999.
pub(crate) fn rfc3339_from_unix(secs: i64) -> Option<String> {
    if !(0..=253_402_300_799).contains(&secs) {
        return None;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}
