//! Catalogue and normalisation tests for Slack.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::DESCRIPTOR;
use super::events::rfc3339_from_unix;
use crate::platforms::testkit::{self, Fixture, Vocabulary, fixtures};
use crate::platforms::{Normalized, WebhookSecret};

/// `(event, fixture file, body)`.
const FIXTURES: &[Fixture] = fixtures![
    ("message", "message.json"),
    ("message", "message_bot.json"),
    ("message", "message_changed.json"),
    ("app_mention", "app_mention.json"),
    ("reaction_added", "reaction_added.json"),
    ("channel_created", "channel_created.json"),
    ("member_joined_channel", "member_joined_channel.json"),
    ("team_join", "team_join.json"),
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
fn envelope() {
    let n = normalized("message", "message.json");
    assert_eq!(n.id.as_deref(), Some("Ev07A1B2C3D4"));
    assert_eq!(n.time.as_deref(), Some("2024-07-10T12:00:00Z"));
    assert_eq!(n.actor(), Some("U0CUSTOMR1"));
    assert_eq!(n.objects["team"], json!({ "id": "T0ACME123" }));
    assert_eq!(
        n.objects["channel"],
        json!({ "id": "C0HELPDESK", "type": "channel" })
    );
    assert_eq!(n.objects["message"]["thread_ts"], Value::Null);
}

#[test]
fn bot_messages_name_the_bot_as_actor() {
    let n = normalized("message", "message_bot.json");
    assert_eq!(n.actor(), Some("B0SUPBOT01"));
    assert_eq!(n.objects["message"]["user"], Value::Null);
    assert_eq!(n.objects["message"]["subtype"], json!("bot_message"));
}

#[test]
fn edits_report_the_text_change() {
    let n = normalized("message", "message_changed.json");
    assert_eq!(
        n.changes["text"],
        json!({
            "from": "Checkout has been failing for us since 9am, any news?",
            "to": "Checkout has been failing for us since 8am, any news?",
        })
    );
    assert_eq!(n.objects["message"]["ts"], json!("1720612800.000200"));
    assert_eq!(n.objects["message"]["channel"], json!("C0HELPDESK"));
    assert_eq!(n.actor(), Some("U0CUSTOMR1"));
}

#[test]
fn other_events() {
    let n = normalized("reaction_added", "reaction_added.json");
    assert_eq!(n.objects["reaction"]["name"], json!("ticket"));
    assert_eq!(
        n.objects["reaction"]["item"]["ts"],
        json!("1720612800.000200")
    );
    assert_eq!(n.actor(), Some("U0AGENT007"));

    let n = normalized("channel_created", "channel_created.json");
    assert_eq!(
        n.objects["channel"]["created"],
        json!("2024-07-10T12:23:20Z")
    );
    assert_eq!(n.actor(), Some("U0AGENT007"));

    let n = normalized("member_joined_channel", "member_joined_channel.json");
    assert_eq!(n.objects["member"]["user"], json!("W0ENGINEER"));
    assert_eq!(n.actor(), Some("U0AGENT007"), "the inviter caused the join");
    assert_eq!(
        n.actors,
        ["U0AGENT007", "W0ENGINEER"],
        "and the member who joined"
    );

    let n = normalized("team_join", "team_join.json");
    assert_eq!(
        n.objects["user"]["email"],
        json!("lena.fischer@acme.example")
    );
    assert_eq!(n.objects["user"]["is_bot"], json!(false));
}

#[test]
fn unix_times() {
    assert_eq!(
        rfc3339_from_unix(0).as_deref(),
        Some("1970-01-01T00:00:00Z")
    );
    assert_eq!(
        rfc3339_from_unix(1_355_517_523).as_deref(),
        Some("2012-12-14T20:38:43Z")
    );
    assert_eq!(
        rfc3339_from_unix(951_782_400).as_deref(),
        Some("2000-02-29T00:00:00Z")
    );
    assert_eq!(
        rfc3339_from_unix(253_402_300_799).as_deref(),
        Some("9999-12-31T23:59:59Z")
    );
    assert_eq!(rfc3339_from_unix(-1), None);
    assert_eq!(rfc3339_from_unix(i64::MAX), None);
}

#[test]
fn precise_errors() {
    let msg = |name: &str, v: Value| testkit::normalize_error(&DESCRIPTOR, name, &v);
    assert_eq!(
        msg("message", json!("x")),
        Some("expected a JSON object at the top level".into())
    );
    assert_eq!(
        msg(
            "message",
            json!({ "type": "url_verification", "challenge": "abc" })
        ),
        Some("a `url_verification` handshake carries no event".into())
    );
    assert_eq!(
        msg("message", json!({ "type": "event_callback", "event": [] })),
        Some("expected an object at `event`".into())
    );
    assert_eq!(
        msg("message", fixture("reaction_added.json")),
        Some("the payload is a `reaction_added` event, not `message`".into())
    );
    assert_eq!(
        msg(
            "reaction_added",
            json!({ "type": "event_callback", "event": { "type": "reaction_added" } })
        ),
        Some("expected an object at `event.item`".into())
    );
    assert_eq!(
        msg(
            "message",
            json!({ "type": "event_callback",
            "event": { "type": "message", "subtype": "message_changed" } })
        ),
        Some("expected an object at `event.message`".into())
    );
}

#[test]
fn mutated_fixtures_never_panic() {
    testkit::normalize_mutated_fixtures(&DESCRIPTOR, FIXTURES);
}

const VOCABULARY: Vocabulary = Vocabulary {
    words: &[
        "event_callback",
        "url_verification",
        "message",
        "message_changed",
        "message_deleted",
        "app_mention",
        "reaction_added",
        "channel_created",
        "member_joined_channel",
        "team_join",
    ],
    text: "[a-zA-Z0-9 .]{0,12}",
    keys: &[
        "type",
        "subtype",
        "event",
        "event_id",
        "event_time",
        "team_id",
        "message",
        "previous_message",
        "item",
        "channel",
        "user",
        "profile",
        "created",
        "text",
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

    #[test]
    fn any_unix_time_is_safe(secs in any::<i64>()) {
        let _ = rfc3339_from_unix(secs);
    }
}

#[test]
fn descriptor_lists_the_required_events_and_actions() {
    let events: Vec<_> = DESCRIPTOR.events.iter().map(|e| e.name).collect();
    assert_eq!(
        events,
        [
            "message",
            "app_mention",
            "reaction_added",
            "channel_created",
            "member_joined_channel",
            "team_join",
        ]
    );
    assert!(DESCRIPTOR.events.iter().all(|e| e.deliverable));
    let actions: Vec<_> = DESCRIPTOR.actions.iter().map(|a| a.name).collect();
    assert_eq!(
        actions,
        [
            "send_message",
            "create_channel",
            "invite_user",
            "upload_file",
            "set_status"
        ]
    );
    let send = DESCRIPTOR
        .action("send_message")
        .map(|a| a.params.iter().map(|p| p.name).collect::<Vec<_>>());
    let send = send.unwrap_or_default();
    for name in ["channel", "message", "blocks", "thread_ts"] {
        assert!(send.contains(&name), "send_message.{name}");
    }
}

#[test]
fn credentials() {
    let creds: Vec<_> = DESCRIPTOR
        .credentials
        .iter()
        .map(|c| (c.name, c.secret, c.required))
        .collect();
    assert_eq!(
        creds,
        [
            ("bot_token", true, true),
            ("user_token", true, false),
            ("app_config_token", true, false),
            ("app_config_refresh_token", true, false),
            ("app_id", false, false),
            ("signing_secret", true, true),
        ]
    );
    assert!(DESCRIPTOR.credential_sets.is_empty());
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::NotUsed);
}

/// Normalisation reads every actor field the catalogue names: both parties of a join (the
/// bot invited by a person is an actor too), the bot id and bot user of a bot's message, a
/// channel's creator.
#[test]
fn actors_are_every_party_the_catalogue_names() {
    let mut p = fixture("member_joined_channel.json");
    p["event"]["user"] = json!("U0SUPBOT01");
    p["event"]["inviter"] = json!("U0PERSON01");
    let n = testkit::normalize_fixture(&DESCRIPTOR, "member_joined_channel", "bot", &p.to_string());
    assert_eq!(n.actors, ["U0PERSON01", "U0SUPBOT01"]);

    let mut p = fixture("member_joined_channel.json");
    p["event"].as_object_mut().map(|e| e.remove("inviter"));
    let n =
        testkit::normalize_fixture(&DESCRIPTOR, "member_joined_channel", "self", &p.to_string());
    assert_eq!(n.actors, ["W0ENGINEER"], "joined on their own");

    let mut p = fixture("message_bot.json");
    p["event"]["user"] = json!("U0SUPBOT01");
    let n = testkit::normalize_fixture(&DESCRIPTOR, "message", "bot", &p.to_string());
    assert_eq!(n.actors, ["B0SUPBOT01", "U0SUPBOT01"]);

    let n = normalized("channel_created", "channel_created.json");
    assert_eq!(n.actors, ["U0AGENT007"]);
}
