//! The one HTTP client setup every live connector shares, and the classification of HTTP-level
//! failures into [`PlatformError`].
//!
//! Rules every connector follows through these helpers:
//!
//! - every connector uses a [`reqwest::Client`] from [`client`]: rustls, a fixed user agent, no
//!   proxy taken from the environment, no redirects (an API that redirects is a misconfigured
//!   `base_url`, and a redirect must never carry credentials to another host). Connectors with
//!   the same timeout share one client (its TLS roots and connection pool), so that a thousand
//!   integrations do not hold a thousand copies of the root store;
//! - non-2xx answers are classified once by [`classify_status`], transport failures by
//!   [`transport_error`];
//! - no error detail ever contains a credential: request headers are never echoed, URLs are
//!   dropped from transport errors, and response bodies are cut to [`EXCERPT_CHARS`] characters
//!   by [`excerpt`].

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::connector::{ConnectError, MAX_RETRY_AFTER, PlatformError};
use crate::manifest::Integration;
use crate::manifest::model::Credential;
use crate::secrets::{ResolveContext, Secret};

/// The `User-Agent` of every request: `supportopsd/<version>`.
pub const USER_AGENT: &str = concat!("supportopsd/", env!("CARGO_PKG_VERSION"));

/// Most characters of a response body kept in an error detail.
pub const EXCERPT_CHARS: usize = 200;

/// Longest time spent establishing a connection, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One credential field's value, if the integration sets it: a secret reference is resolved
/// (a failure names the field, never the value); a plain value (the manifest loader only lets
/// those through for fields that are not secret, or a hand-built integration in tests) is used
/// as is.
pub fn credential(
    integration: &Integration,
    field: &str,
    ctx: &ResolveContext<'_>,
) -> Result<Option<Secret>, ConnectError> {
    match integration.credentials.get(field) {
        None => Ok(None),
        Some(Credential::Plain(v)) => Ok(Some(Secret::from(v.clone()))),
        Some(Credential::Secret(r)) => {
            r.resolve(&integration.id, field, ctx)
                .map(Some)
                .map_err(|source| ConnectError::Credential {
                    field: field.to_owned(),
                    source,
                })
        }
    }
}

/// [`credential`] for a field the connector cannot work without ([`ConnectError::Missing`]).
pub fn required_credential(
    integration: &Integration,
    field: &str,
    ctx: &ResolveContext<'_>,
) -> Result<Secret, ConnectError> {
    credential(integration, field, ctx)?.ok_or_else(|| ConnectError::Missing(field.to_owned()))
}

/// Sends `body` as the JSON body of `req` (`Content-Type: application/json`).
pub fn json_body(
    req: reqwest::RequestBuilder,
    body: &serde_json::Value,
) -> Result<reqwest::RequestBuilder, PlatformError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| PlatformError::Invalid(format!("cannot encode the body: {e}")))?;
    Ok(req
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes))
}

/// Appends `s` to `out` percent-encoded: ASCII letters, digits, `-._~` and the bytes of `keep`
/// stay as they are, every other byte becomes `%XX` (upper-case hex).
pub fn percent_encode_into(s: &str, keep: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.contains(&b)
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// [`percent_encode_into`] a new string.
pub fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    percent_encode_into(s, keep, &mut out);
    out
}

/// An error detail naming the call: `what: said`, or `what` alone when the platform said
/// nothing.
pub fn with_call(what: &str, said: &str) -> String {
    if said.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {said}")
    }
}

/// The HTTP client of a connector: rustls, user agent [`USER_AGENT`], `timeout` for a whole
/// request (connecting at most 10 s of it), no proxy from `HTTP(S)_PROXY` and friends, no
/// redirects followed. Built once per timeout and shared (a clone is a handle to the same
/// client): each client holds its own copy of the TLS root store, about 40 KB.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ConnectError> {
    static CLIENTS: std::sync::Mutex<Vec<(Duration, reqwest::Client)>> =
        std::sync::Mutex::new(Vec::new());
    let mut clients = CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, c)) = clients.iter().find(|(t, _)| *t == timeout) {
        return Ok(c.clone());
    }
    let c = build_client(timeout)?;
    clients.push((timeout, c.clone()));
    Ok(c)
}

fn build_client(timeout: Duration) -> Result<reqwest::Client, ConnectError> {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConnectError::Client(error_chain(&e.without_url())))
}

/// The API base URL of an integration: its `[endpoint] base_url` override, else `default`,
/// always with exactly one trailing slash so that `format!("{base}{path}")` works.
pub fn base_url(integration: &Integration, default: &str) -> String {
    let base = integration
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(default);
    format!("{}/", base.trim_end_matches('/'))
}

/// The `Retry-After` header as a delay, at most [`MAX_RETRY_AFTER`] (a larger number, even one
/// past `u64`, is read as that). Only the delay-seconds form is understood; an HTTP date (or
/// anything else) gives `None`, and callers fall back to their own backoff.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = value.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Classifies a non-2xx answer: 429 → [`PlatformError::RateLimited`], 5xx and 408 →
/// [`PlatformError::Transient`], 401/403 → [`PlatformError::Unauthorized`], 404 →
/// [`PlatformError::NotFound`], anything else → [`PlatformError::Rejected`].
///
/// `body_excerpt` is cut again to [`EXCERPT_CHARS`] characters; it must not hold a credential
/// (response bodies do not; never pass request data here).
pub fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    body_excerpt: &str,
) -> PlatformError {
    let body = excerpt(body_excerpt);
    let detail = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match status.as_u16() {
        429 => PlatformError::RateLimited { retry_after },
        408 | 500..=599 => PlatformError::Transient {
            detail,
            retry_after,
        },
        401 | 403 => PlatformError::Unauthorized { detail },
        404 => PlatformError::NotFound { detail },
        code => PlatformError::Rejected {
            status: code,
            detail: if body.is_empty() {
                status.to_string()
            } else {
                body
            },
        },
    }
}

/// Classifies a failure to get an answer at all. No connection (DNS, refused, TLS handshake, a
/// connect timeout) means the request never left: [`PlatformError::NotPerformed`]. Anything
/// after the connection was made (a timeout waiting for the answer, a connection reset, a
/// body cut short) may have reached the platform: [`PlatformError::Transient`]. A request
/// that could not even be built is [`PlatformError::Invalid`]. The URL is left out of the
/// detail.
pub fn transport_error(err: reqwest::Error) -> PlatformError {
    let err = err.without_url();
    if err.is_builder() {
        return PlatformError::Invalid(format!("cannot build the request: {}", error_chain(&err)));
    }
    if err.is_connect() {
        return PlatformError::NotPerformed {
            detail: format!("connection failed: {}", error_chain(&err)),
        };
    }
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_body() || err.is_decode() {
        "reading the response failed"
    } else if err.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    PlatformError::Transient {
        detail: format!("{what}: {}", error_chain(&err)),
        retry_after: None,
    }
}

/// A response body cut to [`EXCERPT_CHARS`] characters (on a character boundary, `…` appended
/// when cut), with runs of whitespace collapsed to one space.
pub fn excerpt(body: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut words = body.split_whitespace().peekable();
    while let Some(word) = words.next() {
        for c in word.chars() {
            if chars == EXCERPT_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
        if words.peek().is_some() {
            if chars == EXCERPT_CHARS {
                out.push('…');
                return out;
            }
            out.push(' ');
            chars += 1;
        }
    }
    out
}

/// An error and its sources, `: `-separated (reqwest's own `Display` stops at the first level).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn credentials_resolve_by_field_and_never_show_the_value() {
        use crate::manifest::IntegrationId;
        use crate::secrets::SecretRef;
        let integration = Integration {
            id: IntegrationId::parse("any-main").expect("id"),
            platform: crate::platforms::PlatformKind::Trello,
            name: None,
            description: None,
            file: "integrations/any-main.toml".into(),
            credentials: [
                ("domain".to_owned(), Credential::Plain("acme".into())),
                (
                    "token".to_owned(),
                    Credential::Secret(SecretRef::Env("ANY_TOKEN".into())),
                ),
                (
                    "gone".to_owned(),
                    Credential::Secret(SecretRef::Env("ANY_GONE".into())),
                ),
            ]
            .into_iter()
            .collect(),
            config: Default::default(),
            webhook: None,
            base_url: None,
            limits: Default::default(),
        };
        let env = |k: &str| (k == "ANY_TOKEN").then(|| "tok-s3cret-value".to_owned());
        let ctx = ResolveContext::new(None, &env);
        let plain = credential(&integration, "domain", &ctx).expect("plain");
        let plain = plain.expect("set");
        assert_eq!(plain.expose_str().ok(), Some("acme"));
        let token = required_credential(&integration, "token", &ctx).expect("env");
        assert_eq!(token.expose_str().ok(), Some("tok-s3cret-value"));
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(
            credential(&integration, "absent", &ctx)
                .expect("absent")
                .is_none()
        );
        let missing = required_credential(&integration, "absent", &ctx).expect_err("missing");
        assert!(
            matches!(&missing, ConnectError::Missing(f) if f == "absent"),
            "{missing}"
        );
        let failed = credential(&integration, "gone", &ctx).expect_err("unset env");
        assert!(
            matches!(&failed, ConnectError::Credential { field, .. } if field == "gone"),
            "{failed}"
        );
    }

    #[test]
    fn percent_encoding_keeps_unreserved_and_asked_bytes() {
        assert_eq!(percent_encode("a b/c?d&é~", b""), "a%20b%2Fc%3Fd%26%C3%A9~");
        assert_eq!(percent_encode("Sheet 1!A1:B2", b"!:"), "Sheet%201!A1:B2");
        let mut out = String::from("x=");
        percent_encode_into("%+", b"", &mut out);
        assert_eq!(out, "x=%25%2B");
    }

    #[tokio::test]
    async fn json_bodies_are_typed() {
        let c = reqwest::Client::new();
        let req = json_body(
            c.post("http://127.0.0.1:9/x"),
            &serde_json::json!({"a": [1]}),
        )
        .expect("encodes")
        .build()
        .expect("request");
        assert_eq!(
            req.headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        assert_eq!(
            req.body().and_then(|b| b.as_bytes()),
            Some(&br#"{"a":[1]}"#[..])
        );
    }

    #[test]
    fn details_name_the_call() {
        assert_eq!(with_call("GET /x", ""), "GET /x");
        assert_eq!(
            with_call("GET /x", "no such thing"),
            "GET /x: no such thing"
        );
    }

    #[test]
    fn retry_after_seconds_only() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static(" 30 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
        h.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("+5"));
        assert_eq!(retry_after(&h), None);
    }

    /// SEC-12: a huge `Retry-After` is clamped, never an overflow waiting to happen.
    #[test]
    fn retry_after_is_clamped() {
        let mut h = HeaderMap::new();
        for (value, secs) in [
            ("3600", 3600),
            ("3601", 3600),
            ("18446744073709551615", 3600),
            ("99999999999999999999999999", 3600),
            ("0", 0),
        ] {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static(value));
            assert_eq!(retry_after(&h), Some(Duration::from_secs(secs)), "{value}");
        }
        assert_eq!(MAX_RETRY_AFTER, Duration::from_secs(3600));
        // Whoever builds the error, what it hands out is clamped.
        let e = PlatformError::RateLimited {
            retry_after: Some(Duration::MAX),
        };
        assert_eq!(e.retry_after(), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn statuses_are_classified() {
        let s = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::IM_A_TEAPOT);
        let ra = Some(Duration::from_secs(7));
        assert_eq!(
            classify_status(s(429), ra, "slow down"),
            PlatformError::RateLimited { retry_after: ra }
        );
        assert!(matches!(
            classify_status(s(503), ra, ""),
            PlatformError::Transient { retry_after, .. } if retry_after == ra
        ));
        assert!(matches!(
            classify_status(s(408), None, ""),
            PlatformError::Transient { .. }
        ));
        assert!(matches!(
            classify_status(s(401), None, ""),
            PlatformError::Unauthorized { .. }
        ));
        assert!(matches!(
            classify_status(s(403), None, ""),
            PlatformError::Unauthorized { .. }
        ));
        assert!(matches!(
            classify_status(s(404), None, ""),
            PlatformError::NotFound { .. }
        ));
        assert_eq!(
            classify_status(s(422), None, "bad   field\n"),
            PlatformError::Rejected {
                status: 422,
                detail: "bad field".into()
            }
        );
    }

    #[test]
    fn excerpts_are_short() {
        let long = "é".repeat(500);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("  a \n b  "), "a b");
        let PlatformError::Rejected { detail, .. } =
            classify_status(StatusCode::BAD_REQUEST, None, &long)
        else {
            unreachable!("400 is rejected")
        };
        assert!(detail.chars().count() <= EXCERPT_CHARS + 1);
    }

    /// A connection that is never made is `NotPerformed` (safe to send again); a request that was
    /// sent and whose answer never came is `Transient` (it may have been acted on).
    #[tokio::test]
    async fn unsent_and_unanswered_requests_are_told_apart() {
        let c = client(Duration::from_millis(300)).expect("client");
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let refused = c
            .post(format!("http://127.0.0.1:{port}/x"))
            .send()
            .await
            .expect_err("refused");
        let e = transport_error(refused);
        assert!(
            matches!(e, PlatformError::NotPerformed { .. }) && !e.may_have_reached(),
            "{e:?}"
        );
        assert!(e.retryable());
        // A server that reads the request and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let timed_out = c
            .post(format!("http://{addr}/x"))
            .send()
            .await
            .expect_err("no answer");
        let e = transport_error(timed_out);
        assert!(
            matches!(e, PlatformError::Transient { .. }) && e.may_have_reached(),
            "{e:?}"
        );
        held.abort();
    }

    #[test]
    fn client_builds() {
        assert!(client(Duration::from_secs(5)).is_ok());
    }
}
