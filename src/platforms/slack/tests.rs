//! Catalogue and normalisation tests for Slack.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use super::events::{EVENTS, normalize, rfc3339_from_unix};
use crate::platforms::{EventSpec, Normalized, WebhookSecret};
use crate::rules::ValueType;

/// `(event, fixture file, body)`.
const FIXTURES: &[(&str, &str, &str)] = &[
    (
        "message",
        "message.json",
        include_str!("fixtures/message.json"),
    ),
    (
        "message",
        "message_bot.json",
        include_str!("fixtures/message_bot.json"),
    ),
    (
        "message",
        "message_changed.json",
        include_str!("fixtures/message_changed.json"),
    ),
    (
        "app_mention",
        "app_mention.json",
        include_str!("fixtures/app_mention.json"),
    ),
    (
        "reaction_added",
        "reaction_added.json",
        include_str!("fixtures/reaction_added.json"),
    ),
    (
        "channel_created",
        "channel_created.json",
        include_str!("fixtures/channel_created.json"),
    ),
    (
        "member_joined_channel",
        "member_joined_channel.json",
        include_str!("fixtures/member_joined_channel.json"),
    ),
    (
        "team_join",
        "team_join.json",
        include_str!("fixtures/team_join.json"),
    ),
];

fn event(name: &str) -> &'static EventSpec {
    match DESCRIPTOR.event(name) {
        Some(e) => e,
        None => panic!("no event `{name}`"),
    }
}

fn fixture(file: &str) -> Value {
    let (_, _, body) = FIXTURES
        .iter()
        .find(|(_, f, _)| *f == file)
        .unwrap_or_else(|| panic!("no fixture {file}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn normalized(event_name: &str, file: &str) -> Normalized {
    normalize(event(event_name), &fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The context root `{ <objects…>, "changes": … }`.
fn context(n: &Normalized) -> Value {
    let mut root = n.objects.clone();
    root.insert("changes".into(), Value::Object(n.changes.clone()));
    Value::Object(root)
}

/// The value at a dotted path, if every segment exists.
fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(root, |v, seg| v.as_object()?.get(seg))
}

fn has_type(ty: ValueType, v: &Value) -> bool {
    match (ty, v) {
        (_, Value::Null) | (ValueType::Any, _) => true,
        (ValueType::String | ValueType::Timestamp, Value::String(_)) => true,
        (ValueType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (ValueType::Number, Value::Number(_)) => true,
        (ValueType::Bool, Value::Bool(_)) => true,
        (ValueType::StringList, Value::Array(a)) => a.iter().all(Value::is_string),
        (ValueType::List, Value::Array(_)) => true,
        (ValueType::Object, Value::Object(_)) => true,
        _ => false,
    }
}

#[test]
fn every_fixture_normalises_with_every_catalogued_field() {
    for (name, file, _) in FIXTURES {
        let spec = event(name);
        let n = normalized(name, file);
        let root = context(&n);
        assert!(
            n.objects.contains_key(spec.primary),
            "{file}: no primary `{}`",
            spec.primary
        );
        for field in spec.fields {
            let value = lookup(&root, field.path)
                .unwrap_or_else(|| panic!("{file}: `{}` missing in {root:#}", field.path));
            assert!(
                has_type(field.ty, value),
                "{file}: `{}` = {value} is not {:?}",
                field.path,
                field.ty
            );
        }
        for key in n.changes.keys() {
            assert!(
                spec.changes.contains(&key.as_str()),
                "{file}: change `{key}` not catalogued"
            );
        }
    }
}

#[test]
fn every_deliverable_event_has_a_fixture() {
    for e in EVENTS.iter().filter(|e| e.deliverable) {
        assert!(
            FIXTURES.iter().any(|(n, _, _)| *n == e.name),
            "no fixture for `{}`",
            e.name
        );
    }
}

#[test]
fn envelope() {
    let n = normalized("message", "message.json");
    assert_eq!(n.id.as_deref(), Some("Ev07A1B2C3D4"));
    assert_eq!(n.time.as_deref(), Some("2024-07-10T12:00:00Z"));
    assert_eq!(n.actor.as_deref(), Some("U0CUSTOMR1"));
    assert_eq!(n.objects["team"], json!({ "id": "T0ACME123" }));
    assert_eq!(
        n.objects["channel"],
        json!({ "id": "C0HELPDESK", "type": "channel" })
    );
    assert_eq!(n.objects["message"]["thread_ts"], Value::Null);
}

#[test]
fn bot_messages_name_the_bot_as_actor() {
    let n = normalized("message", "message_bot.json");
    assert_eq!(n.actor.as_deref(), Some("B0SUPBOT01"));
    assert_eq!(n.objects["message"]["user"], Value::Null);
    assert_eq!(n.objects["message"]["subtype"], json!("bot_message"));
}

#[test]
fn edits_report_the_text_change() {
    let n = normalized("message", "message_changed.json");
    assert_eq!(
        n.changes["text"],
        json!({
            "from": "Checkout has been failing for us since 9am, any news?",
            "to": "Checkout has been failing for us since 8am, any news?",
        })
    );
    assert_eq!(n.objects["message"]["ts"], json!("1720612800.000200"));
    assert_eq!(n.objects["message"]["channel"], json!("C0HELPDESK"));
    assert_eq!(n.actor.as_deref(), Some("U0CUSTOMR1"));
}

#[test]
fn other_events() {
    let n = normalized("reaction_added", "reaction_added.json");
    assert_eq!(n.objects["reaction"]["name"], json!("ticket"));
    assert_eq!(
        n.objects["reaction"]["item"]["ts"],
        json!("1720612800.000200")
    );
    assert_eq!(n.actor.as_deref(), Some("U0AGENT007"));

    let n = normalized("channel_created", "channel_created.json");
    assert_eq!(
        n.objects["channel"]["created"],
        json!("2024-07-10T12:23:20Z")
    );
    assert_eq!(n.actor.as_deref(), Some("U0AGENT007"));

    let n = normalized("member_joined_channel", "member_joined_channel.json");
    assert_eq!(n.objects["member"]["user"], json!("W0ENGINEER"));
    assert_eq!(
        n.actor.as_deref(),
        Some("U0AGENT007"),
        "the inviter caused the join"
    );

    let n = normalized("team_join", "team_join.json");
    assert_eq!(
        n.objects["user"]["email"],
        json!("lena.fischer@acme.example")
    );
    assert_eq!(n.objects["user"]["is_bot"], json!(false));
}

#[test]
fn unix_times() {
    assert_eq!(
        rfc3339_from_unix(0).as_deref(),
        Some("1970-01-01T00:00:00Z")
    );
    assert_eq!(
        rfc3339_from_unix(1_355_517_523).as_deref(),
        Some("2012-12-14T20:38:43Z")
    );
    assert_eq!(
        rfc3339_from_unix(951_782_400).as_deref(),
        Some("2000-02-29T00:00:00Z")
    );
    assert_eq!(
        rfc3339_from_unix(253_402_300_799).as_deref(),
        Some("9999-12-31T23:59:59Z")
    );
    assert_eq!(rfc3339_from_unix(-1), None);
    assert_eq!(rfc3339_from_unix(i64::MAX), None);
}

#[test]
fn precise_errors() {
    let msg = |name: &str, v: Value| normalize(event(name), &v).err().map(|e| e.0);
    assert_eq!(
        msg("message", json!("x")),
        Some("expected a JSON object at the top level".into())
    );
    assert_eq!(
        msg(
            "message",
            json!({ "type": "url_verification", "challenge": "abc" })
        ),
        Some("a `url_verification` handshake carries no event".into())
    );
    assert_eq!(
        msg("message", json!({ "type": "event_callback", "event": [] })),
        Some("expected an object at `event`".into())
    );
    assert_eq!(
        msg("message", fixture("reaction_added.json")),
        Some("the payload is a `reaction_added` event, not `message`".into())
    );
    assert_eq!(
        msg(
            "reaction_added",
            json!({ "type": "event_callback", "event": { "type": "reaction_added" } })
        ),
        Some("expected an object at `event.item`".into())
    );
    assert_eq!(
        msg(
            "message",
            json!({ "type": "event_callback",
            "event": { "type": "message", "subtype": "message_changed" } })
        ),
        Some("expected an object at `event.message`".into())
    );
}

/// Every JSON pointer of a value's subtrees.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[test]
fn mutated_fixtures_never_panic() {
    let junk = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(1.5),
        json!(""),
        json!("{x:{from:{to:"),
        json!([]),
        json!({}),
    ];
    for (_, file, _) in FIXTURES {
        let original = fixture(file);
        let mut ptrs = Vec::new();
        pointers(&original, String::new(), &mut ptrs);
        for ptr in &ptrs {
            for j in &junk {
                let mut v = original.clone();
                if let Some(slot) = v.pointer_mut(ptr) {
                    *slot = j.clone();
                }
                for e in EVENTS {
                    let _ = normalize(e, &v);
                }
            }
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 .]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "event_callback",
            "url_verification",
            "message",
            "message_changed",
            "message_deleted",
            "app_mention",
            "reaction_added",
            "channel_created",
            "member_joined_channel",
            "team_join",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop::sample::select(vec![
            "type",
            "subtype",
            "event",
            "event_id",
            "event_time",
            "team_id",
            "message",
            "previous_message",
            "item",
            "channel",
            "user",
            "profile",
            "created",
            "text",
            "x",
        ])
        .prop_map(str::to_owned);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        for e in EVENTS {
            let _ = normalize(e, &v);
        }
    }

    #[test]
    fn any_unix_time_is_safe(secs in any::<i64>()) {
        let _ = rfc3339_from_unix(secs);
    }
}

#[test]
fn names_are_unique() {
    let mut events = HashSet::new();
    for e in DESCRIPTOR.events {
        assert!(events.insert(e.name), "duplicate event {}", e.name);
        let mut paths = HashSet::new();
        for f in e.fields {
            assert!(
                paths.insert(f.path),
                "{}: duplicate field {}",
                e.name,
                f.path
            );
        }
    }
    let mut actions = HashSet::new();
    for a in DESCRIPTOR.actions {
        assert!(actions.insert(a.name), "duplicate action {}", a.name);
        let mut params = HashSet::new();
        for p in a.params {
            assert!(
                params.insert(p.name),
                "{}: duplicate param {}",
                a.name,
                p.name
            );
        }
        for group in a.require_one_of {
            for name in *group {
                assert!(
                    params.contains(name),
                    "{}: require_one_of names `{name}`",
                    a.name
                );
            }
        }
    }
    let mut config = HashSet::new();
    for c in DESCRIPTOR.config {
        assert!(config.insert(c.name), "duplicate config key {}", c.name);
    }
}

#[test]
fn descriptor_lists_the_required_events_and_actions() {
    let events: Vec<_> = DESCRIPTOR.events.iter().map(|e| e.name).collect();
    assert_eq!(
        events,
        [
            "message",
            "app_mention",
            "reaction_added",
            "channel_created",
            "member_joined_channel",
            "team_join",
        ]
    );
    assert!(DESCRIPTOR.events.iter().all(|e| e.deliverable));
    let actions: Vec<_> = DESCRIPTOR.actions.iter().map(|a| a.name).collect();
    assert_eq!(
        actions,
        [
            "send_message",
            "create_channel",
            "invite_user",
            "upload_file",
            "set_status"
        ]
    );
    let send = DESCRIPTOR
        .action("send_message")
        .map(|a| a.params.iter().map(|p| p.name).collect::<Vec<_>>());
    let send = send.unwrap_or_default();
    for name in ["channel", "message", "blocks", "thread_ts"] {
        assert!(send.contains(&name), "send_message.{name}");
    }
}

#[test]
fn credentials() {
    let creds: Vec<_> = DESCRIPTOR
        .credentials
        .iter()
        .map(|c| (c.name, c.secret, c.required))
        .collect();
    assert_eq!(
        creds,
        [
            ("bot_token", true, true),
            ("user_token", true, false),
            ("app_config_token", true, false),
            ("app_id", false, false),
            ("signing_secret", true, true),
        ]
    );
    assert!(DESCRIPTOR.credential_sets.is_empty());
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::NotUsed);
}
