//! The Notion connector against the fake API ([`super::fake`]): the exact requests each
//! action sends, the classification of every kind of failure, Notion's limits, the spec check,
//! the manual webhook instructions and the verification flow, and that the token never leaks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::connector::{DEFAULT_VERSION, connect, connect_notion};
use super::fake::{self, FakeNotion};
use crate::manifest::model::{Credential, Limits};
use crate::manifest::{Integration, IntegrationId};
use crate::platforms::connector::{
    ActionCall, ConnectError, Connector, PlatformError, WebhookSync, WebhookTarget,
};
use crate::platforms::fakekit::{self, Failure, FakeServer};
use crate::platforms::testkit;
use crate::platforms::{Inbound, InboundRequest, PlatformKind, VerifyError, VerifyKeys, http};
use crate::secrets::{ResolveContext, Secret};

const TOKEN: &str = "ntn_4242424242tokensecretvalue";

fn no_env(_: &str) -> Option<String> {
    None
}

fn integration(base_url: Option<String>, token: &str, config: Value) -> Integration {
    Integration {
        id: IntegrationId::parse("notion-main").expect("id"),
        platform: PlatformKind::Notion,
        name: None,
        description: None,
        file: "integrations/notion-main.toml".into(),
        credentials: [("token".to_owned(), Credential::Plain(token.to_owned()))]
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        config: config.as_object().cloned().unwrap_or_default(),
        webhook: None,
        base_url,
        limits: Limits::default(),
    }
}

fn connector(fake: &FakeNotion, config: Value) -> Arc<dyn Connector> {
    let i = integration(Some(fake.base_url()), TOKEN, config);
    connect(&i, &ResolveContext::new(None, &no_env)).expect("connect")
}

fn call(action: &str, parameters: Value) -> ActionCall {
    ActionCall {
        action: action.into(),
        parameters,
        idempotency_key: "job-1/step-0".into(),
    }
}

fn assert_no_token(text: &str) {
    for t in [TOKEN, "tokensecretvalue"] {
        assert!(!text.contains(t), "token leaked: {text}");
    }
}

/// Every request authenticated by header only and pinned the version.
fn assert_headers(fake: &FakeNotion, version: &str) {
    for r in fake.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(r.header("notion-version"), Some(version), "{}", r.path);
        assert_eq!(r.header("user-agent"), Some(http::USER_AGENT));
        assert!(!r.path.contains(TOKEN) && !r.text().contains(TOKEN));
        if !r.body.is_empty() {
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
    }
}

// === check ===

#[tokio::test]
async fn check_reports_the_bot_identity_and_pins_the_version() {
    let fake = FakeNotion::start(TOKEN).await;
    let h = connector(&fake, json!({})).check().await.expect("check");
    assert_eq!(h.identity.as_deref(), Some(fake::BOT_ID));
    assert_eq!(
        h.detail,
        format!(
            "authenticated as bot {} ({}) in {}, Notion-Version {DEFAULT_VERSION}",
            fake::BOT_NAME,
            fake::BOT_ID,
            fake::WORKSPACE_NAME
        )
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, Method::GET);
    assert_eq!(reqs[0].path, "/v1/users/me");
    assert!(reqs[0].body.is_empty());
    assert_headers(&fake, "2025-09-03");

    let pinned = connector(&fake, json!({"notion_version": "2026-03-11"}));
    pinned.check().await.expect("check");
    assert_eq!(
        fake.requests()
            .last()
            .and_then(|r| r.header("notion-version").map(str::to_owned)),
        Some("2026-03-11".into())
    );
}

#[tokio::test]
async fn check_with_a_revoked_token_is_unauthorized() {
    let fake = FakeNotion::start("ntn_the_right_one").await;
    let err = connector(&fake, json!({}))
        .check()
        .await
        .expect_err("refused");
    assert_eq!(
        err,
        PlatformError::Unauthorized {
            detail: "HTTP 401 Unauthorized: GET /v1/users/me: unauthorized: API token is invalid."
                .into()
        }
    );
    assert!(!err.retryable());
    assert_no_token(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn check_on_a_wrong_host_is_not_found() {
    let other = FakeServer::start(|_| {
        fakekit::text_response(StatusCode::NOT_FOUND, "<html>Not Found</html>")
    })
    .await;
    let i = integration(Some(other.origin()), TOKEN, json!({}));
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let err = c.check().await.expect_err("not notion");
    assert!(matches!(err, PlatformError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let i = integration(Some(format!("http://127.0.0.1:{port}")), TOKEN, json!({}));
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let err = c.check().await.expect_err("refused");
    assert!(matches!(err, PlatformError::NotPerformed { .. }), "{err:?}");
    assert!(err.retryable());
    assert_no_token(&format!("{err} {err:?}"));
}

#[test]
fn connect_needs_a_token_and_a_known_version() {
    let ctx = ResolveContext::new(None, &no_env);
    let mut i = integration(None, TOKEN, json!({}));
    i.credentials.clear();
    assert!(matches!(connect(&i, &ctx), Err(ConnectError::Missing(f)) if f == "token"));
    let i = integration(None, TOKEN, json!({"notion_version": "2024-01-01"}));
    let e = connect(&i, &ctx).expect_err("refused").to_string();
    assert!(e.contains("2024-01-01") && e.contains("2025-09-03"), "{e}");
    let i = integration(None, TOKEN, json!({}));
    let c = connect_notion(&i, &ctx).expect("connect");
    assert_eq!(c.version(), DEFAULT_VERSION);
    assert_no_token(&format!("{c:?}"));
}

// === actions ===

/// Adding an action to the catalogue without its request code (an arm of `execute`'s `match`)
/// fails here.
#[tokio::test]
async fn every_catalogued_action_reaches_the_platform() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({}));
    // What the request code checks beyond the catalogue (the rest are plain samples).
    let values = json!({
        "parent_page_id": fake::PARENT_PAGE,
        "page_id": fake::PARENT_PAGE,
        "data_source_id": fake::DATA_SOURCE,
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
async fn create_page_posts_a_titled_page_under_the_parent() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({"default_parent_page": fake::PARENT_PAGE}));
    let out = c
        .execute(&call(
            "create_page",
            json!({
                "title": "Escalation #42",
                "icon": {"emoji": "🎫"},
                "children": [{"object": "block", "type": "paragraph",
                              "paragraph": {"rich_text": [{"text": {"content": "Body"}}]}}],
            }),
        ))
        .await
        .expect("created");
    let r = &fake.requests()[0];
    assert_eq!(
        (r.method.clone(), r.path.as_str()),
        (Method::POST, "/v1/pages")
    );
    assert_eq!(
        r.json(),
        json!({
            "parent": {"page_id": fake::PARENT_PAGE},
            "properties": {"title": {"title": [{"type": "text", "text": {"content": "Escalation #42"}}]}},
            "icon": {"emoji": "🎫"},
            "children": [{"object": "block", "type": "paragraph",
                          "paragraph": {"rich_text": [{"text": {"content": "Body"}}]}}],
        })
    );
    for f in [
        "id",
        "url",
        "created_time",
        "last_edited_time",
        "properties",
    ] {
        assert!(!out.result[f].is_null(), "{f} in {}", out.result);
    }
    let id = out.result["id"].as_str().expect("id");
    assert_eq!(
        fake.page(id).expect("stored")["parent"]["page_id"],
        fake::PARENT_PAGE
    );
    assert_headers(&fake, "2025-09-03");

    // An explicit parent wins; without one and without the config it is invalid.
    let bare = connector(&fake, json!({}));
    let err = bare
        .execute(&call("create_page", json!({"title": "x"})))
        .await
        .expect_err("no parent");
    assert!(matches!(&err, PlatformError::Invalid(m) if m.contains("default_parent_page")));
    bare.execute(&call(
        "create_page",
        json!({"title": "x", "parent_page_id": fake::PARENT_PAGE, "markdown": "# Hi"}),
    ))
    .await
    .expect("explicit parent");
    assert_eq!(
        fake.requests().last().expect("sent").json()["markdown"],
        "# Hi"
    );
}

#[tokio::test]
async fn create_database_entry_builds_properties_for_the_data_source() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({}));
    let out = c
        .execute(&call(
            "create_database_entry",
            json!({
                "data_source_id": fake::DATA_SOURCE,
                "properties": {
                    "Name": {"title": "Ticket #123"},
                    "Summary": {"rich_text": "Customer cannot log in"},
                    "Priority": {"select": "High"},
                    "Status": {"status": "Open"},
                    "Tags": {"multi_select": ["billing", "login"]},
                    "Count": {"number": 3},
                    "Done": {"checkbox": "false"},
                    "Due": {"date": "2026-01-31"},
                    "Owner": {"people": fake::PERSON_ID},
                    "Link": {"url": "https://acme.zendesk.com/agent/tickets/123"},
                },
            }),
        ))
        .await
        .expect("created");
    let body = fake.requests()[0].json();
    assert_eq!(body["parent"], json!({"data_source_id": fake::DATA_SOURCE}));
    assert_eq!(
        body["properties"]["Priority"],
        json!({"select": {"name": "High"}})
    );
    assert_eq!(
        body["properties"]["Owner"],
        json!({"people": [{"id": fake::PERSON_ID}]})
    );
    assert_eq!(body["properties"]["Done"], json!({"checkbox": false}));
    assert_eq!(
        body["properties"]["Due"],
        json!({"date": {"start": "2026-01-31"}})
    );
    assert_eq!(
        out.result["properties"]["Priority"]["select"]["name"],
        "High"
    );
    assert!(
        out.result["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://www.notion.so/"))
    );

    // A property the schema lacks is Notion's validation error.
    let err = c
        .execute(&call(
            "create_database_entry",
            json!({"data_source_id": fake::DATA_SOURCE, "properties": {"Colour": {"select": "red"}}}),
        ))
        .await
        .expect_err("no such property");
    assert_eq!(
        err,
        PlatformError::Rejected {
            status: 400,
            detail: "POST /v1/pages: validation_error: Colour is not a property that exists."
                .into()
        }
    );
}

#[tokio::test]
async fn a_database_id_is_resolved_to_its_single_data_source() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({}));
    let props = json!({"Name": {"title": "via database"}});
    c.execute(&call(
        "create_database_entry",
        json!({"database_id": fake::DATABASE, "properties": props}),
    ))
    .await
    .expect("created");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].method.clone(), reqs[0].path.clone()),
        (Method::GET, format!("/v1/databases/{}", fake::DATABASE))
    );
    assert_eq!(
        reqs[1].json()["parent"],
        json!({"data_source_id": fake::DATA_SOURCE})
    );

    fake.clear_requests();
    let err = c
        .execute(&call(
            "create_database_entry",
            json!({"database_id": fake::TWO_SOURCE_DATABASE, "properties": props}),
        ))
        .await
        .expect_err("ambiguous");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("2 data sources") && m.contains("data_source_id")),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1, "only the lookup was sent");

    let err = c
        .execute(&call(
            "create_database_entry",
            json!({"database_id": fake::DATABASE, "data_source_id": fake::DATA_SOURCE, "properties": props}),
        ))
        .await
        .expect_err("both");
    assert!(matches!(err, PlatformError::Invalid(_)));
}

#[tokio::test]
async fn version_2022_06_28_uses_database_parents_and_the_database_query() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({"notion_version": "2022-06-28"}));
    c.execute(&call(
        "create_database_entry",
        json!({"database_id": fake::DATABASE, "properties": {"Name": {"title": "legacy"}}}),
    ))
    .await
    .expect("created");
    assert_eq!(
        fake.requests()[0].json()["parent"],
        json!({"database_id": fake::DATABASE})
    );
    let out = c
        .execute(&call(
            "query_database",
            json!({"database_id": fake::DATABASE}),
        ))
        .await
        .expect("queried");
    assert_eq!(out.result["count"], 1);
    assert_eq!(
        fake.requests().last().map(|r| r.path.clone()),
        Some(format!("/v1/databases/{}/query", fake::DATABASE))
    );
    let err = c
        .execute(&call(
            "query_database",
            json!({"data_source_id": fake::DATA_SOURCE}),
        ))
        .await
        .expect_err("no data sources in 2022");
    assert!(
        matches!(&err, PlatformError::Invalid(m) if m.contains("2025-09-03")),
        "{err:?}"
    );
    assert_headers(&fake, "2022-06-28");
}

#[tokio::test]
async fn update_page_and_update_database_entry_patch_the_page() {
    let fake = FakeNotion::start(TOKEN).await;
    let ids = fake.add_rows(1);
    let c = connector(&fake, json!({}));
    let out = c
        .execute(&call(
            "update_database_entry",
            json!({"page_id": ids[0], "properties": {"Status": {"status": "Done"}, "Count": {"number": "7"}}}),
        ))
        .await
        .expect("updated");
    let r = fake.requests().last().cloned().expect("sent");
    assert_eq!(
        (r.method.clone(), r.path.clone()),
        (Method::PATCH, format!("/v1/pages/{}", ids[0]))
    );
    assert_eq!(
        r.json(),
        json!({"properties": {"Status": {"status": {"name": "Done"}}, "Count": {"number": 7.0}}})
    );
    assert_eq!(out.result["properties"]["Status"]["status"]["name"], "Done");
    assert!(out.result["last_edited_time"].is_string());

    c.execute(&call(
        "update_page",
        json!({"page_id": ids[0], "icon": {"emoji": "✅"}, "is_locked": "true", "in_trash": true}),
    ))
    .await
    .expect("updated");
    assert_eq!(
        fake.requests().last().expect("sent").json(),
        json!({"icon": {"emoji": "✅"}, "is_locked": true, "archived": true})
    );
    assert_eq!(fake.page(&ids[0]).expect("page")["in_trash"], true);

    // From 2026-03-11 the trash flag is `in_trash`.
    let newer = connector(&fake, json!({"notion_version": "2026-03-11"}));
    newer
        .execute(&call(
            "update_page",
            json!({"page_id": ids[0], "in_trash": false}),
        ))
        .await
        .expect("restored");
    assert_eq!(
        fake.requests().last().expect("sent").json(),
        json!({"in_trash": false})
    );

    let err = c
        .execute(&call(
            "update_page",
            json!({"page_id": "4b1d4b1d-0000-4000-8000-000000000000", "in_trash": true}),
        ))
        .await
        .expect_err("missing page");
    assert!(
        matches!(&err, PlatformError::NotFound { detail } if detail.contains("object_not_found")),
        "{err:?}"
    );
}

#[tokio::test]
async fn add_comment_on_a_page_a_block_and_a_discussion() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({}));
    let out = c
        .execute(&call(
            "add_comment",
            json!({"page_id": fake::PARENT_PAGE, "text": "Synced from Zendesk #42"}),
        ))
        .await
        .expect("commented");
    assert_eq!(
        fake.requests()[0].json(),
        json!({"parent": {"page_id": fake::PARENT_PAGE},
               "rich_text": [{"type": "text", "text": {"content": "Synced from Zendesk #42"}}]})
    );
    for f in ["id", "discussion_id", "created_time"] {
        assert!(out.result[f].is_string(), "{f}: {}", out.result);
    }
    let discussion = out.result["discussion_id"]
        .as_str()
        .expect("discussion")
        .to_owned();
    c.execute(&call(
        "add_comment",
        json!({"discussion_id": discussion, "rich_text": [{"text": {"content": "reply"}}]}),
    ))
    .await
    .expect("replied");
    assert_eq!(
        fake.requests().last().expect("sent").json(),
        json!({"discussion_id": discussion, "rich_text": [{"text": {"content": "reply"}}]})
    );
    let block = "7a1b7a1b-0000-4000-8000-000000000001";
    c.execute(&call(
        "add_comment",
        json!({"block_id": block, "text": "on a block"}),
    ))
    .await
    .expect("block comment");
    assert_eq!(
        fake.requests().last().expect("sent").json()["parent"],
        json!({"block_id": block})
    );
    assert_eq!(fake.comments().len(), 3);

    let sent = fake.requests().len();
    for bad in [
        json!({"page_id": fake::PARENT_PAGE, "block_id": block, "text": "x"}),
        json!({"page_id": fake::PARENT_PAGE, "text": "x", "rich_text": [{"text": {"content": "y"}}]}),
        json!({"page_id": fake::PARENT_PAGE, "text": " "}),
    ] {
        let err = c
            .execute(&call("add_comment", bad))
            .await
            .expect_err("invalid");
        assert!(matches!(err, PlatformError::Invalid(_)), "{err:?}");
    }
    assert_eq!(
        fake.requests().len(),
        sent,
        "nothing sent for invalid calls"
    );

    fake.set_comment_capability(false);
    let err = c
        .execute(&call(
            "add_comment",
            json!({"page_id": fake::PARENT_PAGE, "text": "x"}),
        ))
        .await
        .expect_err("capability off");
    assert!(
        matches!(&err, PlatformError::Unauthorized { detail } if detail.contains("restricted_resource")),
        "{err:?}"
    );
}

#[tokio::test]
async fn query_database_follows_cursors_up_to_max_results() {
    let fake = FakeNotion::start(TOKEN).await;
    let ids = fake.add_rows(250);
    let c = connector(&fake, json!({}));
    let out = c
        .execute(&call(
            "query_database",
            json!({"data_source_id": fake::DATA_SOURCE, "max_results": 1000,
                   "sorts": [{"timestamp": "created_time", "direction": "ascending"}]}),
        ))
        .await
        .expect("queried");
    assert_eq!(out.result["count"], 250);
    assert_eq!(out.result["has_more"], false);
    assert_eq!(out.result["next_cursor"], Value::Null);
    assert_eq!(out.result["ids"].as_array().map(Vec::len), Some(250));
    assert_eq!(out.result["ids"][249], ids[249].as_str());
    assert_eq!(
        out.result["results"][0]["properties"]["Name"]["title"][0]["text"]["content"],
        "Row 1"
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        reqs[0].path,
        format!("/v1/data_sources/{}/query", fake::DATA_SOURCE)
    );
    assert_eq!(reqs[0].json()["page_size"], 100);
    assert_eq!(reqs[0].json().get("start_cursor"), None);
    assert_eq!(reqs[1].json()["start_cursor"], ids[100].as_str());
    assert_eq!(reqs[2].json()["start_cursor"], ids[200].as_str());

    // Stop at max_results (default 100): the rest is left with its cursor.
    fake.clear_requests();
    let out = c
        .execute(&call(
            "query_database",
            json!({"data_source_id": fake::DATA_SOURCE, "page_size": 40,
                   "filter": {"property": "Done", "checkbox": {"equals": true}}}),
        ))
        .await
        .expect("queried");
    assert_eq!(out.result["count"], 100);
    assert_eq!(out.result["has_more"], true);
    assert_eq!(out.result["next_cursor"], ids[201].as_str());
    let sizes: Vec<Value> = fake
        .requests()
        .iter()
        .map(|r| r.json()["page_size"].clone())
        .collect();
    assert_eq!(sizes, [json!(40), json!(40), json!(20)]);

    // Resume from the cursor.
    let out = c
        .execute(&call(
            "query_database",
            json!({"data_source_id": fake::DATA_SOURCE, "start_cursor": ids[201],
                   "filter": {"property": "Done", "checkbox": {"equals": true}}}),
        ))
        .await
        .expect("resumed");
    assert_eq!(out.result["count"], 25);
    assert_eq!(out.result["has_more"], false);

    for bad in [
        json!({"page_size": 101}),
        json!({"page_size": 0}),
        json!({"max_results": 0}),
    ] {
        let mut p = json!({"data_source_id": fake::DATA_SOURCE});
        p.as_object_mut()
            .expect("obj")
            .extend(bad.as_object().expect("obj").clone());
        let err = c
            .execute(&call("query_database", p))
            .await
            .expect_err("bad size");
        assert!(matches!(err, PlatformError::Invalid(_)), "{err:?}");
    }
}

#[tokio::test]
async fn bad_parameters_and_limits_are_invalid_before_sending() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({"default_parent_page": fake::PARENT_PAGE}));
    let long = "x".repeat(2001);
    let many: Vec<String> = (0..101).map(|i| format!("tag{i}")).collect();
    let cases = [
        ("nope", json!({}), "no action `nope`"),
        (
            "create_page",
            json!({"title": "t", "colour": "red"}),
            "unknown parameter `colour`",
        ),
        (
            "create_page",
            json!({}),
            "missing required parameter `title`",
        ),
        (
            "create_page",
            json!({"title": long}),
            "2001 characters, Notion allows at most 2000",
        ),
        (
            "create_page",
            json!({"title": "t", "children": [{"x": 1}], "markdown": "m"}),
            "not both",
        ),
        (
            "create_page",
            json!({"title": "t", "parent_page_id": "../../v1/users"}),
            "is not a Notion id",
        ),
        (
            "update_page",
            json!({"page_id": fake::PARENT_PAGE}),
            "needs at least one of",
        ),
        (
            "update_page",
            json!({"page_id": fake::PARENT_PAGE, "in_trash": "maybe"}),
            "should be a boolean",
        ),
        (
            "update_database_entry",
            json!({"page_id": fake::PARENT_PAGE, "properties": {"Status": "Open"}}),
            "property `Status`: give a table",
        ),
        (
            "update_database_entry",
            json!({"page_id": fake::PARENT_PAGE, "properties": {"Tags": {"multi_select": many}}}),
            "101 items, Notion allows at most 100",
        ),
        (
            "create_database_entry",
            json!({"properties": {}}),
            "needs at least one of `data_source_id`, `database_id`",
        ),
        (
            "add_comment",
            json!({"page_id": fake::PARENT_PAGE, "text": long}),
            "Notion allows at most 2000",
        ),
        (
            "query_database",
            json!({"data_source_id": fake::DATA_SOURCE, "filter": {"or": many.iter().map(|_| json!({})).collect::<Vec<_>>()}}),
            "101 items",
        ),
        (
            "query_database",
            json!({"data_source_id": fake::DATA_SOURCE, "sorts": "name"}),
            "should be a list of tables",
        ),
    ];
    for (action, params, want) in cases {
        let err = c.execute(&call(action, params)).await.expect_err(want);
        match &err {
            PlatformError::Invalid(m) => assert!(m.contains(want), "{action}: {m}"),
            other => panic!("{action}: {other:?}"),
        }
    }
    assert!(fake.requests().is_empty(), "nothing was sent");
}

// === failures ===

#[tokio::test]
async fn http_429_is_rate_limited_with_the_retry_after() {
    let fake = FakeNotion::start(TOKEN).await;
    fake.fail_next(
        "pages.create",
        Failure::RateLimited {
            retry_after_secs: 7,
        },
        1,
    );
    let c = connector(&fake, json!({"default_parent_page": fake::PARENT_PAGE}));
    let err = c
        .execute(&call("create_page", json!({"title": "t"})))
        .await
        .expect_err("429");
    assert_eq!(
        err,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(err.retryable());
    c.execute(&call("create_page", json!({"title": "t"})))
        .await
        .expect("the next call goes through");
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = FakeNotion::start(TOKEN).await;
    fake.fail_next("users.me", Failure::ServerError, 1);
    fake.fail_next(
        "users.me",
        Failure::Unavailable {
            retry_after_secs: 3,
        },
        1,
    );
    let c = connector(&fake, json!({}));
    let err = c.check().await.expect_err("500");
    assert!(
        matches!(&err, PlatformError::Transient { detail, retry_after: None } if detail.contains("internal_server_error")),
        "{err:?}"
    );
    let err = c.check().await.expect_err("503");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    assert!(err.retryable());
    c.check().await.expect("recovered");
}

#[tokio::test]
async fn the_token_never_appears_in_errors() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({"default_parent_page": fake::PARENT_PAGE}));
    let mut errors = Vec::new();
    fake.fail_next("comments.create", Failure::ServerError, 1);
    errors.push(
        c.execute(&call(
            "add_comment",
            json!({"page_id": fake::PARENT_PAGE, "text": TOKEN}),
        ))
        .await
        .err(),
    );
    errors.push(
        c.execute(&call("create_page", json!({"title": "t", "icon": TOKEN})))
            .await
            .err(),
    );
    errors.push(
        c.execute(&call(
            "update_page",
            json!({"page_id": TOKEN, "in_trash": true}),
        ))
        .await
        .err(),
    );
    fake.set_token("ntn_rotated");
    errors.push(c.check().await.err());
    errors.push(
        c.execute(&call(
            "query_database",
            json!({"data_source_id": fake::DATA_SOURCE}),
        ))
        .await
        .err(),
    );
    let errors: Vec<PlatformError> = errors.into_iter().flatten().collect();
    assert_eq!(errors.len(), 5);
    for e in errors {
        assert_no_token(&format!("{e} {e:?}"));
    }
}

// === the fake's checks ===

/// A raw request to the fake, bypassing the connector's own checks.
async fn raw(
    fake: &FakeNotion,
    method: Method,
    path: &str,
    version: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", fake.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(v) = version {
        req = req.header("notion-version", v);
    }
    let r = req.send().await.expect("sent");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_fake_refuses_what_notion_refuses() {
    let fake = FakeNotion::start(TOKEN).await;
    let (s, b) = raw(&fake, Method::GET, "v1/users/me", None, Value::Null).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("missing_version")));
    let (s, b) = raw(
        &fake,
        Method::GET,
        "v1/users/me",
        Some("2099-01-01"),
        Value::Null,
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("validation_error")));
    let (s, b) = raw(
        &fake,
        Method::POST,
        "v1/pages",
        Some("2025-09-03"),
        json!({"parent": {"page_id": fake::PARENT_PAGE}, "properties": {"title": {"title": [{"text": {"content": "x".repeat(2001)}}]}}}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("validation_error")),
        "{b}"
    );
    assert_eq!(b["object"], "error");
}

#[tokio::test]
async fn spec_check_rejects_requests_the_vendor_spec_does_not_allow() {
    let fake = FakeNotion::start(TOKEN).await;
    if !fake.spec_checked() {
        eprintln!("skipped: vendor document {} not found", fake::SPEC);
        return;
    }
    let v = Some("2025-09-03");
    // A comment without its required `rich_text`.
    let (s, b) = raw(
        &fake,
        Method::POST,
        "v1/comments",
        v,
        json!({"parent": {"page_id": fake::PARENT_PAGE}, "text": "x"}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("validation_error")),
        "{b}"
    );
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("`rich_text`")),
        "{b}"
    );
    // A page without `properties`.
    let (s, b) = raw(
        &fake,
        Method::POST,
        "v1/pages",
        v,
        json!({"parent": {"page_id": fake::PARENT_PAGE}}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("`properties`")),
        "{b}"
    );
    // An icon shape the spec closes.
    let (s, b) = raw(
        &fake,
        Method::PATCH,
        &format!("v1/pages/{}", fake::PARENT_PAGE),
        v,
        json!({"icon": {"emoji": "x", "colour": "red"}}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("`colour`")),
        "{b}"
    );
    // A sort without a direction; an operation the spec does not describe.
    let (s, _) = raw(
        &fake,
        Method::POST,
        &format!("v1/data_sources/{}/query", fake::DATA_SOURCE),
        v,
        json!({"sorts": [{"property": "Name"}]}),
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = raw(
        &fake,
        Method::POST,
        &format!("v1/databases/{}/query", fake::DATABASE),
        v,
        json!({}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_request_url")));
    // The same shapes, well formed, pass.
    let (s, b) = raw(&fake, Method::POST, "v1/comments", v, json!({"parent": {"page_id": fake::PARENT_PAGE}, "rich_text": [{"text": {"content": "x"}}]})).await;
    assert_eq!(s, 200, "{b}");
}

// === webhooks ===

fn target(url: &str) -> WebhookTarget {
    WebhookTarget {
        integration: IntegrationId::parse("notion-main").expect("id"),
        url: url.into(),
        events: vec![
            "comment.created".into(),
            "database.content_updated".into(),
            "page.created".into(),
        ],
        secret: None,
        previous: None,
    }
}

#[tokio::test]
async fn sync_webhook_says_what_to_do_in_notion_and_remove_deletes_nothing() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({}));
    let url = "https://ops.example.com/api/webhooks/notion/notion-main";
    let WebhookSync::Manual(text) = c.sync_webhook(&target(url)).await.expect("sync") else {
        panic!("Notion subscriptions are manual");
    };
    for want in [
        url,
        "Webhooks tab",
        "+ Create a subscription",
        "API version 2025-09-03",
        "comment.created, database.content_updated, page.created",
        "`supportopsd notion expect-verification notion-main`",
        "`supportopsd notion confirm-verification notion-main TOKEN_ID`",
        "Verify subscription",
        "waiting for verification",
        "database.content_updated exist only for subscriptions on API version 2022-06-28",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
    assert!(!text.contains("public HTTPS"), "{text}");
    let WebhookSync::Manual(text) = c
        .sync_webhook(&target("http://10.0.0.5:8080/x"))
        .await
        .expect("sync")
    else {
        panic!("manual");
    };
    assert!(text.contains("public HTTPS"), "{text}");
    assert_eq!(c.remove_webhook(&target(url)).await, Ok(0));
    assert!(fake.requests().is_empty(), "no API call for subscriptions");
}

fn inbound_of(r: &fakekit::Recorded) -> (Method, HeaderMap, Vec<u8>) {
    (r.method.clone(), r.headers.clone(), r.body.to_vec())
}

fn verify_parse(
    r: &fakekit::Recorded,
    key: Option<&str>,
) -> (Result<(), VerifyError>, Option<Inbound>) {
    let (method, headers, body) = inbound_of(r);
    let req = InboundRequest {
        method: &method,
        headers: &headers,
        body: &body,
        now_unix: 0,
    };
    let keys = VerifyKeys {
        secret: key.map(|k| Secret::from(k.to_owned())),
        ..VerifyKeys::default()
    };
    let v = super::webhook::verify(&req, &keys);
    let parsed = v
        .as_ref()
        .ok()
        .and_then(|()| super::webhook::parse(&req).ok());
    (v, parsed)
}

/// The verification flow end to end at the webhook layer: the fake's one-time token post,
/// captured unsigned; the operator pastes it; signed events verify with it and carry the bot
/// as actor, which is what `check` reports as the identity (the loop guard's comparison);
/// "Resend token" replaces the key at Notion (and is refused unsigned once a token is held).
#[tokio::test]
async fn verification_flow_then_signed_events() {
    let fake = FakeNotion::start(TOKEN).await;
    let endpoint =
        FakeServer::start(|_| fakekit::json_response(StatusCode::OK, &json!({"ok": true}))).await;
    let url = format!("{}/api/webhooks/notion/notion-main", endpoint.origin());
    let (sub, status) = fake
        .create_subscription(&url, &["page.created", "comment.created"], "2025-09-03")
        .await;
    assert_eq!(status, 200);
    let first = endpoint.requests().pop().expect("verification request");
    assert_eq!(
        first.header("x-notion-signature"),
        None,
        "the handshake is not signed"
    );
    let (v, parsed) = verify_parse(&first, None);
    assert_eq!(v, Ok(()));
    let Some(Inbound::VerificationToken(token)) = parsed else {
        panic!("a verification token");
    };
    let token = token.expose_str().expect("text").to_owned();

    // Nothing is delivered until the operator verifies.
    assert_eq!(
        fake.deliver(&sub, "page.created", fake::PARENT_PAGE, fake::PERSON_ID)
            .await,
        None
    );
    assert!(!fake.verify_subscription(&sub, "secret_wrong"));
    assert!(fake.verify_subscription(&sub, &token));
    assert_eq!(
        fake.deliver(
            &sub,
            "page.updated_nonsense",
            fake::PARENT_PAGE,
            fake::PERSON_ID
        )
        .await,
        None
    );

    assert_eq!(
        fake.deliver(&sub, "page.created", fake::PARENT_PAGE, fake::BOT_ID)
            .await,
        Some(200)
    );
    let event = endpoint.requests().pop().expect("event");
    assert!(
        event
            .header("x-notion-signature")
            .is_some_and(|s| s.starts_with("sha256="))
    );
    assert_eq!(
        verify_parse(&event, Some("secret_other")).0,
        Err(VerifyError::Mismatch)
    );
    let (v, parsed) = verify_parse(&event, Some(&token));
    assert_eq!(v, Ok(()));
    let Some(Inbound::Event {
        event: spec,
        normalized,
        ..
    }) = parsed
    else {
        panic!("an event");
    };
    assert_eq!(spec.name, "page.created");
    let identity = connector(&fake, json!({}))
        .check()
        .await
        .expect("check")
        .identity;
    assert_eq!(
        normalized.actor().map(str::to_owned),
        identity,
        "the loop guard sees our own bot"
    );

    fake.deliver(&sub, "comment.created", fake::PARENT_PAGE, fake::PERSON_ID)
        .await;
    let (_, parsed) = verify_parse(&endpoint.requests().pop().expect("event"), Some(&token));
    let Some(Inbound::Event { normalized, .. }) = parsed else {
        panic!("an event")
    };
    assert_eq!(normalized.actor(), Some(fake::PERSON_ID));

    // Resend: the newest token is the key; the old one no longer verifies.
    assert_eq!(fake.resend_token(&sub).await, 200);
    let resent = endpoint.requests().pop().expect("resent");
    // A daemon already holding a token refuses an unsigned replacement (nobody may swap the
    // key); one that never captured the first token takes it.
    assert_eq!(
        verify_parse(&resent, Some(&token)).0,
        Err(VerifyError::MissingHeader(super::webhook::SIGNATURE_HEADER))
    );
    let (_, parsed) = verify_parse(&resent, None);
    let Some(Inbound::VerificationToken(fresh)) = parsed else {
        panic!("a token")
    };
    let fresh = fresh.expose_str().expect("text").to_owned();
    assert_ne!(fresh, token);
    assert!(fake.verify_subscription(&sub, &fresh));
    fake.deliver(&sub, "page.created", fake::PARENT_PAGE, fake::PERSON_ID)
        .await;
    let event = endpoint.requests().pop().expect("event");
    assert_eq!(
        verify_parse(&event, Some(&token)).0,
        Err(VerifyError::Mismatch)
    );
    assert_eq!(verify_parse(&event, Some(&fresh)).0, Ok(()));
    assert_eq!(fake.subscriptions().len(), 1);
}

/// Issue 16 item 9: Notion's official SDK retries a 500 or 503 only for `GET` and `DELETE`
/// (notion-sdk-js, `src/Client.ts`); a page or comment whose answer was lost (created, then a
/// 5xx/504) is not created again but dead-lettered as "outcome unknown". The old code retried
/// every 5xx and created each twice.
#[tokio::test]
async fn a_create_whose_answer_is_lost_is_not_sent_again() {
    let fake = FakeNotion::start(TOKEN).await;
    let c = connector(&fake, json!({}));
    let pages = fake.page_count();
    fake.lose_answers(Method::POST, "/v1/pages", 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call(
            "create_page",
            json!({"parent_page_id": fake::PARENT_PAGE, "title": "Incident 42"}),
        ),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert!(!e.retryable());
    assert_eq!(fake.page_count(), pages + 1, "created exactly once");

    fake.lose_answers(Method::POST, "/v1/pages", 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call(
            "create_database_entry",
            json!({"data_source_id": fake::DATA_SOURCE, "properties": {"Name": {"title": "Row"}}}),
        ),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert_eq!(fake.page_count(), pages + 2, "one entry");

    fake.lose_answers(Method::POST, "/v1/comments", 1);
    let e = testkit::as_the_executor_would(
        &*c,
        &call(
            "add_comment",
            json!({"page_id": fake::PARENT_PAGE, "text": "Once"}),
        ),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert_eq!(fake.comments().len(), 1, "commented exactly once");

    // A 503 on the read that resolves a database comes before any create: retried.
    fake.fail_next("databases.retrieve", Failure::ServerError, 1);
    testkit::as_the_executor_would(
        &*c,
        &call(
            "create_database_entry",
            json!({"database_id": fake::DATABASE, "properties": {"Name": {"title": "After a read failed"}}}),
        ),
        3,
    )
    .await
    .expect("the read is retried, the entry created once");
    assert_eq!(fake.page_count(), pages + 3);
}
