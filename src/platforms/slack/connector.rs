//! The live Slack connector: `auth.test` for checks and the five catalogued actions
//! ([`super::actions`]) on the Web API.
//!
//! | action | calls |
//! |---|---|
//! | `send_message` | `chat.postMessage` (JSON) |
//! | `create_channel` | `conversations.create` (JSON) |
//! | `invite_user` | `conversations.invite` (JSON, `users` comma-separated) |
//! | `upload_file` | `files.getUploadURLExternal` (form) → POST the bytes to `upload_url` → `files.completeUploadExternal` (form) |
//! | `set_status` | `users.profile.set` (JSON) with the **user** token |
//!
//! With `app_config_token` and `app_id`, [`SlackConnector::sync_request_url`] also sets the
//! app's Events API request URL and bot events through the manifest API
//! ([`super::registration`]).
//!
//! Parameters are checked against the catalogue before anything is sent: an unknown name, a
//! missing required one or a value of the wrong type is [`PlatformError::Invalid`]. Rendered
//! values are taken leniently where the meaning is plain (`"true"` for a boolean, `"42"` for an
//! integer, `"U1,U2"` for a list of user ids); `null` counts as absent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::client::{BadToken, Body, SlackClient, TokenKind};
use super::registration;
use crate::manifest::Integration;
use crate::platforms::connector::before_create;
use crate::platforms::connector::{
    ActionCall, ActionOutput, ConnectError, Connector, Health, PlatformError, Registration,
    RegistrationOutcome, WebhookSync, WebhookTarget,
};
use crate::platforms::http;
use crate::platforms::params::{self, Params};
use crate::secrets::ResolveContext;

/// The Web API base URL unless `[endpoint] base_url` overrides it.
pub const DEFAULT_BASE_URL: &str = "https://slack.com/api/";

/// Timeout of one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest channel name Slack accepts.
const MAX_CHANNEL_NAME: usize = 80;

/// Longest status text Slack accepts.
const MAX_STATUS_TEXT: usize = 100;

/// Builds the Slack connector of `integration`: resolves `bot_token` (required),
/// `user_token` (optional, needed by `set_status`), `app_config_token` and `app_id` (optional,
/// both needed to register the request URL), and reads `default_channel` and `unfurl_links`
/// from `[config]`.
pub fn connect(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<Arc<dyn Connector>, ConnectError> {
    Ok(Arc::new(connect_slack(integration, ctx)?))
}

/// [`connect`], keeping the Slack type (for [`SlackConnector::sync_request_url`]).
pub fn connect_slack(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<SlackConnector, ConnectError> {
    let bot = http::credential(integration, TokenKind::Bot.field(), ctx)?
        .ok_or_else(|| ConnectError::Missing(TokenKind::Bot.field().to_owned()))?;
    let user = http::credential(integration, TokenKind::User.field(), ctx)?;
    let http_client = http::client(REQUEST_TIMEOUT)?;
    let base = http::base_url(integration, DEFAULT_BASE_URL);
    let mut client = SlackClient::new(http_client, base, &bot, user.as_ref())
        .map_err(|e: BadToken| ConnectError::Client(e.to_string()))?;
    if let Some(t) = http::credential(integration, TokenKind::AppConfig.field(), ctx)? {
        client = client
            .with_app_config_token(&t)
            .map_err(|e: BadToken| ConnectError::Client(e.to_string()))?;
    }
    let app_id = http::credential(integration, "app_id", ctx)?
        .and_then(|s| s.expose_str().ok().map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty());
    let default_channel = integration
        .config
        .get("default_channel")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let unfurl_links = integration
        .config
        .get("unfurl_links")
        .and_then(Value::as_bool);
    Ok(SlackConnector {
        client,
        default_channel,
        unfurl_links,
        app_id,
    })
}

/// The live Slack connector.
#[derive(Debug)]
pub struct SlackConnector {
    client: SlackClient,
    default_channel: Option<String>,
    unfurl_links: Option<bool>,
    app_id: Option<String>,
}

#[async_trait::async_trait]
impl Connector for SlackConnector {
    async fn check(&self) -> Result<Health, PlatformError> {
        let a = self
            .client
            .call("auth.test", TokenKind::Bot, Body::Empty)
            .await?;
        let s = |k: &str| a.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        let name = s("user").unwrap_or("?");
        let team = s("team").or(s("team_id")).unwrap_or("?");
        let mut ids = Vec::new();
        if let Some(u) = s("user_id") {
            ids.push(u.to_owned());
        }
        if let Some(b) = s("bot_id") {
            ids.push(format!("bot {b}"));
        }
        let ids = if ids.is_empty() {
            String::new()
        } else {
            format!(" ({})", ids.join(", "))
        };
        Ok(Health {
            // Events caused by this app carry its `bot_id` (the event's actor); user-token-only
            // setups have no bot id, so the user id stands in.
            identity: s("bot_id").or(s("user_id")).map(str::to_owned),
            detail: format!("authenticated as @{name}{ids} in {team}"),
        })
    }

    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        // What a failure that may have reached the platform becomes for an action that
        // creates something (`RESEND` in actions.rs): never a blind retry.
        let outcome: Result<ActionOutput, PlatformError> = async {
            let spec = params::action_spec(&super::DESCRIPTOR, &call.action)?;
            let p = Params::check(spec, &call.parameters)?;
            let result = match spec.name {
                "send_message" => self.send_message(&p).await?,
                "create_channel" => self.create_channel(&p).await?,
                "invite_user" => self.invite_user(&p).await?,
                "upload_file" => self.upload_file(&p).await?,
                "set_status" => self.set_status(&p).await?,
                other => {
                    return Err(PlatformError::Invalid(format!(
                        "the slack connector cannot perform `{other}` yet"
                    )));
                }
            };
            Ok(ActionOutput { result })
        }
        .await;
        crate::platforms::connector::guard_resend(super::DESCRIPTOR.kind, &call.action, outcome)
    }

    /// Through the manifest API when `app_config_token` and `app_id` are set; else what to
    /// enter in the app settings. Removal deletes nothing: the app is the operator's, and its
    /// request URL is left for them to change.
    async fn sync_webhook(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        if !self.can_register() {
            return Ok(WebhookSync::Manual(format!(
                "register {} as the Events API request URL in the Slack app settings (Event Subscriptions) and subscribe to the bot events: {}; or set the `app_config_token` and `app_id` credentials and supportopsd registers it",
                target.url,
                registration::bot_events(&target.events).join(", ")
            )));
        }
        let outcome = match self.sync_request_url(&target.url, &target.events).await? {
            RegistrationOutcome::Unchanged => RegistrationOutcome::Unchanged,
            _ => target.change_outcome(),
        };
        Ok(WebhookSync::Registered {
            outcome,
            registration: Registration {
                ids: self.app_id.iter().cloned().collect(),
                url: target.url.clone(),
                events: target.events.clone(),
                expires_at_ms: None,
                secret: None,
            },
        })
    }
}

impl SlackConnector {
    /// Whether both `app_config_token` and `app_id` are set, so that
    /// [`Self::sync_request_url`] can run.
    pub fn can_register(&self) -> bool {
        self.client.has_app_config_token() && self.app_id.is_some()
    }

    /// Makes the app send `events` (catalogue names, mapped by
    /// [`registration::bot_events`]) to `url`: `apps.manifest.export`; when the request URL and
    /// the set of bot events already match, [`RegistrationOutcome::Unchanged`] without another
    /// call; else the exported manifest with only those two fields changed goes through
    /// `apps.manifest.validate` (its `errors` become a [`PlatformError::Rejected`]) and
    /// `apps.manifest.update`, and the outcome is [`RegistrationOutcome::Updated`].
    ///
    /// Slack checks a new request URL with a `url_verification` challenge, so the daemon must
    /// already be serving `url`. Without `app_config_token` or `app_id` this is
    /// [`PlatformError::Invalid`] and sends nothing; callers check [`Self::can_register`].
    pub async fn sync_request_url(
        &self,
        url: &str,
        events: &[String],
    ) -> Result<RegistrationOutcome, PlatformError> {
        let app_id = self.app_id.as_deref().ok_or_else(|| {
            PlatformError::Invalid(
                "registering the request URL needs the `app_id` credential".into(),
            )
        })?;
        if !self.client.has_app_config_token() {
            return Err(PlatformError::Invalid(
                "registering the request URL needs the `app_config_token` credential".into(),
            ));
        }
        let wanted = registration::bot_events(events);
        let exported = self
            .client
            .call(
                "apps.manifest.export",
                TokenKind::AppConfig,
                Body::Form(vec![("app_id".into(), app_id.to_owned())]),
            )
            .await?;
        let manifest = exported
            .get("manifest")
            .ok_or_else(|| PlatformError::Rejected {
                status: 200,
                detail: "apps.manifest.export: the answer has no `manifest`".into(),
            })?;
        if registration::matches(manifest, url, &wanted) {
            return Ok(RegistrationOutcome::Unchanged);
        }
        let edited = registration::apply(manifest, url, &wanted).ok_or_else(|| {
            PlatformError::Rejected {
                status: 200,
                detail: "apps.manifest.export: the manifest's `settings.event_subscriptions` is not an object".into(),
            }
        })?;
        let text = serde_json::to_string(&edited)
            .map_err(|e| PlatformError::Invalid(format!("cannot encode the manifest: {e}")))?;
        self.client
            .call(
                "apps.manifest.validate",
                TokenKind::AppConfig,
                Body::Form(vec![
                    ("manifest".into(), text.clone()),
                    ("app_id".into(), app_id.to_owned()),
                ]),
            )
            .await?;
        self.client
            .call(
                "apps.manifest.update",
                TokenKind::AppConfig,
                Body::Form(vec![
                    ("app_id".into(), app_id.to_owned()),
                    ("manifest".into(), text),
                ]),
            )
            .await?;
        Ok(RegistrationOutcome::Updated)
    }

    /// `channel`, else the config's `default_channel`.
    fn channel(&self, p: &Params<'_>) -> Option<String> {
        p.string("channel")
            .filter(|c| !c.is_empty())
            .or_else(|| self.default_channel.clone())
    }

    async fn send_message(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let channel = self.channel(p).ok_or_else(|| {
            PlatformError::Invalid(
                "send_message: no `channel`, and the integration has no `default_channel`".into(),
            )
        })?;
        let text = match (p.string("message"), p.string("text")) {
            (Some(m), Some(t)) if m != t => {
                return Err(PlatformError::Invalid(
                    "send_message: give `message` or `text`, not both".into(),
                ));
            }
            (m, t) => m.or(t),
        };
        let mut body = Map::new();
        body.insert("channel".into(), Value::String(channel.clone()));
        if let Some(t) = text {
            body.insert("text".into(), Value::String(t));
        }
        for key in ["blocks", "attachments", "metadata"] {
            if let Some(v) = p.raw(key) {
                body.insert(key.into(), v.clone());
            }
        }
        for key in ["thread_ts", "username", "icon_emoji", "icon_url"] {
            if let Some(v) = p.string(key) {
                body.insert(key.into(), Value::String(v));
            }
        }
        for key in ["reply_broadcast", "unfurl_media", "mrkdwn"] {
            if let Some(v) = p.bool(key) {
                body.insert(key.into(), Value::Bool(v));
            }
        }
        if let Some(v) = p.bool("unfurl_links").or(self.unfurl_links) {
            body.insert("unfurl_links".into(), Value::Bool(v));
        }
        let a = self
            .client
            .call(
                "chat.postMessage",
                TokenKind::Bot,
                Body::Json(Value::Object(body)),
            )
            .await?;
        let ts = a.get("ts").cloned().unwrap_or(Value::Null);
        let thread_ts = a
            .get("message")
            .and_then(|m| m.get("thread_ts"))
            .cloned()
            .or_else(|| p.string("thread_ts").map(Value::String))
            // A top-level message: replying to it starts its thread.
            .unwrap_or_else(|| ts.clone());
        Ok(json!({
            "ts": ts,
            "channel": a.get("channel").cloned().unwrap_or(Value::String(channel)),
            "thread_ts": thread_ts,
        }))
    }

    async fn create_channel(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let name = p.string("name").unwrap_or_default();
        if name.is_empty() {
            return Err(PlatformError::Invalid(
                "create_channel: `name` is empty".into(),
            ));
        }
        if name.chars().count() > MAX_CHANNEL_NAME {
            return Err(PlatformError::Invalid(format!(
                "create_channel: `name` is longer than {MAX_CHANNEL_NAME} characters"
            )));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c == '.' || c.is_uppercase())
        {
            return Err(PlatformError::Invalid(format!(
                "create_channel: `name` {name:?} must be lower case, without spaces or periods"
            )));
        }
        let mut body = Map::new();
        body.insert("name".into(), Value::String(name.clone()));
        if let Some(v) = p.bool("is_private") {
            body.insert("is_private".into(), Value::Bool(v));
        }
        if let Some(v) = p.string("team_id") {
            body.insert("team_id".into(), Value::String(v));
        }
        let a = self
            .client
            .call(
                "conversations.create",
                TokenKind::Bot,
                Body::Json(Value::Object(body)),
            )
            .await?;
        let ch = a.get("channel");
        Ok(json!({
            "id": ch.and_then(|c| c.get("id")).cloned().unwrap_or(Value::Null),
            "name": ch.and_then(|c| c.get("name")).cloned().unwrap_or(Value::String(name)),
        }))
    }

    async fn invite_user(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let channel = p
            .string("channel")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| PlatformError::Invalid("invite_user: `channel` is empty".into()))?;
        let users = p.strings("users").unwrap_or_default();
        if users.is_empty() {
            return Err(PlatformError::Invalid(
                "invite_user: `users` names no user".into(),
            ));
        }
        let mut body = Map::new();
        body.insert("channel".into(), Value::String(channel.clone()));
        body.insert("users".into(), Value::String(users.join(",")));
        if let Some(v) = p.bool("force") {
            body.insert("force".into(), Value::Bool(v));
        }
        let a = self
            .client
            .call(
                "conversations.invite",
                TokenKind::Bot,
                Body::Json(Value::Object(body)),
            )
            .await?;
        Ok(json!({
            "channel": a
                .get("channel")
                .and_then(|c| c.get("id"))
                .cloned()
                .unwrap_or(Value::String(channel)),
        }))
    }

    async fn upload_file(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let filename = p.string("filename").unwrap_or_default();
        if filename.trim().is_empty() {
            return Err(PlatformError::Invalid(
                "upload_file: `filename` is empty".into(),
            ));
        }
        let content = p.string("content").unwrap_or_default().into_bytes();
        let channel = self.channel(p);
        if channel.is_none() && p.string("thread_ts").is_some() {
            return Err(PlatformError::Invalid(
                "upload_file: `thread_ts` needs a `channel` (or config `default_channel`)".into(),
            ));
        }

        let mut step1 = vec![
            ("filename".to_owned(), filename.clone()),
            ("length".to_owned(), content.len().to_string()),
        ];
        for key in ["alt_txt", "snippet_type"] {
            if let Some(v) = p.string(key) {
                step1.push((key.to_owned(), v));
            }
        }
        let a = self
            .client
            .call(
                "files.getUploadURLExternal",
                TokenKind::Bot,
                Body::Form(step1),
            )
            .await
            // Nothing is shared before `files.completeUploadExternal`.
            .map_err(before_create)?;
        let (Some(upload_url), Some(file_id)) = (
            a.get("upload_url").and_then(Value::as_str),
            a.get("file_id").and_then(Value::as_str),
        ) else {
            return Err(PlatformError::Rejected {
                status: 200,
                detail: "files.getUploadURLExternal: the answer has no `upload_url` or `file_id`"
                    .into(),
            });
        };

        self.client
            .upload(upload_url, content)
            .await
            .map_err(before_create)?;

        let title = p.string("title").unwrap_or_else(|| filename.clone());
        let files = json!([{ "id": file_id, "title": title }]).to_string();
        let mut step3 = vec![("files".to_owned(), files)];
        if let Some(c) = channel {
            step3.push(("channel_id".to_owned(), c));
        }
        for key in ["initial_comment", "thread_ts"] {
            if let Some(v) = p.string(key) {
                step3.push((key.to_owned(), v));
            }
        }
        let a = self
            .client
            .call(
                "files.completeUploadExternal",
                TokenKind::Bot,
                Body::Form(step3),
            )
            .await?;
        let file = a
            .get("files")
            .and_then(Value::as_array)
            .and_then(|f| f.first());
        Ok(json!({
            "id": file
                .and_then(|f| f.get("id"))
                .cloned()
                .unwrap_or_else(|| Value::String(file_id.to_owned())),
            "title": file
                .and_then(|f| f.get("title"))
                .cloned()
                .unwrap_or(Value::String(title)),
        }))
    }

    async fn set_status(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        if !self.client.has_user_token() {
            return Err(PlatformError::Invalid(
                "set_status needs the `user_token` credential (a user token with users.profile:write); bots have no status".into(),
            ));
        }
        let mut text = p.string("status_text");
        let mut emoji = p.string("status_emoji");
        if text
            .as_deref()
            .is_some_and(|t| t.chars().count() > MAX_STATUS_TEXT)
        {
            return Err(PlatformError::Invalid(format!(
                "set_status: `status_text` is longer than {MAX_STATUS_TEXT} characters"
            )));
        }
        // Slack clears a status only when both are empty: an empty one alone means "clear".
        match (text.as_deref(), emoji.as_deref()) {
            (Some(""), None) => emoji = Some(String::new()),
            (None, Some("")) => text = Some(String::new()),
            _ => {}
        }
        let expiration = p.int("expiration").unwrap_or(0);
        if expiration < 0 {
            return Err(PlatformError::Invalid(
                "set_status: `expiration` must be a Unix time, or 0 for never".into(),
            ));
        }
        let mut profile = Map::new();
        if let Some(t) = &text {
            profile.insert("status_text".into(), Value::String(t.clone()));
        }
        if let Some(e) = &emoji {
            profile.insert("status_emoji".into(), Value::String(e.clone()));
        }
        profile.insert("status_expiration".into(), Value::from(expiration));
        let mut body = Map::new();
        body.insert("profile".into(), Value::Object(profile));
        if let Some(u) = p.string("user").filter(|u| !u.is_empty()) {
            body.insert("user".into(), Value::String(u));
        }
        let a = self
            .client
            .call(
                "users.profile.set",
                TokenKind::User,
                Body::Json(Value::Object(body)),
            )
            .await?;
        let got = |k: &str| a.get("profile").and_then(|p| p.get(k)).cloned();
        Ok(json!({
            "status_text": got("status_text").unwrap_or_else(|| text.map(Value::String).unwrap_or(Value::Null)),
            "status_emoji": got("status_emoji").unwrap_or_else(|| emoji.map(Value::String).unwrap_or(Value::Null)),
            "expiration": got("status_expiration").unwrap_or_else(|| Value::from(expiration)),
        }))
    }
}
