//! The six platforms, and the built-in `supportopsd` platform (supportopsd's own events).
//! Each has a folder with the same files: `mod.rs` (its [`Descriptor`]),
//! `events.rs` (event specs and payload normalisation) and `actions.rs` (action specs).
//! Adding a platform is one folder, one [`PlatformKind`] variant and one arm in
//! [`PlatformKind::descriptor`].
//!
//! Adding an action is its spec in `actions.rs` (a row per parameter and result field, see
//! [`catalog`]) and its request code in the platform's `connector.rs`, an arm of `execute`'s
//! `match` included. `SUPPORTOPSD_BLESS=1 cargo test` regenerates `schema/` and
//! `docs/platforms.md` (the generated reference); the tests fail until the action reaches the
//! platform (each `connector_tests.rs`) and is in the exact action lists of the Freshdesk,
//! Zendesk and Slack `tests.rs`. The hand-written guides under `docs/integrations/` are prose
//! and may describe it when it matters to a reader; nothing checks them.

pub mod catalog;
pub mod connector;
pub mod context;
pub mod fakekit;
pub mod fakespec;
#[cfg(any(test, feature = "test-support"))]
pub mod fakevendor;
pub mod freshdesk;
pub mod google_sheets;
pub mod http;
pub mod inbound;
pub mod notion;
pub mod params;
pub mod probe;
pub mod reference;
pub mod slack;
pub mod supportopsd;
#[cfg(test)]
pub(crate) mod testkit;
pub mod trello;
pub mod zendesk;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use catalog::{
    ActionSpec, Actors, CredentialField, Delivery, Descriptor, EventSpec, FieldSpec,
    NormalizeError, Normalized, ParamSpec, ParamType, Resend, WebhookSecret,
};
pub use connector::{
    ActionCall, ActionOutput, ConnectError, Connector, Health, Kept, KeptStore, MAX_RETRY_AFTER,
    PlatformError, Polled, Registration, RegistrationOutcome, WebhookSync, WebhookTarget, connect,
    guard_resend,
};
pub use inbound::{Inbound, InboundRequest, ParseError, VerifyError, VerifyKeys, parse, verify};

/// A platform supportopsd integrates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    /// Freshdesk (API v2).
    Freshdesk,
    /// Zendesk Support (API v2).
    Zendesk,
    /// Slack (Web API, Events API).
    Slack,
    /// Trello (REST API 1).
    Trello,
    /// Notion (API).
    Notion,
    /// Google Sheets (Sheets v4, Drive v3 push channels).
    GoogleSheets,
    /// supportopsd itself (built in): the daemon's own events, no credentials, no actions.
    Supportopsd,
}

impl PlatformKind {
    /// Every platform, in a fixed order.
    pub const ALL: [PlatformKind; 7] = [
        PlatformKind::Freshdesk,
        PlatformKind::Zendesk,
        PlatformKind::Slack,
        PlatformKind::Trello,
        PlatformKind::Notion,
        PlatformKind::GoogleSheets,
        PlatformKind::Supportopsd,
    ];

    /// The name used in manifests and URLs (`google_sheets`).
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformKind::Freshdesk => "freshdesk",
            PlatformKind::Zendesk => "zendesk",
            PlatformKind::Slack => "slack",
            PlatformKind::Trello => "trello",
            PlatformKind::Notion => "notion",
            PlatformKind::GoogleSheets => "google_sheets",
            PlatformKind::Supportopsd => "supportopsd",
        }
    }

    /// Whether this is the built-in platform of supportopsd's own events (no credentials, no
    /// webhook, no actions; nothing from outside may deliver to it).
    pub fn is_builtin(self) -> bool {
        self == PlatformKind::Supportopsd
    }

    /// Parses a manifest name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The static catalogue of this platform.
    pub fn descriptor(self) -> &'static Descriptor {
        match self {
            PlatformKind::Freshdesk => &freshdesk::DESCRIPTOR,
            PlatformKind::Zendesk => &zendesk::DESCRIPTOR,
            PlatformKind::Slack => &slack::DESCRIPTOR,
            PlatformKind::Trello => &trello::DESCRIPTOR,
            PlatformKind::Notion => &notion::DESCRIPTOR,
            PlatformKind::GoogleSheets => &google_sheets::DESCRIPTOR,
            PlatformKind::Supportopsd => &supportopsd::DESCRIPTOR,
        }
    }

    /// The values the platform's documentation fixes for its event fields (dotted catalogue
    /// paths, as normalisation yields them): Zendesk's lower-case statuses, priorities and
    /// types, Freshdesk's numeric status, priority and source codes. `validate` refuses a
    /// condition comparing such a field with another value (it could never match).
    pub fn values(self) -> &'static [(&'static str, crate::rules::Allowed)] {
        match self {
            PlatformKind::Freshdesk => freshdesk::events::VALUES,
            PlatformKind::Zendesk => zendesk::events::VALUES,
            _ => &[],
        }
    }

    /// How long a delivery's event id is remembered for deduplication when the platform needs
    /// a window of its own (Freshdesk: its ids are body digests, so remembering them for long
    /// would drop genuine repeats; [`freshdesk::DEDUPE_WINDOW`]); `None` for the daemon's
    /// `--dedupe-ttl`. The daemon uses the shorter of the two.
    pub fn dedupe_window(self) -> Option<std::time::Duration> {
        match self {
            PlatformKind::Freshdesk => Some(freshdesk::DEDUPE_WINDOW),
            _ => None,
        }
    }
}

impl PlatformKind {
    /// How an integration with `config` (its `[config]` table) delivers `event`: the fields
    /// its deliveries never carry, those an enrichment step fetches, or why it cannot be
    /// delivered (see [`Delivery`]). `None`: every catalogued field is delivered as is.
    pub fn delivery(
        self,
        event: &EventSpec,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Delivery> {
        match self {
            PlatformKind::Zendesk => zendesk::events::delivery(event, config),
            _ => None,
        }
    }
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
