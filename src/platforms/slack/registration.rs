//! The Events API request URL in the app manifest: which bot events the catalogue's event names
//! subscribe to, and the edit of an exported manifest that points it at supportopsd.
//!
//! Slack has no "create subscription" method: the request URL and the events live in the app
//! configuration (`settings.event_subscriptions.request_url` and `.bot_events`), which the
//! manifest API exports and replaces whole. [`SlackConnector::sync_request_url`] runs
//! `apps.manifest.export` → [`merge`] → `apps.manifest.validate` → `apps.manifest.update`, all
//! with the app configuration token. The merge keeps the app's other bot events and adds the
//! bot scopes the events need ([`scopes_for_bot_event`]).
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

/// The bot scopes Slack requires for a bot event (each event's reference page at
/// `docs.slack.dev/reference/events/<event>`, "Required scopes"; `member_joined_channel` lists
/// `channels:read` for public and `groups:read` for private channels).
pub fn scopes_for_bot_event(event: &str) -> &'static [&'static str] {
    match event {
        "message.channels" => &["channels:history"],
        "message.groups" => &["groups:history"],
        "message.im" => &["im:history"],
        "message.mpim" => &["mpim:history"],
        "app_mention" => &["app_mentions:read"],
        "reaction_added" => &["reactions:read"],
        "channel_created" => &["channels:read"],
        "member_joined_channel" => &["channels:read", "groups:read"],
        "team_join" => &["users:read"],
        _ => &[],
    }
}

/// The bot scopes a list of bot events needs, sorted, without duplicates.
pub fn scopes(bot_events: &[String]) -> Vec<String> {
    let mut out: Vec<String> = bot_events
        .iter()
        .flat_map(|e| scopes_for_bot_event(e).iter().map(|s| (*s).to_owned()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What [`merge`] makes of an exported manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The manifest to send (the exported one when nothing changes).
    pub manifest: Value,
    /// Whether it differs from the exported one (the request URL, the bot events or the bot
    /// scopes), i.e. whether an update is needed.
    pub changed: bool,
    /// The bot events this integration added and so owns: it may remove them later. Events
    /// that were already there when it first wanted them stay the app's.
    pub added: Vec<String>,
    /// Bot scopes the update adds to `oauth_config.scopes.bot` (the app must be reinstalled
    /// for them to take effect).
    pub scopes_added: Vec<String>,
}

fn strings_at(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn object_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    parent
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
}

/// Points `manifest`'s Events API at `url` for the bot events `wanted`, **merging**: the app's
/// other bot events stay; of the events this integration added before (`previously_added`),
/// only those no longer wanted are removed; wanted events missing are appended (sorted). The
/// bot scopes the wanted events need ([`scopes`]) are added to `oauth_config.scopes.bot`;
/// scopes are never removed (another feature of the app may use them). Every other field
/// (`user_events` included) is kept as it was. `None` when the manifest, its `settings`,
/// `event_subscriptions`, `oauth_config` or `scopes` is not a JSON object.
pub fn merge(
    manifest: &Value,
    url: &str,
    wanted: &[String],
    previously_added: &[String],
) -> Option<Merged> {
    let mut out = manifest.clone();
    let root = out.as_object_mut()?;
    let subs = object_at(object_at(root, "settings")?, "event_subscriptions")?;
    let current = strings_at(subs.get("bot_events"));
    let mut events: Vec<String> = current
        .iter()
        .filter(|e| wanted.contains(e) || !previously_added.contains(e))
        .cloned()
        .collect();
    let mut missing: Vec<String> = wanted
        .iter()
        .filter(|e| !current.contains(e))
        .cloned()
        .collect();
    missing.sort();
    missing.dedup();
    let mut added: Vec<String> = previously_added
        .iter()
        .filter(|e| wanted.contains(e))
        .chain(missing.iter())
        .cloned()
        .collect();
    added.sort();
    added.dedup();
    events.extend(missing);
    let url_changed = subs.get("request_url").and_then(Value::as_str) != Some(url);
    let events_changed = events != current;
    subs.insert("request_url".into(), Value::String(url.to_owned()));
    subs.insert(
        "bot_events".into(),
        Value::Array(events.into_iter().map(Value::String).collect()),
    );
    let bot_scopes = object_at(object_at(root, "oauth_config")?, "scopes")?;
    let have = strings_at(bot_scopes.get("bot"));
    let scopes_added: Vec<String> = scopes(wanted)
        .into_iter()
        .filter(|s| !have.contains(s))
        .collect();
    if !scopes_added.is_empty() {
        let mut all = have;
        all.extend(scopes_added.iter().cloned());
        bot_scopes.insert(
            "bot".into(),
            Value::Array(all.into_iter().map(Value::String).collect()),
        );
    }
    let changed = url_changed || events_changed || !scopes_added.is_empty();
    Some(Merged {
        manifest: if changed { out } else { manifest.clone() },
        changed,
        added,
        scopes_added,
    })
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
    fn merge_keeps_the_apps_events_and_removes_only_its_own() {
        let m = json!({
            "display_information": {"name": "Ops"},
            "oauth_config": {"scopes": {"bot": ["chat:write", "app_mentions:read"]}},
            "settings": {
                "interactivity": {"is_enabled": true},
                "event_subscriptions": {
                    "request_url": "https://old.example/x",
                    "bot_events": ["app_home_opened", "app_mention"],
                    "user_events": ["reaction_added"]
                }
            }
        });
        let wanted = strings(&["app_mention", "team_join"]);
        let merged = merge(&m, "https://new.example/y", &wanted, &[]).expect("object");
        assert!(merged.changed);
        // `app_mention` was the app's before: not ours to remove later.
        assert_eq!(merged.added, strings(&["team_join"]));
        assert_eq!(merged.scopes_added, strings(&["users:read"]));
        assert_eq!(
            merged.manifest,
            json!({
                "display_information": {"name": "Ops"},
                "oauth_config": {"scopes": {"bot": ["chat:write", "app_mentions:read", "users:read"]}},
                "settings": {
                    "interactivity": {"is_enabled": true},
                    "event_subscriptions": {
                        "request_url": "https://new.example/y",
                        "bot_events": ["app_home_opened", "app_mention", "team_join"],
                        "user_events": ["reaction_added"]
                    }
                }
            })
        );
        // Merged again with the same wish: nothing to change.
        let again = merge(
            &merged.manifest,
            "https://new.example/y",
            &wanted,
            &merged.added,
        )
        .expect("object");
        assert!(!again.changed);
        assert_eq!(again.manifest, merged.manifest);
        // No longer wanting either: only our own `team_join` goes; `app_mention` stays.
        let fewer = merge(
            &merged.manifest,
            "https://new.example/y",
            &[],
            &merged.added,
        )
        .expect("object");
        assert!(fewer.changed);
        assert!(fewer.added.is_empty());
        assert_eq!(
            fewer.manifest["settings"]["event_subscriptions"]["bot_events"],
            json!(["app_home_opened", "app_mention"])
        );
        assert_eq!(
            merge(&json!({}), "https://u", &wanted, &[]).map(|m| m.manifest),
            Some(json!({
                "settings": {"event_subscriptions": {
                    "request_url": "https://u", "bot_events": ["app_mention", "team_join"]}},
                "oauth_config": {"scopes": {"bot": ["app_mentions:read", "users:read"]}}
            }))
        );
        assert_eq!(merge(&json!([]), "https://u", &wanted, &[]), None);
    }

    #[test]
    fn every_bot_event_has_its_scopes() {
        for spec in super::super::events::EVENTS {
            for e in bot_events_for(spec.name) {
                assert!(!scopes_for_bot_event(&e).is_empty(), "{e}");
            }
        }
    }
}
