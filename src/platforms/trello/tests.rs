//! Catalogue and normalisation tests for Trello.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use crate::platforms::testkit::{self, Fixture, Vocabulary, fixtures};
use crate::platforms::{Normalized, PlatformKind, WebhookSecret};

/// `(event, fixture file, body)`.
const FIXTURES: &[Fixture] = fixtures![
    ("createCard", "createCard.json"),
    ("updateCard", "updateCard_move.json"),
    ("updateCard", "updateCard_fields.json"),
    ("commentCard", "commentCard.json"),
    ("addLabelToCard", "addLabelToCard.json"),
    ("removeLabelFromCard", "removeLabelFromCard.json"),
    ("addChecklistToCard", "addChecklistToCard.json"),
    (
        "updateCheckItemStateOnCard",
        "updateCheckItemStateOnCard.json"
    ),
    ("addMemberToCard", "addMemberToCard.json"),
    ("moveCardToBoard", "moveCardToBoard.json"),
    ("deleteCard", "deleteCard.json"),
    ("createList", "createList.json"),
];

fn normalized(event_name: &str, file: &str) -> Normalized {
    testkit::normalized(&DESCRIPTOR, FIXTURES, event_name, file)
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
    testkit::assert_catalogue_sound(&DESCRIPTOR);
    testkit::assert_changes_are_catalogued_fields(&DESCRIPTOR);
}

#[test]
fn every_deliverable_event_has_a_fixture() {
    testkit::assert_every_deliverable_event_has_a_fixture(&DESCRIPTOR, FIXTURES);
}

#[test]
fn every_fixture_normalises_with_every_catalogued_field() {
    for (file, _, n) in testkit::assert_every_fixture_complete(&DESCRIPTOR, FIXTURES) {
        assert!(n.id.is_some(), "{file}: no id");
        assert!(n.time.is_some(), "{file}: no time");
        assert!(n.actor().is_some(), "{file}: no actor");
    }
}

#[test]
fn card_move_yields_lists_and_changes() {
    let n = normalized("updateCard", "updateCard_move.json");
    let root = testkit::context(&n);
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
    assert_eq!(n.actor(), Some("5e0f1a2b3c4d5e6f7a8b9c01"));
    assert_eq!(n.time.as_deref(), Some("2026-03-02T10:01:44.002Z"));
}

#[test]
fn field_edits_become_typed_changes() {
    let n = normalized("updateCard", "updateCard_fields.json");
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
    let n = normalized("commentCard", "commentCard.json");
    assert_eq!(
        n.objects["comment"]["text"],
        "Escalated to tier 2 — café ok"
    );
    assert_eq!(n.objects["comment"]["id"], "6603c4d5e6f7a8b9c0d1e2f6");
    let n = normalized("addLabelToCard", "addLabelToCard.json");
    assert_eq!(
        n.objects["label"],
        json!({"id": "5f1a2b3c4d5e6f7a8b9c0f01", "name": "urgent", "color": "red"})
    );
    let n = normalized(
        "updateCheckItemStateOnCard",
        "updateCheckItemStateOnCard.json",
    );
    assert_eq!(n.objects["check_item"]["state"], "complete");
    let n = normalized("addMemberToCard", "addMemberToCard.json");
    assert_eq!(n.objects["member"]["name"], "Jonas Field");
    let n = normalized("moveCardToBoard", "moveCardToBoard.json");
    assert_eq!(n.objects["board_source"]["name"], "Sales handoff");
    let n = normalized("createList", "createList.json");
    assert_eq!(n.objects["list"]["name"], "Waiting on customer");
    assert!(!n.objects.contains_key("card"));
}

#[test]
fn wrong_action_type_is_refused() {
    let payload = testkit::fixture_json(FIXTURES, "createCard.json");
    let e = testkit::normalize_error(&DESCRIPTOR, "updateCard", &payload).expect("mismatch");
    assert!(e.contains("createCard"), "{e}");
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
    testkit::assert_refused(&DESCRIPTOR, "updateCard", &junk);
    assert_eq!(
        testkit::normalize_error(
            &DESCRIPTOR,
            "updateCard",
            &json!({"action": {"type": "updateCard", "data": 5}}),
        )
        .as_deref(),
        Some("expected an object at `action.data`")
    );
    // A sparse but well-formed body still yields every catalogued key.
    let n = testkit::assert_fixture_complete(
        &DESCRIPTOR,
        "updateCard",
        "sparse body",
        r#"{"action": {"type": "updateCard", "data": {"card": {"idShort": "12", "pos": "x"}}}}"#,
    );
    let root = testkit::context(&n);
    assert_eq!(root["card"]["id_short"], 12);
    assert_eq!(root["card"]["pos"], Value::Null);
}

#[test]
fn mutated_fixtures_never_panic() {
    testkit::normalize_mutated_fixtures(&DESCRIPTOR, FIXTURES);
}

const VOCABULARY: Vocabulary = Vocabulary {
    words: &["createCard", "updateCard", "card"],
    text: "[a-zA-Z]{0,8}",
    keys: &[
        "action",
        "type",
        "data",
        "card",
        "old",
        "list",
        "listBefore",
        "listAfter",
        "board",
        "memberCreator",
        "label",
        "checkItem",
        "idList",
    ],
    free_key: Some("[a-z]{1,6}"),
    max_entries: 6,
};

proptest! {
    #[test]
    fn normalize_never_panics(v in testkit::arb_json(VOCABULARY)) {
        testkit::normalize_every_event(&DESCRIPTOR, &v);
        for e in DESCRIPTOR.events {
            let wrapped = json!({"action": {"type": e.name, "data": v.clone()}});
            let _ = (DESCRIPTOR.normalize)(e, &wrapped);
        }
    }
}

/// Normalisation reads the actor the catalogue names: the member who performed the action.
#[test]
fn actors_are_the_member_creator() {
    let n = normalized("updateCard", "updateCard_move.json");
    assert_eq!(n.actors, ["5e0f1a2b3c4d5e6f7a8b9c01"]);
    let mut p = testkit::fixture_json(FIXTURES, "updateCard_move.json");
    p["action"]
        .as_object_mut()
        .map(|a| a.remove("memberCreator"));
    let n = testkit::normalize_fixture(&DESCRIPTOR, "updateCard", "bare", &p.to_string());
    assert_eq!(
        n.actors,
        [p["action"]["idMemberCreator"].as_str().unwrap_or("?")],
        "`idMemberCreator` alone names the member too"
    );
}
