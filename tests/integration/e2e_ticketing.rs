//! Zendesk ↔ Freshdesk end to end, with every registration made by the daemon itself: it
//! creates the Zendesk webhook and trigger (reading the signing secret from the API) and the
//! Freshdesk automation rule (with a shared secret it generates), keeps both secrets sealed in
//! its state, and verifies the deliveries with them. A Zendesk `ticket.created` becomes a
//! Freshdesk ticket and a Freshdesk `ticket_created` becomes a Zendesk ticket.

use serde_json::json;
use supportopsd::platforms::freshdesk::fake::{self as fd_fake, FakeFreshdesk};
use supportopsd::platforms::zendesk::fake::{self as zd_fake, FakeZendesk};
use supportopsd::secrets::SealKey;

use crate::daemon_support::{Daemon, eventually};
use crate::support::TestRepo;

const FD_KEY: &str = "fd-api-key";
const ZD_TOKEN: &str = "zd-api-token";

fn repo(fd_base: &str, zd_base: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
        "integrations/freshdesk.toml",
        &format!(
            r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = {{ env = "FD_KEY" }}
[webhook]
events = ["ticket_created"]
[endpoint]
base_url = "{fd_base}"
"#
        ),
    )
    .file(
        "integrations/zendesk.toml",
        &format!(
            r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "{}"
api_token = {{ env = "ZD_TOKEN" }}
[webhook]
events = ["ticket.created"]
[endpoint]
base_url = "{zd_base}"
"#,
            zd_fake::AGENT_EMAIL
        ),
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
description = "Opened in Zendesk"
email = "customer@example.com"
priority = "medium"
"##,
    )
    .file(
        "rules/freshdesk-to-zendesk.toml",
        r##"id = "freshdesk-to-zendesk"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[[actions]]
integration = "zendesk-main"
action = "create_ticket"
[actions.parameters]
subject = "[Freshdesk {{ ticket.id }}] {{ ticket.subject }}"
comment = "Opened in Freshdesk"
"##,
    );
    repo.commit("zendesk and freshdesk, both ways");
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_cross_both_ways_through_registrations_the_daemon_made() {
    let fd = FakeFreshdesk::start(FD_KEY).await;
    let zd = FakeZendesk::start(zd_fake::AGENT_EMAIL, ZD_TOKEN, None).await;
    let repo = repo(&fd.base_url(), &zd.base_url());
    let state = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let key_path = state.path().join("supportopsd.key");
    std::fs::write(&key_path, format!("{}\n", &*key.to_base64())).unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--key-file", key_path.to_str().unwrap()],
        &[("FD_KEY", FD_KEY), ("ZD_TOKEN", ZD_TOKEN)],
    )
    .await;

    // The daemon registered at both platforms.
    eventually(30, "the Zendesk trigger and the Freshdesk rule", || {
        !zd.triggers().is_empty() && !fd.rules().is_empty()
    })
    .await;
    let hook = format!("{}/api/webhooks", daemon.url);
    assert!(
        zd.webhooks()
            .iter()
            .all(|w| w["endpoint"].as_str().unwrap_or("").starts_with(&hook)),
        "{:?}",
        zd.webhooks()
    );

    // Zendesk → Freshdesk: Zendesk runs the daemon's trigger for a ticket another agent
    // opened and posts the delivery signed with the webhook's secret.
    let zd_ticket = zd.add_ticket(json!({
        "subject": "Refund for double charge",
        "submitter_id": zd_fake::OTHER_AGENT_ID,
    }));
    assert_eq!(zd.fire_trigger("ticket.created", zd_ticket).await, Ok(200));
    let wanted = format!("[Zendesk {zd_ticket}] Refund for double charge");
    eventually(30, "the ticket at Freshdesk", || {
        fd.tickets().iter().any(|t| t["subject"] == json!(wanted))
    })
    .await;

    // Freshdesk → Zendesk: Freshdesk runs the daemon's automation rule and posts the delivery
    // with the generated shared secret.
    let fd_ticket = fd_fake::SEEDED_TICKETS[0];
    assert_eq!(
        fd.fire(fd_fake::Happening::Created { ticket: fd_ticket })
            .await,
        vec![200]
    );
    eventually(30, "the ticket at Zendesk", || {
        zd.requests_to("POST", "/api/v2/tickets").len() == 1
    })
    .await;
    let created = zd.requests_to("POST", "/api/v2/tickets")[0].json();
    assert!(
        created["ticket"]["subject"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("[Freshdesk {fd_ticket}]")),
        "{created}"
    );
    assert!(zd.spec_errors().is_empty(), "{:?}", zd.spec_errors());

    // A ticket our own agent opened (what a rule of ours does) matches nothing: the loop
    // guard knows the agent from the connection check.
    let own = zd.add_ticket(json!({"subject": "Opened by supportopsd"}));
    assert_eq!(zd.fire_trigger("ticket.created", own).await, Ok(200));
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("supportopsd_events_received_total{platform=\"zendesk\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("supportopsd_rules_matched_total{rule=\"zendesk-to-freshdesk\"} 1"),
        "{metrics}"
    );

    // A delivery that is not signed with the registration's secret is refused.
    let forged = reqwest::Client::new()
        .post(format!("{hook}/zendesk/zendesk-main"))
        .header("content-type", "application/json")
        .header("x-zendesk-webhook-signature-timestamp", zd_fake::rfc3339(0))
        .header("x-zendesk-webhook-signature", "AAAA")
        .body(r#"{"id":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // A restart keeps the secrets (sealed in the state): deliveries still verify, and nothing
    // is registered twice.
    let triggers = zd.triggers().len();
    let rules = fd.rules().len();
    daemon.terminate().await;
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--key-file", key_path.to_str().unwrap()],
        &[("FD_KEY", FD_KEY), ("ZD_TOKEN", ZD_TOKEN)],
    )
    .await;
    // The new daemon listens on another port: its first pass moves the registrations there.
    let moved = format!("{}/api/webhooks", daemon.url);
    eventually(30, "the registrations follow the new address", || {
        zd.webhooks()
            .iter()
            .all(|w| w["endpoint"].as_str().unwrap_or("").starts_with(&moved))
            && fd
                .rules()
                .iter()
                .all(|(_, r)| r.to_string().contains(&moved))
    })
    .await;
    let second = zd.add_ticket(json!({
        "subject": "After the restart",
        "submitter_id": zd_fake::OTHER_AGENT_ID,
    }));
    assert_eq!(zd.fire_trigger("ticket.created", second).await, Ok(200));
    eventually(30, "the second ticket at Freshdesk", || {
        fd.tickets()
            .iter()
            .any(|t| t["subject"] == json!(format!("[Zendesk {second}] After the restart")))
    })
    .await;
    assert_eq!(zd.triggers().len(), triggers);
    assert_eq!(fd.rules().len(), rules);
    daemon.kill().await;
}
