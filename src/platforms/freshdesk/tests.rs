//! Catalogue and normalisation tests for Freshdesk.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use super::events::parse_pseudo_json;
use crate::platforms::testkit::{self, Fixture, Vocabulary, fixtures};
use crate::platforms::{Normalized, ParamType, WebhookSecret};

/// `(event, fixture file, body)`.
const FIXTURES: &[Fixture] = fixtures![
    ("ticket_created", "ticket_created.json"),
    ("ticket_created", "ticket_created_hand_made.json"),
    ("ticket_updated", "ticket_updated_priority.json"),
    ("ticket_updated", "ticket_updated_custom_status.json"),
    ("ticket_resolved", "ticket_resolved.json"),
    ("ticket_closed", "ticket_closed.json"),
    ("note_created", "note_created.json"),
];

fn fixture(file: &str) -> Value {
    testkit::fixture_json(FIXTURES, file)
}

fn normalized(event_name: &str, file: &str) -> Normalized {
    testkit::normalized(&DESCRIPTOR, FIXTURES, event_name, file)
}

#[test]
fn every_fixture_normalises_with_every_catalogued_field() {
    testkit::assert_every_fixture_complete(&DESCRIPTOR, FIXTURES);
}

#[test]
fn every_deliverable_event_has_a_fixture() {
    testkit::assert_every_deliverable_event_has_a_fixture(&DESCRIPTOR, FIXTURES);
}

#[test]
fn names_are_unique_and_descriptions_filled() {
    testkit::assert_catalogue_sound(&DESCRIPTOR);
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
    assert_eq!((n.id, n.time, n.actors), (None, None, Vec::new()));
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
    let msg = |v: Value| testkit::normalize_error(&DESCRIPTOR, "ticket_created", &v);
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
    let closed = testkit::normalize_error(
        &DESCRIPTOR,
        "ticket_closed",
        &json!({ "freshdesk_webhook": { "ticket_id": "1", "ticket_status": "Open" } }),
    );
    assert_eq!(
        closed,
        Some("a `ticket_closed` payload must have status 5, found 2".into())
    );
    testkit::assert_refused(
        &DESCRIPTOR,
        "contact_created",
        &[fixture("ticket_created.json")],
    );
}

#[test]
fn mutated_fixtures_never_panic() {
    testkit::normalize_mutated_fixtures(&DESCRIPTOR, FIXTURES);
}

const VOCABULARY: Vocabulary = Vocabulary {
    words: &["{status:{from:2,to:4}}"],
    text: "[{}:,a-z0-9 ]{0,24}",
    keys: &[
        "freshdesk_webhook",
        "triggered_event",
        "ticket_id",
        "ticket_status",
        "ticket_status_id",
        "supportopsd_event",
    ],
    free_key: Some("[a-z_]{1,8}"),
    max_entries: 6,
};

proptest! {
    #[test]
    fn arbitrary_json_never_panics(v in testkit::arb_json(VOCABULARY)) {
        testkit::normalize_every_event(&DESCRIPTOR, &v);
        testkit::normalize_every_event(&DESCRIPTOR, &json!({ "freshdesk_webhook": v }));
    }

    #[test]
    fn arbitrary_triggered_event_never_panics(s in "[{}:,a-z0-9\" ]{0,40}") {
        let _ = parse_pseudo_json(&s);
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

/// Normalisation reads the actor the catalogue names, `performer_id`: a rendered id is the
/// actor; empty (the System) or left unrendered, it names no one and the delivery still parses.
#[test]
fn the_performer_is_the_actor_when_freshdesk_renders_it() {
    let with = |performer: Value| {
        let mut p = testkit::fixture_json(FIXTURES, "ticket_resolved.json");
        p["freshdesk_webhook"]["performer_id"] = performer;
        testkit::normalize_fixture(&DESCRIPTOR, "ticket_resolved", "performer", &p.to_string())
            .actors
    };
    assert_eq!(with(json!("19000000001")), ["19000000001"]);
    assert!(with(json!("")).is_empty(), "the System");
    assert!(
        with(json!("{{event_performer.id}}")).is_empty(),
        "unrendered"
    );
    assert!(with(Value::Null).is_empty());
    let n = normalized("ticket_created", "ticket_created_hand_made.json");
    assert!(n.actors.is_empty(), "a hand-made body without it");
}
