//! The event context rules see, and its static shape for `validate`.
//!
//! [`build`] assembles the context object from a normalised payload (layout documented in
//! [`crate::rules`]); [`EventShape`] answers, without any payload, which paths an event's context
//! can have and with what type, so conditions and templates are checked before anything runs.

use serde_json::{Map, Value, json};

use super::{ActionSpec, Delivery, EventSpec, FieldSpec, Normalized, PlatformKind};
use crate::rules::path::{FieldPath, Segment};
use crate::rules::{Allowed, PathType, PathTypes, ValueType};

/// Names of the `event` object's fields, all strings.
pub const EVENT_FIELDS: [&str; 5] = ["platform", "integration", "name", "id", "time"];

/// Builds the event context from a normalised payload.
pub fn build(
    platform: PlatformKind,
    integration: &str,
    event: &EventSpec,
    normalized: &Normalized,
    payload: &Value,
) -> Value {
    let mut root = Map::new();
    root.insert(
        "event".into(),
        json!({
            "platform": platform.as_str(),
            "integration": integration,
            "name": event.name,
            "id": normalized.id,
            "time": normalized.time,
        }),
    );
    for (k, v) in &normalized.objects {
        root.insert(k.clone(), v.clone());
    }
    root.insert("changes".into(), Value::Object(normalized.changes.clone()));
    root.insert("payload".into(), payload.clone());
    Value::Object(root)
}

/// The static shape of one event's context, optionally with the results of earlier actions
/// (for templates of the N-th action).
#[derive(Debug, Clone)]
pub struct EventShape {
    event: &'static EventSpec,
    earlier: Vec<&'static ActionSpec>,
    /// How the integration delivers the event (fields it never carries are missing).
    delivery: Option<Delivery>,
    /// The values fields may take, where the platform fixes them ([`PlatformKind::values`]).
    values: &'static [(&'static str, Allowed)],
}

/// A path's segments as the lookups below compare them: keys as they are, indexes as `[N]`.
fn segments(path: &FieldPath) -> Vec<String> {
    path.segments()
        .iter()
        .map(|s| match s {
            Segment::Key(k) => k.clone(),
            Segment::Index(i) => format!("[{i}]"),
        })
        .collect()
}

fn index(seg: &str) -> Option<usize> {
    seg.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Looks a dotted path up in a list of catalogued fields.
fn lookup(fields: &[FieldSpec], path: &str) -> PathType {
    for f in fields {
        if f.path == path {
            return PathType::Known(f.ty);
        }
        // Beneath an uncatalogued object: anything goes.
        if f.ty == ValueType::Object
            && path.len() > f.path.len()
            && path.starts_with(f.path)
            && path.as_bytes()[f.path.len()] == b'.'
        {
            return PathType::Open;
        }
        // Beneath a list: `ticket.tags.0` and friends are fine.
        if matches!(
            f.ty,
            ValueType::List | ValueType::StringList | ValueType::Any
        ) && path.starts_with(f.path)
            && path.as_bytes().get(f.path.len()) == Some(&b'.')
        {
            return PathType::Open;
        }
    }
    // An object on the way to catalogued fields (`ticket`, `ticket.requester`).
    let is_prefix = fields.iter().any(|f| {
        f.path.len() > path.len()
            && f.path.starts_with(path)
            && f.path.as_bytes()[path.len()] == b'.'
    });
    if is_prefix {
        PathType::Known(ValueType::Any)
    } else {
        PathType::Missing
    }
}

impl EventShape {
    /// The shape of `event`'s context.
    pub fn new(event: &'static EventSpec) -> Self {
        EventShape {
            event,
            earlier: Vec::new(),
            delivery: None,
            values: &[],
        }
    }

    /// The same, knowing the values `platform` fixes for its fields (conditions comparing a
    /// field with another value are refused).
    #[must_use]
    pub fn valued(mut self, platform: PlatformKind) -> Self {
        self.values = platform.values();
        self
    }

    /// The same, as an integration configured for `delivery` sees it: the fields that mode
    /// never delivers are missing (and say so); enriched fields are there.
    #[must_use]
    pub fn delivered(mut self, delivery: Option<Delivery>) -> Self {
        self.delivery = delivery;
        self
    }

    /// The dotted catalogue path of a field path outside `event`, `changes`, `payload` and
    /// `actions` (indexes as `0`).
    fn dotted(path: &FieldPath) -> String {
        segments(path)
            .iter()
            .map(|s| if index(s).is_some() { "0" } else { s.as_str() })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Whether the configured delivery never carries `path` although the event has it.
    fn absent(&self, path: &FieldPath) -> bool {
        let Some(d) = &self.delivery else {
            return false;
        };
        if matches!(
            path.root_key(),
            Some("payload" | "event" | "changes" | "actions") | None
        ) {
            return false;
        }
        Delivery::covers(d.absent, &Self::dotted(path))
    }

    /// The same, with the results of the rule's earlier actions available as `actions[N]`.
    pub fn with_actions(event: &'static EventSpec, earlier: Vec<&'static ActionSpec>) -> Self {
        EventShape {
            event,
            earlier,
            delivery: None,
            values: &[],
        }
    }

    /// Type of a path.
    fn type_of_path(&self, path: &FieldPath) -> PathType {
        let segs = segments(path);
        let Some(first) = segs.first() else {
            return PathType::Missing;
        };
        match first.as_str() {
            "payload" => PathType::Open,
            "event" => match segs.len() {
                1 => PathType::Known(ValueType::Any),
                2 if EVENT_FIELDS.contains(&segs[1].as_str()) => PathType::Known(ValueType::String),
                _ => PathType::Missing,
            },
            "changes" => {
                if segs.len() == 1 {
                    return PathType::Known(ValueType::Any);
                }
                let rest = segs[1..].join(".");
                let field = self
                    .event
                    .changes
                    .iter()
                    .find(|c| rest == **c || rest.starts_with(&format!("{c}.")));
                match field {
                    None => PathType::Missing,
                    Some(c) if rest == *c => PathType::Known(ValueType::Any),
                    Some(c) => match &rest[c.len() + 1..] {
                        "from" | "to" => PathType::Known(ValueType::Any),
                        _ => PathType::Missing,
                    },
                }
            }
            "actions" => {
                if segs.len() == 1 {
                    return PathType::Known(ValueType::Any);
                }
                let Some(spec) = index(&segs[1]).and_then(|i| self.earlier.get(i)) else {
                    return PathType::Missing;
                };
                match segs.get(2).map(String::as_str) {
                    None => PathType::Known(ValueType::Any),
                    Some("result") if segs.len() == 3 => PathType::Known(ValueType::Any),
                    Some("result") if spec.result.is_empty() => PathType::Open,
                    Some("result") => {
                        let rest = segs[3..].join(".");
                        lookup(spec.result, &rest)
                    }
                    Some(_) => PathType::Missing,
                }
            }
            _ => {
                let dotted: Vec<&str> = segs
                    .iter()
                    .map(|s| if index(s).is_some() { "0" } else { s.as_str() })
                    .collect();
                lookup(self.event.fields, &dotted.join("."))
            }
        }
    }

    /// Catalogued paths, for "did you mean" help.
    pub fn known_paths(&self) -> impl Iterator<Item = &'static str> {
        self.event.fields.iter().map(|f| f.path)
    }
}

impl PathTypes for EventShape {
    fn type_of(&self, path: &FieldPath) -> PathType {
        if self.absent(path) {
            return PathType::Missing;
        }
        self.type_of_path(path)
    }

    fn never_delivered(&self, path: &FieldPath) -> Option<String> {
        let d = self.delivery.as_ref()?;
        self.absent(path).then(|| {
            format!(
                "field `{path}` of `{}` is never delivered with {}",
                self.event.name, d.mode
            )
        })
    }

    fn primary(&self) -> &str {
        self.event.primary
    }

    fn suggest(&self, path: &FieldPath) -> Option<String> {
        let text = path.to_string();
        crate::manifest::diagnostic::did_you_mean(&text, self.known_paths()).map(str::to_owned)
    }

    fn reports_changes(&self, path: &FieldPath) -> Option<bool> {
        let key = crate::rules::condition::change_key(path, self.event.primary);
        Some(self.event.changes.iter().any(|c| *c == key))
    }

    fn allowed(&self, path: &FieldPath) -> Option<Allowed> {
        let dotted = Self::dotted(path);
        self.values
            .iter()
            .find(|(p, _)| *p == dotted)
            .map(|(_, a)| *a)
    }
}
