//! Google Sheets: the static catalogue of the Google Sheets integration.
//!
//! This folder provides the [`DESCRIPTOR`] (credentials, `[config]` keys, webhook secret
//! handling), the events ([`events`]: Drive push notifications on the spreadsheet file, and rows
//! found by supportopsd's poller, with the JSON shapes the ingress and the poller build and their
//! normalisation) and the row, range and sheet actions rules can perform ([`actions`]).
//! `fixtures/` holds those JSON shapes for the tests, and a throwaway RSA key made for the tests
//! only (`test_only_service_account_key*.pem`).
//!
//! The live half: [`client`] (service-account sign-in with an RS256 JWT, the cached access
//! token, Google error classification), [`connector`] (the checks, the actions, Drive channels
//! and their renewal, the row poller) and `fake` (a fake Google: token endpoint,
//! Sheets and Drive, checked against the vendor discovery documents).
//!
//! Sheets has no webhooks: a Drive `files.watch` channel on the spreadsheet posts empty-bodied
//! notifications whose only secret is the channel token supportopsd generates per channel, so
//! `[webhook] secret` is not used.

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
pub mod webhook;

use super::catalog::{credentials, params};
use super::{CredentialField, Descriptor, ParamSpec, PlatformKind, WebhookSecret};

/// The static catalogue of Google Sheets.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::GoogleSheets,
    title: "Google Sheets",
    hosts: &["*.googleapis.com"],
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
    "service_account_key": secret, required, "The service account's JSON key file (`client_email`, `private_key`, `token_uri`…); the spreadsheet must be shared with its `client_email`.";
    "spreadsheet_id": plain, required, "Id of the spreadsheet (the part of its URL after `/d/`; also its Drive file id).";
];

/// `valueInputOption` values.
pub(crate) const VALUE_INPUT_OPTIONS: &[&str] = &["RAW", "USER_ENTERED"];

const CONFIG: &[ParamSpec] = params![
    "sheet": String, optional, "Default sheet (tab) name for actions and for the row poller (default: the first sheet).";
    "header_row": Integer, optional, "Row number holding the column headers that name `row.fields` and `fields` parameters (default 1).";
    "poll_interval_seconds": Integer, optional, "How often the poller re-reads the sheet to find appended rows (`row_added`); mind the 60 reads/min per user quota.";
    "push_notifications": Bool, optional, "Whether to keep a Drive push channel on the spreadsheet for `file_changed` (default true).";
    "channel_expiration_seconds": Integer, optional, "Lifetime asked for each Drive channel, 1800 to 86400; channels are recreated at least 10 minutes (a quarter of the lifetime, at most an hour) before they expire.";
    "value_input_option": Enum(VALUE_INPUT_OPTIONS), optional, "Default for the write actions: `RAW` stores values as given, `USER_ENTERED` parses them as typed in the UI.";
];
