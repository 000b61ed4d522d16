//! Catalogue and normalisation tests for Google Sheets.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::DESCRIPTOR;
use super::events::a1_row_range;
use crate::platforms::{EventSpec, Normalized, PlatformKind, WebhookSecret};

/// (event name, fixture body).
const FIXTURES: &[(&str, &str)] = &[
    ("file_changed", include_str!("fixtures/file_changed.json")),
    (
        "file_changed",
        include_str!("fixtures/file_changed_sync.json"),
    ),
    ("row_added", include_str!("fixtures/row_added.json")),
];

const SPREADSHEET: &str = "1qZx8vB3nK0pL7mR2sT5uW9yA4cD6eF8gH0jK2lM4nOp";

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
    assert_eq!(DESCRIPTOR.kind, PlatformKind::GoogleSheets);
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::NotUsed);
    let key = DESCRIPTOR.credential("service_account_key").expect("key");
    assert!(key.secret && key.required);
    let id = DESCRIPTOR.credential("spreadsheet_id").expect("id");
    assert!(!id.secret && id.required);
    for name in ["sheet", "header_row", "poll_interval_seconds"] {
        assert!(DESCRIPTOR.config.iter().any(|c| c.name == name), "{name}");
    }
}

#[test]
fn lists_the_required_events_and_actions() {
    for name in ["file_changed", "row_added"] {
        assert!(DESCRIPTOR.event(name).is_some(), "missing event {name}");
    }
    for name in [
        "append_row",
        "update_row",
        "read_range",
        "create_sheet",
        "batch_update",
    ] {
        assert!(DESCRIPTOR.action(name).is_some(), "missing action {name}");
    }
    let batch = DESCRIPTOR.action("batch_update").expect("batch");
    let vio = batch
        .params
        .iter()
        .find(|p| p.name == "value_input_option")
        .expect("value_input_option");
    assert!(matches!(
        vio.ty,
        crate::platforms::ParamType::Enum(["RAW", "USER_ENTERED"])
    ));
    assert!(
        batch.params.iter().any(
            |p| p.name == "requests" && matches!(p.ty, crate::platforms::ParamType::ObjectList)
        )
    );
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
        assert!(
            n.actor.is_none(),
            "{}: Drive and the poller name no actor",
            ev.name
        );
    }
}

#[test]
fn file_changed_comes_from_headers() {
    let (_, n) = fixture(0);
    let root = context(&n);
    assert_eq!(root["file"]["id"], SPREADSHEET);
    assert_eq!(root["file"]["resource_state"], "update");
    assert_eq!(root["file"]["changed"], json!(["content", "properties"]));
    assert_eq!(root["file"]["message_number"], 118_433);
    assert_eq!(
        n.id.as_deref(),
        Some("sos-gs-3f2a9c1e-7b4d-4e8a-9f10-2c6d8e0a1b3c:118433")
    );
    assert_eq!(n.time.as_deref(), Some("2026-05-04T09:12:03Z"));
    assert_eq!(n.actor, None);
}

#[test]
fn sync_message_takes_the_id_from_the_resource_uri() {
    let (_, n) = fixture(1);
    assert_eq!(n.objects["file"]["id"], SPREADSHEET);
    assert_eq!(n.objects["file"]["resource_state"], "sync");
    assert_eq!(n.objects["file"]["changed"], json!([]));
    assert_eq!(n.objects["file"]["message_number"], 1);
}

#[test]
fn header_names_are_case_insensitive_and_the_token_is_dropped() {
    let n = (DESCRIPTOR.normalize)(
        event("file_changed"),
        &json!({"headers": {"X-Goog-Resource-State": "trash", "X-Goog-Channel-Token": "s3cret"}}),
    )
    .expect("normalises");
    assert_eq!(n.objects["file"]["resource_state"], "trash");
    assert!(
        !serde_json::to_string(&n.objects)
            .expect("json")
            .contains("s3cret")
    );
}

#[test]
fn row_added_maps_headers_to_values() {
    let (_, n) = fixture(2);
    let row = &n.objects["row"];
    assert_eq!(row["sheet"], "Escalations log");
    assert_eq!(row["row_number"], 42);
    assert_eq!(row["sheet_id"], 1_843_210_567_i64);
    assert_eq!(row["range"], "'Escalations log'!A42:E42");
    assert_eq!(row["fields"]["Customer"], "acme.io");
    assert_eq!(row["fields"]["Priority"], 3);
    assert_eq!(row["fields"]["Notes"], Value::Null);
    assert_eq!(n.objects["spreadsheet"]["id"], SPREADSHEET);
    assert_eq!(
        n.id.as_deref(),
        Some(&*format!("{SPREADSHEET}:Escalations log:42"))
    );
    assert_eq!(n.time.as_deref(), Some("2026-05-04T09:12:30Z"));
}

#[test]
fn a1_ranges() {
    assert_eq!(a1_row_range("Sheet1", 5, 3), "Sheet1!A5:C5");
    assert_eq!(a1_row_range("Sheet1", 5, 0), "Sheet1!5:5");
    assert_eq!(a1_row_range("Bob's", 2, 27), "'Bob''s'!A2:AA2");
    assert_eq!(a1_row_range("x", 1, 702), "x!A1:ZZ1");
}

#[test]
fn junk_is_an_error_not_a_panic() {
    let file = [
        json!(null),
        json!([]),
        json!({}),
        json!({"headers": []}),
        json!({"headers": {}}),
        json!({"headers": {"x-goog-resource-state": 5}}),
        json!({"headers": {"x-goog-resource-state": "update", "x-goog-changed": ["content"]}}),
        json!({"headers": {"x-goog-resource-state": "update"}, "spreadsheet_id": 1}),
    ];
    for j in &file {
        assert!(
            (DESCRIPTOR.normalize)(event("file_changed"), j).is_err(),
            "{j}"
        );
    }
    let row = [
        json!(1),
        json!({}),
        json!({"sheet": "a"}),
        json!({"sheet": "a", "row_number": 0}),
        json!({"sheet": "a", "row_number": 2, "values": {}}),
        json!({"sheet": "a", "row_number": 2, "headers": "a,b"}),
    ];
    for j in &row {
        assert!(
            (DESCRIPTOR.normalize)(event("row_added"), j).is_err(),
            "{j}"
        );
    }
    let e =
        (DESCRIPTOR.normalize)(event("file_changed"), &json!({"headers": 1})).expect_err("headers");
    assert_eq!(e.0, "expected an object at `headers`");
    let n = (DESCRIPTOR.normalize)(
        event("row_added"),
        &json!({"sheet": "a", "row_number": "3"}),
    )
    .expect("minimal row");
    let root = context(&n);
    for f in event("row_added").fields {
        assert!(context_has_path(&root, f.path), "{}", f.path);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("update".to_owned()),
            Just("https://www.googleapis.com/drive/v3/files/".to_owned()),
            "[a-zA-Z,' /?]{0,10}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("headers".to_owned()),
            Just("x-goog-resource-state".to_owned()),
            Just("x-goog-resource-uri".to_owned()),
            Just("x-goog-changed".to_owned()),
            Just("x-goog-message-number".to_owned()),
            Just("sheet".to_owned()),
            Just("row_number".to_owned()),
            Just("values".to_owned()),
            Just("spreadsheet_id".to_owned()),
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
    fn normalize_never_panics(v in arb_json(), w in arb_json(), n in any::<i64>(), sheet in ".{0,6}") {
        for e in DESCRIPTOR.events {
            let _ = (DESCRIPTOR.normalize)(e, &v);
        }
        let _ = (DESCRIPTOR.normalize)(event("file_changed"), &json!({"headers": v.clone()}));
        let _ = (DESCRIPTOR.normalize)(
            event("row_added"),
            &json!({"sheet": sheet, "row_number": n, "values": v, "headers": w}),
        );
    }
}
