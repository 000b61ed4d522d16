//! Catalogue and normalisation tests for Trello.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::DESCRIPTOR;
use crate::platforms::{EventSpec, Normalized, PlatformKind, WebhookSecret};

/// (event name, fixture body).
const FIXTURES: &[(&str, &str)] = &[
    ("createCard", include_str!("fixtures/createCard.json")),
    ("updateCard", include_str!("fixtures/updateCard_move.json")),
    (
        "updateCard",
        include_str!("fixtures/updateCard_fields.json"),
    ),
    ("commentCard", include_str!("fixtures/commentCard.json")),
    (
        "addLabelToCard",
        include_str!("fixtures/addLabelToCard.json"),
    ),
    (
        "removeLabelFromCard",
        include_str!("fixtures/removeLabelFromCard.json"),
    ),
    (
        "addChecklistToCard",
        include_str!("fixtures/addChecklistToCard.json"),
    ),
    (
        "updateCheckItemStateOnCard",
        include_str!("fixtures/updateCheckItemStateOnCard.json"),
    ),
    (
        "addMemberToCard",
        include_str!("fixtures/addMemberToCard.json"),
    ),
    (
        "moveCardToBoard",
        include_str!("fixtures/moveCardToBoard.json"),
    ),
    ("deleteCard", include_str!("fixtures/deleteCard.json")),
    ("createList", include_str!("fixtures/createList.json")),
];

fn event(name: &str) -> &'static EventSpec {
    DESCRIPTOR
        .event(name)
        .unwrap_or_else(|| panic!("no event {name}"))
}

fn fixture(idx: usize) -> (&'static EventSpec, Normalized) {
    let (name, body) = FIXTURES[idx];
    let payload: Value = serde_json::from_str(body).expect("fixture is JSON");
    let ev = event(name);
    let n = (DESCRIPTOR.normalize)(ev, &payload)
        .unwrap_or_else(|e| panic!("fixture {idx} ({name}) does not normalise: {e}"));
    (ev, n)
}

/// The context root `{ <objects…>, "changes": … }`.
fn context(n: &Normalized) -> Value {
    let mut root: Map<String, Value> = n.objects.clone();
    root.insert("changes".into(), Value::Object(n.changes.clone()));
    Value::Object(root)
}

/// Whether the dotted `path` exists (possibly as `null`) under `root`.
fn context_has_path(root: &Value, path: &str) -> bool {
    let mut cur = root;
    for seg in path.split('.') {
        match cur.as_object().and_then(|m| m.get(seg)) {
            Some(v) => cur = v,
            None => return false,
        }
    }
    true
}

#[test]
fn descriptor_basics() {
    assert_eq!(DESCRIPTOR.kind, PlatformKind::Trello);
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::NotUsed);
    for (name, secret) in [("api_key", false), ("token", true), ("app_secret", true)] {
        let c = DESCRIPTOR.credential(name).expect("credential present");
        assert_eq!(c.secret, secret, "{name}");
        assert!(c.required, "{name}");
    }
    let config: Vec<_> = DESCRIPTOR.config.iter().map(|c| c.name).collect();
    assert_eq!(config, ["boards", "default_list"]);
}

#[test]
fn lists_the_required_events_and_actions() {
    for name in [
        "createCard",
        "updateCard",
        "commentCard",
        "addLabelToCard",
        "removeLabelFromCard",
        "addChecklistToCard",
        "addMemberToCard",
        "moveCardToBoard",
        "createList",
        "updateCheckItemStateOnCard",
        "deleteCard",
    ] {
        assert!(DESCRIPTOR.event(name).is_some(), "missing event {name}");
    }
    for name in [
        "create_card",
        "update_card",
        "move_card",
        "add_comment",
        "add_checklist",
        "add_label",
    ] {
        assert!(DESCRIPTOR.action(name).is_some(), "missing action {name}");
    }
    let items = DESCRIPTOR
        .action("add_checklist")
        .and_then(|a| a.params.iter().find(|p| p.name == "items"))
        .expect("items param");
    assert!(matches!(items.ty, crate::platforms::ParamType::StringList));
}

#[test]
fn names_are_unique_and_descriptions_filled() {
    let mut seen = HashSet::new();
    for e in DESCRIPTOR.events {
        assert!(seen.insert(e.name), "duplicate event {}", e.name);
        assert!(!e.description.is_empty());
        let mut paths = HashSet::new();
        for f in e.fields {
            assert!(
                paths.insert(f.path),
                "duplicate field {} in {}",
                f.path,
                e.name
            );
        }
        assert!(
            e.fields
                .iter()
                .any(|f| f.path.starts_with(&format!("{}.", e.primary))),
            "{} has no field of its primary object",
            e.name
        );
        for c in e.changes {
            let path = format!("{}.{c}", e.primary);
            assert!(
                e.fields.iter().any(|f| f.path == path),
                "change {c} of {} is not a catalogued field",
                e.name
            );
        }
    }
    let mut seen = HashSet::new();
    for a in DESCRIPTOR.actions {
        assert!(seen.insert(a.name), "duplicate action {}", a.name);
        assert!(!a.description.is_empty());
        let mut params = HashSet::new();
        for p in a.params {
            assert!(
                params.insert(p.name),
                "duplicate param {} in {}",
                p.name,
                a.name
            );
            assert!(!p.description.is_empty());
        }
        for group in a.require_one_of {
            for name in *group {
                assert!(params.contains(name), "{} requires unknown {name}", a.name);
            }
        }
    }
    let mut seen = HashSet::new();
    for c in DESCRIPTOR.config {
        assert!(seen.insert(c.name), "duplicate config key {}", c.name);
    }
}

#[test]
fn every_deliverable_event_has_a_fixture() {
    for e in DESCRIPTOR.events.iter().filter(|e| e.deliverable) {
        assert!(
            FIXTURES.iter().any(|(n, _)| *n == e.name),
            "no fixture for {}",
            e.name
        );
    }
}

#[test]
fn every_fixture_normalises_with_every_catalogued_field() {
    for idx in 0..FIXTURES.len() {
        let (ev, n) = fixture(idx);
        let root = context(&n);
        for f in ev.fields {
            assert!(
                context_has_path(&root, f.path),
                "{}: `{}` missing in {root:#}",
                ev.name,
                f.path
            );
        }
        for key in n.changes.keys() {
            assert!(
                ev.changes.contains(&key.as_str()),
                "{}: uncatalogued change {key}",
                ev.name
            );
        }
        assert!(n.id.is_some(), "{}: no id", ev.name);
        assert!(n.time.is_some(), "{}: no time", ev.name);
        assert!(n.actor.is_some(), "{}: no actor", ev.name);
    }
}

#[test]
fn card_move_yields_lists_and_changes() {
    let (_, n) = fixture(1);
    let root = context(&n);
    assert_eq!(root["list_before"]["name"], "Inbox");
    assert_eq!(root["list_after"]["name"], "In progress");
    assert_eq!(root["list"]["id"], "5f1a2b3c4d5e6f7a8b9c0e02");
    assert_eq!(root["card"]["id_list"], "5f1a2b3c4d5e6f7a8b9c0e02");
    assert_eq!(root["card"]["id_short"], 128);
    assert_eq!(root["card"]["url"], "https://trello.com/c/Qw3rTy7u");
    assert_eq!(
        root["changes"]["id_list"],
        json!({"from": "5f1a2b3c4d5e6f7a8b9c0e01", "to": "5f1a2b3c4d5e6f7a8b9c0e02"})
    );
    assert_eq!(root["changes"]["list"]["to"]["name"], "In progress");
    assert_eq!(n.id.as_deref(), Some("6603c4d5e6f7a8b9c0d1e2f4"));
    assert_eq!(n.actor.as_deref(), Some("5e0f1a2b3c4d5e6f7a8b9c01"));
    assert_eq!(n.time.as_deref(), Some("2026-03-02T10:01:44.002Z"));
}

#[test]
fn field_edits_become_typed_changes() {
    let (_, n) = fixture(2);
    assert_eq!(
        n.changes["desc"],
        json!({"from": "", "to": "Reported by acme.io, ticket #4411"})
    );
    assert_eq!(
        n.changes["due"],
        json!({"from": null, "to": "2026-03-05T17:00:00.000Z"})
    );
    assert_eq!(n.changes["closed"], json!({"from": true, "to": false}));
    assert_eq!(
        n.changes["due_complete"],
        json!({"from": true, "to": false})
    );
    assert_eq!(n.changes["pos"], json!({"from": 8192, "to": 16384.5}));
    assert_eq!(n.changes["name"]["from"], "Password reset");
    assert!(!n.changes.contains_key("list"));
}

#[test]
fn subjects_of_other_events() {
    let (_, n) = fixture(3);
    assert_eq!(
        n.objects["comment"]["text"],
        "Escalated to tier 2 — café ok"
    );
    assert_eq!(n.objects["comment"]["id"], "6603c4d5e6f7a8b9c0d1e2f6");
    let (_, n) = fixture(4);
    assert_eq!(
        n.objects["label"],
        json!({"id": "5f1a2b3c4d5e6f7a8b9c0f01", "name": "urgent", "color": "red"})
    );
    let (_, n) = fixture(7);
    assert_eq!(n.objects["check_item"]["state"], "complete");
    let (_, n) = fixture(8);
    assert_eq!(n.objects["member"]["name"], "Jonas Field");
    let (_, n) = fixture(9);
    assert_eq!(n.objects["board_source"]["name"], "Sales handoff");
    let (_, n) = fixture(11);
    assert_eq!(n.objects["list"]["name"], "Waiting on customer");
    assert!(!n.objects.contains_key("card"));
}

#[test]
fn wrong_action_type_is_refused() {
    let payload: Value = serde_json::from_str(FIXTURES[0].1).expect("json");
    let e = (DESCRIPTOR.normalize)(event("updateCard"), &payload).expect_err("mismatch");
    assert!(e.0.contains("createCard"), "{e}");
}

#[test]
fn junk_is_an_error_not_a_panic() {
    let junk = [
        json!(null),
        json!([]),
        json!("x"),
        json!({}),
        json!({"action": 1}),
        json!({"action": {}}),
        json!({"action": {"type": 3}}),
        json!({"action": {"type": "updateCard"}}),
        json!({"action": {"type": "updateCard", "data": []}}),
        json!({"action": {"type": "updateCard", "data": {"card": "x"}}}),
        json!({"action": {"type": "updateCard", "data": {"old": 1}}}),
        json!({"action": {"type": "updateCard", "data": {"listAfter": []}}}),
    ];
    for j in &junk {
        assert!(
            (DESCRIPTOR.normalize)(event("updateCard"), j).is_err(),
            "{j}"
        );
    }
    let e = (DESCRIPTOR.normalize)(
        event("updateCard"),
        &json!({"action": {"type": "updateCard", "data": 5}}),
    )
    .expect_err("data");
    assert_eq!(e.0, "expected an object at `action.data`");
    // A sparse but well-formed body still yields every catalogued key.
    let n = (DESCRIPTOR.normalize)(
        event("updateCard"),
        &json!({"action": {"type": "updateCard", "data": {"card": {"idShort": "12", "pos": "x"}}}}),
    )
    .expect("sparse body");
    let root = context(&n);
    for f in event("updateCard").fields {
        assert!(context_has_path(&root, f.path), "{}", f.path);
    }
    assert_eq!(root["card"]["id_short"], 12);
    assert_eq!(root["card"]["pos"], Value::Null);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("createCard".to_owned()),
            Just("updateCard".to_owned()),
            Just("card".to_owned()),
            "[a-zA-Z]{0,8}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("action".to_owned()),
            Just("type".to_owned()),
            Just("data".to_owned()),
            Just("card".to_owned()),
            Just("old".to_owned()),
            Just("list".to_owned()),
            Just("listBefore".to_owned()),
            Just("listAfter".to_owned()),
            Just("board".to_owned()),
            Just("memberCreator".to_owned()),
            Just("label".to_owned()),
            Just("checkItem".to_owned()),
            Just("idList".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn normalize_never_panics(v in arb_json()) {
        for e in DESCRIPTOR.events {
            let _ = (DESCRIPTOR.normalize)(e, &v);
            let wrapped = json!({"action": {"type": e.name, "data": v.clone()}});
            let _ = (DESCRIPTOR.normalize)(e, &wrapped);
        }
    }
}
