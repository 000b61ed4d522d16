//! Notion webhook deliveries: proving them genuine and turning them into events.
//!
//! Guarantees:
//!
//! - [`verify`] accepts a delivery only when `x-notion-signature` is
//!   `sha256=` + hex `HMAC-SHA256(verification token, raw body)` (compared in constant time,
//!   `Mac::verify_slice`). Notion signs no timestamp, so there is no replay window: replays are
//!   caught by deduplicating on the event id. Pure, and never panics.
//! - The one exception is the subscription's one-time verification request, a body that is
//!   exactly `{"verification_token": "…"}`: it is accepted unsigned **only while no token is
//!   configured** (`keys.secret` is `None`), since the receiver cannot hold the key it carries.
//!   Once a token is configured, every request must be signed with it — except that same
//!   verification request inside a window an operator opened (SEC-04), which the ingress
//!   accepts whatever its signature: "Resend token" and a re-created subscription send a
//!   *new* token, unsigned or signed with that new token (notion-sdk-js's README says the
//!   handshake "is signed with the same token"; other write-ups say it is unsigned), never
//!   with the one stored. This check is pure: whether a verification request is wanted at
//!   all is decided by the ingress (`runtime::notion`).
//! - [`parse`] requires `application/json`; the verification request becomes
//!   [`Inbound::VerificationToken`]; an event is named by `type`, and types no rule can use
//!   (Notion adds types over time) are acknowledged, never refused.
//! - A parsed event always has an id: the event `id`, else `sha256:` + hex SHA-256 of the raw
//!   body.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::DESCRIPTOR;
use crate::platforms::inbound::{ensure_id, is_json, required_header, unhex};
use crate::platforms::{Inbound, InboundRequest, ParseError, VerifyError, VerifyKeys};
use crate::secrets::Secret;

/// The header carrying `sha256=<hex signature>`.
pub const SIGNATURE_HEADER: &str = "x-notion-signature";

/// The body key of the one-time verification request.
const TOKEN_KEY: &str = "verification_token";

/// Proves a delivery comes from the Notion subscription whose verification token is
/// `keys.secret` (or is that subscription's first, unsigned, verification request).
pub fn verify(req: &InboundRequest<'_>, keys: &VerifyKeys) -> Result<(), VerifyError> {
    let Some(secret) = keys.usable_secret() else {
        return if is_handshake(req.body) {
            Ok(())
        } else {
            Err(VerifyError::NotConfigured)
        };
    };
    let signature = required_header(req.headers, SIGNATURE_HEADER)?;
    if signature_matches(secret.expose(), req.body, signature) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Turns a verified Notion delivery into an event, the verification token, or an
/// acknowledgement.
pub fn parse(req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    if !is_json(req.headers) {
        return Err(ParseError::UnsupportedMediaType);
    }
    let payload: Value = serde_json::from_slice(req.body)
        .map_err(|e| ParseError::Malformed(format!("invalid JSON: {e}")))?;
    if let Some(token) = token_of(&payload) {
        if token.is_empty() {
            return Err(ParseError::Malformed("empty `verification_token`".into()));
        }
        return Ok(Inbound::VerificationToken(Secret::from(token.to_owned())));
    }
    let name = payload
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::Malformed("expected a string at `type`".into()))?;
    let Some(event) = DESCRIPTOR.event(name).filter(|e| e.deliverable) else {
        return Ok(Inbound::Acknowledge);
    };
    let mut normalized =
        (DESCRIPTOR.normalize)(event, &payload).map_err(|e| ParseError::Malformed(e.0))?;
    ensure_id(&mut normalized, req.body);
    Ok(Inbound::Event {
        event,
        normalized,
        payload,
    })
}

/// Whether the body is exactly `{"verification_token": "<string>"}`.
pub fn is_handshake(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|payload| token_of(&payload).is_some())
}

/// The token when `payload` is an object whose only key is `verification_token`, a string.
fn token_of(payload: &Value) -> Option<&str> {
    match payload.as_object() {
        Some(map) if map.len() == 1 => map.get(TOKEN_KEY).and_then(Value::as_str),
        _ => None,
    }
}

/// Whether `signature` is `sha256=` + hex HMAC-SHA256 of `body` under `token`
/// (constant-time comparison).
fn signature_matches(token: &[u8], body: &[u8], signature: &[u8]) -> bool {
    let Some(tag) = signature.strip_prefix(b"sha256=").and_then(unhex) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(token) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use crate::platforms::inbound::hex;
    use crate::platforms::testkit::{headers, keys};
    use http::{HeaderMap, Method};

    use sha2::Digest;

    use super::*;

    /// The token of Notion's documented verification request.
    const TOKEN: &str = "secret_tMrlL1qK5vuQAh1b6cZGhFChZTSYJlce98V0pYn7yBl";

    /// Notion publishes no signature vector: this one was computed independently (Python
    /// `hmac.new(TOKEN, BODY, sha256).hexdigest()`).
    const VECTOR_BODY: &str =
        r#"{"type":"page.created","id":"367cba44-b6f3-4c92-81e7-6a2e9659efd4"}"#;
    const VECTOR_SIGNATURE: &str =
        "sha256=59e3eca47c9e858279fe71cc9652f74226717a44341f8bf01ec06c568a2e5d00";

    /// The documented verification request.
    const HANDSHAKE: &str =
        "{\n  \"verification_token\": \"secret_tMrlL1qK5vuQAh1b6cZGhFChZTSYJlce98V0pYn7yBl\"\n}";

    /// `(event, body)`: every fixture is named after its event type.
    const FIXTURES: &[(&str, &str)] = &[
        (
            "comment.created",
            include_str!("fixtures/comment.created.json"),
        ),
        (
            "comment.deleted",
            include_str!("fixtures/comment.deleted.json"),
        ),
        (
            "comment.updated",
            include_str!("fixtures/comment.updated.json"),
        ),
        (
            "data_source.content_updated",
            include_str!("fixtures/data_source.content_updated.json"),
        ),
        (
            "data_source.created",
            include_str!("fixtures/data_source.created.json"),
        ),
        (
            "data_source.deleted",
            include_str!("fixtures/data_source.deleted.json"),
        ),
        (
            "data_source.moved",
            include_str!("fixtures/data_source.moved.json"),
        ),
        (
            "data_source.schema_updated",
            include_str!("fixtures/data_source.schema_updated.json"),
        ),
        (
            "data_source.undeleted",
            include_str!("fixtures/data_source.undeleted.json"),
        ),
        (
            "database.content_updated",
            include_str!("fixtures/database.content_updated.json"),
        ),
        (
            "database.created",
            include_str!("fixtures/database.created.json"),
        ),
        (
            "database.deleted",
            include_str!("fixtures/database.deleted.json"),
        ),
        (
            "database.moved",
            include_str!("fixtures/database.moved.json"),
        ),
        (
            "database.schema_updated",
            include_str!("fixtures/database.schema_updated.json"),
        ),
        (
            "database.undeleted",
            include_str!("fixtures/database.undeleted.json"),
        ),
        (
            "page.content_updated",
            include_str!("fixtures/page.content_updated.json"),
        ),
        ("page.created", include_str!("fixtures/page.created.json")),
        ("page.deleted", include_str!("fixtures/page.deleted.json")),
        ("page.locked", include_str!("fixtures/page.locked.json")),
        ("page.moved", include_str!("fixtures/page.moved.json")),
        (
            "page.properties_updated",
            include_str!("fixtures/page.properties_updated.json"),
        ),
        (
            "page.undeleted",
            include_str!("fixtures/page.undeleted.json"),
        ),
        ("page.unlocked", include_str!("fixtures/page.unlocked.json")),
    ];

    fn sign(token: &str, body: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(token.as_bytes()).expect("key");
        mac.update(body.as_bytes());
        format!("sha256={}", hex(&mac.finalize().into_bytes()))
    }

    fn run_verify(h: &HeaderMap, body: &str, k: &VerifyKeys) -> Result<(), VerifyError> {
        let req = InboundRequest {
            method: &Method::POST,
            headers: h,
            body: body.as_bytes(),
            now_unix: 0,
        };
        verify(&req, k)
    }

    fn run_parse(h: &HeaderMap, body: &str) -> Result<Inbound, ParseError> {
        let req = InboundRequest {
            method: &Method::POST,
            headers: h,
            body: body.as_bytes(),
            now_unix: 0,
        };
        parse(&req)
    }

    fn json() -> HeaderMap {
        headers(&[("content-type", "application/json")])
    }

    #[test]
    fn computed_vector_verifies() {
        assert_eq!(sign(TOKEN, VECTOR_BODY), VECTOR_SIGNATURE);
        let h = headers(&[(SIGNATURE_HEADER, VECTOR_SIGNATURE)]);
        assert_eq!(run_verify(&h, VECTOR_BODY, &keys(Some(TOKEN))), Ok(()));
        let upper = format!("sha256={}", VECTOR_SIGNATURE[7..].to_uppercase());
        let h = headers(&[(SIGNATURE_HEADER, &upper)]);
        assert_eq!(run_verify(&h, VECTOR_BODY, &keys(Some(TOKEN))), Ok(()));
    }

    #[test]
    fn forged_signatures_and_wrong_token_are_refused() {
        let k = keys(Some(TOKEN));
        let h = headers(&[(SIGNATURE_HEADER, VECTOR_SIGNATURE)]);
        let tampered = VECTOR_BODY.replace("page.created", "page.deleted");
        assert_eq!(run_verify(&h, &tampered, &k), Err(VerifyError::Mismatch));
        // Re-serialised JSON does not verify: the raw bytes are signed.
        let reserialised = format!("{} ", VECTOR_BODY);
        assert_eq!(
            run_verify(&h, &reserialised, &k),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            run_verify(&h, VECTOR_BODY, &keys(Some("secret_other"))),
            Err(VerifyError::Mismatch)
        );
        for garbage in [
            "",
            "sha256=",
            &VECTOR_SIGNATURE[7..],
            "sha1=59e3eca47c9e858279fe71cc9652f74226717a44341f8bf01ec06c568a2e5d00",
            "sha256=59e3eca47c9e858279fe71cc9652f74226717a44341f8bf01ec06c568a2e5d0",
            "sha256=59e3eca47c9e858279fe71cc9652f74226717a44341f8bf01ec06c568a2e5d",
            "sha256=x9e3eca47c9e858279fe71cc9652f74226717a44341f8bf01ec06c568a2e5d00",
        ] {
            let h = headers(&[(SIGNATURE_HEADER, garbage)]);
            assert_eq!(
                run_verify(&h, VECTOR_BODY, &k),
                Err(VerifyError::Mismatch),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn missing_signature_and_no_token() {
        assert_eq!(
            run_verify(&json(), VECTOR_BODY, &keys(Some(TOKEN))),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let h = headers(&[(SIGNATURE_HEADER, VECTOR_SIGNATURE)]);
        assert_eq!(
            run_verify(&h, VECTOR_BODY, &keys(None)),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn handshake_is_unsigned_only_while_no_token_is_configured() {
        // No token yet: accepted unsigned (and with any signature header).
        assert_eq!(run_verify(&json(), HANDSHAKE, &keys(None)), Ok(()));
        let h = headers(&[(SIGNATURE_HEADER, "sha256=00")]);
        assert_eq!(run_verify(&h, HANDSHAKE, &keys(None)), Ok(()));
        // A token is configured: it must be signed with it.
        assert_eq!(
            run_verify(&json(), HANDSHAKE, &keys(Some(TOKEN))),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let h = headers(&[(SIGNATURE_HEADER, &sign("secret_new", HANDSHAKE))]);
        assert_eq!(
            run_verify(&h, HANDSHAKE, &keys(Some(TOKEN))),
            Err(VerifyError::Mismatch)
        );
        let h = headers(&[(SIGNATURE_HEADER, &sign(TOKEN, HANDSHAKE))]);
        assert_eq!(run_verify(&h, HANDSHAKE, &keys(Some(TOKEN))), Ok(()));
        // Only a body that is exactly the verification request gets the exception.
        for body in [
            r#"{"verification_token":"t","type":"page.created"}"#,
            r#"{"verification_token":7}"#,
            r#"[{"verification_token":"t"}]"#,
            r#"{"verification_token":"t""#,
            "",
        ] {
            assert_eq!(
                run_verify(&json(), body, &keys(None)),
                Err(VerifyError::NotConfigured),
                "{body:?}"
            );
        }
    }

    #[test]
    fn handshake_yields_the_token() {
        match run_parse(&json(), HANDSHAKE) {
            Ok(Inbound::VerificationToken(secret)) => {
                assert_eq!(secret.expose(), TOKEN.as_bytes());
                // Never printed.
                assert_eq!(format!("{secret:?}"), "***");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run_parse(&json(), r#"{"verification_token":""}"#),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn every_fixture_names_its_event() {
        assert_eq!(FIXTURES.len(), 23);
        for (expected, body) in FIXTURES {
            match run_parse(&json(), body) {
                Ok(Inbound::Event {
                    event, normalized, ..
                }) => {
                    assert_eq!(event.name, *expected);
                    assert!(normalized.id.is_some(), "{expected}: no id");
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_event_types_are_acknowledged() {
        for ty in [
            "file_upload.completed",
            "view.created",
            "page.transcription_block.transcript_deleted",
        ] {
            let body = format!(
                r#"{{"id":"e1","type":"{ty}","entity":{{"id":"x","type":"file_upload"}}}}"#
            );
            assert!(
                matches!(run_parse(&json(), &body), Ok(Inbound::Acknowledge)),
                "{ty}"
            );
        }
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            "",
            "{",
            "[]",
            r#"{"id":"e1"}"#,
            r#"{"type":5}"#,
            // A known type without its entity.
            r#"{"id":"e1","type":"page.created"}"#,
        ] {
            assert!(
                matches!(run_parse(&json(), body), Err(ParseError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn content_type_must_be_json() {
        let body = FIXTURES[0].1;
        let h = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(matches!(run_parse(&h, body), Ok(Inbound::Event { .. })));
        let h = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            run_parse(&h, body).err(),
            Some(ParseError::UnsupportedMediaType)
        );
        assert_eq!(
            run_parse(&HeaderMap::new(), HANDSHAKE).err(),
            Some(ParseError::UnsupportedMediaType)
        );
    }

    #[test]
    fn id_fallback_order() {
        let body = FIXTURES[0].1;
        let mut payload: Value = serde_json::from_str(body).expect("json");
        let id = payload.get("id").and_then(Value::as_str).map(str::to_owned);
        match run_parse(&json(), body) {
            Ok(Inbound::Event { normalized, .. }) => assert_eq!(normalized.id, id),
            other => panic!("{other:?}"),
        }
        payload.as_object_mut().expect("object").remove("id");
        let text = payload.to_string();
        match run_parse(&json(), &text) {
            Ok(Inbound::Event { normalized, .. }) => assert_eq!(
                normalized.id,
                Some(format!("sha256:{}", hex(&Sha256::digest(text.as_bytes()))))
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn verify_and_parse_never_panic() {
        let mut bodies: Vec<&str> = FIXTURES.iter().map(|f| f.1).collect();
        bodies.push(HANDSHAKE);
        crate::platforms::testkit::assert_inbound_never_panics(
            crate::platforms::PlatformKind::Notion,
            &[SIGNATURE_HEADER],
            &bodies,
        );
    }
}
