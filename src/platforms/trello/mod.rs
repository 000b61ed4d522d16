//! Trello: the static catalogue of the Trello integration.
//!
//! This folder provides the [`DESCRIPTOR`] (credentials, `[config]` keys, webhook secret
//! handling), the events a board webhook delivers ([`events`], named exactly as Trello's
//! `action.type`, with payload normalisation) and the actions rules can perform on cards
//! ([`actions`]). `fixtures/` holds webhook bodies in Trello's delivery shape for the tests.
//!
//! Trello signs each delivery with `X-Trello-Webhook`, a base64 HMAC-SHA1 of the raw body plus
//! the registered callback URL, keyed with the application secret; so `[webhook] secret` is not
//! used and `app_secret` is a credential.

pub mod actions;
pub mod client;
pub mod connector;
pub mod events;
pub mod probe;
pub mod webhook;

#[cfg(test)]
mod connector_tests;
pub mod fake;
#[cfg(test)]
mod tests;

use super::catalog::{credentials, params};
use super::{CredentialField, Descriptor, ParamSpec, PlatformKind, WebhookSecret};

/// The static catalogue of Trello.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Trello,
    title: "Trello",
    hosts: &["api.trello.com", "trello.com"],
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
    "api_key": plain, required, "The Power-Up's public API key (Power-Up admin page, \"API Key\" tab); sent as `oauth_consumer_key`.";
    "token": secret, required, "A user token authorised for the API key; every call and every webhook acts as this member.";
    "app_secret": secret, required, "The application (OAuth) secret shown beside the API key; the HMAC-SHA1 key that verifies `X-Trello-Webhook`.";
];

const CONFIG: &[ParamSpec] = params![
    "boards": StringList, required, "Ids (or short links) of the boards to watch: one Trello webhook is registered per board.";
    "default_list": String, optional, "List id that `create_card` uses when the action gives no `id_list`.";
];
