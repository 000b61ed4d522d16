//! A thin Freshdesk API v2 client: one authenticated JSON request per call, the classification
//! of Freshdesk's answers into [`PlatformError`], and the rate-limit headers.
//!
//! - Authentication is HTTP Basic with the API key as the user name and `X` as the (ignored)
//!   password. The header is marked sensitive; the key never travels in a URL or a body, and no
//!   error detail contains it.
//! - Errors: Freshdesk answers JSON such as `{"code":"invalid_credentials","message":"…"}`
//!   (401/403) or `{"description":"Validation failed","errors":[{"field":"email",
//!   "message":"…","code":"invalid_value"}]}` (400/409). Statuses go through the shared
//!   [`http::classify_status`](crate::platforms::http::classify_status); the detail is built
//!   from the body's `code`/`message`/`errors`, never from the request. A 403 whose code is
//!   `account_suspended` says so.
//! - Rate limits: every answer's `X-RateLimit-Total` / `X-RateLimit-Remaining` are kept
//!   ([`FreshdeskClient::budget`]); a 429 becomes [`PlatformError::RateLimited`] with its
//!   `Retry-After`, or with a minute (Freshdesk's window) when the header is missing.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::platforms::connector::PlatformError;
use crate::platforms::http as shared;
use crate::secrets::Secret;

/// How long a 429 without `Retry-After` waits: Freshdesk's limits are per minute.
pub const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Requests per minute of each Freshdesk plan (the `X-RateLimit-Total` the account reports
/// tells which applies).
pub const PLAN_LIMITS: &[(&str, u64)] = &[
    ("Trial", 50),
    ("Growth", 200),
    ("Pro", 400),
    ("Enterprise", 700),
];

/// The plan whose published per-minute limit is `total`, if one matches.
pub fn plan_for_limit(total: u64) -> Option<&'static str> {
    PLAN_LIMITS
        .iter()
        .find(|(_, limit)| *limit == total)
        .map(|(plan, _)| *plan)
}

/// The account's API budget as the last answer reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// `X-RateLimit-Total`: calls allowed per minute.
    pub total: Option<u64>,
    /// `X-RateLimit-Remaining`: calls left in the current minute.
    pub remaining: Option<u64>,
}

impl Budget {
    /// Reads the rate-limit headers of an answer.
    pub fn from_headers(headers: &HeaderMap) -> Budget {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Budget {
            total: num("x-ratelimit-total"),
            remaining: num("x-ratelimit-remaining"),
        }
    }

    /// One phrase for `status`: `200 calls/min (Growth plan), 180 left`.
    pub fn describe(&self) -> Option<String> {
        let total = self.total?;
        let plan = plan_for_limit(total)
            .map(|p| format!(" ({p} plan)"))
            .unwrap_or_default();
        let left = self
            .remaining
            .map(|r| format!(", {r} left"))
            .unwrap_or_default();
        Some(format!("{total} calls/min{plan}{left}"))
    }
}

/// An authenticated Freshdesk API client.
pub struct FreshdeskClient {
    http: reqwest::Client,
    /// `https://<domain>/` (or the `[endpoint] base_url`), ending in `/`.
    base: String,
    auth: HeaderValue,
    budget: Mutex<Budget>,
}

impl fmt::Debug for FreshdeskClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreshdeskClient")
            .field("base", &self.base)
            .field("api_key", &"***")
            .finish()
    }
}

/// Why an API key cannot be used (never shows the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "credential `api_key` is not a valid API key (empty, not text, or characters not allowed in an HTTP header)"
)]
pub struct BadKey;

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

impl FreshdeskClient {
    /// A client calling `base` (ending in `/`) with `api_key`.
    pub fn new(http: reqwest::Client, base: String, api_key: &Secret) -> Result<Self, BadKey> {
        let key = api_key.expose_str().map_err(|_| BadKey)?.trim();
        if key.is_empty() {
            return Err(BadKey);
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:X"));
        let mut auth = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| BadKey)?;
        auth.set_sensitive(true);
        Ok(Self {
            http,
            base,
            auth,
            budget: Mutex::new(Budget::default()),
        })
    }

    /// The base URL calls go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The rate-limit budget of the last answer that reported one.
    pub fn budget(&self) -> Budget {
        *self
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `method <base><path>` (path without a leading `/`, e.g. `api/v2/tickets`) with an
    /// optional JSON body and returns the answer when it is 2xx; anything else is a classified
    /// [`PlatformError`] whose detail starts with `what`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Answer, PlatformError> {
        let url = format!("{}{path}", self.base);
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
        let headers = resp.headers().clone();
        let budget = Budget::from_headers(&headers);
        if budget.total.is_some() || budget.remaining.is_some() {
            *self
                .budget
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = budget;
        }
        let bytes = resp.bytes().await.map_err(shared::transport_error)?;
        if status.is_success() {
            let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|_| PlatformError::Rejected {
                    status: status.as_u16(),
                    detail: format!(
                        "{what}: the answer is not JSON: {}",
                        shared::excerpt(&String::from_utf8_lossy(&bytes))
                    ),
                })?
            };
            return Ok(Answer { status, body });
        }
        Err(classify(
            what,
            status,
            shared::retry_after(&headers),
            &String::from_utf8_lossy(&bytes),
        ))
    }
}

/// Classifies a non-2xx Freshdesk answer (see the module docs).
pub fn classify(
    what: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> PlatformError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return PlatformError::RateLimited {
            retry_after: retry_after.or(Some(DEFAULT_RATE_LIMIT_WAIT)),
        };
    }
    let summary = summarize(body);
    let detail = shared::with_call(what, &summary);
    match shared::classify_status(status, retry_after, &detail) {
        PlatformError::Rejected { status, .. } => PlatformError::Rejected {
            status,
            detail: shared::excerpt(&detail),
        },
        other => other,
    }
}

/// The useful part of an error body: `code: message`, the `errors` list (`field: message
/// (code)`), or an excerpt of a non-JSON body.
pub fn summarize(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return shared::excerpt(body);
    };
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut parts = Vec::new();
    match (s(&v, "code"), s(&v, "message")) {
        (Some(c), Some(m)) => parts.push(format!("{c}: {m}")),
        (Some(c), None) => parts.push(c),
        (None, Some(m)) => parts.push(m),
        (None, None) => {}
    }
    if let Some(d) = s(&v, "description") {
        parts.push(d);
    }
    let errors: Vec<String> = v
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let field = s(e, "field");
            let msg = s(e, "message").unwrap_or_else(|| "invalid".into());
            let code = s(e, "code").map(|c| format!(" ({c})")).unwrap_or_default();
            match field {
                Some(f) => format!("{f}: {msg}{code}"),
                None => format!("{msg}{code}"),
            }
        })
        .collect();
    if !errors.is_empty() {
        parts.push(errors.join("; "));
    }
    if parts.is_empty() {
        shared::excerpt(body)
    } else {
        shared::excerpt(&parts.join(": "))
    }
}

/// Whether an error body is Freshdesk's "account suspended" answer.
pub fn is_suspended(err: &PlatformError) -> bool {
    matches!(err, PlatformError::Unauthorized { detail } if detail.contains("account_suspended"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_summarised() {
        assert_eq!(
            summarize(
                r#"{"code":"invalid_credentials","message":"You have to be logged in to perform this action."}"#
            ),
            "invalid_credentials: You have to be logged in to perform this action."
        );
        assert_eq!(
            summarize(
                r#"{"description":"Validation failed","errors":[{"field":"email","message":"It should be a valid email address","code":"invalid_value"}]}"#
            ),
            "Validation failed: email: It should be a valid email address (invalid_value)"
        );
        assert_eq!(summarize("<html> nope </html>"), "<html> nope </html>");
        assert_eq!(summarize(""), "");
    }

    #[test]
    fn classification() {
        let e = classify(
            "create_ticket",
            StatusCode::BAD_REQUEST,
            None,
            r#"{"description":"Validation failed","errors":[{"field":"x","message":"Unexpected/invalid field in request","code":"invalid_field"}]}"#,
        );
        assert_eq!(
            e,
            PlatformError::Rejected {
                status: 400,
                detail: "create_ticket: Validation failed: x: Unexpected/invalid field in request (invalid_field)".into()
            }
        );
        assert_eq!(
            classify("x", StatusCode::TOO_MANY_REQUESTS, None, ""),
            PlatformError::RateLimited {
                retry_after: Some(DEFAULT_RATE_LIMIT_WAIT)
            }
        );
        assert_eq!(
            classify(
                "x",
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(7)),
                ""
            ),
            PlatformError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let e = classify(
            "check",
            StatusCode::FORBIDDEN,
            None,
            r#"{"code":"account_suspended","message":"Your account has been suspended."}"#,
        );
        assert!(is_suspended(&e), "{e:?}");
        assert!(matches!(
            classify("x", StatusCode::SERVICE_UNAVAILABLE, None, ""),
            PlatformError::Transient { .. }
        ));
    }

    #[test]
    fn budgets_name_the_plan() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-total", HeaderValue::from_static("200"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("180"));
        let b = Budget::from_headers(&h);
        assert_eq!(
            b,
            Budget {
                total: Some(200),
                remaining: Some(180)
            }
        );
        assert_eq!(
            b.describe().as_deref(),
            Some("200 calls/min (Growth plan), 180 left")
        );
        assert_eq!(Budget::default().describe(), None);
        assert_eq!(plan_for_limit(123), None);
    }

    #[test]
    fn bad_keys_are_refused_without_showing_them() {
        let http = shared::client(Duration::from_secs(5)).expect("client");
        for k in [b"".to_vec(), b"  ".to_vec(), b"secret\xff".to_vec()] {
            let e = FreshdeskClient::new(http.clone(), "http://x/".into(), &Secret::new(k))
                .expect_err("refused");
            assert!(!e.to_string().contains("secret"));
        }
        let c = FreshdeskClient::new(http, "http://x/".into(), &Secret::from("abc".to_owned()))
            .expect("ok");
        assert!(!format!("{c:?}").contains("abc"));
    }
}
