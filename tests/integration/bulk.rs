//! Bulk updates end to end: Zendesk deliveries whose jobs are due together (dead-lettered by a
//! wrong token, then replayed while the daemon was stopped) run as one `update_many` at the
//! fake Zendesk when the daemon starts, and every job is settled.

use std::time::Duration;

use supportopsd::platforms::zendesk::fake::{AGENT_EMAIL, FakeZendesk};
use supportopsd::state::Store;

use crate::daemon_support::*;
use crate::support::TestRepo;

/// The API token the fake accepts (the daemon's default `ZD_TOKEN`).
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
        "rules/escalate.toml",
        r#"id = "escalate"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "zendesk-main"
action = "set_priority"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
priority = "high"
"#,
    );
    repo.commit("initial");
    repo
}

/// The dead-lettered jobs, through the daemon's API.
async fn dead(client: &reqwest::Client, daemon: &Daemon) -> Vec<serde_json::Value> {
    let body: serde_json::Value = daemon
        .api(client, reqwest::Method::GET, "/api/events/dead")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["dead"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_jobs_due_together_go_out_as_one_update_many() {
    let fake = FakeZendesk::start(AGENT_EMAIL, ZD_TOKEN, None).await;
    let tickets: Vec<u64> = (0..3)
        .map(|i| fake.add_ticket(serde_json::json!({"subject": format!("Outage {i}")})))
        .collect();
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    // First run: the token is refused, so every job is dead-lettered at once.
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[("ZD_TOKEN", "not-the-token")],
    )
    .await;
    for (i, t) in tickets.iter().enumerate() {
        let status = post_zendesk(
            &client,
            &daemon,
            zendesk_ticket(*t, "Outage"),
            &format!("inv-bulk-{i}"),
        )
        .await;
        assert_eq!(status, 200);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ids: Vec<u64> = loop {
        let dead = dead(&client, &daemon).await;
        if dead.len() == tickets.len() {
            break dead
                .iter()
                .map(|d| d["job"]["id"].as_u64().expect("a job id"))
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the jobs to be dead-lettered: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
    for t in &tickets {
        assert_ne!(fake.ticket(*t).unwrap()["priority"], "high");
    }

    // Replayed while the daemon is stopped: all due together when it starts again.
    {
        let store = Store::open(state.path()).unwrap();
        for id in &ids {
            store.replay(*id, 0).unwrap();
        }
        store.flush().unwrap();
    }
    fake.clear_requests();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    eventually(30, "every ticket escalated at the fake Zendesk", || {
        tickets
            .iter()
            .all(|t| fake.ticket(*t).is_some_and(|t| t["priority"] == "high"))
    })
    .await;

    // One bulk job, polled and read back; no ticket updated on its own.
    assert_eq!(
        fake.requests_to("PUT", "/api/v2/tickets/update_many").len(),
        1
    );
    for t in &tickets {
        assert_eq!(
            fake.requests_to("PUT", &format!("/api/v2/tickets/{t}"))
                .len(),
            0,
            "ticket {t} updated alone"
        );
    }
    // The fake applies the update at once; the connector then polls the job and reads the
    // tickets back.
    eventually(30, "the tickets read back after the job", || {
        !fake
            .requests_to("GET", "/api/v2/tickets/show_many")
            .is_empty()
    })
    .await;
    assert_eq!(fake.spec_errors(), Vec::<String>::new());
    // Every job settled: nothing dead, nothing queued.
    for _ in 0..600 {
        if crate::daemon_support::status(&daemon).await["queue_depth"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dead(&client, &daemon).await.is_empty());
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
    let store = Store::open(state.path()).unwrap();
    assert_eq!(store.queue_depth(), 0);
    for id in &ids {
        assert_eq!(store.job(*id).unwrap(), None, "job {id} still queued");
    }
}
