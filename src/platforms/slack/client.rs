//! A thin Slack Web API client: one authenticated `POST <base>/<method>` per call, and the
//! classification of Slack's answers into [`PlatformError`].
//!
//! Slack answers almost every failure with HTTP 200 and `{"ok": false, "error": "<code>"}`, so
//! the body's `ok` is always checked; real HTTP statuses mean rate limiting (429 with
//! `Retry-After`) or outages (5xx). The token always travels in `Authorization: Bearer …`
//! (marked sensitive), never in a form field or a URL, and no error detail contains it.

use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use serde_json::{Map, Value};

use crate::platforms::connector::PlatformError;
use crate::platforms::http as shared;
use crate::secrets::Secret;

/// Which of the integration's tokens a call uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The bot token (`xoxb-…`): every method but `users.profile.set`.
    Bot,
    /// The user token (`xoxp-…`): `users.profile.set`.
    User,
    /// The app configuration token (`xoxe.xoxp-…`): the `apps.manifest.*` methods.
    AppConfig,
}

impl TokenKind {
    /// The credential field holding this token.
    pub fn field(self) -> &'static str {
        match self {
            TokenKind::Bot => "bot_token",
            TokenKind::User => "user_token",
            TokenKind::AppConfig => "app_config_token",
        }
    }
}

/// The body of a Web API call.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// No body (e.g. `auth.test`).
    Empty,
    /// `application/json; charset=utf-8`.
    Json(Value),
    /// `application/x-www-form-urlencoded`, fields in order (methods that do not take JSON,
    /// such as the external upload pair).
    Form(Vec<(String, String)>),
}

/// An authenticated Slack Web API client.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: String,
    bot: HeaderValue,
    user: Option<HeaderValue>,
    app_config: Option<HeaderValue>,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient")
            .field("base", &self.base)
            .field("bot_token", &"***")
            .field("user_token", &self.user.as_ref().map(|_| "***"))
            .field("app_config_token", &self.app_config.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why a token cannot be used (never shows the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "credential `{field}` is not a valid token (not text, or characters not allowed in an HTTP header)"
)]
pub struct BadToken {
    /// The credential field.
    pub field: &'static str,
}

/// `Bearer <token>` as a sensitive header value.
fn bearer(token: &Secret, kind: TokenKind) -> Result<HeaderValue, BadToken> {
    let bad = || BadToken {
        field: kind.field(),
    };
    let text = token.expose_str().map_err(|_| bad())?;
    let mut value = HeaderValue::from_str(&format!("Bearer {}", text.trim())).map_err(|_| bad())?;
    value.set_sensitive(true);
    Ok(value)
}

impl SlackClient {
    /// A client calling `base` (ending in `/`, e.g. `https://slack.com/api/`) with these tokens.
    pub fn new(
        http: reqwest::Client,
        base: String,
        bot_token: &Secret,
        user_token: Option<&Secret>,
    ) -> Result<Self, BadToken> {
        Ok(Self {
            http,
            base,
            bot: bearer(bot_token, TokenKind::Bot)?,
            user: user_token.map(|t| bearer(t, TokenKind::User)).transpose()?,
            app_config: None,
        })
    }

    /// The same client, also holding the app configuration token used by `apps.manifest.*`.
    pub fn with_app_config_token(mut self, token: &Secret) -> Result<Self, BadToken> {
        self.app_config = Some(bearer(token, TokenKind::AppConfig)?);
        Ok(self)
    }

    /// Whether an app configuration token is configured.
    pub fn has_app_config_token(&self) -> bool {
        self.app_config.is_some()
    }

    /// Whether a user token is configured.
    pub fn has_user_token(&self) -> bool {
        self.user.is_some()
    }

    /// The base URL calls go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Calls `method` and returns the answer's fields when `ok` is true; every other outcome is
    /// a classified [`PlatformError`].
    pub async fn call(
        &self,
        method: &str,
        token: TokenKind,
        body: Body,
    ) -> Result<Map<String, Value>, PlatformError> {
        let auth = match token {
            TokenKind::Bot => self.bot.clone(),
            TokenKind::User => self.user.clone().ok_or_else(|| {
                PlatformError::Invalid(format!(
                    "{method} needs the `user_token` credential, which the integration does not set"
                ))
            })?,
            TokenKind::AppConfig => self.app_config.clone().ok_or_else(|| {
                PlatformError::Invalid(format!(
                    "{method} needs the `app_config_token` credential, which the integration does not set"
                ))
            })?,
        };
        self.send(method, Some(auth), body).await
    }

    /// Calls an `apps.manifest.*` method with `token`, an app configuration token the caller
    /// holds (it rotates: see [`Self::rotate`]).
    pub async fn call_app_config(
        &self,
        method: &str,
        token: &Secret,
        body: Body,
    ) -> Result<Map<String, Value>, PlatformError> {
        let auth = bearer(token, TokenKind::AppConfig)
            .map_err(|e| PlatformError::Invalid(e.to_string()))?;
        self.send(method, Some(auth), body).await
    }

    /// `tooling.tokens.rotate`: exchanges an app configuration refresh token for a new token
    /// pair (`token`, `refresh_token`, `iat`, `exp`). The method takes no token; the refresh
    /// token goes in the form body, the only place Slack reads it
    /// (<https://api.slack.com/methods/tooling.tokens.rotate>).
    pub async fn rotate(
        &self,
        refresh_token: &Secret,
    ) -> Result<Map<String, Value>, PlatformError> {
        let refresh = refresh_token
            .expose_str()
            .map_err(|_| {
                PlatformError::Invalid(
                    "credential `app_config_refresh_token` is not text".to_owned(),
                )
            })?
            .trim()
            .to_owned();
        self.send(
            "tooling.tokens.rotate",
            None,
            Body::Form(vec![("refresh_token".into(), refresh)]),
        )
        .await
    }

    async fn send(
        &self,
        method: &str,
        auth: Option<HeaderValue>,
        body: Body,
    ) -> Result<Map<String, Value>, PlatformError> {
        let url = format!("{}{method}", self.base);
        let mut req = self
            .http
            .post(url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(auth) = auth {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => {
                let bytes = serde_json::to_vec(&v)
                    .map_err(|e| PlatformError::Invalid(format!("cannot encode the body: {e}")))?;
                req.header(
                    http::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(bytes)
            }
            Body::Form(fields) => req
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form_encode(&fields)),
        };
        let resp = req.send().await.map_err(shared::transport_error)?;
        let status = resp.status();
        let retry_after = shared::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(shared::transport_error)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(shared::classify_status(status, retry_after, &text));
        }
        let answer: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| PlatformError::Rejected {
                status: status.as_u16(),
                detail: format!(
                    "{method}: the answer is not a JSON object: {}",
                    shared::excerpt(&String::from_utf8_lossy(&bytes))
                ),
            })?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            if let Some(w) = answer.get("warning").and_then(Value::as_str) {
                tracing::debug!(method, warning = w, "slack warning");
            }
            return Ok(answer);
        }
        Err(classify_answer(method, &answer, retry_after))
    }

    /// Posts `bytes` to an upload URL returned by `files.getUploadURLExternal`. The URL is
    /// pre-signed, so no token is sent to it.
    pub async fn upload(&self, upload_url: &str, bytes: Vec<u8>) -> Result<(), PlatformError> {
        let resp = self
            .http
            .post(upload_url)
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(shared::transport_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = shared::retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(shared::classify_status(
            status,
            retry_after,
            &format!("file upload: {text}"),
        ))
    }
}

/// Classifies an `{"ok": false, "error": "<code>"}` answer (see [`classify_error_code`]).
/// `invalid_arguments` and `missing_scope` details carry what Slack says is wrong, and so do
/// the manifest methods' `errors` lists (`invalid_manifest`: each message with its pointer).
pub fn classify_answer(
    method: &str,
    answer: &Map<String, Value>,
    retry_after: Option<Duration>,
) -> PlatformError {
    let code = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    let mut detail = format!("{method}: {code}");
    if let Some(needed) = answer.get("needed").and_then(Value::as_str) {
        detail.push_str(&format!(" (needed: {needed})"));
    }
    if let Some(fix) = fix_for(code, answer.get("needed").and_then(Value::as_str)) {
        detail.push_str(&format!(": {fix}"));
    }
    let messages: Vec<&str> = answer
        .get("response_metadata")
        .and_then(|m| m.get("messages"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !messages.is_empty() {
        detail.push_str(&format!(" ({})", shared::excerpt(&messages.join("; "))));
    }
    let errors = manifest_errors(answer);
    if !errors.is_empty() {
        detail.push_str(&format!(": {}", shared::excerpt(&errors.join("; "))));
    }
    classify_error_code(code, detail, retry_after)
}

/// What an operator does about a Slack error code that has one fix (docs/integrations/slack.md
/// says more).
pub fn fix_for(code: &str, needed: Option<&str>) -> Option<String> {
    Some(match code {
        "not_in_channel" => "the bot is not a member of the channel: invite it there (`/invite @<bot name>` in the channel), then retry".to_owned(),
        "missing_scope" => format!(
            "add the bot scope {} to the Slack app (OAuth & Permissions), then reinstall the app to the workspace",
            needed.map_or_else(|| "Slack names in `needed`".to_owned(), |n| format!("`{n}`"))
        ),
        "channel_not_found" => "the channel does not exist or the bot cannot see it: check the id or `#name`, and invite the bot to a private channel".to_owned(),
        "is_archived" => "the channel is archived: unarchive it or name another".to_owned(),
        "token_expired" => "app configuration tokens expire after 12 hours: set the `app_config_refresh_token` credential as well, and supportopsd rotates the pair".to_owned(),
        "invalid_refresh_token" => "the app configuration refresh token was refused (already used, or revoked): generate a new token pair at api.slack.com/apps (Your App Configuration Tokens) and set both `app_config_token` and `app_config_refresh_token`".to_owned(),
        _ => return None,
    })
}

/// The `errors` list of an `apps.manifest.*` answer, one `message (at pointer)` per entry.
pub fn manifest_errors(answer: &Map<String, Value>) -> Vec<String> {
    answer
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unspecified error");
            match e.get("pointer").and_then(Value::as_str) {
                Some(p) if !p.is_empty() => format!("{message} (at {p})"),
                _ => message.to_owned(),
            }
        })
        .collect()
}

/// Classifies a Slack error code: `ratelimited` → [`PlatformError::RateLimited`] (with the
/// `Retry-After` delay), auth codes → [`PlatformError::Unauthorized`], missing targets →
/// [`PlatformError::NotFound`], Slack-side failures → [`PlatformError::Transient`], anything
/// else → [`PlatformError::Rejected`] with status 200.
pub fn classify_error_code(
    code: &str,
    detail: String,
    retry_after: Option<Duration>,
) -> PlatformError {
    match code {
        "ratelimited" | "rate_limited" => PlatformError::RateLimited { retry_after },
        "invalid_auth"
        | "invalid_refresh_token"
        | "not_authed"
        | "token_revoked"
        | "token_expired"
        | "account_inactive"
        | "missing_scope"
        | "no_permission"
        | "not_allowed_token_type"
        | "ekm_access_denied" => PlatformError::Unauthorized { detail },
        "channel_not_found" | "user_not_found" | "users_not_found" | "no_user" => {
            PlatformError::NotFound { detail }
        }
        // "The method was called via a POST request, but the POST data was either missing or
        // truncated" (Slack's method docs, `request_timeout`): nothing was done.
        "request_timeout" => PlatformError::NotPerformed { detail },
        // `internal_error`: "It's possible some aspect of the operation succeeded before the
        // error was raised" (Slack's method docs): it may have acted.
        "internal_error" | "fatal_error" | "service_unavailable" => PlatformError::Transient {
            detail,
            retry_after,
        },
        _ => PlatformError::Rejected {
            status: 200,
            detail,
        },
    }
}

/// `application/x-www-form-urlencoded` encoding of `fields`.
pub fn form_encode(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(k, &mut out);
        out.push('=');
        encode_component(v, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    // application/x-www-form-urlencoded: a space is `+`, `*` stays as it is.
    for (i, part) in s.split(' ').enumerate() {
        if i > 0 {
            out.push('+');
        }
        shared::percent_encode_into(part, b"*", out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        let f = vec![
            ("filename".to_owned(), "a b&c=d.csv".to_owned()),
            ("x".to_owned(), "é/[]".to_owned()),
            ("y".to_owned(), " *~+ ".to_owned()),
        ];
        assert_eq!(
            form_encode(&f),
            "filename=a+b%26c%3Dd.csv&x=%C3%A9%2F%5B%5D&y=+*~%2B+"
        );
    }

    #[test]
    fn bad_tokens_are_named_not_shown() {
        let t = Secret::from("xoxb-1\nsecret".to_owned());
        let e = bearer(&t, TokenKind::Bot).err();
        let text = format!(
            "{e:?} {}",
            e.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        assert!(text.contains("bot_token"));
        assert!(!text.contains("secret"), "{text}");
    }
}
