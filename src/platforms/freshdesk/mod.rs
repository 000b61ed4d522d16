//! Freshdesk (API v2): the static catalogue of the platform.
//!
//! This folder provides the [`DESCRIPTOR`] (credentials, config keys, events, actions),
//! [`events`] (the event specs and the normalisation of the webhook body supportopsd designs
//! for Freshdesk's automation rules) and [`actions`] (the action specs behind the REST calls).
//!
//! Freshdesk has no webhook subscription API and no request signature: supportopsd registers
//! automation rules (type 1 "ticket creation", type 4 "ticket updates") whose `trigger_webhook`
//! action posts the body described in [`events`], authenticated with the `[webhook] secret`
//! (or, when the manifest gives none, a secret generated at registration) in a header.
//!
//! The live half: [`client`] (HTTP, error classification, rate-limit headers), [`connector`]
//! (the [`Connector`](crate::platforms::Connector): check, actions, bulk updates, automation
//! rules), [`registration`] (the rules' bodies and matching) and `fake`.

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

/// How long a Freshdesk delivery's id is remembered for deduplication.
///
/// Freshdesk sends no delivery id, so the id is a digest of the body (see [`webhook`]), and two
/// genuine deliveries can share it (the same transition twice, two identical notes). The window
/// only has to cover Freshdesk's own retries: 5, 30 and 60 minutes after a failed delivery,
/// then an email to the admins (Freshdesk's "Using webhooks in automation rules", mirrored at
/// supportsandbox.freshdesk.com/support/solutions/articles/11000000028141), 95 minutes in all.
/// Two hours covers them; the daemon's `--dedupe-ttl` caps it.
pub const DEDUPE_WINDOW: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// Ticket status codes: name → number (custom statuses use 6 and above).
pub(crate) const STATUS_CODES: &[(&str, i64)] =
    &[("open", 2), ("pending", 3), ("resolved", 4), ("closed", 5)];

/// Ticket priority codes: name → number.
pub(crate) const PRIORITY_CODES: &[(&str, i64)] =
    &[("low", 1), ("medium", 2), ("high", 3), ("urgent", 4)];

/// Ticket source codes: name → number.
pub(crate) const SOURCE_CODES: &[(&str, i64)] = &[
    ("email", 1),
    ("portal", 2),
    ("phone", 3),
    ("chat", 7),
    ("feedback_widget", 9),
    ("outbound_email", 10),
];

/// The static catalogue of Freshdesk.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Freshdesk,
    title: "Freshdesk",
    hosts: &["*.freshdesk.com"],
    credentials: credentials![
        "domain": plain, required, "Helpdesk domain, e.g. `acme.freshdesk.com` (the API lives under `https://<domain>/api/v2`)";
        "api_key": secret, required, "Agent API key, sent as the Basic-auth user name (the password is ignored)";
    ],
    credential_sets: &[],
    config: params![
        "default_priority": Code(PRIORITY_CODES), optional, "Priority given to tickets created by rules when the action names none (default low)";
        "default_status": Code(STATUS_CODES), optional, "Status given to tickets created by rules when the action names none (default open)";
        "auto_assign": Bool, optional, "Assign tickets created by rules to `default_group_id` / `default_responder_id` when the action names no assignee";
        "default_group_id": Integer, optional, "Group that `auto_assign` gives new tickets to";
        "default_responder_id": Integer, optional, "Agent that `auto_assign` gives new tickets to";
    ],
    webhook_secret: WebhookSecret::Optional,
    events: events::EVENTS,
    actions: actions::ACTIONS,
    resend: actions::RESEND,
    normalize: events::normalize,
};
