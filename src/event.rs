//! The one event type every platform's webhook payload is normalised into, as stored in the
//! inbox and handed to the rules; [`pseudonym`]: a payload's personal data and credentials
//! replaced before it is written to a file; [`corpus`]: recorded deliveries as a versioned file.

pub mod corpus;
pub mod pseudonym;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::manifest::IntegrationId;
use crate::platforms::PlatformKind;
use crate::rules::path::Root;

/// A verified, normalised event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The platform it came from.
    pub platform: PlatformKind,
    /// The integration (webhook endpoint) it arrived on.
    pub integration: IntegrationId,
    /// The event name, as the catalogue names it (`ticket_created`, `ticket.created`, `message`…).
    pub name: String,
    /// The platform's own event id; where the platform sends none, a digest of the delivery.
    /// Together with `integration` it is the dedupe key.
    pub id: String,
    /// When the event happened, RFC 3339, when the platform says.
    pub time: Option<String>,
    /// When supportopsd received it, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// Who caused it, as the platform identifies them: the first of `actors` (shown in
    /// history; events stored before `actors` existed have only this).
    pub actor: Option<String>,
    /// Everyone the event names as having caused it, from the fields its catalogue entry names
    /// ([`crate::platforms::EventSpec::actors`]), for the loop guard ([`Event::self_caused`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<String>,
    /// The normalised objects (the primary object and any others).
    pub objects: Map<String, Value>,
    /// Reported field changes (`{"status": {"from": 2, "to": 4}}`).
    pub changes: Map<String, Value>,
    /// The raw payload as JSON (for platforms without a body, what ingress built from headers).
    pub payload: Value,
}

impl Event {
    /// The dedupe key: integration and platform event id ([`dedupe_key`]).
    pub fn key(&self) -> String {
        dedupe_key(&self.integration, &self.id)
    }

    /// Every actor: `actor` and `actors`, each once.
    pub fn all_actors(&self) -> Vec<String> {
        let mut all: Vec<String> = self.actor.iter().cloned().collect();
        for a in &self.actors {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        all
    }

    /// Whether supportopsd caused this event, given its identities `ours` on the integration
    /// (the loop guard): its catalogue entry's rule ([`crate::platforms::Actors::is_self`]),
    /// any actor being ours for an event the catalogue does not know.
    pub fn self_caused(&self, ours: &[String]) -> bool {
        let rule = self
            .platform
            .descriptor()
            .event(&self.name)
            .map_or(crate::platforms::Actors::Each(&[]), |e| e.actors);
        rule.is_self(&self.all_actors(), ours)
    }

    /// The context conditions and templates read (layout in [`crate::rules`]).
    pub fn context(&self) -> Value {
        let mut root = Map::new();
        root.insert("event".into(), self.head());
        for (k, v) in &self.objects {
            root.insert(k.clone(), v.clone());
        }
        root.insert("changes".into(), Value::Object(self.changes.clone()));
        root.insert("payload".into(), self.payload.clone());
        Value::Object(root)
    }

    /// The same context for conditions, reading the event in place instead of copying its
    /// objects and payload (rule matching runs for every delivery).
    pub fn context_view(&self) -> ContextView<'_> {
        ContextView {
            event: self,
            head: std::cell::OnceCell::new(),
            changes: Value::Object(self.changes.clone()),
        }
    }

    /// The context's `event` entry.
    fn head(&self) -> Value {
        json!({
            "platform": self.platform.as_str(),
            "integration": self.integration.as_str(),
            "name": self.name,
            "id": self.id,
            "time": self.time,
        })
    }
}

/// The dedupe key of an event with platform event id `id` on `integration` ([`Event::key`];
/// for code that has the two fields without the whole event, e.g. a journal record read in
/// part).
pub fn dedupe_key(integration: &IntegrationId, id: &str) -> String {
    format!("{integration}/{id}")
}

/// An event's rule context read in place ([`Event::context_view`]): every field path finds what
/// it finds in [`Event::context`].
#[derive(Debug)]
pub struct ContextView<'a> {
    event: &'a Event,
    /// The `event` entry, built only if a condition reads it.
    head: std::cell::OnceCell<Value>,
    changes: Value,
}

impl Root for ContextView<'_> {
    fn get_root(&self, key: &str) -> Option<&Value> {
        // The precedence of `Event::context`: objects over `event`; `changes` and `payload`
        // over objects.
        match key {
            "changes" => Some(&self.changes),
            "payload" => Some(&self.event.payload),
            _ => {
                self.event.objects.get(key).or_else(|| {
                    (key == "event").then(|| self.head.get_or_init(|| self.event.head()))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::condition::compile;
    use crate::rules::condition::tests::OpenTypes;
    use crate::rules::path::FieldPath;

    fn event(objects: Value, changes: Value) -> Event {
        Event {
            platform: PlatformKind::Zendesk,
            integration: IntegrationId::parse("zd").unwrap(),
            name: "ticket.updated".into(),
            id: "e1".into(),
            time: Some("2026-01-01T00:00:00Z".into()),
            received_at_ms: 1,
            actor: None,
            actors: Vec::new(),
            objects: objects.as_object().cloned().unwrap(),
            changes: changes.as_object().cloned().unwrap(),
            payload: json!({"detail": {"id": "7", "tags": ["vip"]}, "event": "zen"}),
        }
    }

    /// Every path finds in the view what it finds in the built context, including where an
    /// object's name collides with `event`, `changes` or `payload`.
    #[test]
    fn the_view_finds_what_the_context_finds() {
        let events = [
            event(
                json!({"ticket": {"id": 7, "status": "open", "tags": ["a", "b"]}, "requester": {"email": "x@y"}}),
                json!({"status": {"from": "new", "to": "open"}}),
            ),
            event(
                json!({"event": {"id": "shadow"}, "payload": {"id": "shadowed"}, "changes": 1}),
                json!({}),
            ),
        ];
        let paths = [
            "event.platform",
            "event.integration",
            "event.name",
            "event.id",
            "event.time",
            "ticket",
            "ticket.id",
            "ticket.tags[1]",
            "ticket.missing",
            "requester.email",
            "changes.status.to",
            "changes",
            "payload.detail.tags[0]",
            "payload.event",
            "payload.id",
            "nothing.here",
        ];
        for e in &events {
            let (ctx, view) = (e.context(), e.context_view());
            for p in paths {
                let path: FieldPath = p.parse().unwrap();
                assert_eq!(path.lookup_in(&view), path.lookup(&ctx), "{p}");
                assert_eq!(path.lookup_in(&ctx), path.lookup(&ctx), "{p}");
            }
            let conditions = [
                json!({"ticket.status": "open"}),
                json!({"ticket.status": {"changed_to": "open"}}),
                json!({"ticket.status": {"changed": true}}),
                json!({"event.name": {"matches": "^ticket\\."}, "payload.detail.id": {"in": ["7"]}}),
                json!({"requester.email": {"exists": false}}),
            ];
            for c in conditions {
                let condition = compile(c.as_object().unwrap(), &OpenTypes).unwrap();
                assert_eq!(condition.eval(&view), condition.eval(&ctx), "{c}");
            }
        }
    }

    /// An event stored before `actors` existed loads, and its `actor` is still checked; a new
    /// event with no extra actors is stored as before.
    #[test]
    fn stored_events_without_actors_load_and_keep_their_actor() {
        let mut e = event(json!({}), json!({}));
        e.actor = Some("U1".into());
        let stored = serde_json::to_value(&e).unwrap();
        assert!(stored.get("actors").is_none(), "{stored}");
        let old: Event = serde_json::from_value(stored).unwrap();
        assert!(old.actors.is_empty());
        assert!(old.self_caused(&["U1".to_owned()]));
        assert!(!old.self_caused(&["U2".to_owned()]));
    }

    /// The loop guard sees every actor: a Slack join where our bot is the member who joined,
    /// invited by a person, is ours; a Notion edit of a person aggregated with ours is not.
    #[test]
    fn self_caused_follows_the_catalogue() {
        let ours = ["U0BOT".to_owned(), "B0BOT".to_owned()];
        let mut e = event(json!({}), json!({}));
        e.platform = PlatformKind::Slack;
        e.name = "member_joined_channel".into();
        e.actor = Some("U0PERSON".into());
        e.actors = vec!["U0PERSON".into(), "U0BOT".into()];
        assert!(e.self_caused(&ours));
        e.actors = vec!["U0PERSON".into()];
        assert!(!e.self_caused(&ours));

        e.platform = PlatformKind::Notion;
        e.name = "page.properties_updated".into();
        e.actor = Some("person".into());
        e.actors = vec!["person".into(), "U0BOT".into()];
        assert!(!e.self_caused(&ours));
        e.actor = Some("U0BOT".into());
        e.actors = vec!["U0BOT".into()];
        assert!(e.self_caused(&ours));
    }
}
