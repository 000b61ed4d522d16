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

/// A repository whose Zendesk webhook and triggers the daemon registers itself, with a rule
/// on comments that reads the comment's text in its condition and its action.
fn comment_repo(base_url: &str) -> TestRepo {
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
[webhook]
events = ["comment.created"]
[endpoint]
base_url = "{base_url}"
[limits]
requests_per_minute = 6000
"#
        ),
    )
    .file(
        "rules/echo-urgent-comments.toml",
        r##"id = "echo-urgent-comments"
[trigger]
integration = "zendesk-main"
event = "comment.created"
allow_self = false
[trigger.conditions]
"comment.body" = { contains = "\"urgent\"" }
[[actions]]
integration = "zendesk-main"
action = "add_comment"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
public = false
body = "Seen for {{ requester.name }} on {{ ticket.subject }}: {{ comment.body }}"
"##,
    );
    repo.commit("comments");
    repo
}

/// Issue 16, item 5: Zendesk renders trigger placeholders raw, so a comment with quotes and
/// newlines must not be in the trigger body. The trigger the daemon registered posts ids only
/// (valid JSON whatever the comment says); the daemon stores the delivery with a pending
/// enrichment, fetches the ticket, its requester and the comment through the connector, and the
/// rule's condition and its rendered action see the text as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_with_quotes_and_newlines_reaches_a_condition_and_an_action() {
    use supportopsd::secrets::SealKey;
    let fake = FakeZendesk::start(AGENT_EMAIL, ZD_TOKEN, None).await;
    let repo = comment_repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let key_path = state.path().join("supportopsd.key");
    std::fs::write(&key_path, format!("{}\n", &*key.to_base64())).unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--key-file", key_path.to_str().unwrap()],
        &[("ZD_TOKEN", ZD_TOKEN)],
    )
    .await;
    eventually(30, "the comment trigger", || !fake.triggers().is_empty()).await;

    let requester = fake.add_user("Dana \"DJ\" O'Neil", "dana@example.com");
    let text = "Customer says \"urgent\":\nthe invoice\\total is wrong";
    let ticket = fake.add_ticket(serde_json::json!({
        "subject": "Invoice \"Q3\"\nwrong",
        "requester_id": requester,
        "submitter_id": requester,
        "comments": [{"id": 777, "body": text, "public": true, "author_id": requester}],
    }));
    assert_eq!(fake.fire_trigger("comment.created", ticket).await, Ok(200));

    eventually(30, "the echoed comment", || {
        fake.ticket(ticket)
            .and_then(|t| t["comments"].as_array().map(|c| c.len() == 2))
            .unwrap_or(false)
    })
    .await;
    let t = fake.ticket(ticket).unwrap();
    assert_eq!(
        t["comments"][1]["body"],
        format!("Seen for Dana \"DJ\" O'Neil on Invoice \"Q3\"\nwrong: {text}")
    );
    // One enrichment: the ticket, its people, the latest comment.
    assert_eq!(
        fake.requests_to("GET", &format!("/api/v2/tickets/{ticket}/comments"))
            .len(),
        1
    );
    assert_eq!(fake.requests_to("GET", "/api/v2/users/show_many").len(), 1);
    assert_eq!(fake.spec_errors(), Vec::<String>::new());

    // Our own comment fires the trigger too (Zendesk renders `current_user` as the agent
    // whose update fired it: us): the loop guard, on the delivered ids before any
    // enrichment, runs nothing and fetches nothing.
    let before = fake
        .requests_to("GET", &format!("/api/v2/tickets/{ticket}"))
        .len();
    let ours = fake.ticket(ticket).unwrap();
    assert_eq!(ours["comments"][1]["author_id"], zd_fake_agent());
    fake.touch_ticket(ticket, serde_json::json!({"submitter_id": zd_fake_agent()}));
    assert_eq!(fake.fire_trigger("comment.created", ticket).await, Ok(200));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        fake.ticket(ticket).unwrap()["comments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        fake.requests_to("GET", &format!("/api/v2/tickets/{ticket}"))
            .len(),
        before
    );
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}

fn zd_fake_agent() -> serde_json::Value {
    serde_json::json!(supportopsd::platforms::zendesk::fake::AGENT_ID)
}
