//! Inbound webhook requests: the pure, per-platform halves that prove a delivery is genuine and
//! turn it into an event. No I/O and no clock of their own (the time is passed in), so every
//! official test vector is a unit test.

use http::{HeaderMap, Method};
use serde_json::Value;

use super::{
    EventSpec, Normalized, PlatformKind, freshdesk, google_sheets, notion, slack, supportopsd,
    trello, zendesk,
};
use crate::secrets::Secret;

/// Most a platform's timestamp may differ from ours before a delivery is refused as a replay
/// (Slack's documented window; used for Zendesk too, which documents none).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The header in which Freshdesk automation rules created by supportopsd send the
/// integration's shared secret (Freshdesk signs nothing).
pub const FRESHDESK_SECRET_HEADER: &str = "x-supportopsd-token";

/// What arrived, as the verification and parsing code sees it.
#[derive(Debug)]
pub struct InboundRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Headers (names are case-insensitive).
    pub headers: &'a HeaderMap,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    /// Now, in seconds since the Unix epoch (injected for tests).
    pub now_unix: i64,
}

/// What the daemon knows about one integration's inbound authentication.
#[derive(Debug, Clone, Default)]
pub struct VerifyKeys {
    /// The key or shared secret: Zendesk signing secret, Slack signing secret, Trello app
    /// secret, Freshdesk shared secret, Notion verification token, Google channel token.
    pub secret: Option<Secret>,
    /// Trello: the callback URL exactly as registered (part of the signed text).
    pub callback_url: Option<String>,
    /// Google Sheets: the id of the live Drive channel.
    pub channel_id: Option<String>,
}

/// What a verified request turns out to be.
#[derive(Debug)]
pub enum Inbound {
    /// An event for the rules.
    Event {
        /// The catalogue event.
        event: &'static EventSpec,
        /// Its normalised objects; `normalized.id` must be set (a digest of the delivery
        /// where the platform sends no id).
        normalized: Normalized,
        /// The payload as JSON.
        payload: Value,
    },
    /// Answer 200 with this body and run nothing (Slack `url_verification`).
    Challenge {
        /// Content type of the answer.
        content_type: &'static str,
        /// The answer.
        body: Vec<u8>,
    },
    /// Notion's one-time verification token: to be sealed into state and shown to the operator.
    VerificationToken(Secret),
    /// Acknowledge with 200 and run nothing (a Drive `sync` message, an event type no rule can
    /// use).
    Acknowledge,
}

/// Why a request is not genuine. Never shown to the sender (the answer is a bare 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The signature or token does not match.
    #[error("signature mismatch")]
    Mismatch,
    /// The timestamp is outside the allowed window.
    #[error("timestamp outside the allowed window ({skew_secs} s away)")]
    Stale {
        /// How far away, in seconds.
        skew_secs: i64,
    },
    /// The daemon has no key for this integration yet.
    #[error("no verification key configured")]
    NotConfigured,
}

impl VerifyError {
    /// Label for metrics and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_signature",
            VerifyError::Mismatch => "bad_signature",
            VerifyError::Stale { .. } => "stale",
            VerifyError::NotConfigured => "not_configured",
        }
    }
}

/// Why a genuine request cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The content type is not one the platform sends (415).
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// The body is not what the platform sends (400).
    #[error("malformed payload: {0}")]
    Malformed(String),
}

// === helpers shared by the platforms' webhook modules ===

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let pair = |b: &u8| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]];
    bytes.iter().flat_map(pair).map(char::from).collect()
}

/// Hex (either case) to bytes; `None` for odd lengths or other characters.
pub(crate) fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16);
    text.chunks(2)
        .map(|pair| match pair {
            [hi, lo] => u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok(),
            _ => None,
        })
        .collect()
}

/// Whether the content type is `application/json` (parameters such as charset allowed).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

impl VerifyKeys {
    /// The key or shared secret, when one is known and not empty.
    pub fn usable_secret(&self) -> Option<&Secret> {
        self.secret.as_ref().filter(|s| !s.expose().is_empty())
    }

    /// [`VerifyKeys::usable_secret`], or [`VerifyError::NotConfigured`].
    pub fn required_secret(&self) -> Result<&Secret, VerifyError> {
        self.usable_secret().ok_or(VerifyError::NotConfigured)
    }
}

/// A header a verification needs, or [`VerifyError::MissingHeader`].
pub(crate) fn required_header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<&'h [u8], VerifyError> {
    header(headers, name).ok_or(VerifyError::MissingHeader(name))
}

/// A header's raw bytes.
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

/// The event id of last resort: a digest of the delivery.
pub(crate) fn body_digest(body: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex(&sha2::Sha256::digest(body)))
}

/// Sets the event id to the body's digest when the platform sent none.
pub(crate) fn ensure_id(normalized: &mut Normalized, body: &[u8]) {
    if normalized.id.as_deref().is_none_or(str::is_empty) {
        normalized.id = Some(body_digest(body));
    }
}

/// Refuses a signature timestamp more than [`MAX_CLOCK_SKEW_SECS`] away from now.
pub(crate) fn check_window(signed_at: i64, now: i64) -> Result<(), VerifyError> {
    let skew_secs = now.saturating_sub(signed_at);
    if skew_secs.unsigned_abs() > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        Err(VerifyError::Stale { skew_secs })
    } else {
        Ok(())
    }
}

/// Proves a delivery to `kind`'s webhook endpoint is genuine (constant-time comparisons).
pub fn verify(
    kind: PlatformKind,
    req: &InboundRequest<'_>,
    keys: &VerifyKeys,
) -> Result<(), VerifyError> {
    match kind {
        PlatformKind::Freshdesk => freshdesk::webhook::verify(req, keys),
        PlatformKind::Zendesk => zendesk::webhook::verify(req, keys),
        PlatformKind::Slack => slack::webhook::verify(req, keys),
        PlatformKind::Trello => trello::webhook::verify(req, keys),
        PlatformKind::Notion => notion::webhook::verify(req, keys),
        PlatformKind::GoogleSheets => google_sheets::webhook::verify(req, keys),
        PlatformKind::Supportopsd => supportopsd::webhook::verify(req, keys),
    }
}

/// Turns a verified delivery into an event, a challenge answer, or an acknowledgement.
pub fn parse(kind: PlatformKind, req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    match kind {
        PlatformKind::Freshdesk => freshdesk::webhook::parse(req),
        PlatformKind::Zendesk => zendesk::webhook::parse(req),
        PlatformKind::Slack => slack::webhook::parse(req),
        PlatformKind::Trello => trello::webhook::parse(req),
        PlatformKind::Notion => notion::webhook::parse(req),
        PlatformKind::GoogleSheets => google_sheets::webhook::parse(req),
        PlatformKind::Supportopsd => supportopsd::webhook::parse(req),
    }
}
