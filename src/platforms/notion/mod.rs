//! Notion.

use super::{Descriptor, NormalizeError, Normalized, PlatformKind, WebhookSecret};

/// The static catalogue of Notion.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::Notion,
    title: "Notion",
    credentials: &[],
    credential_sets: &[],
    config: &[],
    webhook_secret: WebhookSecret::Optional,
    events: &[],
    actions: &[],
    normalize: |_, _| Err(NormalizeError(String::new())),
};
