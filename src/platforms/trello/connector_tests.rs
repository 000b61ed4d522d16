//! The Trello connector against the fake Trello API ([`super::fake`]): the exact requests
//! each action sends, connection checks, webhook registration (HEAD validation, drift, prune),
//! the classification of every kind of failure, and that no credential ever leaks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use ::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::client::TrelloClient;
use super::connector::{DEFAULT_BASE_URL, connect, connect_trello};
use super::fake::{self, FakeTrello};
use crate::manifest::model::{Credential, Limits};
use crate::manifest::{Integration, IntegrationId};
use crate::platforms::connector::{
    ActionCall, ConnectError, Connector, PlatformError, Registration, RegistrationOutcome,
    WebhookSync, WebhookTarget,
};
use crate::platforms::fakekit::{Failure, FakeServer, Recorded, empty_response};
use crate::platforms::testkit;
use crate::platforms::{InboundRequest, PlatformKind, VerifyKeys, http};
use crate::secrets::{ResolveContext, Secret, SecretRef};

const KEY: &str = "trellokey0123456789abcdef";
const TOKEN: &str = "ATTAtokensecretvalue0123456789";
const APP_SECRET: &str = "appsecretvalue-0123";

fn no_env(_: &str) -> Option<String> {
    None
}

fn integration(
    base_url: Option<String>,
    credentials: &[(&str, &str)],
    config: Value,
) -> Integration {
    Integration {
        id: IntegrationId::parse("trello-main").expect("id"),
        platform: PlatformKind::Trello,
        name: None,
        description: None,
        file: "integrations/trello-main.toml".into(),
        credentials: credentials
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Credential::Plain((*v).to_owned())))
            .collect::<BTreeMap<_, _>>(),
        config: config.as_object().cloned().unwrap_or_default(),
        webhook: None,
        base_url,
        limits: Limits::default(),
    }
}

fn connector_with(fake: &FakeTrello, config: Value) -> Arc<dyn Connector> {
    let i = integration(
        Some(fake.base_url()),
        &[
            ("api_key", KEY),
            ("token", TOKEN),
            ("app_secret", APP_SECRET),
        ],
        config,
    );
    connect(&i, &ResolveContext::new(None, &no_env)).expect("connect")
}

fn connector(fake: &FakeTrello) -> Arc<dyn Connector> {
    connector_with(
        fake,
        json!({ "boards": [fake::BOARD_ID], "default_list": fake::LIST_INBOX }),
    )
}

async fn start() -> FakeTrello {
    FakeTrello::start(KEY, TOKEN, APP_SECRET).await
}

fn call(action: &str, parameters: Value) -> ActionCall {
    ActionCall {
        action: action.into(),
        parameters,
        idempotency_key: "job-1/step-0".into(),
    }
}

/// The parameters of a request: its query, and the string fields of a JSON body.
fn q(r: &Recorded) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = r.query.iter().cloned().collect();
    if let Value::Object(m) = r.json() {
        for (k, v) in m {
            out.insert(k, v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        }
    }
    out
}

fn assert_no_secret(text: &str) {
    for s in [TOKEN, "tokensecretvalue", APP_SECRET, "appsecretvalue"] {
        assert!(!text.contains(s), "secret leaked: {text}");
    }
}

/// Key and token travel only in the Authorization header: never in a query or a body, and the
/// token only in the path Trello requires it in (the token's webhook list).
fn assert_credentials_only_in_header(fake: &FakeTrello) {
    for r in fake.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("OAuth oauth_consumer_key=\"{KEY}\", oauth_token=\"{TOKEN}\"").as_str()),
            "{} {}",
            r.method,
            r.path
        );
        for (k, v) in &r.query {
            assert!(
                k != "key" && k != "token",
                "credential in query of {}",
                r.path
            );
            assert!(
                !v.contains(TOKEN) && !v.contains(KEY),
                "credential in {}",
                r.path
            );
        }
        assert!(!r.text().contains(TOKEN), "token in body of {}", r.path);
        if r.path.contains(TOKEN) {
            assert_eq!(r.path, format!("/1/tokens/{TOKEN}/webhooks"));
        }
    }
}

const CARD_FIELDS: &[&str] = &[
    "id",
    "short_link",
    "url",
    "name",
    "id_short",
    "id_list",
    "id_board",
];

fn assert_card_result(v: &Value) {
    for k in CARD_FIELDS {
        assert!(!v[*k].is_null(), "result field {k} missing: {v}");
    }
}

// === check ===

#[tokio::test]
async fn check_reports_the_member_as_identity() {
    let fake = start().await;
    let c = connector(&fake);
    let h = c.check().await.expect("check");
    assert_eq!(h.identity.as_deref(), Some(fake::MEMBER_ID));
    assert_eq!(
        h.detail,
        format!(
            "authenticated as @{} (supportopsd, {})",
            fake::MEMBER_USERNAME,
            fake::MEMBER_ID
        )
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, Method::GET);
    assert_eq!(reqs[0].path, "/1/members/me");
    assert_eq!(q(&reqs[0])["fields"], "id,username,fullName");
    assert_eq!(reqs[0].header("user-agent"), Some(http::USER_AGENT));
    assert_credentials_only_in_header(&fake);
}

#[tokio::test]
async fn check_outcomes_bad_key_bad_token_revoked_wrong_base_unreachable() {
    let fake = FakeTrello::start("another-key", TOKEN, APP_SECRET).await;
    let err = connector(&fake).check().await.expect_err("bad key");
    assert!(
        matches!(&err, PlatformError::Unauthorized { detail } if detail.contains("invalid key")),
        "{err:?}"
    );
    assert!(!err.retryable());

    let fake = FakeTrello::start(KEY, "another-token", APP_SECRET).await;
    let err = connector(&fake).check().await.expect_err("bad token");
    assert!(
        matches!(&err, PlatformError::Unauthorized { detail } if detail.contains("invalid token")),
        "{err:?}"
    );

    let fake = start().await;
    fake.revoke_token();
    let err = connector(&fake).check().await.expect_err("revoked");
    assert!(matches!(err, PlatformError::Unauthorized { .. }), "{err:?}");

    // A base URL that is not Trello's API (wrong host path): not found.
    let fake = start().await;
    let i = integration(
        Some(format!("{}/2", fake.base_url().trim_end_matches("/1"))),
        &[("api_key", KEY), ("token", TOKEN)],
        json!({}),
    );
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let err = c.check().await.expect_err("wrong base");
    assert!(
        matches!(&err, PlatformError::NotFound { detail } if detail.contains("Cannot GET")),
        "{err:?}"
    );

    // Nothing listening: transient, and no URL (nor the port) in the detail.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let i = integration(
        Some(format!("http://127.0.0.1:{port}/1")),
        &[("api_key", KEY), ("token", TOKEN)],
        json!({}),
    );
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let err = c.check().await.expect_err("refused");
    assert!(matches!(err, PlatformError::NotPerformed { .. }), "{err:?}");
    assert!(!err.to_string().contains(&port.to_string()), "{err}");
}

// === actions ===

/// Adding an action to the catalogue without its request code (an arm of `execute`'s `match`)
/// fails here.
#[tokio::test]
async fn every_catalogued_action_reaches_the_platform() {
    let fake = start().await;
    let c = connector(&fake);
    let values = json!({});
    testkit::assert_every_action_reaches_the_platform(
        &super::DESCRIPTOR,
        c.as_ref(),
        &values,
        || fake.requests().len(),
    )
    .await;
}

#[tokio::test]
async fn create_card_sends_query_parameters_and_returns_the_card() {
    let fake = start().await;
    let c = connector(&fake);
    let out = c
        .execute(&call(
            "create_card",
            json!({
                "name": "Refund for double charge",
                "desc": "Zendesk #35437",
                "pos": "top",
                "due": "2026-12-01T10:00:00Z",
                "due_complete": "false",
                "id_labels": [fake::LABEL_URGENT],
                "id_members": "m1, m2",
                "url_source": "https://acme.zendesk.com/agent/tickets/35437",
            }),
        ))
        .await
        .expect("create_card");
    let reqs = fake.requests_to("POST /cards");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/1/cards");
    // In a JSON body, as the API description allows for cards: nothing in the URL.
    assert!(reqs[0].query.is_empty(), "{:?}", reqs[0].query);
    assert_eq!(reqs[0].header("content-type"), Some("application/json"));
    let sent = q(&reqs[0]);
    assert_eq!(sent["idList"], fake::LIST_INBOX, "default_list is used");
    assert_eq!(sent["name"], "Refund for double charge");
    assert_eq!(sent["desc"], "Zendesk #35437");
    assert_eq!(sent["pos"], "top");
    assert_eq!(sent["due"], "2026-12-01T10:00:00Z");
    assert_eq!(sent["dueComplete"], "false");
    assert_eq!(sent["idLabels"], fake::LABEL_URGENT);
    assert_eq!(sent["idMembers"], "m1,m2");
    assert_eq!(
        sent["urlSource"],
        "https://acme.zendesk.com/agent/tickets/35437"
    );
    assert_card_result(&out.result);
    assert_eq!(out.result["id_list"], fake::LIST_INBOX);
    assert_eq!(out.result["id_board"], fake::BOARD_ID);
    let id = out.result["id"].as_str().expect("id");
    assert_eq!(
        fake.card(id).expect("card at Trello")["name"],
        "Refund for double charge"
    );
    assert_credentials_only_in_header(&fake);
}

#[tokio::test]
async fn update_and_move_card() {
    let fake = start().await;
    let c = connector(&fake);
    let card = fake
        .add_card(fake::LIST_INBOX, "Printer on fire")
        .expect("a list of the fake");
    let id = card["id"].as_str().expect("id").to_owned();

    let out = c
        .execute(&call(
            "update_card",
            json!({ "id_card": id, "name": "Printer on fire (P1)", "closed": false, "due": "", "id_labels": [] }),
        ))
        .await
        .expect("update_card");
    let r = &fake.requests_to("PUT /cards/{id}")[0];
    assert_eq!(r.path, format!("/1/cards/{id}"));
    assert_eq!(
        q(r),
        BTreeMap::from([
            ("name".into(), "Printer on fire (P1)".into()),
            ("closed".into(), "false".into()),
            ("due".into(), String::new()),
            ("idLabels".into(), String::new()),
        ])
    );
    assert_card_result(&out.result);
    assert_eq!(out.result["name"], "Printer on fire (P1)");

    fake.clear_requests();
    let out = c
        .execute(&call(
            "move_card",
            json!({ "id_card": id, "id_list": fake::LIST_OTHER, "id_board": fake::OTHER_BOARD_ID, "pos": 2.5 }),
        ))
        .await
        .expect("move_card");
    let r = &fake.requests_to("PUT /cards/{id}")[0];
    assert_eq!(
        q(r),
        BTreeMap::from([
            ("idList".into(), fake::LIST_OTHER.into()),
            ("idBoard".into(), fake::OTHER_BOARD_ID.into()),
            ("pos".into(), "2.5".into()),
        ])
    );
    assert_eq!(out.result["id_list"], fake::LIST_OTHER);
    assert_eq!(out.result["id_board"], fake::OTHER_BOARD_ID);
    assert_card_result(&out.result);

    // An unknown card is Trello's 404; a bad list its text 400.
    let err = c
        .execute(&call(
            "move_card",
            json!({ "id_card": "5f1a2b3c4d5e6f7a8b9c9999", "id_list": fake::LIST_DOING }),
        ))
        .await
        .expect_err("no such card");
    assert!(
        matches!(&err, PlatformError::NotFound { detail } if detail.contains("card not found")),
        "{err:?}"
    );
    let err = c
        .execute(&call(
            "move_card",
            json!({ "id_card": id, "id_list": "5f1a2b3c4d5e6f7a8b9c7777" }),
        ))
        .await
        .expect_err("bad list");
    assert_eq!(
        err,
        PlatformError::Rejected {
            status: 400,
            detail: "move_card: invalid value for idList".into()
        }
    );
}

#[tokio::test]
async fn add_comment_returns_the_action() {
    let fake = start().await;
    let c = connector(&fake);
    let card = fake
        .add_card(fake::LIST_INBOX, "Login broken")
        .expect("a list of the fake");
    let id = card["id"].as_str().expect("id").to_owned();
    let out = c
        .execute(&call(
            "add_comment",
            json!({ "id_card": id, "text": "Escalated from **Zendesk** #7 & more" }),
        ))
        .await
        .expect("add_comment");
    let r = &fake.requests_to("POST /cards/{id}/actions/comments")[0];
    assert_eq!(r.path, format!("/1/cards/{id}/actions/comments"));
    assert_eq!(q(r)["text"], "Escalated from **Zendesk** #7 & more");
    assert!(out.result["id"].is_string());
    assert!(out.result["date"].is_string());
    assert_eq!(out.result["id_card"], json!(id));
    assert_eq!(fake.comments().len(), 1);
}

#[tokio::test]
async fn add_checklist_creates_the_list_then_each_item() {
    let fake = start().await;
    let c = connector(&fake);
    let card = fake
        .add_card(fake::LIST_INBOX, "Onboard Acme")
        .expect("a list of the fake");
    let id = card["id"].as_str().expect("id").to_owned();
    let out = c
        .execute(&call(
            "add_checklist",
            json!({ "id_card": id, "name": "Steps", "items": ["Call", "Email", "Invoice"], "checked": true }),
        ))
        .await
        .expect("add_checklist");
    let r = &fake.requests_to("POST /checklists")[0];
    assert_eq!(
        q(r),
        BTreeMap::from([
            ("idCard".into(), id.clone()),
            ("name".into(), "Steps".into())
        ])
    );
    let items = fake.requests_to("POST /checklists/{id}/checkItems");
    let names: Vec<String> = items.iter().map(|r| q(r)["name"].clone()).collect();
    assert_eq!(names, ["Call", "Email", "Invoice"]);
    assert!(items.iter().all(|r| q(r)["checked"] == "true"));
    assert_eq!(out.result["name"], "Steps");
    assert_eq!(out.result["id_card"], json!(id));
    assert_eq!(
        out.result["check_item_ids"].as_array().map(Vec::len),
        Some(3)
    );
    let list = &fake.checklists()[0];
    assert_eq!(list["id"], out.result["id"]);
    assert_eq!(list["checkItems"].as_array().map(Vec::len), Some(3));

    // Without items: one call, an empty list of item ids.
    fake.clear_requests();
    let out = c
        .execute(&call("add_checklist", json!({ "id_card": id })))
        .await
        .expect("bare checklist");
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(out.result["name"], "Checklist");
    assert_eq!(out.result["check_item_ids"], json!([]));

    // A failing item stops the action, naming the checklist already made.
    fake.fail_next("POST /checklists/{id}/checkItems", Failure::ServerError, 1);
    let err = c
        .execute(&call(
            "add_checklist",
            json!({ "id_card": id, "items": ["a"] }),
        ))
        .await
        .expect_err("item fails");
    assert!(
        matches!(&err, PlatformError::OutcomeUnknown { detail, .. } if detail.contains("was created")),
        "{err:?}"
    );
}

#[tokio::test]
async fn add_label_existing_or_new() {
    let fake = start().await;
    let c = connector(&fake);
    let card = fake
        .add_card(fake::LIST_INBOX, "VIP customer")
        .expect("a list of the fake");
    let id = card["id"].as_str().expect("id").to_owned();
    let out = c
        .execute(&call(
            "add_label",
            json!({ "id_card": id, "id_label": fake::LABEL_URGENT }),
        ))
        .await
        .expect("existing label");
    let r = &fake.requests_to("POST /cards/{id}/idLabels")[0];
    assert_eq!(q(r)["value"], fake::LABEL_URGENT);
    assert_eq!(
        out.result,
        json!({ "id_labels": [fake::LABEL_URGENT], "id": fake::LABEL_URGENT })
    );
    // Twice: Trello's text 400.
    let err = c
        .execute(&call(
            "add_label",
            json!({ "id_card": id, "id_label": fake::LABEL_URGENT }),
        ))
        .await
        .expect_err("already there");
    assert!(
        matches!(err, PlatformError::Rejected { status: 400, .. }),
        "{err:?}"
    );

    let out = c
        .execute(&call(
            "add_label",
            json!({ "id_card": id, "color": "purple", "name": "VIP" }),
        ))
        .await
        .expect("new label");
    let r = &fake.requests_to("POST /cards/{id}/labels")[0];
    assert_eq!(
        q(r),
        BTreeMap::from([
            ("color".into(), "purple".into()),
            ("name".into(), "VIP".into())
        ])
    );
    let new_id = out.result["id"].as_str().expect("new label id").to_owned();
    assert_eq!(out.result["id_labels"], json!([fake::LABEL_URGENT, new_id]));
    assert!(
        fake.labels()
            .iter()
            .any(|l| l["id"] == json!(new_id) && l["name"] == "VIP" && l["color"] == "purple")
    );
}

#[tokio::test]
async fn bad_parameters_are_invalid_before_sending() {
    let fake = start().await;
    let c = connector_with(&fake, json!({ "boards": [fake::BOARD_ID] }));
    let cases = [
        ("nope", json!({}), "no action"),
        ("create_card", json!({ "name": "x" }), "default_list"),
        (
            "create_card",
            json!({ "id_list": "L", "name": "  " }),
            "empty",
        ),
        (
            "create_card",
            json!({ "id_list": "L", "name": "x", "colour": 1 }),
            "unknown parameter `colour`",
        ),
        (
            "create_card",
            json!({ "id_list": "L", "name": "x", "pos": "middle" }),
            "`pos`",
        ),
        (
            "create_card",
            json!({ "id_list": "L", "name": "x", "pos": -1 }),
            "`pos`",
        ),
        (
            "create_card",
            json!({ "id_list": "L", "name": "x", "due": "tomorrow" }),
            "RFC 3339",
        ),
        (
            "create_card",
            json!({ "id_list": "L", "name": "x", "url_source": "ftp://x" }),
            "url_source",
        ),
        (
            "create_card",
            json!({ "id_list": "a/../b", "name": "x" }),
            "not a Trello id",
        ),
        (
            "create_card",
            json!({ "id_list": "L", "name": "x".repeat(16_385) }),
            "longer than",
        ),
        ("create_card", json!([1, 2]), "must be a table"),
        (
            "update_card",
            json!({ "id_card": "C1" }),
            "needs at least one of",
        ),
        (
            "update_card",
            json!({ "id_card": "C1", "closed": "maybe" }),
            "should be a boolean",
        ),
        (
            "update_card",
            json!({ "id_card": "", "name": "x" }),
            "`id_card` is empty",
        ),
        (
            "move_card",
            json!({ "id_card": "C1" }),
            "missing required parameter `id_list`",
        ),
        (
            "add_comment",
            json!({ "id_card": "C1", "text": " " }),
            "`text` is empty",
        ),
        (
            "add_comment",
            json!({ "text": "x" }),
            "missing required parameter `id_card`",
        ),
        (
            "add_checklist",
            json!({ "id_card": "C1", "items": [{}] }),
            "should be a list of strings",
        ),
        (
            "add_label",
            json!({ "id_card": "C1" }),
            "needs at least one of",
        ),
        (
            "add_label",
            json!({ "id_card": "C1", "id_label": "L", "color": "red" }),
            "not both",
        ),
        (
            "add_label",
            json!({ "id_card": "C1", "color": "magenta" }),
            "one of the listed values",
        ),
        (
            "add_label",
            json!({ "id_card": "C1", "id_label": "L", "name": "x" }),
            "`name` goes with `color`",
        ),
    ];
    for (action, params, needle) in cases {
        let err = c
            .execute(&call(action, params.clone()))
            .await
            .expect_err("invalid");
        assert!(
            matches!(&err, PlatformError::Invalid(m) if m.contains(needle)),
            "{action} {params}: {err:?}"
        );
    }
    assert!(fake.requests().is_empty(), "nothing is sent");
}

// === failures ===

#[tokio::test]
async fn rate_limits_and_server_errors_are_classified() {
    let fake = start().await;
    let c = connector(&fake);
    let create = call("create_card", json!({ "name": "x" }));

    fake.fail_next(
        "POST /cards",
        Failure::RateLimited {
            retry_after_secs: 7,
        },
        1,
    );
    assert_eq!(
        c.execute(&create).await.expect_err("429"),
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    // Trello usually sends no Retry-After: its 10-second window.
    fake.fail_next(
        "POST /cards",
        Failure::RateLimited {
            retry_after_secs: 0,
        },
        1,
    );
    assert_eq!(
        c.execute(&create).await.expect_err("429"),
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(10))
        }
    );
    fake.fail_next("POST /cards", Failure::ServerError, 1);
    let err = c.execute(&create).await.expect_err("500");
    // A 500 may come after the card was made: a create is not sent again (issue 16 item 9).
    assert!(
        matches!(err, PlatformError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    assert!(!err.retryable());
    fake.fail_next(
        "GET /members/me",
        Failure::Unavailable {
            retry_after_secs: 3,
        },
        1,
    );
    assert_eq!(
        c.check().await.expect_err("503").retry_after(),
        Some(Duration::from_secs(3))
    );
    // And then it works.
    c.execute(&create).await.expect("recovered");
}

#[tokio::test]
async fn the_token_limit_answers_429_with_trellos_window() {
    let fake = start().await;
    // A window far longer than the test: no timing involved.
    fake.set_rate_limit(3, Duration::from_secs(3600));
    let c = connector(&fake);
    for _ in 0..3 {
        c.check().await.expect("within the limit");
    }
    assert_eq!(
        c.check().await.expect_err("over the limit"),
        PlatformError::RateLimited {
            retry_after: Some(super::client::RATE_LIMIT_WINDOW)
        }
    );
    assert_eq!(fake.requests().len(), 4);
}

// === the vendor spec ===

#[tokio::test]
async fn the_fake_refuses_requests_the_vendor_spec_does_not_allow() {
    let fake = start().await;
    if !fake.spec_checked() {
        eprintln!(
            "vendor document {} not found; spec check test skipped",
            fake::SPEC
        );
        return;
    }
    let client = TrelloClient::new(
        http::client(Duration::from_secs(5)).expect("client"),
        format!("{}/", fake.base_url()),
        &Secret::from(KEY.to_owned()),
        &Secret::from(TOKEN.to_owned()),
    )
    .expect("client");
    // An undeclared query parameter.
    let err = client
        .call(
            Method::POST,
            "cards",
            &[
                ("idList", fake::LIST_INBOX.into()),
                ("colour", "red".into()),
            ],
            "t",
        )
        .await
        .expect_err("unknown parameter");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 400, detail } if detail.contains("`colour`")),
        "{err:?}"
    );
    // A required one missing.
    let err = client
        .call(Method::POST, "checklists", &[("name", "x".into())], "t")
        .await
        .expect_err("missing idCard");
    assert!(
        matches!(&err, PlatformError::Rejected { status: 400, detail } if detail.contains("`idCard`")),
        "{err:?}"
    );
    // An operation Trello does not have.
    let err = client
        .call(Method::PATCH, "cards/abc", &[], "t")
        .await
        .expect_err("no such operation");
    assert!(
        matches!(&err, PlatformError::NotFound { detail } if detail.contains("Cannot PATCH")),
        "{err:?}"
    );
    // The same requests, well formed, pass.
    client
        .call(
            Method::POST,
            "cards",
            &[("idList", fake::LIST_INBOX.into()), ("name", "ok".into())],
            "t",
        )
        .await
        .expect("allowed");
}

// === webhooks ===

const HOOK_PATH: &str = "/api/webhooks/trello/trello-main";

/// A stand-in for the daemon's webhook endpoint: answers `HEAD` with `status`.
struct Callback {
    server: FakeServer,
    status: Arc<AtomicU16>,
}

impl Callback {
    async fn start(status: u16) -> Callback {
        let code = Arc::new(AtomicU16::new(status));
        let c = code.clone();
        let server = FakeServer::start(move |_| {
            empty_response(StatusCode::from_u16(c.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK))
        })
        .await;
        Callback {
            server,
            status: code,
        }
    }

    fn url(&self) -> String {
        format!("{}{HOOK_PATH}", self.server.origin())
    }
}

fn target(url: &str, previous: Option<Registration>) -> WebhookTarget {
    WebhookTarget {
        integration: IntegrationId::parse("trello-main").expect("id"),
        url: url.to_owned(),
        events: vec!["commentCard".into(), "createCard".into()],
        secret: None,
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

#[tokio::test]
async fn registration_create_unchanged_drift_repair_update_and_prune() {
    let fake = start().await;
    let cb = Callback::start(200).await;
    let c = connector(&fake);
    let marker = "supportopsd:trello-main";
    // Someone else's webhooks: another token's, and this token's without our marker.
    let foreign_token = fake.add_webhook(fake::BOARD_ID, &cb.url(), marker, "other-token");
    let unmarked = fake.add_webhook(
        fake::BOARD_ID,
        "https://elsewhere.example.com/hook",
        "zapier",
        TOKEN,
    );

    // First registration: created, after Trello's HEAD to the callback.
    let (outcome, reg) = registered(
        c.sync_webhook(&target(&cb.url(), None))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
    assert_eq!(reg.ids.len(), 1);
    assert_eq!(reg.url, cb.url());
    let heads: Vec<Recorded> = cb.server.requests();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].method, Method::HEAD);
    assert_eq!(heads[0].path, HOOK_PATH);
    let post = &fake.requests_to("POST /webhooks")[0];
    assert_eq!(
        q(post),
        BTreeMap::from([
            ("callbackURL".into(), cb.url()),
            ("idModel".into(), fake::BOARD_ID.into()),
            ("description".into(), marker.into()),
            ("active".into(), "true".into()),
        ])
    );
    let hook = fake
        .webhooks()
        .into_iter()
        .find(|w| w.id == reg.ids[0])
        .expect("at Trello");
    assert_eq!(hook.description, marker);

    // Again: nothing to do.
    fake.clear_requests();
    let (outcome, reg2) = registered(
        c.sync_webhook(&target(&cb.url(), Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(reg2, reg);
    assert_eq!(fake.requests().len(), 1, "only the list");

    // Drift: deleted behind our back → repaired.
    assert!(fake.delete_webhook(&reg.ids[0]));
    let (outcome, reg3) = registered(
        c.sync_webhook(&target(&cb.url(), Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_ne!(reg3.ids, reg.ids);

    // Drift: paused and renamed → put back.
    fake.edit_webhook(&reg3.ids[0], |w| {
        w.active = false;
        w.description = "paused by someone".into();
    });
    let (outcome, reg4) = registered(
        c.sync_webhook(&target(&cb.url(), Some(reg3.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(reg4.ids, reg3.ids);
    let w = fake
        .webhooks()
        .into_iter()
        .find(|w| w.id == reg3.ids[0])
        .expect("kept");
    assert!(w.active);
    assert_eq!(w.description, marker);
    // Repaired, it stays put.
    let (outcome, again) = registered(
        c.sync_webhook(&target(&cb.url(), Some(reg4.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(again, reg4);

    // A second board (by short link) and a new URL: updated; the old one moved, not duplicated.
    let c2 = connector_with(
        &fake,
        json!({ "boards": [fake::BOARD_ID, "Zz98YxWv", fake::BOARD_ID] }),
    );
    let cb2 = Callback::start(200).await;
    let (outcome, reg5) = registered(
        c2.sync_webhook(&target(&cb2.url(), Some(reg4.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Updated);
    assert_eq!(reg5.ids.len(), 2);
    assert_eq!(reg5.ids[0], reg4.ids[0]);
    let ours: Vec<_> = fake
        .webhooks()
        .into_iter()
        .filter(|w| w.description == marker && w.token == TOKEN)
        .collect();
    assert_eq!(ours.len(), 2);
    assert!(ours.iter().all(|w| w.callback_url == cb2.url()));
    assert_eq!(cb2.server.requests().len(), 2, "each URL change is checked");

    // Back to one board: the other webhook of ours is pruned.
    let (outcome, reg6) = registered(
        c.sync_webhook(&target(&cb2.url(), Some(reg5.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Updated);
    assert_eq!(reg6.ids, vec![reg5.ids[0].clone()]);

    // Removal: ours only.
    let n = c
        .remove_webhook(&target(&cb2.url(), Some(reg6)))
        .await
        .expect("remove");
    assert_eq!(n, 1);
    let left: Vec<String> = fake.webhooks().into_iter().map(|w| w.id).collect();
    assert_eq!(left, vec![foreign_token, unmarked]);
    // Already gone: fine, nothing deleted.
    assert_eq!(
        c.remove_webhook(&target(&cb2.url(), None))
            .await
            .expect("remove again"),
        0
    );
    assert_credentials_only_in_header(&fake);
}

#[tokio::test]
async fn registration_waits_for_the_callback_to_answer_head() {
    let fake = start().await;
    let cb = Callback::start(405).await;
    let c = connector(&fake);
    let err = c
        .sync_webhook(&target(&cb.url(), None))
        .await
        .expect_err("callback not served yet");
    assert!(
        matches!(&err, PlatformError::Transient { detail, .. } if detail.contains("got 405") && detail.contains("serving")),
        "{err:?}"
    );
    assert!(fake.webhooks().is_empty());
    // Nothing listening at all.
    let err = c
        .sync_webhook(&target(
            "http://127.0.0.1:1/api/webhooks/trello/trello-main",
            None,
        ))
        .await
        .expect_err("unreachable callback");
    assert!(matches!(err, PlatformError::Transient { .. }), "{err:?}");
    // Once the daemon serves it, the same sync creates it.
    cb.status.store(200, Ordering::SeqCst);
    let (outcome, _) = registered(
        c.sync_webhook(&target(&cb.url(), None))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
    assert_eq!(fake.webhooks().len(), 1);
}

#[tokio::test]
async fn a_hand_made_webhook_to_our_url_is_adopted_not_duplicated() {
    let fake = start().await;
    let cb = Callback::start(200).await;
    let c = connector(&fake);
    let by_hand = fake.add_webhook(fake::BOARD_ID, &cb.url(), "made by hand", TOKEN);
    let (outcome, reg) = registered(
        c.sync_webhook(&target(&cb.url(), None))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Created);
    assert_eq!(reg.ids, vec![by_hand.clone()]);
    assert_eq!(fake.webhooks().len(), 1);
    assert_eq!(fake.webhooks()[0].description, "supportopsd:trello-main");
    assert!(fake.requests_to("POST /webhooks").is_empty());
}

#[tokio::test]
async fn registration_needs_boards_and_classifies_failures() {
    let fake = start().await;
    let cb = Callback::start(200).await;
    let c = connector_with(&fake, json!({}));
    let err = c
        .sync_webhook(&target(&cb.url(), None))
        .await
        .expect_err("no boards");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("boards")),
        "{err:?}"
    );
    assert!(fake.requests().is_empty());

    let c = connector_with(&fake, json!({ "boards": ["NoSuchBd"] }));
    let err = c
        .sync_webhook(&target(&cb.url(), None))
        .await
        .expect_err("unknown board");
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");

    let c = connector(&fake);
    fake.fail_next(
        "GET /tokens/{token}/webhooks",
        Failure::RateLimited {
            retry_after_secs: 4,
        },
        1,
    );
    assert_eq!(
        c.sync_webhook(&target(&cb.url(), None))
            .await
            .expect_err("429"),
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(4))
        }
    );
}

#[tokio::test]
async fn deliveries_are_signed_the_trello_way_and_a_410_deletes_the_webhook() {
    let fake = start().await;
    let got: Arc<std::sync::Mutex<Vec<Recorded>>> = Arc::default();
    let sink = got.clone();
    let answer = Arc::new(AtomicU16::new(200));
    let a = answer.clone();
    let cb = FakeServer::start(move |r| {
        if r.method == Method::POST {
            sink.lock().expect("lock").push(r.clone());
        }
        empty_response(StatusCode::from_u16(a.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK))
    })
    .await;
    // The registered URL is public; the fake reaches it through a proxy.
    let public = "https://ops.example.com/api/webhooks/trello/trello-main";
    fake.proxy("https://ops.example.com", &cb.origin());
    let c = connector(&fake);
    let (_, reg) = registered(c.sync_webhook(&target(public, None)).await.expect("sync"));

    let card = fake
        .add_card(fake::LIST_INBOX, "Refund")
        .expect("a list of the fake");
    let action = fake.action("createCard", card["id"].as_str().expect("id"), None);
    assert_eq!(fake.deliver(&reg.ids[0], action).await, 200);
    let r = got.lock().expect("lock")[0].clone();
    assert_eq!(r.path, HOOK_PATH);
    let keys = VerifyKeys {
        secret: Some(Secret::from(APP_SECRET.to_owned())),
        callback_url: Some(public.to_owned()),
        channel_id: None,
    };
    let req = InboundRequest {
        method: &Method::POST,
        headers: &r.headers,
        body: &r.body,
        now_unix: 0,
    };
    super::webhook::verify(&req, &keys).expect("the signature verifies");
    match super::webhook::parse(&req).expect("parses") {
        crate::platforms::Inbound::Event {
            event, normalized, ..
        } => {
            assert_eq!(event.name, "createCard");
            assert_eq!(normalized.actor(), Some(fake::HUMAN_ID));
        }
        other => panic!("{other:?}"),
    }
    // Signed over the registered URL, not the one it was delivered to.
    let wrong = VerifyKeys {
        callback_url: Some(format!("{}{HOOK_PATH}", cb.origin())),
        ..keys
    };
    assert!(super::webhook::verify(&req, &wrong).is_err());

    // A 410 from the callback makes Trello delete the webhook.
    answer.store(410, Ordering::SeqCst);
    let action = fake.action("commentCard", card["id"].as_str().expect("id"), Some("hi"));
    assert_eq!(fake.deliver(&reg.ids[0], action).await, 410);
    assert!(fake.webhooks().is_empty());
}

// === connect and secrets ===

#[test]
fn connect_resolves_references_and_reports_missing_credentials() {
    let env = |name: &str| (name == "TRELLO_TOKEN").then(|| TOKEN.to_owned());
    let ctx = ResolveContext::new(None, &env);
    let mut i = integration(None, &[("api_key", KEY)], json!({ "boards": "a, b" }));
    i.credentials.insert(
        "token".into(),
        Credential::Secret(SecretRef::Env("TRELLO_TOKEN".into())),
    );
    let c = connect_trello(&i, &ctx).expect("connect");
    assert_eq!(c.boards(), ["a", "b"]);
    let debug = format!("{c:?}");
    assert!(debug.contains(DEFAULT_BASE_URL), "{debug}");
    assert_no_secret(&debug);
    assert!(!debug.contains(KEY), "{debug}");

    i.credentials.insert(
        "token".into(),
        Credential::Secret(SecretRef::Env("UNSET_TRELLO_TOKEN".into())),
    );
    let err = connect(&i, &ctx).expect_err("unset variable");
    assert!(
        matches!(&err, ConnectError::Credential { field, .. } if field == "token"),
        "{err:?}"
    );
    let i = integration(None, &[("token", TOKEN)], json!({}));
    assert!(matches!(connect(&i, &ctx), Err(ConnectError::Missing(f)) if f == "api_key"));
    let i = integration(None, &[("api_key", KEY)], json!({}));
    assert!(matches!(connect(&i, &ctx), Err(ConnectError::Missing(f)) if f == "token"));
    let i = integration(
        None,
        &[("api_key", KEY), ("token", &format!("{TOKEN}\n"))],
        json!({}),
    );
    // A trailing newline (a secret file) is trimmed; a control character inside is refused.
    assert!(connect(&i, &ctx).is_ok());
    let i = integration(
        None,
        &[("api_key", KEY), ("token", &format!("ab\u{7f}{TOKEN}"))],
        json!({}),
    );
    let err = connect(&i, &ctx).expect_err("bad token");
    assert_no_secret(&format!("{err:?} {err}"));
}

#[tokio::test]
async fn credentials_never_appear_in_errors() {
    let fake = start().await;
    let c = connector(&fake);
    let mut errors: Vec<String> = Vec::new();
    let mut push = |e: &PlatformError| {
        errors.push(format!("{e:?}"));
        errors.push(e.to_string());
    };
    let create = call("create_card", json!({ "name": "x" }));
    for f in [
        Failure::RateLimited {
            retry_after_secs: 1,
        },
        Failure::ServerError,
        Failure::Unavailable {
            retry_after_secs: 1,
        },
    ] {
        fake.fail_next("POST /cards", f, 1);
        push(&c.execute(&create).await.expect_err("fails"));
    }
    let cb = Callback::start(404).await;
    push(
        &c.sync_webhook(&target(&cb.url(), None))
            .await
            .expect_err("HEAD"),
    );
    fake.fail_next("GET /tokens/{token}/webhooks", Failure::ServerError, 1);
    push(
        &c.remove_webhook(&target(&cb.url(), None))
            .await
            .expect_err("list"),
    );
    let wrong = FakeTrello::start(KEY, "other", APP_SECRET).await;
    push(&connector(&wrong).check().await.expect_err("401"));
    push(
        &connector(&wrong)
            .sync_webhook(&target(&cb.url(), None))
            .await
            .expect_err("401"),
    );
    let i = integration(
        Some("http://127.0.0.1:1/1".into()),
        &[("api_key", KEY), ("token", TOKEN)],
        json!({}),
    );
    let unreachable = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    push(&unreachable.check().await.expect_err("unreachable"));
    push(
        &unreachable
            .sync_webhook(&target(&cb.url(), None))
            .await
            .expect_err("unreachable"),
    );
    assert!(errors.len() >= 18, "{errors:#?}");
    for e in &errors {
        assert_no_secret(e);
    }
    assert_credentials_only_in_header(&fake);
}

/// Issue 16 item 9: Trello acted, and its answer was lost (a 504 after the card, comment or
/// checklist exists). The executor's retry must not create it again: the failure is "outcome
/// unknown", not retryable, and names what to check. The old code retried a `Transient` and
/// created every one of them twice.
#[tokio::test]
async fn a_create_whose_answer_is_lost_is_not_sent_again() {
    let fake = start().await;
    let c = connector(&fake);
    let card = c
        .execute(&call("create_card", json!({"name": "Seed"})))
        .await
        .expect("seed card");
    let id = card.result["id"].as_str().unwrap_or_default().to_owned();

    let before = fake.cards().len();
    fake.lose_answers(Method::POST, "/1/cards", 1);
    let e =
        testkit::as_the_executor_would(&*c, &call("create_card", json!({"name": "Escalated"})), 3)
            .await
            .expect_err("answer lost");
    assert!(
        matches!(&e, PlatformError::OutcomeUnknown { check, .. } if check.contains("list")),
        "{e:?}"
    );
    assert!(!e.retryable());
    assert_eq!(fake.cards().len(), before + 1, "created exactly once");

    fake.lose_answers(Method::POST, &format!("/1/cards/{id}/actions/comments"), 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call("add_comment", json!({"id_card": id, "text": "Once"})),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert_eq!(fake.comments().len(), 1, "commented exactly once");

    fake.lose_answers(Method::POST, "/1/checklists", 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call("add_checklist", json!({"id_card": id, "name": "Steps"})),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert_eq!(fake.checklists().len(), 1, "one checklist");

    // An update is retried as before: setting the same name twice changes nothing more.
    fake.lose_answers(Method::PUT, &format!("/1/cards/{id}"), 1);
    testkit::as_the_executor_would(
        &*c,
        &call("update_card", json!({"id_card": id, "name": "Renamed"})),
        3,
    )
    .await
    .expect("retried");
}

/// Issue 16 item 12: a 16 KB description or comment (the catalogue's limit) reaches Trello.
/// The fake answers 414 to a request target over 8 KiB, as a front end does; the old code put
/// the text in the query string and got it.
#[tokio::test]
async fn long_text_travels_in_a_json_body() {
    let fake = start().await;
    let c = connector(&fake);
    let long = "é".repeat(8_000) + " & ?=%";
    let out = c
        .execute(&call("create_card", json!({"name": "Long", "desc": long})))
        .await
        .expect("a 16 KB desc is accepted");
    let id = out.result["id"].as_str().expect("id").to_owned();
    assert_eq!(fake.card(&id).expect("card")["desc"], long.as_str());
    c.execute(&call("update_card", json!({"id_card": id, "desc": long})))
        .await
        .expect("a 16 KB desc update is accepted");
    c.execute(&call("add_comment", json!({"id_card": id, "text": long})))
        .await
        .expect("a 16 KB comment is accepted");
    assert_eq!(fake.comments().len(), 1);
    // A short comment keeps the documented query form.
    fake.clear_requests();
    c.execute(&call(
        "add_comment",
        json!({"id_card": id, "text": "short"}),
    ))
    .await
    .expect("short comment");
    let r = &fake.requests()[0];
    assert_eq!(r.query_param("text"), Some("short"));
    assert!(r.body.is_empty());
    for r in fake.requests() {
        assert!(r.path.len() < fake::MAX_URL_BYTES);
    }
}
