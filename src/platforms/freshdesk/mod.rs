//! Freshdesk.

use super::{Descriptor, NormalizeError, Normalized, PlatformKind, WebhookSecret};

/// The static catalogue of Freshdesk.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Freshdesk,
    title: "Freshdesk",
    credentials: &[],
    credential_sets: &[],
    config: &[],
    webhook_secret: WebhookSecret::Optional,
    events: &[],
    actions: &[],
    normalize: |_, _| Err(NormalizeError(String::new())),
};
