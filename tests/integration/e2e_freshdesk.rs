//! Freshdesk end to end: `supportopsd run` with a Freshdesk integration on the fake Freshdesk.
//!
//! 1. supportopsd's automation rules are registered at the fake (through the connector, since
//!    the daemon registers only Slack today) pointing at the daemon; a ticket is created and
//!    the fake plays Freshdesk's part: it renders the `ticket_created` rule and posts it with
//!    the shared-secret header. The daemon's rule adds a note to that ticket at the fake.
//! 2. A signed Zendesk `ticket.created` delivery turns into a Freshdesk ticket.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use supportopsd::manifest::model::{Credential, Limits};
use supportopsd::manifest::{Integration, IntegrationId};
use supportopsd::platforms::PlatformKind;
use supportopsd::platforms::connector::{ActionCall, Connector};
use supportopsd::platforms::freshdesk::connector::connect_freshdesk;
use supportopsd::platforms::freshdesk::fake::{self, FakeFreshdesk};
use supportopsd::secrets::ResolveContext;

use crate::daemon_support::*;
use crate::support::TestRepo;

const FD_KEY: &str = "fd-api-key";

fn repo(fd_base: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
        "integrations/freshdesk.toml",
        &format!(
            r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = {{ env = "FD_KEY" }}
[config]
default_priority = "medium"
[webhook]
events = ["ticket_created"]
secret = {{ env = "FD_WEBHOOK_SECRET" }}
[endpoint]
base_url = "{fd_base}"
[limits]
requests_per_minute = 6000
"#
        ),
    )
    .file("integrations/zendesk.toml", ZENDESK_BY_HAND)
    .file(
        "rules/freshdesk-triage.toml",
        r##"id = "freshdesk-triage"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[trigger.conditions]
"ticket.priority" = { in = [3, 4] }
[[actions]]
integration = "freshdesk-main"
action = "add_note"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
body = "<p>Triage: {{ ticket.subject }} ({{ ticket.priority_name }}) from {{ requester.email }}</p>"
"##,
    )
    .file(
        "rules/zendesk-to-freshdesk.toml",
        r##"id = "zendesk-to-freshdesk"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "freshdesk-main"
action = "create_ticket"
[actions.parameters]
subject = "[Zendesk {{ ticket.id }}] {{ ticket.subject }}"
description = "<p>Opened in Zendesk by {{ requester.name }}</p>"
email = "{{ requester.email }}"
source = "email"
tags = ["from-zendesk"]
"##,
    );
    repo.commit("freshdesk end to end");
    repo
}

fn connector(
    fake: &FakeFreshdesk,
) -> supportopsd::platforms::freshdesk::connector::FreshdeskConnector {
    let integration = Integration {
        id: IntegrationId::parse("freshdesk-main").unwrap(),
        platform: PlatformKind::Freshdesk,
        name: None,
        description: None,
        file: "integrations/freshdesk.toml".into(),
        credentials: [
            (
                "domain".to_owned(),
                Credential::Plain("acme.freshdesk.com".into()),
            ),
            ("api_key".to_owned(), Credential::Plain(FD_KEY.into())),
        ]
        .into_iter()
        .collect::<BTreeMap<_, _>>(),
        config: serde_json::Map::new(),
        webhook: None,
        base_url: Some(fake.base_url()),
        limits: Limits::default(),
    };
    let env = |_: &str| None;
    connect_freshdesk(&integration, &ResolveContext::new(None, &env)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freshdesk_rule_fires_from_the_registered_automation_rule_and_acts_on_freshdesk() {
    let fake = FakeFreshdesk::start(FD_KEY).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;

    // The daemon checked the connection at start (its agent id is its identity there).
    eventually(20, "the start-up check", || {
        !fake
            .requests_to(&reqwest::Method::GET, "/api/v2/agents/me")
            .is_empty()
    })
    .await;

    // The daemon registered its automation rule at the fake, delivering to itself.
    eventually(20, "the daemon's automation rule at Freshdesk", || {
        fake.rules().iter().any(|(_, r)| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("supportopsd:freshdesk-main"))
        })
    })
    .await;
    let c = connector(&fake);

    // A high-priority ticket is created; Freshdesk runs the rule and posts to the daemon.
    let created = c
        .execute(&ActionCall {
            action: "create_ticket".into(),
            parameters: json!({ "subject": "Printer on fire", "description": "<p>Leeds</p>",
                                "email": fake::SEEDED_CONTACT_EMAIL, "priority": "high" }),
            idempotency_key: "seed".into(),
        })
        .await
        .unwrap();
    let ticket = created.result["id"].as_i64().unwrap();
    assert_eq!(
        fake.fire(fake::Happening::Created { ticket }).await,
        vec![200]
    );

    eventually(20, "the triage note at Freshdesk", || {
        !fake.notes().is_empty()
    })
    .await;
    let notes = fake.notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["ticket_id"], json!(ticket));
    assert_eq!(notes[0]["private"], json!(true));
    assert_eq!(
        notes[0]["body"],
        json!(format!(
            "<p>Triage: Printer on fire (High) from {}</p>",
            fake::SEEDED_CONTACT_EMAIL
        ))
    );

    // A low-priority ticket does not match the rule's condition; a delivery without the secret
    // is refused and runs nothing.
    let low = c
        .execute(&ActionCall {
            action: "create_ticket".into(),
            parameters: json!({ "subject": "Toner low", "description": "<p>-</p>",
                                "requester_id": fake::SEEDED_CONTACT }),
            idempotency_key: "seed-2".into(),
        })
        .await
        .unwrap();
    let low = low.result["id"].as_i64().unwrap();
    assert_eq!(
        fake.fire(fake::Happening::Created { ticket: low }).await,
        vec![200]
    );
    let client = reqwest::Client::new();
    let forged = client
        .post(format!("{}/api/webhooks/freshdesk/freshdesk-main", daemon.url))
        .header("content-type", "application/json")
        .header("x-supportopsd-token", "guessed")
        .body(r#"{"freshdesk_webhook":{"supportopsd_event":"ticket_created","ticket_id":"101","ticket_priority":"Urgent"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    // The third (valid, matching) delivery proves the two before it were handled.
    assert_eq!(
        post_freshdesk(&client, &daemon.url, 102).await.unwrap(),
        200
    );
    eventually(20, "the note on ticket 102", || {
        fake.notes().iter().any(|n| n["ticket_id"] == json!(102))
    })
    .await;
    let on: Vec<Value> = fake
        .notes()
        .iter()
        .map(|n| n["ticket_id"].clone())
        .collect();
    assert_eq!(on, vec![json!(ticket), json!(102)]);

    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_zendesk_ticket_becomes_a_freshdesk_ticket() {
    let fake = FakeFreshdesk::start(FD_KEY).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let client = reqwest::Client::new();

    let body = zendesk_ticket(35437, "Refund for double charge");
    assert_eq!(post_zendesk(&client, &daemon, body, "inv-fd-1").await, 200);
    eventually(20, "the ticket at Freshdesk", || {
        fake.tickets()
            .iter()
            .any(|t| t["subject"] == json!("[Zendesk 35437] Refund for double charge"))
    })
    .await;
    let sent = fake.requests_to(&reqwest::Method::POST, "/api/v2/tickets");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].json(),
        json!({
            "subject": "[Zendesk 35437] Refund for double charge",
            "description": "<p>Opened in Zendesk by Priya</p>",
            "email": "priya@example.com",
            "status": 2, "priority": 2, "source": 1,
            "tags": ["from-zendesk"],
        })
    );
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}
