//! The Freshdesk connector against the fake API ([`super::fake`]): the exact requests each
//! action sends, connection-check outcomes, bulk updates, the automation rules' lifecycle, the
//! classification of failures, and that the API key never leaks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::http::Method;
use base64::Engine as _;
use serde_json::{Value, json};

use super::client::FreshdeskClient;
use super::connector::{FreshdeskConnector, connect, connect_freshdesk};
use super::fake::{self, By, Failure, FakeFreshdesk, Happening};
use super::registration::{self, TICKET_CREATION, TICKET_UPDATES};
use crate::manifest::model::{Credential, Limits};
use crate::manifest::{Integration, IntegrationId};
use crate::platforms::connector::{
    ActionCall, ConnectError, Connector, PlatformError, Registration, RegistrationOutcome,
    WebhookSync, WebhookTarget,
};
use crate::platforms::fakekit::Recorded;
use crate::platforms::inbound::FRESHDESK_SECRET_HEADER;
use crate::platforms::testkit;
use crate::platforms::{Inbound, InboundRequest, PlatformKind, http};
use crate::secrets::{ResolveContext, Secret, SecretRef};

const KEY: &str = "fdkey-Zq81mN0pLs7Xv2Rt";
const URL: &str = "https://ops.example.com/api/webhooks/freshdesk/fd-main";
const SECRET: &str = "fd-shared-secret-9f8e7d";

fn no_env(_: &str) -> Option<String> {
    None
}

fn integration(base_url: Option<String>, key: &str, config: Value) -> Integration {
    Integration {
        id: IntegrationId::parse("fd-main").expect("id"),
        platform: PlatformKind::Freshdesk,
        name: None,
        description: None,
        file: "integrations/fd-main.toml".into(),
        credentials: [
            (
                "domain".to_owned(),
                Credential::Plain("acme.freshdesk.com".into()),
            ),
            ("api_key".to_owned(), Credential::Plain(key.into())),
        ]
        .into_iter()
        .collect::<BTreeMap<_, _>>(),
        config: config.as_object().cloned().unwrap_or_default(),
        webhook: None,
        base_url,
        limits: Limits::default(),
    }
}

fn fd(fake: &FakeFreshdesk, config: Value) -> FreshdeskConnector {
    let i = integration(Some(fake.base_url()), KEY, config);
    connect_freshdesk(&i, &ResolveContext::new(None, &no_env))
        .expect("connect")
        .with_job_poll_interval(Duration::from_millis(5))
}

fn connector(fake: &FakeFreshdesk) -> Arc<dyn Connector> {
    Arc::new(fd(fake, json!({})))
}

fn call(action: &str, parameters: Value) -> ActionCall {
    ActionCall {
        action: action.into(),
        parameters,
        idempotency_key: "job-1/step-0".into(),
    }
}

fn assert_no_key(text: &str) {
    assert!(!text.contains(KEY), "API key leaked: {text}");
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:X"));
    assert!(!text.contains(&b64), "encoded API key leaked: {text}");
}

/// Every catalogued result field of `action` is present in `result`.
fn assert_result_complete(action: &str, result: &Value) {
    let spec = super::DESCRIPTOR.action(action).expect("action");
    for f in spec.result {
        assert!(
            result.get(f.path).is_some(),
            "{action}: result field `{}` missing from {result}",
            f.path
        );
    }
}

fn the_one(fake: &FakeFreshdesk, method: &Method, path: &str) -> Recorded {
    let reqs: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path == path)
        .collect();
    assert_eq!(reqs.len(), 1, "{method} {path}: {reqs:?}");
    let r = reqs.into_iter().next().expect("one");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:X"))
    );
    assert_eq!(r.header("authorization"), Some(expected.as_str()));
    if matches!(*method, Method::POST | Method::PUT) {
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(r.header("user-agent"), Some(http::USER_AGENT));
    r
}

// === check ===

#[tokio::test]
async fn check_reports_the_agent_and_the_budget() {
    let fake = FakeFreshdesk::start(KEY).await;
    let h = connector(&fake).check().await.expect("check");
    assert_eq!(h.identity, Some(fake::AGENT_ID.to_string()));
    assert_eq!(
        h.detail,
        format!(
            "authenticated as {} <{}> (agent {}) on acme.freshdesk.com; API budget 200 calls/min (Growth plan), 199 left",
            fake::AGENT_NAME,
            fake::AGENT_EMAIL,
            fake::AGENT_ID
        )
    );
    let r = the_one(&fake, &Method::GET, "/api/v2/agents/me");
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn check_tells_bad_credentials_wrong_domain_suspension_and_network_apart() {
    let fake = FakeFreshdesk::start("another-key").await;
    let err = connector(&fake).check().await.expect_err("bad key");
    assert!(
        matches!(&err, PlatformError::Unauthorized { detail } if detail.starts_with("bad credentials") && detail.contains("invalid_credentials")),
        "{err:?}"
    );
    assert!(!err.retryable());
    assert_no_key(&format!("{err} {err:?}"));

    let fake = FakeFreshdesk::start(KEY).await;
    fake.suspend(true);
    let err = connector(&fake).check().await.expect_err("suspended");
    assert!(
        matches!(&err, PlatformError::Unauthorized { detail } if detail.contains("is suspended")),
        "{err:?}"
    );

    let fake = FakeFreshdesk::start(KEY).await;
    fake.remove_helpdesk();
    let err = connector(&fake).check().await.expect_err("no helpdesk");
    assert!(
        matches!(&err, PlatformError::NotFound { detail } if detail.contains("wrong `domain`")),
        "{err:?}"
    );

    // A domain that redirects (to a sign-up page) instead of answering the API.
    let redirecting = crate::platforms::fakekit::FakeServer::start(|_| {
        crate::platforms::fakekit::with_header(
            crate::platforms::fakekit::empty_response(::http::StatusCode::FOUND),
            "location",
            "https://www.freshworks.com/freshdesk/signup",
        )
    })
    .await;
    let i = integration(Some(redirecting.origin()), KEY, json!({}));
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let err = c.check().await.expect_err("redirect");
    assert!(
        matches!(&err, PlatformError::NotFound { detail } if detail.contains("redirects")),
        "{err:?}"
    );
    assert_eq!(
        redirecting.requests().len(),
        1,
        "the redirect is not followed"
    );

    // Nothing listens on the port any more: a network failure, worth retrying.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let i = integration(Some(format!("http://127.0.0.1:{port}")), KEY, json!({}));
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let err = c.check().await.expect_err("refused");
    assert!(
        matches!(&err, PlatformError::NotPerformed { detail } if detail.starts_with("cannot reach acme.freshdesk.com")),
        "{err:?}"
    );
    assert!(err.retryable());
}

// === actions ===

/// Adding an action to the catalogue without its request code (an arm of `execute`'s `match`)
/// fails here.
#[tokio::test]
async fn every_catalogued_action_reaches_the_platform() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    // What the request code checks beyond the catalogue (the rest are plain samples).
    let values = json!({
        "email": "sample@example.com",
        "update_ticket": { "subject": "Sample" },
    });
    testkit::assert_every_action_reaches_the_platform(
        &super::DESCRIPTOR,
        c.as_ref(),
        &values,
        || fake.requests().len(),
    )
    .await;
}

#[tokio::test]
async fn create_ticket_sends_codes_and_config_defaults() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = fd(
        &fake,
        json!({ "default_priority": "high", "default_status": "pending",
                "auto_assign": true, "default_group_id": 301, "default_responder_id": fake::AGENTS[0] }),
    );
    let out = c
        .execute(&call(
            "create_ticket",
            json!({
                "subject": "Printer on fire", "description": "<p>Leeds office</p>",
                "email": "new.person@example.com", "name": "New Person",
                "source": "Phone", "tags": "printer, vip", "cc_emails": ["boss@example.com"],
                "custom_fields": { "cf_site": "Leeds" },
            }),
        ))
        .await
        .expect("create_ticket");
    let r = the_one(&fake, &Method::POST, "/api/v2/tickets");
    assert_eq!(
        r.json(),
        json!({
            "subject": "Printer on fire", "description": "<p>Leeds office</p>",
            "email": "new.person@example.com", "name": "New Person",
            "status": 3, "priority": 3, "source": 3,
            "group_id": 301, "responder_id": fake::AGENTS[0],
            "tags": ["printer", "vip"], "cc_emails": ["boss@example.com"],
            "custom_fields": { "cf_site": "Leeds" },
        })
    );
    assert_result_complete("create_ticket", &out.result);
    let id = out.result["id"].as_i64().expect("id");
    assert_eq!(
        out.result["url"],
        json!(format!("https://acme.freshdesk.com/helpdesk/tickets/{id}"))
    );
    assert_eq!(
        (out.result["status"].clone(), out.result["priority"].clone()),
        (json!(3), json!(3))
    );
    assert!(out.result["requester_id"].is_i64());
    assert_eq!(
        fake.ticket(id).expect("stored")["subject"],
        "Printer on fire"
    );

    // Explicit values win over the config; an explicit assignee turns auto_assign off.
    fake.clear_requests();
    c.execute(&call(
        "create_ticket",
        json!({ "subject": "S", "description": "D", "requester_id": fake::SEEDED_CONTACT,
                "status": 2, "priority": "Urgent", "responder_id": fake::AGENT_ID }),
    ))
    .await
    .expect("create_ticket");
    let body = the_one(&fake, &Method::POST, "/api/v2/tickets").json();
    assert_eq!(
        body,
        json!({ "subject": "S", "description": "D", "requester_id": fake::SEEDED_CONTACT,
                "status": 2, "priority": 4, "responder_id": fake::AGENT_ID })
    );

    // Without config: open and low.
    let plain = connector(&fake);
    fake.clear_requests();
    plain
        .execute(&call(
            "create_ticket",
            json!({ "subject": "S", "description": "D", "email": fake::SEEDED_CONTACT_EMAIL }),
        ))
        .await
        .expect("create_ticket");
    let body = the_one(&fake, &Method::POST, "/api/v2/tickets").json();
    assert_eq!(
        (body["status"].clone(), body["priority"].clone()),
        (json!(2), json!(1))
    );
    assert!(body.get("group_id").is_none());
}

#[tokio::test]
async fn ticket_updates_put_the_changed_fields() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let out = c
        .execute(&call(
            "update_ticket",
            json!({ "ticket_id": 101, "priority": "medium", "subject": "Renamed", "tags": ["a"],
                    "type": "Incident", "status": null }),
        ))
        .await
        .expect("update_ticket");
    let r = the_one(&fake, &Method::PUT, "/api/v2/tickets/101");
    assert_eq!(
        r.json(),
        json!({ "priority": 2, "subject": "Renamed", "tags": ["a"], "type": "Incident" })
    );
    assert_result_complete("update_ticket", &out.result);
    assert_eq!(out.result["id"], json!(101));
    assert_eq!(out.result["priority"], json!(2));

    let out = c
        .execute(&call(
            "assign_ticket",
            json!({ "ticket_id": "102", "responder_id": fake::AGENTS[1], "group_id": 302 }),
        ))
        .await
        .expect("assign_ticket");
    let r = the_one(&fake, &Method::PUT, "/api/v2/tickets/102");
    assert_eq!(
        r.json(),
        json!({ "responder_id": fake::AGENTS[1], "group_id": 302 })
    );
    assert_result_complete("assign_ticket", &out.result);
    assert_eq!(out.result["group_id"], json!(302));

    let out = c
        .execute(&call(
            "change_status",
            json!({ "ticket_id": 103, "status": "Resolved" }),
        ))
        .await
        .expect("change_status");
    assert_eq!(
        the_one(&fake, &Method::PUT, "/api/v2/tickets/103").json(),
        json!({ "status": 4 })
    );
    assert_result_complete("change_status", &out.result);
    assert_eq!(out.result, json!({ "id": 103, "status": 4 }));

    // A custom status by number.
    fake.clear_requests();
    let out = c
        .execute(&call(
            "change_status",
            json!({ "ticket_id": 103, "status": 6 }),
        ))
        .await
        .expect("custom status");
    assert_eq!(out.result["status"], json!(6));
}

#[tokio::test]
async fn notes_replies_time_entries_and_contacts() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);

    let out = c
        .execute(&call(
            "add_note",
            json!({ "ticket_id": 101, "body": "<p>Called the customer</p>",
                    "notify_emails": fake::AGENT_EMAIL }),
        ))
        .await
        .expect("add_note");
    assert_eq!(
        the_one(&fake, &Method::POST, "/api/v2/tickets/101/notes").json(),
        json!({ "body": "<p>Called the customer</p>", "private": true,
                "notify_emails": [fake::AGENT_EMAIL] })
    );
    assert_result_complete("add_note", &out.result);
    assert_eq!(
        (
            out.result["ticket_id"].clone(),
            out.result["private"].clone()
        ),
        (json!(101), json!(true))
    );

    let out = c
        .execute(&call(
            "add_note",
            json!({ "ticket_id": 102, "body": "public", "private": "false", "incoming": true }),
        ))
        .await
        .expect("public note");
    assert_eq!(out.result["private"], json!(false));
    assert_eq!(fake.notes().len(), 2);

    let out = c
        .execute(&call(
            "add_reply",
            json!({ "ticket_id": 101, "body": "<p>Fixed</p>", "cc_emails": "a@example.com, b@example.com",
                    "from_email": "help@acme.example" }),
        ))
        .await
        .expect("add_reply");
    assert_eq!(
        the_one(&fake, &Method::POST, "/api/v2/tickets/101/reply").json(),
        json!({ "body": "<p>Fixed</p>", "from_email": "help@acme.example",
                "cc_emails": ["a@example.com", "b@example.com"] })
    );
    assert_result_complete("add_reply", &out.result);

    let out = c
        .execute(&call(
            "add_time_entry",
            json!({ "ticket_id": 101, "time_spent": "01:30", "note": "Onsite", "billable": false,
                    "timer_running": false }),
        ))
        .await
        .expect("add_time_entry");
    assert_eq!(
        the_one(&fake, &Method::POST, "/api/v2/tickets/101/time_entries").json(),
        json!({ "time_spent": "01:30", "note": "Onsite", "billable": false, "timer_running": false })
    );
    assert_result_complete("add_time_entry", &out.result);
    assert_eq!(out.result["time_spent"], json!("01:30"));
    assert_eq!(out.result["timer_running"], json!(false));
    assert_eq!(out.result["agent_id"], json!(fake::AGENT_ID));

    // Neither time spent nor timer_running: Freshdesk starts a timer; a second one is refused.
    let out = c
        .execute(&call("add_time_entry", json!({ "ticket_id": 102 })))
        .await
        .expect("timer");
    assert_eq!(out.result["timer_running"], json!(true));
    let err = c
        .execute(&call("add_time_entry", json!({ "ticket_id": 103 })))
        .await
        .expect_err("one timer per agent");
    assert!(
        matches!(err, PlatformError::Rejected { status: 400, .. }),
        "{err:?}"
    );

    let out = c
        .execute(&call(
            "create_contact",
            json!({ "name": "Jane Roe", "email": "jane@example.com", "company_id": "12",
                    "tags": ["vip"], "job_title": "CTO" }),
        ))
        .await
        .expect("create_contact");
    assert_eq!(
        the_one(&fake, &Method::POST, "/api/v2/contacts").json(),
        json!({ "name": "Jane Roe", "email": "jane@example.com", "job_title": "CTO",
                "company_id": 12, "tags": ["vip"] })
    );
    assert_result_complete("create_contact", &out.result);
    assert_eq!(out.result["email"], json!("jane@example.com"));

    // The same email again: Freshdesk's 409 duplicate_value.
    let err = c
        .execute(&call(
            "create_contact",
            json!({ "name": "Jane", "email": "jane@example.com" }),
        ))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 409, detail } if detail.contains("duplicate_value")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_parameters_are_invalid_before_sending() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let cases = [
        ("nope", json!({}), "no action"),
        ("create_ticket", json!([1]), "must be a table"),
        (
            "create_ticket",
            json!({ "subject": "s", "description": "d" }),
            "needs at least one of",
        ),
        (
            "create_ticket",
            json!({ "subject": "s", "description": "d", "email": "x", "colour": 1 }),
            "unknown parameter `colour`",
        ),
        (
            "create_ticket",
            json!({ "subject": "s", "description": "d", "email": "a@b.com", "priority": "highest" }),
            "expected one of 1 (low)",
        ),
        (
            "create_ticket",
            json!({ "subject": "s", "description": "d", "email": "a@b.com", "source": 4 }),
            "parameter `source`",
        ),
        (
            "create_ticket",
            json!({ "subject": "s", "description": "d", "email": "not-an-email" }),
            "not an email address",
        ),
        (
            "create_ticket",
            json!({ "subject": "s", "description": "d", "phone": "+44 1" }),
            "needs `name`",
        ),
        (
            "create_ticket",
            json!({ "subject": " ", "description": "d", "email": "a@b.com" }),
            "`subject` is empty",
        ),
        (
            "update_ticket",
            json!({ "ticket_id": 101 }),
            "nothing to change",
        ),
        (
            "update_ticket",
            json!({ "ticket_id": -3, "status": 2 }),
            "positive integer",
        ),
        (
            "change_status",
            json!({ "ticket_id": 101 }),
            "missing required parameter `status`",
        ),
        (
            "change_status",
            json!({ "ticket_id": 101, "status": "Waiting" }),
            "custom status number",
        ),
        (
            "assign_ticket",
            json!({ "ticket_id": 101 }),
            "needs at least one of",
        ),
        (
            "assign_ticket",
            json!({ "ticket_id": 101, "group_id": "ops" }),
            "should be an integer",
        ),
        (
            "add_note",
            json!({ "ticket_id": 101, "body": "" }),
            "`body` is empty",
        ),
        (
            "add_note",
            json!({ "ticket_id": 101, "body": "x", "private": "maybe" }),
            "should be a boolean",
        ),
        (
            "add_reply",
            json!({ "ticket_id": 101, "body": "x", "bcc_emails": ["nope"] }),
            "not an email address",
        ),
        (
            "add_time_entry",
            json!({ "ticket_id": 101, "time_spent": "90" }),
            "`hh:mm`",
        ),
        (
            "add_time_entry",
            json!({ "ticket_id": 101, "timer_running": false, "start_time": "2026-11-28T10:00:00Z" }),
            "not allowed",
        ),
        (
            "create_contact",
            json!({ "name": "Jane" }),
            "needs at least one of",
        ),
        (
            "create_contact",
            json!({ "name": "", "email": "j@example.com" }),
            "`name` is empty",
        ),
    ];
    for (action, params, needle) in cases {
        let err = c
            .execute(&call(action, params.clone()))
            .await
            .expect_err(action);
        match &err {
            PlatformError::Invalid(m) => assert!(m.contains(needle), "{action} {params}: {m}"),
            other => panic!("{action} {params}: {other:?}"),
        }
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test]
async fn the_platform_connect_builds_the_freshdesk_connector() {
    let fake = FakeFreshdesk::start(KEY).await;
    let i = integration(Some(fake.base_url()), KEY, json!({}));
    let ctx = ResolveContext::new(None, &no_env);
    // The fake is on loopback: only a host policy that lists it lets the key go there.
    let err = crate::platforms::connect(&i, &ctx, &crate::policy::Policy::none())
        .expect_err("no policy, no override");
    assert!(
        matches!(err, crate::platforms::ConnectError::Policy(_)),
        "{err}"
    );
    assert!(fake.requests().is_empty());
    let policy = crate::policy::Policy::parse(
        "[endpoints]\nallow = [\"127.0.0.1:*\"]\n",
        std::path::Path::new("policy.toml"),
    )
    .expect("policy");
    let c = crate::platforms::connect(&i, &ctx, &policy).expect("available");
    assert_eq!(
        c.check().await.expect("check").identity,
        Some(fake::AGENT_ID.to_string())
    );
}

#[test]
fn bad_config_and_credentials_fail_to_connect() {
    let ctx_env = |name: &str| (name == "FD_KEY").then(|| KEY.to_owned());
    let ctx = ResolveContext::new(None, &ctx_env);
    let mut i = integration(None, KEY, json!({ "default_priority": "extreme" }));
    let err = connect(&i, &ctx).expect_err("bad config");
    assert!(err.to_string().contains("default_priority"), "{err}");

    i.config.clear();
    i.credentials.insert(
        "api_key".into(),
        Credential::Secret(SecretRef::Env("FD_KEY".into())),
    );
    assert!(connect(&i, &ctx).is_ok());
    i.credentials.insert(
        "domain".into(),
        Credential::Plain("acme.example/evil path".into()),
    );
    let err = connect(&i, &ctx).expect_err("bad domain");
    assert!(matches!(err, ConnectError::Client(_)), "{err:?}");
    i.credentials.remove("api_key");
    i.credentials
        .insert("domain".into(), Credential::Plain("acme".into()));
    assert!(matches!(connect(&i, &ctx), Err(ConnectError::Missing(f)) if f == "api_key"));
    i.credentials.insert(
        "api_key".into(),
        Credential::Secret(SecretRef::Env("UNSET".into())),
    );
    assert!(matches!(
        connect(&i, &ctx),
        Err(ConnectError::Credential { .. })
    ));
}

// === failures ===

#[tokio::test]
async fn rate_limits_and_outages_are_classified() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let note = || call("add_note", json!({ "ticket_id": 101, "body": "x" }));

    fake.fail_next(
        "POST /api/v2/tickets/{id}/notes",
        Failure::RateLimited {
            retry_after_secs: 7,
        },
        1,
    );
    let err = c.execute(&note()).await.expect_err("429");
    assert_eq!(
        err,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(err.retryable());

    fake.fail_next("POST /api/v2/tickets/{id}/notes", Failure::ServerError, 1);
    let err = c.execute(&note()).await.expect_err("500");
    // A note may have been added before the 500: not sent again (issue 16 item 9).
    assert!(
        matches!(&err, PlatformError::OutcomeUnknown { detail, .. } if detail.contains("internal_error")),
        "{err:?}"
    );

    fake.fail_next(
        "POST /api/v2/tickets/{id}/notes",
        Failure::Unavailable {
            retry_after_secs: 30,
        },
        1,
    );
    let err = c.execute(&note()).await.expect_err("503");
    // Even a 503 may follow a note Freshdesk added: not sent again (issue 16 item 9).
    assert!(
        matches!(&err, PlatformError::OutcomeUnknown { detail, .. } if detail.contains("503")),
        "{err:?}"
    );

    // The minute's budget spent: every call is 429 with Retry-After until it is back.
    fake.set_budget(200, 0);
    let err = c.execute(&note()).await.expect_err("budget spent");
    assert_eq!(
        err,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(60))
        }
    );
    fake.set_budget(400, 400);
    c.execute(&note()).await.expect("budget back");
    let h = c.check().await.expect("check");
    assert!(
        h.detail.ends_with("400 calls/min (Pro plan), 398 left"),
        "{}",
        h.detail
    );

    let err = c
        .execute(&call(
            "change_status",
            json!({ "ticket_id": 999, "status": 4 }),
        ))
        .await
        .expect_err("404");
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");
    let err = c
        .execute(&call(
            "assign_ticket",
            json!({ "ticket_id": 101, "group_id": 999 }),
        ))
        .await
        .expect_err("unknown group");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 400, detail } if detail.contains("group_id")),
        "{err:?}"
    );
}

/// The fake refuses what its API description does not allow, the way Freshdesk does.
#[tokio::test]
async fn the_fake_refuses_requests_the_api_description_does_not_allow() {
    let fake = FakeFreshdesk::start(KEY).await;
    let client = FreshdeskClient::new(
        http::client(Duration::from_secs(5)).expect("client"),
        format!("{}/", fake.base_url()),
        &Secret::from(KEY.to_owned()),
    )
    .expect("client");
    let err = client
        .request(
            Method::POST,
            "api/v2/tickets/101/notes",
            Some(&json!({ "body": "x", "colour": "red" })),
            "add_note",
        )
        .await
        .expect_err("unknown field");
    assert_eq!(
        err,
        PlatformError::Rejected {
            status: 400,
            detail: "add_note: Validation failed: colour: Unexpected/invalid field in request (invalid_field)".into()
        }
    );
    let err = client
        .request(
            Method::POST,
            "api/v2/contacts",
            Some(&json!({ "email": "a@b.com" })),
            "create_contact",
        )
        .await
        .expect_err("missing field");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 400, detail } if detail.contains("name: It should be present (missing_field)")),
        "{err:?}"
    );
    let err = client
        .request(
            Method::GET,
            "api/v2/automations/4/rules?colour=red",
            None,
            "list",
        )
        .await
        .expect_err("unknown query");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 400, detail } if detail.contains("colour")),
        "{err:?}"
    );
    let err = client
        .request(
            Method::POST,
            "api/v2/tickets/bulk_update",
            Some(&json!({ "ids": [101], "properties": { "status": 4 } })),
            "bulk_update",
        )
        .await
        .expect_err("no bulk_action wrapper");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    let err = client
        .request(Method::DELETE, "api/v2/tickets/101/notes", None, "nope")
        .await
        .expect_err("no such operation");
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");
    // What the connector sends passes.
    client
        .request(
            Method::POST,
            "api/v2/tickets/101/notes",
            Some(&json!({ "body": "x" })),
            "add_note",
        )
        .await
        .expect("allowed");
}

#[tokio::test]
async fn the_api_key_never_appears_in_errors() {
    let fake = FakeFreshdesk::start("other").await;
    let c = fd(&fake, json!({}));
    assert_no_key(&format!("{c:?}"));
    let mut texts = Vec::new();
    for (action, params) in [
        (
            "create_ticket",
            json!({ "subject": "s", "description": "d", "email": "a@b.com" }),
        ),
        ("add_note", json!({ "ticket_id": 1, "body": KEY })),
        ("create_contact", json!({ "name": KEY })),
    ] {
        let e = c.execute(&call(action, params)).await.expect_err("401");
        texts.push(format!("{e} {e:?}"));
    }
    texts.push(format!("{:?}", c.check().await));
    let fake = FakeFreshdesk::start(KEY).await;
    let c = fd(&fake, json!({}));
    fake.fail_next("POST /api/v2/contacts", Failure::ServerError, 1);
    let e = c
        .execute(&call(
            "create_contact",
            json!({ "name": "n", "email": "n@example.com" }),
        ))
        .await
        .expect_err("500");
    texts.push(format!("{e} {e:?}"));
    for t in texts {
        assert_no_key(&t);
    }
}

// === bulk ===

#[tokio::test]
async fn due_updates_of_the_same_change_go_through_one_bulk_job() {
    let fake = FakeFreshdesk::start(KEY).await;
    fake.set_job_polls(2);
    let c = fd(&fake, json!({}));
    assert!(
        c.batchable("change_status")
            && c.batchable("update_ticket")
            && c.batchable("assign_ticket")
    );
    assert!(!c.batchable("add_note") && !c.batchable("create_ticket"));
    let calls = vec![
        call(
            "change_status",
            json!({ "ticket_id": 101, "status": "closed" }),
        ),
        call("change_status", json!({ "ticket_id": 102, "status": 5 })),
        call(
            "change_status",
            json!({ "ticket_id": 103, "status": "pending" }),
        ),
        call(
            "change_status",
            json!({ "ticket_id": 4040, "status": "closed" }),
        ),
        call("change_status", json!({ "ticket_id": 101 })),
    ];
    let results = c.execute_many(&calls).await;
    assert_eq!(results.len(), 5);
    let bulk = the_one(&fake, &Method::POST, "/api/v2/tickets/bulk_update");
    assert_eq!(
        bulk.json(),
        json!({ "bulk_action": { "ids": [101, 102, 4040], "properties": { "status": 5 } } })
    );
    let polls = fake.requests_to(&Method::GET, "/api/v2/jobs/");
    assert_eq!(
        polls.len(),
        3,
        "two `in progress` answers, then `completed`"
    );
    for (i, t) in [(0, 101), (1, 102)] {
        let out = results[i].as_ref().expect("updated");
        assert_eq!(out.result, json!({ "id": t, "status": 5 }));
        assert_eq!(fake.ticket(t).expect("ticket")["status"], json!(5));
    }
    // A change of its own goes alone.
    assert_eq!(
        results[2].as_ref().expect("alone").result["status"],
        json!(3)
    );
    the_one(&fake, &Method::PUT, "/api/v2/tickets/103");
    assert!(
        matches!(&results[3], Err(PlatformError::Rejected { detail, .. }) if detail.contains("Ticket not found")),
        "{:?}",
        results[3]
    );
    assert!(matches!(&results[4], Err(PlatformError::Invalid(_))));

    // A rate-limited bulk call fails every call of the batch alike, to be retried.
    fake.fail_next(
        "POST /api/v2/tickets/bulk_update",
        Failure::RateLimited {
            retry_after_secs: 3,
        },
        1,
    );
    let results = c
        .execute_many(&[
            call(
                "assign_ticket",
                json!({ "ticket_id": 101, "group_id": 301 }),
            ),
            call(
                "assign_ticket",
                json!({ "ticket_id": 102, "group_id": 301 }),
            ),
        ])
        .await;
    for r in results {
        assert_eq!(
            r.expect_err("429"),
            PlatformError::RateLimited {
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }
}

// === registration ===

fn target(events: &[&str], secret: Option<&str>, previous: Option<Registration>) -> WebhookTarget {
    WebhookTarget {
        integration: IntegrationId::parse("fd-main").expect("id"),
        url: URL.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: secret.map(|s| Secret::from(s.to_owned())),
        previous,
    }
}

fn registered(sync: WebhookSync) -> (RegistrationOutcome, Registration) {
    match sync {
        WebhookSync::Registered {
            outcome,
            registration,
        } => (outcome, registration),
        WebhookSync::Manual(m) => panic!("manual: {m}"),
    }
}

/// The rule named `name` (`supportopsd:fd-main ticket_closed`), with the key of [`SECRET`]
/// that every rule name ends with.
fn rule_id(fake: &FakeFreshdesk, name: &str) -> (u8, i64) {
    let full = format!("{name} #{}", registration::secret_key(SECRET));
    fake.rules()
        .into_iter()
        .find(|(_, r)| r["name"] == full)
        .map(|(t, r)| (t, r["id"].as_i64().expect("id")))
        .unwrap_or_else(|| panic!("no rule {name}"))
}

const ALL_EVENTS: &[&str] = &[
    "note_created",
    "ticket_closed",
    "ticket_created",
    "ticket_resolved",
    "ticket_updated",
];

#[tokio::test]
async fn rules_are_created_left_alone_repaired_updated_and_removed() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let foreign = fake.add_rule(
        TICKET_UPDATES,
        json!({ "name": "Escalate VIPs", "active": true, "conditions": [], "actions": [] }),
    );
    let lookalike = fake.add_rule(
        TICKET_CREATION,
        json!({ "name": "supportopsd:fd-main-2 ticket_created", "active": true, "conditions": [], "actions": [] }),
    );

    // Created: one rule per event, with the secret header and the documented body.
    let (outcome, reg) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), None))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
    // Two rules (agent or requester, System) for each event the System can cause.
    assert_eq!(reg.ids.len(), 8);
    assert_eq!(reg.secret, None, "the manifest's secret is not handed back");
    assert_eq!(fake.rules().len(), 10);
    let (ty, created_id) = rule_id(&fake, "supportopsd:fd-main ticket_created");
    assert_eq!(ty, TICKET_CREATION);
    assert!(reg.ids.contains(&format!("1/{created_id}")));
    let (ty, closed_id) = rule_id(&fake, "supportopsd:fd-main ticket_closed");
    assert_eq!(ty, TICKET_UPDATES);
    let rules = fake.rules();
    let closed = &rules
        .iter()
        .find(|(_, r)| r["id"] == json!(closed_id))
        .expect("rule")
        .1;
    assert_eq!(
        closed["events"],
        json!([{ "field_name": "status", "from": "--", "to": 5 }])
    );
    let action = &closed["actions"][0];
    assert_eq!(action["field_name"], "trigger_webhook");
    assert_eq!(action["url"], URL);
    assert_eq!(action["custom_headers"][FRESHDESK_SECRET_HEADER], SECRET);
    assert_eq!(
        action["content"]["freshdesk_webhook"]["supportopsd_event"],
        "ticket_closed"
    );
    assert_eq!(
        action["content"]["freshdesk_webhook"]["ticket_status"],
        "{{ticket.status}}"
    );

    // Unchanged: only reads.
    fake.clear_requests();
    let (outcome, reg2) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(reg2.ids, reg.ids);
    assert!(
        fake.requests().iter().all(|r| r.method == Method::GET),
        "{:?}",
        fake.requests()
    );

    // Drift: one rule deleted, another pointed elsewhere and switched off.
    assert!(fake.delete_rule(TICKET_CREATION, created_id));
    fake.edit_rule(TICKET_UPDATES, closed_id, |r| {
        r["actions"][0]["url"] = json!("https://attacker.example/");
        r["active"] = json!(false);
    });
    let (outcome, reg3) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), Some(reg2.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(
        fake.requests_to(&Method::POST, "/api/v2/automations/1/rules")
            .len(),
        1
    );
    assert_eq!(
        fake.requests_to(
            &Method::PUT,
            &format!("/api/v2/automations/4/rules/{closed_id}")
        )
        .len(),
        1
    );
    let rules = fake.rules();
    let closed = &rules
        .iter()
        .find(|(_, r)| r["id"] == json!(closed_id))
        .expect("rule")
        .1;
    assert_eq!(closed["actions"][0]["url"], URL);
    assert_eq!(closed["active"], json!(true));
    let (outcome, _) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), Some(reg3.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);

    // A recorded rule renamed by hand is ours: renamed back rather than duplicated.
    let (_, resolved_id) = rule_id(&fake, "supportopsd:fd-main ticket_resolved");
    fake.edit_rule(TICKET_UPDATES, resolved_id, |r| {
        r["name"] = json!("my rule now")
    });
    let (outcome, reg4) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), Some(reg3.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(
        rule_id(&fake, "supportopsd:fd-main ticket_resolved").1,
        resolved_id
    );
    assert_eq!(fake.rules().len(), 10);

    // Fewer events: the rule no longer wanted is pruned.
    let (outcome, reg5) = registered(
        c.sync_webhook(&target(
            &["ticket_created", "ticket_updated"],
            Some(SECRET),
            Some(reg4),
        ))
        .await
        .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Updated);
    assert_eq!(reg5.ids.len(), 3);
    assert_eq!(fake.rules().len(), 5);

    // Removal deletes what carries the marker, nothing else; again, nothing is left to delete.
    let t = target(
        &["ticket_created", "ticket_updated"],
        Some(SECRET),
        Some(reg5),
    );
    assert_eq!(c.remove_webhook(&t).await.expect("remove"), 3);
    let mut left: Vec<i64> = fake
        .rules()
        .iter()
        .map(|(_, r)| r["id"].as_i64().expect("id"))
        .collect();
    left.sort_unstable();
    assert_eq!(left, vec![foreign, lookalike]);
    assert_eq!(c.remove_webhook(&t).await.expect("remove again"), 0);
}

#[tokio::test]
async fn without_a_manifest_secret_one_is_generated_once_and_kept() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let (outcome, reg) = registered(
        c.sync_webhook(&target(&["ticket_created"], None, None))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
    let secret = reg.secret.clone().expect("generated");
    let text = secret.expose_str().expect("text").to_owned();
    assert_eq!(text.len(), 64);
    assert!(text.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        fake.rules()[0].1["actions"][0]["custom_headers"][FRESHDESK_SECRET_HEADER],
        json!(text)
    );
    // The next sync reuses it (from the recorded registration): nothing changes.
    let (outcome, reg2) = registered(
        c.sync_webhook(&target(&["ticket_created"], None, Some(reg)))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(reg2.secret, Some(secret));
    // A state that lost it: a new secret, and the rule is repaired to send it.
    let lost = Registration {
        secret: None,
        ..reg2
    };
    let (outcome, reg3) = registered(
        c.sync_webhook(&target(&["ticket_created"], None, Some(lost)))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_ne!(reg3.secret.expect("new").expose_str().expect("text"), text);
}

#[tokio::test]
async fn undeliverable_events_and_registration_failures() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let err = c
        .sync_webhook(&target(&["contact_created"], Some(SECRET), None))
        .await
        .expect_err("contact events");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("contact_created")),
        "{err:?}"
    );
    assert!(fake.requests().is_empty());
    fake.fail_next(
        "POST /api/v2/automations/{type}/rules",
        Failure::RateLimited {
            retry_after_secs: 9,
        },
        1,
    );
    let err = c
        .sync_webhook(&target(&["ticket_created"], Some(SECRET), None))
        .await
        .expect_err("429");
    assert_eq!(
        err,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(9))
        }
    );
    let (outcome, _) = registered(
        c.sync_webhook(&target(&["ticket_created"], Some(SECRET), None))
            .await
            .expect("retry"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
    assert_eq!(fake.rules().len(), 1);

    // A failed repair is transient, and neither it nor anything else shows the secret.
    let (ty, id) = rule_id(&fake, "supportopsd:fd-main ticket_created");
    fake.edit_rule(ty, id, |r| {
        r["actions"][0]["url"] = json!("https://elsewhere.example/")
    });
    fake.fail_next(
        "PUT /api/v2/automations/{type}/rules/{id}",
        Failure::ServerError,
        1,
    );
    let t = target(&["ticket_created"], Some(SECRET), None);
    let err = c.sync_webhook(&t).await.expect_err("500");
    assert!(err.retryable(), "{err:?}");
    for text in [format!("{err} {err:?}"), format!("{t:?}")] {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
    }
}

/// Freshdesk's side of a rule: the fake renders the rule's content and posts it; what arrives
/// verifies with the secret and parses into the event the rule was made for.
#[tokio::test]
async fn what_the_rules_post_verifies_and_parses() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let (received, server) = {
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        let server = crate::platforms::fakekit::FakeServer::start(move |r| {
            crate::platforms::fakekit::lock(&sink).push(r.clone());
            crate::platforms::fakekit::empty_response(::http::StatusCode::OK)
        })
        .await;
        (received, server)
    };
    let mut t = target(&["ticket_resolved", "ticket_created"], Some(SECRET), None);
    t.url = format!("{}/api/webhooks/freshdesk/fd-main", server.origin());
    c.sync_webhook(&t).await.expect("sync");
    // An agent resolves ticket 101: the "agent or requester" twin runs, the System one not.
    assert_eq!(
        fake.fire(Happening::Status {
            ticket: 101,
            to: 4,
            by: By::Agent
        })
        .await,
        vec![200]
    );
    let r = crate::platforms::fakekit::lock(&received)
        .pop()
        .expect("delivered");
    let req = InboundRequest {
        method: &r.method,
        headers: &r.headers,
        body: &r.body,
        now_unix: 0,
    };
    let keys = crate::platforms::VerifyKeys {
        secret: Some(Secret::from(SECRET.to_owned())),
        ..Default::default()
    };
    super::webhook::verify(&req, &keys).expect("verified");
    match super::webhook::parse(&req).expect("parsed") {
        Inbound::Event {
            event, normalized, ..
        } => {
            assert_eq!(event.name, "ticket_resolved");
            let ticket = &normalized.objects["ticket"];
            assert_eq!(ticket["id"], json!(101));
            assert_eq!(ticket["status"], json!(4));
            assert_eq!(ticket["status_name"], json!("Resolved"));
            assert_eq!(ticket["priority_name"], json!("Low"));
            assert_eq!(normalized.changes["status"], json!({ "from": 2, "to": 4 }));
            assert_eq!(
                normalized.objects["requester"]["email"],
                json!(fake::SEEDED_CONTACT_EMAIL)
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Odd values for every parameter of every action: never a panic, and whatever the connector
/// sends is something the API description allows (no `invalid_field` / `missing_field`).
#[tokio::test]
async fn odd_parameter_values_never_panic_and_never_send_unknown_fields() {
    let fake = FakeFreshdesk::start(KEY).await;
    fake.set_budget(1_000_000, 1_000_000);
    let c = connector(&fake);
    let odd = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(7),
        json!(1e300),
        json!(u64::MAX),
        json!(""),
        json!(" "),
        json!("9999999999999999999999"),
        json!("a@b.co"),
        json!("urgent"),
        json!("01:30"),
        json!([]),
        json!(["x", 1]),
        json!([{}]),
        json!({}),
        json!({ "cf_x": [1] }),
        json!("\u{0}\u{202e}é".repeat(50)),
    ];
    let base = |action: &str| -> Value {
        match action {
            "create_ticket" => json!({ "subject": "s", "description": "d", "email": "a@b.co" }),
            "create_contact" => json!({ "name": "n", "email": "n@b.co" }),
            "change_status" => json!({ "ticket_id": 101, "status": 4 }),
            "assign_ticket" => json!({ "ticket_id": 101, "group_id": 301 }),
            "add_note" | "add_reply" => json!({ "ticket_id": 101, "body": "b" }),
            "add_time_entry" => json!({ "ticket_id": 101, "time_spent": "00:10" }),
            _ => json!({ "ticket_id": 101, "priority": 2 }),
        }
    };
    let mut sent = 0;
    for spec in super::DESCRIPTOR.actions {
        for param in spec.params {
            for v in &odd {
                let mut params = base(spec.name);
                params[param.name] = v.clone();
                match c.execute(&call(spec.name, params.clone())).await {
                    Ok(out) => {
                        sent += 1;
                        assert_result_complete(spec.name, &out.result);
                    }
                    Err(PlatformError::Invalid(_)) => {}
                    Err(PlatformError::Rejected { detail, .. }) => {
                        sent += 1;
                        assert!(
                            !detail.contains("invalid_field") && !detail.contains("missing_field"),
                            "{} {params}: {detail}",
                            spec.name
                        );
                    }
                    Err(PlatformError::NotFound { .. }) => sent += 1,
                    Err(other) => panic!("{} {params}: {other:?}", spec.name),
                }
            }
        }
    }
    assert!(sent > 100, "only {sent} requests were sent");
}

#[tokio::test]
async fn an_agent_key_without_admin_rights_gets_manual_steps() {
    let fake = FakeFreshdesk::start(KEY).await;
    fake.restrict_to_agent(true);
    let c = connector(&fake);
    match c
        .sync_webhook(&target(
            &["ticket_created", "note_created"],
            Some(SECRET),
            None,
        ))
        .await
        .expect("sync")
    {
        WebhookSync::Manual(words) => {
            assert!(words.contains(URL), "{words}");
            assert!(words.contains(FRESHDESK_SECRET_HEADER), "{words}");
            let key = registration::secret_key(SECRET);
            assert!(
                words.contains(&format!(
                    "Ticket Creation (first in the list) rule `supportopsd:fd-main ticket_created #{key}`"
                )),
                "{words}"
            );
            assert!(
                words.contains(&format!(
                    "Ticket Updates, performed by an agent or requester rule `supportopsd:fd-main note_created #{key}`"
                )),
                "{words}"
            );
            assert!(!words.contains(SECRET), "{words}");
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.rules().is_empty());
    // A suspended account is an error, not a chore.
    fake.suspend(true);
    let err = c
        .sync_webhook(&target(&["ticket_created"], Some(SECRET), None))
        .await
        .expect_err("suspended");
    assert!(matches!(err, PlatformError::Unauthorized { .. }), "{err:?}");
}

// === issue 16: rules that fire for real workflows, semantic drift, bulk job states ===

/// A receiver for what the rules post: the requests, and the server (kept alive).
async fn receiver() -> (
    Arc<std::sync::Mutex<Vec<Recorded>>>,
    crate::platforms::fakekit::FakeServer,
) {
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let server = crate::platforms::fakekit::FakeServer::start(move |r| {
        crate::platforms::fakekit::lock(&sink).push(r.clone());
        crate::platforms::fakekit::empty_response(::http::StatusCode::OK)
    })
    .await;
    (received, server)
}

/// The `supportopsd_event`s delivered since the last call, sorted.
fn delivered(received: &std::sync::Mutex<Vec<Recorded>>) -> Vec<String> {
    let mut out: Vec<String> = crate::platforms::fakekit::lock(received)
        .drain(..)
        .map(|r| {
            r.json()["freshdesk_webhook"]["supportopsd_event"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    out.sort();
    out
}

/// Issue 16, item 3: the fake runs rules like Freshdesk (conditions, performer, events,
/// position and the ticket-creation execution mode), and the registered rules fire for a
/// ticket in a custom status, for a close the System makes (a time trigger), and on an account
/// whose ticket-creation rules run "first matching rule" with an earlier rule that matches.
#[tokio::test]
async fn rules_fire_for_custom_statuses_system_closes_and_first_matching_rule_accounts() {
    let fake = FakeFreshdesk::start(KEY).await;
    fake.first_matching_rule(true);
    // The account's own routing rule, first in the list, matches every ticket.
    fake.add_rule(
        TICKET_CREATION,
        json!({ "name": "Route everything to L1", "active": true,
                "conditions": [{ "name": "condition_set_1", "match_type": "all",
                  "properties": [{ "resource_type": "ticket", "field_name": "priority",
                                   "operator": "in", "value": [1, 2, 3, 4] }] }],
                "actions": [{ "field_name": "group_id", "value": 301 }] }),
    );
    let c = connector(&fake);
    let (received, server) = receiver().await;
    let mut t = target(
        &["ticket_closed", "ticket_created", "ticket_updated"],
        Some(SECRET),
        None,
    );
    t.url = format!("{}/api/webhooks/freshdesk/fd-main", server.origin());
    c.sync_webhook(&t).await.expect("sync");

    // A new ticket: ours runs although the account stops at the first matching rule.
    assert_eq!(
        fake.fire(Happening::Created { ticket: 101 }).await,
        vec![200]
    );
    assert_eq!(delivered(&received), ["ticket_created"]);

    // An agent moves ticket 102 to the custom status "Waiting on Customer" (6), then raises its
    // priority: both are `ticket_updated`.
    fake.fire(Happening::Status {
        ticket: 102,
        to: 6,
        by: By::Agent,
    })
    .await;
    assert_eq!(delivered(&received), ["ticket_updated"]);
    fake.fire(Happening::Priority {
        ticket: 102,
        to: 3,
        by: By::Requester,
    })
    .await;
    assert_eq!(delivered(&received), ["ticket_updated"]);

    // A time trigger closes ticket 103: the System is the performer.
    fake.fire(Happening::Status {
        ticket: 103,
        to: 5,
        by: By::System,
    })
    .await;
    assert_eq!(delivered(&received), ["ticket_closed", "ticket_updated"]);
    // An agent closing ticket 101 runs the agent-or-requester twins, once each.
    fake.fire(Happening::Status {
        ticket: 101,
        to: 5,
        by: By::Agent,
    })
    .await;
    assert_eq!(delivered(&received), ["ticket_closed", "ticket_updated"]);
}

/// Issue 16, item 4: Freshdesk echoes numbers as strings and no header values; an unchanged
/// account is `unchanged` on every resync, with nothing but reads.
#[tokio::test]
async fn an_unchanged_account_is_unchanged_on_every_resync() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let (outcome, mut reg) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), None))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
    // What Freshdesk hands back is not what was sent, byte for byte.
    let listed = fake
        .requests_to(&Method::GET, "/api/v2/automations/4/rules/")
        .len();
    assert!(listed > 0, "every write is read back");
    fake.clear_requests();
    for _ in 0..3 {
        let (outcome, next) = registered(
            c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), Some(reg.clone())))
                .await
                .expect("sync"),
        );
        assert_eq!(outcome, RegistrationOutcome::Unchanged);
        assert_eq!(next.ids, reg.ids);
        reg = next;
    }
    assert!(
        fake.requests().iter().all(|r| r.method == Method::GET),
        "{:?}",
        fake.requests()
    );
    // A new secret renames (and so replaces) the rules even though header values are hidden.
    let (outcome, _) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some("a-new-secret-0042"), Some(reg)))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    let rules = fake.rules();
    assert_eq!(rules.len(), 8);
    assert!(rules.iter().all(|(_, r)| {
        r["actions"][0]["custom_headers"][FRESHDESK_SECRET_HEADER] == "a-new-secret-0042"
    }));
}

/// Issue 16, item 4: a rule Freshdesk stores differently from what was written is said so
/// (by the read-back after the write), not rewritten and reported `repaired` every 5 minutes.
#[tokio::test]
async fn a_rule_freshdesk_stores_differently_is_reported_not_silently_rewritten() {
    let fake = FakeFreshdesk::start(KEY).await;
    fake.normalize_stored_rules(Some(|r: &mut Value| {
        r["actions"][0]["request_type"] = json!("PUT");
    }));
    let c = connector(&fake);
    let err = c
        .sync_webhook(&target(&["ticket_created"], Some(SECRET), None))
        .await
        .expect_err("stored differently");
    let text = err.to_string();
    assert!(
        text.contains("differently") && text.contains("request_type"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
}

/// Issue 16, item 4: an endpoint that ignores `page`/`per_page` answers the whole list on every
/// page; the listing stops at the first page with nothing new and our rules are not taken for
/// unwanted copies (and deleted).
#[tokio::test]
async fn listing_stops_when_pages_repeat_and_counts_each_rule_once() {
    let fake = FakeFreshdesk::start(KEY).await;
    fake.set_budget(1_000_000, 1_000_000);
    let c = connector(&fake);
    let (_, reg) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), None))
            .await
            .expect("sync"),
    );
    for i in 0..150 {
        fake.add_rule(
            TICKET_UPDATES,
            json!({ "name": format!("Team rule {i}"), "conditions": [], "actions": [] }),
        );
    }
    fake.ignore_paging(true);
    fake.clear_requests();
    let (outcome, reg2) = registered(
        c.sync_webhook(&target(ALL_EVENTS, Some(SECRET), Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(reg2.ids, reg.ids);
    assert_eq!(fake.rules().len(), 158, "nothing deleted");
    assert!(fake.requests().iter().all(|r| r.method == Method::GET));
    let lists = fake
        .requests_to(&Method::GET, "/api/v2/automations/4/rules")
        .len();
    assert_eq!(lists, 2, "page 1, then page 2 repeats it: stop");
}

/// Issue 16, item 9 (Freshdesk bulk): a job that ends in a state other than the known ones is
/// over (not polled 60 times and retried whole); each ticket's own `success` decides.
#[tokio::test]
async fn a_bulk_job_in_another_final_state_is_settled_by_each_ticket() {
    let fake = FakeFreshdesk::start(KEY).await;
    fake.set_job_outcome("partial", true);
    let c = fd(&fake, json!({}));
    let results = c
        .execute_many(&[
            call("change_status", json!({ "ticket_id": 101, "status": 4 })),
            call("change_status", json!({ "ticket_id": 4040, "status": 4 })),
        ])
        .await;
    assert_eq!(
        fake.requests_to(&Method::GET, "/api/v2/jobs/").len(),
        2,
        "`in progress`, then `partial`: done"
    );
    assert_eq!(results[0].as_ref().expect("101").result["status"], json!(4));
    assert!(
        matches!(&results[1], Err(PlatformError::Rejected { detail, .. }) if detail.contains("Ticket not found")),
        "{:?}",
        results[1]
    );
    // A finished job that lists no ticket: the outcome is unknown, the (idempotent) update is
    // retried rather than taken as done.
    fake.set_job_outcome("failed", false);
    let results = c
        .execute_many(&[
            call("change_status", json!({ "ticket_id": 101, "status": 3 })),
            call("change_status", json!({ "ticket_id": 102, "status": 3 })),
        ])
        .await;
    for r in results {
        assert!(
            matches!(&r, Err(PlatformError::Transient { detail, .. }) if detail.contains("without a result")),
            "{r:?}"
        );
    }
}

/// Issue 16, item 9 (Freshdesk bulk): whether `bulk_update` replaces or adds tags is
/// unconfirmed, so updates setting tags go one by one (`PUT` replaces them, as documented).
#[tokio::test]
async fn updates_setting_tags_are_not_bulked() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = fd(&fake, json!({}));
    let results = c
        .execute_many(&[
            call(
                "update_ticket",
                json!({ "ticket_id": 101, "tags": ["vip"] }),
            ),
            call(
                "update_ticket",
                json!({ "ticket_id": 102, "tags": ["vip"] }),
            ),
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(
        fake.requests_to(&Method::POST, "/api/v2/tickets/bulk_update")
            .is_empty()
    );
    assert_eq!(fake.requests_to(&Method::PUT, "/api/v2/tickets/").len(), 2);
}

/// Issue 16, item 12 (Freshdesk): a custom helpdesk domain is most likely a CNAME, where the
/// API does not answer; the refusal says so rather than only "add it to the host policy".
#[test]
fn a_custom_domain_is_refused_with_the_cname_explanation() {
    let mut i = integration(None, KEY, json!({}));
    i.credentials.insert(
        "domain".into(),
        Credential::Plain("support.acme.com".into()),
    );
    let refused =
        crate::platforms::connector::policy_refusals(&i, &crate::policy::Policy::none()).join("\n");
    assert!(
        refused.contains("support.acme.com")
            && refused.contains("CNAME")
            && refused.contains(".freshdesk.com"),
        "{refused}"
    );
    let ok = integration(None, KEY, json!({}));
    assert!(
        crate::platforms::connector::policy_refusals(&ok, &crate::policy::Policy::none())
            .is_empty()
    );
}

/// Issue 16, item 3: a ticket created straight into a custom status carries its number
/// (`{{ticket.status_id}}`): its display name alone cannot give it.
#[tokio::test]
async fn a_ticket_in_a_custom_status_carries_its_number() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let (received, server) = receiver().await;
    let mut t = target(&["ticket_created"], Some(SECRET), None);
    t.url = format!("{}/api/webhooks/freshdesk/fd-main", server.origin());
    c.sync_webhook(&t).await.expect("sync");
    c.execute(&call(
        "change_status",
        json!({ "ticket_id": 102, "status": 6 }),
    ))
    .await
    .expect("custom status");
    assert_eq!(
        fake.fire(Happening::Created { ticket: 102 }).await,
        vec![200]
    );
    let r = crate::platforms::fakekit::lock(&received)
        .pop()
        .expect("delivered");
    let req = InboundRequest {
        method: &r.method,
        headers: &r.headers,
        body: &r.body,
        now_unix: 0,
    };
    match super::webhook::parse(&req).expect("parsed") {
        Inbound::Event { normalized, .. } => {
            let ticket = &normalized.objects["ticket"];
            assert_eq!(ticket["status"], json!(6));
            assert_eq!(ticket["status_name"], json!("Waiting on Customer"));
        }
        other => panic!("{other:?}"),
    }
}

/// Issue 16 item 9: Freshdesk has no idempotency key. A ticket, note, reply, time entry or
/// contact whose answer was lost (created, then a 504) is not created again but dead-lettered
/// as "outcome unknown" naming what to look up. The old code retried and created each twice.
#[tokio::test]
async fn a_create_whose_answer_is_lost_is_not_sent_again() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let tickets = fake.tickets().len();
    fake.lose_answers(Method::POST, "/api/v2/tickets", 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call(
            "create_ticket",
            json!({"subject": "Printer on fire", "description": "x", "email": "a@example.com"}),
        ),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(
        matches!(&e, PlatformError::OutcomeUnknown { check, .. } if check.contains("/api/v2/tickets")),
        "{e:?}"
    );
    assert!(!e.retryable());
    assert_eq!(fake.tickets().len(), tickets + 1, "created exactly once");
    let id = fake.tickets()[tickets]["id"].clone();

    let path = format!("/api/v2/tickets/{id}/notes");
    fake.lose_answers(Method::POST, &path, 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call("add_note", json!({"ticket_id": id, "body": "Once"})),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert_eq!(fake.notes().len(), 1, "one note");

    let contacts = fake.contacts().len();
    fake.lose_answers(Method::POST, "/api/v2/contacts", 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call(
            "create_contact",
            json!({"name": "New Person", "phone": "+44 20 7946 0000"}),
        ),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert_eq!(fake.contacts().len(), contacts + 1, "one contact");

    // A rate limit is refused unprocessed: retried, created once.
    fake.fail_next(
        "POST /api/v2/tickets",
        Failure::RateLimited {
            retry_after_secs: 0,
        },
        1,
    );
    testkit::as_the_executor_would(
        &*c,
        &call(
            "create_ticket",
            json!({"subject": "After a 429", "description": "x", "email": "a@example.com"}),
        ),
        3,
    )
    .await
    .expect("retried after the 429");
    assert_eq!(fake.tickets().len(), tickets + 2);
}

/// Issue 16 item 9: a contact with an email whose answer was lost is looked up by its email (a
/// unique key Freshdesk filters on): found, the action succeeds with it and nothing is sent
/// again; the old code retried the create.
#[tokio::test]
async fn a_lost_contact_create_is_settled_by_looking_it_up_by_email() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let contacts = fake.contacts().len();
    fake.lose_answers(Method::POST, "/api/v2/contacts", 1);
    let out = testkit::as_the_executor_would(
        &*c,
        &call(
            "create_contact",
            json!({"name": "Lost Answer", "email": "Lost.Answer@example.com"}),
        ),
        3,
    )
    .await
    .expect("found by its email");
    assert_eq!(fake.contacts().len(), contacts + 1, "created once");
    assert_eq!(out.result["email"], "Lost.Answer@example.com");
    assert!(out.result["id"].is_number(), "{}", out.result);
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST && r.path == "/api/v2/contacts")
        .count();
    assert_eq!(posts, 1, "not sent again");

    // A 500 before anything was created: the look-up finds nothing, the create is retried.
    fake.fail_next("POST /api/v2/contacts", Failure::ServerError, 1);
    testkit::as_the_executor_would(
        &*c,
        &call(
            "create_contact",
            json!({"name": "Second", "email": "second@example.com"}),
        ),
        3,
    )
    .await
    .expect("retried once nothing was found");
    assert_eq!(fake.contacts().len(), contacts + 2);
}

/// Issue 16, item 11: the rules' body names who made the change (`{{event_performer.id}}`),
/// so the loop guard can recognise a change made with our own API key: the performer is the
/// agent `check` reports as the identity; a person's change names them; the System names no
/// one (its rules run).
#[tokio::test]
async fn the_rules_name_the_performer_for_the_loop_guard() {
    let fake = FakeFreshdesk::start(KEY).await;
    let c = connector(&fake);
    let identity = c.check().await.expect("check").identity;
    let (received, server) = receiver().await;
    let mut t = target(&["ticket_updated"], Some(SECRET), None);
    t.url = format!("{}/api/webhooks/freshdesk/fd-main", server.origin());
    c.sync_webhook(&t).await.expect("sync");
    let actors = |by: By, to: i64| {
        let fake = &fake;
        let received = &received;
        async move {
            fake.fire(Happening::Status {
                ticket: 102,
                to,
                by,
            })
            .await;
            let r = crate::platforms::fakekit::lock(received)
                .pop()
                .expect("delivered");
            let req = InboundRequest {
                method: &r.method,
                headers: &r.headers,
                body: &r.body,
                now_unix: 0,
            };
            match super::webhook::parse(&req).expect("parsed") {
                Inbound::Event { normalized, .. } => normalized.actors,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(
        actors(By::Us, 3).await,
        identity.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(actors(By::Agent, 2).await, [fake::AGENTS[0].to_string()]);
    assert!(actors(By::System, 3).await.is_empty(), "no doer");
}
