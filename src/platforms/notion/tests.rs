//! Catalogue and normalisation tests for Notion.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::DESCRIPTOR;
use crate::platforms::{EventSpec, Normalized, PlatformKind, WebhookSecret};

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("fixtures/", $name, ".json")))),*]
    };
}

/// (event name, fixture body).
const FIXTURES: &[(&str, &str)] = fixtures![
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

fn event(name: &str) -> &'static EventSpec {
    DESCRIPTOR
        .event(name)
        .unwrap_or_else(|| panic!("no event {name}"))
}

fn normalise(name: &str) -> Normalized {
    let body = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    let payload: Value = serde_json::from_str(body).expect("fixture is JSON");
    (DESCRIPTOR.normalize)(event(name), &payload)
        .unwrap_or_else(|e| panic!("fixture {name} does not normalise: {e}"))
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
    for (name, _) in FIXTURES {
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
    for (name, _) in FIXTURES {
        let ev = event(name);
        let n = normalise(name);
        let root = context(&n);
        for f in ev.fields {
            assert!(
                context_has_path(&root, f.path),
                "{name}: `{}` missing in {root:#}",
                f.path
            );
        }
        assert!(n.changes.is_empty());
        assert!(n.id.is_some(), "{name}: no id");
        assert!(n.time.is_some(), "{name}: no time");
        assert!(n.actor.is_some(), "{name}: no actor");
        assert_eq!(root[ev.primary]["id"], root["entity"]["id"], "{name}");
    }
}

#[test]
fn page_created_yields_sparse_context() {
    let n = normalise("page.created");
    assert_eq!(n.actor.as_deref(), Some(BOT));
    let root = context(&n);
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
    assert_eq!(n.actor.as_deref(), Some(PERSON));
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
    let e = (DESCRIPTOR.normalize)(
        event("page.created"),
        &json!({"verification_token": "secret_abc"}),
    )
    .expect_err("handshake");
    assert!(e.0.contains("verification"), "{e}");
    let payload: Value = serde_json::from_str(FIXTURES[0].1).expect("json");
    let e = (DESCRIPTOR.normalize)(event("page.deleted"), &payload).expect_err("mismatch");
    assert_eq!(
        e.0,
        "the payload is a `page.created` event, not `page.deleted`"
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
    for j in &junk {
        assert!(
            (DESCRIPTOR.normalize)(event("page.created"), j).is_err(),
            "{j}"
        );
    }
    let n = (DESCRIPTOR.normalize)(
        event("page.properties_updated"),
        &json!({"type": "page.properties_updated", "entity": {"id": 5}, "authors": [1, {"id": "u"}],
                "data": {"updated_properties": "x"}}),
    )
    .expect("sparse body");
    let root = context(&n);
    for f in event("page.properties_updated").fields {
        assert!(context_has_path(&root, f.path), "{}", f.path);
    }
    assert_eq!(n.actor.as_deref(), Some("u"));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("page.created".to_owned()),
            Just("bot".to_owned()),
            "[a-zA-Z.]{0,8}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("type".to_owned()),
            Just("entity".to_owned()),
            Just("data".to_owned()),
            Just("parent".to_owned()),
            Just("authors".to_owned()),
            Just("id".to_owned()),
            Just("updated_blocks".to_owned()),
            Just("updated_properties".to_owned()),
            Just("page_id".to_owned()),
            Just("attempt_number".to_owned()),
            "[a-z_]{1,6}",
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
    fn normalize_never_panics(v in arb_json(), data in arb_json(), authors in arb_json()) {
        for e in DESCRIPTOR.events {
            let _ = (DESCRIPTOR.normalize)(e, &v);
            let wrapped = json!({"type": e.name, "entity": {"id": "x"}, "data": data.clone(), "authors": authors.clone()});
            let _ = (DESCRIPTOR.normalize)(e, &wrapped);
        }
    }
}
