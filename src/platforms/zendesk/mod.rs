//! Zendesk Support (API v2): the static catalogue of the platform.
//!
//! This folder provides the [`DESCRIPTOR`] (credentials, config keys, events, actions),
//! [`events`] (event specs and the normalisation of both delivery shapes: the fixed
//! event-subscription envelope and the trigger-connected body supportopsd designs) and
//! [`actions`] (the action specs behind the REST calls).
//!
//! The live half: [`client`] (HTTP and error classification), [`connector`] (the checks,
//! actions and bulk jobs), [`registration`] (webhooks and triggers) and `fake` (a
//! fake Zendesk on the shared fakekit server).
//!
//! Deliveries are signed with the webhook's signing secret, which supportopsd reads from the
//! Webhooks API after registering the webhook (`[webhook] secret` for a webhook made by hand).

pub mod actions;
pub mod client;
pub mod connector;
pub mod events;
pub mod fake;
mod params;
pub mod probe;
pub mod registration;
pub mod webhook;

#[cfg(test)]
mod connector_tests;

#[cfg(test)]
mod tests;

use super::catalog::{credentials, params};
use super::{Descriptor, PlatformKind, WebhookSecret};

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
    credentials: credentials![
        "subdomain": plain, required, "Account subdomain: `acme` for `https://acme.zendesk.com`";
        "email": plain, optional, "Agent email the API token belongs to (Basic auth as `{email}/token`)";
        "api_token": secret, optional, "API token, used together with `email`";
        "oauth_token": secret, optional, "OAuth access token (sent as a Bearer token), instead of `email` + `api_token`";
    ],
    credential_sets: &[
        &["subdomain", "email", "api_token"],
        &["subdomain", "oauth_token"],
    ],
    config: params![
        "ticket_events_via": Enum(&["trigger", "event_subscription"]), optional, "How ticket and comment events are registered: a trigger-connected webhook (default; works on every plan) or ticket event subscriptions";
        "default_group_id": Integer, optional, "Group given to tickets created by rules when the action names none";
        "default_priority": Enum(PRIORITIES), optional, "Priority given to tickets created by rules when the action names none";
        "default_type": Enum(TICKET_TYPES), optional, "Type given to tickets created by rules when the action names none";
        "comments_public": Bool, optional, "Whether `add_comment` posts public replies when the action does not say (default false: internal notes)";
    ],
    webhook_secret: WebhookSecret::Optional,
    events: events::EVENTS,
    actions: actions::ACTIONS,
    resend: actions::RESEND,
    normalize: events::normalize,
};
