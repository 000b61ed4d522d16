//! The one event type every platform's webhook payload is normalised into, as stored in the
//! inbox and handed to the rules.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::manifest::IntegrationId;
use crate::platforms::PlatformKind;

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
    /// Who caused it, as the platform identifies them (for the loop guard).
    pub actor: Option<String>,
    /// The normalised objects (the primary object and any others).
    pub objects: Map<String, Value>,
    /// Reported field changes (`{"status": {"from": 2, "to": 4}}`).
    pub changes: Map<String, Value>,
    /// The raw payload as JSON (for platforms without a body, what ingress built from headers).
    pub payload: Value,
}

impl Event {
    /// The dedupe key: integration and platform event id.
    pub fn key(&self) -> String {
        format!("{}/{}", self.integration, self.id)
    }

    /// The context conditions and templates read (layout in [`crate::rules`]).
    pub fn context(&self) -> Value {
        let mut root = Map::new();
        root.insert(
            "event".into(),
            json!({
                "platform": self.platform.as_str(),
                "integration": self.integration.as_str(),
                "name": self.name,
                "id": self.id,
                "time": self.time,
            }),
        );
        for (k, v) in &self.objects {
            root.insert(k.clone(), v.clone());
        }
        root.insert("changes".into(), Value::Object(self.changes.clone()));
        root.insert("payload".into(), self.payload.clone());
        Value::Object(root)
    }
}
