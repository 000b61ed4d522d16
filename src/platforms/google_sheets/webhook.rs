//! Google Sheets change notifications (Drive push channels on the spreadsheet file): proving
//! them genuine and turning them into events.
//!
//! Guarantees:
//!
//! - Drive signs nothing; the channel's token is echoed back. [`verify`] accepts a notification
//!   only when `x-goog-channel-id` equals `keys.channel_id` (the live channel) and
//!   `x-goog-channel-token` equals `keys.secret` (the channel's token). Both comparisons are
//!   constant-time, do not reveal lengths (fixed-key HMAC-SHA256 tags compared with
//!   `Mac::verify_slice`), and are both always made. No timestamp, so no replay window:
//!   replays are caught by deduplicating on the event id. Pure, and never panics.
//! - [`parse`] requires the empty body Drive sends (no content type is checked, there is no
//!   content). `x-goog-resource-state: sync` (the channel's first message) is acknowledged;
//!   every other state becomes `file_changed`, normalised from the JSON shape
//!   [`super::events`] documents: `{ "received_at": <injected now, RFC 3339>, "headers": {
//!   every x-goog-* header but the channel token, lower-cased } }`. `row_added` comes from the
//!   poller, never from here.
//! - A parsed event always has an id: `<x-goog-channel-id>:<x-goog-message-number>`, else
//!   `sha256:` + hex SHA-256 of the headers object above (the raw body is always empty, so its
//!   digest would make every such notification a duplicate of the first).

use std::collections::BTreeMap;

use http::HeaderMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::DESCRIPTOR;
use crate::platforms::inbound::hex;
use crate::platforms::slack::events::rfc3339_from_unix;
use crate::platforms::{Inbound, InboundRequest, ParseError, VerifyError, VerifyKeys};

/// The header naming the channel.
pub const CHANNEL_ID_HEADER: &str = "x-goog-channel-id";

/// The header echoing the channel's token.
pub const CHANNEL_TOKEN_HEADER: &str = "x-goog-channel-token";

/// The header saying what happened (`sync`, `update`, `trash`…).
pub const RESOURCE_STATE_HEADER: &str = "x-goog-resource-state";

/// The prefix of the headers handed to the normaliser.
const GOOG_PREFIX: &str = "x-goog-";

/// The event every notification but `sync` is.
const FILE_CHANGED: &str = "file_changed";

/// Proves a notification comes from the live Drive channel `keys.channel_id` whose token is
/// `keys.secret`.
pub fn verify(req: &InboundRequest<'_>, keys: &VerifyKeys) -> Result<(), VerifyError> {
    let token = keys
        .secret
        .as_ref()
        .map(|s| s.expose())
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::NotConfigured)?;
    let channel = keys
        .channel_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or(VerifyError::NotConfigured)?;
    let given_channel = req
        .headers
        .get(CHANNEL_ID_HEADER)
        .ok_or(VerifyError::MissingHeader(CHANNEL_ID_HEADER))?;
    let given_token = req
        .headers
        .get(CHANNEL_TOKEN_HEADER)
        .ok_or(VerifyError::MissingHeader(CHANNEL_TOKEN_HEADER))?;
    // `&`, not `&&`: both comparisons always run.
    let channel_ok = same(given_channel.as_bytes(), channel.as_bytes());
    let token_ok = same(given_token.as_bytes(), token);
    if channel_ok & token_ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Turns a verified Drive notification into `file_changed` (or an acknowledgement).
pub fn parse(req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    if !req.body.is_empty() {
        return Err(ParseError::Malformed(
            "Drive notifications have an empty body".into(),
        ));
    }
    let state = req
        .headers
        .get(RESOURCE_STATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ParseError::Malformed(format!("expected a text header `{RESOURCE_STATE_HEADER}`"))
        })?;
    if state.trim().eq_ignore_ascii_case("sync") {
        return Ok(Inbound::Acknowledge);
    }
    let Some(event) = DESCRIPTOR.event(FILE_CHANGED).filter(|e| e.deliverable) else {
        return Ok(Inbound::Acknowledge);
    };
    let headers = goog_headers(req.headers);
    let mut payload = Map::new();
    if let Some(now) = rfc3339_from_unix(req.now_unix) {
        payload.insert("received_at".into(), Value::String(now));
    }
    payload.insert("headers".into(), Value::Object(headers));
    let payload = Value::Object(payload);
    let mut normalized =
        (DESCRIPTOR.normalize)(event, &payload).map_err(|e| ParseError::Malformed(e.0))?;
    if normalized.id.as_deref().is_none_or(str::is_empty) {
        let digest_input = payload
            .get("headers")
            .map(Value::to_string)
            .unwrap_or_default();
        normalized.id = Some(format!(
            "sha256:{}",
            hex(&Sha256::digest(digest_input.as_bytes()))
        ));
    }
    Ok(Inbound::Event {
        event,
        normalized,
        payload,
    })
}

/// Every `x-goog-*` header with a text value except the channel token, sorted by name (so the
/// object, and its digest, do not depend on the order headers arrived in). A repeated header
/// keeps its first value.
fn goog_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut sorted = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with(GOOG_PREFIX) || name == CHANNEL_TOKEN_HEADER {
            continue;
        }
        if let Ok(text) = value.to_str() {
            sorted.entry(name).or_insert(text);
        }
    }
    sorted
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect()
}

/// Constant-time equality that does not leak lengths ([`crate::secrets::constant_time_eq`]).
fn same(given: &[u8], expected: &[u8]) -> bool {
    crate::secrets::constant_time_eq(given, expected)
}

#[cfg(test)]
mod tests {
    use crate::platforms::inbound::hex;
    use crate::platforms::testkit::headers;
    use http::HeaderMap;
    use http::{HeaderName, HeaderValue, Method};

    use sha2::Digest;

    use super::*;
    use crate::secrets::Secret;

    const CHANNEL: &str = "sos-gs-3f2a9c1e-7b4d-4e8a-9f10-2c6d8e0a1b3c";
    const TOKEN: &str = "q9V2mX7rT4kL1pZ8sB3nW6yE0cH5jF2aD7gU4iO1";
    /// 2026-05-04T09:12:03Z.
    const NOW: i64 = 1_777_885_923;

    const FILE_CHANGED_FIXTURE: &str = include_str!("fixtures/file_changed.json");
    const SYNC_FIXTURE: &str = include_str!("fixtures/file_changed_sync.json");
    const ROW_ADDED_FIXTURE: &str = include_str!("fixtures/row_added.json");

    /// The request headers a fixture's `headers` object stands for, plus the channel token.
    fn fixture_headers(fixture: &str) -> HeaderMap {
        let value: Value = serde_json::from_str(fixture).expect("json");
        let mut map = HeaderMap::new();
        for (name, v) in value["headers"].as_object().expect("headers") {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(v.as_str().expect("string")).expect("value"),
            );
        }
        map.insert(CHANNEL_TOKEN_HEADER, HeaderValue::from_static(TOKEN));
        map
    }

    fn keys(token: Option<&str>, channel: Option<&str>) -> VerifyKeys {
        VerifyKeys {
            secret: token.map(|s| Secret::from(s.to_owned())),
            callback_url: None,
            channel_id: channel.map(str::to_owned),
        }
    }

    fn run_verify(h: &HeaderMap, k: &VerifyKeys) -> Result<(), VerifyError> {
        let req = InboundRequest {
            method: &Method::POST,
            headers: h,
            body: b"",
            now_unix: NOW,
        };
        verify(&req, k)
    }

    fn run_parse(h: &HeaderMap, body: &[u8]) -> Result<Inbound, ParseError> {
        let req = InboundRequest {
            method: &Method::POST,
            headers: h,
            body,
            now_unix: NOW,
        };
        parse(&req)
    }

    #[test]
    fn channel_and_token_must_match() {
        let k = keys(Some(TOKEN), Some(CHANNEL));
        assert_eq!(
            run_verify(&fixture_headers(FILE_CHANGED_FIXTURE), &k),
            Ok(())
        );
        let ok = [(CHANNEL_ID_HEADER, CHANNEL), (CHANNEL_TOKEN_HEADER, TOKEN)];
        assert_eq!(run_verify(&headers(&ok), &k), Ok(()));
        for (channel, token) in [
            ("sos-gs-other", TOKEN),
            (CHANNEL, "q9V2mX7rT4kL1pZ8sB3nW6yE0cH5jF2aD7gU4iO"),
            (CHANNEL, ""),
            ("", TOKEN),
            ("sos-gs-other", "wrong"),
        ] {
            let h = headers(&[(CHANNEL_ID_HEADER, channel), (CHANNEL_TOKEN_HEADER, token)]);
            assert_eq!(
                run_verify(&h, &k),
                Err(VerifyError::Mismatch),
                "{channel} {token}"
            );
        }
    }

    #[test]
    fn missing_headers_and_keys() {
        let k = keys(Some(TOKEN), Some(CHANNEL));
        assert_eq!(
            run_verify(&headers(&[(CHANNEL_TOKEN_HEADER, TOKEN)]), &k),
            Err(VerifyError::MissingHeader(CHANNEL_ID_HEADER))
        );
        assert_eq!(
            run_verify(&headers(&[(CHANNEL_ID_HEADER, CHANNEL)]), &k),
            Err(VerifyError::MissingHeader(CHANNEL_TOKEN_HEADER))
        );
        let h = headers(&[(CHANNEL_ID_HEADER, CHANNEL), (CHANNEL_TOKEN_HEADER, TOKEN)]);
        for k in [
            keys(None, Some(CHANNEL)),
            keys(Some(TOKEN), None),
            keys(Some(""), Some(CHANNEL)),
            keys(Some(TOKEN), Some("")),
        ] {
            assert_eq!(run_verify(&h, &k), Err(VerifyError::NotConfigured));
        }
    }

    #[test]
    fn file_changed_fixture() {
        match run_parse(&fixture_headers(FILE_CHANGED_FIXTURE), b"") {
            Ok(Inbound::Event {
                event,
                normalized,
                payload,
            }) => {
                assert_eq!(event.name, "file_changed");
                assert_eq!(
                    normalized.id.as_deref(),
                    Some(&*format!("{CHANNEL}:118433"))
                );
                assert_eq!(normalized.time.as_deref(), Some("2026-05-04T09:12:03Z"));
                let file = &normalized.objects["file"];
                assert_eq!(file["id"], "1qZx8vB3nK0pL7mR2sT5uW9yA4cD6eF8gH0jK2lM4nOp");
                assert_eq!(file["resource_state"], "update");
                assert_eq!(
                    file["changed"],
                    serde_json::json!(["content", "properties"])
                );
                // The fixture's shape, less `spreadsheet_id` (the ingress does not know it;
                // the normaliser reads it from the resource URI), and never the token.
                let fixture: Value = serde_json::from_str(FILE_CHANGED_FIXTURE).expect("json");
                assert_eq!(payload["headers"], fixture["headers"]);
                assert_eq!(payload["received_at"], fixture["received_at"]);
                assert!(!payload.to_string().contains(TOKEN));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sync_fixture_is_acknowledged() {
        assert!(matches!(
            run_parse(&fixture_headers(SYNC_FIXTURE), b""),
            Ok(Inbound::Acknowledge)
        ));
        let h = headers(&[(RESOURCE_STATE_HEADER, "SYNC")]);
        assert!(matches!(run_parse(&h, b""), Ok(Inbound::Acknowledge)));
    }

    #[test]
    fn row_added_never_arrives_as_a_notification() {
        // `row_added` is built by the poller; a body on the push endpoint is refused.
        let h = fixture_headers(FILE_CHANGED_FIXTURE);
        assert!(matches!(
            run_parse(&h, ROW_ADDED_FIXTURE.as_bytes()),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn every_other_state_is_file_changed() {
        for state in [
            "add",
            "remove",
            "update",
            "trash",
            "untrash",
            "change",
            "changed",
            "something_new",
        ] {
            let h = headers(&[
                (RESOURCE_STATE_HEADER, state),
                (CHANNEL_ID_HEADER, CHANNEL),
                ("x-goog-message-number", "7"),
            ]);
            match run_parse(&h, b"") {
                Ok(Inbound::Event {
                    event, normalized, ..
                }) => {
                    assert_eq!(event.name, "file_changed", "{state}");
                    assert_eq!(normalized.objects["file"]["resource_state"], state);
                }
                other => panic!("{state}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_state_is_malformed() {
        assert!(matches!(
            run_parse(&headers(&[(CHANNEL_ID_HEADER, CHANNEL)]), b""),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn id_fallback_order() {
        // 1. channel id : message number.
        let h = headers(&[
            (RESOURCE_STATE_HEADER, "update"),
            (CHANNEL_ID_HEADER, CHANNEL),
            ("x-goog-message-number", "42"),
        ]);
        let id_of = |h: &HeaderMap| match run_parse(h, b"") {
            Ok(Inbound::Event { normalized, .. }) => normalized.id.unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        assert_eq!(id_of(&h), format!("{CHANNEL}:42"));
        // 2. No message number: a digest of the headers, which differs per notification…
        let a = headers(&[
            (RESOURCE_STATE_HEADER, "update"),
            (CHANNEL_ID_HEADER, CHANNEL),
            ("x-goog-resource-id", "r1"),
        ]);
        let b = headers(&[
            (RESOURCE_STATE_HEADER, "trash"),
            (CHANNEL_ID_HEADER, CHANNEL),
            ("x-goog-resource-id", "r1"),
        ]);
        let id_a = id_of(&a);
        assert!(id_a.starts_with("sha256:") && id_a.len() == 71, "{id_a}");
        assert_ne!(id_a, id_of(&b));
        // …is the same for the same headers in another order, and ignores the token.
        let mut reordered = headers(&[
            ("x-goog-resource-id", "r1"),
            (CHANNEL_TOKEN_HEADER, TOKEN),
            (CHANNEL_ID_HEADER, CHANNEL),
        ]);
        reordered.insert(RESOURCE_STATE_HEADER, HeaderValue::from_static("update"));
        assert_eq!(id_a, id_of(&reordered));
        let expected = {
            let mut m = Map::new();
            for (k, v) in [
                (CHANNEL_ID_HEADER, CHANNEL),
                ("x-goog-resource-id", "r1"),
                (RESOURCE_STATE_HEADER, "update"),
            ] {
                m.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            format!(
                "sha256:{}",
                hex(&Sha256::digest(Value::Object(m).to_string().as_bytes()))
            )
        };
        assert_eq!(id_a, expected);
    }

    #[test]
    fn verify_and_parse_never_panic() {
        let bodies: Vec<&str> = Vec::new();
        crate::platforms::testkit::assert_inbound_never_panics(
            crate::platforms::PlatformKind::GoogleSheets,
            &[
                CHANNEL_ID_HEADER,
                CHANNEL_TOKEN_HEADER,
                RESOURCE_STATE_HEADER,
                "x-goog-message-number",
                "x-goog-resource-uri",
                "x-goog-changed",
            ],
            &bodies,
        );
    }
}
