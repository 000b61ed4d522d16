//! Notion: the static catalogue of the Notion integration.
//!
//! This folder provides the [`DESCRIPTOR`] (credentials, `[config]` keys, webhook secret
//! handling), the webhook event types of an integration's subscription ([`events`], named exactly
//! as Notion's `type`, with payload normalisation) and the page, database-entry and comment
//! actions rules can perform ([`actions`]). `fixtures/` holds webhook bodies in Notion's delivery
//! shape for the tests.
//!
//! The live half: [`client`] (HTTP, the pinned `Notion-Version`, error classification),
//! [`connector`] (the connection check and the actions), [`values`] (property values built from
//! rule parameters, Notion's request limits) and `fake` (a fake Notion API that
//! also plays a subscription's verification request and signed deliveries).
//!
//! Subscriptions are made in Notion's UI only. Notion first posts a one-off
//! `{"verification_token": …}` body; the daemon keeps it (sealed) only inside a window an
//! operator opened, and uses it as the HMAC-SHA256 key of `X-Notion-Signature` only once the
//! operator confirmed it (`runtime::notion`, SEC-04). Hence `[webhook] secret` is not used.

pub mod actions;
pub mod client;
pub mod connector;
#[cfg(test)]
mod connector_tests;
pub mod events;
pub mod fake;
pub mod probe;
#[cfg(test)]
mod tests;
pub mod values;
pub mod webhook;

use super::catalog::{credentials, params};
use super::{CredentialField, Descriptor, ParamSpec, PlatformKind, WebhookSecret};

/// The static catalogue of Notion.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Notion,
    title: "Notion",
    hosts: &["api.notion.com"],
    credentials: CREDENTIALS,
    credential_sets: &[],
    config: CONFIG,
    webhook_secret: WebhookSecret::NotUsed,
    events: events::EVENTS,
    actions: actions::ACTIONS,
    resend: actions::RESEND,
    normalize: events::normalize,
};

const CREDENTIALS: &[CredentialField] = credentials![
    "token": secret, required, "Integration token (internal integration secret, OAuth access token or personal access token), sent as `Authorization: Bearer`; treated as opaque.";
];

/// API versions a subscription or request can be pinned to.
pub(crate) const VERSIONS: &[&str] = &["2022-06-28", "2025-09-03", "2026-03-11"];

const CONFIG: &[ParamSpec] = params![
    "notion_version": Enum(VERSIONS), optional, "`Notion-Version` sent on every call (default `2025-09-03`, the data-source API); set the subscription's API version to the same value.";
    "data_sources": StringList, optional, "Data source ids whose pages' events are accepted (matched on `parent.data_source_id`); empty accepts all.";
    "databases": StringList, optional, "Database ids whose pages' events are accepted (matched on a `database` parent); empty accepts all.";
    "default_parent_page": String, optional, "Page id under which `create_page` creates pages when the action gives no `parent_page_id`.";
];
