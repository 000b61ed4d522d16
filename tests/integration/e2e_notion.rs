//! Notion end to end: a daemon with a Notion integration pointed at the fake Notion API. The
//! fake plays the operator's subscription: the operator opens a verification window, the
//! subscription's verification request is kept (sealed) by the daemon, the operator confirms
//! the token and "pastes" it back into Notion, and the fake's signed
//! `page.created` deliveries then run a rule that comments on the page through the connector.
//! An event authored by our own bot (the id `GET /v1/users/me` returned) runs nothing.

use std::time::Duration;

use supportopsd::manifest::IntegrationId;
use supportopsd::platforms::notion::fake::{self, FakeNotion};
use supportopsd::secrets::{self, SealKey};

use crate::daemon_support::{Daemon, eventually};
use crate::support::TestRepo;

const NOTION_TOKEN: &str = "ntn_e2e_token_value";

/// Posts `event_type` about `entity` by `author` until the daemon accepts it (it refuses
/// deliveries until it has reloaded with the confirmed token), or fails after 30 s.
async fn deliver_until_accepted(fake: &FakeNotion, sub: &str, entity: &str, author: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match fake.deliver(sub, "page.created", entity, author).await {
            Some(200) => return,
            Some(401) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("delivery answered {other:?}"),
        }
    }
}

#[tokio::test]
async fn notion_verification_then_a_signed_event_runs_a_notion_action() {
    let fake = FakeNotion::start(NOTION_TOKEN).await;
    let state = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let key_path = state.path().join("supportopsd.key");
    std::fs::write(&key_path, format!("{}\n", &*key.to_base64())).unwrap();
    let id = IntegrationId::parse("notion-main").unwrap();
    let sealed = secrets::seal(&key, &id, "token", NOTION_TOKEN.as_bytes()).unwrap();

    let repo = TestRepo::new();
    repo.file(
        "integrations/notion.toml",
        &format!(
            r#"id = "notion-main"
platform = "notion"
[credentials]
token = {{ sealed = "{sealed}" }}
[config]
notion_version = "2025-09-03"
[webhook]
events = ["page.created"]
[endpoint]
base_url = "{}"
[limits]
requests_per_minute = 6000
"#,
            fake.base_url()
        ),
    )
    .file(
        "rules/notion-ack.toml",
        r#"id = "notion-ack"
[trigger]
integration = "notion-main"
event = "page.created"
[[actions]]
integration = "notion-main"
action = "add_comment"
[actions.parameters]
page_id = "{{ page.id }}"
text = "Picked up by supportopsd (created by {{ author.type }} {{ author.id }})"
"#,
    );
    repo.commit("notion");
    let key_arg = key_path.to_str().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &["--key-file", key_arg]).await;

    // The connection check ran: the daemon knows its bot id.
    eventually(30, "the connection check", || {
        fake.requests().iter().any(|r| r.path == "/v1/users/me")
    })
    .await;

    let url = format!("{}/api/webhooks/notion/notion-main", daemon.url);
    let api_status = || daemon.get_json("/api/status");
    let notion_sync = |s: &serde_json::Value| {
        s["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == "notion-main")
            .map(|i| i["sync"]["reason"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    let mut before = api_status().await;
    for _ in 0..200 {
        if notion_sync(&before).starts_with("waiting for verification:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        before = api_status().await;
    }
    assert!(
        notion_sync(&before).starts_with("waiting for verification:"),
        "{before}"
    );
    assert!(notion_sync(&before).contains(&url), "{before}");
    // The operator opens a verification window (SEC-04), then creates the subscription.
    let client = reqwest::Client::new();
    let opened = daemon
        .api(
            &client,
            reqwest::Method::POST,
            "/api/integrations/notion-main/notion/expect-verification",
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let (sub, status) = fake
        .create_subscription(&url, &["page.created"], "2025-09-03")
        .await;
    assert_eq!(status, 200, "the verification request is kept");
    // The operator reads the token from the status, compares it with Notion's, confirms it and
    // pastes it into Notion.
    let token = fake.subscriptions()[0].token.clone();
    let first = api_status().await;
    let pending = &first["verification_tokens"][0];
    assert_eq!(pending["integration"], "notion-main", "{first}");
    assert_eq!(
        pending["tokens"][0]["verification_token"],
        token.as_str(),
        "{first}"
    );
    assert!(
        notion_sync(&first).starts_with("waiting for confirmation: 1 token(s) received"),
        "{first}"
    );
    let token_id = pending["tokens"][0]["token_id"].as_u64().unwrap();
    let confirmed = daemon
        .api(
            &client,
            reqwest::Method::POST,
            "/api/integrations/notion-main/notion/confirm-verification",
        )
        .json(&serde_json::json!({ "token_id": token_id }))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    // Confirmed: no token is listed any more.
    let second = api_status().await;
    assert_eq!(
        second["verification_tokens"],
        serde_json::json!([]),
        "{second}"
    );
    assert!(!second.to_string().contains(&token));
    assert!(fake.verify_subscription(&sub, &token));

    let rows = fake.add_rows(2);
    // Our own bot's page: the loop guard drops it. Then a person's page: the rule runs.
    deliver_until_accepted(&fake, &sub, &rows[0], fake::BOT_ID).await;
    deliver_until_accepted(&fake, &sub, &rows[1], fake::PERSON_ID).await;
    // Rules are matched before a delivery is acknowledged: both events were taken in, and
    // only the person's matched.
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("supportopsd_events_received_total{platform=\"notion\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("supportopsd_rules_matched_total{rule=\"notion-ack\"} 1"),
        "{metrics}"
    );

    eventually(30, "the comment on the person's page", || {
        !fake.comments().is_empty()
    })
    .await;
    let comments = fake.comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0]["parent"]["page_id"], rows[1].as_str());
    assert_eq!(
        comments[0]["rich_text"][0]["text"]["content"],
        format!(
            "Picked up by supportopsd (created by person {})",
            fake::PERSON_ID
        )
    );
    let sent = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/comments")
        .unwrap();
    assert_eq!(sent.header("notion-version"), Some("2025-09-03"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {NOTION_TOKEN}").as_str())
    );

    // A forged delivery (signed with another key) is refused.
    let body = br#"{"type":"page.created","id":"x","entity":{"id":"y","type":"page"}}"#;
    let forged = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-notion-signature", fake::signature("secret_forged", body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(fake.comments().len(), 1);
    let after = api_status().await;
    assert!(notion_sync(&after).starts_with("verified"), "{after}");
    daemon.terminate().await;
}

/// Issue 16 item 10: "Resend token" (or a re-created subscription) while a token is confirmed.
/// The operator opens a window; Notion posts the new token (signed with it, not with the one
/// stored; the old code refused it with 401); the old token keeps verifying deliveries until
/// the operator confirms the new one; then deliveries signed with the new token are accepted
/// and the old token's refused.
#[tokio::test]
async fn a_resent_token_replaces_the_confirmed_one_through_a_window() {
    let fake = FakeNotion::start(NOTION_TOKEN).await;
    let state = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let key_path = state.path().join("supportopsd.key");
    std::fs::write(&key_path, format!("{}\n", &*key.to_base64())).unwrap();
    let id = IntegrationId::parse("notion-main").unwrap();
    let sealed = secrets::seal(&key, &id, "token", NOTION_TOKEN.as_bytes()).unwrap();
    let repo = TestRepo::new();
    repo.file(
        "integrations/notion.toml",
        &format!(
            r#"id = "notion-main"
platform = "notion"
[credentials]
token = {{ sealed = "{sealed}" }}
[config]
notion_version = "2025-09-03"
[webhook]
events = ["page.created"]
[endpoint]
base_url = "{}"
"#,
            fake.base_url()
        ),
    );
    repo.commit("notion");
    let key_arg = key_path.to_str().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &["--key-file", key_arg]).await;
    let url = format!("{}/api/webhooks/notion/notion-main", daemon.url);
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: serde_json::Value| {
        daemon
            .api(&client, reqwest::Method::POST, path)
            .json(&body)
            .send()
    };
    let expect = "/api/integrations/notion-main/notion/expect-verification";
    let confirm = "/api/integrations/notion-main/notion/confirm-verification";
    let pending_token = |status: serde_json::Value, fingerprint_of: &str| -> u64 {
        status["verification_tokens"][0]["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["verification_token"] == fingerprint_of)
            .and_then(|t| t["token_id"].as_u64())
            .unwrap_or_else(|| panic!("no pending token in {status}"))
    };

    // The first token: window, subscription, confirmation.
    assert_eq!(
        post(expect, serde_json::json!({})).await.unwrap().status(),
        200
    );
    let (sub, status) = fake
        .create_subscription(&url, &["page.created"], "2025-09-03")
        .await;
    assert_eq!(status, 200);
    let old = fake.subscriptions()[0].token.clone();
    let first = pending_token(daemon.get_json("/api/status").await, &old);
    let r = post(confirm, serde_json::json!({ "token_id": first }))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(fake.verify_subscription(&sub, &old));
    let rows = fake.add_rows(3);
    deliver_until_accepted(&fake, &sub, &rows[0], fake::PERSON_ID).await;

    // "Resend token" without a window: refused, nothing kept.
    assert_eq!(fake.resend_token_signed(&sub).await, 401);
    // With a window: kept, though signed with the new token.
    let r = post(expect, serde_json::json!({})).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(fake.resend_token_signed(&sub).await, 200);
    let new = fake.subscriptions()[0].token.clone();
    assert_ne!(new, old);
    // Until the new token is confirmed, the old one still verifies (a delivery Notion signed
    // with it before the resend, retried now).
    let body =
        br#"{"type":"page.created","id":"old-1","entity":{"id":"p1","type":"page"},"authors":[]}"#;
    let signed_with = |token: &str| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-notion-signature", fake::signature(token, body))
            .body(body.to_vec())
            .send()
    };
    assert_eq!(signed_with(&old).await.unwrap().status().as_u16(), 200);
    let status = daemon.get_json("/api/status").await;
    let second = pending_token(status.clone(), &new);
    assert!(status.to_string().contains("being replaced"), "{status}");
    let r = post(confirm, serde_json::json!({ "token_id": second }))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert!(fake.verify_subscription(&sub, &new));

    // The new token's deliveries are accepted, the old token's refused.
    deliver_until_accepted(&fake, &sub, &rows[1], fake::PERSON_ID).await;
    let body2 =
        br#"{"type":"page.created","id":"old-2","entity":{"id":"p2","type":"page"},"authors":[]}"#;
    let stale = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-notion-signature", fake::signature(&old, body2))
        .body(body2.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 401);
    // The unsigned form of "Resend token" goes the same way.
    assert_eq!(
        post(expect, serde_json::json!({})).await.unwrap().status(),
        200
    );
    assert_eq!(fake.resend_token(&sub).await, 200);
    daemon.terminate().await;
}
