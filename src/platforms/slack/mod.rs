//! Slack.

use super::{Descriptor, NormalizeError, Normalized, PlatformKind, WebhookSecret};

/// The static catalogue of Slack.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Slack,
    title: "Slack",
    credentials: &[],
    credential_sets: &[],
    config: &[],
    webhook_secret: WebhookSecret::Optional,
    events: &[],
    actions: &[],
    normalize: |_, _| Err(NormalizeError(String::new())),
};
