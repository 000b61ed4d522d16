//! The Events API request URL in the app manifest: which bot events the catalogue's event names
//! subscribe to, and the edit of an exported manifest that points it at supportopsd.
//!
//! Slack has no "create subscription" method: the request URL and the events live in the app
//! configuration (`settings.event_subscriptions.request_url` and `.bot_events`), which the
//! manifest API exports and replaces whole. [`SlackConnector::sync_request_url`] runs
//! `apps.manifest.export` → [`apply`] → `apps.manifest.validate` → `apps.manifest.update`, all
//! with the app configuration token.
//!
//! [`SlackConnector::sync_request_url`]: super::connector::SlackConnector::sync_request_url

use serde_json::{Map, Value};

/// The bot event subscriptions delivering a catalogue event.
///
/// | catalogue event | bot events |
/// |---|---|
/// | `message` | `message.channels`, `message.groups`, `message.im`, `message.mpim` (public channels, private channels, DMs, group DMs: Slack subscribes to messages per conversation type) |
/// | anything else (`app_mention`, `reaction_added`, `channel_created`, `member_joined_channel`, `team_join`) | the same name |
pub fn bot_events_for(event: &str) -> Vec<String> {
    match event {
        "message" => [
            "message.channels",
            "message.groups",
            "message.im",
            "message.mpim",
        ]
        .iter()
        .map(|e| (*e).to_owned())
        .collect(),
        other => vec![other.to_owned()],
    }
}

/// The bot events for a list of catalogue events: mapped by [`bot_events_for`], sorted, without
/// duplicates.
pub fn bot_events(events: &[String]) -> Vec<String> {
    let mut out: Vec<String> = events.iter().flat_map(|e| bot_events_for(e)).collect();
    out.sort();
    out.dedup();
    out
}

/// Whether `manifest` already sends exactly `bot_events` (as a set) to `url`.
pub fn matches(manifest: &Value, url: &str, bot_events: &[String]) -> bool {
    let subs = manifest
        .get("settings")
        .and_then(|s| s.get("event_subscriptions"));
    let current_url = subs
        .and_then(|s| s.get("request_url"))
        .and_then(Value::as_str);
    let mut current: Vec<&str> = subs
        .and_then(|s| s.get("bot_events"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    current.sort_unstable();
    current.dedup();
    current_url == Some(url) && current == bot_events.iter().map(String::as_str).collect::<Vec<_>>()
}

/// `manifest` with `settings.event_subscriptions.request_url` set to `url` and `.bot_events` to
/// `bot_events`; every other field (`user_events` included) is kept as it was. `None` when the
/// manifest or its `settings`/`event_subscriptions` is not a JSON object.
pub fn apply(manifest: &Value, url: &str, bot_events: &[String]) -> Option<Value> {
    let mut out = manifest.clone();
    let settings = out
        .as_object_mut()?
        .entry("settings")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    let subs = settings
        .entry("event_subscriptions")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()?;
    subs.insert("request_url".into(), Value::String(url.to_owned()));
    subs.insert(
        "bot_events".into(),
        Value::Array(bot_events.iter().cloned().map(Value::String).collect()),
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn message_maps_to_the_four_conversation_types_others_as_is() {
        assert_eq!(
            bot_events_for("message"),
            strings(&[
                "message.channels",
                "message.groups",
                "message.im",
                "message.mpim"
            ])
        );
        for e in [
            "app_mention",
            "reaction_added",
            "channel_created",
            "member_joined_channel",
            "team_join",
        ] {
            assert_eq!(bot_events_for(e), strings(&[e]));
        }
    }

    #[test]
    fn every_catalogue_event_maps_to_at_least_one_bot_event() {
        for spec in super::super::events::EVENTS {
            let mapped = bot_events_for(spec.name);
            assert!(!mapped.is_empty(), "{}", spec.name);
            assert!(
                mapped.iter().all(|m| m.starts_with(spec.name)),
                "{mapped:?}"
            );
        }
    }

    #[test]
    fn bot_events_are_sorted_and_deduplicated() {
        assert_eq!(
            bot_events(&strings(&[
                "team_join",
                "message",
                "app_mention",
                "team_join"
            ])),
            strings(&[
                "app_mention",
                "message.channels",
                "message.groups",
                "message.im",
                "message.mpim",
                "team_join"
            ])
        );
    }

    #[test]
    fn apply_keeps_every_other_field_and_matches_compares_sets() {
        let m = json!({
            "display_information": {"name": "Ops"},
            "settings": {
                "interactivity": {"is_enabled": true},
                "event_subscriptions": {
                    "request_url": "https://old.example/x",
                    "bot_events": ["app_home_opened"],
                    "user_events": ["reaction_added"]
                }
            }
        });
        let events = strings(&["app_mention", "team_join"]);
        assert!(!matches(&m, "https://new.example/y", &events));
        let edited = apply(&m, "https://new.example/y", &events).expect("object");
        assert_eq!(
            edited,
            json!({
                "display_information": {"name": "Ops"},
                "settings": {
                    "interactivity": {"is_enabled": true},
                    "event_subscriptions": {
                        "request_url": "https://new.example/y",
                        "bot_events": ["app_mention", "team_join"],
                        "user_events": ["reaction_added"]
                    }
                }
            })
        );
        assert!(matches(&edited, "https://new.example/y", &events));
        let reordered = apply(
            &m,
            "https://new.example/y",
            &strings(&["team_join", "app_mention"]),
        )
        .expect("object");
        assert!(matches(&reordered, "https://new.example/y", &events));
        assert_eq!(
            apply(&json!({}), "https://u", &events),
            Some(json!({"settings": {"event_subscriptions": {
                "request_url": "https://u", "bot_events": ["app_mention", "team_join"]}}}))
        );
        assert_eq!(apply(&json!([]), "https://u", &events), None);
    }
}
