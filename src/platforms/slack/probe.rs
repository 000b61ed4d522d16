//! Read-only probes of a real Slack workspace and app (`supportopsd check-platform`). Slack's
//! Web API takes reads as `POST` too, so the guard ([`crate::platforms::probe::read_only`])
//! lets through exactly two methods, both reads: `auth.test` and `apps.manifest.export`.
//!
//! | area | request | assumption |
//! |---|---|---|
//! | connection | `auth.test` (bot token; user token when set) | the answer names the bot user (`user_id`) and the bot (`bot_id`): the loop guard needs both |
//! | app configuration token | `apps.manifest.export` | the token is accepted (it expires 12 hours after it was issued) |
//! | manifest | the exported manifest | the request URL is this daemon's; the bot events the integration needs are subscribed; a manifest sync keeps the app's other bot events; the bot scopes those events need are granted; bot token rotation is off (the connector never refreshes the bot token); Socket Mode is off (events come over HTTP) |

use http::Method;
use serde_json::{Map, Value};

use super::client::{Body, SlackClient, TokenKind};
use super::registration;
use crate::platforms::connector::PlatformError;
use crate::platforms::probe::{Finding, ProbeTarget, unreadable};

/// The Slack methods a probe may call: reads, though Slack takes them as `POST`.
pub const READ_METHODS: &[&str] = &["auth.test", "apps.manifest.export"];

/// Sends only the methods of [`READ_METHODS`]: the probe holds a [`reader::Reader`], never the
/// client.
mod reader {
    use super::{Body, Map, Method, PlatformError, READ_METHODS, SlackClient, TokenKind, Value};
    use crate::platforms::probe::read_only;

    /// The Slack client, reduced to read methods.
    pub(super) struct Reader<'a> {
        client: &'a SlackClient,
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(client: &'a SlackClient) -> Self {
            Self { client }
        }

        /// Calls `method` after the read-only guard.
        pub(super) async fn call(
            &self,
            method: &str,
            token: TokenKind,
            body: Body,
        ) -> Result<Map<String, Value>, PlatformError> {
            read_only(&Method::POST, method, READ_METHODS)?;
            self.client.call(method, token, body).await
        }

        pub(super) fn has_user_token(&self) -> bool {
            self.client.has_user_token()
        }

        pub(super) fn has_app_config_token(&self) -> bool {
            self.client.has_app_config_token()
        }
    }
}

const CONNECTION: &str = "connection";
const CONFIG_TOKEN: &str = "app configuration token";
const MANIFEST: &str = "app manifest";

/// Runs every Slack probe. `Err` only when the bot token's `auth.test` fails.
/// `rotates`: the integration sets `app_config_refresh_token`, so the daemon rotates the app
/// configuration token and keeps the current pair in its state (the probe never rotates: it
/// would spend the single-use refresh token the daemon relies on).
pub async fn run(
    client: &SlackClient,
    app_id: Option<&str>,
    rotates: bool,
    target: &ProbeTarget,
) -> Result<Vec<Finding>, PlatformError> {
    let r = reader::Reader::new(client);
    let mut out = Vec::new();
    let bot = r.call("auth.test", TokenKind::Bot, Body::Empty).await?;
    let s = |a: &Map<String, Value>, k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (user_id, bot_id) = (s(&bot, "user_id"), s(&bot, "bot_id"));
    out.push(Finding::checked(
        CONNECTION,
        "the bot token's auth.test names the bot user and the bot (the loop guard checks both)",
        "POST auth.test (bot token)",
        "`user_id` and `bot_id`",
        format!(
            "user_id {}, bot_id {}",
            user_id.as_deref().unwrap_or("absent"),
            bot_id.as_deref().unwrap_or("absent")
        ),
        user_id.is_some() && bot_id.is_some(),
    ));
    if r.has_user_token() {
        let req = "POST auth.test (user token)";
        match r.call("auth.test", TokenKind::User, Body::Empty).await {
            Ok(a) => out.push(Finding::checked(
                CONNECTION,
                "the user token (set_status) is accepted",
                req,
                "ok",
                format!("user {}", s(&a, "user_id").as_deref().unwrap_or("?")),
                true,
            )),
            Err(e) => out.push(Finding::checked(
                CONNECTION,
                "the user token (set_status) is accepted",
                req,
                "ok",
                e.to_string(),
                false,
            )),
        }
    }
    manifest(&r, app_id, rotates, target, &mut out).await;
    Ok(out)
}

/// The manifest probes, through `apps.manifest.export`.
async fn manifest(
    r: &reader::Reader<'_>,
    app_id: Option<&str>,
    rotates: bool,
    target: &ProbeTarget,
    out: &mut Vec<Finding>,
) {
    let req = "POST apps.manifest.export (app configuration token)";
    let assumption = "the app configuration token is accepted";
    let (true, Some(app_id)) = (r.has_app_config_token(), app_id) else {
        out.push(Finding::unchecked(
            CONFIG_TOKEN,
            assumption,
            req,
            "-",
            "the integration sets no `app_config_token` and `app_id`: supportopsd does not manage the app's manifest (register the request URL by hand)",
        ));
        return;
    };
    let exported = r
        .call(
            "apps.manifest.export",
            TokenKind::AppConfig,
            Body::Form(vec![("app_id".into(), app_id.to_owned())]),
        )
        .await;
    let answer = match exported {
        Ok(a) => a,
        Err(PlatformError::Unauthorized { detail })
            if rotates && (detail.contains("token_expired") || detail.contains("invalid_auth")) =>
        {
            out.push(Finding::unchecked(
                CONFIG_TOKEN,
                assumption,
                req,
                "ok",
                "the configured token is expired or spent, as expected once the daemon has rotated it (`app_config_refresh_token` is set; the current pair is sealed in the daemon's state, and this probe does not rotate, so as not to spend the refresh token): `supportopsd status` shows whether the daemon's manifest sync works",
            ));
            return;
        }
        Err(PlatformError::Unauthorized { detail }) => {
            let hint = if detail.contains("token_expired") {
                "token_expired: app configuration tokens expire 12 hours after they are issued; rotate them with `tooling.tokens.rotate` and the refresh token, or generate a new pair at https://api.slack.com/apps (Your App Configuration Tokens)".to_owned()
            } else {
                format!("refused: {detail}")
            };
            out.push(Finding::checked(
                CONFIG_TOKEN,
                assumption,
                req,
                "ok",
                hint,
                false,
            ));
            return;
        }
        Err(e) => {
            out.push(unreadable(CONFIG_TOKEN, assumption, req, "ok", &e));
            return;
        }
    };
    out.push(Finding::checked(
        CONFIG_TOKEN,
        assumption,
        req,
        "ok",
        "accepted now; it expires 12 hours after it was issued (`tooling.tokens.rotate` renews it)",
        true,
    ));
    let Some(manifest) = answer.get("manifest") else {
        out.push(Finding::checked(
            MANIFEST,
            "the export holds a `manifest`",
            req,
            "a manifest object",
            "no `manifest` in the answer",
            false,
        ));
        return;
    };
    let subs = manifest
        .get("settings")
        .and_then(|s| s.get("event_subscriptions"));
    let url = subs
        .and_then(|s| s.get("request_url"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let current: Vec<String> = subs
        .and_then(|s| s.get("bot_events"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    match &target.url {
        Some(want) => out.push(Finding::checked(
            MANIFEST,
            "the Events API request URL is this daemon's",
            req,
            want.clone(),
            if url.is_empty() { "none" } else { url },
            url == want,
        )),
        None => out.push(Finding::unchecked(
            MANIFEST,
            "the Events API request URL is this daemon's",
            req,
            "{public_url}/api/webhooks/slack/<id>",
            format!(
                "{} (give --public-url to compare)",
                if url.is_empty() { "none" } else { url }
            ),
        )),
    }
    let wanted = registration::bot_events(&target.events);
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|e| !current.contains(e))
        .map(String::as_str)
        .collect();
    out.push(Finding::checked(
        MANIFEST,
        "the bot events the integration needs are subscribed",
        req,
        if wanted.is_empty() {
            "none ([webhook] events is empty)".to_owned()
        } else {
            wanted.join(", ")
        },
        if missing.is_empty() {
            format!("subscribed: {}", list(&current))
        } else {
            format!("missing: {}", missing.join(", "))
        },
        missing.is_empty(),
    ));
    // What today's manifest sync would do to the other bot events of the app.
    let sync_url = target.url.as_deref().unwrap_or(url);
    // (What this integration added before is in the daemon's state; the probe passes none,
    // so only events the sync itself would still drop show.)
    if let Some(after) = super::registration::merge(manifest, sync_url, &wanted, &[]) {
        let kept: Vec<&str> = after
            .manifest
            .pointer("/settings/event_subscriptions/bot_events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let dropped: Vec<&str> = current
            .iter()
            .map(String::as_str)
            .filter(|e| !kept.contains(e))
            .collect();
        out.push(Finding::checked(
            MANIFEST,
            "a manifest sync keeps the app's other bot events",
            req,
            "no bot event removed",
            if dropped.is_empty() {
                "none would be removed".to_owned()
            } else {
                format!("a sync would remove: {}", dropped.join(", "))
            },
            dropped.is_empty(),
        ));
    }
    let scopes: Vec<&str> = manifest
        .pointer("/oauth_config/scopes/bot")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut needed: Vec<&str> = wanted
        .iter()
        .flat_map(|e| registration::scopes_for_bot_event(e).iter().copied())
        .collect();
    needed.sort_unstable();
    needed.dedup();
    let lacking: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|s| !scopes.contains(s))
        .collect();
    out.push(Finding::checked(
        MANIFEST,
        "the app has the bot scopes its events need",
        req,
        if needed.is_empty() {
            "none".to_owned()
        } else {
            needed.join(", ")
        },
        if lacking.is_empty() {
            "granted".to_owned()
        } else {
            format!(
                "missing: {} (add them under OAuth & Permissions and reinstall the app)",
                lacking.join(", ")
            )
        },
        lacking.is_empty(),
    ));
    let flag = |key: &str| {
        manifest
            .pointer(&format!("/settings/{key}"))
            .and_then(Value::as_bool)
    };
    let rotation = flag("token_rotation_enabled");
    out.push(Finding::checked(
        MANIFEST,
        "bot token rotation is off (the connector never refreshes the bot token)",
        req,
        "token_rotation_enabled false or absent",
        format!(
            "token_rotation_enabled {}",
            rotation.map_or("absent".to_owned(), |b| b.to_string())
        ),
        rotation != Some(true),
    ));
    let socket = flag("socket_mode_enabled");
    out.push(Finding::checked(
        MANIFEST,
        "Socket Mode is off (events come to the request URL over HTTP)",
        req,
        "socket_mode_enabled false or absent",
        format!(
            "socket_mode_enabled {}",
            socket.map_or("absent".to_owned(), |b| b.to_string())
        ),
        socket != Some(true),
    ));
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}
