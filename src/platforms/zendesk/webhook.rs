//! Zendesk webhook deliveries: proving them genuine and turning them into events.
//!
//! Guarantees:
//!
//! - [`verify`] accepts a delivery only when `x-zendesk-webhook-signature` is
//!   `base64(HMAC-SHA256(signing secret, x-zendesk-webhook-signature-timestamp + raw body))`,
//!   the secret being used as the bytes of the string as given (never base64-decoded), the
//!   timestamp header exactly as sent, and that timestamp (RFC 3339) no more than
//!   [`MAX_CLOCK_SKEW_SECS`] away from the injected clock. The signature is compared in
//!   constant time (`Mac::verify_slice`). Pure, and never panics.
//! - [`parse`] requires `application/json`, and tells the event from the body: the
//!   `zen:event-type:` of an event-subscription envelope (mapped as [`super::events`] documents),
//!   or the `supportopsd_event` field of the trigger bodies supportopsd writes. Event types no
//!   rule can use are acknowledged, not refused.
//! - A parsed event's id — its dedupe key — always comes from signed data: the envelope's event
//!   id, else (trigger bodies carry none) `sha256:` + hex SHA-256 of the raw body, which the
//!   signature covers. The `x-zendesk-webhook-invocation-id` header is not signed, so it is
//!   never the id (SEC-11: a captured delivery replayed with a new invocation id would run its
//!   rules again); it is only logged, at debug level, to match a delivery with Zendesk's
//!   invocation log. A retry of one delivery, re-signed or not, stays one event; two trigger
//!   deliveries with byte-identical bodies (same ticket, same event, same `updated_at` second,
//!   same fields) are one event too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::DESCRIPTOR;
use crate::platforms::inbound::{body_digest, check_window, header, is_json, required_header};
use crate::platforms::{Inbound, InboundRequest, Normalized, ParseError, VerifyError, VerifyKeys};
use crate::rules::condition::parse_timestamp;

/// The header carrying the base64 HMAC-SHA256 signature.
pub const SIGNATURE_HEADER: &str = "x-zendesk-webhook-signature";

/// The header carrying the signed RFC 3339 timestamp.
pub const TIMESTAMP_HEADER: &str = "x-zendesk-webhook-signature-timestamp";

/// The header naming one invocation of a webhook. Not signed: logged, never a dedupe key.
pub const INVOCATION_HEADER: &str = "x-zendesk-webhook-invocation-id";

/// The `type` prefix of event-subscription envelopes.
const PREFIX: &str = "zen:event-type:";

/// Proves a delivery comes from the Zendesk webhook whose signing secret is `keys.secret`.
pub fn verify(req: &InboundRequest<'_>, keys: &VerifyKeys) -> Result<(), VerifyError> {
    let secret = keys.required_secret()?;
    let signature = required_header(req.headers, SIGNATURE_HEADER)?;
    let timestamp = required_header(req.headers, TIMESTAMP_HEADER)?;
    let (signed_at, _) = std::str::from_utf8(timestamp)
        .ok()
        .and_then(parse_timestamp)
        .ok_or(VerifyError::Mismatch)?;
    check_window(signed_at, req.now_unix)?;
    if signature_matches(secret.expose(), timestamp, req.body, signature) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Turns a verified Zendesk delivery into an event (or an acknowledgement).
pub fn parse(req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    if !is_json(req.headers) {
        return Err(ParseError::UnsupportedMediaType);
    }
    let payload: Value = serde_json::from_slice(req.body)
        .map_err(|e| ParseError::Malformed(format!("invalid JSON: {e}")))?;
    let root = payload
        .as_object()
        .ok_or_else(|| ParseError::Malformed("expected a JSON object".into()))?;
    let Some(event) = event_name(root)?
        .and_then(|name| DESCRIPTOR.event(name))
        .filter(|e| e.deliverable)
    else {
        return Ok(Inbound::Acknowledge);
    };
    let mut normalized =
        (DESCRIPTOR.normalize)(event, &payload).map_err(|e| ParseError::Malformed(e.0))?;
    ensure_id(&mut normalized, req);
    Ok(Inbound::Event {
        event,
        normalized,
        payload,
    })
}

/// The catalogue event a body is, `None` for a Zendesk event type no rule can use.
fn event_name(root: &Map<String, Value>) -> Result<Option<&str>, ParseError> {
    if let Some(kind) = root
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| t.strip_prefix(PREFIX))
    {
        return Ok(subscription_event(kind, root));
    }
    match root.get("supportopsd_event") {
        Some(Value::String(name)) => Ok(Some(name)),
        Some(_) => Err(ParseError::Malformed(
            "expected a string at `supportopsd_event`".into(),
        )),
        None => Err(ParseError::Malformed(format!(
            "neither an event-subscription envelope (`type` = \"{PREFIX}…\") nor a trigger body \
             written by supportopsd (`supportopsd_event`)"
        ))),
    }
}

/// Our event for a subscription type (the part after `zen:event-type:`). One delivery is one
/// event, so the most specific one wins: a status change to solved is `ticket.solved`, not
/// `ticket.updated`; a comment is `comment.created`.
fn subscription_event(kind: &str, root: &Map<String, Value>) -> Option<&'static str> {
    let (domain, action) = kind.split_once('.')?;
    let name = match (domain, action) {
        ("ticket", "created") => "ticket.created",
        ("ticket", "comment_added") => "comment.created",
        ("ticket", "status_changed") => match new_status(root) {
            Some(s) if s.eq_ignore_ascii_case("solved") => "ticket.solved",
            Some(s) if s.eq_ignore_ascii_case("closed") => "ticket.closed",
            _ => "ticket.updated",
        },
        ("ticket", _) => "ticket.updated",
        ("user", "created") => "user.created",
        ("user", _) => "user.updated",
        ("organization", "created") => "organization.created",
        ("organization", "deleted") => return None,
        ("organization", _) => "organization.updated",
        _ => return None,
    };
    Some(name)
}

/// The status a `ticket.status_changed` envelope changes to (`event.current`, else the
/// snapshot's `detail.status`).
fn new_status(root: &Map<String, Value>) -> Option<&str> {
    root.get("event")
        .and_then(|e| e.get("current"))
        .and_then(Value::as_str)
        .or_else(|| {
            root.get("detail")
                .and_then(|d| d.get("status"))
                .and_then(Value::as_str)
        })
}

/// Whether `signature_b64` is the base64 HMAC-SHA256 of `timestamp + body` under `secret`
/// (constant-time comparison).
fn signature_matches(secret: &[u8], timestamp: &[u8], body: &[u8], signature_b64: &[u8]) -> bool {
    let Ok(tag) = STANDARD.decode(signature_b64) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp);
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// Sets `normalized.id` when the payload carried none (trigger bodies): the digest of the signed
/// body. The unsigned invocation header is only logged, and only when it looks like one
/// (digits, at most 32), so that a forger cannot write into the log through it.
fn ensure_id(normalized: &mut Normalized, req: &InboundRequest<'_>) {
    if normalized.id.as_deref().is_some_and(|id| !id.is_empty()) {
        return;
    }
    let id = body_digest(req.body);
    if let Some(invocation) = header(req.headers, INVOCATION_HEADER)
        .filter(|v| !v.is_empty() && v.len() <= 32 && v.iter().all(u8::is_ascii_digit))
        .and_then(|v| std::str::from_utf8(v).ok())
    {
        tracing::debug!(invocation, id, "Zendesk trigger delivery.");
    }
    normalized.id = Some(id);
}

#[cfg(test)]
mod tests {
    use crate::platforms::inbound::MAX_CLOCK_SKEW_SECS;
    use crate::platforms::testkit::{headers, keys};
    use http::HeaderMap;
    use http::Method;

    use super::*;

    /// Zendesk's static test secret (used as the string, not decoded).
    const TEST_SECRET: &str = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==";

    /// Vector A (aaronellington/zendesk-go `webhook_test.go`, recomputed independently).
    const VECTOR_A_BODY: &str = "{\n\t\"type\": \"zen:event-type:user.group_membership_created\",\n\t\"account_id\": 12514403,\n\t\"id\": \"6b9bbadf-5725-4e92-bebe-7b71011bf5f1\",\n\t\"subject\": \"zen:user:6596848315901\",\n\t\"time\": \"2099-07-04T05:33:18Z\",\n\t\"zendesk_event_version\": \"2022-06-20\",\n\t\"detail\": {\n\t\t\"created_at\": \"2099-07-04T05:27:58Z\",\n\t\t\"default_group_id\": \"0\",\n\t\t\"email\": \"user.name@example.com\",\n\t\t\"external_id\": \"\",\n\t\t\"id\": \"6596848315901\",\n\t\t\"organization_id\": \"0\",\n\t\t\"role\": \"end-user\",\n\t\t\"updated_at\": \"2099-07-04T05:33:18Z\"\n\t},\n\t\"event\": { \"group\": { \"id\": \"1\" } }\n}\n";
    const VECTOR_A_SIGNATURE: &str = "10IqYzYTLHRftNsNE+im0DeOM6/JactIRuy0XCHJ9B8=";
    /// What vector A gives with the secret wrongly base64-decoded first.
    const VECTOR_A_DECODED_KEY_SIGNATURE: &str = "Yf7IAOoYEOP2aa2bTuGgwtjXxRn64WFzCqoDmC9HkBs=";

    /// Vector B (computed, not Zendesk's): RFC 3339 timestamp, so it runs through `verify`.
    const VECTOR_B_TIMESTAMP: &str = "2021-03-25T05:09:27Z";
    const VECTOR_B_UNIX: i64 = 1_616_648_967;
    const VECTOR_B_BODY: &str = r#"{"type":"zen:event-type:user.created","id":"x"}"#;
    const VECTOR_B_SIGNATURE: &str = "03vcFD6DHls1DFshToDgN6GIMCwsFPp5fgP4+Txs/Kk=";
    const VECTOR_B_EMPTY_SIGNATURE: &str = "wCdBvXaHttn0wRVIYctzZ9O6O0bnqWakJMEKZ9VoRWw=";

    /// `(expected event, fixture file, body)`; `None` means acknowledged.
    const FIXTURES: &[(Option<&str>, &str, &str)] = &[
        (
            Some("comment.created"),
            "comment_added_subscription.json",
            include_str!("fixtures/comment_added_subscription.json"),
        ),
        (
            Some("comment.created"),
            "comment_created_trigger.json",
            include_str!("fixtures/comment_created_trigger.json"),
        ),
        (
            Some("organization.created"),
            "organization_created.json",
            include_str!("fixtures/organization_created.json"),
        ),
        (
            Some("organization.updated"),
            "organization_name_changed.json",
            include_str!("fixtures/organization_name_changed.json"),
        ),
        (
            Some("ticket.created"),
            "ticket_created_subscription.json",
            include_str!("fixtures/ticket_created_subscription.json"),
        ),
        (
            Some("ticket.created"),
            "ticket_created_trigger.json",
            include_str!("fixtures/ticket_created_trigger.json"),
        ),
        (
            Some("ticket.updated"),
            "ticket_priority_changed.json",
            include_str!("fixtures/ticket_priority_changed.json"),
        ),
        (
            Some("ticket.solved"),
            "ticket_solved_trigger.json",
            include_str!("fixtures/ticket_solved_trigger.json"),
        ),
        (
            Some("ticket.closed"),
            "ticket_status_changed_closed.json",
            include_str!("fixtures/ticket_status_changed_closed.json"),
        ),
        (
            Some("ticket.solved"),
            "ticket_status_changed_solved.json",
            include_str!("fixtures/ticket_status_changed_solved.json"),
        ),
        (
            Some("ticket.updated"),
            "ticket_updated_trigger.json",
            include_str!("fixtures/ticket_updated_trigger.json"),
        ),
        (
            Some("user.updated"),
            "user_active_changed.json",
            include_str!("fixtures/user_active_changed.json"),
        ),
        (
            Some("user.created"),
            "user_created.json",
            include_str!("fixtures/user_created.json"),
        ),
        (
            Some("user.updated"),
            "user_default_group_changed.json",
            include_str!("fixtures/user_default_group_changed.json"),
        ),
    ];

    fn run_verify(h: &HeaderMap, body: &str, now: i64, k: &VerifyKeys) -> Result<(), VerifyError> {
        let req = InboundRequest {
            method: &Method::POST,
            headers: h,
            body: body.as_bytes(),
            now_unix: now,
        };
        verify(&req, k)
    }

    fn run_parse(h: &HeaderMap, body: &str) -> Result<Inbound, ParseError> {
        let req = InboundRequest {
            method: &Method::POST,
            headers: h,
            body: body.as_bytes(),
            now_unix: VECTOR_B_UNIX,
        };
        parse(&req)
    }

    fn signed(timestamp: &str, signature: &str) -> HeaderMap {
        headers(&[(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)])
    }

    fn json() -> HeaderMap {
        headers(&[("content-type", "application/json")])
    }

    fn event_of(result: Result<Inbound, ParseError>) -> (&'static str, Normalized) {
        match result {
            Ok(Inbound::Event {
                event, normalized, ..
            }) => (event.name, normalized),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn vector_a_hmac_core() {
        assert!(signature_matches(
            TEST_SECRET.as_bytes(),
            b"1234",
            VECTOR_A_BODY.as_bytes(),
            VECTOR_A_SIGNATURE.as_bytes()
        ));
        assert_eq!(VECTOR_A_BODY.len(), 534);
    }

    #[test]
    fn vector_a_secret_is_not_base64_decoded() {
        // The signature made with the decoded key must not verify with the secret as given…
        assert!(!signature_matches(
            TEST_SECRET.as_bytes(),
            b"1234",
            VECTOR_A_BODY.as_bytes(),
            VECTOR_A_DECODED_KEY_SIGNATURE.as_bytes()
        ));
        // …and is what the decoded key gives.
        let decoded = STANDARD.decode(TEST_SECRET).expect("base64");
        assert!(signature_matches(
            &decoded,
            b"1234",
            VECTOR_A_BODY.as_bytes(),
            VECTOR_A_DECODED_KEY_SIGNATURE.as_bytes()
        ));
    }

    #[test]
    fn vector_a_timestamp_is_refused_by_verify() {
        // "1234" is not RFC 3339: the full check refuses it even with a valid signature.
        let h = signed("1234", VECTOR_A_SIGNATURE);
        let k = keys(Some(TEST_SECRET));
        assert_eq!(
            run_verify(&h, VECTOR_A_BODY, 1234, &k),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn vector_b_verifies() {
        assert_eq!(
            parse_timestamp(VECTOR_B_TIMESTAMP),
            Some((VECTOR_B_UNIX, 0))
        );
        let k = keys(Some(TEST_SECRET));
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_SIGNATURE);
        assert_eq!(run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &k), Ok(()));
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_EMPTY_SIGNATURE);
        assert_eq!(run_verify(&h, "", VECTOR_B_UNIX + 10, &k), Ok(()));
    }

    #[test]
    fn forged_body_signature_or_timestamp_is_refused() {
        let k = keys(Some(TEST_SECRET));
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_SIGNATURE);
        let tampered = VECTOR_B_BODY.replace('x', "y");
        assert_eq!(
            run_verify(&h, &tampered, VECTOR_B_UNIX, &k),
            Err(VerifyError::Mismatch)
        );
        // The empty-body signature does not cover this body.
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_EMPTY_SIGNATURE);
        assert_eq!(
            run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &k),
            Err(VerifyError::Mismatch)
        );
        // Same instant written differently: the signature covers the text, so it fails.
        let h = signed("2021-03-25T05:09:27+00:00", VECTOR_B_SIGNATURE);
        assert_eq!(
            run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &k),
            Err(VerifyError::Mismatch)
        );
        for garbage in [
            "not base64!",
            "",
            "AAAA",
            "03vcFD6DHls1DFshToDgN6GIMCwsFPp5fgP4+Txs/Kk",
        ] {
            let h = signed(VECTOR_B_TIMESTAMP, garbage);
            assert_eq!(
                run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &k),
                Err(VerifyError::Mismatch),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn wrong_secret_is_refused() {
        let k = keys(Some("another secret"));
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_SIGNATURE);
        assert_eq!(
            run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &k),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn no_secret_is_not_configured() {
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_SIGNATURE);
        assert_eq!(
            run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &keys(None)),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn missing_headers() {
        let k = keys(Some(TEST_SECRET));
        let h = headers(&[(TIMESTAMP_HEADER, VECTOR_B_TIMESTAMP)]);
        assert_eq!(
            run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &k),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let h = headers(&[(SIGNATURE_HEADER, VECTOR_B_SIGNATURE)]);
        assert_eq!(
            run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX, &k),
            Err(VerifyError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            VerifyError::MissingHeader(SIGNATURE_HEADER).reason(),
            "missing_signature"
        );
    }

    #[test]
    fn replay_window_boundaries() {
        let k = keys(Some(TEST_SECRET));
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_SIGNATURE);
        let at = |now| run_verify(&h, VECTOR_B_BODY, now, &k);
        assert_eq!(at(VECTOR_B_UNIX + MAX_CLOCK_SKEW_SECS), Ok(()));
        assert_eq!(at(VECTOR_B_UNIX - MAX_CLOCK_SKEW_SECS), Ok(()));
        assert_eq!(
            at(VECTOR_B_UNIX + MAX_CLOCK_SKEW_SECS + 1),
            Err(VerifyError::Stale {
                skew_secs: MAX_CLOCK_SKEW_SECS + 1
            })
        );
        // A timestamp in the future.
        assert_eq!(
            at(VECTOR_B_UNIX - MAX_CLOCK_SKEW_SECS - 1),
            Err(VerifyError::Stale {
                skew_secs: -MAX_CLOCK_SKEW_SECS - 1
            })
        );
        assert!(matches!(at(i64::MIN), Err(VerifyError::Stale { .. })));
        assert!(matches!(at(i64::MAX), Err(VerifyError::Stale { .. })));
    }

    #[test]
    fn stale_is_refused_even_when_signed() {
        // A replay of a genuine delivery a day later.
        let k = keys(Some(TEST_SECRET));
        let h = signed(VECTOR_B_TIMESTAMP, VECTOR_B_SIGNATURE);
        assert_eq!(
            run_verify(&h, VECTOR_B_BODY, VECTOR_B_UNIX + 86_400, &k),
            Err(VerifyError::Stale { skew_secs: 86_400 })
        );
    }

    #[test]
    fn every_fixture_names_its_event() {
        for (expected, file, body) in FIXTURES {
            match (expected, run_parse(&json(), body)) {
                (
                    Some(name),
                    Ok(Inbound::Event {
                        event, normalized, ..
                    }),
                ) => {
                    assert_eq!(event.name, *name, "{file}");
                    assert!(normalized.id.is_some(), "{file}: no id");
                }
                (None, Ok(Inbound::Acknowledge)) => {}
                (_, other) => panic!("{file}: {other:?}"),
            }
        }
    }

    #[test]
    fn vector_bodies_parse() {
        // Vector A is a user event type: `user.updated`, keeping the envelope id.
        let (name, n) = event_of(run_parse(&json(), VECTOR_A_BODY));
        assert_eq!(name, "user.updated");
        assert_eq!(
            n.id.as_deref(),
            Some("6b9bbadf-5725-4e92-bebe-7b71011bf5f1")
        );
    }

    #[test]
    fn unusable_event_types_are_acknowledged() {
        for ty in [
            "zen:event-type:organization.deleted",
            "zen:event-type:article.published",
            "zen:event-type:nodot",
        ] {
            let body = format!(r#"{{"type":"{ty}","id":"e1","detail":{{}}}}"#);
            assert!(
                matches!(run_parse(&json(), &body), Ok(Inbound::Acknowledge)),
                "{ty}"
            );
        }
        let body = r#"{"supportopsd_event":"ticket.exploded","ticket":{"id":"1"}}"#;
        assert!(matches!(run_parse(&json(), body), Ok(Inbound::Acknowledge)));
    }

    #[test]
    fn status_changed_to_other_statuses_is_an_update() {
        let body = include_str!("fixtures/ticket_status_changed_solved.json")
            .replace("\"SOLVED\"", "\"PENDING\"");
        let (name, n) = event_of(run_parse(&json(), &body));
        assert_eq!(name, "ticket.updated");
        assert_eq!(
            n.changes.get("status"),
            Some(&serde_json::json!({ "from": "open", "to": "pending" }))
        );
    }

    #[test]
    fn bodies_that_are_no_zendesk_shape_are_malformed() {
        for body in [
            r#"{"type":"End User Comment","ticketID":"12345"}"#,
            r#"{"supportopsd_event":7,"ticket":{"id":"1"}}"#,
            "[1,2]",
            "{not json",
            "",
        ] {
            assert!(
                matches!(run_parse(&json(), body), Err(ParseError::Malformed(_))),
                "{body:?}"
            );
        }
        // A known event whose body does not fit it.
        let body = r#"{"supportopsd_event":"ticket.solved","ticket":{"id":"1","status":"Open"}}"#;
        assert!(matches!(
            run_parse(&json(), body),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn content_type_must_be_json() {
        let body = include_str!("fixtures/ticket_created_trigger.json");
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
        ] {
            let h = headers(&[("content-type", ct)]);
            assert!(
                matches!(run_parse(&h, body), Ok(Inbound::Event { .. })),
                "{ct}"
            );
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonx",
            "",
        ] {
            let h = headers(&[("content-type", ct)]);
            assert_eq!(
                run_parse(&h, body).err(),
                Some(ParseError::UnsupportedMediaType),
                "{ct}"
            );
        }
        assert_eq!(
            run_parse(&HeaderMap::new(), body).err(),
            Some(ParseError::UnsupportedMediaType)
        );
    }

    /// SEC-11: the id (the dedupe key) comes from signed data only.
    #[test]
    fn ids_come_from_signed_data_never_from_the_invocation_header() {
        // 1. The envelope's event id (in the signed body), whatever the invocation header says.
        let body = include_str!("fixtures/ticket_created_subscription.json");
        let envelope: Value = serde_json::from_str(body).expect("json");
        let h = headers(&[
            ("content-type", "application/json"),
            (INVOCATION_HEADER, "8350205582"),
        ]);
        let (_, n) = event_of(run_parse(&h, body));
        assert_eq!(n.id.as_deref(), envelope.get("id").and_then(Value::as_str));
        // 2. Trigger bodies have none: the digest of the signed body, the same with any
        // invocation header or none.
        let body = include_str!("fixtures/ticket_created_trigger.json");
        let digest = body_digest(body.as_bytes());
        assert!(
            digest.starts_with("sha256:") && digest.len() == 7 + 64,
            "{digest}"
        );
        for invocation in ["8350205582", "8350205583", "inv-2 forged log line", ""] {
            let h = headers(&[
                ("content-type", "application/json"),
                (INVOCATION_HEADER, invocation),
            ]);
            let (_, n) = event_of(run_parse(&h, body));
            assert_eq!(n.id.as_deref(), Some(digest.as_str()), "{invocation:?}");
        }
        let (_, n) = event_of(run_parse(&json(), body));
        assert_eq!(n.id, Some(digest));
        // A different body is a different event.
        let other = format!("{body} ");
        let (_, n) = event_of(run_parse(&json(), &other));
        assert_ne!(n.id, Some(body_digest(body.as_bytes())));
    }

    #[test]
    fn body_digest_is_hex_sha256() {
        assert_eq!(
            body_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn verify_and_parse_never_panic() {
        let bodies: Vec<&str> = FIXTURES.iter().map(|f| f.2).collect();
        crate::platforms::testkit::assert_inbound_never_panics(
            crate::platforms::PlatformKind::Zendesk,
            &[SIGNATURE_HEADER, TIMESTAMP_HEADER, INVOCATION_HEADER],
            &bodies,
        );
    }
}
