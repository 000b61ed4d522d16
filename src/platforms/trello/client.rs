//! A thin Trello REST client: one authenticated call per request, and the classification of
//! Trello's answers into [`PlatformError`].
//!
//! - Authentication: `Authorization: OAuth oauth_consumer_key="<api key>", oauth_token="<token>"`
//!   (marked sensitive). Key and token are never put in a query string; the one place Trello
//!   wants the token in a URL is the path of `GET /1/tokens/{token}/webhooks` (listing the
//!   token's webhooks, see [`TrelloClient::token_path`]), and URLs never reach an error detail
//!   or a log line.
//! - Parameters travel as query parameters, as Trello's API description declares them, except
//!   where text can be long: card creation and updates send a JSON body (documented for those
//!   two calls), and a comment whose text would make a long URL too (see
//!   [`crate::platforms::trello::connector`]).
//! - Errors: Trello answers 4xx mostly with `text/plain` bodies (`invalid value for idList`,
//!   `card not found`), rate limits and some others with JSON `{"error", "message"}`; both are
//!   read. 429 is [`PlatformError::RateLimited`] with `Retry-After` when sent, else Trello's
//!   10-second window; 5xx is transient. A webhook creation refused because the callback URL
//!   did not answer Trello's `HEAD` with 200 is transient too: the daemon is not serving the
//!   URL yet (see [`callback_not_ready`]).

use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::platforms::connector::PlatformError;
use crate::platforms::http as shared;
use crate::secrets::Secret;

/// Trello's rate-limit window: without `Retry-After` (Trello documents none), a 429 asks the
/// caller to come back after it.
pub const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(10);

/// An authenticated Trello REST client.
#[derive(Clone)]
pub struct TrelloClient {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    /// The token, percent-encoded, for the one path that names it.
    token_segment: String,
}

impl fmt::Debug for TrelloClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrelloClient")
            .field("base", &self.base)
            .field("api_key", &"***")
            .field("token", &"***")
            .finish()
    }
}

/// Why a credential cannot be used (never shows it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "credential `{field}` is not usable (empty, not text, or characters not allowed in an HTTP header)"
)]
pub struct BadCredential {
    /// The credential field.
    pub field: &'static str,
}

fn text_of(s: &Secret, field: &'static str) -> Result<String, BadCredential> {
    let t = s.expose_str().map_err(|_| BadCredential { field })?.trim();
    if t.is_empty() || t.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Err(BadCredential { field });
    }
    Ok(t.to_owned())
}

impl TrelloClient {
    /// A client calling `base` (ending in `/`, e.g. `https://api.trello.com/1/`).
    pub fn new(
        http: reqwest::Client,
        base: String,
        api_key: &Secret,
        token: &Secret,
    ) -> Result<Self, BadCredential> {
        let key = text_of(api_key, "api_key")?;
        let tok = text_of(token, "token")?;
        let mut auth = HeaderValue::from_str(&format!(
            "OAuth oauth_consumer_key=\"{key}\", oauth_token=\"{tok}\""
        ))
        .map_err(|_| BadCredential { field: "token" })?;
        auth.set_sensitive(true);
        let mut token_segment = String::new();
        shared::percent_encode_into(&tok, b"", &mut token_segment);
        Ok(Self {
            http,
            base,
            auth,
            token_segment,
        })
    }

    /// The base URL calls go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `tokens/<token>/<rest>`: the path of the token's own resources (its webhooks).
    pub fn token_path(&self, rest: &str) -> String {
        format!("tokens/{}/{rest}", self.token_segment)
    }

    /// Calls `method <base><path>?<query>` and returns the JSON answer (`Value::Null` for an
    /// empty body). `path` is relative to the base, its variable segments already encoded
    /// with [`segment`]. `what` names the call in error details.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Value, PlatformError> {
        self.send(method, path, query, None, what).await
    }

    /// [`TrelloClient::call`] with the parameters in a JSON object body instead of the query
    /// string (each value a string, as the query would carry it): "Query parameters may also
    /// be replaced with a JSON request body instead" (Trello's API description of
    /// `POST /1/cards` and `PUT /1/cards/{id}`). Long text (a 16 KB `desc`) then never makes
    /// an over-long URL (414).
    pub async fn call_with_body(
        &self,
        method: Method,
        path: &str,
        fields: &[(&str, String)],
        what: &str,
    ) -> Result<Value, PlatformError> {
        let body: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
            .collect();
        self.send(method, path, &[], Some(&Value::Object(body)), what)
            .await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, PlatformError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            for (i, (k, v)) in query.iter().enumerate() {
                if i > 0 {
                    url.push('&');
                }
                shared::percent_encode_into(k, b"", &mut url);
                url.push('=');
                shared::percent_encode_into(v, b"", &mut url);
            }
        }
        let mut req = self
            .http
            .request(method, url)
            .header(http::header::AUTHORIZATION, self.auth.clone())
            .header(http::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = shared::json_body(req, b)?;
        }
        let resp = req.send().await.map_err(shared::transport_error)?;
        let status = resp.status();
        let retry_after = shared::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(shared::transport_error)?;
        if !status.is_success() {
            return Err(classify(
                what,
                status,
                retry_after,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|_| PlatformError::Rejected {
            status: status.as_u16(),
            detail: format!(
                "{what}: the answer is not JSON: {}",
                shared::excerpt(&String::from_utf8_lossy(&bytes))
            ),
        })
    }
}

/// Whether a 400 says Trello's `HEAD` check of a webhook's callback URL failed (`URL (…) did
/// not return 200 status code, got 404`): the endpoint is not served (yet).
pub fn callback_not_ready(message: &str) -> bool {
    message.contains("did not return 200 status code")
}

/// Classifies a non-2xx Trello answer. The body is text (`invalid id`) or JSON
/// (`{"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}`); its message
/// becomes the detail, cut to [`shared::EXCERPT_CHARS`].
pub fn classify(
    what: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> PlatformError {
    let message = error_message(body);
    if status == StatusCode::TOO_MANY_REQUESTS {
        return PlatformError::RateLimited {
            retry_after: retry_after.or(Some(RATE_LIMIT_WINDOW)),
        };
    }
    if status == StatusCode::BAD_REQUEST && callback_not_ready(&message) {
        return PlatformError::Transient {
            detail: format!(
                "{what}: Trello could not validate the callback URL ({}); supportopsd must be serving it (`supportopsd run` reachable at its public URL) before the webhook can be created",
                shared::excerpt(&message)
            ),
            retry_after: None,
        };
    }
    shared::classify_status(status, retry_after, &shared::with_call(what, &message))
}

/// The human part of an error body: JSON `error`/`message` joined, else the text itself.
fn error_message(body: &str) -> String {
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(body) {
        let s = |k: &str| m.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        return match (s("error"), s("message")) {
            // Trello's generic `"error": "ERROR"` adds nothing to the message.
            (Some("ERROR"), Some(msg)) => msg.to_owned(),
            (Some(e), Some(msg)) if e != msg => format!("{e}: {msg}"),
            (Some(e), _) => e.to_owned(),
            (None, Some(msg)) => msg.to_owned(),
            (None, None) => shared::excerpt(body),
        };
    }
    shared::excerpt(body)
}

/// One path segment (an id or short link), percent-encoded.
pub fn segment(s: &str) -> String {
    shared::percent_encode(s, b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(segment("a b/c?d&é"), "a%20b%2Fc%3Fd%26%C3%A9");
        assert_eq!(segment("5f1e-x_y.z~"), "5f1e-x_y.z~");
    }

    #[test]
    fn text_and_json_errors_are_classified() {
        let s = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::IM_A_TEAPOT);
        assert_eq!(
            classify("create_card", s(400), None, "invalid value for idList"),
            PlatformError::Rejected {
                status: 400,
                detail: "create_card: invalid value for idList".into()
            }
        );
        assert!(matches!(
            classify("check", s(401), None, "invalid key"),
            PlatformError::Unauthorized { detail } if detail.contains("invalid key")
        ));
        assert!(matches!(
            classify("update_card", s(404), None, "card not found"),
            PlatformError::NotFound { detail } if detail.contains("card not found")
        ));
        assert_eq!(
            classify(
                "x",
                s(429),
                None,
                r#"{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}"#
            ),
            PlatformError::RateLimited {
                retry_after: Some(RATE_LIMIT_WINDOW)
            }
        );
        assert_eq!(
            classify("x", s(429), Some(Duration::from_secs(3)), ""),
            PlatformError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            classify("x", s(503), None, "<html>down</html>"),
            PlatformError::Transient { .. }
        ));
        assert!(matches!(
            classify("x", s(403), None, r#"{"message":"unauthorized permission requested","error":"ERROR"}"#),
            PlatformError::Unauthorized { detail } if detail.ends_with("x: unauthorized permission requested")
        ));
        let head = r#"{"message":"URL (http://x/y) did not return 200 status code, got 405","error":"ERROR"}"#;
        assert!(matches!(
            classify("register webhook", s(400), None, head),
            PlatformError::Transient { detail, .. } if detail.contains("got 405") && detail.contains("serving")
        ));
    }

    proptest::proptest! {
        #[test]
        fn classification_never_panics_and_keeps_details_short(code in 400u16..600, body in ".{0,600}") {
            proptest::prop_assume!(!body.contains("did not return"));
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            let e = classify("call", status, None, &body);
            proptest::prop_assert!(e.to_string().chars().count() < shared::EXCERPT_CHARS + 100);
            proptest::prop_assert_eq!(e.retryable(), code == 408 || code == 429 || code >= 500);
        }
    }

    #[test]
    fn bad_credentials_are_named_not_shown() {
        let http = shared::client(Duration::from_secs(1)).expect("client");
        for (key, tok, field) in [
            ("k", "tok\nsecretvalue", "token"),
            ("k", "", "token"),
            ("k\"secretvalue", "t", "api_key"),
        ] {
            let e = TrelloClient::new(
                http.clone(),
                "http://x/".into(),
                &Secret::from(key.to_owned()),
                &Secret::from(tok.to_owned()),
            )
            .expect_err("refused");
            let text = format!("{e:?} {e}");
            assert!(text.contains(field), "{text}");
            assert!(!text.contains("secretvalue"), "{text}");
        }
        let c = TrelloClient::new(
            http,
            "http://x/".into(),
            &Secret::from("key".to_owned()),
            &Secret::from("tokensecretvalue".to_owned()),
        )
        .expect("client");
        assert!(!format!("{c:?}").contains("tokensecretvalue"));
    }
}
