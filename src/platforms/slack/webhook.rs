//! Slack Events API deliveries: proving them genuine and turning them into events.
//!
//! Guarantees:
//!
//! - [`verify`] accepts a delivery only when `x-slack-signature` is `v0=` + lower-case hex
//!   `HMAC-SHA256(signing secret, "v0:" + x-slack-request-timestamp + ":" + raw body)` and the
//!   timestamp (Unix seconds) is no more than [`MAX_CLOCK_SKEW_SECS`] (Slack's five minutes)
//!   away from the injected clock. The signature is compared in constant time
//!   (`Mac::verify_slice`). Pure, and never panics. The `url_verification` handshake is signed
//!   too and is verified like any delivery.
//! - [`parse`] requires `application/json`. A `url_verification` body becomes a
//!   [`Inbound::Challenge`] answering `{"challenge": …}` as JSON (one of the three forms Slack
//!   accepts); an `event_callback` becomes the catalogue event named by `event.type` (every
//!   message subtype is the `message` event, as [`super::events`] defines); any other envelope
//!   (`app_rate_limited`…) or event type no rule can use is acknowledged.
//! - A parsed event always has an id: `event_id`, else `sha256:` + hex SHA-256 of the raw body.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::DESCRIPTOR;
use crate::platforms::inbound::{check_window, ensure_id, is_json, required_header, unhex};
use crate::platforms::{Inbound, InboundRequest, ParseError, VerifyError, VerifyKeys};

/// The header carrying `v0=<hex signature>`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";

/// The header carrying the signed Unix timestamp.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";

/// The content type of a challenge answer.
const CHALLENGE_CONTENT_TYPE: &str = "application/json";

/// Proves a delivery comes from the Slack app whose signing secret is `keys.secret`.
pub fn verify(req: &InboundRequest<'_>, keys: &VerifyKeys) -> Result<(), VerifyError> {
    let secret = keys.required_secret()?;
    let signature = required_header(req.headers, SIGNATURE_HEADER)?;
    let timestamp = required_header(req.headers, TIMESTAMP_HEADER)?;
    let signed_at = parse_unix(timestamp).ok_or(VerifyError::Mismatch)?;
    check_window(signed_at, req.now_unix)?;
    if signature_matches(secret.expose(), timestamp, req.body, signature) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Turns a verified Slack delivery into an event, a challenge answer or an acknowledgement.
pub fn parse(req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    if !is_json(req.headers) {
        return Err(ParseError::UnsupportedMediaType);
    }
    let payload: Value = serde_json::from_slice(req.body)
        .map_err(|e| ParseError::Malformed(format!("invalid JSON: {e}")))?;
    let root = payload
        .as_object()
        .ok_or_else(|| ParseError::Malformed("expected a JSON object".into()))?;
    match root.get("type").and_then(Value::as_str) {
        Some("url_verification") => return challenge(root),
        Some("event_callback") => {}
        Some(_) => return Ok(Inbound::Acknowledge),
        None => return Err(ParseError::Malformed("expected a string at `type`".into())),
    }
    let name = root
        .get("event")
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::Malformed("expected a string at `event.type`".into()))?;
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

/// The answer to a `url_verification` handshake: `{"challenge": …}` as JSON.
fn challenge(root: &Map<String, Value>) -> Result<Inbound, ParseError> {
    let challenge = root
        .get("challenge")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::Malformed("expected a string at `challenge`".into()))?;
    let body = serde_json::to_vec(&json!({ "challenge": challenge }))
        .map_err(|e| ParseError::Malformed(e.to_string()))?;
    Ok(Inbound::Challenge {
        content_type: CHALLENGE_CONTENT_TYPE,
        body,
    })
}

/// Whether `signature` is `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` under `secret`
/// (constant-time comparison).
fn signature_matches(secret: &[u8], timestamp: &[u8], body: &[u8], signature: &[u8]) -> bool {
    let Some(tag) = signature.strip_prefix(b"v0=").and_then(unhex) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(timestamp);
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// A timestamp header: ASCII digits only, as Slack sends it.
fn parse_unix(value: &[u8]) -> Option<i64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use crate::platforms::inbound::hex;
    use crate::platforms::testkit::{headers, keys};
    use http::HeaderMap;
    use http::{HeaderValue, Method};

    use sha2::Digest;

    use super::*;

    /// Slack's documented example (verifying-requests-from-slack).
    const OFFICIAL_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const OFFICIAL_TIMESTAMP: &str = "1531420618";
    const OFFICIAL_UNIX: i64 = 1_531_420_618;
    const OFFICIAL_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const OFFICIAL_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    /// Slack's documented `url_verification` body.
    const URL_VERIFICATION: &str = r#"{"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}"#;

    /// `(expected event, fixture file, body)`.
    const FIXTURES: &[(&str, &str, &str)] = &[
        (
            "app_mention",
            "app_mention.json",
            include_str!("fixtures/app_mention.json"),
        ),
        (
            "channel_created",
            "channel_created.json",
            include_str!("fixtures/channel_created.json"),
        ),
        (
            "member_joined_channel",
            "member_joined_channel.json",
            include_str!("fixtures/member_joined_channel.json"),
        ),
        (
            "message",
            "message.json",
            include_str!("fixtures/message.json"),
        ),
        (
            "message",
            "message_bot.json",
            include_str!("fixtures/message_bot.json"),
        ),
        (
            "message",
            "message_changed.json",
            include_str!("fixtures/message_changed.json"),
        ),
        (
            "reaction_added",
            "reaction_added.json",
            include_str!("fixtures/reaction_added.json"),
        ),
        (
            "team_join",
            "team_join.json",
            include_str!("fixtures/team_join.json"),
        ),
    ];

    fn signed(timestamp: &str, signature: &str) -> HeaderMap {
        headers(&[(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)])
    }

    fn sign(secret: &str, timestamp: &str, body: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("v0:{timestamp}:{body}").as_bytes());
        format!("v0={}", hex(&mac.finalize().into_bytes()))
    }

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
            now_unix: OFFICIAL_UNIX,
        };
        parse(&req)
    }

    fn json() -> HeaderMap {
        headers(&[("content-type", "application/json")])
    }

    #[test]
    fn official_vector_verifies() {
        let h = signed(OFFICIAL_TIMESTAMP, OFFICIAL_SIGNATURE);
        let k = keys(Some(OFFICIAL_SECRET));
        assert_eq!(run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k), Ok(()));
        assert_eq!(
            run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX + 42, &k),
            Ok(())
        );
        // The signature is compared as bytes, whatever the case of its hex digits.
        let upper = format!("v0={}", OFFICIAL_SIGNATURE[3..].to_uppercase());
        let h = signed(OFFICIAL_TIMESTAMP, &upper);
        assert_eq!(run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k), Ok(()));
    }

    #[test]
    fn forged_signatures_are_refused() {
        let k = keys(Some(OFFICIAL_SECRET));
        // Tampered body.
        let h = signed(OFFICIAL_TIMESTAMP, OFFICIAL_SIGNATURE);
        let tampered = OFFICIAL_BODY.replace("roadrunner", "coyote");
        assert_eq!(
            run_verify(&h, &tampered, OFFICIAL_UNIX, &k),
            Err(VerifyError::Mismatch)
        );
        // Timestamp moved (still inside the window): the signature covers it.
        let h = signed("1531420619", OFFICIAL_SIGNATURE);
        assert_eq!(
            run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k),
            Err(VerifyError::Mismatch)
        );
        for garbage in [
            "",
            "v0=",
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b50",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b5",
            "v0=zz114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503a2",
        ] {
            let h = signed(OFFICIAL_TIMESTAMP, garbage);
            assert_eq!(
                run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k),
                Err(VerifyError::Mismatch),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn wrong_secret_and_no_secret() {
        let h = signed(OFFICIAL_TIMESTAMP, OFFICIAL_SIGNATURE);
        assert_eq!(
            run_verify(
                &h,
                OFFICIAL_BODY,
                OFFICIAL_UNIX,
                &keys(Some("8f742231b10e8888abcd99yyyzzz85a6"))
            ),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &keys(None)),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn missing_or_malformed_headers() {
        let k = keys(Some(OFFICIAL_SECRET));
        let h = headers(&[(TIMESTAMP_HEADER, OFFICIAL_TIMESTAMP)]);
        assert_eq!(
            run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        let h = headers(&[(SIGNATURE_HEADER, OFFICIAL_SIGNATURE)]);
        assert_eq!(
            run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k),
            Err(VerifyError::MissingHeader(TIMESTAMP_HEADER))
        );
        // Header names are case-insensitive (HeaderMap lower-cases them).
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(b"X-Slack-Request-Timestamp").expect("name"),
            HeaderValue::from_static(OFFICIAL_TIMESTAMP),
        );
        h.insert(
            http::HeaderName::from_bytes(b"X-Slack-Signature").expect("name"),
            HeaderValue::from_static(OFFICIAL_SIGNATURE),
        );
        assert_eq!(run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k), Ok(()));
        for ts in [
            "",
            "-1531420618",
            "+1531420618",
            "1531420618.5",
            "99999999999999999999",
            "abc",
        ] {
            let h = signed(ts, OFFICIAL_SIGNATURE);
            assert_eq!(
                run_verify(&h, OFFICIAL_BODY, OFFICIAL_UNIX, &k),
                Err(VerifyError::Mismatch),
                "{ts:?}"
            );
        }
    }

    #[test]
    fn replay_window_boundaries() {
        let k = keys(Some(OFFICIAL_SECRET));
        let h = signed(OFFICIAL_TIMESTAMP, OFFICIAL_SIGNATURE);
        let at = |now| run_verify(&h, OFFICIAL_BODY, now, &k);
        assert_eq!(at(OFFICIAL_UNIX + 300), Ok(()));
        assert_eq!(at(OFFICIAL_UNIX - 300), Ok(()));
        assert_eq!(
            at(OFFICIAL_UNIX + 301),
            Err(VerifyError::Stale { skew_secs: 301 })
        );
        assert_eq!(
            at(OFFICIAL_UNIX - 301),
            Err(VerifyError::Stale { skew_secs: -301 })
        );
        assert!(matches!(at(i64::MIN), Err(VerifyError::Stale { .. })));
        assert!(matches!(at(i64::MAX), Err(VerifyError::Stale { .. })));
        assert_eq!(VerifyError::Stale { skew_secs: 301 }.reason(), "stale");
    }

    #[test]
    fn url_verification_is_answered_with_the_challenge() {
        let h = json();
        let k = keys(Some(OFFICIAL_SECRET));
        let h_signed = {
            let mut h = h.clone();
            let sig = sign(OFFICIAL_SECRET, OFFICIAL_TIMESTAMP, URL_VERIFICATION);
            h.insert(
                TIMESTAMP_HEADER,
                HeaderValue::from_static(OFFICIAL_TIMESTAMP),
            );
            h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&sig).expect("sig"));
            h
        };
        // The handshake is signed and verified like any delivery.
        assert_eq!(
            run_verify(&h_signed, URL_VERIFICATION, OFFICIAL_UNIX, &k),
            Ok(())
        );
        assert_eq!(
            run_verify(&h, URL_VERIFICATION, OFFICIAL_UNIX, &k),
            Err(VerifyError::MissingHeader(SIGNATURE_HEADER))
        );
        match run_parse(&h_signed, URL_VERIFICATION) {
            Ok(Inbound::Challenge { content_type, body }) => {
                assert_eq!(content_type, "application/json");
                let answer: Value = serde_json::from_slice(&body).expect("json");
                assert_eq!(
                    answer,
                    json!({ "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" })
                );
            }
            other => panic!("{other:?}"),
        }
        // A challenge that needs escaping stays valid JSON.
        let body = r#"{"type":"url_verification","challenge":"a\"b\\c"}"#;
        match run_parse(&h, body) {
            Ok(Inbound::Challenge { body, .. }) => {
                let answer: Value = serde_json::from_slice(&body).expect("json");
                assert_eq!(answer, json!({ "challenge": "a\"b\\c" }));
            }
            other => panic!("{other:?}"),
        }
        let body = r#"{"type":"url_verification"}"#;
        assert!(matches!(run_parse(&h, body), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn every_fixture_names_its_event() {
        for (expected, file, body) in FIXTURES {
            match run_parse(&json(), body) {
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
    fn other_envelopes_and_event_types_are_acknowledged() {
        for body in [
            r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","type":"app_rate_limited","team_id":"T123456","minute_rate_limited":1518467820,"api_app_id":"A123456"}"#,
            r#"{"type":"event_callback","event":{"type":"app_home_opened","user":"U1"},"event_id":"Ev1"}"#,
            r#"{"type":"event_callback","event":{"type":"pin_added"},"event_id":"Ev2"}"#,
        ] {
            assert!(
                matches!(run_parse(&json(), body), Ok(Inbound::Acknowledge)),
                "{body}"
            );
        }
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            "",
            "{",
            "[]",
            r#"{"event":{"type":"message"}}"#,
            r#"{"type":"event_callback"}"#,
            r#"{"type":"event_callback","event":{"type":7}}"#,
            // A known event whose body does not fit it.
            r#"{"type":"event_callback","event":{"type":"reaction_added","item":"x"}}"#,
        ] {
            assert!(
                matches!(run_parse(&json(), body), Err(ParseError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn content_type_must_be_json() {
        let body = include_str!("fixtures/message.json");
        let h = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(matches!(run_parse(&h, body), Ok(Inbound::Event { .. })));
        for ct in ["application/x-www-form-urlencoded", "text/plain", "json"] {
            let h = headers(&[("content-type", ct)]);
            assert_eq!(
                run_parse(&h, body).err(),
                Some(ParseError::UnsupportedMediaType)
            );
        }
        assert_eq!(
            run_parse(&HeaderMap::new(), URL_VERIFICATION).err(),
            Some(ParseError::UnsupportedMediaType)
        );
    }

    #[test]
    fn id_fallback_order() {
        let body = include_str!("fixtures/message.json");
        let envelope: Value = serde_json::from_str(body).expect("json");
        match run_parse(&json(), body) {
            Ok(Inbound::Event { normalized, .. }) => assert_eq!(
                normalized.id.as_deref(),
                envelope.get("event_id").and_then(Value::as_str)
            ),
            other => panic!("{other:?}"),
        }
        let mut stripped = envelope.clone();
        stripped.as_object_mut().expect("object").remove("event_id");
        let text = stripped.to_string();
        match run_parse(&json(), &text) {
            Ok(Inbound::Event { normalized, .. }) => {
                let expected = format!("sha256:{}", hex(&Sha256::digest(text.as_bytes())));
                assert_eq!(normalized.id, Some(expected));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(unhex(b"000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(unhex(b"abc"), None);
        assert_eq!(unhex(b"gg"), None);
        assert_eq!(unhex(b""), Some(Vec::new()));
    }

    #[test]
    fn verify_and_parse_never_panic() {
        let bodies: Vec<&str> = FIXTURES.iter().map(|f| f.2).collect();
        crate::platforms::testkit::assert_inbound_never_panics(
            crate::platforms::PlatformKind::Slack,
            &[SIGNATURE_HEADER, TIMESTAMP_HEADER],
            &bodies,
        );
    }
}
