//! The Zendesk connector against the fake ([`super::fake`]): the requests each action
//! sends and the results it reads, connection checks, failure classification, bulk jobs,
//! webhook registration through drift and repair to removal, the vendor spec check, and that
//! no credential ever leaks.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Value, json};

use super::client::ZendeskClient;
use super::connector::{ZendeskConnector, connect_zendesk};
use super::fake::{self, AGENT_EMAIL, AGENT_ID, FakeZendesk, OTHER_AGENT_EMAIL, OTHER_AGENT_ID};
use crate::manifest::model::{Credential, Limits};
use crate::manifest::{Integration, IntegrationId};
use crate::platforms::connector::{
    ActionCall, Connector, PlatformError, Registration, RegistrationOutcome, WebhookSync,
    WebhookTarget,
};
use crate::platforms::fakekit::{ApiSpec, Failure};
use crate::platforms::inbound::{Inbound, InboundRequest, VerifyKeys};
use crate::platforms::{PlatformKind, http as shared, testkit};
use crate::secrets::{ResolveContext, Secret};

const TOKEN: &str = "zd-api-token-0123456789abcdef";
const OAUTH: &str = "zd-oauth-token-fedcba9876543210";
const PUBLIC_URL: &str = "https://ops.example.com/api/webhooks/zendesk/zendesk-main";

fn no_env(_: &str) -> Option<String> {
    None
}

fn integration(base_url: Option<String>, creds: &[(&str, &str)], config: Value) -> Integration {
    Integration {
        id: IntegrationId::parse("zendesk-main").expect("id"),
        platform: PlatformKind::Zendesk,
        name: None,
        description: None,
        file: "integrations/zendesk-main.toml".into(),
        credentials: creds
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Credential::Plain((*v).to_owned())))
            .collect::<BTreeMap<_, _>>(),
        config: config.as_object().cloned().unwrap_or_default(),
        webhook: None,
        base_url,
        limits: Limits::default(),
    }
}

fn connector_with(fake: &FakeZendesk, config: Value) -> ZendeskConnector {
    let i = integration(
        Some(fake.base_url()),
        &[
            ("subdomain", "acme"),
            ("email", AGENT_EMAIL),
            ("api_token", TOKEN),
        ],
        config,
    );
    connect_zendesk(&i, &ResolveContext::new(None, &no_env))
        .expect("connect")
        .with_poll_interval(Duration::from_millis(5))
}

fn connector(fake: &FakeZendesk) -> ZendeskConnector {
    connector_with(fake, json!({}))
}

async fn start() -> FakeZendesk {
    FakeZendesk::start(AGENT_EMAIL, TOKEN, Some(OAUTH)).await
}

fn call(action: &str, parameters: Value) -> ActionCall {
    ActionCall {
        action: action.into(),
        parameters,
        idempotency_key: "job-1/step-0".into(),
    }
}

/// The credentials travel in the Authorization header only, and the spec check passed.
fn assert_clean(fake: &FakeZendesk) {
    for r in fake.requests() {
        for t in [TOKEN, OAUTH] {
            assert!(!r.path.contains(t), "token in URL {}", r.path);
            assert!(!r.text().contains(t), "token in body of {}", r.path);
            assert!(
                !r.query.iter().any(|(k, v)| k.contains(t) || v.contains(t)),
                "token in query of {}",
                r.path
            );
        }
    }
    assert_eq!(fake.spec_errors(), Vec::<String>::new());
}

fn assert_no_secret(e: &PlatformError) {
    let text = format!("{e} {e:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!text.contains(OAUTH), "{text}");
}

fn target(events: &[&str], previous: Option<Registration>) -> WebhookTarget {
    WebhookTarget {
        integration: IntegrationId::parse("zendesk-main").expect("id"),
        url: PUBLIC_URL.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: None,
        previous,
    }
}

fn registered(s: WebhookSync) -> (RegistrationOutcome, Registration) {
    match s {
        WebhookSync::Registered {
            outcome,
            registration,
        } => (outcome, registration),
        WebhookSync::Manual(m) => panic!("manual: {m}"),
    }
}

/// Requests that changed something on the platform.
fn writes(fake: &FakeZendesk) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|r| r.method != Method::GET)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Verifies and parses a delivery with `secret`, as the daemon does.
fn verify_and_parse(
    headers: &[(&'static str, String)],
    body: &[u8],
    secret: &Secret,
    now_unix: i64,
) -> Inbound {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).expect("header"),
        );
    }
    let req = InboundRequest {
        method: &Method::POST,
        headers: &h,
        body,
        now_unix,
    };
    let keys = VerifyKeys {
        secret: Some(secret.clone()),
        ..VerifyKeys::default()
    };
    super::webhook::verify(&req, &keys).expect("the delivery verifies");
    super::webhook::parse(&req).expect("the delivery parses")
}

/// `2026-11-28T10:00:00Z` as a Unix time (the fake's clock start; timestamps of tests).
const TEST_NOW: i64 = 1_795_860_000;

// ---------------------------------------------------------------------------------------
// Connection checks

#[tokio::test]
async fn check_reports_the_agent_as_identity() {
    let fake = start().await;
    let h = connector(&fake).check().await.expect("check");
    assert_eq!(h.identity.as_deref(), Some(AGENT_ID.to_string().as_str()));
    assert!(h.detail.contains(AGENT_EMAIL), "{}", h.detail);
    let r = &fake.requests_to("GET", "/api/v2/users/me")[0];
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{AGENT_EMAIL}/token:{TOKEN}")
        )
    );
    assert_eq!(r.header("authorization"), Some(expected.as_str()));
    assert_clean(&fake);

    // OAuth: a Bearer token instead.
    let i = integration(
        Some(fake.base_url()),
        &[("subdomain", "acme"), ("oauth_token", OAUTH)],
        json!({}),
    );
    let c = connect_zendesk(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    fake.clear_requests();
    assert!(c.check().await.is_ok());
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some(format!("Bearer {OAUTH}").as_str())
    );
}

#[tokio::test]
async fn check_refuses_bad_credentials_and_anonymous_answers() {
    let fake = start().await;
    let i = integration(
        Some(fake.base_url()),
        &[
            ("subdomain", "acme"),
            ("email", AGENT_EMAIL),
            ("api_token", "wrong-token"),
        ],
        json!({}),
    );
    let c = connect_zendesk(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let e = c.check().await.expect_err("401");
    assert!(matches!(e, PlatformError::Unauthorized { .. }), "{e:?}");
    assert!(!e.to_string().contains("wrong-token"));

    fake.answer_anonymous(true);
    let e = connector(&fake).check().await.expect_err("anonymous");
    assert!(
        matches!(&e, PlatformError::Unauthorized { detail } if detail.contains("anonymous")),
        "{e:?}"
    );
    fake.answer_anonymous(false);
    fake.set_role("end-user");
    let e = connector(&fake).check().await.expect_err("end user");
    assert!(
        matches!(&e, PlatformError::Unauthorized { detail } if detail.contains("end-user")),
        "{e:?}"
    );
    assert_no_secret(&e);
}

#[tokio::test]
async fn check_outcomes_suspended_missing_account_and_network_failure() {
    let fake = start().await;
    fake.suspend();
    let e = connector(&fake).check().await.expect_err("suspended");
    assert!(
        matches!(&e, PlatformError::Unauthorized { detail } if detail.contains("Forbidden")),
        "{e:?}"
    );

    let fake = start().await;
    fake.close_account();
    let e = connector(&fake).check().await.expect_err("no account");
    assert!(
        matches!(&e, PlatformError::NotFound { detail } if detail.contains("subdomain")),
        "{e:?}"
    );

    // Nothing listens there any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let i = integration(
        Some(format!("http://127.0.0.1:{port}")),
        &[
            ("subdomain", "acme"),
            ("email", AGENT_EMAIL),
            ("api_token", TOKEN),
        ],
        json!({}),
    );
    let c = connect_zendesk(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let e = c.check().await.expect_err("refused");
    assert!(matches!(e, PlatformError::NotPerformed { .. }), "{e:?}");
    assert_no_secret(&e);
}

#[test]
fn connect_needs_a_subdomain_and_a_credential_set() {
    let ctx = ResolveContext::new(None, &no_env);
    let i = integration(
        None,
        &[("email", AGENT_EMAIL), ("api_token", TOKEN)],
        json!({}),
    );
    assert!(connect_zendesk(&i, &ctx).is_err());
    let i = integration(
        None,
        &[("subdomain", "acme"), ("api_token", TOKEN)],
        json!({}),
    );
    let e = connect_zendesk(&i, &ctx).expect_err("no email");
    assert!(e.to_string().contains("email"), "{e}");
    let i = integration(
        None,
        &[("subdomain", "ac me"), ("oauth_token", OAUTH)],
        json!({}),
    );
    assert!(connect_zendesk(&i, &ctx).is_err());
    let i = integration(
        None,
        &[("subdomain", "Acme.zendesk.com"), ("oauth_token", OAUTH)],
        json!({}),
    );
    let c = connect_zendesk(&i, &ctx).expect("connect");
    let debug = format!("{c:?}");
    assert!(debug.contains("https://acme.zendesk.com/"), "{debug}");
    assert!(!debug.contains(OAUTH), "{debug}");
}

// ---------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn rate_limits_and_server_errors_are_classified() {
    let fake = start().await;
    let c = connector(&fake);
    let id = fake.add_ticket(json!({}));
    fake.fail_next(
        "PUT /api/v2/tickets/{id}",
        Failure::RateLimited {
            retry_after_secs: 17,
        },
        1,
    );
    let e = c
        .execute(&call(
            "set_priority",
            json!({"ticket_id": id, "priority": "high"}),
        ))
        .await
        .expect_err("429");
    assert_eq!(
        e,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(17))
        }
    );
    assert!(e.retryable());
    fake.fail_next("PUT /api/v2/tickets/{id}", Failure::ServerError, 1);
    let e = c
        .execute(&call(
            "set_priority",
            json!({"ticket_id": id, "priority": "high"}),
        ))
        .await
        .expect_err("500");
    assert!(matches!(e, PlatformError::Transient { .. }), "{e:?}");
    fake.fail_next(
        "GET /api/v2/users/me",
        Failure::Unavailable {
            retry_after_secs: 30,
        },
        1,
    );
    let e = c.check().await.expect_err("500");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    assert!(matches!(e, PlatformError::Transient { .. }));
    // And then it works.
    let out = c
        .execute(&call(
            "set_priority",
            json!({"ticket_id": id, "priority": "high"}),
        ))
        .await
        .expect("ok");
    assert_eq!(out.result["priority"], "high");
    let last = fake.requests().pop().expect("request");
    assert!(last.header("authorization").is_some());
    assert_clean(&fake);
}

#[tokio::test]
async fn a_spent_budget_is_rate_limited_with_retry_after() {
    let fake = start().await;
    let c = connector(&fake);
    fake.set_rate_limit_remaining(1);
    c.check().await.expect("the last request of the minute");
    let e = c.check().await.expect_err("over the limit");
    assert_eq!(
        e,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(60))
        }
    );
    fake.reset_rate_limit();
    c.check().await.expect("a new minute");
}

#[tokio::test]
async fn rate_limit_headers_are_sent_and_read() {
    let fake = start().await;
    let c = connector(&fake);
    c.check().await.expect("check");
    // The fake announces its budget like Zendesk; the client reads it without failing.
    let http = shared::client(Duration::from_secs(5)).expect("client");
    let raw = ZendeskClient::with_api_token(
        http,
        format!("{}/", fake.base_url()),
        AGENT_EMAIL,
        &Secret::from(TOKEN.to_owned()),
    )
    .expect("client");
    let a = raw
        .call(Method::GET, "api/v2/users/me", &[], None, None)
        .await
        .expect("me");
    assert_eq!(
        a.headers.get("x-rate-limit").and_then(|v| v.to_str().ok()),
        Some("700")
    );
    let remaining: u64 = a
        .headers
        .get("x-rate-limit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("remaining");
    assert!(remaining < 700);
    // List endpoints add the `ratelimit-*` headers.
    let a = raw
        .call(Method::GET, "api/v2/triggers", &[], None, None)
        .await
        .expect("triggers");
    for h in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(a.headers.contains_key(h), "{h}");
    }
}

// ---------------------------------------------------------------------------------------
// Actions

/// Adding an action to the catalogue without its request code (an arm of `execute`'s `match`)
/// fails here.
#[tokio::test]
async fn every_catalogued_action_reaches_the_platform() {
    let fake = start().await;
    let c = connector(&fake);
    // What the request code checks beyond the catalogue (the rest are plain samples).
    let values = json!({
        "email": "sample@example.com",
        "update_ticket": { "subject": "Sample" },
    });
    testkit::assert_every_action_reaches_the_platform(&super::DESCRIPTOR, &c, &values, || {
        fake.requests().len()
    })
    .await;
}

#[tokio::test]
async fn create_ticket_sends_an_idempotency_key_and_reads_the_ticket() {
    let fake = start().await;
    let c = connector_with(
        &fake,
        json!({"default_group_id": 360001, "default_priority": "high", "default_type": "incident"}),
    );
    let params = json!({
        "subject": "Refund for double charge", "comment": "I was charged twice.",
        "requester_email": "priya@example.com", "requester_name": "Priya",
        "tags": ["billing", "refund"], "public": false, "external_id": "FD-11",
        "custom_fields": [{"id": 27642, "value": "745"}]
    });
    let out = c
        .execute(&call("create_ticket", params.clone()))
        .await
        .expect("create");
    for k in ["id", "url", "status", "requester_id", "created_at"] {
        assert!(!out.result[k].is_null(), "{k} missing in {}", out.result);
    }
    assert_eq!(out.result["status"], "new");
    let r = &fake.requests_to("POST", "/api/v2/tickets")[0];
    assert_eq!(r.header("idempotency-key"), Some("job-1/step-0"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let t = &r.json()["ticket"];
    assert_eq!(t["subject"], "Refund for double charge");
    assert_eq!(
        t["comment"],
        json!({"body": "I was charged twice.", "public": false})
    );
    assert_eq!(
        t["requester"],
        json!({"email": "priya@example.com", "name": "Priya"})
    );
    assert_eq!(t["group_id"], 360001);
    assert_eq!(t["priority"], "high");
    assert_eq!(t["type"], "incident");
    assert_eq!(t["custom_fields"][0]["id"], 27642);
    let requester = fake
        .user_by_email("priya@example.com")
        .expect("requester made");
    assert_eq!(out.result["requester_id"], requester["id"]);

    // A retry of the same step: the same ticket, not a second one.
    let again = c
        .execute(&call("create_ticket", params))
        .await
        .expect("retry");
    assert_eq!(again.result["id"], out.result["id"]);
    let id = out.result["id"].as_u64().expect("id");
    assert!(fake.ticket(id + 1).is_none(), "no second ticket");
    assert_clean(&fake);
}

#[tokio::test]
async fn create_ticket_checks_its_parameters_before_sending() {
    let fake = start().await;
    let c = connector(&fake);
    for (params, needle) in [
        (
            json!({"subject": "x"}),
            "missing required parameter `comment`",
        ),
        (json!({"comment": "  "}), "`comment` is empty"),
        (
            json!({"comment": "x", "priority": "extreme"}),
            "urgent, high, normal, low",
        ),
        (
            json!({"comment": "x", "requester_id": 5, "requester_email": "a@b.co"}),
            "not both",
        ),
        (
            json!({"comment": "x", "requester_email": "nobody"}),
            "not an email",
        ),
        (
            json!({"comment": "x", "due_at": "tomorrow", "type": "task"}),
            "RFC 3339",
        ),
        (
            json!({"comment": "x", "due_at": "2026-12-01T09:00:00Z", "type": "question"}),
            "type `task`",
        ),
        (
            json!({"comment": "x", "tags": ["two words"]}),
            "contains a space",
        ),
        (
            json!({"comment": "x", "colour": "red"}),
            "unknown parameter `colour`",
        ),
        (
            json!({"comment": "x", "assignee_id": "abc"}),
            "should be an integer",
        ),
        (json!({"comment": "x", "assignee_id": -4}), "positive id"),
        (json!("text"), "must be a table"),
    ] {
        let e = c
            .execute(&call("create_ticket", params.clone()))
            .await
            .expect_err("invalid");
        assert!(
            matches!(&e, PlatformError::Invalid(m) if m.contains(needle)),
            "{params}: {e:?}"
        );
    }
    let e = c
        .execute(&call("close_ticket", json!({})))
        .await
        .expect_err("unknown");
    assert!(matches!(e, PlatformError::Invalid(_)));
    assert!(fake.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn update_ticket_and_its_safe_update() {
    let fake = start().await;
    let c = connector(&fake);
    let id = fake.add_ticket(json!({}));
    let out = c
        .execute(&call(
            "update_ticket",
            json!({"ticket_id": id.to_string(), "subject": "Printer fixed", "status": "pending",
                   "assignee_id": OTHER_AGENT_ID, "tags": "printer,hardware"}),
        ))
        .await
        .expect("update");
    assert_eq!(out.result["id"], id);
    assert_eq!(out.result["status"], "pending");
    assert!(out.result["updated_at"].is_string());
    let r = &fake.requests_to("PUT", &format!("/api/v2/tickets/{id}"))[0];
    assert_eq!(
        r.json(),
        json!({"ticket": {"subject": "Printer fixed", "status": "pending",
                          "assignee_id": OTHER_AGENT_ID, "tags": ["printer", "hardware"]}})
    );

    // A stale stamp: Zendesk refuses with 409, which is no use retrying.
    let stale = out.result["updated_at"].as_str().expect("stamp").to_owned();
    fake.touch_ticket(id, json!({"priority": "low"}));
    let e = c
        .execute(&call(
            "update_ticket",
            json!({"ticket_id": id, "status": "solved", "safe_update": true, "updated_stamp": stale}),
        ))
        .await
        .expect_err("conflict");
    assert!(
        matches!(e, PlatformError::Rejected { status: 409, .. }),
        "{e:?}"
    );
    assert!(!e.retryable());
    let fresh = fake.ticket(id).expect("ticket")["updated_at"].clone();
    c.execute(&call(
        "update_ticket",
        json!({"ticket_id": id, "status": "solved", "safe_update": "true", "updated_stamp": fresh}),
    ))
    .await
    .expect("safe update");
    let last = fake.requests().pop().expect("request").json();
    assert_eq!(last["ticket"]["safe_update"], true);
    assert_eq!(fake.ticket(id).expect("ticket")["status"], "solved");

    // Nothing to change, or a safe update without its stamp: refused before sending.
    fake.clear_requests();
    for p in [
        json!({"ticket_id": id}),
        json!({"ticket_id": id, "status": "open", "safe_update": true}),
    ] {
        let e = c
            .execute(&call("update_ticket", p))
            .await
            .expect_err("invalid");
        assert!(matches!(e, PlatformError::Invalid(_)), "{e:?}");
    }
    assert!(fake.requests().is_empty());
    // A ticket that does not exist.
    let e = c
        .execute(&call(
            "update_ticket",
            json!({"ticket_id": 999, "status": "open"}),
        ))
        .await
        .expect_err("404");
    assert!(matches!(e, PlatformError::NotFound { .. }), "{e:?}");
    assert_clean(&fake);
}

#[tokio::test]
async fn add_comment_posts_public_replies_or_internal_notes() {
    let fake = start().await;
    let c = connector(&fake);
    let id = fake.add_ticket(json!({}));
    let out = c
        .execute(&call(
            "add_comment",
            json!({"ticket_id": id, "body": "Looking into it"}),
        ))
        .await
        .expect("note");
    for k in ["id", "audit_id", "updated_at"] {
        assert!(!out.result[k].is_null(), "{k}: {}", out.result);
    }
    let sent = fake.requests().pop().expect("req").json();
    assert_eq!(
        sent,
        json!({"ticket": {"comment": {"body": "Looking into it", "public": false}}})
    );
    c.execute(&call(
        "add_comment",
        json!({"ticket_id": id, "html_body": "<p>Fixed</p>", "public": true, "author_id": OTHER_AGENT_ID}),
    ))
    .await
    .expect("reply");
    let sent = fake.requests().pop().expect("req").json();
    assert_eq!(
        sent["ticket"]["comment"],
        json!({"html_body": "<p>Fixed</p>", "public": true, "author_id": OTHER_AGENT_ID})
    );
    // The config default makes comments public.
    let c = connector_with(&fake, json!({"comments_public": true}));
    c.execute(&call("add_comment", json!({"ticket_id": id, "body": "Hi"})))
        .await
        .expect("public");
    assert_eq!(
        fake.requests().pop().expect("req").json()["ticket"]["comment"]["public"],
        true
    );
    let e = c
        .execute(&call("add_comment", json!({"ticket_id": id})))
        .await
        .expect_err("empty");
    assert!(matches!(e, PlatformError::Invalid(m) if m.contains("at least one of")));
    let e = c
        .execute(&call(
            "add_comment",
            json!({"ticket_id": id, "body": "a", "html_body": "b"}),
        ))
        .await
        .expect_err("both");
    assert!(matches!(e, PlatformError::Invalid(m) if m.contains("not both")));
    assert_eq!(
        fake.ticket(id).expect("t")["comments"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn assign_change_status_and_set_priority() {
    let fake = start().await;
    let c = connector(&fake);
    let id = fake.add_ticket(json!({"status": "new"}));
    let out = c
        .execute(&call(
            "assign_ticket",
            json!({"ticket_id": id, "assignee_email": OTHER_AGENT_EMAIL, "group_id": fake::GROUP_ID}),
        ))
        .await
        .expect("assign");
    assert_eq!(
        out.result,
        json!({"id": id, "assignee_id": OTHER_AGENT_ID, "group_id": fake::GROUP_ID})
    );
    assert_eq!(
        fake.requests().pop().expect("r").json(),
        json!({"ticket": {"assignee_email": OTHER_AGENT_EMAIL, "group_id": fake::GROUP_ID}})
    );
    let e = c
        .execute(&call(
            "assign_ticket",
            json!({"ticket_id": id, "assignee_email": "end@user.example"}),
        ))
        .await
        .expect_err("not an agent");
    assert!(
        matches!(e, PlatformError::Rejected { status: 422, .. }),
        "{e:?}"
    );
    let e = c
        .execute(&call(
            "assign_ticket",
            json!({"ticket_id": id, "assignee_id": 1, "assignee_email": OTHER_AGENT_EMAIL}),
        ))
        .await
        .expect_err("both");
    assert!(matches!(e, PlatformError::Invalid(_)));

    let out = c
        .execute(&call(
            "change_status",
            json!({"ticket_id": id, "status": "hold"}),
        ))
        .await
        .expect("status");
    assert_eq!(out.result, json!({"id": id, "status": "hold"}));
    let out = c
        .execute(&call(
            "set_priority",
            json!({"ticket_id": id, "priority": "urgent"}),
        ))
        .await
        .expect("priority");
    assert_eq!(out.result, json!({"id": id, "priority": "urgent"}));
    assert_eq!(
        fake.requests().pop().expect("r").json(),
        json!({"ticket": {"priority": "urgent"}})
    );
    let e = c
        .execute(&call(
            "change_status",
            json!({"ticket_id": id, "status": "done"}),
        ))
        .await
        .expect_err("enum");
    assert!(matches!(e, PlatformError::Invalid(_)));
    let e = c
        .execute(&call("change_status", json!({"ticket_id": id})))
        .await
        .expect_err("none");
    assert!(matches!(e, PlatformError::Invalid(_)));
    // A closed ticket cannot change: Zendesk's 422.
    c.execute(&call(
        "change_status",
        json!({"ticket_id": id, "status": "closed"}),
    ))
    .await
    .expect("close");
    let e = c
        .execute(&call(
            "set_priority",
            json!({"ticket_id": id, "priority": "low"}),
        ))
        .await
        .expect_err("closed");
    assert!(
        matches!(&e, PlatformError::Rejected { status: 422, detail } if detail.contains("closed prevents")),
        "{e:?}"
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn add_tags_adds_without_replacing() {
    let fake = start().await;
    let c = connector(&fake);
    let id = fake.add_ticket(json!({"tags": ["vip"]}));
    let out = c
        .execute(&call(
            "add_tags",
            json!({"ticket_id": id, "tags": ["billing", "vip"]}),
        ))
        .await
        .expect("tags");
    assert_eq!(out.result, json!({"tags": ["vip", "billing"]}));
    let r = &fake.requests_to("PUT", &format!("/api/v2/tickets/{id}/tags"))[0];
    assert_eq!(r.json(), json!({"tags": ["billing", "vip"]}));
    assert!(
        fake.requests_to("POST", &format!("/api/v2/tickets/{id}/tags"))
            .is_empty()
    );

    let stamp = fake.ticket(id).expect("t")["updated_at"].clone();
    c.execute(&call(
        "add_tags",
        json!({"ticket_id": id, "tags": "refund", "updated_stamp": stamp}),
    ))
    .await
    .expect("safe");
    let sent = fake.requests().pop().expect("r").json();
    assert_eq!(sent["safe_update"], "true");
    let e = c
        .execute(&call(
            "add_tags",
            json!({"ticket_id": id, "tags": "late", "updated_stamp": stamp}),
        ))
        .await
        .expect_err("stale");
    assert!(
        matches!(e, PlatformError::Rejected { status: 409, .. }),
        "{e:?}"
    );
    let e = c
        .execute(&call("add_tags", json!({"ticket_id": id, "tags": []})))
        .await
        .expect_err("none");
    assert!(matches!(e, PlatformError::Invalid(_)));
    assert_clean(&fake);
}

#[tokio::test]
async fn apply_macro_fetches_the_result_then_saves_it_safely() {
    let fake = start().await;
    let c = connector(&fake);
    let id = fake.add_ticket(json!({}));
    fake.add_macro(
        4242,
        "Escalate",
        json!([{"field": "priority", "value": "urgent"},
               {"field": "assignee_id", "value": OTHER_AGENT_ID.to_string()},
               {"field": "comment_value", "value": "Escalated to tier 2."}]),
    );
    let before = fake.ticket(id).expect("t")["updated_at"].clone();
    let out = c
        .execute(&call(
            "apply_macro",
            json!({"ticket_id": id, "macro_id": 4242}),
        ))
        .await
        .expect("macro");
    for k in ["id", "status", "updated_at"] {
        assert!(!out.result[k].is_null(), "{k}: {}", out.result);
    }
    let get = fake.requests_to("GET", &format!("/api/v2/tickets/{id}/macros/4242/apply"));
    assert_eq!(get.len(), 1);
    let put = &fake.requests_to("PUT", &format!("/api/v2/tickets/{id}"))[0].json()["ticket"];
    assert_eq!(put["priority"], "urgent");
    assert_eq!(put["assignee_id"], OTHER_AGENT_ID);
    assert_eq!(put["safe_update"], true);
    assert_eq!(put["updated_stamp"], before);
    assert!(put.get("id").is_none() && put.get("url").is_none());
    assert!(put["comment"].get("scoped_body").is_none());
    let t = fake.ticket(id).expect("t");
    assert_eq!(t["priority"], "urgent");
    assert_eq!(t["comments"][0]["body"], "Escalated to tier 2.");

    // The ticket changes between the fetch and the save: a transient collision.
    fake.edit_after_macro_apply(true);
    let e = c
        .execute(&call(
            "apply_macro",
            json!({"ticket_id": id, "macro_id": 4242}),
        ))
        .await
        .expect_err("collision");
    assert!(
        matches!(&e, PlatformError::Transient { detail, .. } if detail.contains("changed")),
        "{e:?}"
    );
    assert!(e.retryable());
    fake.edit_after_macro_apply(false);
    let e = c
        .execute(&call(
            "apply_macro",
            json!({"ticket_id": id, "macro_id": 1}),
        ))
        .await
        .expect_err("no macro");
    assert!(matches!(e, PlatformError::NotFound { .. }), "{e:?}");
    assert_clean(&fake);
}

#[tokio::test]
async fn create_user_and_upsert() {
    let fake = start().await;
    let c = connector(&fake);
    let out = c
        .execute(&call(
            "create_user",
            json!({"name": "Jane Doe", "email": "jane@example.com", "role": "end-user",
                   "external_id": "crm-7", "tags": ["vip"], "verified": true,
                   "user_fields": {"plan": "gold"}}),
        ))
        .await
        .expect("user");
    for k in ["id", "email", "url", "created_at"] {
        assert!(!out.result[k].is_null(), "{k}: {}", out.result);
    }
    let sent = fake.requests_to("POST", "/api/v2/users")[0].json();
    assert_eq!(
        sent,
        json!({"user": {"name": "Jane Doe", "email": "jane@example.com", "role": "end-user",
                        "external_id": "crm-7", "tags": ["vip"], "verified": true,
                        "user_fields": {"plan": "gold"}}})
    );
    let e = c
        .execute(&call(
            "create_user",
            json!({"name": "Jane", "email": "jane@example.com"}),
        ))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&e, PlatformError::Rejected { status: 422, detail } if detail.contains("DuplicateValue")),
        "{e:?}"
    );
    let again = c
        .execute(&call(
            "create_user",
            json!({"name": "Jane D.", "email": "jane@example.com", "upsert": true}),
        ))
        .await
        .expect("upsert");
    assert_eq!(again.result["id"], out.result["id"]);
    assert_eq!(
        fake.requests_to("POST", "/api/v2/users/create_or_update")
            .len(),
        1
    );
    let e = c
        .execute(&call("create_user", json!({"name": "X", "email": "x"})))
        .await
        .expect_err("email");
    assert!(matches!(e, PlatformError::Invalid(_)));
    assert_clean(&fake);
}

// ---------------------------------------------------------------------------------------
// Bulk

#[tokio::test]
async fn execute_many_uses_update_many_and_polls_the_job() {
    let fake = start().await;
    fake.set_job_polls(3);
    let c = connector(&fake);
    let a = fake.add_ticket(json!({}));
    let b = fake.add_ticket(json!({"tags": ["old"]}));
    assert!(c.batchable("change_status") && c.batchable("add_tags"));
    assert!(!c.batchable("create_ticket") && !c.batchable("apply_macro"));
    let calls = vec![
        call(
            "change_status",
            json!({"ticket_id": a, "status": "pending"}),
        ),
        call("add_tags", json!({"ticket_id": b, "tags": ["new"]})),
        call("set_priority", json!({"ticket_id": a, "priority": "low"})),
        call(
            "assign_ticket",
            json!({"ticket_id": 424242, "assignee_id": OTHER_AGENT_ID}),
        ),
        call("change_status", json!({"ticket_id": b, "status": "bogus"})),
        call(
            "update_ticket",
            json!({"ticket_id": b, "subject": "Safe", "updated_stamp": "2026-11-28T10:00:00Z"}),
        ),
    ];
    let out = c.execute_many(&calls).await;
    assert_eq!(out.len(), 6);
    let ok = |i: usize| out[i].as_ref().expect("ok").result.clone();
    assert_eq!(ok(0), json!({"id": a, "status": "pending"}));
    assert_eq!(ok(1), json!({"tags": ["old", "new"]}));
    assert_eq!(ok(2), json!({"id": a, "priority": "low"}));
    assert!(
        matches!(&out[3], Err(PlatformError::Rejected { detail, .. }) if detail.contains("424242"))
    );
    assert!(matches!(&out[4], Err(PlatformError::Invalid(_))));
    // A safe update goes alone (its stamp is stale here: 409).
    assert!(
        matches!(&out[5], Err(PlatformError::Rejected { status: 409, .. })),
        "{:?}",
        out[5]
    );

    let jobs = fake.requests_to("PUT", "/api/v2/tickets/update_many");
    // Ticket `a` twice: two batch jobs; the tags in the bulk form, a job of their own.
    assert_eq!(jobs.len(), 3);
    let first = jobs[0].json();
    assert_eq!(
        first["tickets"],
        json!([{"id": a, "status": "pending"},
               {"id": 424242, "assignee_id": OTHER_AGENT_ID}])
    );
    assert_eq!(jobs[1].query_param("ids"), Some(b.to_string().as_str()));
    assert_eq!(
        jobs[1].json(),
        json!({"ticket": {"additional_tags": ["new"]}})
    );
    assert_eq!(fake.ticket(b).expect("b")["tags"], json!(["old", "new"]));
    let polls = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/job_statuses/"))
        .count();
    assert!(polls >= 6, "{polls} polls");
    assert!(
        !fake
            .requests_to("GET", "/api/v2/tickets/show_many")
            .is_empty()
    );
    assert_eq!(fake.ticket(a).expect("a")["priority"], "low");
    assert_clean(&fake);
}

#[tokio::test]
async fn a_failed_bulk_request_fails_each_call() {
    let fake = start().await;
    let c = connector(&fake);
    let a = fake.add_ticket(json!({}));
    fake.fail_next(
        "PUT /api/v2/tickets/update_many",
        Failure::RateLimited {
            retry_after_secs: 5,
        },
        1,
    );
    let out = c
        .execute_many(&[
            call("change_status", json!({"ticket_id": a, "status": "open"})),
            call(
                "set_priority",
                json!({"ticket_id": a + 1000, "priority": "low"}),
            ),
        ])
        .await;
    for r in out {
        assert_eq!(
            r.expect_err("429"),
            PlatformError::RateLimited {
                retry_after: Some(Duration::from_secs(5))
            }
        );
    }
}

/// `add_tags` calls are grouped by identical tag sets into `update_many?ids=` jobs (the only
/// form in which Zendesk honours `additional_tags`); the fake ignores `additional_tags` in a
/// `tickets` array as Zendesk documents, so a batch form would leave the tags unchanged.
#[tokio::test]
async fn batched_add_tags_use_the_ids_form_grouped_by_tag_set() {
    let fake = start().await;
    let c = connector(&fake);
    let a = fake.add_ticket(json!({"tags": ["old"]}));
    let b = fake.add_ticket(json!({}));
    let d = fake.add_ticket(json!({}));
    let out = c
        .execute_many(&[
            call("add_tags", json!({"ticket_id": a, "tags": ["vip", "eu"]})),
            call("add_tags", json!({"ticket_id": b, "tags": ["eu", "vip"]})),
            call("add_tags", json!({"ticket_id": d, "tags": ["other"]})),
        ])
        .await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(
        fake.ticket(a).expect("a")["tags"],
        json!(["old", "eu", "vip"])
    );
    assert_eq!(fake.ticket(b).expect("b")["tags"], json!(["eu", "vip"]));
    assert_eq!(fake.ticket(d).expect("d")["tags"], json!(["other"]));
    let jobs = fake.requests_to("PUT", "/api/v2/tickets/update_many");
    assert_eq!(jobs.len(), 2, "one job per tag set");
    assert_eq!(
        jobs[0].query_param("ids"),
        Some(format!("{a},{b}").as_str())
    );
    assert_eq!(
        jobs[0].json(),
        json!({"ticket": {"additional_tags": ["eu", "vip"]}})
    );
    assert_eq!(jobs[1].query_param("ids"), Some(d.to_string().as_str()));
    assert!(jobs.iter().all(|j| j.json().get("tickets").is_none()));
    assert_clean(&fake);
}

// ---------------------------------------------------------------------------------------
// Trigger bodies and enrichment

/// The trigger bodies hold only ids, enum values and timestamps: a ticket whose subject,
/// requester name and latest comment have quotes, backslashes and newlines still arrives as
/// valid JSON (the fake substitutes placeholders raw, as Zendesk does), and `enrich` fetches
/// that text from the API, the delivered comment even when a newer one came meanwhile.
#[tokio::test]
async fn trigger_bodies_stay_json_and_enrichment_fetches_the_text() {
    let fake = start().await;
    let c = connector(&fake);
    let (_, reg) = registered(
        c.sync_webhook(&target(&["comment.created", "ticket.updated"], None))
            .await
            .expect("sync"),
    );
    let secret = reg.secret.clone().expect("secret");
    let requester = fake.add_user("Dana \"DJ\" O'Neil", "dana@example.com");
    let ticket = fake.add_ticket(json!({
        "subject": "Refund \"now\"\nplease",
        "requester_id": requester,
        "assignee_id": OTHER_AGENT_ID,
        "tags": ["vip"],
        "comments": [{"id": 5001, "body": "He said \"stop\"\nthen left \\o/", "public": true,
                      "author_id": requester}],
    }));
    for event in ["comment.created", "ticket.updated"] {
        let (_, body) = fake.render_trigger(event, ticket).expect("rendered");
        serde_json::from_slice::<Value>(&body).unwrap_or_else(|e| {
            panic!(
                "{event}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
    }
    let (hook, body) = fake
        .render_trigger("comment.created", ticket)
        .expect("rendered");
    let ts = fake::rfc3339(TEST_NOW as u64);
    let Inbound::Event { normalized, .. } = verify_and_parse(
        &fake.signed_headers(&hook, &ts, &body),
        &body,
        &secret,
        TEST_NOW,
    ) else {
        panic!("an event");
    };
    assert_eq!(normalized.objects["comment"]["id"], 5001);
    assert_eq!(normalized.objects["comment"]["body"], Value::Null);
    assert_eq!(normalized.objects["requester"]["id"], requester);

    fake.clear_requests();
    let fields = c
        .enrich("comment.created", &normalized.objects)
        .await
        .expect("enriched");
    assert_eq!(
        fields["comment"]["body"],
        "He said \"stop\"\nthen left \\o/"
    );
    assert_eq!(fields["ticket"]["subject"], "Refund \"now\"\nplease");
    assert_eq!(fields["ticket"]["tags"], json!(["vip"]));
    assert_eq!(fields["requester"]["name"], "Dana \"DJ\" O'Neil");
    assert_eq!(fields["requester"]["email"], "dana@example.com");
    assert_eq!(fields["assignee"]["email"], OTHER_AGENT_EMAIL);
    let paths: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            format!("GET /api/v2/tickets/{ticket}"),
            "GET /api/v2/users/show_many".to_owned(),
            format!("GET /api/v2/tickets/{ticket}/comments"),
        ]
    );

    // A newer comment came before the enrichment ran: the delivered one is looked up.
    c.execute(&call(
        "add_comment",
        json!({"ticket_id": ticket, "body": "newer", "public": false}),
    ))
    .await
    .expect("comment");
    let fields = c
        .enrich("comment.created", &normalized.objects)
        .await
        .expect("enriched");
    assert_eq!(
        fields["comment"]["body"],
        "He said \"stop\"\nthen left \\o/"
    );
    // A ticket event needs no comment.
    fake.clear_requests();
    let fields = c
        .enrich("ticket.updated", &normalized.objects)
        .await
        .expect("enriched");
    assert!(fields.get("comment").is_none());
    assert_eq!(fake.requests().len(), 2);
    // The platform down: the error is transient (the executor retries it).
    fake.fail_next("GET /api/v2/tickets/{id}", Failure::ServerError, 1);
    let e = c
        .enrich("ticket.updated", &normalized.objects)
        .await
        .expect_err("500");
    assert!(e.retryable(), "{e:?}");
    assert_clean(&fake);
}

// ---------------------------------------------------------------------------------------
// Webhook registration

#[tokio::test]
async fn registration_create_drift_repair_unchanged_and_prune() {
    let fake = start().await;
    let c = connector(&fake);
    let foreign = fake.add_foreign_webhook("Someone else's hook", "https://other.example.com/in");
    let events = [
        "comment.created",
        "ticket.created",
        "ticket.solved",
        "user.created",
    ];

    // Create: the events webhook, the tickets webhook and three triggers.
    let (outcome, reg) = registered(c.sync_webhook(&target(&events, None)).await.expect("sync"));
    assert_eq!(outcome, RegistrationOutcome::Created);
    assert_eq!(reg.url, PUBLIC_URL);
    assert_eq!(reg.ids.len(), 5, "{:?}", reg.ids);
    let ours: Vec<Value> = fake
        .webhooks()
        .into_iter()
        .filter(|w| {
            w["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("supportopsd:zendesk-main "))
        })
        .collect();
    assert_eq!(ours.len(), 2);
    for w in &ours {
        assert_eq!(w["endpoint"], PUBLIC_URL);
        assert_eq!(w["http_method"], "POST");
        assert_eq!(w["request_format"], "json");
    }
    let events_hook = ours
        .iter()
        .find(|w| w["name"] == "supportopsd:zendesk-main events")
        .expect("events");
    assert_eq!(
        events_hook["subscriptions"],
        json!(["zen:event-type:user.created"])
    );
    let tickets_hook = ours
        .iter()
        .find(|w| w["name"] == "supportopsd:zendesk-main tickets")
        .expect("tickets");
    assert_eq!(
        tickets_hook["subscriptions"],
        json!(["conditional_ticket_events"])
    );
    let tickets_id = tickets_hook["id"].as_str().expect("id").to_owned();
    // One secret for both, read from the API and handed back for sealing.
    let secret = reg.secret.clone().expect("secret");
    for w in &ours {
        let id = w["id"].as_str().expect("id");
        assert_eq!(
            Some(secret.expose()),
            fake.secret_of(id).as_deref().map(str::as_bytes)
        );
        assert_eq!(
            fake.requests_to("GET", &format!("/api/v2/webhooks/{id}/signing_secret"))
                .len(),
            1
        );
    }
    let triggers = fake.triggers();
    assert_eq!(triggers.len(), 3);
    for t in &triggers {
        assert!(
            t["title"]
                .as_str()
                .expect("title")
                .starts_with("supportopsd:zendesk-main ")
        );
        assert_eq!(t["actions"][0]["field"], "notification_webhook");
        assert_eq!(t["actions"][0]["value"][0], tickets_id.as_str());
    }

    // A ticket is created: the trigger's delivery verifies with the secret and parses.
    let ticket = fake.add_ticket(json!({"subject": "Refund please", "tags": ["billing"]}));
    let (hook, body) = fake
        .render_trigger("ticket.created", ticket)
        .expect("rendered");
    let ts = fake::rfc3339(TEST_NOW as u64);
    let Inbound::Event {
        event, normalized, ..
    } = verify_and_parse(
        &fake.signed_headers(&hook, &ts, &body),
        &body,
        &secret,
        TEST_NOW,
    )
    else {
        panic!("an event");
    };
    assert_eq!(event.name, "ticket.created");
    assert_eq!(normalized.objects["ticket"]["id"], ticket);
    // Free text is not in the trigger body: the enrichment step fetches it.
    assert_eq!(normalized.objects["ticket"]["subject"], Value::Null);
    assert_eq!(normalized.actor(), Some(AGENT_ID.to_string().as_str()));

    // Nothing changed: Unchanged, and nothing written.
    fake.clear_requests();
    let (outcome, reg2) = registered(
        c.sync_webhook(&target(&events, Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(writes(&fake), Vec::<String>::new());
    assert_eq!(reg2, reg);

    // Drift: the tickets webhook is deleted (with its triggers) → repaired.
    fake.delete_webhook(&tickets_id);
    assert!(fake.triggers().is_empty());
    let (outcome, reg3) = registered(
        c.sync_webhook(&target(&events, Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(fake.triggers().len(), 3);
    assert_eq!(
        reg3.secret, reg.secret,
        "the repaired webhook shares the secret"
    );

    // Drift: a trigger is edited and the events webhook pointed elsewhere → repaired.
    let trig = fake.triggers()[0]["id"].as_u64().expect("id");
    fake.edit_trigger(
        trig,
        json!({"active": false, "conditions": {"all": [], "any": []}}),
    );
    let events_id = events_hook["id"].as_str().expect("id");
    fake.edit_webhook(events_id, json!({"endpoint": "https://evil.example.com/"}));
    fake.clear_requests();
    let (outcome, reg4) = registered(
        c.sync_webhook(&target(&events, Some(reg3.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    let w = writes(&fake);
    assert!(w.contains(&format!("PUT /api/v2/triggers/{trig}")), "{w:?}");
    assert!(
        w.contains(&format!("PUT /api/v2/webhooks/{events_id}")),
        "{w:?}"
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(
        fake.webhooks()
            .iter()
            .find(|x| x["id"] == events_id)
            .expect("w")["endpoint"],
        PUBLIC_URL
    );

    // Then unchanged again.
    fake.clear_requests();
    let (outcome, _) = registered(
        c.sync_webhook(&target(&events, Some(reg4.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert!(writes(&fake).is_empty());

    // Fewer events: updated, and what is no longer wanted is pruned.
    let fewer = ["ticket.created", "user.created"];
    let (outcome, reg5) = registered(
        c.sync_webhook(&target(&fewer, Some(reg4.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Updated);
    assert_eq!(fake.triggers().len(), 1);
    assert_eq!(reg5.ids.len(), 3);

    // Removal deletes everything of ours, and nothing else.
    let removed = c
        .remove_webhook(&target(&fewer, Some(reg5)))
        .await
        .expect("remove");
    assert_eq!(removed, 3);
    assert!(fake.triggers().is_empty());
    let left: Vec<Value> = fake.webhooks();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], foreign.as_str());
    assert_eq!(
        c.remove_webhook(&target(&fewer, None))
            .await
            .expect("again"),
        0
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn registration_by_event_subscription_uses_one_webhook() {
    let fake = start().await;
    let c = connector_with(&fake, json!({"ticket_events_via": "event_subscription"}));
    let events = [
        "organization.created",
        "ticket.created",
        "ticket.solved",
        "user.updated",
    ];
    let (outcome, reg) = registered(c.sync_webhook(&target(&events, None)).await.expect("sync"));
    assert_eq!(outcome, RegistrationOutcome::Created);
    assert!(fake.triggers().is_empty());
    let hooks = fake.webhooks();
    assert_eq!(hooks.len(), 1);
    let subs: Vec<&str> = hooks[0]["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in [
        "zen:event-type:organization.created",
        "zen:event-type:ticket.created",
        "zen:event-type:ticket.status_changed",
        "zen:event-type:user.name_changed",
    ] {
        assert!(subs.contains(&s), "{s} in {subs:?}");
    }
    let secret = reg.secret.clone().expect("secret");
    assert_eq!(
        Some(secret.expose()),
        fake.secret_of(hooks[0]["id"].as_str().expect("id"))
            .as_deref()
            .map(str::as_bytes)
    );

    // A subscribed event, signed by the fake, verifies and parses.
    let body =
        json!({"type": "zen:event-type:organization.created", "account_id": fake::ACCOUNT_ID,
        "subject": "zen:organization:6607619104125", "id": "a540ab78-88f2-49e1-93a7-16152a6f782c",
        "time": "2026-11-28T10:00:00Z", "zendesk_event_version": "2022-06-20",
        "detail": {"created_at": "2026-11-28T10:00:00Z", "id": "6607619104125", "name": "Acme",
                   "shared_comments": false, "shared_tickets": false,
                   "updated_at": "2026-11-28T10:00:00Z", "group_id": null, "external_id": null},
        "event": {}})
        .to_string();
    let hook = hooks[0]["id"].as_str().expect("id");
    let ts = fake::rfc3339(TEST_NOW as u64);
    let Inbound::Event {
        event, normalized, ..
    } = verify_and_parse(
        &fake.signed_headers(hook, &ts, body.as_bytes()),
        body.as_bytes(),
        &secret,
        TEST_NOW,
    )
    else {
        panic!("an event");
    };
    assert_eq!(event.name, "organization.created");
    assert_eq!(normalized.objects["organization"]["name"], "Acme");

    // The webhook's subscriptions edited on the platform: repaired by a replace.
    fake.edit_webhook(
        hook,
        json!({"subscriptions": ["zen:event-type:user.created"]}),
    );
    let (outcome, _) = registered(
        c.sync_webhook(&target(&events, Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(fake.webhooks()[0]["id"], hook);
    assert_eq!(
        c.remove_webhook(&target(&events, None)).await.expect("rm"),
        1
    );
    assert!(fake.webhooks().is_empty());
    assert_clean(&fake);
}

#[tokio::test]
async fn adding_user_events_keeps_the_tickets_webhook_and_one_secret() {
    let fake = start().await;
    let c = connector(&fake);
    let (_, first) = registered(
        c.sync_webhook(&target(&["ticket.created"], None))
            .await
            .expect("sync"),
    );
    let tickets_hook = fake.webhooks()[0]["id"].as_str().expect("id").to_owned();
    let (outcome, second) = registered(
        c.sync_webhook(&target(
            &["ticket.created", "user.created"],
            Some(first.clone()),
        ))
        .await
        .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Updated);
    assert_eq!(second.secret, first.secret);
    assert!(
        fake.webhooks()
            .iter()
            .any(|w| w["id"] == tickets_hook.as_str())
    );
    assert_eq!(fake.webhooks().len(), 2);
    for w in fake.webhooks() {
        let id = w["id"].as_str().expect("id");
        assert_eq!(
            fake.secret_of(id).as_deref().map(str::as_bytes),
            first.secret.as_ref().map(Secret::expose)
        );
    }

    // The tickets webhook's secret is reset on the platform: it is made again with the
    // shared one, and its trigger follows it.
    let http = shared::client(Duration::from_secs(5)).expect("client");
    let raw = ZendeskClient::with_api_token(
        http,
        format!("{}/", fake.base_url()),
        AGENT_EMAIL,
        &Secret::from(TOKEN.to_owned()),
    )
    .expect("client");
    raw.call(
        Method::POST,
        &format!("api/v2/webhooks/{tickets_hook}/signing_secret"),
        &[],
        None,
        None,
    )
    .await
    .expect("reset");
    let (outcome, third) = registered(
        c.sync_webhook(&target(
            &["ticket.created", "user.created"],
            Some(second.clone()),
        ))
        .await
        .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(third.secret, first.secret);
    let triggers = fake.triggers();
    assert_eq!(triggers.len(), 1);
    let hook = triggers[0]["actions"][0]["value"][0]
        .as_str()
        .expect("hook");
    assert_ne!(hook, tickets_hook);
    assert_eq!(
        fake.secret_of(hook).as_deref().map(str::as_bytes),
        first.secret.as_ref().map(Secret::expose)
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn registration_failures_are_classified() {
    let fake = start().await;
    let c = connector(&fake);
    fake.fail_next(
        "POST /api/v2/webhooks",
        Failure::RateLimited {
            retry_after_secs: 3,
        },
        1,
    );
    let e = c
        .sync_webhook(&target(&["user.created"], None))
        .await
        .expect_err("429");
    assert_eq!(
        e,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    let e = c
        .sync_webhook(&target(&["ticket.exploded"], None))
        .await
        .expect_err("unknown event");
    assert!(matches!(e, PlatformError::Invalid(_)));
    // Works after the 429.
    let (outcome, _) = registered(
        c.sync_webhook(&target(&["user.created"], None))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
}

// ---------------------------------------------------------------------------------------
// The vendor spec check

#[tokio::test]
async fn the_fake_refuses_what_the_vendor_specs_do_not_allow() {
    if !ApiSpec::is_loaded(fake::SUPPORT_SPEC) || !ApiSpec::is_loaded(fake::WEBHOOKS_SPEC) {
        eprintln!("skipped: the Zendesk vendor API descriptions are not available");
        return;
    }
    let fake = start().await;
    let http = shared::client(Duration::from_secs(5)).expect("client");
    let raw = ZendeskClient::with_api_token(
        http,
        format!("{}/", fake.base_url()),
        AGENT_EMAIL,
        &Secret::from(TOKEN.to_owned()),
    )
    .expect("client");
    let id = fake.add_ticket(json!({}));
    // A query parameter the Tags API does not take.
    let e = raw
        .call(
            Method::PUT,
            &format!("api/v2/tickets/{id}/tags"),
            &[("replace", "true".to_owned())],
            Some(&json!({"tags": ["a"]})),
            None,
        )
        .await
        .expect_err("query");
    assert!(
        matches!(e, PlatformError::Rejected { status: 400, .. }),
        "{e:?}"
    );
    // A trigger without its required title.
    let e = raw
        .call(
            Method::POST,
            "api/v2/triggers",
            &[],
            Some(&json!({"trigger": {"conditions": {"all": []}, "actions": []}})),
            None,
        )
        .await
        .expect_err("title");
    assert!(
        matches!(e, PlatformError::Rejected { status: 400, .. }),
        "{e:?}"
    );
    // A webhook without its endpoint (the Webhooks API description).
    let e = raw
        .call(
            Method::POST,
            "api/v2/webhooks",
            &[],
            Some(&json!({"webhook": {"name": "x", "status": "active", "http_method": "POST",
                                     "request_format": "json", "subscriptions": ["conditional_ticket_events"]}})),
            None,
        )
        .await
        .expect_err("endpoint");
    assert!(
        matches!(e, PlatformError::Rejected { status: 400, .. }),
        "{e:?}"
    );
    // An operation that does not exist.
    let e = raw
        .call(
            Method::POST,
            &format!("api/v2/tickets/{id}/tags/add"),
            &[],
            None,
            None,
        )
        .await
        .expect_err("no such operation");
    assert!(matches!(e, PlatformError::NotFound { .. }), "{e:?}");
    let errors = fake.spec_errors();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("`replace`")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("`title`")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("`endpoint`")),
        "{errors:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Robustness

#[tokio::test]
async fn odd_parameter_values_never_panic_and_never_leak() {
    let fake = start().await;
    let c = connector(&fake);
    let ticket = fake.add_ticket(json!({}));
    fake.add_macro(7, "Noop", json!([]));
    let odd = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(u64::MAX),
        json!(1e300),
        json!(""),
        json!("  "),
        json!("a,b, ,c"),
        json!([]),
        json!([{}]),
        json!({}),
        json!([1, "x", null]),
        json!("é".repeat(5000)),
        json!("2026-11-28T10:00:00Z"),
    ];
    for spec in super::DESCRIPTOR.actions {
        // Plausible values for every required parameter, then one parameter made odd.
        let mut base = serde_json::Map::new();
        for p in spec.params.iter().filter(|p| p.required) {
            let v = match p.name {
                "ticket_id" => json!(ticket),
                "macro_id" => json!(7),
                "email" => json!("someone@example.com"),
                "priority" => json!("high"),
                "tags" => json!(["x"]),
                _ => json!("text"),
            };
            base.insert(p.name.to_owned(), v);
        }
        for p in spec.params {
            for v in &odd {
                let mut params = base.clone();
                params.insert(p.name.to_owned(), v.clone());
                let r = c.execute(&call(spec.name, Value::Object(params))).await;
                if let Err(e) = r {
                    assert_no_secret(&e);
                }
            }
        }
    }
    assert_clean(&fake);
}
