//! The GitOps loop of the daemon end to end, as an operator lives it: a commit adds a Zendesk
//! integration and a rule → the daemon registers Zendesk's webhook and trigger within seconds →
//! a signed Zendesk event posts to Slack → someone deletes the webhook on Zendesk → the next pass
//! recreates it → a restart changes nothing on Zendesk → a commit deletes the integration → its
//! registration is pruned.

use serde_json::{Value, json};
use supportopsd::platforms::slack::fake::FakeSlack;
use supportopsd::platforms::zendesk::fake::{self as zd_fake, FakeZendesk};
use supportopsd::secrets::SealKey;

use crate::daemon_support::{BOT_TOKEN, Daemon, eventually};
use crate::support::TestRepo;

const ZD_TOKEN: &str = "zd-api-token";

fn slack_only(slack: &FakeSlack) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
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
    );
    repo.commit("slack");
    repo
}

fn add_zendesk(repo: &TestRepo, zd: &FakeZendesk) {
    repo.file(
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
base_url = "{}"
"#,
            zd_fake::AGENT_EMAIL,
            zd.base_url()
        ),
    )
    .file(
        "rules/new-tickets-to-slack.toml",
        r##"id = "new-tickets-to-slack"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "New Zendesk ticket {{ ticket.id }}: {{ ticket.subject }}"
"##,
    );
}

/// A free loopback port (bound and released), so a restarted daemon keeps its address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn(repo: &TestRepo, state: &std::path::Path, key: &str, port: u16) -> Daemon {
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://{listen}");
    Daemon::spawn_with_env(
        repo.path(),
        state,
        &[
            "--listen",
            &listen,
            "--public-url",
            &public,
            "--key-file",
            key,
            "--resync-interval",
            "1s",
        ],
        &[("ZD_TOKEN", ZD_TOKEN)],
    )
    .await
}

fn owned(zd: &FakeZendesk) -> (Vec<Value>, Vec<Value>) {
    let mine = |v: &Value, field: &str| {
        v[field]
            .as_str()
            .is_some_and(|n| n.starts_with("supportopsd:zendesk-main"))
    };
    (
        zd.webhooks()
            .into_iter()
            .filter(|w| mine(w, "name"))
            .collect(),
        zd.triggers()
            .into_iter()
            .filter(|t| mine(t, "title"))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_register_fire_heal_restart_and_prune() {
    let slack = FakeSlack::start(BOT_TOKEN, None).await;
    let zd = FakeZendesk::start(zd_fake::AGENT_EMAIL, ZD_TOKEN, None).await;
    let repo = slack_only(&slack);
    let state = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let key_path = state.path().join("supportopsd.key");
    std::fs::write(&key_path, format!("{}\n", &*key.to_base64())).unwrap();
    let key_arg = key_path.to_str().unwrap().to_owned();
    let port = free_port();
    let daemon = spawn(&repo, state.path(), &key_arg, port).await;

    // 1. A commit adds Zendesk and a rule: the watcher sees it and the pass registers.
    add_zendesk(&repo, &zd);
    repo.commit("zendesk tickets to slack");
    eventually(20, "the webhook and trigger at Zendesk", || {
        let (hooks, triggers) = owned(&zd);
        hooks.len() == 1 && triggers.len() == 1
    })
    .await;
    let (hooks, _) = owned(&zd);
    let endpoint = format!("http://127.0.0.1:{port}/api/webhooks/zendesk/zendesk-main");
    assert_eq!(hooks[0]["endpoint"], json!(endpoint));

    // 2. A ticket opened by a customer fires the trigger; the rule posts to Slack.
    let ticket = zd.add_ticket(json!({
        "subject": "Printer on fire",
        "submitter_id": zd_fake::OTHER_AGENT_ID,
    }));
    assert_eq!(zd.fire_trigger("ticket.created", ticket).await, Ok(200));
    eventually(20, "the Slack message", || {
        slack.requests_to("chat.postMessage").iter().any(|r| {
            r.params()["text"] == json!(format!("New Zendesk ticket {ticket}: Printer on fire"))
        })
    })
    .await;

    // 3. Someone deletes the webhook in Zendesk: the next resync recreates it (and its trigger).
    zd.delete_webhook(hooks[0]["id"].as_str().unwrap());
    assert_eq!(owned(&zd).0.len(), 0);
    eventually(20, "the webhook recreated", || {
        let (hooks, triggers) = owned(&zd);
        hooks.len() == 1 && triggers.len() == 1
    })
    .await;
    let audit: Value = daemon
        .get_json("/api/audit/logs?resource_type=integration&resource_id=zendesk-main")
        .await;
    assert!(
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"]["outcome"] == "repaired"),
        "{audit}"
    );
    let second =
        zd.add_ticket(json!({"subject": "Again", "submitter_id": zd_fake::OTHER_AGENT_ID}));
    assert_eq!(zd.fire_trigger("ticket.created", second).await, Ok(200));
    eventually(20, "the second Slack message", || {
        slack
            .requests_to("chat.postMessage")
            .iter()
            .any(|r| r.params()["text"] == json!(format!("New Zendesk ticket {second}: Again")))
    })
    .await;

    // 4. A restart on the same address changes nothing on Zendesk.
    daemon.terminate().await;
    let before = owned(&zd);
    zd.clear_requests();
    let daemon = spawn(&repo, state.path(), &key_arg, port).await;
    eventually(20, "the first pass after the restart", || {
        !zd.requests_to("GET", "/api/v2/webhooks").is_empty()
    })
    .await;
    let r = daemon
        .api(&reqwest::Client::new(), reqwest::Method::POST, "/api/sync")
        .send()
        .await
        .unwrap();
    let report: Value = r.json().await.unwrap();
    assert!(
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["integration"] == "zendesk-main" && r["outcome"] == "unchanged"),
        "{report}"
    );
    assert_eq!(owned(&zd), before);
    let writes: Vec<String> = zd
        .requests()
        .iter()
        .filter(|r| r.method != reqwest::Method::GET)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    // 5. A commit deletes the integration (and its rule): the registration is pruned.
    repo.remove("integrations/zendesk.toml")
        .remove("rules/new-tickets-to-slack.toml");
    repo.commit("no more zendesk");
    eventually(20, "the registration pruned", || {
        let (hooks, triggers) = owned(&zd);
        hooks.is_empty() && triggers.is_empty()
    })
    .await;
    daemon.kill().await;
}
