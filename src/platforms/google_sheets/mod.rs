//! Google Sheets.

use super::{Descriptor, NormalizeError, Normalized, PlatformKind, WebhookSecret};

/// The static catalogue of Google Sheets.
pub static DESCRIPTOR: Descriptor = Descriptor {
    kind: PlatformKind::GoogleSheets,
    title: "Google Sheets",
    credentials: &[],
    credential_sets: &[],
    config: &[],
    webhook_secret: WebhookSecret::Optional,
    events: &[],
    actions: &[],
    normalize: |_, _| Err(NormalizeError(String::new())),
};
