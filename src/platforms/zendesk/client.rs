//! A thin Zendesk Support API client: authenticated JSON calls under
//! `https://{subdomain}.zendesk.com/`, and the classification of Zendesk's answers into
//! [`PlatformError`].
//!
//! - Authentication is one `Authorization` header, marked sensitive: Basic
//!   `base64("{email}/token:{api_token}")` or `Bearer {oauth_token}`. It never appears in a URL,
//!   a body, a `Debug` output or an error.
//! - Zendesk answers errors with real HTTP statuses and a JSON body such as
//!   `{"error": "RecordNotFound", "description": "Not found"}` or
//!   `{"error": "RecordInvalid", "description": "Record validation errors", "details": {…}}`;
//!   the detail of a [`PlatformError`] is `error: description` plus the first details, cut short.
//! - 429 is [`PlatformError::RateLimited`] with `Retry-After` (some per-endpoint 429s carry
//!   none: the executor's backoff applies); 5xx and 408 are transient; 401/403 unauthorized;
//!   404 not found; a redirect (an API URL that redirects is an account that does not exist, or
//!   a `base_url` that is wrong) is not found too; 409 (a `safe_update` collision) and other
//!   4xx are rejected.
//! - `X-Rate-Limit` / `X-Rate-Limit-Remaining` and the `ratelimit-*` headers are logged at debug
//!   level, so an operator can see the budget shrink; the daemon's own gate paces the calls.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;

use crate::platforms::connector::PlatformError;
use crate::platforms::http as shared;
use crate::secrets::Secret;

/// The header making `POST /api/v2/tickets` idempotent (keys live two hours at Zendesk).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// How a client authenticates (never shows the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Basic `{email}/token:{api_token}`.
    ApiToken,
    /// `Bearer {oauth_token}`.
    OAuth,
}

/// Why a credential cannot be used (never shows it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "credential `{field}` is not usable (not text, empty, or characters not allowed in an HTTP header)"
)]
pub struct BadCredential {
    /// The credential field.
    pub field: &'static str,
}

/// An authenticated Zendesk client.
#[derive(Clone)]
pub struct ZendeskClient {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    kind: AuthKind,
}

impl fmt::Debug for ZendeskClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZendeskClient")
            .field("base", &self.base)
            .field("auth", &self.kind)
            .field("credentials", &"***")
            .finish()
    }
}

/// A successful answer: its status, headers and JSON body (`Null` for an empty body).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty).
    pub body: Value,
}

impl ZendeskClient {
    /// A client on `base` (ending in `/`) with API-token Basic auth.
    pub fn with_api_token(
        http: reqwest::Client,
        base: String,
        email: &str,
        token: &Secret,
    ) -> Result<Self, BadCredential> {
        let email = email.trim();
        if email.is_empty() || email.contains(':') {
            return Err(BadCredential { field: "email" });
        }
        let bad = || BadCredential { field: "api_token" };
        let token = token.expose_str().map_err(|_| bad())?.trim();
        if token.is_empty() {
            return Err(bad());
        }
        let raw = zeroize::Zeroizing::new(format!("{email}/token:{token}"));
        let encoded = zeroize::Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
        ));
        let mut auth = HeaderValue::from_str(&encoded).map_err(|_| bad())?;
        auth.set_sensitive(true);
        Ok(Self {
            http,
            base,
            auth,
            kind: AuthKind::ApiToken,
        })
    }

    /// A client on `base` (ending in `/`) with an OAuth bearer token.
    pub fn with_oauth(
        http: reqwest::Client,
        base: String,
        token: &Secret,
    ) -> Result<Self, BadCredential> {
        let bad = || BadCredential {
            field: "oauth_token",
        };
        let token = token.expose_str().map_err(|_| bad())?.trim();
        if token.is_empty() {
            return Err(bad());
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| bad())?;
        auth.set_sensitive(true);
        Ok(Self {
            http,
            base,
            auth,
            kind: AuthKind::OAuth,
        })
    }

    /// The base URL calls go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How the client authenticates.
    pub fn auth_kind(&self) -> AuthKind {
        self.kind
    }

    /// Calls `method path` (`path` relative to the base, e.g. `api/v2/tickets`) with `query`
    /// and an optional JSON body; a 2xx answer is returned, anything else is classified.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, PlatformError> {
        let what = format!("{method} /{path}");
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let qs: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            url.push('?');
            url.push_str(&qs.join("&"));
        }
        let mut req = self
            .http
            .request(method, url)
            .header(http::header::AUTHORIZATION, self.auth.clone())
            .header(http::header::ACCEPT, "application/json");
        if let Some(key) = idempotency_key.filter(|k| !k.is_empty()) {
            req = req.header(IDEMPOTENCY_HEADER, key);
        }
        if let Some(b) = body {
            req = shared::json_body(req, b)?;
        }
        let resp = req.send().await.map_err(shared::transport_error)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        log_rate_limit(&what, &headers);
        let retry_after = shared::retry_after(&headers);
        let bytes = resp.bytes().await.map_err(shared::transport_error)?;
        if !status.is_success() {
            return Err(classify(&what, status, retry_after, &bytes));
        }
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
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// Percent-encodes a query component (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Logs the rate-limit budget a response reports.
fn log_rate_limit(what: &str, headers: &HeaderMap) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let (Some(limit), Some(remaining)) = (
        h("x-rate-limit").or(h("ratelimit-limit")),
        h("x-rate-limit-remaining").or(h("ratelimit-remaining")),
    ) {
        tracing::debug!(
            call = what,
            limit,
            remaining,
            reset = h("ratelimit-reset"),
            "zendesk rate limit"
        );
    }
}

/// Classifies a non-2xx answer (see the module docs). The detail names the call and what
/// Zendesk said; request data never enters it.
pub fn classify(
    what: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PlatformError {
    if status.is_redirection() {
        return PlatformError::NotFound {
            detail: format!(
                "{what}: HTTP {status}: the API redirects (no Zendesk account at this subdomain, or a wrong base_url)"
            ),
        };
    }
    let said = error_text(body);
    let detail = shared::with_call(what, &said);
    if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST {
        return PlatformError::Rejected {
            status: status.as_u16(),
            detail: shared::excerpt(&detail),
        };
    }
    if status == StatusCode::CONFLICT {
        return PlatformError::Rejected {
            status: 409,
            detail: shared::excerpt(&format!(
                "{detail} (the ticket changed since `updated_stamp`: safe update refused)"
            )),
        };
    }
    shared::classify_status(status, retry_after, &detail)
}

/// What a Zendesk error body says: `error: description (details)`, or the text itself.
fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return shared::excerpt(&text);
    };
    let s = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o
                .get("title")
                .or(o.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    };
    let mut parts = Vec::new();
    if let Some(e) = s(v.get("error")) {
        parts.push(e);
    }
    if let Some(d) = s(v.get("description")) {
        parts.push(d);
    }
    // Webhooks API: {"errors": [{"code": …, "title": …, "detail": …}]}.
    if let Some(errors) = v.get("errors").and_then(Value::as_array) {
        for e in errors.iter().take(3) {
            let t = [e.get("code"), e.get("title"), e.get("detail")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            if !t.is_empty() {
                parts.push(t);
            }
        }
    }
    let mut out = parts.join(": ");
    if let Some(details) = v.get("details").filter(|d| !d.is_null()) {
        out.push_str(&format!(" ({details})"));
    }
    if out.is_empty() {
        shared::excerpt(&text)
    } else {
        shared::excerpt(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_details() {
        let e = classify(
            "PUT /api/v2/tickets/1",
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            br#"{"error":"RecordInvalid","description":"Record validation errors","details":{"status":[{"description":"Status: closed prevents ticket update"}]}}"#,
        );
        let PlatformError::Rejected { status, detail } = e else {
            unreachable!("422 is rejected")
        };
        assert_eq!(status, 422);
        assert!(
            detail.contains("RecordInvalid: Record validation errors"),
            "{detail}"
        );
        assert!(detail.contains("closed prevents"), "{detail}");
        assert!(matches!(
            classify("x", StatusCode::NOT_FOUND, None, br#"{"error":"RecordNotFound","description":"Not found"}"#),
            PlatformError::NotFound { detail } if detail.contains("RecordNotFound")
        ));
        assert!(matches!(
            classify("x", StatusCode::MOVED_PERMANENTLY, None, b""),
            PlatformError::NotFound { .. }
        ));
        assert!(matches!(
            classify("x", StatusCode::CONFLICT, None, b""),
            PlatformError::Rejected { status: 409, .. }
        ));
        assert_eq!(
            classify(
                "x",
                StatusCode::TOO_MANY_REQUESTS,
                Some(Duration::from_secs(9)),
                b"slow"
            ),
            PlatformError::RateLimited {
                retry_after: Some(Duration::from_secs(9))
            }
        );
        let e = classify(
            "POST /api/v2/webhooks",
            StatusCode::BAD_REQUEST,
            None,
            br#"{"errors":[{"code":"InvalidValue","title":"Invalid value","detail":"endpoint is not a URL"}]}"#,
        );
        assert!(e.to_string().contains("endpoint is not a URL"), "{e}");
    }

    #[test]
    fn credentials_never_show() {
        let http = shared::client(Duration::from_secs(5)).expect("client");
        let token = Secret::from("sekrit-token-value".to_owned());
        let c = ZendeskClient::with_api_token(http.clone(), "http://x/".into(), "a@b.c", &token)
            .expect("client");
        assert!(!format!("{c:?}").contains("sekrit"));
        assert!(c.auth.is_sensitive());
        let o = ZendeskClient::with_oauth(http.clone(), "http://x/".into(), &token).expect("oauth");
        assert!(!format!("{o:?}").contains("sekrit"));
        assert_eq!(
            ZendeskClient::with_api_token(http.clone(), "http://x/".into(), "", &token).err(),
            Some(BadCredential { field: "email" })
        );
        let bad = Secret::from("line\nbreak".to_owned());
        let e = ZendeskClient::with_oauth(http, "http://x/".into(), &bad).expect_err("bad");
        assert!(!e.to_string().contains("line"));
    }
}
