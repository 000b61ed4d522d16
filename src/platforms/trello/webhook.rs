//! Trello webhook deliveries: proving them genuine and turning them into events.
//!
//! Guarantees:
//!
//! - [`verify`] accepts a `POST` only when `x-trello-webhook` is
//!   `base64(HMAC-SHA1(app secret, raw body + callback URL))`, the callback URL being
//!   `keys.callback_url` byte for byte as registered (never rebuilt from the request). The
//!   signature is compared in constant time (`Mac::verify_slice`). Trello signs no timestamp,
//!   so there is no replay window: replays are caught by deduplicating on the event id.
//!   `HEAD` and `GET` (Trello's check that the callback URL answers 200, made before the
//!   webhook exists) need no signature. Pure, and never panics.
//! - [`parse`] acknowledges `HEAD`/`GET`, requires `application/json` otherwise, and names the
//!   event by `action.type`; action types no rule can use are acknowledged.
//! - A parsed event always has an id: `action.id`, else `sha256:` + hex SHA-256 of the raw body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http::Method;
use serde_json::Value;
use sha1::Sha1;

use super::DESCRIPTOR;
use crate::platforms::inbound::{ensure_id, is_json, required_header};
use crate::platforms::{Inbound, InboundRequest, ParseError, VerifyError, VerifyKeys};

/// The header carrying the base64 HMAC-SHA1 signature.
pub const SIGNATURE_HEADER: &str = "x-trello-webhook";

/// Proves a delivery comes from Trello for the app whose secret is `keys.secret` and the
/// webhook registered with `keys.callback_url`.
pub fn verify(req: &InboundRequest<'_>, keys: &VerifyKeys) -> Result<(), VerifyError> {
    if is_probe(req.method) {
        return Ok(());
    }
    let secret = keys.required_secret()?;
    let callback_url = keys
        .callback_url
        .as_deref()
        .ok_or(VerifyError::NotConfigured)?;
    let signature = required_header(req.headers, SIGNATURE_HEADER)?;
    if signature_matches(secret.expose(), req.body, callback_url, signature) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Turns a verified Trello delivery into an event (or an acknowledgement).
pub fn parse(req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    if is_probe(req.method) {
        return Ok(Inbound::Acknowledge);
    }
    if !is_json(req.headers) {
        return Err(ParseError::UnsupportedMediaType);
    }
    let payload: Value = serde_json::from_slice(req.body)
        .map_err(|e| ParseError::Malformed(format!("invalid JSON: {e}")))?;
    let name = payload
        .get("action")
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::Malformed("expected a string at `action.type`".into()))?;
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

/// Trello's callback-URL check (`HEAD`), and a `GET` from someone opening the URL.
fn is_probe(method: &Method) -> bool {
    *method == Method::HEAD || *method == Method::GET
}

/// Whether `signature_b64` is the base64 HMAC-SHA1 of `body + callback_url` under `secret`
/// (constant-time comparison).
fn signature_matches(secret: &[u8], body: &[u8], callback_url: &str, signature_b64: &[u8]) -> bool {
    let Ok(tag) = STANDARD.decode(signature_b64) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.update(callback_url.as_bytes());
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use crate::platforms::inbound::hex;
    use crate::platforms::testkit::headers;
    use http::HeaderMap;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::secrets::Secret;

    /// `(secret, body, callback URL, signature)`: computed vectors (Trello publishes none).
    const VECTORS: &[(&str, &str, &str, &str)] = &[
        (
            "secret",
            r#"{"hello":"world"}"#,
            "https://example.com/webhooks",
            "FwPAcuGe9EP/+SbXFWjnEVTa0zw=",
        ),
        (
            "test-secret",
            r#"{"test":"data"}"#,
            "https://test.webhook.url/webhook",
            "dWoWkWAw2h94SLoIyZj7jPkDJRw=",
        ),
        (
            "secret",
            r#"{"action":{"type":"commentCard","data":{"text":"café – ok"}},"model":{"id":"4d5ea62fd76aa1136000000c"}}"#,
            "https://example.com/trello?x=1",
            "b8wpHUQUdb7Z1yL3t2wjmMD66ew=",
        ),
    ];

    /// The third vector signed the pre-2016 way (each character truncated to 8 bits).
    const LEGACY_LOW_8_BIT_SIGNATURE: &str = "VtpnPQalE8F3h575h3DQnN9gG2c=";

    /// `(expected event, fixture file, body)`.
    const FIXTURES: &[(&str, &str, &str)] = &[
        (
            "addChecklistToCard",
            "addChecklistToCard.json",
            include_str!("fixtures/addChecklistToCard.json"),
        ),
        (
            "addLabelToCard",
            "addLabelToCard.json",
            include_str!("fixtures/addLabelToCard.json"),
        ),
        (
            "addMemberToCard",
            "addMemberToCard.json",
            include_str!("fixtures/addMemberToCard.json"),
        ),
        (
            "commentCard",
            "commentCard.json",
            include_str!("fixtures/commentCard.json"),
        ),
        (
            "createCard",
            "createCard.json",
            include_str!("fixtures/createCard.json"),
        ),
        (
            "createList",
            "createList.json",
            include_str!("fixtures/createList.json"),
        ),
        (
            "deleteCard",
            "deleteCard.json",
            include_str!("fixtures/deleteCard.json"),
        ),
        (
            "moveCardToBoard",
            "moveCardToBoard.json",
            include_str!("fixtures/moveCardToBoard.json"),
        ),
        (
            "removeLabelFromCard",
            "removeLabelFromCard.json",
            include_str!("fixtures/removeLabelFromCard.json"),
        ),
        (
            "updateCard",
            "updateCard_fields.json",
            include_str!("fixtures/updateCard_fields.json"),
        ),
        (
            "updateCard",
            "updateCard_move.json",
            include_str!("fixtures/updateCard_move.json"),
        ),
        (
            "updateCheckItemStateOnCard",
            "updateCheckItemStateOnCard.json",
            include_str!("fixtures/updateCheckItemStateOnCard.json"),
        ),
    ];

    fn keys(secret: Option<&str>, callback_url: Option<&str>) -> VerifyKeys {
        VerifyKeys {
            secret: secret.map(|s| Secret::from(s.to_owned())),
            callback_url: callback_url.map(str::to_owned),
            channel_id: None,
        }
    }

    fn run_verify(
        method: &Method,
        h: &HeaderMap,
        body: &str,
        k: &VerifyKeys,
    ) -> Result<(), VerifyError> {
        let req = InboundRequest {
            method,
            headers: h,
            body: body.as_bytes(),
            now_unix: 0,
        };
        verify(&req, k)
    }

    fn run_parse(method: &Method, h: &HeaderMap, body: &str) -> Result<Inbound, ParseError> {
        let req = InboundRequest {
            method,
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
    fn computed_vectors_verify() {
        for (secret, body, url, signature) in VECTORS {
            let h = headers(&[(SIGNATURE_HEADER, signature)]);
            let k = keys(Some(secret), Some(url));
            assert_eq!(run_verify(&Method::POST, &h, body, &k), Ok(()), "{body}");
        }
    }

    #[test]
    fn utf8_vector_is_hashed_as_utf8_not_legacy_bytes() {
        let (secret, body, url, _) = VECTORS[2];
        assert!(!body.is_ascii());
        let h = headers(&[(SIGNATURE_HEADER, LEGACY_LOW_8_BIT_SIGNATURE)]);
        assert_eq!(
            run_verify(&Method::POST, &h, body, &keys(Some(secret), Some(url))),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn forged_and_mismatched_inputs_are_refused() {
        let (secret, body, url, signature) = VECTORS[0];
        let h = headers(&[(SIGNATURE_HEADER, signature)]);
        // Tampered body.
        assert_eq!(
            run_verify(
                &Method::POST,
                &h,
                r#"{"hello":"World"}"#,
                &keys(Some(secret), Some(url))
            ),
            Err(VerifyError::Mismatch)
        );
        // Wrong secret (e.g. the API key instead of the app secret).
        assert_eq!(
            run_verify(&Method::POST, &h, body, &keys(Some("api-key"), Some(url))),
            Err(VerifyError::Mismatch)
        );
        // The callback URL must be the registered string exactly.
        for other in [
            "https://example.com/webhooks/",
            "http://example.com/webhooks",
            "https://example.com:443/webhooks",
            "https://EXAMPLE.com/webhooks",
        ] {
            assert_eq!(
                run_verify(&Method::POST, &h, body, &keys(Some(secret), Some(other))),
                Err(VerifyError::Mismatch),
                "{other}"
            );
        }
        for garbage in ["", "not base64!", "FwPAcuGe9EP/+SbXFWjnEVTa0zw", "AAAA"] {
            let h = headers(&[(SIGNATURE_HEADER, garbage)]);
            assert_eq!(
                run_verify(&Method::POST, &h, body, &keys(Some(secret), Some(url))),
                Err(VerifyError::Mismatch),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn missing_header_and_keys() {
        let (secret, body, url, signature) = VECTORS[0];
        assert_eq!(
            run_verify(
                &Method::POST,
                &HeaderMap::new(),
                body,
                &keys(Some(secret), Some(url))
            ),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let h = headers(&[(SIGNATURE_HEADER, signature)]);
        assert_eq!(
            run_verify(&Method::POST, &h, body, &keys(None, Some(url))),
            Err(VerifyError::NotConfigured)
        );
        assert_eq!(
            run_verify(&Method::POST, &h, body, &keys(Some(secret), None)),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn head_and_get_need_no_signature() {
        for method in [Method::HEAD, Method::GET] {
            assert_eq!(
                run_verify(&method, &HeaderMap::new(), "", &keys(None, None)),
                Ok(())
            );
            assert!(matches!(
                run_parse(&method, &HeaderMap::new(), ""),
                Ok(Inbound::Acknowledge)
            ));
        }
        // Other methods do.
        for method in [Method::PUT, Method::DELETE] {
            assert_eq!(
                run_verify(&method, &HeaderMap::new(), "", &keys(Some("s"), Some("u"))),
                Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
            );
        }
    }

    #[test]
    fn every_fixture_names_its_event() {
        for (expected, file, body) in FIXTURES {
            match run_parse(&Method::POST, &json(), body) {
                Ok(Inbound::Event {
                    event, normalized, ..
                }) => {
                    assert_eq!(event.name, *expected, "{file}");
                    assert!(normalized.id.is_some(), "{file}: no id");
                }
                other => panic!("{file}: {other:?}"),
            }
        }
    }

    #[test]
    fn uncatalogued_action_types_are_acknowledged() {
        let body = r#"{"action":{"id":"a1","type":"voteOnCard","data":{}},"model":{"id":"m"}}"#;
        assert!(matches!(
            run_parse(&Method::POST, &json(), body),
            Ok(Inbound::Acknowledge)
        ));
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            "",
            "{",
            "[]",
            r#"{"model":{}}"#,
            r#"{"action":{"type":3}}"#,
            // A catalogued action without its data.
            r#"{"action":{"id":"a1","type":"createCard"}}"#,
        ] {
            assert!(
                matches!(
                    run_parse(&Method::POST, &json(), body),
                    Err(ParseError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn content_type_must_be_json() {
        let body = include_str!("fixtures/createCard.json");
        let h = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(matches!(
            run_parse(&Method::POST, &h, body),
            Ok(Inbound::Event { .. })
        ));
        let h = headers(&[("content-type", "text/plain")]);
        assert_eq!(
            run_parse(&Method::POST, &h, body).err(),
            Some(ParseError::UnsupportedMediaType)
        );
        assert_eq!(
            run_parse(&Method::POST, &HeaderMap::new(), body).err(),
            Some(ParseError::UnsupportedMediaType)
        );
    }

    #[test]
    fn id_fallback_order() {
        let body = include_str!("fixtures/createCard.json");
        let mut payload: Value = serde_json::from_str(body).expect("json");
        let action_id = payload["action"]["id"].as_str().map(str::to_owned);
        match run_parse(&Method::POST, &json(), body) {
            Ok(Inbound::Event { normalized, .. }) => assert_eq!(normalized.id, action_id),
            other => panic!("{other:?}"),
        }
        payload["action"]
            .as_object_mut()
            .expect("action")
            .remove("id");
        let text = payload.to_string();
        match run_parse(&Method::POST, &json(), &text) {
            Ok(Inbound::Event { normalized, .. }) => assert_eq!(
                normalized.id,
                Some(format!("sha256:{}", hex(&Sha256::digest(text.as_bytes()))))
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn verify_and_parse_never_panic() {
        let bodies: Vec<&str> = FIXTURES.iter().map(|f| f.2).collect();
        crate::platforms::testkit::assert_inbound_never_panics(
            crate::platforms::PlatformKind::Trello,
            &[SIGNATURE_HEADER],
            &bodies,
        );
    }
}
