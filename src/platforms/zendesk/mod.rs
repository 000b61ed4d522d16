//! Zendesk.

use super::{Descriptor, NormalizeError, Normalized, PlatformKind, WebhookSecret};

/// The static catalogue of Zendesk.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Zendesk,
    title: "Zendesk",
    credentials: &[],
    credential_sets: &[],
    config: &[],
    webhook_secret: WebhookSecret::Optional,
    events: &[],
    actions: &[],
    normalize: |_, _| Err(NormalizeError(String::new())),
};
