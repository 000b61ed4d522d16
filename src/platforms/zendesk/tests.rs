//! Catalogue and normalisation tests for Zendesk.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use crate::platforms::testkit::{self, Fixture, Vocabulary, fixtures};
use crate::platforms::{Normalized, WebhookSecret};

/// `(event, fixture file, body)`.
const FIXTURES: &[Fixture] = fixtures![
    ("ticket.created", "ticket_created_subscription.json"),
    ("ticket.created", "ticket_created_trigger.json"),
    ("ticket.updated", "ticket_priority_changed.json"),
    ("ticket.updated", "ticket_updated_trigger.json"),
    ("ticket.updated", "comment_added_subscription.json"),
    ("ticket.solved", "ticket_status_changed_solved.json"),
    ("ticket.solved", "ticket_solved_trigger.json"),
    ("ticket.closed", "ticket_status_changed_closed.json"),
    ("comment.created", "comment_added_subscription.json"),
    ("comment.created", "comment_created_trigger.json"),
    ("user.created", "user_created.json"),
    ("user.updated", "user_active_changed.json"),
    ("user.updated", "user_default_group_changed.json"),
    ("organization.created", "organization_created.json"),
    ("organization.updated", "organization_name_changed.json"),
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
fn subscription_envelope() {
    let n = normalized("user.created", "user_created.json");
    assert_eq!(
        n.id.as_deref(),
        Some("5f0c8e4a-2d1b-4a7e-9a51-0c3f6b1d2e77")
    );
    assert_eq!(n.time.as_deref(), Some("2099-07-04T05:27:58Z"));
    assert_eq!(n.actor(), None);
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
    assert_eq!(n.actor(), Some("7001234567890"));
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
    assert_eq!(n.actor(), None, "actor -1 is Zendesk itself");

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
    assert_eq!(n.actor(), Some("6596848315901"));
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
    let msg = |name: &str, v: Value| testkit::normalize_error(&DESCRIPTOR, name, &v);
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

#[test]
fn mutated_fixtures_never_panic() {
    testkit::normalize_mutated_fixtures(&DESCRIPTOR, FIXTURES);
}

const VOCABULARY: Vocabulary = Vocabulary {
    words: &[
        "zen:event-type:ticket.created",
        "zen:event-type:ticket.status_changed",
        "zen:event-type:ticket.comment_added",
        "zen:event-type:user.created",
        "zen:event-type:user.name_changed",
        "zen:event-type:organization.tags_changed",
        "SOLVED",
        "0",
        "12345",
    ],
    text: "[a-z0-9 -]{0,12}",
    keys: &[
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
    ],
    free_key: None,
    max_entries: 8,
};

proptest! {
    #[test]
    fn arbitrary_json_never_panics(v in testkit::arb_json(VOCABULARY)) {
        testkit::normalize_every_event(&DESCRIPTOR, &v);
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
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::Optional);
}

/// Normalisation reads the actors the catalogue names: the subscription's `detail.actor_id`
/// and a comment's author (both, when they differ), the trigger's `current_user`; `-1`, the
/// system user, names no one.
#[test]
fn actors_are_the_updater_and_the_comment_author() {
    let mut p = fixture("comment_added_subscription.json");
    p["detail"]["actor_id"] = json!("555");
    let n = testkit::normalize_fixture(&DESCRIPTOR, "comment.created", "sub", &p.to_string());
    assert_eq!(n.actors, ["7001234567890", "555"]);

    let mut p = fixture("comment_created_trigger.json");
    p["current_user"]["id"] = json!("42");
    let n = testkit::normalize_fixture(&DESCRIPTOR, "comment.created", "trigger", &p.to_string());
    assert_eq!(n.actors, ["42", "7001234567890"]);

    let n = normalized("ticket.updated", "ticket_priority_changed.json");
    assert_eq!(n.actors, ["7001234567890"]);
    let n = normalized("ticket.closed", "ticket_status_changed_closed.json");
    assert!(n.actors.is_empty(), "-1 is Zendesk itself");
    let n = normalized("user.created", "user_created.json");
    assert!(n.actors.is_empty(), "user events name no actor");
}
