//! Trello end to end: `supportopsd run` behind a public URL, the webhook registered at the fake
//! Trello (which checks the callback with `HEAD` through the daemon), signed deliveries in,
//! card actions out at the fake, and the loop guard on Trello's member id.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use supportopsd::platforms::trello::fake::{self, FakeTrello};

use crate::daemon_support::{TEST_ADMIN_TOKEN, eventually};
use crate::support::TestRepo;

const KEY: &str = "e2e-trello-key";
const TOKEN: &str = "ATTA-e2e-trello-token";
const APP_SECRET: &str = "e2e-trello-app-secret";
const PUBLIC: &str = "https://ops.example.com";

/// `supportopsd run` with the Trello credentials in its environment, under a host policy that
/// lets the integration reach the fake Trello on loopback; its address.
async fn spawn(
    repo: &std::path::Path,
    state: &std::path::Path,
    policy: &std::path::Path,
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(repo)
        .args(["--repo", ".", "--state"])
        .arg(state)
        .args(["run", "--listen", "127.0.0.1:0", "--public-url", PUBLIC])
        .arg("--policy")
        .arg(policy)
        // A registration that failed (Trello's HEAD before the proxy below exists) is retried
        // on the next resync.
        .args(["--resync-interval", "1s"])
        .env_remove("SUPPORTOPSD_KEY_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        // A public URL off loopback needs an admin token (SEC-05).
        .env("SUPPORTOPSD_ADMIN_TOKEN", TEST_ADMIN_TOKEN)
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env_remove("SUPPORTOPSD_PUBLIC_URL")
        .env("SUPPORTOPSD_LOG", "error")
        .env("TRELLO_TOKEN", TOKEN)
        .env("TRELLO_APP_SECRET", APP_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn supportopsd run");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
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
    (child, url)
}

fn repo(base_url: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
        "integrations/trello.toml",
        &format!(
            r#"id = "trello-main"
platform = "trello"
[credentials]
api_key = "{KEY}"
token = {{ env = "TRELLO_TOKEN" }}
app_secret = {{ env = "TRELLO_APP_SECRET" }}
[config]
boards = ["{board}"]
default_list = "{list}"
[webhook]
events = ["commentCard", "createCard"]
[endpoint]
base_url = "{base_url}"
"#,
            board = fake::BOARD_ID,
            list = fake::LIST_INBOX,
        ),
    )
    .file(
        "rules/trello-triage.toml",
        r#"id = "trello-triage"
[trigger]
integration = "trello-main"
event = "createCard"
[[actions]]
integration = "trello-main"
action = "add_comment"
[actions.parameters]
id_card = "{{ card.id }}"
text = "Triage started for {{ card.name }}; ask here if you need help"
"#,
    )
    .file(
        "rules/trello-help.toml",
        r#"id = "trello-help"
[trigger]
integration = "trello-main"
event = "commentCard"
[trigger.conditions]
"comment.text" = { contains = "help" }
[[actions]]
integration = "trello-main"
action = "add_label"
[actions.parameters]
id_card = "{{ card.id }}"
color = "red"
name = "needs help"
"#,
    );
    repo.commit("trello");
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trello_delivery_fires_rules_that_act_on_the_card_at_trello() {
    let trello = FakeTrello::start(KEY, TOKEN, APP_SECRET).await;
    let repo = repo(&trello.base_url());
    let state = tempfile::tempdir().unwrap();
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = crate::daemon_support::loopback_policy(policy_dir.path());
    let (mut child, url) = spawn(repo.path(), state.path(), &policy).await;
    // The public URL is a proxy in front of the daemon.
    trello.proxy(PUBLIC, &url);
    let callback = format!("{PUBLIC}/api/webhooks/trello/trello-main");

    // The daemon checked its connection (its identity is the token's member).
    eventually(20, "the connection check", || {
        !trello.requests_to("GET /members/me").is_empty()
    })
    .await;

    // Registration: the daemon registers the board's webhook; Trello's HEAD reaches the
    // serving daemon through the proxy.
    eventually(20, "the daemon's webhook at Trello", || {
        trello.webhooks().iter().any(|w| w.callback_url == callback)
    })
    .await;
    let hook = trello.webhooks()[0].id.clone();
    assert_eq!(trello.webhooks().len(), 1);

    // A person creates a card: Trello delivers it, signed; the rule comments on it.
    let card = trello
        .add_card(fake::LIST_INBOX, "Printer on fire")
        .expect("a list of the fake");
    let card_id = card["id"].as_str().unwrap().to_owned();
    let created = trello.action("createCard", &card_id, None);
    assert_eq!(trello.deliver(&hook, created.clone()).await, 200);
    eventually(20, "the triage comment at Trello", || {
        !trello.comments().is_empty()
    })
    .await;
    let comment = &trello.comments()[0];
    assert_eq!(comment["data"]["card"]["id"], json!(card_id));
    assert_eq!(
        comment["data"]["text"],
        "Triage started for Printer on fire; ask here if you need help"
    );

    // Trello delivers our own comment back (its creator is the token's member): the loop guard
    // keeps the help rule from firing on it.
    let mut own: Value = trello.action(
        "commentCard",
        &card_id,
        Some("Triage started for Printer on fire; ask here if you need help"),
    );
    own["idMemberCreator"] = json!(fake::MEMBER_ID);
    own["memberCreator"]["id"] = json!(fake::MEMBER_ID);
    assert_eq!(trello.deliver(&hook, own).await, 200);
    // A person asks for help: labelled.
    let asked = trello.action("commentCard", &card_id, Some("I need help with this"));
    assert_eq!(trello.deliver(&hook, asked).await, 200);
    eventually(20, "the label on the card", || {
        !trello.requests_to("POST /cards/{id}/labels").is_empty()
    })
    .await;
    // The same delivery again (Trello retries): run once.
    assert_eq!(trello.deliver(&hook, created).await, 200);

    // A forged delivery is refused with 401 — never 410, which would make Trello delete the
    // webhook.
    let r = reqwest::Client::new()
        .post(format!("{url}/api/webhooks/trello/trello-main"))
        .header("content-type", "application/json")
        .header("x-trello-webhook", "AAAA")
        .body(r#"{"action":{"id":"x","type":"createCard","data":{}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(trello.webhooks().len(), 1);

    // Settled: one comment, one label, nothing more (the own comment and the retry ran
    // nothing).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(trello.comments().len(), 1);
    assert_eq!(trello.requests_to("POST /cards/{id}/labels").len(), 1);
    let labels = trello.card(&card_id).unwrap()["idLabels"].clone();
    assert_eq!(labels.as_array().map(Vec::len), Some(1));
    for r in trello.requests() {
        assert!(
            r.query.iter().all(|(k, _)| k != "token" && k != "key"),
            "credentials only in the Authorization header"
        );
    }

    // A commit without the `[webhook]` (and the rules it fed): the daemon prunes its webhook
    // at Trello on the pass that applies it.
    let manifest = repo.read("integrations/trello.toml");
    let without: String = manifest.split("[webhook]").next().unwrap().to_owned()
        + &manifest[manifest.find("[endpoint]").unwrap()..];
    repo.file("integrations/trello.toml", &without)
        .remove("rules/trello-triage.toml")
        .remove("rules/trello-help.toml");
    repo.commit("no more trello webhook");
    // The watcher's pass may apply it first; a sync makes sure one pass has run.
    let r = reqwest::Client::new()
        .post(format!("{url}/api/sync"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(20, "the webhook pruned at Trello", || {
        trello.webhooks().is_empty()
    })
    .await;
    assert!(trello.webhooks().is_empty());
    let _ = child.start_kill();
    let _ = child.wait().await;
}
