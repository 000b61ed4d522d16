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
    /// Who caused the event, as the platform identifies them (bot id, user id), for the loop guard.
    pub actor: Option<String>,
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
