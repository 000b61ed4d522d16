//! The static catalogue types: what a platform offers (events, actions, credentials, config),
//! with no I/O. `validate`, `test`, `plan` and `schema` need nothing else.
//!
//! The catalogue is data, and it is written as a table per platform: one row per parameter,
//! config key, credential or field, through the small macros of this module (`params!`,
//! `param!`, `fields!`, `credentials!`):
//!
//! ```ignore
//! ActionSpec {
//!     name: "invite_user",
//!     description: "Invite users to a channel the bot is a member of (conversations.invite)",
//!     params: params![
//!         "channel": String, required, "Channel id";
//!         "users": StringList, required, "User ids to invite";
//!         "force": Bool, optional, "Invite the valid users even if some ids fail";
//!     ],
//!     require_one_of: &[],
//!     result: fields!["channel": String],
//! },
//! ```
//!
//! Why macros, and not plain constructor calls or an embedded file:
//!
//! - A row is not Rust expression syntax, so rustfmt leaves it on its one line (a constructor
//!   call per parameter is spread over six). Adding an action is adding its rows and its
//!   request code in the connector, and a review reads a table.
//! - The rows expand to the very `&'static [ParamSpec]` / `&'static [FieldSpec]` constants the
//!   struct literals gave: no parsing at start-up, nothing to fail at run time, no build script,
//!   no proc-macro crate.
//! - The compiler still checks every row: a type is a [`ParamType`] or [`ValueType`] variant
//!   (`Enum(STATUSES)` and `Code(STATUS_CODES)` name real constants), `required` / `optional`
//!   and `secret` / `plain` are the only flags accepted. An embedded TOML or JSON file would
//!   have needed its own parser and a test to find what the compiler finds here, and strings
//!   where the catalogue shares constants.
//! - The specs themselves ([`ActionSpec`], [`EventSpec`], [`Descriptor`]) stay struct literals:
//!   a handful of named fields each, which rustfmt keeps short and which say what they are.
//!
//! What the rest of the program derives from the catalogue (the JSON Schemas in `schema/`,
//! `docs/platforms.md`, `validate`'s checks, the parameter checks of every action) needs no
//! edit when a row is added; `SUPPORTOPSD_BLESS=1 cargo test` rewrites the generated files.

use serde_json::Value;

use super::PlatformKind;
use crate::rules::ValueType;

/// Everything static about one platform.
#[derive(Debug)]
pub struct Descriptor {
    /// Which platform.
    pub kind: PlatformKind,
    /// Human name ("Google Sheets").
    pub title: &'static str,
    /// The hosts the platform's API lives on, as host patterns of the host policy
    /// (`*.freshdesk.com`, `slack.com`): the only hosts its connector sends credentials to over
    /// https without the policy naming them (see [`crate::policy`]).
    pub hosts: &'static [&'static str],
    /// Fields of `[credentials]`.
    pub credentials: &'static [CredentialField],
    /// Alternative credential sets: at least one set must be fully present. Empty means
    /// "every field marked `required`".
    pub credential_sets: &'static [&'static [&'static str]],
    /// Keys of `[config]`.
    pub config: &'static [ParamSpec],
    /// Whether `[webhook] secret` is meaningful for this platform.
    pub webhook_secret: WebhookSecret,
    /// Events rules can trigger on.
    pub events: &'static [EventSpec],
    /// Actions rules can perform.
    pub actions: &'static [ActionSpec],
    /// How each action that creates something may be sent again after an answer that leaves
    /// its outcome unknown (a 5xx, a timeout after sending); an action not listed is
    /// [`Resend::Safe`]. See [`Descriptor::resend`].
    pub resend: &'static [(&'static str, Resend)],
    /// Turns a webhook body for `event` into the event context objects.
    pub normalize: fn(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError>,
}

/// One `[credentials]` field.
#[derive(Debug)]
pub struct CredentialField {
    /// Field name in TOML.
    pub name: &'static str,
    /// Secret fields must be `{ env | file | sealed }` references, never plain strings.
    pub secret: bool,
    /// Required (when `credential_sets` is empty).
    pub required: bool,
    /// One line for docs and the schema.
    pub description: &'static str,
}

/// How a platform authenticates its deliveries, as far as `[webhook] secret` is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookSecret {
    /// `[webhook] secret` may be given (otherwise one is generated or read from the platform).
    Optional,
    /// The platform verifies deliveries with a credential field; `[webhook] secret` is an error.
    NotUsed,
}

/// One event a platform delivers.
#[derive(Debug)]
pub struct EventSpec {
    /// The platform's own event name (`ticket_created`, `ticket.created`, `message`, `createCard`).
    pub name: &'static str,
    /// One line for docs.
    pub description: &'static str,
    /// The primary object's name in the event context (`ticket`, `message`, `card`…).
    pub primary: &'static str,
    /// Catalogued fields, as dotted paths from the context root (`ticket.subject`).
    /// Objects with uncatalogued keys are listed with [`ValueType::Object`].
    pub fields: &'static [FieldSpec],
    /// Fields whose changes the event reports under `changes` (relative to the primary object).
    pub changes: &'static [&'static str],
    /// `false` when the platform cannot deliver this event to supportopsd (validate refuses it).
    pub deliverable: bool,
    /// Who caused the event: the fields naming them, which normalisation reads into
    /// [`Normalized::actors`] and the loop guard compares with the integration's identities.
    pub actors: Actors,
}

/// Where an event names who caused it ([`EventSpec::actors`]), the one source of truth for
/// normalisation ([`Actors::read`]), the loop guard and docs/platforms.md.
///
/// Paths are dotted, from the event context's root: an object's field (`member.inviter`), or
/// the raw delivery under `payload.` when the id is not one of the event's objects
/// (`payload.detail.actor_id`). A `*` segment stands for every element of a list
/// (`payload.authors.*.id`). A path that is absent, `null`, empty, zero, a negative number
/// (Zendesk's `-1`, the system) or an unrendered `{{placeholder}}` names no one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actors {
    /// Each field names a party that caused the event (a Slack member who joined and the
    /// member who invited them): the event is supportopsd's own when ANY of them is.
    Each(&'static [&'static str]),
    /// The fields name the authors of edits the platform aggregated into one event (Notion):
    /// it is supportopsd's own only when EVERY author is, so a person's edit mixed with our
    /// bot's still runs rules.
    Joint(&'static [&'static str]),
    /// Always this one actor (supportopsd's own events).
    Always(&'static str),
    /// The platform's deliveries name no one (why, for docs): the loop guard never applies.
    Nobody(&'static str),
}

impl Actors {
    /// The actor ids an event's objects and raw payload name, in catalogue order, each once.
    pub fn read(&self, objects: &serde_json::Map<String, Value>, payload: &Value) -> Vec<String> {
        let paths = match self {
            Actors::Each(p) | Actors::Joint(p) => *p,
            Actors::Always(id) => return vec![(*id).to_owned()],
            Actors::Nobody(_) => return Vec::new(),
        };
        let mut out: Vec<String> = Vec::new();
        for path in paths {
            let mut segments = path.split('.');
            let (start, rest): (Option<&Value>, Vec<&str>) = match segments.next() {
                Some("payload") => (Some(payload), segments.collect()),
                Some(first) => (objects.get(first), segments.collect()),
                None => (None, Vec::new()),
            };
            let mut found = Vec::new();
            if let Some(v) = start {
                collect(v, &rest, &mut found);
            }
            for id in found {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Whether an event whose actors are `actors` is supportopsd's own, given `ours` (the
    /// integration's identities): see the variants.
    pub fn is_self(&self, actors: &[String], ours: &[String]) -> bool {
        let is_ours = |a: &String| ours.iter().any(|o| o == a);
        match self {
            Actors::Joint(_) => !actors.is_empty() && actors.iter().all(is_ours),
            Actors::Each(_) | Actors::Always(_) | Actors::Nobody(_) => actors.iter().any(is_ours),
        }
    }

    /// The paths, for docs and checks (none for `Always` and `Nobody`).
    pub fn paths(&self) -> &'static [&'static str] {
        match self {
            Actors::Each(p) | Actors::Joint(p) => p,
            Actors::Always(_) | Actors::Nobody(_) => &[],
        }
    }
}

/// The ids at `rest` beneath `v` (`*` = every element of a list).
fn collect(v: &Value, rest: &[&str], out: &mut Vec<String>) {
    match rest.split_first() {
        None => {
            if let Some(id) = actor_id(v) {
                out.push(id);
            }
        }
        Some((&"*", tail)) => {
            if let Value::Array(items) = v {
                for item in items {
                    collect(item, tail, out);
                }
            }
        }
        Some((key, tail)) => {
            if let Some(next) = v.get(*key) {
                collect(next, tail, out);
            }
        }
    }
}

/// A value as an actor id: a non-empty string, or a positive integer as digits. Zero and
/// negative numbers, also as strings, name no one (Zendesk's `-1` is its system user), nor does
/// a placeholder the platform left unrendered (`{{event_performer.id}}`).
fn actor_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            let not_an_id =
                t.is_empty() || t.contains("{{") || t.parse::<i64>().is_ok_and(|n| n <= 0);
            (!not_an_id).then(|| t.to_owned())
        }
        Value::Number(n) => n.as_u64().filter(|n| *n > 0).map(|n| n.to_string()),
        _ => None,
    }
}

/// How an integration's configuration delivers one event ([`super::PlatformKind::delivery`]):
/// which catalogued fields its deliveries never carry, which an enrichment step fetches from
/// the platform before rules are matched (the connector's `enrich`), and whether the event
/// can be delivered at all. `validate` refuses a condition or template that needs an `absent`
/// field, and an event that is `refused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The configuration that decides it, as written in the manifest
    /// (`ticket_events_via = "trigger"`).
    pub mode: &'static str,
    /// Catalogued fields this mode never delivers (dotted paths, as in [`EventSpec::fields`]).
    pub absent: &'static [&'static str],
    /// Catalogued fields the delivery does not carry but the enrichment step fetches (one
    /// enrichment per delivery, when a rule on the event reads one of them).
    pub enriched: &'static [&'static str],
    /// What the enrichment costs, in the platform's API calls per delivery (for docs).
    pub enrichment_calls: &'static [&'static str],
    /// Why this mode cannot deliver the event at all (`validate` refuses it), if it cannot.
    pub refused: Option<&'static str>,
}

impl Delivery {
    /// Whether `path` (dotted, indexes as `0`) is, or lies beneath, one of `fields`.
    pub fn covers(fields: &[&str], path: &str) -> bool {
        fields.iter().any(|f| {
            path == *f
                || (path.len() > f.len()
                    && path.starts_with(f)
                    && path.as_bytes().get(f.len()) == Some(&b'.'))
        })
    }
}

/// A catalogued field of an event context or an action result.
#[derive(Debug)]
pub struct FieldSpec {
    /// Dotted path (`ticket.requester.email`).
    pub path: &'static str,
    /// Its type.
    pub ty: ValueType,
}

/// One action a platform performs.
#[derive(Debug)]
pub struct ActionSpec {
    /// Action name (`send_message`).
    pub name: &'static str,
    /// One line for docs.
    pub description: &'static str,
    /// Parameters.
    pub params: &'static [ParamSpec],
    /// Groups of which at least one parameter must be present (e.g. a requester identifier).
    pub require_one_of: &'static [&'static [&'static str]],
    /// Fields of the result later actions can use as `actions[N].result.<field>`.
    pub result: &'static [FieldSpec],
}

/// One action parameter or config key.
#[derive(Debug)]
pub struct ParamSpec {
    /// Name in TOML.
    pub name: &'static str,
    /// Accepted values.
    pub ty: ParamType,
    /// Must be present.
    pub required: bool,
    /// One line for docs and the schema.
    pub description: &'static str,
}

/// Accepted values of a parameter. Every parameter may also be a template string
/// (`"{{ ticket.priority }}"`), checked statically and converted when rendered.
#[derive(Debug)]
pub enum ParamType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// `true` / `false`.
    Bool,
    /// A list of strings.
    StringList,
    /// A table (JSON object) passed through.
    Object,
    /// A list of tables passed through.
    ObjectList,
    /// Anything.
    Any,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A numeric code given by number or by name (Freshdesk status `"resolved"` or `4`).
    Code(&'static [(&'static str, i64)]),
}

/// The event context objects a payload yields (see [`crate::rules`] for the context layout).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalized {
    /// The platform's event id, when the payload carries one (dedupe key).
    pub id: Option<String>,
    /// When the event happened, RFC 3339, when the payload says.
    pub time: Option<String>,
    /// The objects of the context: the primary object and any others, by name.
    pub objects: serde_json::Map<String, Value>,
    /// Field changes, keyed by path relative to the primary object: `{ "from": …, "to": … }`.
    pub changes: serde_json::Map<String, Value>,
    /// Who caused the event, as the platform identifies them (bot id, user id), read from the
    /// fields the catalogue names ([`EventSpec::actors`]), for the loop guard.
    pub actors: Vec<String>,
}

impl Normalized {
    /// The first actor (the one the event names first), if any.
    pub fn actor(&self) -> Option<&str> {
        self.actors.first().map(String::as_str)
    }
}

/// Why a payload does not fit the event it is said to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NormalizeError(pub String);

/// The parameters of an action, or the config keys of a platform, one row each, as a
/// `&'static [ParamSpec]`:
///
/// - `"name": Type, required, "description";` (or `optional`), where `Type` is a [`ParamType`]
///   variant with its argument, if any (`Enum(STATUSES)`, `Code(&[("low", 1)])`);
/// - `SHARED;`, a [`ParamSpec`] constant several actions share (made with `param!`).
///
/// Rows keep their order. The `;` after the last row may be left out.
macro_rules! params {
    (@rows [$($done:expr,)*]) => { &[$($done),*] };
    (@rows [$($done:expr,)*] ; $($rest:tt)*) => {
        $crate::platforms::catalog::params!(@rows [$($done,)*] $($rest)*)
    };
    (@rows [$($done:expr,)*] $name:literal : $ty:ident $(($($arg:tt)*))?, $req:ident, $desc:expr; $($rest:tt)*) => {
        $crate::platforms::catalog::params!(@rows [
            $($done,)*
            $crate::platforms::catalog::param!($name: $ty $(($($arg)*))?, $req, $desc),
        ] $($rest)*)
    };
    (@rows [$($done:expr,)*] $shared:path; $($rest:tt)*) => {
        $crate::platforms::catalog::params!(@rows [$($done,)* $shared,] $($rest)*)
    };
    ($($rows:tt)*) => { $crate::platforms::catalog::params!(@rows [] $($rows)* ;) };
}
pub(crate) use params;

/// One [`ParamSpec`], written as a row of `params!` (without the `;`): for a constant several
/// actions share.
macro_rules! param {
    ($name:literal : $ty:ident $(($($arg:tt)*))?, required, $desc:expr) => {
        $crate::platforms::catalog::param!(@spec $name, $ty $(($($arg)*))?, true, $desc)
    };
    ($name:literal : $ty:ident $(($($arg:tt)*))?, optional, $desc:expr) => {
        $crate::platforms::catalog::param!(@spec $name, $ty $(($($arg)*))?, false, $desc)
    };
    (@spec $name:literal, $ty:ident $(($($arg:tt)*))?, $required:literal, $desc:expr) => {
        $crate::platforms::catalog::ParamSpec {
            name: $name,
            ty: $crate::platforms::catalog::ParamType::$ty $(($($arg)*))?,
            required: $required,
            description: $desc,
        }
    };
}
pub(crate) use param;

/// Catalogued fields (of an event context or an action result) as a `&'static [FieldSpec]`:
/// `"path": Type,` where `Type` is a [`ValueType`] variant. A path a macro computes is written
/// in parentheses: `(concat!($primary, ".id")): String`.
macro_rules! fields {
    (@path ($path:expr)) => { $path };
    (@path $path:literal) => { $path };
    ($($path:tt : $ty:ident),* $(,)?) => {
        &[$($crate::platforms::catalog::FieldSpec {
            path: $crate::platforms::catalog::fields!(@path $path),
            ty: $crate::rules::ValueType::$ty,
        }),*]
    };
}
pub(crate) use fields;

/// The `[credentials]` fields of a platform as a `&'static [CredentialField]`, one row each:
/// `"name": secret, required, "description";`, where `secret` (a secret reference is required)
/// or `plain` (a plain string is fine) comes first, then `required` or `optional`.
macro_rules! credentials {
    (@secret secret) => { true };
    (@secret plain) => { false };
    (@required required) => { true };
    (@required optional) => { false };
    ($($name:literal : $secret:ident, $req:ident, $desc:expr);* $(;)?) => {
        &[$($crate::platforms::catalog::CredentialField {
            name: $name,
            secret: $crate::platforms::catalog::credentials!(@secret $secret),
            required: $crate::platforms::catalog::credentials!(@required $req),
            description: $desc,
        }),*]
    };
}
pub(crate) use credentials;

/// Whether an action may be sent again when its first request may have reached the platform
/// and the answer was lost (a 5xx, a timeout after sending, a connection cut mid-answer, or
/// supportopsd killed while it was in flight). Only [`Resend::Duplicates`] changes what
/// happens: such a failure is not retried but dead-lettered as "outcome unknown"
/// ([`crate::platforms::PlatformError::OutcomeUnknown`]) with `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Sending it twice has the effect of sending it once: reads, updates that set values,
    /// deletes, moves.
    Safe,
    /// It creates something, but the request carries an idempotency key the platform
    /// deduplicates on (Zendesk `Idempotency-Key`, stable across the retries of a job step).
    IdempotencyKey,
    /// It creates something whose name is unique where it is created: a second request is
    /// refused ("name taken", "already exists"), never a duplicate.
    UniqueName,
    /// Sent twice, it creates the thing twice: an uncertain outcome is never re-sent.
    Duplicates {
        /// What the operator looks for on the platform before replaying the job.
        check: &'static str,
    },
}

impl Resend {
    /// One line for `docs/platforms.md`.
    pub fn describe(&self) -> String {
        match self {
            Resend::Safe => "retried (sending it twice changes nothing more)".to_owned(),
            Resend::IdempotencyKey => {
                "retried with the same idempotency key (the platform creates it once)".to_owned()
            }
            Resend::UniqueName => {
                "retried (the name is unique: a second create is refused, never duplicated)"
                    .to_owned()
            }
            Resend::Duplicates { check } => format!(
                "not re-sent, dead-lettered as `outcome_unknown` (so is one in flight when supportopsd is killed); check {check}"
            ),
        }
    }
}

// === impl Descriptor ===

impl Descriptor {
    /// The event called `name`.
    pub fn event(&self, name: &str) -> Option<&'static EventSpec> {
        self.events.iter().find(|e| e.name == name)
    }

    /// The action called `name`.
    pub fn action(&self, name: &str) -> Option<&'static ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// How action `name` may be sent again after a lost answer ([`Resend::Safe`] unless the
    /// platform's table lists it).
    pub fn resend(&self, name: &str) -> Resend {
        self.resend
            .iter()
            .find(|(a, _)| *a == name)
            .map_or(Resend::Safe, |(_, r)| *r)
    }

    /// The credential field called `name`.
    pub fn credential(&self, name: &str) -> Option<&'static CredentialField> {
        self.credentials.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod actor_tests {
    use serde_json::json;

    use super::*;

    /// Every event of every platform names the fields that say who caused it, each a
    /// catalogued field of the event (or a path into the raw `payload`), or says why it has
    /// none; the loop guard and docs/platforms.md read nothing else.
    #[test]
    fn every_event_names_its_actor_fields_or_why_it_has_none() {
        for kind in PlatformKind::ALL {
            for e in kind.descriptor().events {
                let at = format!("{}: `{}`", kind.as_str(), e.name);
                match e.actors {
                    Actors::Each(paths) | Actors::Joint(paths) => {
                        assert!(!paths.is_empty(), "{at}: names no actor field");
                        for p in paths {
                            if let Some(raw) = p.strip_prefix("payload.") {
                                assert!(!raw.is_empty(), "{at}: `{p}`");
                                continue;
                            }
                            let field = p.split(".*").next().unwrap_or(p);
                            assert!(
                                e.fields.iter().any(|f| f.path == field),
                                "{at}: actor path `{p}` is not a catalogued field"
                            );
                        }
                    }
                    Actors::Always(id) => assert!(!id.is_empty(), "{at}"),
                    Actors::Nobody(why) => assert!(!why.trim().is_empty(), "{at}: no reason"),
                }
            }
        }
    }

    /// The Slack events the issue names: every party that may be our bot is an actor.
    #[test]
    fn slack_events_name_every_party() {
        let slack = PlatformKind::Slack.descriptor();
        let paths = |name: &str| slack.event(name).map(|e| e.actors.paths()).unwrap_or(&[]);
        assert_eq!(
            paths("member_joined_channel"),
            ["member.inviter", "member.user"]
        );
        assert_eq!(paths("channel_created"), ["channel.creator"]);
        assert_eq!(paths("message"), ["message.bot_id", "message.user"]);
        assert_eq!(paths("app_mention"), ["message.bot_id", "message.user"]);
        assert_eq!(paths("reaction_added"), ["reaction.user"]);
        assert_eq!(paths("team_join"), ["user.id"]);
        for name in ["file_changed", "row_added"] {
            let e = PlatformKind::GoogleSheets.descriptor().event(name);
            assert!(
                matches!(e.map(|e| e.actors), Some(Actors::Nobody(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn read_follows_objects_payload_and_lists() {
        let objects = json!({
            "member": { "user": "U1", "inviter": "U2" },
            "authors": [{ "id": "a" }, { "id": "b" }, { "id": "a" }],
        });
        let objects = objects.as_object().cloned().unwrap_or_default();
        let payload = json!({ "detail": { "actor_id": 42 }, "zero": "0", "system": "-1" });
        let each = Actors::Each(&["member.inviter", "member.user", "member.missing"]);
        assert_eq!(each.read(&objects, &payload), ["U2", "U1"]);
        let raw = Actors::Each(&["payload.detail.actor_id", "payload.zero", "payload.system"]);
        assert_eq!(raw.read(&objects, &payload), ["42"], "0 and -1 name no one");
        let list = Actors::Joint(&["authors.*.id"]);
        assert_eq!(list.read(&objects, &payload), ["a", "b"], "each once");
        assert_eq!(Actors::Always("me").read(&objects, &payload), ["me"]);
        assert!(Actors::Nobody("x").read(&objects, &payload).is_empty());
    }

    #[test]
    fn each_is_ours_when_any_actor_is_joint_when_every_one_is() {
        let ours = vec!["BOT".to_owned()];
        let actors = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let each = Actors::Each(&["x"]);
        assert!(each.is_self(&actors(&["PERSON", "BOT"]), &ours));
        assert!(!each.is_self(&actors(&["PERSON"]), &ours));
        assert!(!each.is_self(&[], &ours));
        let joint = Actors::Joint(&["x"]);
        assert!(!joint.is_self(&actors(&["PERSON", "BOT"]), &ours));
        assert!(joint.is_self(&actors(&["BOT"]), &ours));
        assert!(!joint.is_self(&[], &ours));
    }
}
