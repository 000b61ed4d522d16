//! Catalogue and normalisation tests for Notion.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use crate::platforms::testkit::{self, Fixture, Vocabulary, fixtures};
use crate::platforms::{Normalized, PlatformKind, WebhookSecret};

/// `(event, fixture file, body)`: one fixture per event, named after it.
const FIXTURES: &[Fixture] = fixtures![named:
    "page.created",
    "page.content_updated",
    "page.properties_updated",
    "page.moved",
    "page.deleted",
    "page.undeleted",
    "page.locked",
    "page.unlocked",
    "database.created",
    "database.moved",
    "database.deleted",
    "database.undeleted",
    "database.content_updated",
    "database.schema_updated",
    "data_source.created",
    "data_source.content_updated",
    "data_source.moved",
    "data_source.deleted",
    "data_source.undeleted",
    "data_source.schema_updated",
    "comment.created",
    "comment.updated",
    "comment.deleted",
];

const BOT: &str = "6b0d549b-6f03-475a-9600-a35a099950d8";
const PERSON: &str = "36f675cc-81e7-4ef5-a8e2-5d940ed90475";

/// The fixture of event `name`, normalised.
fn normalise(name: &str) -> Normalized {
    testkit::normalized(&DESCRIPTOR, FIXTURES, name, &format!("{name}.json"))
}

#[test]
fn descriptor_basics() {
    assert_eq!(DESCRIPTOR.kind, PlatformKind::Notion);
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::NotUsed);
    assert_eq!(DESCRIPTOR.credentials.len(), 1);
    let token = DESCRIPTOR.credential("token").expect("token");
    assert!(token.secret && token.required);
    let config: Vec<_> = DESCRIPTOR.config.iter().map(|c| c.name).collect();
    assert_eq!(
        config,
        [
            "notion_version",
            "data_sources",
            "databases",
            "default_parent_page"
        ]
    );
}

#[test]
fn lists_the_required_events_and_actions() {
    for (name, _, _) in FIXTURES {
        assert!(DESCRIPTOR.event(name).is_some(), "missing event {name}");
    }
    assert_eq!(DESCRIPTOR.events.len(), FIXTURES.len());
    for name in [
        "create_page",
        "update_page",
        "create_database_entry",
        "update_database_entry",
        "add_comment",
        "query_database",
    ] {
        assert!(DESCRIPTOR.action(name).is_some(), "missing action {name}");
    }
    let query = DESCRIPTOR.action("query_database").expect("query");
    for field in ["results", "ids", "next_cursor", "has_more"] {
        assert!(query.result.iter().any(|r| r.path == field), "{field}");
    }
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
    for (file, ev, n) in testkit::assert_every_fixture_complete(&DESCRIPTOR, FIXTURES) {
        let root = testkit::context(&n);
        assert!(n.changes.is_empty(), "{file}: changes {:?}", n.changes);
        assert!(n.id.is_some(), "{file}: no id");
        assert!(n.time.is_some(), "{file}: no time");
        assert!(n.actor().is_some(), "{file}: no actor");
        assert_eq!(root[ev.primary]["id"], root["entity"]["id"], "{file}");
    }
}

#[test]
fn page_created_yields_sparse_context() {
    let n = normalise("page.created");
    assert_eq!(n.actor(), Some(BOT));
    let root = testkit::context(&n);
    assert_eq!(root["author"]["type"], "bot");
    assert_eq!(root["entity"]["type"], "page");
    assert_eq!(root["parent"]["type"], "database");
    assert!(root["parent"]["data_source_id"].is_string());
    assert_eq!(root["workspace"]["name"], "Acme Support");
    assert_eq!(root["delivery"]["api_version"], "2025-09-03");
    assert!(root["delivery"]["attempt_number"].is_i64());
}

#[test]
fn aggregated_authors_prefer_the_person() {
    let n = normalise("page.properties_updated");
    assert_eq!(n.actor(), Some(PERSON));
    assert_eq!(n.objects["authors"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        n.objects["page"]["updated_properties"],
        json!(["title", "%3AUPp", "Vq%3Dn"])
    );
}

#[test]
fn event_specific_data_lands_on_the_primary_object() {
    let n = normalise("page.content_updated");
    assert_eq!(
        n.objects["page"]["updated_blocks"].as_array().map(Vec::len),
        Some(2)
    );
    let n = normalise("data_source.schema_updated");
    assert_eq!(
        n.objects["data_source"]["updated_properties"][0]["name"],
        "Escalated"
    );
    let n = normalise("comment.created");
    assert!(n.objects["comment"]["page_id"].is_string());
    let n = normalise("page.moved");
    assert_eq!(n.objects["parent"]["data_source_id"], Value::Null);
}

#[test]
fn verification_request_and_mismatches_are_refused() {
    let e = testkit::normalize_error(
        &DESCRIPTOR,
        "page.created",
        &json!({"verification_token": "secret_abc"}),
    )
    .expect("handshake");
    assert!(e.contains("verification"), "{e}");
    let payload = testkit::fixture_json(FIXTURES, "page.created.json");
    assert_eq!(
        testkit::normalize_error(&DESCRIPTOR, "page.deleted", &payload).as_deref(),
        Some("the payload is a `page.created` event, not `page.deleted`")
    );
}

#[test]
fn junk_is_an_error_not_a_panic() {
    let junk = [
        json!(null),
        json!([1]),
        json!(7),
        json!({}),
        json!({"type": 1}),
        json!({"type": "page.created"}),
        json!({"type": "page.created", "entity": []}),
        json!({"type": "page.created", "entity": {}, "data": 3}),
        json!({"type": "page.created", "entity": {}, "data": {"parent": "x"}}),
        json!({"type": "page.created", "entity": {}, "authors": {}}),
    ];
    testkit::assert_refused(&DESCRIPTOR, "page.created", &junk);
    let n = testkit::assert_fixture_complete(
        &DESCRIPTOR,
        "page.properties_updated",
        "sparse body",
        r#"{"type": "page.properties_updated", "entity": {"id": 5}, "authors": [1, {"id": "u"}],
            "data": {"updated_properties": "x"}}"#,
    );
    assert_eq!(n.actor(), Some("u"));
}

#[test]
fn mutated_fixtures_never_panic() {
    testkit::normalize_mutated_fixtures(&DESCRIPTOR, FIXTURES);
}

const VOCABULARY: Vocabulary = Vocabulary {
    words: &["page.created", "bot"],
    text: "[a-zA-Z.]{0,8}",
    keys: &[
        "type",
        "entity",
        "data",
        "parent",
        "authors",
        "id",
        "updated_blocks",
        "updated_properties",
        "page_id",
        "attempt_number",
    ],
    free_key: Some("[a-z_]{1,6}"),
    max_entries: 6,
};

proptest! {
    #[test]
    fn normalize_never_panics(
        v in testkit::arb_json(VOCABULARY),
        data in testkit::arb_json(VOCABULARY),
        authors in testkit::arb_json(VOCABULARY),
    ) {
        testkit::normalize_every_event(&DESCRIPTOR, &v);
        for e in DESCRIPTOR.events {
            let wrapped = json!({"type": e.name, "entity": {"id": "x"}, "data": data.clone(), "authors": authors.clone()});
            let _ = (DESCRIPTOR.normalize)(e, &wrapped);
        }
    }
}

/// Normalisation reads every author the catalogue names, the principal author first; the
/// event is ours only when every author is (a person's edit aggregated with ours runs rules).
#[test]
fn actors_are_every_author() {
    let n = normalise("page.properties_updated");
    assert_eq!(n.actors, [PERSON, BOT]);
    let spec = testkit::event(&DESCRIPTOR, "page.properties_updated");
    assert!(!spec.actors.is_self(&n.actors, &[BOT.to_owned()]));
    let n = normalise("page.created");
    assert_eq!(n.actors, [BOT]);
    assert!(spec.actors.is_self(&n.actors, &[BOT.to_owned()]));
}
