//! Trello.

use super::{Descriptor, NormalizeError, Normalized, PlatformKind, WebhookSecret};

/// The static catalogue of Trello.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Trello,
    title: "Trello",
    credentials: &[],
    credential_sets: &[],
    config: &[],
    webhook_secret: WebhookSecret::Optional,
    events: &[],
    actions: &[],
    normalize: |_, _| Err(NormalizeError(String::new())),
};
