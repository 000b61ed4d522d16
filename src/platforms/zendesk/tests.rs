//! Catalogue and normalisation tests for Zendesk.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use super::events::{EVENTS, normalize};
use crate::platforms::{EventSpec, Normalized, WebhookSecret};
use crate::rules::ValueType;

/// `(event, fixture file, body)`.
const FIXTURES: &[(&str, &str, &str)] = &[
    (
        "ticket.created",
        "ticket_created_subscription.json",
        include_str!("fixtures/ticket_created_subscription.json"),
    ),
    (
        "ticket.created",
        "ticket_created_trigger.json",
        include_str!("fixtures/ticket_created_trigger.json"),
    ),
    (
        "ticket.updated",
        "ticket_priority_changed.json",
        include_str!("fixtures/ticket_priority_changed.json"),
    ),
    (
        "ticket.updated",
        "ticket_updated_trigger.json",
        include_str!("fixtures/ticket_updated_trigger.json"),
    ),
    (
        "ticket.updated",
        "comment_added_subscription.json",
        include_str!("fixtures/comment_added_subscription.json"),
    ),
    (
        "ticket.solved",
        "ticket_status_changed_solved.json",
        include_str!("fixtures/ticket_status_changed_solved.json"),
    ),
    (
        "ticket.solved",
        "ticket_solved_trigger.json",
        include_str!("fixtures/ticket_solved_trigger.json"),
    ),
    (
        "ticket.closed",
        "ticket_status_changed_closed.json",
        include_str!("fixtures/ticket_status_changed_closed.json"),
    ),
    (
        "comment.created",
        "comment_added_subscription.json",
        include_str!("fixtures/comment_added_subscription.json"),
    ),
    (
        "comment.created",
        "comment_created_trigger.json",
        include_str!("fixtures/comment_created_trigger.json"),
    ),
    (
        "user.created",
        "user_created.json",
        include_str!("fixtures/user_created.json"),
    ),
    (
        "user.updated",
        "user_active_changed.json",
        include_str!("fixtures/user_active_changed.json"),
    ),
    (
        "user.updated",
        "user_default_group_changed.json",
        include_str!("fixtures/user_default_group_changed.json"),
    ),
    (
        "organization.created",
        "organization_created.json",
        include_str!("fixtures/organization_created.json"),
    ),
    (
        "organization.updated",
        "organization_name_changed.json",
        include_str!("fixtures/organization_name_changed.json"),
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
fn subscription_envelope() {
    let n = normalized("user.created", "user_created.json");
    assert_eq!(
        n.id.as_deref(),
        Some("5f0c8e4a-2d1b-4a7e-9a51-0c3f6b1d2e77")
    );
    assert_eq!(n.time.as_deref(), Some("2099-07-04T05:27:58Z"));
    assert_eq!(n.actor, None);
    let user = &n.objects["user"];
    assert_eq!(user["id"], json!(6596848315901_u64));
    assert_eq!(
        user["organization_id"],
        Value::Null,
        "\"0\" means no organization"
    );
    assert_eq!(user["external_id"], Value::Null);
    assert_eq!(user["role"], json!("end-user"));

    let n = normalized("user.updated", "user_active_changed.json");
    assert_eq!(n.changes["active"], json!({ "from": true, "to": false }));
    let n = normalized("user.updated", "user_default_group_changed.json");
    assert_eq!(
        n.changes["default_group_id"],
        json!({ "from": 360000998877_u64, "to": 360001112223_u64 })
    );
    let n = normalized("organization.updated", "organization_name_changed.json");
    assert_eq!(
        n.changes["name"],
        json!({ "from": "Acme", "to": "Acme Industries" })
    );
    assert_eq!(n.objects["organization"]["shared_tickets"], json!(true));
}

#[test]
fn ticket_subscription_events() {
    let n = normalized("ticket.updated", "ticket_priority_changed.json");
    assert_eq!(
        n.changes["priority"],
        json!({ "from": "high", "to": "urgent" })
    );
    assert_eq!(n.actor.as_deref(), Some("7001234567890"));
    let t = &n.objects["ticket"];
    assert_eq!(
        (&t["status"], &t["type"], &t["via"]),
        (&json!("open"), &json!("incident"), &json!("web_service"))
    );
    assert_eq!(n.objects["assignee"]["id"], json!(7001234567890_u64));

    let n = normalized("ticket.closed", "ticket_status_changed_closed.json");
    assert_eq!(
        n.changes["status"],
        json!({ "from": "solved", "to": "closed" })
    );
    assert_eq!(n.actor, None, "actor -1 is Zendesk itself");

    let n = normalized("comment.created", "comment_added_subscription.json");
    assert_eq!(
        n.objects["comment"],
        json!({ "id": 40011223344_u64, "body": "Reproduced on Firefox; escalating to engineering.",
                "public": false, "author_id": 7001234567890_u64 })
    );
    assert!(n.changes.is_empty());
}

#[test]
fn trigger_bodies() {
    let n = normalized("ticket.created", "ticket_created_trigger.json");
    let t = &n.objects["ticket"];
    assert_eq!(t["id"], json!(35437));
    assert_eq!(t["status"], json!("new"));
    assert_eq!(t["priority"], json!("urgent"));
    assert_eq!(t["tags"], json!(["billing", "refund", "vip"]));
    assert_eq!(t["group_id"], Value::Null);
    assert_eq!(t["requester_id"], json!(6596848315901_u64));
    assert_eq!(
        n.objects["assignee"],
        json!({ "id": null, "name": null, "email": null })
    );
    assert_eq!(n.actor.as_deref(), Some("6596848315901"));
    assert_eq!(n.time.as_deref(), Some("2099-07-11T08:15:00Z"));
    assert_eq!(n.id, None);

    let n = normalized("ticket.updated", "ticket_updated_trigger.json");
    assert_eq!(n.objects["ticket"]["status"], json!("hold"));
    assert_eq!(n.objects["ticket"]["type"], Value::Null);

    let n = normalized("ticket.solved", "ticket_solved_trigger.json");
    assert_eq!(n.changes["status"], json!({ "from": null, "to": "solved" }));

    let n = normalized("comment.created", "comment_created_trigger.json");
    assert_eq!(n.objects["comment"]["public"], json!(true));
    assert_eq!(n.objects["comment"]["author_id"], json!(7001234567890_u64));
}

#[test]
fn precise_errors() {
    let msg = |name: &str, v: Value| normalize(event(name), &v).err().map(|e| e.0);
    assert_eq!(
        msg("ticket.created", json!(1)),
        Some("expected a JSON object at the top level".into())
    );
    assert_eq!(
        msg(
            "user.created",
            json!({ "type": "zen:event-type:user.created", "detail": [] })
        ),
        Some("expected an object at `detail`".into())
    );
    assert_eq!(
        msg(
            "user.created",
            json!({ "type": "zen:event-type:user.created", "detail": {}, "event": 3 })
        ),
        Some("expected an object at `event`".into())
    );
    assert_eq!(
        msg(
            "user.created",
            json!({ "type": "zen:event-type:user.created", "detail": { "id": "x" } })
        ),
        Some("expected an integer id at `detail.id`".into())
    );
    assert_eq!(
        msg("user.created", fixture("user_active_changed.json")),
        Some("a `zen:event-type:user.active_changed` payload is not a `user.created` event".into())
    );
    assert_eq!(
        msg(
            "ticket.solved",
            fixture("ticket_status_changed_closed.json")
        ),
        Some(
            "a `ticket.solved` payload must change the status to `solved`, found \"closed\"".into()
        )
    );
    assert_eq!(
        msg("user.created", fixture("ticket_created_trigger.json")),
        Some("`user.created` is delivered only by event subscriptions: expected `type` to start with `zen:event-type:`".into())
    );
    assert_eq!(
        msg("ticket.updated", fixture("ticket_created_trigger.json")),
        Some("the payload is a `ticket.created` delivery, not `ticket.updated`".into())
    );
    assert_eq!(
        msg("ticket.updated", json!({ "ticket": [] })),
        Some("expected an object at `ticket`".into())
    );
    assert_eq!(
        msg(
            "ticket.closed",
            fixture("ticket_updated_trigger.json")
                .as_object()
                .map(|m| {
                    let mut m = m.clone();
                    m.remove("supportopsd_event");
                    Value::Object(m)
                })
                .unwrap_or_default()
        ),
        Some("a `ticket.closed` payload must have status `closed`, found `hold`".into())
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
        any::<u64>().prop_map(Value::from),
        "[a-z0-9 -]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "zen:event-type:ticket.created",
            "zen:event-type:ticket.status_changed",
            "zen:event-type:ticket.comment_added",
            "zen:event-type:user.created",
            "zen:event-type:user.name_changed",
            "zen:event-type:organization.tags_changed",
            "SOLVED",
            "0",
            "12345",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop::sample::select(vec![
            "type",
            "id",
            "time",
            "detail",
            "event",
            "current",
            "previous",
            "comment",
            "author",
            "ticket",
            "requester",
            "assignee",
            "current_user",
            "status",
            "tags",
            "via",
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
            "ticket.created",
            "ticket.updated",
            "ticket.solved",
            "ticket.closed",
            "comment.created",
            "user.created",
            "user.updated",
            "organization.created",
            "organization.updated",
        ]
    );
    assert!(DESCRIPTOR.events.iter().all(|e| e.deliverable));
    let actions: Vec<_> = DESCRIPTOR.actions.iter().map(|a| a.name).collect();
    assert_eq!(
        actions,
        [
            "create_ticket",
            "update_ticket",
            "add_comment",
            "assign_ticket",
            "change_status",
            "set_priority",
            "add_tags",
            "apply_macro",
            "create_user",
        ]
    );
}

#[test]
fn credentials() {
    let creds: Vec<_> = DESCRIPTOR
        .credentials
        .iter()
        .map(|c| (c.name, c.secret))
        .collect();
    assert_eq!(
        creds,
        [
            ("subdomain", false),
            ("email", false),
            ("api_token", true),
            ("oauth_token", true)
        ]
    );
    let sets: Vec<Vec<&str>> = DESCRIPTOR
        .credential_sets
        .iter()
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(
        sets,
        [
            vec!["subdomain", "email", "api_token"],
            vec!["subdomain", "oauth_token"]
        ]
    );
    for set in DESCRIPTOR.credential_sets {
        for name in *set {
            assert!(DESCRIPTOR.credential(name).is_some(), "{name}");
        }
    }
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::Optional);
}
