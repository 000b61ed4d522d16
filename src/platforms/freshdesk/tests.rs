//! Catalogue and normalisation tests for Freshdesk.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use super::events::{EVENTS, normalize, parse_pseudo_json};
use crate::platforms::{EventSpec, Normalized, ParamType, WebhookSecret};
use crate::rules::ValueType;

/// `(event, fixture file, body)`.
const FIXTURES: &[(&str, &str, &str)] = &[
    (
        "ticket_created",
        "ticket_created.json",
        include_str!("fixtures/ticket_created.json"),
    ),
    (
        "ticket_created",
        "ticket_created_hand_made.json",
        include_str!("fixtures/ticket_created_hand_made.json"),
    ),
    (
        "ticket_updated",
        "ticket_updated_priority.json",
        include_str!("fixtures/ticket_updated_priority.json"),
    ),
    (
        "ticket_updated",
        "ticket_updated_custom_status.json",
        include_str!("fixtures/ticket_updated_custom_status.json"),
    ),
    (
        "ticket_resolved",
        "ticket_resolved.json",
        include_str!("fixtures/ticket_resolved.json"),
    ),
    (
        "ticket_closed",
        "ticket_closed.json",
        include_str!("fixtures/ticket_closed.json"),
    ),
    (
        "note_created",
        "note_created.json",
        include_str!("fixtures/note_created.json"),
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
fn display_names_become_codes() {
    let n = normalized("ticket_created", "ticket_created.json");
    let t = &n.objects["ticket"];
    assert_eq!(t["id"], json!(4021));
    assert_eq!(t["status"], json!(2));
    assert_eq!(t["status_name"], json!("Open"));
    assert_eq!(t["priority"], json!(4));
    assert_eq!(t["priority_name"], json!("Urgent"));
    assert_eq!(t["source"], json!(1));
    assert_eq!(t["tags"], json!(["printer", "vip"]));
    assert_eq!(n.objects["agent"]["name"], Value::Null);
    assert_eq!(
        n.objects["requester"]["email"],
        json!("dana.whitfield@example.com")
    );
    assert!(n.changes.is_empty());
    assert_eq!((n.id, n.time, n.actor), (None, None, None));
}

#[test]
fn triggered_event_becomes_changes() {
    let n = normalized("ticket_updated", "ticket_updated_priority.json");
    assert_eq!(n.changes["priority"], json!({ "from": 3, "to": 1 }));
    assert_eq!(n.objects["ticket"]["priority"], json!(1));

    // A custom status has no fixed name: its code comes from the reported change.
    let n = normalized("ticket_updated", "ticket_updated_custom_status.json");
    assert_eq!(n.changes["status"], json!({ "from": 2, "to": 7 }));
    assert_eq!(n.objects["ticket"]["status"], json!(7));
    assert_eq!(
        n.objects["ticket"]["status_name"],
        json!("Waiting on Third Party")
    );
    assert_eq!(n.objects["ticket"]["tags"], json!([]));
}

#[test]
fn note_type_describes_the_note() {
    let n = normalized("note_created", "note_created.json");
    assert_eq!(
        n.objects["note"],
        json!({ "type": "private", "private": true, "ticket_id": 4021 })
    );
}

#[test]
fn pseudo_json() {
    assert_eq!(
        parse_pseudo_json("{status:{from:4,to:6}}"),
        Ok(json!({ "status": { "from": 4, "to": 6 } }))
    );
    assert_eq!(
        parse_pseudo_json(" { ticket_action : created , note_type:\"public\" } "),
        Ok(json!({ "ticket_action": "created", "note_type": "public" }))
    );
    assert_eq!(parse_pseudo_json("{}"), Ok(json!({})));
    for bad in [
        "",
        "status",
        "{status",
        "{status:{from:1}",
        "{a}",
        "{a:1}}",
        &"{a:".repeat(50),
    ] {
        assert!(parse_pseudo_json(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn precise_errors() {
    let e = event("ticket_created");
    let msg = |v: Value| normalize(e, &v).err().map(|e| e.0);
    assert_eq!(
        msg(json!([])),
        Some("expected a JSON object at the top level".into())
    );
    assert_eq!(
        msg(json!({})),
        Some("expected an object at `freshdesk_webhook`".into())
    );
    assert_eq!(
        msg(json!({ "freshdesk_webhook": { "ticket_id": "{{ticket.id}}" } })),
        Some(
            "expected a ticket id at `freshdesk_webhook.ticket_id`, found \"{{ticket.id}}\"".into()
        )
    );
    assert_eq!(
        msg(
            json!({ "freshdesk_webhook": { "supportopsd_event": "ticket_closed", "ticket_id": "1" } })
        ),
        Some("the payload is a `ticket_closed` delivery, not `ticket_created`".into())
    );
    let closed = normalize(
        event("ticket_closed"),
        &json!({ "freshdesk_webhook": { "ticket_id": "1", "ticket_status": "Open" } }),
    );
    assert_eq!(
        closed.err().map(|e| e.0),
        Some("a `ticket_closed` payload must have status 5, found 2".into())
    );
    assert!(normalize(event("contact_created"), &fixture("ticket_created.json")).is_err());
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
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[{}:,a-z0-9 ]{0,24}".prop_map(Value::from),
        Just(Value::from("{status:{from:2,to:4}}")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("freshdesk_webhook".to_owned()),
            Just("triggered_event".to_owned()),
            Just("ticket_id".to_owned()),
            Just("ticket_status".to_owned()),
            Just("supportopsd_event".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        for e in EVENTS {
            let _ = normalize(e, &v);
            let _ = normalize(e, &json!({ "freshdesk_webhook": v.clone() }));
        }
    }

    #[test]
    fn arbitrary_triggered_event_never_panics(s in "[{}:,a-z0-9\" ]{0,40}") {
        let _ = parse_pseudo_json(&s);
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
    let events: Vec<_> = DESCRIPTOR
        .events
        .iter()
        .map(|e| (e.name, e.deliverable))
        .collect();
    assert_eq!(
        events,
        [
            ("ticket_created", true),
            ("ticket_updated", true),
            ("ticket_resolved", true),
            ("ticket_closed", true),
            ("note_created", true),
            ("contact_created", false),
            ("contact_updated", false),
        ]
    );
    let actions: Vec<_> = DESCRIPTOR.actions.iter().map(|a| a.name).collect();
    assert_eq!(
        actions,
        [
            "create_ticket",
            "update_ticket",
            "add_note",
            "add_reply",
            "assign_ticket",
            "change_status",
            "add_time_entry",
            "create_contact",
        ]
    );
    for (action, param) in [
        ("create_ticket", "status"),
        ("create_ticket", "priority"),
        ("create_ticket", "source"),
        ("change_status", "status"),
    ] {
        let spec = DESCRIPTOR
            .action(action)
            .and_then(|a| a.params.iter().find(|p| p.name == param));
        assert!(
            matches!(spec.map(|p| &p.ty), Some(ParamType::Code(_))),
            "{action}.{param}"
        );
    }
    for e in DESCRIPTOR.events.iter().filter(|e| !e.deliverable) {
        assert!(e.description.contains("not deliverable"), "{}", e.name);
    }
}

#[test]
fn credentials_and_config() {
    let creds: Vec<_> = DESCRIPTOR
        .credentials
        .iter()
        .map(|c| (c.name, c.secret, c.required))
        .collect();
    assert_eq!(creds, [("domain", false, true), ("api_key", true, true)]);
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::Optional);
    let priority = DESCRIPTOR
        .config
        .iter()
        .find(|c| c.name == "default_priority");
    assert!(matches!(priority.map(|c| &c.ty), Some(ParamType::Code(_))));
    let auto = DESCRIPTOR.config.iter().find(|c| c.name == "auto_assign");
    assert!(matches!(auto.map(|c| &c.ty), Some(ParamType::Bool)));
}
