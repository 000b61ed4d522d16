//! supportopsd itself, as a built-in platform: the daemon emits its own events on it
//! (an integration degraded or recovered, a revision applied or refused, a webhook registration
//! repaired, a job dead-lettered) and rules trigger on them like on any platform's events — to
//! post to Slack when Zendesk credentials expire, say.
//!
//! A rule refers to it through a manifest integration with `platform = "supportopsd"` (no
//! credentials, no `[webhook]`, no actions), e.g. `integrations/alerts.toml`. Nothing outside
//! the process can deliver these events: the webhook route answers 404 for this platform and
//! [`webhook::verify`] refuses every delivery.
//!
//! The loop guard: an event caused by a job of a rule that was itself triggered by a
//! supportopsd event carries the rules of that chain in `origin.rules`
//! ([`events::origin_rules`]); none of them is triggered again, so an alert rule whose own
//! action fails does not alert on itself (nor two such rules on each other).

pub mod events;
pub mod webhook;

#[cfg(test)]
mod tests;

use super::{Descriptor, PlatformKind, WebhookSecret};

/// The static catalogue of the built-in `supportopsd` platform.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Supportopsd,
    title: "supportopsd (built-in)",
    hosts: &[],
    credentials: &[],
    credential_sets: &[],
    config: &[],
    webhook_secret: WebhookSecret::NotUsed,
    events: events::EVENTS,
    actions: &[],
    resend: &[],
    normalize: events::normalize,
};
