//! Zendesk end to end: a signed Zendesk delivery (the manifest's `[webhook] secret`) fires a
//! rule whose actions run against the fake Zendesk through the live connector.

use supportopsd::platforms::zendesk::fake::{AGENT_EMAIL, FakeZendesk, sign};

use crate::daemon_support::*;
use crate::support::TestRepo;

/// The API token the daemon's environment gives (`ZD_TOKEN`).
const ZD_TOKEN: &str = "zd-api-token";

fn repo(base_url: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
        "integrations/zendesk.toml",
        &format!(
            r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "{AGENT_EMAIL}"
api_token = {{ env = "ZD_TOKEN" }}
[config]
comments_public = false
[webhook]
events = ["ticket.created"]
secret = {{ env = "ZD_WEBHOOK_SECRET" }}
[endpoint]
base_url = "{base_url}"
[limits]
requests_per_minute = 6000
"#
        ),
    )
    .file(
        "rules/zendesk-triage.toml",
        r##"id = "zendesk-triage"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.subject" = { contains = "Refund" }
[[actions]]
integration = "zendesk-main"
action = "add_tags"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
tags = ["triaged", "billing"]
[[actions]]
integration = "zendesk-main"
action = "add_comment"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
body = "Triaged for {{ requester.name }}"
"##,
    );
    repo.commit("initial");
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_zendesk_delivery_runs_zendesk_actions_at_the_fake() {
    let fake = FakeZendesk::start(AGENT_EMAIL, ZD_TOKEN, None).await;
    let ticket = fake
        .add_ticket(serde_json::json!({"subject": "Refund for double charge", "tags": ["vip"]}));
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let client = reqwest::Client::new();

    let body = zendesk_ticket(ticket, "Refund for double charge");
    let ts = rfc3339(0);
    let status = client
        .post(format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url))
        .header("content-type", "application/json")
        .header("x-zendesk-webhook-signature-timestamp", &ts)
        .header("x-zendesk-webhook-signature", sign(ZD_SECRET, &ts, &body))
        .header("x-zendesk-webhook-invocation-id", "inv-zd-1")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);

    eventually(30, "the comment at the fake Zendesk", || {
        fake.ticket(ticket)
            .and_then(|t| t["comments"].as_array().map(|c| !c.is_empty()))
            .unwrap_or(false)
    })
    .await;
    let t = fake.ticket(ticket).unwrap();
    assert_eq!(t["tags"], serde_json::json!(["vip", "triaged", "billing"]));
    assert_eq!(t["comments"][0]["body"], "Triaged for Priya");
    assert_eq!(t["comments"][0]["public"], false);

    // Tags went through the add-not-replace verb, the comment through the ticket update.
    let tags = fake.requests_to("PUT", &format!("/api/v2/tickets/{ticket}/tags"));
    assert_eq!(tags.len(), 1);
    assert!(
        tags[0]
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(
        fake.requests_to("PUT", &format!("/api/v2/tickets/{ticket}"))
            .len(),
        1
    );
    assert_eq!(fake.spec_errors(), Vec::<String>::new());
    // The connection check ran against the fake too.
    eventually(30, "the connection check", || {
        !fake.requests_to("GET", "/api/v2/users/me").is_empty()
    })
    .await;
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}
