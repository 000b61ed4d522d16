//! Freshdesk webhook deliveries: proving them genuine and turning them into events.
//!
//! Guarantees:
//!
//! - Freshdesk signs nothing. [`verify`] accepts a delivery only when the
//!   [`FRESHDESK_SECRET_HEADER`] header the automation rule sends equals the integration's shared
//!   secret. The comparison is constant-time and does not reveal the secret's length (both
//!   sides go through a fixed-key HMAC-SHA256 compared with `Mac::verify_slice`). There is no
//!   timestamp and so no replay window. Pure, and never panics.
//! - [`parse`] requires `application/json` and the `freshdesk_webhook` body that
//!   [`super::events`] documents. The event is the body's `supportopsd_event` (written into
//!   each rule supportopsd creates); a hand-made rule's body without it is named from
//!   `triggered_event` (`{ticket_action:created}` → `ticket_created`, `{note_type:…}` →
//!   `note_created`, a status change to 4 / 5 → `ticket_resolved` / `ticket_closed`, anything
//!   else `ticket_updated`). Events no rule can use (unknown names, contact events, which
//!   Freshdesk cannot deliver) are acknowledged.
//! - Freshdesk sends no event id, so a parsed event's id is `sha256:` + hex SHA-256 of the raw
//!   body. Freshdesk renders the body once and its retries resend it, so a retry shares the id;
//!   the body's `ticket_updated_at` makes the same transition at another time another id; and
//!   the ingress remembers Freshdesk ids only for [`super::DEDUPE_WINDOW`] (2 hours, covering
//!   Freshdesk's retries), so an identical body after that is a new event.

use serde_json::{Map, Value};

use super::DESCRIPTOR;
use super::events::parse_pseudo_json;
use crate::platforms::inbound::FRESHDESK_SECRET_HEADER;
use crate::platforms::inbound::{body_digest, is_json};
use crate::platforms::{Inbound, InboundRequest, ParseError, VerifyError, VerifyKeys};

/// Freshdesk's status codes for resolved and closed.
const RESOLVED: i64 = 4;
const CLOSED: i64 = 5;

/// Proves a delivery carries the integration's shared secret.
pub fn verify(req: &InboundRequest<'_>, keys: &VerifyKeys) -> Result<(), VerifyError> {
    let secret = keys
        .secret
        .as_ref()
        .map(|s| s.expose())
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::NotConfigured)?;
    let given = req
        .headers
        .get(FRESHDESK_SECRET_HEADER)
        .ok_or(VerifyError::MissingHeader(FRESHDESK_SECRET_HEADER))?;
    if same_secret(given.as_bytes(), secret) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Turns a verified Freshdesk delivery into an event (or an acknowledgement).
pub fn parse(req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    if !is_json(req.headers) {
        return Err(ParseError::UnsupportedMediaType);
    }
    let payload: Value = serde_json::from_slice(req.body)
        .map_err(|e| ParseError::Malformed(format!("invalid JSON: {e}")))?;
    let body = payload
        .get("freshdesk_webhook")
        .and_then(Value::as_object)
        .ok_or_else(|| ParseError::Malformed("expected an object at `freshdesk_webhook`".into()))?;
    let Some(event) = DESCRIPTOR
        .event(event_name(body)?)
        .filter(|e| e.deliverable)
    else {
        return Ok(Inbound::Acknowledge);
    };
    let mut normalized =
        (DESCRIPTOR.normalize)(event, &payload).map_err(|e| ParseError::Malformed(e.0))?;
    if normalized.id.as_deref().is_none_or(str::is_empty) {
        normalized.id = Some(body_digest(req.body));
    }
    Ok(Inbound::Event {
        event,
        normalized,
        payload,
    })
}

/// The event a `freshdesk_webhook` body is: `supportopsd_event`, else read from
/// `triggered_event`.
fn event_name(body: &Map<String, Value>) -> Result<&str, ParseError> {
    match body.get("supportopsd_event") {
        Some(Value::String(name)) => return Ok(name),
        Some(_) => {
            return Err(ParseError::Malformed(
                "expected a string at `freshdesk_webhook.supportopsd_event`".into(),
            ));
        }
        None => {}
    }
    let triggered = match body.get("triggered_event") {
        Some(Value::String(text)) => parse_pseudo_json(text).map_err(|e| {
            ParseError::Malformed(format!("`freshdesk_webhook.triggered_event`: {e}"))
        })?,
        _ => {
            return Err(ParseError::Malformed(
                "cannot tell the event: expected `freshdesk_webhook.supportopsd_event` or a \
                 string at `freshdesk_webhook.triggered_event`"
                    .into(),
            ));
        }
    };
    let status_to = triggered
        .get("status")
        .and_then(|s| s.get("to"))
        .and_then(Value::as_i64);
    let name = if triggered.get("ticket_action").and_then(Value::as_str) == Some("created") {
        "ticket_created"
    } else if triggered.get("note_type").is_some() {
        "note_created"
    } else if status_to == Some(RESOLVED) {
        "ticket_resolved"
    } else if status_to == Some(CLOSED) {
        "ticket_closed"
    } else {
        "ticket_updated"
    };
    Ok(name)
}

/// Constant-time equality that does not leak lengths ([`crate::secrets::constant_time_eq`]).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    crate::secrets::constant_time_eq(given, expected)
}

#[cfg(test)]
mod tests {
    use crate::platforms::testkit::{headers, keys};
    use http::{HeaderMap, HeaderValue, Method};

    use serde_json::json;

    use super::*;

    const SECRET: &str = "fd-7Qk2v9XnB4pL0sW8eR1tY6uI3oA5";

    /// `(expected event, fixture file, body)`.
    const FIXTURES: &[(&str, &str, &str)] = &[
        (
            "note_created",
            "note_created.json",
            include_str!("fixtures/note_created.json"),
        ),
        (
            "ticket_closed",
            "ticket_closed.json",
            include_str!("fixtures/ticket_closed.json"),
        ),
        (
            "ticket_created",
            "ticket_created.json",
            include_str!("fixtures/ticket_created.json"),
        ),
        (
            "ticket_created",
            "ticket_created_hand_made.json",
            include_str!("fixtures/ticket_created_hand_made.json"),
        ),
        (
            "ticket_resolved",
            "ticket_resolved.json",
            include_str!("fixtures/ticket_resolved.json"),
        ),
        (
            "ticket_updated",
            "ticket_updated_custom_status.json",
            include_str!("fixtures/ticket_updated_custom_status.json"),
        ),
        (
            "ticket_updated",
            "ticket_updated_priority.json",
            include_str!("fixtures/ticket_updated_priority.json"),
        ),
    ];

    fn run_verify(h: &HeaderMap, k: &VerifyKeys) -> Result<(), VerifyError> {
        let req = InboundRequest {
            method: &Method::POST,
            headers: h,
            body: b"{}",
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

    fn json_headers() -> HeaderMap {
        headers(&[("content-type", "application/json")])
    }

    fn event_name_of(body: &str) -> Result<Inbound, ParseError> {
        run_parse(&json_headers(), body)
    }

    #[test]
    fn the_shared_secret_is_required() {
        let h = headers(&[(FRESHDESK_SECRET_HEADER, SECRET)]);
        assert_eq!(run_verify(&h, &keys(Some(SECRET))), Ok(()));
        // Header names are case-insensitive.
        let mut upper = HeaderMap::new();
        upper.insert(
            http::HeaderName::from_bytes(b"X-Supportopsd-Token").expect("name"),
            HeaderValue::from_static(SECRET),
        );
        assert_eq!(run_verify(&upper, &keys(Some(SECRET))), Ok(()));
    }

    #[test]
    fn wrong_forged_or_missing_secret_is_refused() {
        let k = keys(Some(SECRET));
        for forged in [
            "",
            "fd-7Qk2v9XnB4pL0sW8eR1tY6uI3oA",
            "fd-7Qk2v9XnB4pL0sW8eR1tY6uI3oA55",
            "FD-7QK2V9XNB4PL0SW8ER1TY6UI3OA5",
        ] {
            let h = headers(&[(FRESHDESK_SECRET_HEADER, forged)]);
            assert_eq!(run_verify(&h, &k), Err(VerifyError::Mismatch), "{forged:?}");
        }
        // The secret in another header (e.g. Basic auth) does not count.
        let h = headers(&[("authorization", SECRET)]);
        assert_eq!(
            run_verify(&h, &k),
            Err(VerifyError::MissingHeader(FRESHDESK_SECRET_HEADER))
        );
        let h = headers(&[(FRESHDESK_SECRET_HEADER, SECRET)]);
        assert_eq!(run_verify(&h, &keys(None)), Err(VerifyError::NotConfigured));
        // An empty configured secret is no secret.
        let h = headers(&[(FRESHDESK_SECRET_HEADER, "")]);
        assert_eq!(
            run_verify(&h, &keys(Some(""))),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn same_secret_is_plain_equality() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    #[test]
    fn every_fixture_names_its_event() {
        for (expected, file, body) in FIXTURES {
            match event_name_of(body) {
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
    fn hand_made_bodies_are_named_from_triggered_event() {
        let cases = [
            ("{ticket_action:created}", "Open", "ticket_created"),
            ("{note_type:public}", "Open", "note_created"),
            ("{status:{from:3,to:4}}", "Resolved", "ticket_resolved"),
            ("{status:{from:4,to:5}}", "Closed", "ticket_closed"),
            ("{status:{from:2,to:3}}", "Pending", "ticket_updated"),
            ("{priority:{from:1,to:4}}", "Open", "ticket_updated"),
            ("{}", "Open", "ticket_updated"),
        ];
        for (triggered, status, expected) in cases {
            let body = json!({ "freshdesk_webhook": {
                "triggered_event": triggered, "ticket_id": "9", "ticket_status": status,
            }})
            .to_string();
            match event_name_of(&body) {
                Ok(Inbound::Event { event, .. }) => assert_eq!(event.name, expected, "{triggered}"),
                other => panic!("{triggered}: {other:?}"),
            }
        }
    }

    #[test]
    fn unusable_events_are_acknowledged() {
        for name in ["contact_created", "contact_updated", "ticket_exploded"] {
            let body =
                json!({ "freshdesk_webhook": { "supportopsd_event": name, "ticket_id": "1" } })
                    .to_string();
            assert!(
                matches!(event_name_of(&body), Ok(Inbound::Acknowledge)),
                "{name}"
            );
        }
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            "",
            "{",
            "[]",
            r#"{"ticket_id":"1"}"#,
            r#"{"freshdesk_webhook":"x"}"#,
            r#"{"freshdesk_webhook":{"ticket_id":"1"}}"#,
            r#"{"freshdesk_webhook":{"supportopsd_event":3,"ticket_id":"1"}}"#,
            r#"{"freshdesk_webhook":{"triggered_event":"{status","ticket_id":"1"}}"#,
            r#"{"freshdesk_webhook":{"supportopsd_event":"ticket_created"}}"#,
            r#"{"freshdesk_webhook":{"supportopsd_event":"ticket_resolved","ticket_id":"1","ticket_status":"Open"}}"#,
        ] {
            assert!(
                matches!(event_name_of(body), Err(ParseError::Malformed(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn content_type_must_be_json() {
        let body = FIXTURES[0].2;
        let h = headers(&[("content-type", "application/json; charset=UTF-8")]);
        assert!(matches!(run_parse(&h, body), Ok(Inbound::Event { .. })));
        for ct in [
            "text/html",
            "application/x-www-form-urlencoded",
            "application/xml",
        ] {
            let h = headers(&[("content-type", ct)]);
            assert_eq!(
                run_parse(&h, body).err(),
                Some(ParseError::UnsupportedMediaType)
            );
        }
        assert_eq!(
            run_parse(&HeaderMap::new(), body).err(),
            Some(ParseError::UnsupportedMediaType)
        );
    }

    #[test]
    fn id_is_the_body_digest() {
        let body = FIXTURES[2].2;
        match event_name_of(body) {
            Ok(Inbound::Event { normalized, .. }) => {
                assert_eq!(normalized.id, Some(body_digest(body.as_bytes())));
                let id = normalized.id.unwrap_or_default();
                assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            body_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn verify_and_parse_never_panic() {
        let bodies: Vec<&str> = FIXTURES.iter().map(|f| f.2).collect();
        crate::platforms::testkit::assert_inbound_never_panics(
            crate::platforms::PlatformKind::Freshdesk,
            &[FRESHDESK_SECRET_HEADER],
            &bodies,
        );
    }
}
