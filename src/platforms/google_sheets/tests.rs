//! Catalogue and normalisation tests for Google Sheets.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use super::events::a1_row_range;
use crate::platforms::testkit::{self, Fixture, Vocabulary, fixtures};
use crate::platforms::{Normalized, PlatformKind, WebhookSecret};

/// `(event, fixture file, body)`.
const FIXTURES: &[Fixture] = fixtures![
    ("file_changed", "file_changed.json"),
    ("file_changed", "file_changed_sync.json"),
    ("row_added", "row_added.json"),
];

const SPREADSHEET: &str = "1qZx8vB3nK0pL7mR2sT5uW9yA4cD6eF8gH0jK2lM4nOp";

fn normalized(event_name: &str, file: &str) -> Normalized {
    testkit::normalized(&DESCRIPTOR, FIXTURES, event_name, file)
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
        assert!(
            n.actor().is_none(),
            "{file}: Drive and the poller name no actor"
        );
    }
}

#[test]
fn file_changed_comes_from_headers() {
    let n = normalized("file_changed", "file_changed.json");
    let root = testkit::context(&n);
    assert_eq!(root["file"]["id"], SPREADSHEET);
    assert_eq!(root["file"]["resource_state"], "update");
    assert_eq!(root["file"]["changed"], json!(["content", "properties"]));
    assert_eq!(root["file"]["message_number"], 118_433);
    assert_eq!(
        n.id.as_deref(),
        Some("sos-gs-3f2a9c1e-7b4d-4e8a-9f10-2c6d8e0a1b3c:118433")
    );
    assert_eq!(n.time.as_deref(), Some("2026-05-04T09:12:03Z"));
    assert_eq!(n.actor(), None);
}

#[test]
fn sync_message_takes_the_id_from_the_resource_uri() {
    let n = normalized("file_changed", "file_changed_sync.json");
    assert_eq!(n.objects["file"]["id"], SPREADSHEET);
    assert_eq!(n.objects["file"]["resource_state"], "sync");
    assert_eq!(n.objects["file"]["changed"], json!([]));
    assert_eq!(n.objects["file"]["message_number"], 1);
}

#[test]
fn header_names_are_case_insensitive_and_the_token_is_dropped() {
    let n = (DESCRIPTOR.normalize)(
        testkit::event(&DESCRIPTOR, "file_changed"),
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
    let n = normalized("row_added", "row_added.json");
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
    testkit::assert_refused(&DESCRIPTOR, "file_changed", &file);
    let row = [
        json!(1),
        json!({}),
        json!({"sheet": "a"}),
        json!({"sheet": "a", "row_number": 0}),
        json!({"sheet": "a", "row_number": 2, "values": {}}),
        json!({"sheet": "a", "row_number": 2, "headers": "a,b"}),
    ];
    testkit::assert_refused(&DESCRIPTOR, "row_added", &row);
    assert_eq!(
        testkit::normalize_error(&DESCRIPTOR, "file_changed", &json!({"headers": 1})).as_deref(),
        Some("expected an object at `headers`")
    );
    testkit::assert_fixture_complete(
        &DESCRIPTOR,
        "row_added",
        "minimal row",
        r#"{"sheet": "a", "row_number": "3"}"#,
    );
}

#[test]
fn mutated_fixtures_never_panic() {
    testkit::normalize_mutated_fixtures(&DESCRIPTOR, FIXTURES);
}

const VOCABULARY: Vocabulary = Vocabulary {
    words: &["update", "https://www.googleapis.com/drive/v3/files/"],
    text: "[a-zA-Z,' /?]{0,10}",
    keys: &[
        "headers",
        "x-goog-resource-state",
        "x-goog-resource-uri",
        "x-goog-changed",
        "x-goog-message-number",
        "sheet",
        "row_number",
        "values",
        "spreadsheet_id",
    ],
    free_key: Some("[a-z_]{1,6}"),
    max_entries: 6,
};

proptest! {
    #[test]
    fn normalize_never_panics(
        v in testkit::arb_json(VOCABULARY),
        w in testkit::arb_json(VOCABULARY),
        n in any::<i64>(),
        sheet in ".{0,6}",
    ) {
        testkit::normalize_every_event(&DESCRIPTOR, &v);
        let _ = (DESCRIPTOR.normalize)(
            testkit::event(&DESCRIPTOR, "file_changed"),
            &json!({"headers": v.clone()}),
        );
        let _ = (DESCRIPTOR.normalize)(
            testkit::event(&DESCRIPTOR, "row_added"),
            &json!({"sheet": sheet, "row_number": n, "values": v, "headers": w}),
        );
    }
}
