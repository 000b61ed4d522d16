//! A thin Notion API client: one authenticated JSON call per request, always with the pinned
//! `Notion-Version`, and the classification of Notion's answers into [`PlatformError`].
//!
//! Notion answers failures with a real HTTP status and
//! `{"object": "error", "status", "code", "message", "request_id"?}`. The token travels only in
//! `Authorization: Bearer …` (a header marked sensitive); no error detail contains it (details
//! are built from Notion's `code` and `message` and cut to [`shared::EXCERPT_CHARS`]).

use std::fmt;

use http::{HeaderValue, Method, StatusCode};
use serde_json::{Map, Value};

use crate::platforms::connector::PlatformError;
use crate::platforms::http as shared;
use crate::secrets::Secret;

/// The header pinning the API version.
pub const VERSION_HEADER: &str = "notion-version";

/// An authenticated Notion API client.
#[derive(Clone)]
pub struct NotionClient {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    version: HeaderValue,
}

impl fmt::Debug for NotionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotionClient")
            .field("base", &self.base)
            .field("token", &"***")
            .field("version", &self.version)
            .finish()
    }
}

/// Why the token cannot be used (never shows the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "credential `token` is not a valid token (not text, empty, or characters not allowed in an HTTP header)"
)]
pub struct BadToken;

impl NotionClient {
    /// A client calling `base` (ending in `/`, e.g. `https://api.notion.com/`) with `token`,
    /// sending `Notion-Version: version` on every call.
    pub fn new(
        http: reqwest::Client,
        base: String,
        token: &Secret,
        version: &str,
    ) -> Result<Self, BadToken> {
        let text = token.expose_str().map_err(|_| BadToken)?.trim();
        if text.is_empty() {
            return Err(BadToken);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {text}")).map_err(|_| BadToken)?;
        auth.set_sensitive(true);
        let version = HeaderValue::from_str(version).map_err(|_| BadToken)?;
        Ok(Self {
            http,
            base,
            auth,
            version,
        })
    }

    /// The base URL calls go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Calls `method path` (`path` without a leading slash, e.g. `v1/pages`) with an optional
    /// JSON body and returns the answer object; every failure is a classified
    /// [`PlatformError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Map<String, Value>, PlatformError> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} /{}", path.split('?').next().unwrap_or(path));
        let mut req = self
            .http
            .request(method, url)
            .header(http::header::AUTHORIZATION, self.auth.clone())
            .header(VERSION_HEADER, self.version.clone())
            .header(http::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = shared::json_body(req, b)?;
        }
        let resp = req.send().await.map_err(shared::transport_error)?;
        let status = resp.status();
        let retry_after = shared::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(shared::transport_error)?;
        if !status.is_success() {
            return Err(classify(&what, status, retry_after, &bytes));
        }
        serde_json::from_slice::<Map<String, Value>>(&bytes).map_err(|_| PlatformError::Rejected {
            status: status.as_u16(),
            detail: format!(
                "{what}: the answer is not a JSON object: {}",
                shared::excerpt(&String::from_utf8_lossy(&bytes))
            ),
        })
    }
}

/// Classifies a non-2xx answer. Notion's error body gives `code` and `message`; the HTTP
/// status decides the class ([`shared::classify_status`]), with two Notion specifics:
/// `409 conflict_error` (a data collision Notion asks to retry) is transient, and a `400`
/// carries `code: message` as its detail.
pub fn classify(
    what: &str,
    status: StatusCode,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
) -> PlatformError {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let detail = match (field("code"), field("message")) {
        (Some(c), Some(m)) => format!("{what}: {c}: {m}"),
        (Some(c), None) => format!("{what}: {c}"),
        (None, Some(m)) => format!("{what}: {m}"),
        (None, None) => format!("{what}: {}", String::from_utf8_lossy(body)),
    };
    if status == StatusCode::CONFLICT {
        return PlatformError::Transient {
            detail: shared::excerpt(&detail),
            retry_after,
        };
    }
    shared::classify_status(status, retry_after, &detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_tokens_are_refused_without_being_shown() {
        let http = shared::client(std::time::Duration::from_secs(1)).expect("client");
        for t in ["ntn_1\nsecretpart", "   "] {
            let e = NotionClient::new(
                http.clone(),
                "http://x/".into(),
                &Secret::from(t.to_owned()),
                "2025-09-03",
            )
            .expect_err("refused");
            assert!(!format!("{e} {e:?}").contains("secretpart"));
        }
        let c = NotionClient::new(
            http,
            "http://x/".into(),
            &Secret::from("ntn_secretpart".to_owned()),
            "2025-09-03",
        )
        .expect("client");
        assert!(!format!("{c:?}").contains("secretpart"));
    }

    #[test]
    fn error_bodies_are_classified() {
        let body = |code: &str, msg: &str| {
            serde_json::json!({"object": "error", "status": 0, "code": code, "message": msg})
                .to_string()
                .into_bytes()
        };
        let e = classify(
            "POST /v1/pages",
            StatusCode::BAD_REQUEST,
            None,
            &body("validation_error", "body failed validation"),
        );
        assert_eq!(
            e,
            PlatformError::Rejected {
                status: 400,
                detail: "POST /v1/pages: validation_error: body failed validation".into()
            }
        );
        assert!(matches!(
            classify(
                "x",
                StatusCode::CONFLICT,
                None,
                &body("conflict_error", "c")
            ),
            PlatformError::Transient { .. }
        ));
        assert!(matches!(
            classify(
                "x",
                StatusCode::FORBIDDEN,
                None,
                &body("restricted_resource", "r")
            ),
            PlatformError::Unauthorized { .. }
        ));
        assert!(matches!(
            classify("x", StatusCode::NOT_FOUND, None, b"<html>"),
            PlatformError::NotFound { .. }
        ));
    }
}
