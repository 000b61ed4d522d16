//! The events supportopsd emits about itself, and the normalisation of the payload the daemon
//! builds for them.
//!
//! Payload (built by [`payload`], read by [`normalize`]; `supportopsd test` fixtures use the
//! same shape):
//!
//! ```json
//! { "event": "integration.degraded", "id": "…", "time": "2026-11-28T23:00:00Z",
//!   "integration": { "id": "zendesk-main", "platform": "zendesk", "health": "degraded",
//!                    "reason": "…", "since": "2026-11-28T23:00:00Z", "failures": 1 },
//!   "origin": { "rules": [] } }
//! ```
//!
//! - `event` names the event and must be the one the payload is read as.
//! - `id` (unique per occurrence) is the dedupe key; `time` is when it happened (RFC 3339).
//! - The objects named by the event's fields (`integration`, `revision`, `registration`, `job`,
//!   `rule`)
//!   become the context objects; a catalogued field that is present must have its type.
//! - `origin.rules` lists the rules whose jobs led to this event (the loop guard: none of them
//!   is triggered by it). `job.dead_lettered` fills it when the dead job was itself triggered
//!   by a supportopsd event; `rule.throttled` names the throttled rule.

use serde_json::{Map, Value, json};

use crate::platforms::catalog::fields;
use crate::platforms::{Actors, EventSpec, FieldSpec, NormalizeError, Normalized};
use crate::rules::ValueType;

/// `integration.degraded`.
pub const INTEGRATION_DEGRADED: &str = "integration.degraded";
/// `integration.recovered`.
pub const INTEGRATION_RECOVERED: &str = "integration.recovered";
/// `revision.applied`.
pub const REVISION_APPLIED: &str = "revision.applied";
/// `revision.refused`.
pub const REVISION_REFUSED: &str = "revision.refused";
/// `registration.repaired`.
pub const REGISTRATION_REPAIRED: &str = "registration.repaired";
/// `job.dead_lettered`.
pub const JOB_DEAD_LETTERED: &str = "job.dead_lettered";
/// `rule.throttled`.
pub const RULE_THROTTLED: &str = "rule.throttled";

const INTEGRATION_FIELDS: &[FieldSpec] = fields![
    "integration.id": String,
    "integration.platform": String,
    "integration.health": String,
    "integration.reason": String,
    "integration.since": Timestamp,
    "integration.failures": Integer,
];

/// Every event of the built-in platform.
pub(crate) static EVENTS: &[EventSpec] = &[
    EventSpec {
        name: INTEGRATION_DEGRADED,
        description: "An integration's connection check started failing (credentials refused, platform unreachable, credential missing); `integration.reason` says why",
        primary: "integration",
        fields: INTEGRATION_FIELDS,
        changes: &[],
        deliverable: true,
        actors: Actors::Always("supportopsd"),
    },
    EventSpec {
        name: INTEGRATION_RECOVERED,
        description: "A degraded integration's connection check succeeds again",
        primary: "integration",
        fields: INTEGRATION_FIELDS,
        changes: &[],
        deliverable: true,
        actors: Actors::Always("supportopsd"),
    },
    EventSpec {
        name: REVISION_APPLIED,
        description: "A new revision of the manifest repository was validated and put in use",
        primary: "revision",
        fields: fields![
            "revision.id": String,
            "revision.previous": String,
            "revision.integrations": Integer,
            "revision.rules": Integer,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Always("supportopsd"),
    },
    EventSpec {
        name: REVISION_REFUSED,
        description: "The newest revision was refused (it does not validate, or cannot be read); the previous one keeps running",
        primary: "revision",
        fields: fields![
            "revision.id": String,
            "revision.reason": String,
            "revision.running": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Always("supportopsd"),
    },
    EventSpec {
        name: REGISTRATION_REPAIRED,
        description: "A webhook registration deleted or changed on the platform behind supportopsd's back was repaired",
        primary: "registration",
        fields: fields![
            "registration.integration": String,
            "registration.platform": String,
            "registration.url": String,
            "registration.events": StringList,
            "registration.detail": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Always("supportopsd"),
    },
    EventSpec {
        name: JOB_DEAD_LETTERED,
        description: "A rule's job failed for good and was dead-lettered (replay it with `supportopsd events replay`)",
        primary: "job",
        fields: fields![
            "job.id": Integer,
            "job.rule": String,
            "job.error": String,
            "job.step": Integer,
            "job.attempts": Integer,
            "job.event": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Always("supportopsd"),
    },
    EventSpec {
        name: RULE_THROTTLED,
        description: "A rule went over its action budget (`[limits] max_actions_per_minute`, or the daemon's `--max-actions-per-minute`): its new jobs are held until a later minute; emitted once per throttling episode",
        primary: "rule",
        fields: fields![
            "rule.id": String,
            "rule.integration": String,
            "rule.limit": Integer,
            "rule.held_until": Timestamp,
            "rule.since": Timestamp,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Always("supportopsd"),
    },
];

/// Builds the payload of one occurrence of `event`: `objects` holds its context objects
/// (`{"integration": {…}}`), `origin` the rules the loop guard keeps from triggering.
pub fn payload(event: &str, id: &str, time: &str, objects: Value, origin: &[String]) -> Value {
    let mut root = match objects {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    root.insert("event".into(), json!(event));
    root.insert("id".into(), json!(id));
    root.insert("time".into(), json!(time));
    root.insert("origin".into(), json!({ "rules": origin }));
    Value::Object(root)
}

/// The rules a payload says led to it (`origin.rules`); none of them may be triggered by it.
pub fn origin_rules(payload: &Value) -> Vec<String> {
    payload
        .get("origin")
        .and_then(|o| o.get("rules"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `rule` is one of the rules that led to this payload (the loop guard).
pub fn originated_from(payload: &Value, rule: &str) -> bool {
    origin_rules(payload).iter().any(|r| r == rule)
}

/// Reads a payload built by [`payload`] (or written as a `test` fixture) as `event`.
pub(crate) fn normalize(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError> {
    let root = payload
        .as_object()
        .ok_or_else(|| err("expected a JSON object at the top level".into()))?;
    match root.get("event") {
        Some(Value::String(name)) if name == event.name => {}
        Some(Value::String(name)) => {
            return Err(err(format!(
                "the payload is a `{name}` event, not `{}`",
                event.name
            )));
        }
        _ => return Err(err("expected a string at `event`".into())),
    }
    let id = optional_string(root, "id")?;
    let time = optional_string(root, "time")?;
    if let Some(origin) = root.get("origin") {
        let rules = origin.as_object().and_then(|o| o.get("rules"));
        let ok = match rules {
            None | Some(Value::Null) => origin.is_object(),
            Some(Value::Array(a)) => a.iter().all(Value::is_string),
            Some(_) => false,
        };
        if !ok {
            return Err(err(
                "expected `origin` to be an object whose `rules` is a list of rule ids".into(),
            ));
        }
    }
    let mut objects = Map::new();
    for spec in event.fields {
        let (name, rest) = spec.path.split_once('.').unwrap_or((spec.path, ""));
        if objects.contains_key(name) {
            check_field(&objects, spec, rest)?;
            continue;
        }
        match root.get(name) {
            Some(Value::Object(o)) => {
                objects.insert(name.to_owned(), Value::Object(o.clone()));
                check_field(&objects, spec, rest)?;
            }
            None | Some(Value::Null) => {}
            Some(_) => return Err(err(format!("expected an object at `{name}`"))),
        }
    }
    if !objects.contains_key(event.primary) {
        return Err(err(format!(
            "expected an object at `{}` (the `{}` event's subject)",
            event.primary, event.name
        )));
    }
    Ok(Normalized {
        id,
        time,
        actors: event.actors.read(&objects, payload),
        objects,
        changes: Map::new(),
    })
}

fn optional_string(root: &Map<String, Value>, key: &str) -> Result<Option<String>, NormalizeError> {
    match root.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(format!("expected a string at `{key}`"))),
    }
}

/// Checks the type of a catalogued field, when it is present (absent and null are allowed).
fn check_field(
    objects: &Map<String, Value>,
    spec: &FieldSpec,
    rest: &str,
) -> Result<(), NormalizeError> {
    let (name, _) = spec.path.split_once('.').unwrap_or((spec.path, ""));
    let Some(v) = objects.get(name).and_then(|o| o.get(rest)) else {
        return Ok(());
    };
    let ok = match spec.ty {
        ValueType::String | ValueType::Timestamp => v.is_string() || v.is_null(),
        ValueType::Integer => v.is_i64() || v.is_u64() || v.is_null(),
        ValueType::Number => v.is_number() || v.is_null(),
        ValueType::Bool => v.is_boolean() || v.is_null(),
        ValueType::StringList => {
            v.is_null() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
        }
        ValueType::List => v.is_array() || v.is_null(),
        ValueType::Object => v.is_object() || v.is_null(),
        ValueType::Any => true,
    };
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "`{}` has the wrong type (expected {})",
            spec.path,
            type_name(spec.ty)
        )))
    }
}

fn type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::String => "a string",
        ValueType::Timestamp => "an RFC 3339 timestamp string",
        ValueType::Integer => "a whole number",
        ValueType::Number => "a number",
        ValueType::Bool => "true or false",
        ValueType::StringList => "a list of strings",
        ValueType::List => "a list",
        ValueType::Object => "an object",
        ValueType::Any => "anything",
    }
}

fn err(msg: String) -> NormalizeError {
    NormalizeError(msg)
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (seconds precision).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    crate::platforms::slack::events::rfc3339_from_unix(secs)
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}
