//! `supportopsd run` end to end with Google Sheets: a signed Zendesk delivery fires a rule whose
//! action appends a row at the fake Google, after the daemon signs in with the service account
//! (JWT checked by the fake's token endpoint); and the row poller turns appended rows into
//! `row_added` events.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use supportopsd::platforms::google_sheets::fake::{self, FakeGoogle};
use supportopsd::platforms::slack::fake::FakeSlack;

use crate::daemon_support::{
    BOT_TOKEN, Daemon, ZD_SECRET, ZENDESK_BY_HAND, eventually, rfc3339, zendesk_signature,
    zendesk_ticket,
};
use crate::support::TestRepo;

fn repo(google_base_url: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file("integrations/zendesk.toml", ZENDESK_BY_HAND)
        .file(
            "integrations/sheets.toml",
            &format!(
                r#"id = "sheets-log"
platform = "google_sheets"
[credentials]
service_account_key = {{ env = "GS_SERVICE_ACCOUNT_KEY" }}
spreadsheet_id = "{}"
[config]
sheet = "{}"
[endpoint]
base_url = "{google_base_url}"
"#,
                fake::SPREADSHEET_ID,
                fake::FIRST_SHEET
            ),
        )
        .file(
            "rules/log-tickets.toml",
            r##"id = "log-tickets"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "sheets-log"
action = "append_row"
[actions.parameters]
fields = { Ticket = "{{ ticket.id }}", Subject = "{{ ticket.subject }}" }
value_input_option = "RAW"
"##,
        );
    repo.commit("initial");
    repo
}

/// `supportopsd run` with the service-account key in its environment.
async fn spawn(repo: &Path, state: &Path, key_json: &str) -> Daemon {
    Daemon::spawn_with_env(repo, state, &[], &[("GS_SERVICE_ACCOUNT_KEY", key_json)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zendesk_ticket_is_logged_as_a_sheet_row() {
    let google = FakeGoogle::start().await;
    google.set_rows(
        fake::FIRST_SHEET,
        vec![vec![json!("Ticket"), json!("Subject")]],
    );
    let repo = repo(&google.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = spawn(
        repo.path(),
        state.path(),
        &fake::key_json("https://oauth2.googleapis.com/token"),
    )
    .await;
    let client = reqwest::Client::new();
    let body = zendesk_ticket(35437, "Refund for double charge");
    let ts = rfc3339(0);
    let status = client
        .post(format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url))
        .header("content-type", "application/json")
        .header("x-zendesk-webhook-signature-timestamp", &ts)
        .header(
            "x-zendesk-webhook-signature",
            zendesk_signature(ZD_SECRET, &ts, &body),
        )
        .header("x-zendesk-webhook-invocation-id", "inv-1")
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    eventually(30, "the row at the fake Google", || {
        google
            .sheet(fake::FIRST_SHEET)
            .is_some_and(|s| s.rows.len() >= 2)
    })
    .await;
    let sheet = google.sheet(fake::FIRST_SHEET).unwrap();
    // The rendered ticket id may arrive as text or as a number; either is the same cell.
    let ticket = &sheet.rows[1][0];
    assert!(
        ticket == &json!("35437") || ticket == &json!(35437),
        "{ticket}"
    );
    assert_eq!(sheet.rows[1][1], json!("Refund for double charge"));
    // The daemon signed in with the service account, then read the header row and appended.
    assert_eq!(google.tokens_issued(), 1);
    let paths: Vec<String> = google.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths[0], "/token");
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("/values/%27Tickets%27:append")),
        "{paths:?}"
    );
    assert!(
        google.spec_errors().is_empty(),
        "{:?}",
        google.spec_errors()
    );

    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_turns_appended_rows_into_row_added_events() {
    let google = FakeGoogle::start().await;
    google.set_rows(
        fake::FIRST_SHEET,
        vec![
            vec![json!("Customer"), json!("Issue")],
            vec![json!("Ada"), json!("already there before the first poll")],
        ],
    );
    let slack = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = TestRepo::new();
    repo.file(
        "integrations/sheets.toml",
        &format!(
            r#"id = "sheets-intake"
platform = "google_sheets"
[credentials]
service_account_key = {{ env = "GS_SERVICE_ACCOUNT_KEY" }}
spreadsheet_id = "{}"
[config]
sheet = "{}"
poll_interval_seconds = 1
push_notifications = false
[endpoint]
base_url = "{}"
"#,
            fake::SPREADSHEET_ID,
            fake::FIRST_SHEET,
            google.base_url()
        ),
    )
    .file(
        "integrations/slack.toml",
        &format!(
            r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {{ env = "SLACK_BOT_TOKEN" }}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
[endpoint]
base_url = "{}"
"#,
            slack.base_url()
        ),
    )
    .file(
        "rules/new-row.toml",
        r##"id = "new-row"
[trigger]
integration = "sheets-intake"
event = "row_added"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "Row {{ row.row_number }}: {{ row.fields.Customer }} — {{ row.fields.Issue }}"
"##,
    );
    repo.commit("poll the intake sheet");
    let state = tempfile::tempdir().unwrap();
    let daemon = spawn(
        repo.path(),
        state.path(),
        &fake::key_json("https://oauth2.googleapis.com/token"),
    )
    .await;
    // The first poll only notes where the sheet ends; wait for it before appending.
    eventually(30, "the first poll", || {
        google.requests().iter().any(|r| r.path.contains("/values"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rows = google.sheet(fake::FIRST_SHEET).unwrap().rows;
    rows.push(vec![json!("Grace"), json!("printer on fire")]);
    google.set_rows(fake::FIRST_SHEET, rows);
    eventually(30, "the message about the new row", || {
        !slack.requests_to("chat.postMessage").is_empty()
    })
    .await;
    let messages: Vec<String> = slack
        .requests_to("chat.postMessage")
        .iter()
        .map(|r| r.params()["text"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(messages, vec!["Row 3: Grace — printer on fire".to_owned()]);
    daemon.kill().await;
}
