//! Rules: field paths, the condition language and templates. Pure code: no I/O, no clock.
//!
//! The event context that conditions and templates see is one JSON object:
//!
//! ```json
//! { "event":   { "platform": "freshdesk", "integration": "freshdesk-main", "name": "ticket_created",
//!                "id": "…", "time": "…" },
//!   "ticket":  { … },                       // the primary object, named by the event spec
//!   "requester": { … },                     // further objects the platform's event carries
//!   "changes": { "status": { "from": 2, "to": 4 } },   // keyed by path relative to the primary object
//!   "payload": { … } }                      // the raw body, for anything the catalogue does not name
//! ```
//!
//! Templates additionally see `actions`, the results of the rule's earlier actions.

pub mod condition;
pub mod explain;
pub mod path;
pub mod template;

use serde::Serialize;

/// The type of a value an event field holds, as far as static checks care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// A string.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` / `false`.
    Bool,
    /// An RFC 3339 timestamp, carried as a string (compares chronologically).
    Timestamp,
    /// A list of strings (tags, labels).
    StringList,
    /// A list of anything.
    List,
    /// An object whose keys are not catalogued (custom fields, raw payload): any sub-path is allowed.
    Object,
    /// Anything (null included).
    Any,
}

/// What static checks know about a path in an event context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathType {
    /// The path is catalogued with this type.
    Known(ValueType),
    /// The path lies beneath an uncatalogued object (`payload.…`, custom fields): it may exist.
    Open,
    /// The event can never have this path.
    Missing,
}

/// The static shape of an event context: answers "can this path exist, and with what type".
pub trait PathTypes {
    /// The type of `path` in this event's context.
    fn type_of(&self, path: &path::FieldPath) -> PathType;
    /// The name of the primary object (`ticket`, `message`, `card`…): bare keys resolve against it.
    fn primary(&self) -> &str;
    /// The closest known path to a [`PathType::Missing`] `path`, for a "did you mean" help.
    /// The default knows none.
    fn suggest(&self, path: &path::FieldPath) -> Option<String> {
        let _ = path;
        None
    }
    /// Whether the event reports changes of `path` under `changes`: `Some(false)` makes
    /// `changed`/`changed_to` on it a compile error. The default (`None`) does not know.
    fn reports_changes(&self, path: &path::FieldPath) -> Option<bool> {
        let _ = path;
        None
    }
    /// Why a [`PathType::Missing`] `path` is missing when the event has the field but the
    /// integration's configuration never delivers it (a message naming the field and the
    /// mode), instead of the generic "never has field". The default knows none.
    fn never_delivered(&self, path: &path::FieldPath) -> Option<String> {
        let _ = path;
        None
    }
    /// The values `path` may take, where the platform fixes them (Zendesk's priorities,
    /// Freshdesk's status codes): a condition comparing it with any other value never holds,
    /// so compile refuses it. The default knows none.
    fn allowed(&self, path: &path::FieldPath) -> Option<Allowed> {
        let _ = path;
        None
    }
}

/// The values a field may take, where the platform's documentation fixes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// One of these strings, exactly (case matters: they are what normalisation yields).
    Strings(&'static [&'static str]),
    /// One of these numeric codes (named for messages), or any integer from `custom_from` on
    /// (Freshdesk's custom statuses take 6 and above).
    Codes {
        /// Name → code.
        codes: &'static [(&'static str, i64)],
        /// Custom codes start here; `None`: there are none.
        custom_from: Option<i64>,
    },
}

impl Allowed {
    /// Whether `v` is one of the values (a value of another type is left to the type check).
    pub fn admits(&self, v: &serde_json::Value) -> bool {
        match (self, v) {
            (Allowed::Strings(values), serde_json::Value::String(s)) => {
                values.contains(&s.as_str())
            }
            (Allowed::Codes { codes, custom_from }, serde_json::Value::Number(n)) => {
                n.as_i64().is_some_and(|i| {
                    codes.iter().any(|(_, c)| *c == i) || custom_from.is_some_and(|f| i >= f)
                })
            }
            _ => true,
        }
    }

    /// The values in words: `"new", "open"` or `1 (low), 2 (medium)`, custom codes included.
    pub fn describe(&self) -> String {
        match self {
            Allowed::Strings(values) => values
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", "),
            Allowed::Codes { codes, custom_from } => {
                let mut text = codes
                    .iter()
                    .map(|(name, c)| format!("{c} ({name})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Some(f) = custom_from {
                    text.push_str(&format!(", or a custom code from {f} on"));
                }
                text
            }
        }
    }

    /// The value `v` probably meant: the same word in another case or a close spelling, or for
    /// a coded field the code whose name `v` spells (`"Urgent"` → `4`), as it would be written.
    pub fn suggest(&self, v: &serde_json::Value) -> Option<String> {
        let text = v.as_str()?.trim().to_lowercase();
        match self {
            Allowed::Strings(values) => values
                .iter()
                .find(|a| a.to_lowercase() == text)
                .or_else(|| {
                    values
                        .iter()
                        .map(|a| (condition::edit_distance(&text, a), a))
                        .filter(|(d, a)| *d <= 2 && *d < a.len())
                        .min_by_key(|(d, _)| *d)
                        .map(|(_, a)| a)
                })
                .map(|a| format!("\"{a}\"")),
            Allowed::Codes { codes, .. } => codes
                .iter()
                .find(|(name, _)| name.replace('_', " ") == text.replace('_', " "))
                .map(|(name, c)| format!("`{c}` ({name})")),
        }
    }
}
