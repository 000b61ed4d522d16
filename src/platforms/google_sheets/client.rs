//! A thin Google API client for Sheets v4 and Drive v3: service-account authentication (an
//! RS256-signed JWT exchanged for an access token at the token endpoint, cached until shortly
//! before it expires) and the classification of Google's answers into [`PlatformError`].
//!
//! - The key file's `private_key` never leaves [`ServiceAccountKey`] except as a signing key;
//!   neither it nor an access token appears in a `Debug` output or an error.
//! - Access tokens travel only in `Authorization: Bearer …` (marked sensitive), never in a URL.
//! - Google's error JSON (`{"error": {"code", "message", "status", "errors": [{"reason"}]}}`)
//!   is classified once: 429 and the 403 quota reasons (`rateLimitExceeded`,
//!   `userRateLimitExceeded`, status `RESOURCE_EXHAUSTED`) are [`PlatformError::RateLimited`],
//!   5xx is transient, 401/403 unauthorized, 404 not found, other 4xx rejected. A 401 on a
//!   cached token drops it, signs in again and makes the call once more (nothing was done);
//!   a 401 on a token just issued is reported.
//! - With `[endpoint] base_url` set, the Sheets API, the Drive API and the token endpoint are all
//!   served from it: `<base>v4/…`, `<base>drive/v3/…` and `<base>token` (the fake server in the
//!   tests, or a proxy). Without it they are `https://sheets.googleapis.com/`,
//!   `https://www.googleapis.com/` and the key file's `token_uri`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platforms::connector::PlatformError;
use crate::platforms::http as shared;
use crate::secrets::Secret;

/// The Sheets API root unless `[endpoint] base_url` overrides it.
pub const SHEETS_ROOT: &str = "https://sheets.googleapis.com/";
/// The Drive API root unless `[endpoint] base_url` overrides it.
pub const DRIVE_ROOT: &str = "https://www.googleapis.com/";
/// The token endpoint when the key file does not name one.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The grant type of the JWT bearer exchange.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The scopes asked for: read/write spreadsheets, and read-only Drive for `files.watch`.
pub const SCOPES: &str =
    "https://www.googleapis.com/auth/spreadsheets https://www.googleapis.com/auth/drive.readonly";
/// Lifetime of the signed assertion (Google allows at most one hour).
pub const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// An access token is replaced this long before it expires.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Milliseconds since the Unix epoch; injectable so that tests control expiry.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// Why a service-account key cannot be used (never shows the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential `service_account_key` is not a usable service account key: {0}")]
pub struct BadKey(pub String);

/// The fields of a service-account JSON key file that supportopsd uses.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// The service account (`…@….iam.gserviceaccount.com`): the JWT's `iss`.
    pub client_email: String,
    /// The key id (the JWT header's `kid`).
    pub private_key_id: Option<String>,
    /// The key file's token endpoint.
    pub token_uri: String,
    signing: jsonwebtoken::EncodingKey,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"***")
            .finish()
    }
}

#[derive(Deserialize)]
struct RawKey {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

impl ServiceAccountKey {
    /// Reads a JSON key file: `type` must be `service_account` when present, and
    /// `client_email` and an RSA `private_key` (PEM, PKCS#8 or PKCS#1) are required.
    pub fn parse(json: &Secret) -> Result<Self, BadKey> {
        let raw: RawKey = serde_json::from_slice(json.expose())
            .map_err(|_| BadKey("not a JSON key file".into()))?;
        if let Some(kind) = raw.kind.as_deref()
            && kind != "service_account"
        {
            return Err(BadKey(format!(
                "`type` is {kind:?}, expected \"service_account\""
            )));
        }
        let client_email = raw
            .client_email
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| BadKey("no `client_email`".into()))?;
        let pem = raw
            .private_key
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| BadKey("no `private_key`".into()))?;
        let signing = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| BadKey("`private_key` is not an RSA private key in PEM form".into()))?;
        let key = ServiceAccountKey {
            client_email,
            private_key_id: raw.private_key_id.filter(|k| !k.is_empty()),
            token_uri: raw
                .token_uri
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned()),
            signing,
        };
        // Sign once now so that a key aws-lc cannot use fails at connect time, not mid-rule.
        key.assertion(DEFAULT_TOKEN_URI, 0).map_err(|_| {
            BadKey("`private_key` cannot sign (an RSA key of 2048 bits or more is needed)".into())
        })?;
        Ok(key)
    }

    /// The signed JWT asking `aud` for an access token, issued at `now_secs`.
    pub fn assertion(&self, aud: &str, now_secs: u64) -> Result<String, PlatformError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let claims = Claims {
            iss: self.client_email.clone(),
            scope: SCOPES.to_owned(),
            aud: aud.to_owned(),
            iat: now_secs,
            exp: now_secs + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|_| {
            PlatformError::Invalid("the service account key cannot sign the token request".into())
        })
    }
}

/// The claims of the JWT bearer assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The service account email.
    pub iss: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The token endpoint.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch), at most an hour after `iat`.
    pub exp: u64,
}

/// Which API a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Sheets v4 (`v4/spreadsheets/…`).
    Sheets,
    /// Drive v3 (`drive/v3/…`).
    Drive,
}

struct CachedToken {
    header: HeaderValue,
    refresh_at_ms: u64,
}

/// An authenticated Sheets/Drive client.
#[derive(Clone)]
pub struct GoogleClient {
    http: reqwest::Client,
    sheets_root: String,
    drive_root: String,
    token_url: String,
    key: Arc<ServiceAccountKey>,
    clock: Clock,
    token: Arc<tokio::sync::Mutex<Option<CachedToken>>>,
}

impl fmt::Debug for GoogleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleClient")
            .field("sheets_root", &self.sheets_root)
            .field("drive_root", &self.drive_root)
            .field("token_url", &self.token_url)
            .field("key", &self.key)
            .field("access_token", &"***")
            .finish()
    }
}

/// Percent-encodes one path segment (an A1 range, an id): everything but unreserved characters.
pub fn encode_segment(s: &str) -> String {
    shared::percent_encode(s, b"!:")
}

impl GoogleClient {
    /// A client for `key`. `base` is the `[endpoint] base_url` override (ending in `/`): all
    /// three endpoints are served from it; else the Google hosts and the key's `token_uri`.
    pub fn new(
        http: reqwest::Client,
        base: Option<String>,
        key: ServiceAccountKey,
        clock: Clock,
    ) -> Self {
        let (sheets_root, drive_root, token_url) = match base {
            Some(b) => (b.clone(), b.clone(), format!("{b}token")),
            None => (
                SHEETS_ROOT.to_owned(),
                DRIVE_ROOT.to_owned(),
                key.token_uri.clone(),
            ),
        };
        GoogleClient {
            http,
            sheets_root,
            drive_root,
            token_url,
            key: Arc::new(key),
            clock,
            token: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The service account's email.
    pub fn client_email(&self) -> &str {
        &self.key.client_email
    }

    /// The token endpoint used (and the assertion's `aud`).
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// Now, in milliseconds since the epoch, from the client's clock.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// A valid `Bearer` header, and whether it was just issued.
    async fn bearer(&self) -> Result<(HeaderValue, bool), PlatformError> {
        let mut cached = self.token.lock().await;
        let now = self.now_ms();
        if let Some(t) = cached.as_ref()
            && now < t.refresh_at_ms
        {
            return Ok((t.header.clone(), false));
        }
        let (header, expires_in) = self.exchange(now / 1000).await?;
        let lifetime_ms = expires_in.saturating_mul(1000);
        let margin = u64::try_from(TOKEN_REFRESH_MARGIN.as_millis())
            .unwrap_or(u64::MAX)
            .min(lifetime_ms / 2);
        *cached = Some(CachedToken {
            header: header.clone(),
            refresh_at_ms: now.saturating_add(lifetime_ms - margin),
        });
        Ok((header, true))
    }

    /// Forgets the cached access token (after a 401).
    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// The JWT bearer exchange: `POST <token_url>` with the signed assertion.
    async fn exchange(&self, now_secs: u64) -> Result<(HeaderValue, u64), PlatformError> {
        let assertion = self.key.assertion(&self.token_url, now_secs)?;
        let body = crate::platforms::slack::client::form_encode(&[
            ("grant_type".to_owned(), JWT_BEARER_GRANT.to_owned()),
            ("assertion".to_owned(), assertion),
        ]);
        let resp = self
            .http
            .post(&self.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(shared::transport_error)?;
        let status = resp.status();
        let retry_after = shared::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(shared::transport_error)?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let code = answer.get("error").and_then(Value::as_str).unwrap_or("");
            let description = answer
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let detail = format!("token endpoint: {code} {description}");
            return Err(match (status.as_u16(), code) {
                // `invalid_grant` (bad signature, unknown account, clock skew) and
                // `invalid_client` (deleted or disabled key) come as 400/401.
                (400 | 401 | 403, "invalid_grant" | "invalid_client" | "unauthorized_client") => {
                    PlatformError::Unauthorized {
                        detail: shared::excerpt(&detail),
                    }
                }
                _ => shared::classify_status(status, retry_after, &detail),
            });
        }
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PlatformError::Rejected {
                status: status.as_u16(),
                detail: "token endpoint: the answer has no `access_token`".into(),
            })?;
        let expires_in = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(3600);
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            PlatformError::Rejected {
                status: status.as_u16(),
                detail: "token endpoint: the access token is not valid in a header".into(),
            }
        })?;
        header.set_sensitive(true);
        Ok((header, expires_in))
    }

    /// Calls `method <root><path>` with `query` and an optional JSON body, authenticated, and
    /// returns the answer's JSON (`Value::Null` for an empty body).
    pub async fn call(
        &self,
        api: Api,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, PlatformError> {
        let root = match api {
            Api::Sheets => &self.sheets_root,
            Api::Drive => &self.drive_root,
        };
        let mut url = reqwest::Url::parse(&format!("{root}{path}"))
            .map_err(|_| PlatformError::Invalid(format!("not a valid URL: {root}{path}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        // A cached token Google no longer accepts (revoked, or the clock drifted) is replaced
        // and the call made once more: a 401 means nothing was done. A fresh token that is
        // refused is a real authentication failure.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (auth, fresh) = self.bearer().await?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(http::header::AUTHORIZATION, auth)
                .header(http::header::ACCEPT, "application/json");
            if let Some(b) = body {
                req = shared::json_body(req, b)?;
            }
            let resp = req.send().await.map_err(shared::transport_error)?;
            let status = resp.status();
            let retry_after = shared::retry_after(resp.headers());
            let bytes = resp.bytes().await.map_err(shared::transport_error)?;
            if status.is_success() {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&bytes).map_err(|_| PlatformError::Rejected {
                    status: status.as_u16(),
                    detail: format!(
                        "the answer is not JSON: {}",
                        shared::excerpt(&String::from_utf8_lossy(&bytes))
                    ),
                });
            }
            if status == StatusCode::UNAUTHORIZED {
                self.forget_token().await;
                if !fresh && attempt == 1 {
                    continue;
                }
            }
            return Err(classify(status, retry_after, &bytes));
        }
    }
}

/// Classifies a Google error answer (see the module docs).
pub fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> PlatformError {
    let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = answer.get("error");
    let text = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str);
    let reasons: Vec<&str> = error
        .and_then(|e| e.get("errors"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("reason").and_then(Value::as_str))
        .chain(
            error
                .and_then(|e| e.get("details"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|d| d.get("reason").and_then(Value::as_str)),
        )
        .collect();
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || text("status") == Some("RESOURCE_EXHAUSTED")
        || reasons.iter().any(|r| {
            matches!(
                *r,
                "rateLimitExceeded" | "userRateLimitExceeded" | "RATE_LIMIT_EXCEEDED"
            )
        });
    if rate_limited {
        return PlatformError::RateLimited { retry_after };
    }
    let mut detail = match (text("status"), text("message")) {
        (Some(s), Some(m)) => format!("{s}: {m}"),
        (None, Some(m)) => m.to_owned(),
        (Some(s), None) => s.to_owned(),
        (None, None) => String::from_utf8_lossy(body).into_owned(),
    };
    if detail.contains("WebHook callback channel") {
        detail.push_str(
            " (Drive only delivers to a verified domain: verify the public URL's domain for the Google Cloud project)",
        );
    } else if matches!(status.as_u16(), 403 | 404) {
        detail.push_str(" (is the spreadsheet shared with the service account's client_email?)");
    }
    shared::classify_status(status, retry_after, &shared::excerpt(&detail))
}
