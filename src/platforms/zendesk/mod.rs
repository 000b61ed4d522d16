//! Zendesk Support (API v2): the static catalogue of the platform.
//!
//! This folder provides the [`DESCRIPTOR`] (credentials, config keys, events, actions),
//! [`events`] (event specs and the normalisation of both delivery shapes: the fixed
//! event-subscription envelope and the trigger-connected body supportopsd designs) and
//! [`actions`] (the action specs behind the REST calls).
//!
//! The live half: [`client`] (HTTP and error classification), [`connector`] (the checks,
//! actions and bulk jobs), [`registration`] (webhooks and triggers) and, for tests, `fake` (a
//! fake Zendesk on the shared fakekit server).
//!
//! Deliveries are signed with the webhook's signing secret, which supportopsd reads from the
//! Webhooks API after registering the webhook (`[webhook] secret` for a webhook made by hand).

pub mod actions;
pub mod client;
pub mod connector;
pub mod events;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
mod params;
pub mod registration;
pub mod webhook;

#[cfg(test)]
mod connector_tests;

#[cfg(test)]
mod tests;

use super::{CredentialField, Descriptor, ParamSpec, ParamType, PlatformKind, WebhookSecret};

/// Ticket status categories.
pub(crate) const STATUSES: &[&str] = &["new", "open", "pending", "hold", "solved", "closed"];

/// Ticket priorities.
pub(crate) const PRIORITIES: &[&str] = &["urgent", "high", "normal", "low"];

/// Ticket types.
pub(crate) const TICKET_TYPES: &[&str] = &["problem", "incident", "question", "task"];

/// User roles.
pub(crate) const ROLES: &[&str] = &["end-user", "agent", "admin"];

/// The static catalogue of Zendesk.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Zendesk,
    title: "Zendesk",
    hosts: &["*.zendesk.com"],
    credentials: &[
        CredentialField {
            name: "subdomain",
            secret: false,
            required: true,
            description: "Account subdomain: `acme` for `https://acme.zendesk.com`",
        },
        CredentialField {
            name: "email",
            secret: false,
            required: false,
            description: "Agent email the API token belongs to (Basic auth as `{email}/token`)",
        },
        CredentialField {
            name: "api_token",
            secret: true,
            required: false,
            description: "API token, used together with `email`",
        },
        CredentialField {
            name: "oauth_token",
            secret: true,
            required: false,
            description: "OAuth access token (sent as a Bearer token), instead of `email` + `api_token`",
        },
    ],
    credential_sets: &[
        &["subdomain", "email", "api_token"],
        &["subdomain", "oauth_token"],
    ],
    config: &[
        ParamSpec {
            name: "ticket_events_via",
            ty: ParamType::Enum(&["trigger", "event_subscription"]),
            required: false,
            description: "How ticket and comment events are registered: a trigger-connected webhook (default; works on every plan) or ticket event subscriptions",
        },
        ParamSpec {
            name: "default_group_id",
            ty: ParamType::Integer,
            required: false,
            description: "Group given to tickets created by rules when the action names none",
        },
        ParamSpec {
            name: "default_priority",
            ty: ParamType::Enum(PRIORITIES),
            required: false,
            description: "Priority given to tickets created by rules when the action names none",
        },
        ParamSpec {
            name: "default_type",
            ty: ParamType::Enum(TICKET_TYPES),
            required: false,
            description: "Type given to tickets created by rules when the action names none",
        },
        ParamSpec {
            name: "comments_public",
            ty: ParamType::Bool,
            required: false,
            description: "Whether `add_comment` posts public replies when the action does not say (default false: internal notes)",
        },
    ],
    webhook_secret: WebhookSecret::Optional,
    events: events::EVENTS,
    actions: actions::ACTIONS,
    normalize: events::normalize,
};
