//! `supportopsd run` end to end with Google Sheets: a signed Zendesk delivery fires a rule whose
//! action appends a row at the fake Google, after the daemon signs in with the service account
//! (JWT checked by the fake's token endpoint).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use supportopsd::platforms::google_sheets::fake::{self, FakeGoogle};

use crate::daemon_support::{
    ZD_SECRET, eventually, rfc3339, signal, zendesk_signature, zendesk_ticket,
};
use crate::support::TestRepo;

fn repo(google_base_url: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
        "integrations/zendesk.toml",
        r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
[webhook]
events = ["ticket.created"]
secret = { env = "ZD_WEBHOOK_SECRET" }
# Nothing listens here: the platform is never reached by these tests.
[endpoint]
base_url = "http://127.0.0.1:9"
"#,
    )
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

struct Daemon {
    child: Child,
    url: String,
}

async fn spawn(repo: &Path, state: &Path, key_json: &str) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(repo)
        .args(["--repo", ".", "--state"])
        .arg(state)
        .args(["run", "--listen", "127.0.0.1:0"])
        .env_remove("SUPPORTOPSD_KEY_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env("SUPPORTOPSD_LOG", "error")
        .env("ZD_TOKEN", "zd-api-token")
        .env("ZD_WEBHOOK_SECRET", ZD_SECRET)
        .env("GS_SERVICE_ACCOUNT_KEY", key_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn supportopsd run");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the daemon announced its address in time")
        .expect("read stdout")
        .expect("a line");
    let addr = line
        .strip_prefix("supportopsd listening on ")
        .expect("the address line")
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the daemon did not become ready");
    Daemon { child, url }
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
    let mut daemon = spawn(
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

    signal(daemon.child.id().expect("running"), "TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), daemon.child.wait())
        .await
        .expect("exited in time")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}
