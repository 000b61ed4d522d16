//! The Slack connector against the fake Web API ([`super::fake`]): the exact requests each
//! action sends, the classification of every kind of failure, and that no token ever leaks into
//! an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::client::{Body, SlackClient, TokenKind};
use super::connector::{DEFAULT_BASE_URL, connect};
use super::fake::{self, Failure, FakeSlack};
use crate::manifest::model::{Credential, Limits};
use crate::manifest::{Integration, IntegrationId};
use crate::platforms::connector::{
    ActionCall, ConnectError, Connector, PlatformError, WebhookSync, WebhookTarget,
};
use crate::platforms::testkit;
use crate::platforms::{PlatformKind, http};
use crate::secrets::{ResolveContext, Secret, SecretRef};

const BOT: &str = "xoxb-1111-2222-botsecretvalue";
const USER: &str = "xoxp-3333-4444-usersecretvalue";

fn no_env(_: &str) -> Option<String> {
    None
}

fn integration(
    base_url: Option<String>,
    credentials: &[(&str, Credential)],
    config: Value,
) -> Integration {
    Integration {
        id: IntegrationId::parse("slack-main").expect("id"),
        platform: PlatformKind::Slack,
        name: None,
        description: None,
        file: "integrations/slack-main.toml".into(),
        credentials: credentials
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        config: config.as_object().cloned().unwrap_or_default(),
        webhook: None,
        base_url,
        limits: Limits::default(),
    }
}

fn plain(s: &str) -> Credential {
    Credential::Plain(s.to_owned())
}

/// A connector on `fake` with the bot token, the user token when `with_user`, and `config`.
fn connector(fake: &FakeSlack, with_user: bool, config: Value) -> Arc<dyn Connector> {
    let mut creds = vec![("bot_token", plain(BOT))];
    if with_user {
        creds.push(("user_token", plain(USER)));
    }
    let i = integration(Some(fake.base_url()), &creds, config);
    connect(&i, &ResolveContext::new(None, &no_env)).expect("connect")
}

fn call(action: &str, parameters: Value) -> ActionCall {
    ActionCall {
        action: action.into(),
        parameters,
        idempotency_key: "job-1/step-0".into(),
    }
}

/// Every recorded request authenticates with a header only: no token in a URL or a body.
fn assert_tokens_only_in_headers(fake: &FakeSlack) {
    for r in fake.requests() {
        for t in [BOT, USER] {
            assert!(!r.path.contains(t), "token in URL {}", r.path);
            assert!(!r.text().contains(t), "token in body of {}", r.path);
        }
    }
}

fn assert_no_token(text: &str) {
    for t in [BOT, USER, "botsecretvalue", "usersecretvalue"] {
        assert!(!text.contains(t), "token leaked: {text}");
    }
}

// === check ===

#[tokio::test]
async fn check_reports_identity_and_team() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    let h = c.check().await.expect("check");
    assert_eq!(h.identity.as_deref(), Some(fake::BOT_ID));
    assert_eq!(
        h.detail,
        format!(
            "authenticated as @supportopsd ({}, bot {}) in {}",
            fake::BOT_USER_ID,
            fake::BOT_ID,
            fake::TEAM_NAME
        )
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, ::http::Method::POST);
    assert_eq!(r.path, "/api/auth.test");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {BOT}").as_str())
    );
    assert_eq!(r.header("user-agent"), Some(http::USER_AGENT));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn check_with_a_wrong_token_is_unauthorized() {
    let fake = FakeSlack::start("xoxb-the-right-one", None).await;
    let c = connector(&fake, false, json!({}));
    let err = c.check().await.expect_err("wrong token");
    assert_eq!(
        err,
        PlatformError::Unauthorized {
            detail: "auth.test: invalid_auth".into()
        }
    );
    assert!(!err.retryable());
}

// === actions: happy paths ===

/// Adding an action to the catalogue without its request code (an arm of `execute`'s `match`)
/// fails here.
#[tokio::test]
async fn every_catalogued_action_reaches_the_platform() {
    let fake = FakeSlack::start(BOT, Some(USER)).await;
    let c = connector(&fake, true, json!({}));
    // What the request code checks beyond the catalogue (the rest are plain samples).
    let values = json!({ "channel": fake::SUPPORT });
    testkit::assert_every_action_reaches_the_platform(
        &super::DESCRIPTOR,
        c.as_ref(),
        &values,
        || fake.requests().len(),
    )
    .await;
}

#[tokio::test]
async fn send_message_posts_json_and_returns_ts_and_channel() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({ "unfurl_links": false }));
    let out = c
        .execute(&call(
            "send_message",
            json!({
                "channel": fake::SUPPORT,
                "message": "Ticket #4021 escalated",
                "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": "*#4021*" } }],
                "mrkdwn": true,
                "icon_emoji": ":ticket:",
            }),
        ))
        .await
        .expect("send_message");

    let reqs = fake.requests_to("chat.postMessage");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {BOT}").as_str())
    );
    assert_eq!(
        r.json(),
        json!({
            "channel": fake::SUPPORT,
            "text": "Ticket #4021 escalated",
            "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": "*#4021*" } }],
            "mrkdwn": true,
            "icon_emoji": ":ticket:",
            "unfurl_links": false,
        })
    );
    let ts = out.result["ts"].as_str().expect("ts").to_owned();
    assert!(ts.contains('.'), "{ts}");
    assert_eq!(
        out.result,
        json!({ "ts": ts, "channel": fake::SUPPORT, "thread_ts": ts })
    );
    assert_tokens_only_in_headers(&fake);
}

#[tokio::test]
async fn send_message_defaults_to_the_configured_channel_and_replies_in_threads() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(
        &fake,
        false,
        json!({ "default_channel": "#general", "unfurl_links": true }),
    );
    let out = c
        .execute(&call(
            "send_message",
            json!({
                "text": "Opened Freshdesk ticket 17",
                "thread_ts": "1720612800.000200",
                "unfurl_links": false,
                "reply_broadcast": "true",
            }),
        ))
        .await
        .expect("send_message");
    let r = &fake.requests_to("chat.postMessage")[0];
    assert_eq!(
        r.json(),
        json!({
            "channel": "#general",
            "text": "Opened Freshdesk ticket 17",
            "thread_ts": "1720612800.000200",
            "reply_broadcast": true,
            "unfurl_links": false,
        })
    );
    // Slack answers with the channel id, whatever name was sent.
    assert_eq!(out.result["channel"], json!(fake::GENERAL));
    assert_eq!(out.result["thread_ts"], json!("1720612800.000200"));
}

#[tokio::test]
async fn create_channel_sends_name_and_privacy() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    let out = c
        .execute(&call(
            "create_channel",
            json!({ "name": "incident-4021", "is_private": true }),
        ))
        .await
        .expect("create_channel");
    let r = &fake.requests_to("conversations.create")[0];
    assert_eq!(
        r.json(),
        json!({ "name": "incident-4021", "is_private": true })
    );
    let id = out.result["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with('C'));
    assert_eq!(out.result, json!({ "id": id, "name": "incident-4021" }));

    // The same name again: Slack's `name_taken` is a rejection, not a retry.
    let err = c
        .execute(&call("create_channel", json!({ "name": "incident-4021" })))
        .await
        .expect_err("name taken");
    assert_eq!(
        err,
        PlatformError::Rejected {
            status: 200,
            detail: "conversations.create: name_taken".into()
        }
    );
}

#[tokio::test]
async fn invite_user_joins_the_ids_with_commas() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    let out = c
        .execute(&call(
            "invite_user",
            json!({ "channel": fake::SUPPORT, "users": fake::AGENTS, "force": false }),
        ))
        .await
        .expect("invite_user");
    let r = &fake.requests_to("conversations.invite")[0];
    assert_eq!(
        r.json(),
        json!({
            "channel": fake::SUPPORT,
            "users": format!("{},{}", fake::AGENTS[0], fake::AGENTS[1]),
            "force": false,
        })
    );
    assert_eq!(out.result, json!({ "channel": fake::SUPPORT }));

    let err = c
        .execute(&call(
            "invite_user",
            json!({ "channel": fake::SUPPORT, "users": ["U0NOBODY99"] }),
        ))
        .await
        .expect_err("unknown user");
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn upload_file_runs_the_three_steps() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({ "default_channel": fake::SUPPORT }));
    let content = "id,subject\n4021,Printer on fire ✓\n";
    let out = c
        .execute(&call(
            "upload_file",
            json!({
                "filename": "ticket-4021.csv",
                "content": content,
                "title": "Ticket 4021",
                "initial_comment": "Export attached",
                "snippet_type": "csv",
            }),
        ))
        .await
        .expect("upload_file");

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "{reqs:#?}");

    let step1 = &reqs[0];
    assert_eq!(step1.path, "/api/files.getUploadURLExternal");
    assert_eq!(
        step1.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        step1.form(),
        vec![
            ("filename".to_owned(), "ticket-4021.csv".to_owned()),
            ("length".to_owned(), content.len().to_string()),
            ("snippet_type".to_owned(), "csv".to_owned()),
        ]
    );

    let step2 = &reqs[1];
    let file_id = out.result["id"].as_str().expect("id").to_owned();
    assert_eq!(step2.path, format!("/upload/v1/{file_id}"));
    assert_eq!(step2.body, content.as_bytes());
    assert_eq!(
        step2.header("authorization"),
        None,
        "the pre-signed upload URL gets no token"
    );
    assert_eq!(fake.uploaded(&file_id).as_deref(), Some(content.as_bytes()));

    let step3 = &reqs[2];
    assert_eq!(step3.path, "/api/files.completeUploadExternal");
    let form = step3.form();
    assert_eq!(
        form,
        vec![
            (
                "files".to_owned(),
                json!([{ "id": file_id, "title": "Ticket 4021" }]).to_string()
            ),
            ("channel_id".to_owned(), fake::SUPPORT.to_owned()),
            ("initial_comment".to_owned(), "Export attached".to_owned()),
        ]
    );
    assert_eq!(out.result, json!({ "id": file_id, "title": "Ticket 4021" }));
    assert_tokens_only_in_headers(&fake);
}

#[tokio::test]
async fn set_status_uses_the_user_token() {
    let fake = FakeSlack::start(BOT, Some(USER)).await;
    let c = connector(&fake, true, json!({}));
    let out = c
        .execute(&call(
            "set_status",
            json!({ "status_text": "On call", "status_emoji": ":pager:", "expiration": 1_900_000_000 }),
        ))
        .await
        .expect("set_status");
    let r = &fake.requests_to("users.profile.set")[0];
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {USER}").as_str())
    );
    assert_eq!(
        r.json(),
        json!({ "profile": {
            "status_text": "On call",
            "status_emoji": ":pager:",
            "status_expiration": 1_900_000_000,
        }})
    );
    assert_eq!(
        out.result,
        json!({ "status_text": "On call", "status_emoji": ":pager:", "expiration": 1_900_000_000 })
    );
    assert_eq!(fake.profile()["status_text"], json!("On call"));

    // An empty text alone clears the whole status.
    c.execute(&call("set_status", json!({ "status_text": "" })))
        .await
        .expect("clear");
    let r = &fake.requests_to("users.profile.set")[1];
    assert_eq!(
        r.json(),
        json!({ "profile": { "status_text": "", "status_emoji": "", "status_expiration": 0 }})
    );
    assert_tokens_only_in_headers(&fake);
}

#[tokio::test]
async fn set_status_without_a_user_token_is_invalid_and_sends_nothing() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    let err = c
        .execute(&call("set_status", json!({ "status_text": "Away" })))
        .await
        .expect_err("no user token");
    assert!(
        matches!(err, PlatformError::Invalid(ref m) if m.contains("user_token")),
        "{err:?}"
    );
    assert!(fake.requests().is_empty());
}

// === parameter validation ===

#[tokio::test]
async fn bad_parameters_are_invalid_before_sending() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    let cases = [
        (
            "send_message",
            json!({ "channel": "C1", "message": "x", "colour": "red" }),
            "unknown parameter `colour`",
        ),
        (
            "send_message",
            json!({ "channel": "C1" }),
            "at least one of",
        ),
        ("send_message", json!({ "message": "x" }), "default_channel"),
        (
            "send_message",
            json!({ "channel": "C1", "message": "a", "text": "b" }),
            "not both",
        ),
        (
            "send_message",
            json!({ "channel": "C1", "message": "x", "mrkdwn": "yes" }),
            "`mrkdwn` should be a boolean",
        ),
        (
            "create_channel",
            json!({}),
            "missing required parameter `name`",
        ),
        (
            "create_channel",
            json!({ "name": "Has Spaces" }),
            "lower case",
        ),
        (
            "create_channel",
            json!({ "name": "x".repeat(81) }),
            "longer than 80",
        ),
        (
            "invite_user",
            json!({ "channel": "C1", "users": [] }),
            "names no user",
        ),
        (
            "invite_user",
            json!({ "channel": "C1", "users": [{ "id": "U1" }] }),
            "list of strings",
        ),
        (
            "upload_file",
            json!({ "filename": "a.txt" }),
            "missing required parameter `content`",
        ),
        (
            "upload_file",
            json!({ "filename": "a.txt", "content": "x", "thread_ts": "1.2" }),
            "needs a `channel`",
        ),
        ("archive_channel", json!({}), "no action"),
        (
            "send_message",
            json!(["not", "a", "table"]),
            "must be a table",
        ),
    ];
    for (action, params, want) in cases {
        let err = c
            .execute(&call(action, params.clone()))
            .await
            .expect_err("invalid");
        match &err {
            PlatformError::Invalid(m) => assert!(m.contains(want), "{action} {params}: {m}"),
            other => panic!("{action} {params}: {other:?}"),
        }
    }
    assert!(fake.requests().is_empty(), "nothing is sent");
}

// === failures ===

#[tokio::test]
async fn ok_false_codes_are_classified() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    let send = call(
        "send_message",
        json!({ "channel": fake::GENERAL, "message": "hello" }),
    );
    let cases: Vec<(&str, PlatformError)> = vec![
        (
            "channel_not_found",
            PlatformError::NotFound {
                detail: format!(
                    "chat.postMessage: channel_not_found: {}",
                    super::client::fix_for("channel_not_found", None).expect("a fix")
                ),
            },
        ),
        (
            "user_not_found",
            PlatformError::NotFound {
                detail: "chat.postMessage: user_not_found".into(),
            },
        ),
        (
            "invalid_auth",
            PlatformError::Unauthorized {
                detail: "chat.postMessage: invalid_auth".into(),
            },
        ),
        (
            "not_authed",
            PlatformError::Unauthorized {
                detail: "chat.postMessage: not_authed".into(),
            },
        ),
        (
            "token_revoked",
            PlatformError::Unauthorized {
                detail: "chat.postMessage: token_revoked".into(),
            },
        ),
        (
            "account_inactive",
            PlatformError::Unauthorized {
                detail: "chat.postMessage: account_inactive".into(),
            },
        ),
        (
            "missing_scope",
            PlatformError::Unauthorized {
                detail: format!(
                    "chat.postMessage: missing_scope: {}",
                    super::client::fix_for("missing_scope", None).expect("a fix")
                ),
            },
        ),
        (
            "internal_error",
            PlatformError::Transient {
                detail: "chat.postMessage: internal_error".into(),
                retry_after: None,
            },
        ),
        (
            "fatal_error",
            PlatformError::Transient {
                detail: "chat.postMessage: fatal_error".into(),
                retry_after: None,
            },
        ),
        (
            "service_unavailable",
            PlatformError::Transient {
                detail: "chat.postMessage: service_unavailable".into(),
                retry_after: None,
            },
        ),
        (
            "request_timeout",
            PlatformError::NotPerformed {
                detail: "chat.postMessage: request_timeout".into(),
            },
        ),
        (
            "ratelimited",
            PlatformError::RateLimited { retry_after: None },
        ),
        (
            "is_archived",
            PlatformError::Rejected {
                status: 200,
                detail: format!(
                    "chat.postMessage: is_archived: {}",
                    super::client::fix_for("is_archived", None).expect("a fix")
                ),
            },
        ),
        (
            "msg_too_long",
            PlatformError::Rejected {
                status: 200,
                detail: "chat.postMessage: msg_too_long".into(),
            },
        ),
    ];
    for (code, want) in cases {
        fake.fail_next("chat.postMessage", Failure::Error(code.into()), 1);
        let err = c.execute(&send).await.expect_err(code);
        // A failure that may have posted the message is "outcome unknown" for `send_message`.
        let want = match want {
            PlatformError::Transient { detail, .. } => PlatformError::OutcomeUnknown {
                detail: format!("`send_message`: transient failure: {detail}"),
                check: "the channel (or thread) for this message from the bot".into(),
            },
            other => other,
        };
        assert_eq!(err, want, "{code}");
    }
    // The script is used up: the next call succeeds.
    c.execute(&send).await.expect("recovered");
}

#[tokio::test]
async fn http_429_honours_retry_after() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    fake.fail_next(
        "conversations.create",
        Failure::RateLimited {
            retry_after_secs: 7,
        },
        2,
    );
    let create = call("create_channel", json!({ "name": "busy" }));
    for _ in 0..2 {
        let err = c.execute(&create).await.expect_err("429");
        assert_eq!(
            err,
            PlatformError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(err.retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    }
    c.execute(&create).await.expect("after the wait");
}

#[tokio::test]
async fn http_500_is_transient() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    fake.fail_next("auth.test", Failure::ServerError, 1);
    let err = c.check().await.expect_err("500");
    assert!(
        matches!(&err, PlatformError::Transient { detail, retry_after: None } if detail.contains("500")),
        "{err:?}"
    );
    assert!(err.retryable());
}

#[tokio::test]
async fn a_failing_upload_step_stops_the_action() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    fake.fail_next("files.completeUploadExternal", Failure::ServerError, 1);
    let err = c
        .execute(&call(
            "upload_file",
            json!({ "filename": "a.txt", "content": "abc", "channel": fake::GENERAL }),
        ))
        .await
        .expect_err("step 3 fails");
    // The last step may have shared the file: not sent again (issue 16 item 9).
    assert!(
        matches!(err, PlatformError::OutcomeUnknown { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_transient() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let i = integration(
        Some(format!("http://127.0.0.1:{port}/api")),
        &[("bot_token", plain(BOT))],
        json!({}),
    );
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let err = c.check().await.expect_err("refused");
    assert!(matches!(err, PlatformError::NotPerformed { .. }), "{err:?}");
    assert!(
        !err.to_string().contains(&port.to_string()),
        "no URL: {err}"
    );
}

// === the vendored spec ===

#[tokio::test]
async fn spec_check_rejects_unknown_and_missing_parameters() {
    let fake = FakeSlack::start(BOT, None).await;
    if !fake.spec_checked() {
        eprintln!("vendor spec not found; spec check test skipped");
        return;
    }
    let client = SlackClient::new(
        http::client(Duration::from_secs(5)).expect("client"),
        fake.base_url(),
        &Secret::from(BOT.to_owned()),
        None,
    )
    .expect("client");
    let err = client
        .call(
            "chat.postMessage",
            TokenKind::Bot,
            Body::Json(json!({ "channel": fake::GENERAL, "text": "x", "colour": "red" })),
        )
        .await
        .expect_err("unknown parameter");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 200, detail }
            if detail.contains("invalid_arguments") && detail.contains("colour")),
        "{err:?}"
    );
    let err = client
        .call(
            "chat.postMessage",
            TokenKind::Bot,
            Body::Form(vec![("text".into(), "x".into())]),
        )
        .await
        .expect_err("missing channel");
    assert!(
        matches!(&err, PlatformError::Rejected { detail, .. }
            if detail.contains("invalid_arguments") && detail.contains("channel")),
        "{err:?}"
    );
    // Slack's newer parameters pass (the spec is from 2020).
    let mut m = Map::new();
    m.insert("channel".into(), json!(fake::GENERAL));
    m.insert("text".into(), json!("x"));
    m.insert(
        "metadata".into(),
        json!({ "event_type": "ticket_escalated", "event_payload": { "id": 4021 } }),
    );
    client
        .call(
            "chat.postMessage",
            TokenKind::Bot,
            Body::Json(Value::Object(m)),
        )
        .await
        .expect("metadata is allowed");
}

// === connect ===

#[test]
fn connect_resolves_secret_references() {
    let env = |name: &str| (name == "SLACK_BOT_TOKEN").then(|| BOT.to_owned());
    let ctx = ResolveContext::new(None, &env);
    let i = integration(
        None,
        &[(
            "bot_token",
            Credential::Secret(SecretRef::Env("SLACK_BOT_TOKEN".into())),
        )],
        json!({}),
    );
    let c = connect(&i, &ctx).expect("connect");
    let debug = format!("{c:?}");
    assert!(debug.contains(DEFAULT_BASE_URL), "{debug}");
    assert_no_token(&debug);

    let i = integration(
        None,
        &[
            (
                "bot_token",
                Credential::Secret(SecretRef::Env("SLACK_BOT_TOKEN".into())),
            ),
            (
                "user_token",
                Credential::Secret(SecretRef::Env("SLACK_USER_TOKEN".into())),
            ),
        ],
        json!({}),
    );
    let err = connect(&i, &ctx).expect_err("unset variable");
    assert!(
        matches!(&err, ConnectError::Credential { field, .. } if field == "user_token"),
        "{err:?}"
    );

    let i = integration(None, &[], json!({}));
    let err = connect(&i, &ctx).expect_err("no bot token");
    assert!(
        matches!(&err, ConnectError::Missing(f) if f == "bot_token"),
        "{err:?}"
    );
}

#[test]
fn base_url_override_is_normalised() {
    let mut i = integration(None, &[], json!({}));
    assert_eq!(
        http::base_url(&i, DEFAULT_BASE_URL),
        "https://slack.com/api/"
    );
    i.base_url = Some("http://127.0.0.1:9999/api".into());
    assert_eq!(
        http::base_url(&i, DEFAULT_BASE_URL),
        "http://127.0.0.1:9999/api/"
    );
    i.base_url = Some("http://127.0.0.1:9999/api///".into());
    assert_eq!(
        http::base_url(&i, DEFAULT_BASE_URL),
        "http://127.0.0.1:9999/api/"
    );
}

// === no token in any error ===

#[tokio::test]
async fn tokens_never_appear_in_errors() {
    let fake = FakeSlack::start(BOT, Some(USER)).await;
    let c = connector(&fake, true, json!({}));
    let mut errors: Vec<String> = Vec::new();
    let mut push = |e: &dyn std::fmt::Debug, d: &dyn std::fmt::Display| {
        errors.push(format!("{e:?}"));
        errors.push(d.to_string());
    };

    let send = call(
        "send_message",
        json!({ "channel": fake::GENERAL, "message": "hello" }),
    );
    for f in [
        Failure::Error("invalid_auth".into()),
        Failure::Error("missing_scope".into()),
        Failure::RateLimited {
            retry_after_secs: 1,
        },
        Failure::ServerError,
    ] {
        fake.fail_next("chat.postMessage", f, 1);
        let e = c.execute(&send).await.expect_err("fails");
        push(&e, &e);
    }
    // A wrong bot token, a user token the fake does not know.
    let other = FakeSlack::start("xoxb-other", Some("xoxp-other")).await;
    let wrong = connector(&other, true, json!({}));
    let e = wrong.check().await.expect_err("invalid_auth");
    push(&e, &e);
    let e = wrong
        .execute(&call("set_status", json!({ "status_emoji": ":x:" })))
        .await
        .expect_err("invalid_auth");
    push(&e, &e);
    // Refused before sending.
    let e = c
        .execute(&call(
            "set_status",
            json!({ "status_text": "x".repeat(101) }),
        ))
        .await
        .expect_err("too long");
    push(&e, &e);
    // A token that cannot be a header.
    let i = integration(
        Some(fake.base_url()),
        &[("bot_token", plain(&format!("{BOT}\nx")))],
        json!({}),
    );
    let i2 = integration(
        Some(fake.base_url()),
        &[("bot_token", plain(&format!("{BOT}\u{7f}")))],
        json!({}),
    );
    for i in [i, i2] {
        let e = connect(&i, &ResolveContext::new(None, &no_env)).expect_err("bad token");
        push(&e, &e);
    }
    // Unreachable.
    let i = integration(
        Some("http://127.0.0.1:1/api/".into()),
        &[("bot_token", plain(BOT))],
        json!({}),
    );
    let unreachable = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let e = unreachable.check().await.expect_err("unreachable");
    push(&e, &e);

    assert!(errors.len() >= 16, "{errors:#?}");
    for text in &errors {
        assert_no_token(text);
    }
    assert_no_token(&format!("{c:?}"));
    assert_tokens_only_in_headers(&fake);
}

// === request URL registration (manifest API) ===

const APP_CONFIG: &str = "xoxe.xoxp-1-appconfigsecretvalue";
const HOOK: &str = "https://ops.example.com/api/webhooks/slack/slack-main";

/// A Slack connector on `fake` with the bot token, `app_config_token` and `app_id`.
fn registering(fake: &FakeSlack, app_config: &str) -> super::connector::SlackConnector {
    let i = integration(
        Some(fake.base_url()),
        &[
            ("bot_token", plain(BOT)),
            ("app_config_token", plain(app_config)),
            ("app_id", plain(fake::APP_ID)),
        ],
        json!({}),
    );
    super::connector::connect_slack(&i, &ResolveContext::new(None, &no_env)).expect("connect")
}

fn target(events: &[String]) -> WebhookTarget {
    WebhookTarget {
        integration: IntegrationId::parse("slack-main").expect("id"),
        url: HOOK.to_owned(),
        events: events.to_vec(),
        secret: None,
        previous: None,
    }
}

fn events(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The manifest an update sent (a JSON string in the form field `manifest`).
fn sent_manifest(r: &fake::Recorded) -> Value {
    let form = r.form();
    let text = form
        .iter()
        .find(|(k, _)| k == "manifest")
        .map(|(_, v)| v.clone())
        .expect("manifest field");
    serde_json::from_str(&text).expect("manifest JSON")
}

#[tokio::test]
async fn sync_request_url_updates_then_is_unchanged_then_repairs_drift() {
    use crate::platforms::connector::RegistrationOutcome;
    let fake = FakeSlack::start(BOT, None).await;
    fake.accept_app_config_token(APP_CONFIG);
    let c = registering(&fake, APP_CONFIG);
    assert!(c.can_register());
    let wanted = events(&["message", "app_mention", "team_join"]);

    // First sync: export, validate, update with only the two fields changed.
    let out = c.sync_request_url(HOOK, &wanted).await.expect("sync");
    assert_eq!(out.outcome, RegistrationOutcome::Updated);
    let methods: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.api_method().to_owned())
        .collect();
    assert_eq!(
        methods,
        [
            "apps.manifest.export",
            "apps.manifest.validate",
            "apps.manifest.update"
        ]
    );
    let mut expected = fake::initial_manifest();
    expected["settings"]["event_subscriptions"]["request_url"] = json!(HOOK);
    // Merged: the app's own `app_home_opened` stays, ours are appended.
    expected["settings"]["event_subscriptions"]["bot_events"] = json!([
        "app_home_opened",
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
        "team_join"
    ]);
    let reqs = fake.requests();
    assert_eq!(
        reqs[0].form(),
        [("app_id".to_owned(), fake::APP_ID.to_owned())]
    );
    assert_eq!(sent_manifest(&reqs[1]), expected);
    let update = &reqs[2];
    assert_eq!(sent_manifest(update), expected);
    assert!(
        update
            .form()
            .contains(&("app_id".to_owned(), fake::APP_ID.to_owned()))
    );
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {APP_CONFIG}").as_str())
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
    }
    assert_eq!(fake.manifest(), expected);

    // Second sync: the same events in another order → export only.
    let again = events(&["team_join", "message", "app_mention"]);
    let out = c.sync_request_url(HOOK, &again).await.expect("sync");
    assert_eq!(out.outcome, RegistrationOutcome::Unchanged);
    assert_eq!(fake.requests().len(), 4);
    assert!(fake.requests_to("apps.manifest.update").len() == 1);

    // Someone edits the app: the URL points elsewhere and an event was removed.
    let mut drifted = fake.manifest();
    drifted["settings"]["event_subscriptions"]["request_url"] =
        json!("https://elsewhere.example/x");
    drifted["settings"]["event_subscriptions"]["bot_events"] = json!(["app_mention"]);
    drifted["display_information"]["description"] = json!("edited by hand");
    fake.set_manifest(drifted.clone());
    let out = c.sync_request_url(HOOK, &wanted).await.expect("sync");
    assert_eq!(out.outcome, RegistrationOutcome::Updated);
    let mut repaired = drifted;
    repaired["settings"]["event_subscriptions"] =
        expected["settings"]["event_subscriptions"].clone();
    // Whoever removed `app_home_opened` meant it: it was never ours to put back.
    repaired["settings"]["event_subscriptions"]["bot_events"] = json!([
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
        "team_join"
    ]);
    assert_eq!(fake.manifest(), repaired);
    assert_eq!(fake.requests_to("apps.manifest.update").len(), 2);

    // Through the trait object as well.
    let dynamic: Arc<dyn Connector> = Arc::new(c);
    let synced = dynamic.sync_webhook(&target(&wanted)).await.expect("sync");
    let WebhookSync::Registered {
        outcome,
        registration,
    } = synced
    else {
        panic!("registered through the manifest API: {synced:?}");
    };
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(registration.url, HOOK);
    assert_eq!(registration.ids, vec![fake::APP_ID.to_owned()]);
    assert_eq!(dynamic.remove_webhook(&target(&wanted)).await, Ok(0));
    assert_tokens_only_in_headers(&fake);
    for r in fake.requests() {
        assert!(!r.text().contains(APP_CONFIG));
    }
}

#[tokio::test]
async fn sync_request_url_validation_errors_are_rejected_and_nothing_is_updated() {
    let fake = FakeSlack::start(BOT, None).await;
    fake.accept_app_config_token(APP_CONFIG);
    let c = registering(&fake, APP_CONFIG);
    let err = c
        .sync_request_url("ops.example.com/no-scheme", &events(&["app_mention"]))
        .await
        .expect_err("invalid URL");
    assert_eq!(
        err,
        PlatformError::Rejected {
            status: 200,
            detail: "apps.manifest.validate: invalid_manifest: Invalid URL (at /settings/event_subscriptions/request_url)".into()
        }
    );
    assert!(fake.requests_to("apps.manifest.update").is_empty());
    assert_eq!(fake.manifest(), fake::initial_manifest());

    // An event Slack does not know is refused the same way, with its pointer.
    let err = c
        .sync_request_url(HOOK, &events(&["app_mention", "no_such_event"]))
        .await
        .expect_err("unknown event");
    let PlatformError::Rejected { detail, .. } = err else {
        panic!("{err:?}")
    };
    assert!(
        detail.contains(
            "Invalid event type: \"no_such_event\" (at /settings/event_subscriptions/bot_events/2)"
        ),
        "{detail}"
    );

    // A scripted failure of the update itself.
    fake.fail_next(
        "apps.manifest.update",
        Failure::Error("app_not_eligible".into()),
        1,
    );
    let err = c
        .sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect_err("not eligible");
    assert_eq!(
        err,
        PlatformError::Rejected {
            status: 200,
            detail: "apps.manifest.update: app_not_eligible".into()
        }
    );
    fake.fail_next(
        "apps.manifest.export",
        Failure::RateLimited {
            retry_after_secs: 3,
        },
        1,
    );
    let err = c
        .sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect_err("rate limited");
    assert_eq!(
        err,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
}

#[tokio::test]
async fn sync_request_url_with_a_wrong_token_is_unauthorized() {
    let fake = FakeSlack::start(BOT, None).await;
    fake.accept_app_config_token("xoxe.xoxp-the-right-one");
    let c = registering(&fake, APP_CONFIG);
    let err = c
        .sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect_err("wrong token");
    assert_eq!(
        err,
        PlatformError::Unauthorized {
            detail: "apps.manifest.export: invalid_auth".into()
        }
    );
    assert_no_token(&format!("{err:?} {err} {c:?}"));
    assert!(!format!("{err:?} {c:?}").contains("appconfigsecretvalue"));
    // The bot token does not open the manifest API, nor the app token the Web API.
    let fake2 = FakeSlack::start(BOT, None).await;
    fake2.accept_app_config_token(APP_CONFIG);
    let c2 = registering(&fake2, BOT);
    assert!(matches!(
        c2.sync_request_url(HOOK, &events(&["app_mention"])).await,
        Err(PlatformError::Unauthorized { .. })
    ));
    assert_eq!(fake2.manifest(), fake::initial_manifest());
}

#[tokio::test]
async fn without_app_config_token_or_app_id_nothing_is_sent() {
    let fake = FakeSlack::start(BOT, None).await;
    fake.accept_app_config_token(APP_CONFIG);
    for creds in [
        vec![("bot_token", plain(BOT))],
        vec![
            ("bot_token", plain(BOT)),
            ("app_config_token", plain(APP_CONFIG)),
        ],
        vec![("bot_token", plain(BOT)), ("app_id", plain(fake::APP_ID))],
    ] {
        let i = integration(Some(fake.base_url()), &creds, json!({}));
        let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
        match c.sync_webhook(&target(&events(&["app_mention"]))).await {
            Ok(WebhookSync::Manual(what)) => {
                assert!(
                    what.contains(HOOK) && what.contains("app_mention"),
                    "{what}"
                );
            }
            other => panic!("manual registration expected: {other:?}"),
        }
        let s = super::connector::connect_slack(&i, &ResolveContext::new(None, &no_env))
            .expect("connect");
        assert!(!s.can_register());
        assert!(matches!(
            s.sync_request_url(HOOK, &events(&["app_mention"])).await,
            Err(PlatformError::Invalid(_))
        ));
    }
    assert!(fake.requests().is_empty());
}

// === app configuration token rotation, manifest merge, channels by name ===

const APP0: &str = "xoxe.xoxp-1-configuredaccess";
const REFRESH0: &str = "xoxe-1-configuredrefresh";

/// A registering connector with a refresh token, on the fake's clock (the manifest is
/// exported again a day after the last write at the latest).
fn rotating(fake: &FakeSlack, refresh: &str) -> super::connector::SlackConnector {
    let i = integration(
        Some(fake.base_url()),
        &[
            ("bot_token", plain(BOT)),
            ("app_config_token", plain(APP0)),
            ("app_config_refresh_token", plain(refresh)),
            ("app_id", plain(fake::APP_ID)),
        ],
        json!({"manifest_recheck_minutes": 1440}),
    );
    super::connector::connect_slack(&i, &ResolveContext::new(None, &no_env))
        .expect("connect")
        .with_clock(fake.clock())
}

/// The daemon's state as a kept store, with a sealing key.
fn state_store(
    dir: &std::path::Path,
) -> (
    Arc<crate::state::Store>,
    Arc<dyn crate::platforms::KeptStore>,
) {
    let store = Arc::new(crate::state::Store::open(dir).expect("state"));
    let kept: Arc<dyn crate::platforms::KeptStore> =
        Arc::new(crate::runtime::kept::StateKept::new(
            store.clone(),
            Some(crate::secrets::SealKey::generate().expect("key")),
        ));
    (store, kept)
}

fn authorizations(fake: &FakeSlack, method: &str) -> Vec<String> {
    fake.requests_to(method)
        .iter()
        .map(|r| r.header("authorization").unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn app_config_token_rotates_before_expiry_is_kept_sealed_and_a_restart_uses_the_kept_pair() {
    let fake = FakeSlack::start(BOT, None).await;
    fake.issue_app_config_pair(APP0, REFRESH0);
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, kept) = state_store(dir.path());
    let c = rotating(&fake, REFRESH0);
    c.attach_store(kept.clone());
    let wanted = events(&["app_mention"]);

    // First sync: the configured token's age is unknown, so the pair is rotated first; the
    // manifest calls use the new token.
    c.sync_request_url(HOOK, &wanted).await.expect("sync");
    let rotations = fake.requests_to("tooling.tokens.rotate");
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0].header("authorization"), None);
    assert_eq!(
        rotations[0].form(),
        [("refresh_token".to_owned(), REFRESH0.to_owned())]
    );
    let first = authorizations(&fake, "apps.manifest.export");
    assert_eq!(first, ["Bearer xoxe.xoxp-1-rotated-0001"]);
    // Kept sealed: neither new token appears in the state.
    let raw =
        serde_json::to_string(&store.connector_kept("slack-main").expect("read")).expect("json");
    assert!(
        !raw.contains("rotated-0001") && !raw.contains("refresh-0001"),
        "{raw}"
    );
    assert!(raw.contains("sos1:"), "{raw}");

    // 11.5 hours later: less than the margin left, so it rotates again (with the kept, not the
    // spent configured, refresh token), although the manifest needs no call.
    fake.advance(11 * 3600 + 1800);
    c.sync_request_url(HOOK, &wanted).await.expect("sync");
    let rotations = fake.requests_to("tooling.tokens.rotate");
    assert_eq!(rotations.len(), 2);
    assert_eq!(
        rotations[1].form(),
        [("refresh_token".to_owned(), "xoxe-1-refresh-0001".to_owned())]
    );
    assert_eq!(
        fake.requests_to("apps.manifest.export").len(),
        1,
        "nothing changed: no export"
    );

    // A restart: a new connector with the same (spent) configured pair uses the kept pair.
    let restarted = rotating(&fake, REFRESH0);
    restarted.attach_store(kept.clone());
    restarted
        .sync_request_url(HOOK, &events(&["app_mention", "team_join"]))
        .await
        .expect("sync after a restart");
    assert_eq!(
        fake.requests_to("tooling.tokens.rotate").len(),
        2,
        "the kept token is fresh"
    );
    let exports = authorizations(&fake, "apps.manifest.export");
    assert_eq!(
        exports.last().map(String::as_str),
        Some("Bearer xoxe.xoxp-1-rotated-0002")
    );

    // 13 hours later the kept token has expired: rotated before use, never sent expired.
    fake.advance(13 * 3600);
    restarted
        .sync_request_url(HOOK, &events(&["team_join"]))
        .await
        .expect("sync after expiry");
    assert_eq!(fake.requests_to("tooling.tokens.rotate").len(), 3);
    assert_eq!(
        authorizations(&fake, "apps.manifest.update")
            .last()
            .map(String::as_str),
        Some("Bearer xoxe.xoxp-1-rotated-0003")
    );
    for r in fake.requests() {
        assert!(
            !r.text().contains("rotated-0"),
            "an access token in a body: {}",
            r.path
        );
    }

    // A clock that disagrees with Slack's: Slack answers `token_expired`, and the token is
    // rotated once and the call made again.
    let skewed =
        rotating(&fake, REFRESH0).with_clock(super::connector::Clock::new(|| fake::FAKE_EPOCH_S));
    skewed.attach_store(kept.clone());
    fake.advance(13 * 3600);
    skewed
        .sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect("token_expired is rotated through");
    assert_eq!(fake.requests_to("tooling.tokens.rotate").len(), 4);
    let exports = authorizations(&fake, "apps.manifest.export");
    assert_eq!(
        exports[exports.len() - 2..],
        [
            "Bearer xoxe.xoxp-1-rotated-0003",
            "Bearer xoxe.xoxp-1-rotated-0004"
        ]
    );

    // The operator generates a new pair and configures it: it wins over the kept one.
    fake.issue_app_config_pair("xoxe.xoxp-1-handmade", "xoxe-1-handmade");
    let i = integration(
        Some(fake.base_url()),
        &[
            ("bot_token", plain(BOT)),
            ("app_config_token", plain("xoxe.xoxp-1-handmade")),
            ("app_config_refresh_token", plain("xoxe-1-handmade")),
            ("app_id", plain(fake::APP_ID)),
        ],
        json!({}),
    );
    let renewed = super::connector::connect_slack(&i, &ResolveContext::new(None, &no_env))
        .expect("connect")
        .with_clock(fake.clock());
    renewed.attach_store(kept);
    renewed
        .sync_request_url(HOOK, &events(&["team_join"]))
        .await
        .expect("sync with a new pair");
    let rotations = fake.requests_to("tooling.tokens.rotate");
    assert_eq!(
        rotations.last().map(fake::Recorded::form),
        Some(vec![(
            "refresh_token".to_owned(),
            "xoxe-1-handmade".to_owned()
        )])
    );
}

#[tokio::test]
async fn without_rotation_the_configured_token_expires_after_12_hours_with_the_fix_in_the_error() {
    let fake = FakeSlack::start(BOT, None).await;
    fake.accept_app_config_token(APP_CONFIG);
    let c = registering(&fake, APP_CONFIG);
    c.sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect("fresh token");
    fake.advance(12 * 3600);
    let err = c
        .sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect_err("expired");
    let PlatformError::Unauthorized { detail } = &err else {
        panic!("{err:?}")
    };
    assert!(
        detail.starts_with("apps.manifest.export: token_expired"),
        "{detail}"
    );
    assert!(detail.contains("app_config_refresh_token"), "{detail}");
    // Without the sealing key nothing is rotated (the refresh token is not spent).
    let keyless = rotating(&fake, REFRESH0);
    let dir0 = tempfile::tempdir().expect("tempdir");
    let store0 = Arc::new(crate::state::Store::open(dir0.path()).expect("state"));
    keyless.attach_store(Arc::new(crate::runtime::kept::StateKept::new(store0, None)));
    let err = keyless
        .sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect_err("no key");
    assert!(
        matches!(&err, PlatformError::Invalid(why) if why.contains("sealing key")),
        "{err:?}"
    );
    assert!(fake.requests_to("tooling.tokens.rotate").is_empty());
    // A spent refresh token says what to do.
    let spent = rotating(&fake, "xoxe-never-issued");
    let dir = tempfile::tempdir().expect("tempdir");
    spent.attach_store(state_store(dir.path()).1);
    let err = spent
        .sync_request_url(HOOK, &events(&["app_mention"]))
        .await
        .expect_err("invalid refresh token");
    let PlatformError::Unauthorized { detail } = &err else {
        panic!("{err:?}")
    };
    assert!(
        detail.contains("invalid_refresh_token") && detail.contains("generate a new token pair"),
        "{detail}"
    );
    assert!(!detail.contains("xoxe-never-issued"), "{detail}");
}

#[tokio::test]
async fn manifest_sync_merges_bot_events_adds_scopes_and_asks_for_a_reinstall() {
    let fake = FakeSlack::start(BOT, None).await;
    fake.issue_app_config_pair(APP0, REFRESH0);
    let mut m = fake::initial_manifest();
    m["oauth_config"]["scopes"]["bot"] = json!(["chat:write", "commands"]);
    m["settings"]["event_subscriptions"]["bot_events"] = json!(["app_home_opened"]);
    fake.set_manifest(m);
    let dir = tempfile::tempdir().expect("tempdir");
    let (_store, kept) = state_store(dir.path());
    let c = rotating(&fake, REFRESH0);
    c.attach_store(kept);
    let c: Arc<dyn Connector> = Arc::new(c);

    let wanted = events(&["reaction_added", "team_join"]);
    let synced = c.sync_webhook(&target(&wanted)).await.expect("sync");
    assert!(
        matches!(synced, WebhookSync::Registered { .. }),
        "{synced:?}"
    );
    let manifest = fake.manifest();
    assert_eq!(
        manifest["settings"]["event_subscriptions"]["bot_events"],
        json!(["app_home_opened", "reaction_added", "team_join"])
    );
    assert_eq!(
        manifest["oauth_config"]["scopes"]["bot"],
        json!(["chat:write", "commands", "reactions:read", "users:read"])
    );
    let action = c.pending_action().expect("reinstall asked for");
    assert!(
        action.starts_with("reinstall the app")
            && action.contains("reactions:read, users:read")
            && action.contains("permissions_updated"),
        "{action}"
    );

    // Resync: what was written is remembered, so no manifest call at all; the note stays.
    let before = fake.requests().len();
    let again = c.sync_webhook(&target(&wanted)).await.expect("resync");
    let WebhookSync::Registered { outcome, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!(outcome, crate::platforms::RegistrationOutcome::Unchanged);
    assert_eq!(fake.requests().len(), before);
    assert!(c.pending_action().is_some());

    // Fewer events: only our own `reaction_added` goes; the app's `app_home_opened` and the
    // scopes stay.
    c.sync_webhook(&target(&events(&["team_join"])))
        .await
        .expect("sync");
    let manifest = fake.manifest();
    assert_eq!(
        manifest["settings"]["event_subscriptions"]["bot_events"],
        json!(["app_home_opened", "team_join"])
    );
    assert_eq!(
        manifest["oauth_config"]["scopes"]["bot"],
        json!(["chat:write", "commands", "reactions:read", "users:read"])
    );
}

#[tokio::test]
async fn channel_names_are_resolved_to_ids_where_slack_needs_an_id() {
    let fake = FakeSlack::start(BOT, None).await;
    // The fake itself refuses a name where the method takes an id (as Slack does).
    let raw = SlackClient::new(
        http::client(Duration::from_secs(5)).expect("client"),
        fake.base_url(),
        &Secret::from(BOT.to_owned()),
        None,
    )
    .expect("client");
    let err = raw
        .call(
            "conversations.invite",
            TokenKind::Bot,
            Body::Json(json!({"channel": "#support", "users": fake::AGENTS[0]})),
        )
        .await
        .expect_err("a name is not an id");
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");

    // `#escalations` is private and on the second page of conversations.list.
    let c = connector(&fake, false, json!({ "default_channel": "#escalations" }));
    let out = c
        .execute(&call(
            "upload_file",
            json!({"filename": "a.csv", "content": "a,b"}),
        ))
        .await
        .expect("upload to a channel name");
    assert!(out.result["id"].is_string());
    let complete = &fake.requests_to("files.completeUploadExternal")[0];
    assert!(
        complete
            .form()
            .contains(&("channel_id".to_owned(), fake::ESCALATIONS.to_owned())),
        "{:?}",
        complete.form()
    );
    let lists = fake.requests_to("conversations.list");
    assert_eq!(lists.len(), 2, "two pages");
    assert!(lists[0].form().contains(&(
        "types".to_owned(),
        "public_channel,private_channel".to_owned()
    )));

    c.execute(&call(
        "invite_user",
        json!({"channel": "#support", "users": [fake::AGENTS[0]]}),
    ))
    .await
    .expect("invite to a channel name");
    assert_eq!(
        fake.requests_to("conversations.invite")[1].json()["channel"],
        json!(fake::SUPPORT)
    );
    assert_eq!(fake.requests_to("conversations.list").len(), 2, "cached");

    // A name nobody has: a clear error, and nothing uploaded.
    let uploads = fake.requests_to("files.getUploadURLExternal").len();
    let err = c
        .execute(&call(
            "upload_file",
            json!({"filename": "a.csv", "content": "a", "channel": "#nope"}),
        ))
        .await
        .expect_err("unknown name");
    let PlatformError::NotFound { detail } = &err else {
        panic!("{err:?}")
    };
    assert!(
        detail.contains("#nope") && detail.contains("/invite"),
        "{detail}"
    );
    assert_eq!(
        fake.requests_to("files.getUploadURLExternal").len(),
        uploads
    );
    // Ids are sent as they are, without a lookup.
    let lists = fake.requests_to("conversations.list").len();
    c.execute(&call(
        "invite_user",
        json!({"channel": fake::GENERAL, "users": [fake::AGENTS[1]]}),
    ))
    .await
    .expect("invite by id");
    assert_eq!(fake.requests_to("conversations.list").len(), lists);
}

#[test]
fn errors_with_one_fix_carry_it() {
    let answer = |v: Value| v.as_object().cloned().expect("object");
    let e = super::client::classify_answer(
        "conversations.invite",
        &answer(json!({"ok": false, "error": "not_in_channel"})),
        None,
    );
    assert!(e.to_string().contains("/invite @"), "{e}");
    let e = super::client::classify_answer(
        "conversations.list",
        &answer(
            json!({"ok": false, "error": "missing_scope", "needed": "groups:read", "provided": "chat:write"}),
        ),
        None,
    );
    assert!(
        e.to_string().contains("add the bot scope `groups:read`")
            && e.to_string().contains("reinstall"),
        "{e}"
    );
    let e = super::client::classify_answer(
        "chat.postMessage",
        &answer(json!({"ok": false, "error": "channel_not_found"})),
        None,
    );
    assert!(
        matches!(e, PlatformError::NotFound { .. }) && e.to_string().contains("invite the bot"),
        "{e}"
    );
}

/// Issue 16 item 9: a message Slack posted whose answer was lost (posted, then a 504) is not
/// posted again; the old code retried the 5xx and posted it twice.
#[tokio::test]
async fn a_message_whose_answer_is_lost_is_not_sent_again() {
    let fake = FakeSlack::start(BOT, None).await;
    let c = connector(&fake, false, json!({}));
    fake.lose_answers("chat.postMessage", 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call(
            "send_message",
            json!({"channel": fake::SUPPORT, "message": "Ticket #4021 escalated"}),
        ),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert!(!e.retryable());
    assert_eq!(fake.requests_to("chat.postMessage").len(), 1, "posted once");
}
