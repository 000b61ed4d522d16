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
//! rules), [`registration`] (the rules' bodies and matching) and, for tests, `fake`.

pub mod actions;
pub mod client;
pub mod connector;
pub mod events;
pub mod registration;
pub mod webhook;

#[cfg(test)]
mod connector_tests;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
#[cfg(test)]
mod tests;

use super::{CredentialField, Descriptor, ParamSpec, ParamType, PlatformKind, WebhookSecret};

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
    credentials: &[
        CredentialField {
            name: "domain",
            secret: false,
            required: true,
            description: "Helpdesk domain, e.g. `acme.freshdesk.com` (the API lives under `https://<domain>/api/v2`)",
        },
        CredentialField {
            name: "api_key",
            secret: true,
            required: true,
            description: "Agent API key, sent as the Basic-auth user name (the password is ignored)",
        },
    ],
    credential_sets: &[],
    config: &[
        ParamSpec {
            name: "default_priority",
            ty: ParamType::Code(PRIORITY_CODES),
            required: false,
            description: "Priority given to tickets created by rules when the action names none (default low)",
        },
        ParamSpec {
            name: "default_status",
            ty: ParamType::Code(STATUS_CODES),
            required: false,
            description: "Status given to tickets created by rules when the action names none (default open)",
        },
        ParamSpec {
            name: "auto_assign",
            ty: ParamType::Bool,
            required: false,
            description: "Assign tickets created by rules to `default_group_id` / `default_responder_id` when the action names no assignee",
        },
        ParamSpec {
            name: "default_group_id",
            ty: ParamType::Integer,
            required: false,
            description: "Group that `auto_assign` gives new tickets to",
        },
        ParamSpec {
            name: "default_responder_id",
            ty: ParamType::Integer,
            required: false,
            description: "Agent that `auto_assign` gives new tickets to",
        },
    ],
    webhook_secret: WebhookSecret::Optional,
    events: events::EVENTS,
    actions: actions::ACTIONS,
    normalize: events::normalize,
};
