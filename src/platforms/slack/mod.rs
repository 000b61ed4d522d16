//! Slack (Web API and Events API): the static catalogue of the platform.
//!
//! This folder provides the [`DESCRIPTOR`] (credentials, config keys, events, actions),
//! [`events`] (the event specs and the normalisation of Events API `event_callback`
//! deliveries) and [`actions`] (the action specs behind the Web API methods).
//!
//! Deliveries are signed with the app's `signing_secret` (a credential), so `[webhook] secret`
//! is not used. The request URL lives in the app configuration, which supportopsd can set
//! through the manifest API when `app_config_token` and `app_id` are given (with
//! `app_config_refresh_token`, the 12-hour token is rotated; see [`connector`]).

pub mod actions;
pub mod client;
pub mod connector;
pub mod events;
pub mod probe;
pub mod registration;
pub mod webhook;

#[cfg(test)]
mod connector_tests;
pub mod fake;
#[cfg(test)]
mod tests;

use super::catalog::{credentials, params};
use super::{Descriptor, PlatformKind, WebhookSecret};

/// The static catalogue of Slack.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Slack,
    title: "Slack",
    hosts: &["slack.com"],
    credentials: credentials![
        "bot_token": secret, required, "Bot token (`xoxb-…`) used for every action except `set_status`";
        "user_token": secret, optional, "User token (`xoxp-…`) with `users.profile:write`, needed by `set_status`";
        "app_config_token": secret, optional, "App configuration token (`xoxe.xoxp-…`) to set the Events API request URL and events through the manifest API (it expires 12 hours after it was generated: set `app_config_refresh_token` too)";
        "app_config_refresh_token": secret, optional, "Refresh token (`xoxe-…`) generated with `app_config_token`: supportopsd rotates the pair with `tooling.tokens.rotate` before it expires and keeps the new pair, sealed, in its state";
        "app_id": plain, optional, "Id of the Slack app (`A…`), needed with `app_config_token`";
        "signing_secret": secret, required, "The app's signing secret, which verifies `X-Slack-Signature` on deliveries";
    ],
    credential_sets: &[],
    config: params![
        "default_channel": String, optional, "Channel (`#name` or id) for `send_message` and `upload_file` when the action names none";
        "ignore_bot_messages": Bool, optional, "Drop message events posted by bots, this app included (default true)";
        "unfurl_links": Bool, optional, "Default for `send_message`'s `unfurl_links` (link previews)";
        "manifest_recheck_minutes": Integer, optional, "How often the app manifest is exported again although what supportopsd last wrote still matches, to repair edits made by hand in the app settings (default 60; 0: on every resync)";
    ],
    webhook_secret: WebhookSecret::NotUsed,
    events: events::EVENTS,
    actions: actions::ACTIONS,
    resend: actions::RESEND,
    normalize: events::normalize,
};
